-- Every change that makes a session event is announced with NOTIFY on the channel
-- `authgraph_events`, by triggers in the transaction that makes it: a rolled-back
-- change announces nothing, a committed one is announced to every instance's LISTEN
-- connection, and no code path (the API, an operator's CLI, a cascade of a deleted
-- account) can forget to. The payload is JSON: kind, user, session (or null), at, and
-- the session's user agent for SESSION_STARTED. PASSWORD_CHANGED comes from the flows
-- that change a password (a sign-in that only re-hashes one is no change).
CREATE FUNCTION authgraph_announce(kind text, user_id uuid, session_id uuid, user_agent text) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_notify('authgraph_events', json_build_object(
        'kind', kind, 'user', user_id, 'session', session_id, 'at', now(), 'userAgent', user_agent)::text)
$$;

CREATE FUNCTION sessions_announce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM authgraph_announce('SESSION_STARTED', NEW.user_id, NEW.id, left(NEW.user_agent, 512));
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM authgraph_announce('SESSION_ENDED', NEW.user_id, NEW.id, NULL);
    ELSE
        PERFORM authgraph_announce('SESSION_ENDED', OLD.user_id, OLD.id, NULL);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_started AFTER INSERT ON sessions
    FOR EACH ROW EXECUTE FUNCTION sessions_announce();
-- Refreshes update sessions all the time; only the end of one is an event.
CREATE TRIGGER sessions_ended AFTER UPDATE OF revoked_at ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION sessions_announce();
-- A deleted account takes its sessions along; pruning deletes only ended ones.
CREATE TRIGGER sessions_deleted AFTER DELETE ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL)
    EXECUTE FUNCTION sessions_announce();

CREATE FUNCTION users_announce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM authgraph_announce('ACCOUNT_UPDATED', NEW.id, NULL, NULL);
    RETURN NULL;
END
$$;

-- What a reader of the account sees (and the guard decides by) changed.
CREATE TRIGGER users_updated AFTER UPDATE ON users
    FOR EACH ROW WHEN (
        OLD.name IS DISTINCT FROM NEW.name OR OLD.username IS DISTINCT FROM NEW.username
        OR OLD.email IS DISTINCT FROM NEW.email OR OLD.email_verified_at IS DISTINCT FROM NEW.email_verified_at
        OR OLD.role IS DISTINCT FROM NEW.role OR OLD.mfa_enabled_at IS DISTINCT FROM NEW.mfa_enabled_at)
    EXECUTE FUNCTION users_announce();
