//! Migrations: the SQL files in `migrations/`, and the one step SQL cannot do, run
//! between two of them.
//!
//! Every address gets its key from the one parser in Rust (`email_address`), so the key
//! of an address that existed before keys did is computed here, after the migration
//! that adds the column and before the one that makes it unique. The step is
//! idempotent: a server stopped halfway does it again at its next start.

use anyhow::Context;
use diesel::{
    QueryableByName,
    connection::{Connection, SimpleConnection},
    sql_query,
    sql_types::{Array, Text, Uuid},
};
use diesel_async::{AsyncPgConnection, async_connection_wrapper::AsyncConnectionWrapper};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::email_address::EmailAddress;

/// The migrations in `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Key of the advisory lock held while migrating, so instances that start together
/// migrate once, one after the other.
const MIGRATION_LOCK_KEY: i64 = 0x6175_7468_6772_6170; // "authgrap"

/// The migration that makes the email key unique: the keys are filled before it.
const EMAIL_KEY_UNIQUE: &str = "20261206000011";

/// Accounts keyed per statement: a batch is one short transaction.
const BATCH: i64 = 5_000;

type SyncConnection = AsyncConnectionWrapper<AsyncPgConnection>;

/// Applies pending migrations under an advisory lock. Diesel's harness is
/// synchronous, so it runs on a blocking thread through diesel-async's wrapper.
pub async fn run_migrations(url: &str) -> anyhow::Result<usize> {
    let conn = super::establish(url).await.context("cannot connect to the database to migrate it")?;
    tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        let mut conn = SyncConnection::from(conn);
        conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;
        let applied = apply(&mut conn);
        conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))?;
        applied
    })
    .await?
}

fn apply(conn: &mut SyncConnection) -> anyhow::Result<usize> {
    let pending = conn.pending_migrations(MIGRATIONS).map_err(|e| anyhow::anyhow!("reading migrations: {e}"))?;
    for migration in &pending {
        if migration.name().version().to_string() == EMAIL_KEY_UNIQUE {
            let keyed = key_addresses(conn).context("keying email addresses")?;
            tracing::info!(keyed, "email addresses keyed");
        }
        conn.run_migration(migration.as_ref()).map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
    }
    Ok(pending.len())
}

#[derive(QueryableByName)]
struct Unkeyed {
    #[diesel(sql_type = Uuid)]
    id: uuid::Uuid,
    #[diesel(sql_type = Text)]
    email: String,
}

/// Gives every address without a key its key, and rewrites it in canonical form. An
/// address the parser refuses keeps its text and no key, and stops being verified
/// (it could never be delivered as stored). Returns how many accounts were keyed.
fn key_addresses(conn: &mut SyncConnection) -> anyhow::Result<usize> {
    use diesel::RunQueryDsl;
    let mut after = uuid::Uuid::nil();
    let mut keyed = 0;
    loop {
        let rows: Vec<Unkeyed> = sql_query(
            "SELECT id, email FROM users WHERE email IS NOT NULL AND email_key IS NULL AND id > $1 \
             ORDER BY id LIMIT $2",
        )
        .bind::<Uuid, _>(after)
        .bind::<diesel::sql_types::BigInt, _>(BATCH)
        .load(conn)?;
        let Some(last) = rows.last() else { return Ok(keyed) };
        after = last.id;
        let (mut ids, mut addresses, mut keys, mut refused) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for row in rows {
            match EmailAddress::parse(&row.email) {
                Ok(address) => {
                    ids.push(row.id);
                    keys.push(address.key().to_owned());
                    addresses.push(address.as_str().to_owned());
                }
                Err(_) => refused.push(row.id),
            }
        }
        keyed += ids.len();
        conn.transaction(|conn| {
            // Only an address whose canonical form differs is announced as a change
            // (the trigger compares the old and new text).
            sql_query(
                "UPDATE users SET email_key = v.key, email = v.address \
                 FROM unnest($1, $2, $3) AS v(id, address, key) WHERE users.id = v.id",
            )
            .bind::<Array<Uuid>, _>(&ids)
            .bind::<Array<Text>, _>(&addresses)
            .bind::<Array<Text>, _>(&keys)
            .execute(conn)?;
            sql_query("UPDATE users SET email_verified_at = NULL WHERE id = ANY($1) AND email_verified_at IS NOT NULL")
                .bind::<Array<Uuid>, _>(&refused)
                .execute(conn)?;
            diesel::QueryResult::Ok(())
        })?;
    }
}
