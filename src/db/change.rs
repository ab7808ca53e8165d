//! A change to accounts or sessions, and what must follow its commit.
//!
//! Every query that ends sessions, changes an account or queues mail takes a
//! `&mut Change` instead of a bare connection, and notes on it what the change
//! implies: these accounts must be forgotten by every session cache, the mail sender
//! must wake. A `Change` exists only inside `crate::change::Changes::run`, which runs
//! the transaction and then carries out what was noted, in one place: so a flow cannot
//! make such a change and forget its consequences, and a new flow adds no cache or
//! mail call of its own. It is also where a change may add rows to its own
//! transaction (the audit trail's, later): a `Change` holds the transaction's
//! connection, and everything noted on it is known before the commit.

use std::collections::BTreeSet;

use diesel_async::AsyncPgConnection;

use super::ids::UserId;

/// What a committed change asks of this instance.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Accounts whose sessions ended or whose rows changed: forget them in the cache.
    pub accounts: BTreeSet<UserId>,
    /// A message was queued: wake the sender.
    pub mail: bool,
}

/// The transaction of one change, with the effects it has noted so far. Derefs to the
/// connection for the change's other queries.
pub struct Change<'c> {
    conn: &'c mut AsyncPgConnection,
    effects: &'c mut Effects,
}

impl<'c> Change<'c> {
    /// Only `Changes::run` makes one, inside the transaction it runs.
    pub(crate) fn new(conn: &'c mut AsyncPgConnection, effects: &'c mut Effects) -> Self {
        Self { conn, effects }
    }

    /// Sessions of `user` ended, or its row changed.
    pub fn touched(&mut self, user: UserId) {
        self.effects.accounts.insert(user);
    }

    /// A message went into the outbox.
    pub fn queued_mail(&mut self) {
        self.effects.mail = true;
    }
}

impl std::ops::Deref for Change<'_> {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        self.conn
    }
}

impl std::ops::DerefMut for Change<'_> {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        self.conn
    }
}
