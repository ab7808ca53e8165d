//! A change to accounts or sessions, and what must follow its commit.
//!
//! Every query that ends sessions, changes an account or queues mail takes a
//! `&mut Change` instead of a bare connection, and notes on it what the change
//! implies: these accounts must be forgotten by every session cache, the mail sender
//! must wake. A `Change` exists only inside `crate::change::Changes::run`, which runs
//! the transaction and then carries out what was noted, in one place: so a flow cannot
//! make such a change and forget its consequences, and a new flow adds no cache or
//! mail call of its own.
//!
//! The audit trail's rows are written by triggers in the same transaction (see the
//! migration `audit_trail`); what they say of the request that made the change (its
//! network, user agent, acting account, operator, reason) comes from the `Origin` the
//! door put in scope, which `Changes::run` hands the transaction first.

use std::collections::BTreeSet;

use diesel::{
    QueryResult, sql_query,
    sql_types::{Nullable, Text},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::ids::UserId;

/// Where a change comes from, as its audit rows name it. The door that admits a
/// request (an HTTP request, an operation on a socket, the command line) puts one in
/// scope for the request's work (`ORIGIN.scope`); a change made outside any is
/// recorded without it.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The client's network as the limits count it.
    pub network: Option<String>,
    pub user_agent: Option<String>,
    /// The account acting on another's (an admin); by default the subject acts.
    pub actor: Option<UserId>,
    /// The operator of the command line (their OS user).
    pub operator: Option<String>,
    /// Why, as the acting admin or operator said.
    pub reason: Option<String>,
}

tokio::task_local! {
    /// The origin of the request being served (see `Origin`).
    pub static ORIGIN: Origin;
}

impl Origin {
    /// The origin in scope, if a door set one.
    pub fn current() -> Option<Self> {
        ORIGIN.try_with(Clone::clone).ok()
    }

    /// The origin in scope (the default outside any), with `actor` named as the
    /// account acting when one is given: an admin acting on another's account.
    pub fn acting(actor: Option<UserId>) -> Self {
        let mut origin = Self::current().unwrap_or_default();
        origin.actor = actor.or(origin.actor);
        origin
    }

    /// Names this origin to the current transaction, for its audit rows.
    pub async fn apply(&self, conn: &mut AsyncPgConnection) -> QueryResult<()> {
        sql_query(
            "SELECT set_config('authgraph.network', coalesce($1, ''), true), \
                    set_config('authgraph.user_agent', coalesce(left($2, 512), ''), true), \
                    set_config('authgraph.actor', coalesce($3, ''), true), \
                    set_config('authgraph.operator', coalesce($4, ''), true), \
                    set_config('authgraph.reason', coalesce(left($5, 1000), ''), true)",
        )
        .bind::<Nullable<Text>, _>(self.network.as_deref())
        .bind::<Nullable<Text>, _>(self.user_agent.as_deref())
        .bind::<Nullable<Text>, _>(self.actor.map(|a| a.to_string()))
        .bind::<Nullable<Text>, _>(self.operator.as_deref())
        .bind::<Nullable<Text>, _>(self.reason.as_deref())
        .execute(conn)
        .await
        .map(drop)
    }
}

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
