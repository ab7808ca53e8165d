//! The instance's cache of live sessions: for a session it has seen, the account row
//! and the assurance the session reached, so the guard and `me` answer without a query.
//!
//! It can be out of date by at most one notification:
//! - the instance that changes a session or an account forgets the account's entries
//!   itself once the change committed, before the mutation answers (`forget_user`);
//! - every other instance forgets them when the change's notification arrives (the
//!   listener calls `apply`);
//! - while the LISTEN connection is down nothing is served or kept (`set_listening`),
//!   since notifications are being missed;
//! - an entry lives no longer than the access token that filled it, nor than its
//!   session's expiry at that moment;
//! - a token that claims more assurance than the entry holds is checked in the
//!   database (verifyMfa raised the session; raising announces nothing).
//!
//! A fill races the changes it could miss: it takes the cache's epoch before reading
//! the database and is kept only if no entry was forgotten since (`Ticket`). So a read
//! that began before a change committed can never re-insert what the change's
//! forgetting removed.
//!
//! Bounded in entries (`SESSION_CACHE_ENTRIES`); an entry is one account row, whose
//! fields the validation bounds (name 100 characters, username 32, address 254), so
//! at most about 1 KiB each.

use std::{
    collections::{HashMap, hash_map},
    sync::RwLock,
};

use chrono::{DateTime, Utc};

use crate::db::{
    events::{Event, EventKind},
    ids::{SessionId, UserId},
    models::{Assurance, User},
};

pub struct SessionCache {
    max_entries: usize,
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Counts forgettings; a fill that began in an earlier epoch is dropped.
    epoch: u64,
    /// The LISTEN connection is up: only then does the cache serve or keep anything.
    listening: bool,
    sessions: HashMap<SessionId, Entry>,
    by_user: HashMap<UserId, Vec<SessionId>>,
}

#[derive(Clone)]
struct Entry {
    user: User,
    reached: Assurance,
    until: DateTime<Utc>,
}

/// What a miss hands the reader: proof of when it began, for `fill`.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    epoch: u64,
}

pub enum Lookup {
    Hit { user: User, reached: Assurance },
    Miss(Ticket),
}

impl SessionCache {
    /// A cache of at most `max_entries` sessions; zero turns it off (every check
    /// queries the database).
    pub fn new(max_entries: usize) -> Self {
        Self { max_entries, inner: RwLock::default() }
    }

    pub fn is_enabled(&self) -> bool {
        self.max_entries > 0
    }

    /// The session of `user` as last seen, if the cache may answer for a token that
    /// claims `claimed`.
    pub fn get(&self, user: UserId, session: SessionId, claimed: Assurance) -> Lookup {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let ticket = Ticket { epoch: inner.epoch };
        if !inner.listening {
            return Lookup::Miss(ticket);
        }
        match inner.sessions.get(&session) {
            Some(entry) if entry.user.id == user && entry.until > Utc::now() && claimed <= entry.reached => {
                metrics::counter!("authgraph_session_cache_hits_total").increment(1);
                Lookup::Hit { user: entry.user.clone(), reached: entry.reached }
            }
            _ => {
                metrics::counter!("authgraph_session_cache_misses_total").increment(1);
                Lookup::Miss(ticket)
            }
        }
    }

