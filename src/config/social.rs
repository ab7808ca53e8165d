//! The settings of sign-in with other identity providers: which providers, where the
//! browser may come back to, how long a flow lives, how the server talks to providers,
//! and the re-authentication window of accounts without a password. A group of its own,
//! flattened into `Config`.
//!
//! Each provider's own settings are named after its id (`OIDC_<ID>_ISSUER`, …), so they
//! cannot be fixed flags: `SocialConfig::load_providers` reads them from the environment
//! at start, and tests set `providers` directly.

use std::{path::PathBuf, time::Duration};

use clap::Args;
use secrecy::SecretString;

use super::{ConfigError, values};

#[derive(Debug, Clone, Args)]
pub struct SocialConfig {
    /// Provider ids, comma-separated (e.g. `google,github`); each is configured by its
    /// `OIDC_<ID>_*` variables. Empty: no sign-in with other providers.
    #[arg(long = "oidc-providers", env = "OIDC_PROVIDERS", value_delimiter = ',', default_value = "")]
    pub provider_ids: Vec<String>,

    /// Where providers may send the browser back, exact, comma-separated: a flow's
    /// `redirectUri` must be one of them, and each must be registered at the providers.
    #[arg(long = "oidc-redirect-uris", env = "OIDC_REDIRECT_URIS", value_delimiter = ',', default_value = "")]
    pub redirect_uris: Vec<String>,

    /// A first sign-in whose provider-verified address is an account's verified address
    /// links to that account instead of answering ACCOUNT_EXISTS. Off by default: it
    /// trusts every configured provider with every account's address.
    #[arg(long = "oidc-link-verified-email", env = "OIDC_LINK_VERIFIED_EMAIL", default_value_t = false, action = clap::ArgAction::Set)]
    pub link_verified_email: bool,

    /// How long a started flow can be finished.
    #[arg(long = "oidc-state-ttl", env = "OIDC_STATE_TTL", default_value = "10m", value_parser = values::parse_duration)]
    pub state_ttl: Duration,

    /// Open flows per client network (IPv4 address or IPv6 prefix) before RATE_LIMITED:
    /// bounds what anonymous starts can make the server store.
    #[arg(long = "oidc-flows-per-ip", env = "OIDC_FLOWS_PER_IP", default_value_t = 50)]
    pub flows_per_ip: u32,

    /// The longest one request to a provider (discovery, keys, token, user info) may
    /// take, connecting included.
    #[arg(long = "oidc-http-timeout", env = "OIDC_HTTP_TIMEOUT", default_value = "10s", value_parser = values::parse_duration)]
    pub http_timeout: Duration,

    /// A PEM file of CA certificates trusted for providers, beside the platform's roots
    /// (a private provider, or tests).
    #[arg(long = "oidc-ca-file", env = "OIDC_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// An account without a password confirms changeEmail and setPassword with an
    /// empty current password from a session it opened (through its provider or a
    /// passkey) no longer ago than this.
    #[arg(long = "reauth-window", env = "REAUTH_WINDOW", default_value = "10m", value_parser = values::parse_duration)]
    pub reauth_window: Duration,

    /// The providers, from `OIDC_<ID>_*` (see `load_providers`).
    #[arg(skip)]
    pub providers: Vec<ProviderSettings>,
}

/// One provider's settings.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Lower case; what the API's `provider` arguments name.
    pub id: String,
    /// Shown on the button (`OIDC_<ID>_NAME`; default: the id, capitalised).
    pub name: String,
    pub endpoints: Endpoints,
    pub client_id: String,
    pub client_secret: SecretString,
    /// `OIDC_<ID>_SCOPES`, space- or comma-separated. Default: `openid email profile`
    /// for an OpenID provider, `read:user user:email` for GitHub.
    pub scopes: Vec<String>,
}

/// Where a provider is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoints {
    /// An OpenID Provider: everything else comes from its discovery document.
    Issuer(String),
    /// A plain OAuth 2.0 provider: no ID token; who signed in comes from `userinfo`
    /// (and the verified address from `emails`, GitHub's list, when set).
    OAuth2 { authorization: String, token: String, userinfo: String, emails: Option<String> },
}

