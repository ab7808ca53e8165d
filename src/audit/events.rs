//! Reading the trail: `auditEvents` (an admin's, any account's) and `mySecurityEvents`
//! (the owner's own), newest first, keyset-paged by the event id.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::{
    db::{
        self, DbPool,
        audit::{AuditEvent, Filter},
    },
    error::{AppError, AppResult},
};

pub const DEFAULT_PAGE_SIZE: i32 = 20;
pub const MAX_PAGE_SIZE: i32 = 100;

/// One page of events, newest first.
pub struct EventPage {
    pub events: Vec<AuditEvent>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
}

/// The opaque cursor of an event.
pub fn cursor(event: &AuditEvent) -> String {
    URL_SAFE_NO_PAD.encode(format!("a1:{}", event.id))
}

fn decode_cursor(cursor: &str) -> AppResult<i64> {
    let bad = || AppError::bad_input("after", "after is not a cursor from this API");
    let text = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = std::str::from_utf8(&text).map_err(|_| bad())?;
    text.strip_prefix("a1:").and_then(|id| id.parse().ok()).ok_or_else(bad)
}

/// A page of the events `filter` selects.
pub async fn page(pool: &DbPool, filter: Filter, first: Option<i32>, after: Option<&str>) -> AppResult<EventPage> {
    let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&first) {
        return Err(AppError::bad_input("first", format!("first must be between 1 and {MAX_PAGE_SIZE}")));
    }
    let before = after.map(decode_cursor).transpose()?;
    let limit = i64::from(first) + 1;
    let mut events = db::read(pool, |conn| {
        let filter = filter.clone();
        Box::pin(async move { db::audit::list(conn, &filter, before, limit).await })
    })
    .await?;
    let has_next_page = events.len() > first as usize;
    events.truncate(first as usize);
    Ok(EventPage { events, has_next_page, has_previous_page: before.is_some() })
}
