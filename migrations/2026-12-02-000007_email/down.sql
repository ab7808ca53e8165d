DROP TABLE outbox;
DROP TABLE email_tokens;
DROP INDEX users_verified_email_key;
ALTER TABLE users DROP COLUMN email_verified_at, DROP COLUMN email;