/// GitHub's endpoints: a provider with id `github` and no issuer or endpoints of its own.
const GITHUB: [&str; 4] = [
    "https://github.com/login/oauth/authorize",
    "https://github.com/login/oauth/access_token",
    "https://api.github.com/user",
    "https://api.github.com/user/emails",
];

impl SocialConfig {
    /// Reads each provider's `OIDC_<ID>_*` settings through `var` (the environment).
    pub fn load_providers(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let err = |msg: String| Err(ConfigError { var: "OIDC_PROVIDERS", msg });
        let mut providers = Vec::new();
        for id in self.provider_ids.iter().map(|id| id.trim().to_ascii_lowercase()).filter(|id| !id.is_empty()) {
            if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || id.len() > 32 {
                return err(format!("provider id {id:?}: use up to 32 letters, digits or '_'"));
            }
            let prefix = format!("OIDC_{}_", id.to_ascii_uppercase());
            let get =
                |name: &str| var(&format!("{prefix}{name}")).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
            let explicit = [get("AUTHORIZATION_URL"), get("TOKEN_URL"), get("USERINFO_URL")];
            let endpoints = match (get("ISSUER"), explicit) {
                (Some(issuer), [None, None, None]) => Endpoints::Issuer(issuer.trim_end_matches('/').to_owned()),
                (None, [Some(authorization), Some(token), Some(userinfo)]) => {
                    Endpoints::OAuth2 { authorization, token, userinfo, emails: get("EMAILS_URL") }
                }
                (None, [None, None, None]) if id == "github" => Endpoints::OAuth2 {
                    authorization: GITHUB[0].into(),
                    token: GITHUB[1].into(),
                    userinfo: GITHUB[2].into(),
                    emails: Some(get("EMAILS_URL").unwrap_or_else(|| GITHUB[3].into())),
                },
                _ => {
                    return err(format!(
                        "{prefix}ISSUER (an OpenID Provider), or all of {prefix}AUTHORIZATION_URL, \
                         {prefix}TOKEN_URL and {prefix}USERINFO_URL (plain OAuth 2.0), but not both"
                    ));
                }
            };
            let Some(client_id) = get("CLIENT_ID") else {
                return err(format!("{prefix}CLIENT_ID is not set"));
            };
            let Some(client_secret) = get("CLIENT_SECRET") else {
                return err(format!("{prefix}CLIENT_SECRET is not set"));
            };
            let scopes = match get("SCOPES") {
                Some(scopes) => scopes.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
                None if matches!(endpoints, Endpoints::Issuer(_)) => {
                    vec!["openid".into(), "email".into(), "profile".into()]
                }
                None => vec!["read:user".into(), "user:email".into()],
            };
            let name = get("NAME").unwrap_or_else(|| capitalised(&id));
            if providers.iter().any(|p: &ProviderSettings| p.id == id) {
                return err(format!("provider {id:?} is listed twice"));
            }
            providers.push(ProviderSettings {
                id,
                name,
                endpoints,
                client_id,
                client_secret: SecretString::from(client_secret),
                scopes,
            });
        }
        self.providers = providers;
        Ok(())
    }