    /// Keeps what a reader found live in the database until `until`, unless something
    /// was forgotten since its `ticket` (the read may predate that change).
    pub fn fill(&self, ticket: Ticket, session: SessionId, user: &User, reached: Assurance, until: DateTime<Utc>) {
        if !self.is_enabled() {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if !inner.listening || inner.epoch != ticket.epoch {
            return;
        }
        if inner.sessions.len() >= self.max_entries && !inner.sessions.contains_key(&session) {
            inner.make_room(self.max_entries);
        }
        let entry = Entry { user: user.clone(), reached, until };
        if let hash_map::Entry::Vacant(_) = inner.sessions.entry(session) {
            inner.by_user.entry(user.id).or_default().push(session);
        }
        inner.sessions.insert(session, entry);
        metrics::gauge!("authgraph_session_cache_entries").set(inner.sessions.len() as f64);
    }

    /// Forgets every session of `user`: its account changed, or one of its sessions
    /// ended. Called by the instance that made the change once it committed, and for
    /// every notification.
    pub fn forget_user(&self, user: UserId) {
        if !self.is_enabled() {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.epoch += 1;
        if let Some(sessions) = inner.by_user.remove(&user) {
            for session in sessions {
                inner.sessions.remove(&session);
            }
        }
        metrics::gauge!("authgraph_session_cache_entries").set(inner.sessions.len() as f64);
    }

    /// What a notification means for the cache: anything but a new session changes
    /// what the account's entries say.
    pub fn apply(&self, event: &Event) {
        if event.kind != EventKind::SessionStarted {
            self.forget_user(event.user);
        }
    }

    /// The LISTEN connection went down (everything is dropped and nothing is kept until
    /// it is back) or came back.
    pub fn set_listening(&self, up: bool) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.epoch += 1;
        inner.listening = up && self.is_enabled();
        if !up {
            inner.sessions.clear();
            inner.by_user.clear();
        }
        metrics::gauge!("authgraph_session_cache_entries").set(inner.sessions.len() as f64);
    }

    /// How many sessions are cached.
    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    /// Drops the expired entries; if none had expired, an arbitrary tenth of them.
    fn make_room(&mut self, max_entries: usize) {
        let now = Utc::now();
        let mut drop: Vec<SessionId> = self.sessions.iter().filter(|(_, e)| e.until <= now).map(|(s, _)| *s).collect();
        if drop.is_empty() {
            drop = self.sessions.keys().take((max_entries / 10).max(1)).copied().collect();
        }
        for session in drop {
            if let Some(entry) = self.sessions.remove(&session)
                && let hash_map::Entry::Occupied(mut held) = self.by_user.entry(entry.user.id)
            {
                held.get_mut().retain(|s| *s != session);
                if held.get().is_empty() {
                    held.remove();
                }
            }
        }
        metrics::counter!("authgraph_session_cache_evictions_total").increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::models::Role;

    fn user() -> User {
        User {
            id: UserId::random(),
            name: "Ada".into(),
            username: "ada".into(),
            role: Role::User,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            email: None,
            email_verified_at: None,
            mfa_enabled_at: None,
            banned_until: None,
        }
    }

    fn listening(max: usize) -> SessionCache {
        let cache = SessionCache::new(max);
        cache.set_listening(true);
        cache
    }

    fn miss(lookup: Lookup) -> Ticket {
        match lookup {
            Lookup::Miss(ticket) => ticket,
            Lookup::Hit { .. } => panic!("expected a miss"),
        }
    }

    fn later() -> DateTime<Utc> {
        Utc::now() + chrono::Duration::minutes(5)
    }

    #[test]
    fn a_fill_is_served_until_forgotten() {
        let cache = listening(10);
        let (ada, session) = (user(), SessionId::random());
        let ticket = miss(cache.get(ada.id, session, Assurance::Aal1));
        cache.fill(ticket, session, &ada, Assurance::Aal1, later());
        assert!(matches!(cache.get(ada.id, session, Assurance::Aal1), Lookup::Hit { .. }));
        // Another account's token naming the same session id never hits.
        assert!(matches!(cache.get(UserId::random(), session, Assurance::Aal1), Lookup::Miss(_)));
        cache.forget_user(ada.id);
        assert!(matches!(cache.get(ada.id, session, Assurance::Aal1), Lookup::Miss(_)));
        assert!(cache.is_empty());
    }

    #[test]
    fn a_read_that_began_before_a_forgetting_is_not_kept() {
        let cache = listening(10);
        let (ada, session) = (user(), SessionId::random());
        let ticket = miss(cache.get(ada.id, session, Assurance::Aal1));
        // The change commits and is forgotten while the reader's query is in flight.
        cache.forget_user(UserId::random());
        cache.fill(ticket, session, &ada, Assurance::Aal1, later());
        assert!(cache.is_empty());
    }

    #[test]
    fn nothing_is_served_or_kept_while_not_listening() {
        let cache = listening(10);
        let (ada, session) = (user(), SessionId::random());
        cache.fill(miss(cache.get(ada.id, session, Assurance::Aal1)), session, &ada, Assurance::Aal1, later());
        cache.set_listening(false);
        assert!(cache.is_empty());
        let ticket = miss(cache.get(ada.id, session, Assurance::Aal1));
        cache.fill(ticket, session, &ada, Assurance::Aal1, later());
        assert!(cache.is_empty());
        // A read begun while down and finished after the connection came back is dropped too.
        cache.set_listening(true);
        cache.fill(ticket, session, &ada, Assurance::Aal1, later());
        assert!(cache.is_empty());
    }

    #[test]
    fn expired_entries_and_higher_claims_go_to_the_database() {
        let cache = listening(10);
        let (ada, session, other) = (user(), SessionId::random(), SessionId::random());
        cache.fill(miss(cache.get(ada.id, session, Assurance::Aal1)), session, &ada, Assurance::Aal1, Utc::now());
        assert!(matches!(cache.get(ada.id, session, Assurance::Aal1), Lookup::Miss(_)), "expired");
        cache.fill(miss(cache.get(ada.id, other, Assurance::Aal1)), other, &ada, Assurance::Aal1, later());
        assert!(matches!(cache.get(ada.id, other, Assurance::Aal2), Lookup::Miss(_)), "raised since");
    }

    #[test]
    fn the_bound_holds_and_events_forget() {
        let cache = listening(20);
        let ada = user();
        for _ in 0..100 {
            let session = SessionId::random();
            cache.fill(miss(cache.get(ada.id, session, Assurance::Aal1)), session, &ada, Assurance::Aal1, later());
            assert!(cache.len() <= 20);
        }
        let started =
            Event { kind: EventKind::SessionStarted, user: ada.id, session: None, at: Utc::now(), user_agent: None };
        cache.apply(&started);
        assert!(!cache.is_empty(), "a new session changes no entry");
        cache.apply(&Event { kind: EventKind::AccountUpdated, ..started });
        assert!(cache.is_empty());
        assert!(cache.inner.read().unwrap().by_user.is_empty());
    }

    #[test]
    fn zero_entries_turns_it_off() {
        let cache = listening(0);
        let (ada, session) = (user(), SessionId::random());
        cache.fill(miss(cache.get(ada.id, session, Assurance::Aal1)), session, &ada, Assurance::Aal1, later());
        assert!(cache.is_empty());
    }
}
