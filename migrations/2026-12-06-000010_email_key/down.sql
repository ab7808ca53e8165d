DELETE FROM outbox WHERE kind = 'ADDRESS_UNVERIFIED';
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check,
    ADD CONSTRAINT outbox_kind_check CHECK (kind IN ('MESSAGE', 'RESET_REQUEST'));
CREATE UNIQUE INDEX users_verified_email_key ON users (lower(email)) WHERE email_verified_at IS NOT NULL;
ALTER TABLE users DROP COLUMN email_key;
