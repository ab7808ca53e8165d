//! Session events on this instance: one dedicated `LISTEN` connection per instance
//! (`listener`, not from the pool) receives what every instance's transactions
//! announced (`db::events`), and the hub hands each event to whoever subscribed here.
//!
//! A subscriber names the account it follows, and an event wakes only the subscribers
//! of its own account (an index by account, not a broadcast to all: with thousands of
//! subscriptions on an instance, one event must not cost a wake-up of each). Whenever
//! the connection is (re)made the hub sends `Signal::Resync` to everyone: events
//! announced while it was down are lost to this instance, so a subscriber must re-read
//! what it depends on (a socket re-checks its session). A subscriber that falls behind
//! its account's buffer is told the same way (`tokio::sync::broadcast` reports the lag).

pub mod listener;
pub mod sockets;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use tokio::sync::broadcast;

pub use crate::db::events::{Event, EventKind};
use crate::db::ids::UserId;

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum Signal {
    Event(Arc<Event>),
    /// The LISTEN connection was made again (or a subscriber lagged): events may have
    /// been missed; re-read the state.
    Resync,
}

/// Events buffered for the observers of every event (tests, tools) before one counts
/// as lagging.
const CAPACITY: usize = 1024;
/// Events buffered per account before its slowest subscriber counts as lagging: one
/// account's events come a few at a time (a sign-in, a logout), and the buffer is
/// allocated whole for every account followed here, so it stays small.
const ACCOUNT_CAPACITY: usize = 64;

/// The accounts followed on this instance, each with its own channel; an entry goes
/// when its last subscriber does.
type Accounts = Arc<Mutex<HashMap<UserId, broadcast::Sender<Signal>>>>;

pub struct Hub {
    /// Every event, for observers of all of them.
    tx: broadcast::Sender<Signal>,
    accounts: Accounts,
    /// How many subscriber wake-ups events have caused: one per subscriber of the
    /// event's account, none for anyone else's.
    deliveries: AtomicU64,
    listening: AtomicBool,
    /// The subscription sockets open here, which the listener ends with their sessions.
    pub sockets: Arc<sockets::Sockets>,
    /// The session cache, which every notification and every loss of the connection
    /// reaches before any subscriber.
    pub cache: Arc<crate::session_cache::SessionCache>,
}

impl Hub {
    pub fn new(cache: Arc<crate::session_cache::SessionCache>) -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
            accounts: Arc::default(),
            deliveries: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            sockets: Arc::default(),
            cache,
        }
    }

    /// A stream of every event from now on, and `Resync`s.
    pub fn subscribe(&self) -> Subscription {
        Subscription { rx: self.tx.subscribe(), account: None }
    }

    /// A stream of `user`'s events from now on, and `Resync`s.
    pub fn subscribe_account(&self, user: UserId) -> Subscription {
        let mut accounts = self.accounts.lock().unwrap();
        let rx = accounts.entry(user).or_insert_with(|| broadcast::channel(ACCOUNT_CAPACITY).0).subscribe();
        Subscription { rx, account: Some((user, self.accounts.clone())) }
    }

    /// How many subscriptions are open on this instance.
    pub fn subscribers(&self) -> usize {
        let followers: usize = self.accounts.lock().unwrap().values().map(broadcast::Sender::receiver_count).sum();
        self.tx.receiver_count() + followers
    }

    /// How many subscriber wake-ups events have caused so far on this instance.
    pub fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }

    /// Whether the LISTEN connection is up: while it is not, events are being missed.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    fn set_listening(&self, up: bool) {
        self.cache.set_listening(up);
        self.listening.store(up, Ordering::Relaxed);
        metrics::gauge!("authgraph_events_listening").set(if up { 1.0 } else { 0.0 });
    }

    /// Hands an event to its account's subscribers (and the observers of all).
    fn publish(&self, event: Event) {
        let (user, signal) = (event.user, Signal::Event(Arc::new(event)));
        if let Some(tx) = self.accounts.lock().unwrap().get(&user) {
            // No subscriber is no error: nobody is waiting for this event here.
            let woken = tx.send(signal.clone()).unwrap_or(0);
            self.deliveries.fetch_add(woken as u64, Ordering::Relaxed);
        }
        let _ = self.tx.send(signal);
    }

    /// Tells every subscriber that events may have been missed.
    fn resync(&self) {
        for tx in self.accounts.lock().unwrap().values() {
            let _ = tx.send(Signal::Resync);
        }
        let _ = self.tx.send(Signal::Resync);
    }
}

/// One subscriber's view of the hub.
pub struct Subscription {
    rx: broadcast::Receiver<Signal>,
    /// The account followed, and the index to leave when dropped.
    account: Option<(UserId, Accounts)>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some((user, accounts)) = self.account.take() {
            let mut accounts = accounts.lock().unwrap();
            // This receiver still counts until the struct is gone: it is the last one
            // when the count is 1.
            if accounts.get(&user).is_some_and(|tx| tx.receiver_count() <= 1) {
                accounts.remove(&user);
            }
        }
    }
}

impl Subscription {
    /// The next signal; a lag reads as `Resync`. `None` once the hub is gone.
    pub async fn next(&mut self) -> Option<Signal> {
        match self.rx.recv().await {
            Ok(signal) => Some(signal),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Signal::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_of(user: UserId) -> Event {
        Event { kind: EventKind::SessionStarted, user, session: None, at: chrono::Utc::now(), user_agent: None }
    }

    #[test]
    fn an_event_wakes_the_subscribers_of_its_account_only() {
        let hub = Hub::new(Arc::new(crate::session_cache::SessionCache::new(0)));
        let (ada, bob) = (UserId::random(), UserId::random());
        let mut ada_subscription = hub.subscribe_account(ada);
        let mut bobs: Vec<_> = (0..50).map(|_| hub.subscribe_account(bob)).collect();
        hub.publish(event_of(ada));
        assert_eq!(hub.deliveries(), 1, "one wake-up: ada's subscription, none of bob's fifty");
        assert!(matches!(ada_subscription.rx.try_recv(), Ok(Signal::Event(e)) if e.user == ada));
        assert!(bobs.iter_mut().all(|s| s.rx.try_recv().is_err()));

        // Resync reaches everyone; the index forgets an account with its last subscriber.
        hub.resync();
        assert!(bobs.iter_mut().all(|s| matches!(s.rx.try_recv(), Ok(Signal::Resync))));
        assert_eq!(hub.subscribers(), 51);
        bobs.clear();
        assert_eq!(hub.subscribers(), 1);
        assert!(!hub.accounts.lock().unwrap().contains_key(&bob));
        hub.publish(event_of(bob));
        assert_eq!(hub.deliveries(), 1);
    }
}
