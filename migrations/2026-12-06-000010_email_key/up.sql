-- One key per mailbox, computed in Rust (`email_address`), never by SQL `lower()`:
-- the cluster's `lower()` folds ASCII only under the C locale, and knows nothing of
-- Unicode normalization, so two spellings of one mailbox could pass as two.
--
-- This migration only adds the column. The server then fills it for every account
-- with an address, in batches, before the next migration runs (see
-- `db::migrate`), and rewrites each address in its canonical form. An address that the
-- parser refuses (quoted, an address literal, an encoded word: none of them can be
-- delivered as stored) keeps its text, gets no key, and is no longer verified. The
-- next migration settles the accounts whose verified addresses turn out to be one
-- mailbox, and builds the unique index on the key.
--
-- The unique index on lower(email) goes now: rewriting addresses in canonical form can
-- make two that lower() told apart equal; the next migration settles them.
ALTER TABLE users ADD COLUMN email_key text;
DROP INDEX users_verified_email_key;

-- A message the sender writes itself from the recipient alone, as for RESET_REQUEST:
-- the notice to an account whose verified address another account verified first.
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check,
    ADD CONSTRAINT outbox_kind_check CHECK (kind IN ('MESSAGE', 'RESET_REQUEST', 'ADDRESS_UNVERIFIED'));
