-- Accounts whose verified addresses are one mailbox under the key (filled by the server
-- before this migration runs): the account that verified it first keeps it verified;
-- each other one keeps the address, unverified, and its address is told so by email
-- (the sender writes an ADDRESS_UNVERIFIED row's message). Its owner can verify it again
-- only by taking it from the first account, which needs that account's mailbox.
WITH ranked AS (
    SELECT id, row_number() OVER (PARTITION BY email_key ORDER BY email_verified_at, created_at, id) AS n
    FROM users
    WHERE email_verified_at IS NOT NULL AND email_key IS NOT NULL
), released AS (
    UPDATE users SET email_verified_at = NULL, updated_at = now()
    FROM ranked
    WHERE users.id = ranked.id AND ranked.n > 1
    RETURNING users.email
)
INSERT INTO outbox (kind, recipient) SELECT 'ADDRESS_UNVERIFIED', email FROM released;

-- A verified address has a key, and no two verified addresses share one.
ALTER TABLE users ADD CONSTRAINT users_verified_email_has_key
    CHECK (email_verified_at IS NULL OR email_key IS NOT NULL);
CREATE UNIQUE INDEX users_verified_email_key ON users (email_key) WHERE email_verified_at IS NOT NULL;
