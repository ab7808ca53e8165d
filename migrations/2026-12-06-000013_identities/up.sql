-- Sign-in with other identity providers (OpenID Connect, plain OAuth 2.0): the
-- identities linked to accounts, the flows in progress, accounts without a password,
-- and sessions opened through a provider.

-- An account created through a provider has no password until `setPassword`.
ALTER TABLE users ALTER COLUMN password_hash DROP NOT NULL;

-- One row per identity at a provider: `subject` is the provider's stable id for the
-- person (OIDC `sub`, GitHub's numeric id), unique per provider, so one identity
-- belongs to one account. `email` is what the provider said at the last sign-in (shown
-- to the owner; never used to find an account unless the provider verified it).
CREATE TABLE identities (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider     text        NOT NULL,
    subject      text        NOT NULL,
    email        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    CONSTRAINT identities_provider_subject_key UNIQUE (provider, subject)
);
CREATE INDEX identities_user ON identities (user_id, created_at);

-- A flow begun (the browser was sent to the provider) and not yet finished. The row
-- holds what the finish needs and must not come from the browser: the PKCE verifier,
-- the nonce the ID token must carry, the redirect URI the code was issued for. It is
-- found by the SHA-256 of its `state` (the browser carries the state itself), taken
-- by one DELETE … RETURNING (single use: of two concurrent finishes one finds it),
-- and expires. A link is bound to the account and session that began it. `network`
-- bounds how many one client network may hold open, since starting is public.
CREATE TABLE provider_flows (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    state_hash    bytea       NOT NULL,
    flow          text        NOT NULL CONSTRAINT provider_flows_flow_check CHECK (flow IN ('SIGN_IN', 'LINK')),
    provider      text        NOT NULL,
    redirect_uri  text        NOT NULL,
    nonce         text        NOT NULL,
    pkce_verifier text        NOT NULL,
    user_id       uuid        REFERENCES users (id) ON DELETE CASCADE,
    session_id    uuid        REFERENCES sessions (id) ON DELETE CASCADE,
    network       text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    CONSTRAINT provider_flows_state_hash_key UNIQUE (state_hash)
);
CREATE INDEX provider_flows_network ON provider_flows (network, expires_at);
CREATE INDEX provider_flows_expires ON provider_flows (expires_at);

-- A session opened through a provider. Within REAUTH_WINDOW of its start, an account
-- without a password may confirm what others confirm with their current password.
ALTER TABLE sessions
    DROP CONSTRAINT sessions_signed_in_with_check,
    ADD CONSTRAINT sessions_signed_in_with_check CHECK (signed_in_with IN ('PASSWORD', 'PASSKEY', 'PROVIDER'));

-- Linking or unlinking an identity is an account change, announced as the users
-- trigger announces the account's own columns. A sign-in's last use is not. The
-- passkeys' function announces a row of any table with a `user_id`: it serves both,
-- under a name that says so.
ALTER FUNCTION passkeys_announce() RENAME TO account_row_announce;
CREATE TRIGGER identities_added AFTER INSERT ON identities
    FOR EACH ROW EXECUTE FUNCTION account_row_announce();
CREATE TRIGGER identities_removed AFTER DELETE ON identities
    FOR EACH ROW EXECUTE FUNCTION account_row_announce();