    /// Checks what the types cannot: redirect URIs are absolute URLs, and in
    /// production every provider and redirect URI is https (a code or token sent in
    /// the clear is anyone's on the path).
    pub fn validate(&self, production: bool) -> Result<(), ConfigError> {
        let err = |var: &'static str, msg: String| Err(ConfigError { var, msg });
        if !self.providers.is_empty() && self.redirect_uris.iter().all(|u| u.trim().is_empty()) {
            return err("OIDC_REDIRECT_URIS", "providers are configured but no redirect URI is".into());
        }
        let secure = |url: &str| url.starts_with("https://") || (!production && url.starts_with("http://"));
        for uri in self.redirect_uris.iter().filter(|u| !u.trim().is_empty()) {
            if !secure(uri) || reqwest::Url::parse(uri).is_err() {
                let need = if production { "an https URL" } else { "an http(s) URL" };
                return err("OIDC_REDIRECT_URIS", format!("{uri:?} is not {need}"));
            }
        }
        for provider in &self.providers {
            let urls: Vec<&str> = match &provider.endpoints {
                Endpoints::Issuer(issuer) => vec![issuer],
                Endpoints::OAuth2 { authorization, token, userinfo, emails } => {
                    [Some(authorization), Some(token), Some(userinfo), emails.as_ref()]
                        .into_iter()
                        .flatten()
                        .map(String::as_str)
                        .collect()
                }
            };
            if let Some(bad) = urls.into_iter().find(|u| !secure(u) || reqwest::Url::parse(u).is_err()) {
                let need = if production { "https in production" } else { "an http(s) URL" };
                return err("OIDC_PROVIDERS", format!("provider {}: {bad:?} must be {need}", provider.id));
            }
        }
        if self.state_ttl < Duration::from_secs(10) {
            return err("OIDC_STATE_TTL", "must be at least 10s".into());
        }
        if self.http_timeout < Duration::from_millis(100) {
            return err("OIDC_HTTP_TIMEOUT", "must be at least 100ms".into());
        }
        if self.flows_per_ip == 0 {
            return err("OIDC_FLOWS_PER_IP", "must be at least 1".into());
        }
        Ok(())
    }
}

fn capitalised(id: &str) -> String {
    let mut chars = id.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn providers_are_read_from_their_variables() {
        let mut social = Config::defaults().social;
        social.provider_ids = vec!["Google".into(), "github".into()];
        social
            .load_providers(env(&[
                ("OIDC_GOOGLE_ISSUER", "https://accounts.google.com/"),
                ("OIDC_GOOGLE_CLIENT_ID", "id"),
                ("OIDC_GOOGLE_CLIENT_SECRET", "secret"),
                ("OIDC_GITHUB_CLIENT_ID", "gid"),
                ("OIDC_GITHUB_CLIENT_SECRET", "gsecret"),
                ("OIDC_GITHUB_SCOPES", "read:user,user:email"),
            ]))
            .unwrap();
        let [google, github] = &social.providers[..] else { panic!("two providers") };
        assert_eq!(google.id, "google");
        assert_eq!(google.name, "Google");
        assert_eq!(google.endpoints, Endpoints::Issuer("https://accounts.google.com".into()));
        assert_eq!(google.scopes, ["openid", "email", "profile"]);
        assert!(matches!(&github.endpoints, Endpoints::OAuth2 { userinfo, .. } if userinfo == GITHUB[2]));
        assert_eq!(github.scopes, ["read:user", "user:email"]);
    }

    #[test]
    fn a_provider_without_its_settings_names_them() {
        let mut social = Config::defaults().social;
        social.provider_ids = vec!["acme".into()];
        let e = social.load_providers(env(&[("OIDC_ACME_CLIENT_ID", "x")])).unwrap_err();
        assert!(e.msg.contains("OIDC_ACME_ISSUER"), "{e}");
        let e = social
            .load_providers(env(&[("OIDC_ACME_ISSUER", "https://id.acme.test"), ("OIDC_ACME_CLIENT_ID", "x")]))
            .unwrap_err();
        assert!(e.msg.contains("OIDC_ACME_CLIENT_SECRET"), "{e}");
    }

    #[test]
    fn production_needs_https_everywhere() {
        let mut social = Config::defaults().social;
        social.provider_ids = vec!["acme".into()];
        social
            .load_providers(env(&[
                ("OIDC_ACME_ISSUER", "http://id.acme.test"),
                ("OIDC_ACME_CLIENT_ID", "x"),
                ("OIDC_ACME_CLIENT_SECRET", "y"),
            ]))
            .unwrap();
        assert_eq!(social.validate(false).unwrap_err().var, "OIDC_REDIRECT_URIS");
        social.redirect_uris = vec!["http://localhost:5173/callback".into()];
        social.validate(false).unwrap();
        assert_eq!(social.validate(true).unwrap_err().var, "OIDC_REDIRECT_URIS");
        social.redirect_uris = vec!["https://app.example.com/callback".into()];
        assert_eq!(social.validate(true).unwrap_err().var, "OIDC_PROVIDERS");
    }
}
