//! The instance's open subscription sockets, by session: so that the end of a session
//! (an event, or the re-check after the LISTEN connection came back) reaches every
//! socket tied to it, and so that an account cannot hold more than its share.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::watch;

use crate::db::ids::{SessionId, UserId};

#[derive(Default)]
pub struct Sockets {
    inner: Mutex<Registry>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Registry {
    by_session: HashMap<SessionId, Vec<(u64, watch::Sender<bool>)>>,
    per_user: HashMap<UserId, usize>,
}

/// The account already holds as many sockets as it may.
#[derive(Debug, PartialEq, Eq)]
pub struct TooMany;

/// A registered socket: `ended` turns true when its session ends. Unregisters when
/// dropped.
pub struct Registration {
    sockets: Arc<Sockets>,
    id: u64,
    user: UserId,
    session: SessionId,
    pub ended: watch::Receiver<bool>,
}

impl Sockets {
    /// Registers a socket of `session`, unless `user` holds `max_per_user` already.
    pub fn register(
        self: &Arc<Self>,
        user: UserId,
        session: SessionId,
        max_per_user: usize,
    ) -> Result<Registration, TooMany> {
        let mut registry = self.inner.lock().unwrap();
        let held = registry.per_user.entry(user).or_default();
        if *held >= max_per_user {
            return Err(TooMany);
        }
        *held += 1;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, ended) = watch::channel(false);
        registry.by_session.entry(session).or_default().push((id, tx));
        metrics::gauge!("authgraph_ws_sockets").increment(1.0);
        Ok(Registration { sockets: self.clone(), id, user, session, ended })
    }

    /// Tells every socket of `session` that it ended.
    pub fn end_session(&self, session: SessionId) {
        if let Some(sockets) = self.inner.lock().unwrap().by_session.get(&session) {
            for (_, tx) in sockets {
                let _ = tx.send(true);
            }
        }
    }

    /// The sessions that have sockets here.
    pub fn sessions(&self) -> Vec<SessionId> {
        self.inner.lock().unwrap().by_session.keys().copied().collect()
    }

    /// How many sockets are open.
    pub fn count(&self) -> usize {
        self.inner.lock().unwrap().by_session.values().map(Vec::len).sum()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registry = self.sockets.inner.lock().unwrap();
        if let Some(list) = registry.by_session.get_mut(&self.session) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                registry.by_session.remove(&self.session);
            }
        }
        if let Some(held) = registry.per_user.get_mut(&self.user) {
            *held -= 1;
            if *held == 0 {
                registry.per_user.remove(&self.user);
            }
        }
        metrics::gauge!("authgraph_ws_sockets").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_holds_its_share_and_a_session_end_reaches_its_sockets() {
        let sockets = Arc::new(Sockets::default());
        let (user, session, other) = (UserId::random(), SessionId::random(), SessionId::random());
        let a = sockets.register(user, session, 2).unwrap();
        let b = sockets.register(user, other, 2).unwrap();
        assert_eq!(sockets.register(user, session, 2).err(), Some(TooMany));
        sockets.end_session(session);
        assert!(*a.ended.borrow());
        assert!(!*b.ended.borrow());
        drop(a);
        assert_eq!(sockets.count(), 1);
        assert_eq!(sockets.sessions(), vec![other]);
        let _c = sockets.register(user, session, 2).expect("a place came free");
    }
}
