DROP INDEX users_admins;
DROP INDEX users_banned;
DROP INDEX users_search;
DROP FUNCTION users_search_text(text, text, text);
DROP TRIGGER users_updated ON users;
CREATE TRIGGER users_updated AFTER UPDATE ON users
    FOR EACH ROW WHEN (
        OLD.name IS DISTINCT FROM NEW.name OR OLD.username IS DISTINCT FROM NEW.username
        OR OLD.email IS DISTINCT FROM NEW.email OR OLD.email_verified_at IS DISTINCT FROM NEW.email_verified_at
        OR OLD.role IS DISTINCT FROM NEW.role OR OLD.mfa_enabled_at IS DISTINCT FROM NEW.mfa_enabled_at)
    EXECUTE FUNCTION users_announce();
DROP TRIGGER sessions_refuse_banned ON sessions;
DROP FUNCTION sessions_refuse_banned();
ALTER TABLE sessions DROP COLUMN impersonator_id;
ALTER TABLE users DROP COLUMN banned_until;

-- The audit functions as `audit_trail` wrote them.
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
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION sessions_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM authgraph_audit('SIGNIN', NEW.user_id, NEW.id, jsonb_build_object(
            'method', NEW.signed_in_with, 'secondFactor', NEW.mfa_method, 'userAgent', left(NEW.user_agent, 512)));
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
