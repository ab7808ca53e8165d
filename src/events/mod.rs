//! Session events on this instance: one dedicated `LISTEN` connection per instance
//! (`listener`, not from the pool) receives what every instance's transactions
//! announced (`db::events`), and the hub hands each event to whoever subscribed here.
//!
//! Subscribers filter by account themselves. Whenever the connection is (re)made the
//! hub sends `Signal::Resync`: events announced while it was down are lost to this
//! instance, so a subscriber must re-read what it depends on (a socket re-checks its
//! session). A subscriber that falls behind the hub's buffer is told the same way
//! (`tokio::sync::broadcast` reports the lag).

pub mod cache;
pub mod listener;
pub mod sockets;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::sync::broadcast;

pub use crate::db::events::{Event, EventKind};

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum Signal {
    Event(Arc<Event>),
    /// The LISTEN connection was made again (or a subscriber lagged): events may have
    /// been missed; re-read the state.
    Resync,
}

/// Events buffered per subscriber before it counts as lagging.
const CAPACITY: usize = 1024;

pub struct Hub {
    tx: broadcast::Sender<Signal>,
    listening: AtomicBool,
    /// The subscription sockets open here, which the listener ends with their sessions.
    pub sockets: Arc<sockets::Sockets>,
    /// The session cache, which every notification and every loss of the connection
    /// reaches before any subscriber.
    pub cache: Arc<cache::SessionCache>,
}

impl Hub {
    pub fn new(cache: Arc<cache::SessionCache>) -> Self {
        Self { tx: broadcast::channel(CAPACITY).0, listening: AtomicBool::new(false), sockets: Arc::default(), cache }
    }

    /// A stream of every event from now on, and `Resync`s.
    pub fn subscribe(&self) -> Subscription {
        Subscription { rx: self.tx.subscribe() }
    }

    /// How many subscriptions are open on this instance.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
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

    fn publish(&self, signal: Signal) {
        // No subscriber is no error: nobody is waiting for this event here.
        let _ = self.tx.send(signal);
    }
}

/// One subscriber's view of the hub.
pub struct Subscription {
    rx: broadcast::Receiver<Signal>,
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
