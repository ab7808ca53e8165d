//! Queries on `audit_events`: the rows the chainer links, the chain as the verifier
//! reads it, failed sign-ins (the one kind written from Rust: no row changes), and the
//! retention's pruning.

use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_query,
    sql_types::{Array, BigInt, Bool, Bytea, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::ids::UserId;

/// One row as the chain covers it. `detail` is the database's text of the JSON (jsonb
/// prints it one way), so the chainer and the verifier hash the same bytes.
#[derive(Debug, Clone, QueryableByName)]
pub struct AuditRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Timestamptz)]
    pub at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub actor_id: Option<uuid::Uuid>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub subject_id: Option<uuid::Uuid>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub session_id: Option<uuid::Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    pub network: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub user_agent: Option<String>,
    #[diesel(sql_type = Text)]
    pub detail: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub chain_seq: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub key_id: Option<String>,
    #[diesel(sql_type = Nullable<Bytea>)]
    pub prev_hmac: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Bytea>)]
    pub hmac: Option<Vec<u8>>,
}

const COLUMNS: &str = "id, at, kind, actor_id, subject_id, session_id, network, user_agent, detail::text AS detail, \
                       chain_seq, key_id, prev_hmac, hmac";

/// The chain's newest row: its position and HMAC.
#[derive(QueryableByName)]
pub struct Head {
    #[diesel(sql_type = BigInt)]
    pub chain_seq: i64,
    #[diesel(sql_type = Bytea)]
    pub hmac: Vec<u8>,
}

/// A link the chainer computed for a row.
pub struct Link {
    pub id: i64,
    pub chain_seq: i64,
    pub key_id: String,
    pub prev_hmac: Vec<u8>,
    pub hmac: Vec<u8>,
}

/// Chains the rows not chained yet, oldest first, at most `limit`, under an advisory
/// lock so that one chainer works at a time (across instances): `link` computes each
/// row's link from the previous head. Returns how many were chained; 0 when another
/// chainer holds the lock.
pub async fn chain_pending(
    conn: &mut AsyncPgConnection,
    limit: i64,
    mut link: impl FnMut(Option<&Head>, &AuditRow) -> Link + Send,
) -> QueryResult<usize> {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        #[derive(QueryableByName)]
        struct Locked {
            #[diesel(sql_type = Bool)]
            locked: bool,
        }
        let locked: Locked = sql_query("SELECT pg_try_advisory_xact_lock(hashtextextended('audit chain', 0)) AS locked")
            .get_result(conn)
            .await?;
        if !locked.locked {
            return Ok(0);
        }
        let mut head: Option<Head> = sql_query(
            "SELECT chain_seq, hmac FROM audit_events WHERE chain_seq IS NOT NULL ORDER BY chain_seq DESC LIMIT 1",
        )
        .get_result(conn)
        .await
        .optional()?;
        let rows: Vec<AuditRow> =
            sql_query(format!("SELECT {COLUMNS} FROM audit_events WHERE chain_seq IS NULL ORDER BY id LIMIT $1"))
                .bind::<BigInt, _>(limit)
                .load(conn)
                .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut links = Vec::with_capacity(rows.len());
        for row in &rows {
            let next = link(head.as_ref(), row);
            head = Some(Head { chain_seq: next.chain_seq, hmac: next.hmac.clone() });
            links.push(next);
        }
        sql_query(
            "UPDATE audit_events a SET chain_seq = v.seq, key_id = v.key, prev_hmac = v.prev, hmac = v.mac \
             FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bytea[], $5::bytea[]) AS v(id, seq, key, prev, mac) \
             WHERE a.id = v.id AND a.chain_seq IS NULL",
        )
        .bind::<Array<BigInt>, _>(links.iter().map(|l| l.id).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(links.iter().map(|l| l.chain_seq).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(links.iter().map(|l| l.key_id.clone()).collect::<Vec<_>>())
        .bind::<Array<Bytea>, _>(links.iter().map(|l| l.prev_hmac.clone()).collect::<Vec<_>>())
        .bind::<Array<Bytea>, _>(links.iter().map(|l| l.hmac.clone()).collect::<Vec<_>>())
        .execute(conn)
        .await?;
        Ok(links.len())
    })
    .await
}

/// Up to `limit` chained rows after position `after`, in chain order.
pub async fn chained_after(conn: &mut AsyncPgConnection, after: i64, limit: i64) -> QueryResult<Vec<AuditRow>> {
    sql_query(format!("SELECT {COLUMNS} FROM audit_events WHERE chain_seq > $1 ORDER BY chain_seq LIMIT $2"))
        .bind::<BigInt, _>(after)
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await
}

