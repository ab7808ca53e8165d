//! `connection_init`: the token verified, the socket registered under its session,
//! the session checked. What the operations get is the socket's credentials, from
//! which each is admitted anew when it runs (`graphql::admission`).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_graphql::Data;
use tokio::{sync::mpsc, time::Instant};

use super::{
    close::Close,
    tracked::{Admitted, Tracked},
};
use crate::{
    auth::{Client, Credentials},
    error::AppError,
    graphql::subscription::SocketSession,
    http::{Http, bearer},
};

/// The protocol's `connection_init` callback: admits the socket, noting the outcome
/// where the loop reads it (and, for a refusal, the close that replaces the protocol's
/// generic one).
pub(super) async fn connection_init(
    http: Http,
    tracked: Arc<Mutex<Tracked>>,
    client: Client,
    unavailable: mpsc::UnboundedSender<()>,
    payload: serde_json::Value,
) -> async_graphql::Result<Data> {
    match admit(&http, payload, client, unavailable).await {
        Ok((data, admitted)) => {
            tracked.lock().unwrap().admitted = Some(admitted);
            Ok(data)
        }
        Err(close) => {
            tracked.lock().unwrap().refused = Some(close);
            Err(async_graphql::Error::new(close.frame().1))
        }
    }
}

/// Checks `connection_init`'s token and session and registers the socket. What the
/// operations get is the socket's credentials, from which each is admitted anew.
async fn admit(
    http: &Http,
    payload: serde_json::Value,
    client: Client,
    unavailable: mpsc::UnboundedSender<()>,
) -> Result<(Data, Admitted), Close> {
    let state = &http.state;
    let value = payload
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization")))
        .and_then(|(_, v)| v.as_str())
        .ok_or(Close::Unauthorized)?;
    let claims = bearer::verify(state, value).map_err(|reason| {
        tracing::debug!(reason, "socket refused at connection_init");
        Close::Unauthorized
    })?;
    let remaining = Duration::from_secs(u64::try_from(claims.exp - chrono::Utc::now().timestamp()).unwrap_or(0));
    let (user, session) = (claims.sub, claims.sid);
    // Registered before the session is checked: an end announced from here on reaches
    // the socket, so none can slip between the check and the registration.
    let max = state.config.realtime.max_sockets_per_user;
    let registration = state.events.sockets.register(user, session, max).map_err(|_| Close::TooMany)?;
    let credentials = Credentials { claims, client };
    // The session must be live; its second factor is each field's business (an AAL1
    // session may still call me or verifyMfa over the socket).
    match credentials.admit().caller(&state.auth).await {
        Ok(_) => {}
        Err(AppError::Unauthenticated(reason)) => {
            tracing::debug!(reason, "socket refused at connection_init");
            return Err(Close::Forbidden);
        }
        Err(err) => {
            tracing::warn!(error = ?err, "socket's session cannot be checked at connection_init");
            return Err(Close::Unavailable);
        }
    }
    let mut data = Data::default();
    data.insert(SocketSession { credentials, ended: registration.ended.clone(), unavailable });
    let admitted = Admitted { expires_at: Instant::now() + remaining, registration };
    Ok((data, admitted))
}
