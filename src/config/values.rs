//! Parsers for the settings' values, called by clap once at start, so the rest of the
//! server receives typed values and never parses a setting again.

use std::time::Duration;

use axum::http::HeaderValue;
use secrecy::SecretString;

use crate::net::IpBlocks;

/// Decodes an Ed25519 seed given as base64 (standard or URL-safe, padded or not).
pub fn decode_seed(text: &str) -> Result<[u8; 32], String> {
    use base64::{
        Engine,
        engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD},
    };
    let text = text.trim();
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or("is not base64")?;
    bytes.try_into().map_err(|_| "must be the base64 of a 32-byte Ed25519 seed".to_owned())
}

pub(super) fn parse_secret(s: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(s.to_owned()))
}

/// Parses `90s`, `15m`, `1h`, `7d` (or a bare number of seconds).
///
/// ```
/// use std::time::Duration;
/// use authgraph::config::parse_duration;
///
/// assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 90s, 15m, 1h or 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => return Ok(Duration::from_millis(n)),
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{s:?} has an unknown unit (use ms, s, m, h or d)")),
    };
    Ok(Duration::from_secs(secs))
}

/// `CORS_ORIGINS`: the origins a browser may call from, comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins(Vec<HeaderValue>);

impl Origins {
    pub fn as_slice(&self) -> &[HeaderValue] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o.as_bytes() == origin.as_bytes())
    }
}

impl std::str::FromStr for Origins {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(|origin| match origin.parse::<HeaderValue>() {
                Ok(value) if origin.contains("://") && !origin.ends_with('/') => Ok(value),
                _ => Err(format!("{origin:?} is not an origin like https://app.example.com")),
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

pub(super) fn parse_origins(s: &str) -> Result<Origins, String> {
    s.parse()
}

pub(super) fn parse_ip_blocks(s: &str) -> Result<IpBlocks, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("15 minutes").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn origins_are_whole_origins() {
        let origins: Origins = "https://app.example.com, http://localhost:5173".parse().unwrap();
        assert!(origins.contains("https://app.example.com") && origins.contains("http://localhost:5173"));
        assert!(!origins.contains("https://evil.example.com"));
        assert!("".parse::<Origins>().unwrap().is_empty());
        assert!("app.example.com".parse::<Origins>().is_err(), "no scheme");
        assert!("https://app.example.com/".parse::<Origins>().is_err(), "a trailing slash never matches");
    }
}
