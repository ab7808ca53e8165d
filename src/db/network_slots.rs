//! The rows an anonymous client may make the server keep (a passkey ceremony, a
//! provider's flow), bounded per client network.
//!
//! Opening one runs in a transaction that first takes an advisory lock of the table
//! and network, so the bound holds under concurrent starts from one network; expired
//! rows of the network are deleted first, so only live ones count.

use chrono::{DateTime, Utc};
use diesel::{
    QueryableByName, sql_query,
    sql_types::{BigInt, Text, Timestamptz},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Why a row could not be opened.
pub enum Refused {
    /// The network has this many open already; the oldest expires then.
    NetworkFull { frees_at: DateTime<Utc> },
}

/// The tables bounded per network, each with a `network` and an `expires_at` column.
#[derive(Debug, Clone, Copy)]
pub enum Slots {
    PasskeyCeremonies,
    ProviderFlows,
}

impl Slots {
    fn table(self) -> &'static str {
        match self {
            Self::PasskeyCeremonies => "passkey_ceremonies",
            Self::ProviderFlows => "provider_flows",
        }
    }

    /// The advisory lock's namespace, as each table's first version named it.
    fn lock(self) -> &'static str {
        match self {
            Self::PasskeyCeremonies => "passkey_ceremony",
            Self::ProviderFlows => "provider_flow",
        }
    }
}

#[derive(QueryableByName)]
struct Open {
    #[diesel(sql_type = Timestamptz)]
    expires_at: DateTime<Utc>,
}

/// Inside the caller's transaction: locks `network`'s rows of `slots`, deletes the
/// expired ones, and refuses when `per_network` are still open. The caller inserts
/// its row in the same transaction when this says yes.
pub async fn make_room(
    conn: &mut AsyncPgConnection,
    slots: Slots,
    network: &str,
    per_network: u32,
) -> diesel::QueryResult<Result<(), Refused>> {
    sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1 || E'\\n' || $2, 0))")
        .bind::<Text, _>(slots.lock())
        .bind::<Text, _>(network)
        .execute(conn)
        .await?;
    sql_query(format!("DELETE FROM {} WHERE network = $1 AND expires_at <= now()", slots.table()))
        .bind::<Text, _>(network)
        .execute(conn)
        .await?;
    let open: Vec<Open> =
        sql_query(format!("SELECT expires_at FROM {} WHERE network = $1 ORDER BY expires_at LIMIT $2", slots.table()))
            .bind::<Text, _>(network)
            .bind::<BigInt, _>(i64::from(per_network))
            .load(conn)
            .await?;
    match <[Open]>::first(&open) {
        Some(oldest) if open.len() >= per_network as usize => {
            Ok(Err(Refused::NetworkFull { frees_at: oldest.expires_at }))
        }
        _ => Ok(Ok(())),
    }
}
