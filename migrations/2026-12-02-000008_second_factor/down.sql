ALTER TABLE sessions DROP CONSTRAINT sessions_mfa_together, DROP COLUMN refresh_tokens_since, DROP COLUMN mfa_method, DROP COLUMN mfa_at;
DROP TABLE recovery_codes;
DROP TABLE totp_factors;
ALTER TABLE users DROP COLUMN mfa_enabled_at;
