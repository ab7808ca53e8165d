-- Accounts. Usernames are unique case-insensitively: the unique index on lower(username)
-- decides a signup race, not a read-then-insert in the application.
CREATE TABLE users (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text        NOT NULL,
    username      text        NOT NULL,
    password_hash text        NOT NULL,
    role          text        NOT NULL DEFAULT 'USER' CONSTRAINT users_role_check CHECK (role IN ('USER', 'ADMIN')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));

-- Keyset pagination walks (created_at, id): oldest first, ties broken by id.
CREATE INDEX users_created_at_id_idx ON users (created_at, id);
