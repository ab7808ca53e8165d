DROP TRIGGER passkeys_removed ON passkeys;
DROP TRIGGER passkeys_changed ON passkeys;
DROP TRIGGER passkeys_added ON passkeys;
DROP FUNCTION passkeys_announce();
UPDATE sessions SET mfa_method = 'TOTP' WHERE mfa_method IN ('PASSKEY', 'SYNCED_PASSKEY');
ALTER TABLE sessions
    DROP CONSTRAINT sessions_mfa_method_check,
    ADD CONSTRAINT sessions_mfa_method_check CHECK (mfa_method IN ('TOTP', 'RECOVERY_CODE')),
    DROP COLUMN signed_in_with;
DROP TABLE passkey_ceremonies;
DROP TABLE passkeys;
