//! Following the primary when it changes: the pool does not keep connections to a
//! server that stopped being the primary.
//!
//! After a failover the pool may hold connections to the old primary. Those its
//! shutdown or crash closed are dropped when they next leave the pool (`is_broken`).
//! Those still open on a server that now refuses writes (a primary demoted or put in
//! read-only mode while its sessions lived, a standby reached through a name that
//! moved) would fail every write they are given, forever. So when a statement fails
//! because its server takes no writes (SQLSTATE 25006, noted by the error's conversion
//! into `AppError`), every connection made before that moment is dropped when it next
//! leaves the pool, and new ones follow `DATABASE_URL`, whose
//! `target_session_attrs=read-write` picks the host that takes writes now. The request
//! that met the refusal answers `SERVICE_UNAVAILABLE` with `retryAfter`; the next one
//! finds the new primary, or is refused the same way while none is promoted yet.
//!
//! The moment is kept for the process, not per pool: a process talks to one database
//! through one pool.

use std::{
    sync::{
        LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

/// The process's start, from which moments are counted in nanoseconds.
static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);
/// Connections made before this many nanoseconds after `ORIGIN` are dropped; zero while
/// no server refused a write.
static REFUSED_AT: AtomicU64 = AtomicU64::new(0);

fn since_origin(at: Instant) -> u64 {
    at.saturating_duration_since(*ORIGIN).as_nanos() as u64
}

/// Notes `err` if it says the server takes no writes.
pub fn note(err: &diesel::result::Error) {
    use diesel::result::{DatabaseErrorKind, Error};
    if let Error::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, info) = err {
        // A moment strictly after every connection made so far.
        let now = since_origin(Instant::now()) + 1;
        if REFUSED_AT.fetch_max(now, Ordering::Relaxed) < now {
            metrics::counter!("authgraph_database_write_refusals_total").increment(1);
            tracing::warn!(
                error = info.message(),
                "database: the server refused a write (not the primary now); reconnecting"
            );
        }
    }
}

/// Whether a connection made at `created` may still be handed out: not if a server
/// refused a write since.
pub fn is_current(created: Instant) -> bool {
    since_origin(created) >= REFUSED_AT.load(Ordering::Relaxed)
}
