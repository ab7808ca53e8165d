//! `Subscription.sessionEvents`: the caller's account's events, from the instance's
//! hub (which every instance's transactions feed, see `events`), until the caller's
//! own session ends.

use async_graphql::{Context, Subscription};
use futures_util::Stream;
use tokio::sync::{mpsc, watch};

use super::{
    caller,
    guard::{Protected, second_factor_rule},
    state,
};
use crate::{
    app::{AppState, SharedState},
    auth::Credentials,
    db::ids::{SessionId, UserId},
    error::{AppError, AppResult},
    events::{Event, EventKind, Signal, Subscription as HubSubscription},
};

use super::types::SessionEventInfo;

#[derive(Default)]
pub struct SubscriptionRoot;

/// The field's name in the schema, for the second-factor rule.
const FIELD: &str = "sessionEvents";

/// What a socket hands each of its operations: the credentials every operation is
/// admitted from (see `admission`), `ended`, which turns true when its session ends
/// (whether an event said so or the re-check after a lost LISTEN connection did), and
/// where to say that the session could not be checked (the socket then closes with
/// 1013, which clients retry).
#[derive(Clone)]
pub struct SocketSession {
    pub credentials: Credentials,
    pub ended: watch::Receiver<bool>,
    pub unavailable: mpsc::UnboundedSender<()>,
}

impl SocketSession {
    /// What a refused admission means for the socket: a session found ended closes it
    /// (4403) as an event would; an expired token needs nothing (the socket closes with
    /// 4401 at that moment anyway).
    pub fn refused(&self, state: &AppState, err: &AppError) {
        if matches!(err, AppError::Unauthenticated(crate::auth::SESSION_ENDED)) {
            state.events.sockets.end_session(self.credentials.session_id());
        }
    }
}

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Protected. Live events about the caller's account and sessions. The stream ends,
    /// and the socket closes with 4403, when the caller's session ends. Each event is
    /// delivered only if the session would still be admitted to this field then (an
    /// account that turned a second factor on since ends the stream of a session that
    /// has not passed it, with MFA_REQUIRED).
    #[graphql(guard = "Protected")]
    async fn session_events(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = AppResult<SessionEventInfo>>> {
        let caller = caller(ctx).await?;
        let (user, mine) = (caller.user.id, caller.session_id);
        let socket = ctx.data_opt::<SocketSession>();
        let hub = state(ctx).events.subscribe_account(user);
        let start = Watching {
            hub,
            ended: socket.map(|s| s.ended.clone()),
            readmit: socket.map(|s| (ctx.data_unchecked::<SharedState>().clone(), s.clone())),
            done: false,
        };
        Ok(futures_util::stream::unfold(start, move |mut w| async move {
            if w.done {
                return None;
            }
            let event = w.next_for(user, mine).await?;
            w.done = event.kind == EventKind::SessionEnded && event.session == Some(mine);
            // The end of its own session is the stream's last word, said without asking
            // the session (it has ended). Anything else goes only to a caller the field
            // would admit now.
            if !w.done
                && let Err(err) = w.admitted().await
            {
                w.done = true;
                return Some((Err(err), w));
            }
            // From the announcing transaction's clock to the hand-over to the socket.
            metrics::histogram!("authgraph_ws_event_delivery_seconds").record(event.age().as_secs_f64());
            Some((Ok(SessionEventInfo::new(&event, mine)), w))
        }))
    }
}

struct Watching {
    hub: HubSubscription,
    ended: Option<watch::Receiver<bool>>,
    /// The socket's way back in: the state, and the socket's credentials and channels.
    readmit: Option<(SharedState, SocketSession)>,
    done: bool,
}

impl Watching {
    /// The next event of `user`'s; the end of `mine` however it was learnt.
    async fn next_for(&mut self, user: UserId, mine: SessionId) -> Option<Event> {
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

    /// The admission of this field, as an operation sent now would get it.
    async fn admitted(&self) -> AppResult<()> {
        let Some((state, socket)) = &self.readmit else { return Ok(()) };
        let auth = socket.credentials.admit();
        match auth.caller(&state.auth).await {
            Ok(caller) => second_factor_rule(caller, FIELD),
            Err(err @ AppError::Unauthenticated(_)) => {
                socket.refused(state, &err);
                Err(err)
            }
            Err(err) => {
                let _ = socket.unavailable.send(());
                Err(err)
            }
        }
    }
}

/// The end of the subscription's own session, learnt from the socket's registration.
fn ended_now(user: UserId, mine: SessionId) -> Event {
    Event { kind: EventKind::SessionEnded, user, session: Some(mine), at: chrono::Utc::now(), user_agent: None }
}
