-- The audit trail: one row per security-relevant change, written by triggers in the
-- transaction that makes the change, so that no path (the API, the command line, a
-- cascade, a statement typed into psql) makes the change without its row, and a
-- rolled-back change leaves none. The request that made it is named by settings its
-- transaction sets first (`authgraph.network`, `authgraph.user_agent`,
-- `authgraph.actor`, `authgraph.operator`, `authgraph.reason`), which `Changes::run`
-- sets from the request's door; a change made without them (psql) is recorded
-- without them.
--
-- Rows are written unchained and chained afterwards, in the order they became
-- visible, by one chainer at a time (the server's `audit::chain`): `chain_seq` is the
-- position, `hmac` an HMAC-SHA256 under AUDIT_CHAIN_KEY (a key outside the database)
-- of the previous row's `hmac` and this row's canonical fields. Writers take no lock
-- in common: a sign-in inserts one row and goes on. Whoever can write the table but
-- lacks the key cannot change, insert, delete, reorder or re-chain chained rows
-- without the chain's verification naming the first row that no longer verifies.
CREATE TABLE audit_events (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind       text        NOT NULL CONSTRAINT audit_events_kind_check CHECK (kind IN (
        'SIGNUP', 'SIGNIN', 'SIGNIN_FAILED', 'REFRESH_REUSE_DETECTED', 'LOGOUT', 'SESSION_ENDED',
        'PASSWORD_CHANGED', 'PASSWORD_RESET', 'EMAIL_CHANGED', 'EMAIL_VERIFIED', 'MFA_ENABLED',
        'MFA_DISABLED', 'PASSKEY_ADDED', 'PASSKEY_REMOVED', 'IDENTITY_LINKED', 'IDENTITY_UNLINKED',
        'ROLE_CHANGED', 'USER_BANNED', 'USER_UNBANNED', 'IMPERSONATION_STARTED', 'USER_DELETED')),
    -- No foreign keys: the trail keeps the ids of deleted accounts and sessions.
    actor_id   uuid,
    subject_id uuid,
    session_id uuid,
    network    text,
    user_agent text,
    detail     jsonb       NOT NULL DEFAULT '{}',
    chain_seq  bigint,
    key_id     text,
    prev_hmac  bytea,
    hmac       bytea,
    CONSTRAINT audit_events_chain_seq_key UNIQUE (chain_seq)
);
CREATE INDEX audit_events_unchained ON audit_events (id) WHERE chain_seq IS NULL;
CREATE INDEX audit_events_subject ON audit_events (subject_id, id DESC);
CREATE INDEX audit_events_actor ON audit_events (actor_id, id DESC) WHERE actor_id IS NOT NULL;
CREATE INDEX audit_events_at ON audit_events (at);

-- Append-only: a row's fields never change, and the chainer may only fill the chain's
-- columns of a row not yet chained. Deleting is the retention's alone (it sets
-- `authgraph.audit_prune` in its transaction). This stops mistakes and a role that
-- was granted the table; the owner can switch a trigger off, which is why the key,
-- not this trigger, is what makes the trail evidence.
CREATE FUNCTION audit_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('authgraph.audit_prune', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit events are append-only' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'audit events are append-only' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.chain_seq IS NOT NULL
        OR (NEW.id, NEW.at, NEW.kind, NEW.actor_id, NEW.subject_id, NEW.session_id, NEW.network, NEW.user_agent, NEW.detail)
           IS DISTINCT FROM
           (OLD.id, OLD.at, OLD.kind, OLD.actor_id, OLD.subject_id, OLD.session_id, OLD.network, OLD.user_agent, OLD.detail)
    THEN
        RAISE EXCEPTION 'audit events are append-only' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_guard();
CREATE TRIGGER audit_events_not_truncated BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_guard();

-- Records one event of the current transaction, with the request's settings. The
-- actor is the account acting: `authgraph.actor` when the transaction names one (an
-- admin), else the subject itself, except for `anonymous` kinds.
CREATE FUNCTION authgraph_audit(kind text, subject uuid, session uuid, detail jsonb, anonymous boolean DEFAULT false)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO audit_events (kind, actor_id, subject_id, session_id, network, user_agent, detail)
    VALUES (
        kind,
        CASE WHEN anonymous THEN NULL
             ELSE COALESCE(NULLIF(current_setting('authgraph.actor', true), '')::uuid, subject) END,
        subject,
        session,
        NULLIF(current_setting('authgraph.network', true), ''),
        NULLIF(current_setting('authgraph.user_agent', true), ''),
        jsonb_strip_nulls(detail || jsonb_build_object(
            'operator', NULLIF(current_setting('authgraph.operator', true), ''),
            'reason', NULLIF(current_setting('authgraph.reason', true), ''))))
$$;

-- New accounts, one statement at a time: a statement that inserts many (an import, a
-- seeded benchmark) writes their rows in one INSERT … SELECT, not one function call
-- per account.
CREATE FUNCTION users_audit_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_events (kind, actor_id, subject_id, network, user_agent, detail)
    SELECT 'SIGNUP', coalesce(o.actor, n.id), n.id, o.network, o.user_agent,
           jsonb_strip_nulls(jsonb_build_object(
               'username', n.username, 'password', n.password_hash IS NOT NULL,
               'operator', o.operator, 'reason', o.reason))
    FROM inserted n,
         (SELECT NULLIF(current_setting('authgraph.actor', true), '')::uuid AS actor,
                 NULLIF(current_setting('authgraph.network', true), '') AS network,
                 NULLIF(current_setting('authgraph.user_agent', true), '') AS user_agent,
                 NULLIF(current_setting('authgraph.operator', true), '') AS operator,
                 NULLIF(current_setting('authgraph.reason', true), '') AS reason) o
    ORDER BY n.created_at, n.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER users_audited_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION users_audit_inserted();

-- Accounts deleted, and the columns whose change is a security event. A password's
-- purpose (`authgraph.password`: CHANGED, RESET, or REHASH for a sign-in that only
-- re-hashes it, which is no event) is set by the query that writes it.
CREATE FUNCTION users_audit() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE TRIGGER users_audited AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION users_audit();

-- Sessions: a sign-in opens one, and its end says why. Ended rows deleted by pruning,
-- and the sessions a deleted account takes along, are no events of their own.
CREATE FUNCTION sessions_audit() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE TRIGGER sessions_audited_start AFTER INSERT ON sessions
    FOR EACH ROW EXECUTE FUNCTION sessions_audit();
CREATE TRIGGER sessions_audited_end AFTER UPDATE OF revoked_at ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION sessions_audit();

-- A TOTP factor confirmed or removed, passkeys and identities added or removed. A row that goes with its deleted
-- account is part of USER_DELETED: the account is gone by the time the cascade runs.
CREATE FUNCTION credentials_audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    owner uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.user_id ELSE NEW.user_id END;
BEGIN
    IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM users WHERE id = owner) THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'totp_factors' THEN
        -- An enrolment counts once confirmed; an unconfirmed one going is no event.
        IF TG_OP = 'UPDATE' THEN
            PERFORM authgraph_audit('MFA_ENABLED', owner, NULL, jsonb_build_object('factor', 'TOTP'));
        ELSIF OLD.confirmed_at IS NOT NULL THEN
            PERFORM authgraph_audit('MFA_DISABLED', owner, NULL, jsonb_build_object('factor', 'TOTP'));
        END IF;
    ELSIF TG_TABLE_NAME = 'passkeys' THEN
        IF TG_OP = 'INSERT' THEN
            PERFORM authgraph_audit('PASSKEY_ADDED', owner, NULL, jsonb_build_object('passkey', NEW.id, 'name', NEW.name));
        ELSE
            PERFORM authgraph_audit('PASSKEY_REMOVED', owner, NULL, jsonb_build_object('passkey', OLD.id, 'name', OLD.name));
        END IF;
    ELSIF TG_TABLE_NAME = 'identities' THEN
        IF TG_OP = 'INSERT' THEN
            PERFORM authgraph_audit('IDENTITY_LINKED', owner, NULL,
                jsonb_build_object('identity', NEW.id, 'provider', NEW.provider));
        ELSE
            PERFORM authgraph_audit('IDENTITY_UNLINKED', owner, NULL,
                jsonb_build_object('identity', OLD.id, 'provider', OLD.provider));
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER totp_factors_audited_confirm AFTER UPDATE OF confirmed_at ON totp_factors
    FOR EACH ROW WHEN (OLD.confirmed_at IS NULL AND NEW.confirmed_at IS NOT NULL)
    EXECUTE FUNCTION credentials_audit();
CREATE TRIGGER totp_factors_audited_remove AFTER DELETE ON totp_factors
    FOR EACH ROW EXECUTE FUNCTION credentials_audit();
CREATE TRIGGER passkeys_audited AFTER INSERT OR DELETE ON passkeys
    FOR EACH ROW EXECUTE FUNCTION credentials_audit();
CREATE TRIGGER identities_audited AFTER INSERT OR DELETE ON identities
    FOR EACH ROW EXECUTE FUNCTION credentials_audit();