/// The chain's first kept position and its newest, if anything is chained.
pub async fn chain_bounds(conn: &mut AsyncPgConnection) -> QueryResult<Option<(i64, i64)>> {
    #[derive(QueryableByName)]
    struct Bounds {
        #[diesel(sql_type = Nullable<BigInt>)]
        first: Option<i64>,
        #[diesel(sql_type = Nullable<BigInt>)]
        last: Option<i64>,
    }
    let b: Bounds =
        sql_query("SELECT min(chain_seq) AS first, max(chain_seq) AS last FROM audit_events").get_result(conn).await?;
    Ok(b.first.zip(b.last))
}

/// How many rows wait to be chained.
pub async fn pending(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    use super::schema::audit_events;
    audit_events::table.filter(audit_events::chain_seq.is_null()).count().get_result(conn).await
}

/// A sign-in whose credential was checked and refused: a password that was wrong (or
/// named no account, after the same hash), a passkey assertion that did not verify, a
/// provider's answer that did not. The one kind no row change makes. Bounded by the
/// brute-force limits (and, for providers, the open flows per network), which refuse
/// attempts before the check; those refused are counted by the limits, not here.
pub struct FailedSignin<'a> {
    pub subject: Option<UserId>,
    /// As typed, for a password; the account's, for a passkey; none for a provider.
    pub username: Option<&'a str>,
    /// The provider, for a sign-in through one.
    pub provider: Option<&'a str>,
    pub network: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub reason: &'a str,
}

pub async fn signin_failed(conn: &mut AsyncPgConnection, failed: FailedSignin<'_>) -> QueryResult<()> {
    let mut detail = serde_json::json!({ "reason": failed.reason });
    if let Some(username) = failed.username {
        detail["username"] = username.chars().take(64).collect::<String>().into();
    }
    if let Some(provider) = failed.provider {
        detail["provider"] = provider.into();
    }
    sql_query(
        "INSERT INTO audit_events (kind, subject_id, network, user_agent, detail) \
         VALUES ('SIGNIN_FAILED', $1, $2, left($3, 512), $4)",
    )
    .bind::<Nullable<SqlUuid>, _>(failed.subject.map(|s| s.as_uuid()))
    .bind::<Nullable<Text>, _>(failed.network)
    .bind::<Nullable<Text>, _>(failed.user_agent)
    .bind::<Jsonb, _>(detail)
    .execute(conn)
    .await
    .map(drop)
}

/// Deletes chained rows older than `cutoff`, oldest first, and only a prefix of the
/// chain: the retention's pruning (the guard trigger allows it in this transaction
/// alone). The chain stays checkable from the first kept row.
pub async fn prune(conn: &mut AsyncPgConnection, cutoff: DateTime<Utc>) -> QueryResult<usize> {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        sql_query("SELECT set_config('authgraph.audit_prune', 'on', true)").execute(conn).await?;
        // The newest position whose row and all before it are older than the cutoff.
        sql_query(
            "DELETE FROM audit_events WHERE chain_seq < coalesce(
                 (SELECT min(chain_seq) FROM audit_events WHERE chain_seq IS NOT NULL AND at >= $1),
                 (SELECT max(chain_seq) FROM audit_events))",
        )
        .bind::<Timestamptz, _>(cutoff)
        .execute(conn)
        .await
    })
    .await
}

/// An event as the API lists it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = super::schema::audit_events, check_for_backend(diesel::pg::Pg))]
pub struct AuditEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub actor_id: Option<uuid::Uuid>,
    pub subject_id: Option<uuid::Uuid>,
    pub session_id: Option<uuid::Uuid>,
    pub network: Option<String>,
    pub user_agent: Option<String>,
    pub detail: serde_json::Value,
}

/// Which events to list.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub subject: Option<UserId>,
    pub actor: Option<UserId>,
    pub kinds: Option<Vec<String>>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// Up to `limit` events matching `filter`, newest first, before the event `before`
/// (keyset on the id, so a page never skips or repeats one while events are added).
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &Filter,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<AuditEvent>> {
    use super::schema::audit_events as a;
    let mut query = a::table.select(AuditEvent::as_select()).order(a::id.desc()).limit(limit).into_boxed();
    if let Some(subject) = filter.subject {
        query = query.filter(a::subject_id.eq(subject.as_uuid()));
    }
    if let Some(actor) = filter.actor {
        query = query.filter(a::actor_id.eq(actor.as_uuid()));
    }
    if let Some(kinds) = &filter.kinds {
        query = query.filter(a::kind.eq_any(kinds.clone()));
    }
    if let Some(since) = filter.since {
        query = query.filter(a::at.ge(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(a::at.lt(until));
    }
    if let Some(before) = before {
        query = query.filter(a::id.lt(before));
    }
    query.load(conn).await
}
