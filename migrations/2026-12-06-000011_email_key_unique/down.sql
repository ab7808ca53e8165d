DROP INDEX users_verified_email_key;
ALTER TABLE users DROP CONSTRAINT users_verified_email_has_key;
