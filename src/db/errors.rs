//! What a database failure means, decided where the database is known: a lost
//! connection is worth a retry (`SERVICE_UNAVAILABLE`), anything else is internal,
//! and a unique violation is named by its constraint for the query's caller to judge.

use super::PoolError;
use crate::error::AppError;

/// Database errors become `Unavailable` when the connection is the problem and
/// `Internal` otherwise. Not-found and unique violations are decided where the query
/// is made, because only there is it known what they mean.
impl From<diesel::result::Error> for AppError {
    fn from(err: diesel::result::Error) -> Self {
        if let Some(until) = banned(&err) {
            return Self::AccountBanned { until };
        }
        super::failover::note(&err);
        if is_connection_error(&err) { Self::unavailable(err) } else { Self::internal(err) }
    }
}

impl From<PoolError> for AppError {
    fn from(err: PoolError) -> Self {
        Self::unavailable(anyhow::anyhow!("database pool: {err}"))
    }
}

/// True when the error is about the connection, not the query: the database went
/// away (restart, failover, network), or the server connected to takes no writes now
/// (a standby, or a primary demoted or put in read-only mode: SQLSTATE 25006, also
/// "cannot execute … during recovery"), so the same statement may well work on a new
/// connection, which `target_session_attrs=read-write` takes to the primary.
pub fn is_connection_error(err: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match err {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::UnableToSendCommand
            | DatabaseErrorKind::ReadOnlyTransaction,
            _,
        ) => true,
        // 57P01-03: the server is shutting down or starting up; it says so in words only.
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let msg = info.message();
            msg.starts_with("terminating connection") || msg.starts_with("the database system is")
        }
        Error::BrokenTransactionManager => true,
        _ => false,
    }
}

/// A session refused because its account is banned (the `sessions_refuse_banned`
/// trigger, which every sign-in path meets once its credential verified): the end of
/// the ban, `None` when it is permanent.
fn banned(err: &diesel::result::Error) -> Option<Option<chrono::DateTime<chrono::Utc>>> {
    let diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::CheckViolation, info) = err else {
        return None;
    };
    if info.constraint_name() != Some("users_banned") {
        return None;
    }
    let until = info
        .details()
        .and_then(|secs| secs.parse::<f64>().ok())
        .and_then(|secs| chrono::DateTime::from_timestamp(secs as i64, 0))
        .filter(|until| !super::models::is_permanent_ban(*until));
    Some(until)
}

/// The name of the unique constraint a Diesel error violated, if any.
pub fn unique_violation(err: &diesel::result::Error) -> Option<&str> {
    match err {
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, info) => {
            info.constraint_name()
        }
        _ => None,
    }
}
