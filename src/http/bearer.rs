//! Reading `Authorization: Bearer …` into the request's `RequestAuth`.

use axum::http::{HeaderMap, header};

use std::net::IpAddr;

use crate::{
    app::AppState,
    auth::{Client, RequestAuth},
};

use super::cookie;

/// Verifies the bearer token, if any. A malformed header counts as an invalid token
/// (not as no token): a client that meant to authenticate should hear that it failed.
pub fn request_auth(state: &AppState, headers: &HeaderMap, ip: Option<IpAddr>) -> RequestAuth {
    let token = headers.get(header::AUTHORIZATION).map(|value| {
        let value = value.to_str().map_err(|_| "malformed Authorization header")?;
        verify(state, value)
    });
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let cookie = if state.config.refresh_token_cookie {
        cookie::read_refresh_token(headers, state.config.is_production())
    } else {
        cookie::RefreshCookie::Absent
    };
    let refresh_cookie_duplicated = matches!(cookie, cookie::RefreshCookie::Duplicated);
    let refresh_cookie = match cookie {
        cookie::RefreshCookie::Present(token) => Some(token),
        _ => None,
    };
    RequestAuth::new(token, Client { user_agent, ip, refresh_cookie, refresh_cookie_duplicated })
}

/// Verifies an `Authorization` value, `Bearer <token>` (from a header, or from a
/// WebSocket's connection_init payload).
pub fn verify(state: &AppState, value: &str) -> Result<crate::auth::access_token::Claims, &'static str> {
    let (scheme, token) = value.split_once(' ').ok_or("malformed Authorization header")?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("not a bearer token");
    }
    state.auth.tokens.verify(token.trim())
}
