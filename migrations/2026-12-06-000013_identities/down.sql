DROP TRIGGER identities_removed ON identities;
DROP TRIGGER identities_added ON identities;
ALTER FUNCTION account_row_announce() RENAME TO passkeys_announce;
UPDATE sessions SET signed_in_with = 'PASSWORD' WHERE signed_in_with = 'PROVIDER';
ALTER TABLE sessions
    DROP CONSTRAINT sessions_signed_in_with_check,
    ADD CONSTRAINT sessions_signed_in_with_check CHECK (signed_in_with IN ('PASSWORD', 'PASSKEY'));
DROP TABLE provider_flows;
DROP TABLE identities;
-- Accounts created through a provider cannot sign in without it: going down removes them.
DELETE FROM users WHERE password_hash IS NULL;
ALTER TABLE users ALTER COLUMN password_hash SET NOT NULL;
