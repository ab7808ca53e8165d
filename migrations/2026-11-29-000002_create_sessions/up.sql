-- One row per signed-in device. An access token names its session (`sid`), and the
-- guard accepts it only while the session is live: not revoked and not expired.
CREATE TABLE sessions (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_used_at   timestamptz NOT NULL DEFAULT now(),
    -- min(last use + REFRESH_TOKEN_TTL, created_at + SESSION_MAX_AGE), moved on refresh.
    expires_at     timestamptz NOT NULL,
    -- Absolute end of the session, however active (created_at + SESSION_MAX_AGE).
    max_expires_at timestamptz NOT NULL,
    revoked_at     timestamptz,
    -- Why it ended: LOGOUT, REUSE, PASSWORD_CHANGED, ADMIN.
    revoked_reason text,
    user_agent     text
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- One row per refresh token ever issued. Only the SHA-256 of a token is stored. A
-- token is rotated once: `used_at` is set and exactly one child row names it as parent.
CREATE TABLE refresh_tokens (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    token_hash bytea       NOT NULL CONSTRAINT refresh_tokens_token_hash_key UNIQUE,
    parent_id  uuid        REFERENCES refresh_tokens (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz
);

CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);
-- A parent has at most one child: a concurrent second rotation cannot insert another.
CREATE UNIQUE INDEX refresh_tokens_parent_id_key ON refresh_tokens (parent_id);
