-- Administration: bans, impersonation, and the index that searches accounts.

-- A ban: until when the account is refused at every way in (a permanent ban is the
-- far future, 9999-12-31). A past value is no ban; unbanning clears it.
ALTER TABLE users ADD COLUMN banned_until timestamptz;

-- An impersonation's session names the ADMIN acting through it. No foreign key: the
-- session stays what it was if that admin's account goes.
ALTER TABLE sessions ADD COLUMN impersonator_id uuid;

-- No session of a banned account opens, whichever path (a password, a reset, a passkey,
-- another provider, an impersonation) asks for it: each checks its credential first
-- and then inserts a session, and this refuses the insert. The row is read FOR SHARE,
-- so a ban being committed (its UPDATE of the row) is waited for and then seen: a
-- sign-in racing a ban either lands before it, and the ban's ending of every session
-- ends it, or waits and is refused. The error names the constraint `users_banned`
-- and carries the end of the ban (seconds since the epoch) as its detail.
CREATE FUNCTION sessions_refuse_banned() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    until timestamptz;
BEGIN
    SELECT banned_until INTO until FROM users WHERE id = NEW.user_id FOR SHARE;
    IF until > clock_timestamp() THEN
        RAISE EXCEPTION 'account banned' USING ERRCODE = 'check_violation', CONSTRAINT = 'users_banned',
            DETAIL = extract(epoch FROM until)::text;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER sessions_refuse_banned BEFORE INSERT ON sessions
    FOR EACH ROW EXECUTE FUNCTION sessions_refuse_banned();

-- The audit of accounts gains bans; the rest is as `audit_trail` wrote it.
CREATE OR REPLACE FUNCTION users_audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    purpose text := COALESCE(NULLIF(current_setting('authgraph.password', true), ''), 'CHANGED');
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM authgraph_audit('USER_DELETED', OLD.id, NULL, jsonb_build_object('username', OLD.username));
        RETURN NULL;
    END IF;
    IF OLD.password_hash IS DISTINCT FROM NEW.password_hash AND purpose <> 'REHASH' THEN
        PERFORM authgraph_audit(CASE purpose WHEN 'RESET' THEN 'PASSWORD_RESET' ELSE 'PASSWORD_CHANGED' END,
            NEW.id, NULL, jsonb_build_object('first', OLD.password_hash IS NULL));
    END IF;
    IF OLD.email IS DISTINCT FROM NEW.email THEN
        PERFORM authgraph_audit('EMAIL_CHANGED', NEW.id, NULL,
            jsonb_build_object('from', OLD.email, 'to', NEW.email));
    END IF;
    IF OLD.email_verified_at IS NULL AND NEW.email_verified_at IS NOT NULL THEN
        PERFORM authgraph_audit('EMAIL_VERIFIED', NEW.id, NULL, jsonb_build_object('email', NEW.email));
    END IF;
    IF OLD.role IS DISTINCT FROM NEW.role THEN
        PERFORM authgraph_audit('ROLE_CHANGED', NEW.id, NULL, jsonb_build_object('from', OLD.role, 'to', NEW.role));
    END IF;
    IF OLD.banned_until IS DISTINCT FROM NEW.banned_until THEN
        IF NEW.banned_until IS NULL THEN
            PERFORM authgraph_audit('USER_UNBANNED', NEW.id, NULL, '{}');
        ELSE
            PERFORM authgraph_audit('USER_BANNED', NEW.id, NULL, jsonb_build_object(
                'until', CASE WHEN NEW.banned_until >= '9999-01-01' THEN NULL ELSE NEW.banned_until END));
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- A session opened by an impersonation is IMPERSONATION_STARTED (its actor is the
-- admin, named by the request); every other new session is a SIGNIN, marked as a new
-- device when the account has no earlier sign-in from the same user agent in the
-- trail (one probe of the subject's index, which stops at the newest match).
CREATE OR REPLACE FUNCTION sessions_audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    agent text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.impersonator_id IS NOT NULL THEN
            PERFORM authgraph_audit('IMPERSONATION_STARTED', NEW.user_id, NEW.id, jsonb_build_object(
                'impersonator', NEW.impersonator_id, 'until', NEW.max_expires_at));
            RETURN NULL;
        END IF;
        agent := left(NEW.user_agent, 512);
        PERFORM authgraph_audit('SIGNIN', NEW.user_id, NEW.id, jsonb_build_object(
            'method', NEW.signed_in_with, 'secondFactor', NEW.mfa_method, 'userAgent', agent,
            'newDevice', NOT EXISTS (
                SELECT 1 FROM audit_events
                WHERE subject_id = NEW.user_id AND kind = 'SIGNIN' AND detail->>'userAgent' IS NOT DISTINCT FROM agent)));
    ELSIF NEW.revoked_reason = 'LOGOUT' THEN
        PERFORM authgraph_audit('LOGOUT', NEW.user_id, NEW.id, '{}');
    ELSIF NEW.revoked_reason = 'REUSE' THEN
        -- Whoever presented the spent token is not known to be the owner.
        PERFORM authgraph_audit('REFRESH_REUSE_DETECTED', NEW.user_id, NEW.id, '{}', true);
    ELSE
        PERFORM authgraph_audit('SESSION_ENDED', NEW.user_id, NEW.id,
            jsonb_build_object('why', NEW.revoked_reason));
    END IF;
    RETURN NULL;
END
$$;

-- A ban reaches the session caches like any other change to the account.
DROP TRIGGER users_updated ON users;
CREATE TRIGGER users_updated AFTER UPDATE ON users
    FOR EACH ROW WHEN (
        OLD.name IS DISTINCT FROM NEW.name OR OLD.username IS DISTINCT FROM NEW.username
        OR OLD.email IS DISTINCT FROM NEW.email OR OLD.email_verified_at IS DISTINCT FROM NEW.email_verified_at
        OR OLD.role IS DISTINCT FROM NEW.role OR OLD.mfa_enabled_at IS DISTINCT FROM NEW.mfa_enabled_at
        OR OLD.banned_until IS DISTINCT FROM NEW.banned_until)
    EXECUTE FUNCTION users_announce();

-- `adminUsers` searches username, name and address by substring, case-insensitively:
-- one trigram index over the three, joined by a separator no search may contain (so a
-- match never spans two fields). pg_trgm is a trusted extension: the database's owner
-- may create it without being a superuser.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE FUNCTION users_search_text(username text, name text, email text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT lower(username || E'\x1f' || name || E'\x1f' || coalesce(email, ''))
$$;
CREATE INDEX users_search ON users USING gin (users_search_text(username, name, email) gin_trgm_ops);
CREATE INDEX users_banned ON users (banned_until) WHERE banned_until IS NOT NULL;
CREATE INDEX users_admins ON users (role) WHERE role = 'ADMIN';
