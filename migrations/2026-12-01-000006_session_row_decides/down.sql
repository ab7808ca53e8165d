ALTER TABLE refresh_tokens ADD COLUMN revoked_at timestamptz;
