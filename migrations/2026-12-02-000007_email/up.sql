-- Email on accounts: optional, stored as typed, compared case-insensitively. An address
-- is unique only among verified ones, so an address someone claimed but never verified
-- cannot block its real owner. A pending change of address waits in email_tokens
-- (`email` there) and reaches users.email only when verified.
ALTER TABLE users ADD COLUMN email text, ADD COLUMN email_verified_at timestamptz;
CREATE UNIQUE INDEX users_verified_email_key ON users (lower(email)) WHERE email_verified_at IS NOT NULL;

-- The link tokens and codes of verification and reset messages, stored as hashes only:
-- SHA-256 of the 256-bit link token, HMAC-SHA-256 of the 6-digit code under a server
-- key (a code has 20 bits: a plain hash would be reversed from a copy of the table).
-- A newer request supersedes the live one of the same purpose; a code dies after a
-- few wrong tries (`attempts`).
CREATE TABLE email_tokens (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose       text        NOT NULL CONSTRAINT email_tokens_purpose_check CHECK (purpose IN ('VERIFY_EMAIL', 'RESET_PASSWORD')),
    email         text        NOT NULL,
    token_hash    bytea       NOT NULL,
    code_hash     bytea       NOT NULL,
    attempts      integer     NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    superseded_at timestamptz
);
CREATE UNIQUE INDEX email_tokens_token_hash_key ON email_tokens (token_hash);
-- At most one live token per account and purpose: the index decides a race of requests.
CREATE UNIQUE INDEX email_tokens_live_key ON email_tokens (user_id, purpose)
    WHERE used_at IS NULL AND superseded_at IS NULL;

-- The transactional outbox: a message row is written in the same transaction as its
-- token, and senders on every instance claim due rows with FOR UPDATE SKIP LOCKED and
-- a lease (`leased_until`), so no row is sent by two at once; a row whose lease ran out
-- (its sender died) is due again. A 'RESET_REQUEST' row carries only an address: the
-- sender looks the account up, so the request does the same work whether or not the
-- address has an account. Bodies hold tokens, so they are deleted once the row is sent
-- or abandoned.
CREATE TABLE outbox (
    id              bigserial   PRIMARY KEY,
    kind            text        NOT NULL CONSTRAINT outbox_kind_check CHECK (kind IN ('MESSAGE', 'RESET_REQUEST')),
    recipient       text        NOT NULL,
    subject         text,
    text_body       text,
    html_body       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    leased_until    timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    sent_at         timestamptz,
    abandoned_at    timestamptz
);
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at) WHERE sent_at IS NULL AND abandoned_at IS NULL;
