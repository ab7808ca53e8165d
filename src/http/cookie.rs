//! The refresh-token cookie of cookie mode (`REFRESH_TOKEN_COOKIE=true`), kept at the
//! HTTP edge: read into the request's `Client`, and written after the operations ran,
//! from what they did to the refresh token (`RequestAuth::refresh_outcome`). No
//! resolver writes a header.
//!
//! HttpOnly, so scripts (and XSS) never read it; SameSite=Strict, so browsers never
//! send it on cross-site requests. Together with the JSON-only POST rule, a forged
//! cross-site request can neither send nor read it.
//!
//! In production it is `__Host-authgraph_refresh`: the prefix makes browsers accept it
//! only with `Secure`, `Path=/` and no `Domain`, so no sibling subdomain (and no
//! plain-HTTP page) can set or shadow it. In development, where the API may run over
//! plain HTTP, it is `authgraph_refresh` scoped to `/graphql`. A request carrying the
//! cookie more than once is refused: which copy a server takes is exactly what a
//! cookie-tossing attacker plays on.

use std::time::Duration;

use axum::http::{HeaderMap, header};
use secrecy::{ExposeSecret, SecretString};

/// Name and path of the cookie in development and in production.
const DEVELOPMENT: (&str, &str) = ("authgraph_refresh", "/graphql");
const PRODUCTION: (&str, &str) = ("__Host-authgraph_refresh", "/");

fn name_and_path(production: bool) -> (&'static str, &'static str) {
    if production { PRODUCTION } else { DEVELOPMENT }
}

/// `Set-Cookie` value that stores `token` for `max_age`.
pub fn set(token: &SecretString, max_age: Duration, production: bool) -> String {
    let (name, path) = name_and_path(production);
    format!(
        "{name}={}; Path={path}; Max-Age={}; HttpOnly; SameSite=Strict{}",
        token.expose_secret(),
        max_age.as_secs(),
        if production { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` value that deletes the cookie.
pub fn clear(production: bool) -> String {
    let (name, path) = name_and_path(production);
    format!("{name}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Strict{}", if production { "; Secure" } else { "" })
}

/// The refresh cookie a request carries.
#[derive(Default)]
pub enum RefreshCookie {
    #[default]
    Absent,
    Present(SecretString),
    /// Sent more than once: refused, whichever copy is genuine.
    Duplicated,
}

/// The refresh token from the request's `Cookie` headers.
pub fn read_refresh_token(headers: &HeaderMap, production: bool) -> RefreshCookie {
    let (name, _) = name_and_path(production);
    let mut values = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, value)| value.trim());
    match (values.next(), values.next()) {
        (None, _) => RefreshCookie::Absent,
        (Some(value), None) => RefreshCookie::Present(SecretString::from(value.to_owned())),
        (Some(_), Some(_)) => RefreshCookie::Duplicated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for cookie in cookies {
            headers.append(header::COOKIE, cookie.parse().unwrap());
        }
        headers
    }

    #[test]
    fn the_cookie_round_trips_through_headers() {
        let set = set(&"tok".to_owned().into(), Duration::from_secs(60), false);
        assert_eq!(set, "authgraph_refresh=tok; Path=/graphql; Max-Age=60; HttpOnly; SameSite=Strict");
        let found = read_refresh_token(&headers(&["theme=dark; authgraph_refresh=tok; other=1"]), false);
        assert!(matches!(found, RefreshCookie::Present(t) if t.expose_secret() == "tok"));
        assert!(clear(false).contains("Max-Age=0"));
    }

    #[test]
    fn production_uses_the_host_prefix_with_its_rules() {
        let set = set(&"tok".to_owned().into(), Duration::from_secs(60), true);
        assert_eq!(set, "__Host-authgraph_refresh=tok; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure");
        assert!(!set.contains("Domain"));
        assert!(clear(true).starts_with("__Host-authgraph_refresh=; Path=/;"));
        // The unprefixed cookie, which a sibling subdomain could set, is not read.
        assert!(matches!(read_refresh_token(&headers(&["authgraph_refresh=planted"]), true), RefreshCookie::Absent));
    }

    #[test]
    fn a_cookie_sent_twice_is_refused() {
        let twice = headers(&["authgraph_refresh=planted; authgraph_refresh=real"]);
        assert!(matches!(read_refresh_token(&twice, false), RefreshCookie::Duplicated));
        let split = headers(&["authgraph_refresh=planted", "authgraph_refresh=real"]);
        assert!(matches!(read_refresh_token(&split, false), RefreshCookie::Duplicated));
    }
}
