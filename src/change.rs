//! Where every change to accounts and sessions is carried out: its transaction, then
//! what its commit implies on this instance (see `db::change`).
//!
//! Flows never call the session cache's `forget_user` or the mail sender's `wake`
//! themselves: the queries that end sessions, change accounts or queue mail note it on
//! the `Change` they require, and `Changes::run` carries the notes out once the
//! transaction is over, before the flow answers. Other instances learn of the change
//! from the database's `NOTIFY`, which the same transaction sends.

use std::{future::Future, sync::Arc};

use diesel_async::AsyncConnection;

use crate::{
    db::{
        DbPool,
        change::{Change, Effects, Origin},
    },
    error::{AppError, AppResult},
    mail::Mail,
    session_cache::SessionCache,
};

/// An async closure whose future can be named, so that it can be required to be
/// `Send` (as diesel-async's `transaction` requires of its callback).
pub trait AsyncBody<A, R>: AsyncFnOnce(A) -> R + FnOnce(A) -> <Self as AsyncBody<A, R>>::Fut {
    type Fut: Future<Output = R>;
}

impl<F, A, Fut, R> AsyncBody<A, R> for F
where
    F: AsyncFnOnce(A) -> R + FnOnce(A) -> Fut,
    Fut: Future<Output = R>,
{
    type Fut = Fut;
}

/// The pool, and what a commit's effects reach on this instance.
pub struct Changes {
    pool: DbPool,
    cache: Arc<SessionCache>,
    /// Absent in the command-line tool, which runs no sender (the server's sender
    /// finds queued mail on its next round).
    mail: Option<Arc<Mail>>,
}

impl Changes {
    pub fn new(pool: DbPool, cache: Arc<SessionCache>, mail: Option<Arc<Mail>>) -> Self {
        Self { pool, cache, mail }
    }

    /// The pool, for the reads that follow a change.
    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    /// Runs `body` in one transaction, then carries out what it noted. The effects run
    /// whether the transaction committed or not: forgetting a cache entry or waking the
    /// sender is always safe, and a body that failed after ending sessions may still
    /// have been told so by a concurrent commit.
    pub async fn run<T, F>(&self, body: F) -> AppResult<T>
    where
        T: Send,
        for<'r, 'c> F: AsyncFnOnce(&'r mut Change<'c>) -> AppResult<T>
            + AsyncBody<&'r mut Change<'c>, AppResult<T>, Fut: Send>
            + Send,
    {
        let mut effects = Effects::default();
        let outcome = match self.pool.get().await {
            Ok(mut conn) => {
                let effects = &mut effects;
                let origin = Origin::current();
                conn.transaction::<_, AppError, _>(async |conn| {
                    if let Some(origin) = &origin {
                        origin.apply(conn).await?;
                    }
                    let mut change = Change::new(conn, effects);
                    body(&mut change).await
                })
                .await
            }
            Err(err) => Err(err.into()),
        };
        self.carry_out(effects);
        outcome
    }

    fn carry_out(&self, effects: Effects) {
        for account in effects.accounts {
            self.cache.forget_user(account);
        }
        if effects.mail
            && let Some(mail) = &self.mail
        {
            mail.wake();
        }
    }
}
