//! `Subscription.sessionEvents`: the caller's account's events, from the instance's
//! hub (which every instance's transactions feed, see `events`), until the caller's
//! own session ends.

use async_graphql::{Context, Subscription};
use futures_util::Stream;
use tokio::sync::watch;

use super::{caller, guard::Authenticated, state, types::SessionEventInfo};
use crate::{
    db::ids::SessionId,
    events::{Event, EventKind, Signal, Subscription as HubSubscription},
};

#[derive(Default)]
pub struct SubscriptionRoot;

/// What a socket hands its subscriptions: `ended` turns true when its session ends,
/// whether an event said so or the re-check after a lost LISTEN connection did.
pub struct SocketSession {
    pub ended: watch::Receiver<bool>,
}

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Protected. Live events about the caller's account and sessions. The stream ends,
    /// and the socket closes with 4403, when the caller's session ends.
    #[graphql(guard = "Authenticated")]
    async fn session_events(&self, ctx: &Context<'_>) -> async_graphql::Result<impl Stream<Item = SessionEventInfo>> {
        let caller = caller(ctx).await?;
        let (user, mine) = (caller.user.id, caller.session_id);
        let ended = ctx.data_opt::<SocketSession>().map(|s| s.ended.clone());
        let hub = state(ctx).events.subscribe();
        let start = Watching { hub, ended, done: false };
        Ok(futures_util::stream::unfold(start, move |mut w| async move {
            if w.done {
                return None;
            }
            let event = w.next_for(user, mine).await?;
            w.done = event.kind == EventKind::SessionEnded && event.session == Some(mine);
            // From the announcing transaction's clock to the hand-over to the socket.
            metrics::histogram!("authgraph_ws_event_delivery_seconds").record(event.age().as_secs_f64());
            Some((SessionEventInfo::new(&event, mine), w))
        }))
    }
}

struct Watching {
    hub: HubSubscription,
    ended: Option<watch::Receiver<bool>>,
    done: bool,
}

impl Watching {
    /// The next event of `user`'s; the end of `mine` however it was learnt.
    async fn next_for(&mut self, user: crate::db::ids::UserId, mine: SessionId) -> Option<Event> {
        loop {
            if let Some(ended) = &self.ended
                && *ended.borrow()
            {
                return Some(ended_now(user, mine));
            }
            let ended = async {
                match &mut self.ended {
                    Some(ended) => {
                        if ended.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                signal = self.hub.next() => match signal? {
                    Signal::Event(event) if event.user == user => return Some((*event).clone()),
                    Signal::Event(_) | Signal::Resync => {}
                },
                () = ended => {}
            }
        }
    }
}

/// The end of the subscription's own session, learnt from the socket's registration.
fn ended_now(user: crate::db::ids::UserId, mine: SessionId) -> Event {
    Event { kind: EventKind::SessionEnded, user, session: Some(mine), at: chrono::Utc::now(), user_agent: None }
}
