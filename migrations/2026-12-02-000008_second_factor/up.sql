-- A second factor: TOTP secrets sealed with AES-256-GCM (key id beside each, so the key
-- can rotate), recovery codes as argon2id hashes, and the assurance each session
-- reached. `users.mfa_enabled_at` is set and cleared in the same transactions that
-- confirm and remove the factor, so every read of a user (the guard's included) knows
-- whether a factor is on without another query.
ALTER TABLE users ADD COLUMN mfa_enabled_at timestamptz;

-- One confirmed factor per account, and at most one enrolment waiting for its first
-- code (a new enrollTotp replaces it). `last_step` is the last 30-second step a code
-- was accepted for: a code is accepted only for a later step, by a conditional UPDATE,
-- so one code cannot be spent twice even by concurrent requests.
CREATE TABLE totp_factors (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_id       text        NOT NULL,
    sealed       bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    confirmed_at timestamptz,
    last_step    bigint
);
CREATE UNIQUE INDEX totp_factors_confirmed_key ON totp_factors (user_id) WHERE confirmed_at IS NOT NULL;
CREATE UNIQUE INDEX totp_factors_pending_key ON totp_factors (user_id) WHERE confirmed_at IS NULL;

-- Recovery codes: about 49 bits each, so stored as argon2id (ASVS 5.0 6.5.2). `lookup`
-- is 16 bits of an HMAC of the code under a key derived from MFA_ENCRYPTION_KEY: it
-- finds the one row a presented code can match, so a check costs one hash, never ten,
-- and tells a copy of the table nothing without the key.
CREATE TABLE recovery_codes (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    lookup     integer     NOT NULL,
    code_hash  text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz
);
CREATE INDEX recovery_codes_user_lookup ON recovery_codes (user_id, lookup);

-- When and how a session passed the second factor (NULL: password only, AAL1). Kept
-- across refreshes: rotation never touches these columns. `refresh_tokens_since`:
-- verifyMfa hands out a new refresh token and sets it, so a token of the session
-- created before (while it was AAL1) never yields an AAL2 token. Rotation reads it
-- on the session row it locks anyway, so no token row is locked after a session row.
ALTER TABLE sessions
    ADD COLUMN mfa_at timestamptz,
    ADD COLUMN mfa_method text CONSTRAINT sessions_mfa_method_check CHECK (mfa_method IN ('TOTP', 'RECOVERY_CODE')),
    ADD COLUMN refresh_tokens_since timestamptz,
    ADD CONSTRAINT sessions_mfa_together CHECK ((mfa_at IS NULL) = (mfa_method IS NULL));
