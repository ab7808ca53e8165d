-- A session's row alone decides whether its refresh tokens work. Ending a session used
-- to mark its token rows too, which locked them after the session row, while a
-- rotation locks a token row and then its session row: the two could deadlock, and
-- PostgreSQL then aborted one (a password change that failed, a reuse revocation
-- rolled back).
ALTER TABLE refresh_tokens DROP COLUMN revoked_at;
