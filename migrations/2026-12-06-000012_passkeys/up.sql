-- Passkeys (WebAuthn): the credentials, the ceremonies in progress, and how a session
-- was opened.

-- One row per credential. `credential_id` is the authenticator's id for it, unique
-- across accounts: an assertion names it, and it finds the one row (and account) to
-- check the signature against. `credential` is the relying-party library's record
-- (public key, algorithm, flags) as JSON; `sign_count` is the authenticator's counter,
-- kept in a column so that an assertion is accepted only by a conditional UPDATE that
-- moves it forward (of two concurrent uses of one counter value, one wins).
-- `flagged_at`: a counter went backwards (a cloned authenticator); the credential is
-- refused from then on, and its owner sees why.
CREATE TABLE passkeys (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id bytea       NOT NULL,
    credential    jsonb       NOT NULL,
    name          text        NOT NULL,
    backed_up     boolean     NOT NULL,
    backup_eligible boolean   NOT NULL,
    transports    text[]      NOT NULL DEFAULT '{}',
    sign_count    bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    flagged_at    timestamptz,
    CONSTRAINT passkeys_credential_id_key UNIQUE (credential_id)
);
CREATE INDEX passkeys_user ON passkeys (user_id, created_at DESC);

-- A ceremony begun and not yet finished: the library's state (the challenge among
-- it), single-use (finishing deletes the row, so of two concurrent finishes one
-- finds it), expiring, bound to its kind and, where one is known, to the account
-- (and for a verification, the session). `network` is the client's network as the
-- limits count it: the number of open ceremonies per network and per account is
-- bounded, since starting a sign-in is public. `username_key`: a sign-in begun with a
-- username that names no account is bound to that name, so it fails like any other.
CREATE TABLE passkey_ceremonies (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    kind         text        NOT NULL CONSTRAINT passkey_ceremonies_kind_check
                             CHECK (kind IN ('REGISTRATION', 'SIGN_IN', 'VERIFICATION')),
    user_id      uuid        REFERENCES users (id) ON DELETE CASCADE,
    session_id   uuid        REFERENCES sessions (id) ON DELETE CASCADE,
    username_key text,
    network      text        NOT NULL,
    state        jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX passkey_ceremonies_network ON passkey_ceremonies (network, created_at);
CREATE INDEX passkey_ceremonies_user ON passkey_ceremonies (user_id, created_at) WHERE user_id IS NOT NULL;
CREATE INDEX passkey_ceremonies_expires ON passkey_ceremonies (expires_at);

-- How the session was opened: a password, or a passkey (which is both factors: the
-- device, and the user verification it performed). A passkey as the second factor of
-- a password session is `mfa_method` PASSKEY or SYNCED_PASSKEY (the credential may be
-- synced across the owner's devices: the `amr` claim says swk rather than hwk).
ALTER TABLE sessions
    ADD COLUMN signed_in_with text NOT NULL DEFAULT 'PASSWORD'
        CONSTRAINT sessions_signed_in_with_check CHECK (signed_in_with IN ('PASSWORD', 'PASSKEY')),
    DROP CONSTRAINT sessions_mfa_method_check,
    ADD CONSTRAINT sessions_mfa_method_check
        CHECK (mfa_method IN ('TOTP', 'RECOVERY_CODE', 'PASSKEY', 'SYNCED_PASSKEY'));

-- Registering, renaming, flagging or deleting a passkey is an account change: live
-- events announce it as the users trigger does for the account's own columns. A
-- sign-in's counter and last use are not.
CREATE FUNCTION passkeys_announce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM authgraph_announce('ACCOUNT_UPDATED', OLD.user_id, NULL, NULL);
    ELSE
        PERFORM authgraph_announce('ACCOUNT_UPDATED', NEW.user_id, NULL, NULL);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER passkeys_added AFTER INSERT ON passkeys
    FOR EACH ROW EXECUTE FUNCTION passkeys_announce();
CREATE TRIGGER passkeys_changed AFTER UPDATE OF name, flagged_at ON passkeys
    FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name OR OLD.flagged_at IS DISTINCT FROM NEW.flagged_at)
    EXECUTE FUNCTION passkeys_announce();
CREATE TRIGGER passkeys_removed AFTER DELETE ON passkeys
    FOR EACH ROW EXECUTE FUNCTION passkeys_announce();
