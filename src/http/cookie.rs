//! The refresh-token cookie of cookie mode (`REFRESH_TOKEN_COOKIE=true`).
//!
//! HttpOnly, so scripts (and XSS) never read it; SameSite=Strict and scoped to
//! `/graphql`, so browsers send it only to the API and never on cross-site requests;
//! Secure in production. Together with the JSON-only POST rule, a forged cross-site
//! request can neither send nor read it.

use std::time::Duration;

use axum::http::{HeaderMap, header};
use secrecy::{ExposeSecret, SecretString};

pub const NAME: &str = "authgraph_refresh";
const PATH: &str = "/graphql";

/// `Set-Cookie` value that stores `token` for `max_age`.
pub fn set(token: &SecretString, max_age: Duration, secure: bool) -> String {
    format!(
        "{NAME}={}; Path={PATH}; Max-Age={}; HttpOnly; SameSite=Strict{}",
        token.expose_secret(),
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` value that deletes the cookie.
pub fn clear(secure: bool) -> String {
    format!("{NAME}=; Path={PATH}; Max-Age=0; HttpOnly; SameSite=Strict{}", if secure { "; Secure" } else { "" })
}

/// The refresh token from the request's `Cookie` headers, if any.
pub fn read_refresh_token(headers: &HeaderMap) -> Option<SecretString> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == NAME)
        .map(|(_, value)| SecretString::from(value.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_round_trips_through_headers() {
        let set = set(&"tok".to_owned().into(), Duration::from_secs(60), true);
        assert_eq!(set, "authgraph_refresh=tok; Path=/graphql; Max-Age=60; HttpOnly; SameSite=Strict; Secure");
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "theme=dark; authgraph_refresh=tok; other=1".parse().unwrap());
        assert_eq!(read_refresh_token(&headers).unwrap().expose_secret(), "tok");
        assert!(clear(false).contains("Max-Age=0"));
    }
}
