//! The passkey settings (WebAuthn): the relying party's id and name, the origins whose
//! ceremonies it accepts, how long a challenge lives and how many ceremonies may be
//! open at once. A group of its own, flattened into `Config`; `Config::webauthn`
//! resolves the defaults and checks them (production needs an RP ID it can defend).

use std::time::Duration;

use clap::Args;

use super::{Config, ConfigError, Origins, values};

#[derive(Debug, Clone, Args)]
pub struct PasskeysConfig {
    /// Passkeys: registration, sign-in and the second factor (on by default).
    #[arg(id = "passkeys", long = "passkeys", env = "PASSKEYS", default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,

    /// The relying party id: the domain passkeys are bound to (example.com serves
    /// app.example.com too). Default: the host of the first CORS_ORIGINS entry, or
    /// `localhost` in development. Changing it orphans every registered passkey.
    #[arg(long, env = "WEBAUTHN_RP_ID")]
    pub rp_id: Option<String>,

    /// Origins whose ceremonies are accepted, exact, comma-separated. Default: the
    /// CORS_ORIGINS entries within the RP ID; in development with none, `http://localhost`
    /// on any port.
    #[arg(long, env = "WEBAUTHN_ORIGINS", default_value = "", value_parser = values::parse_origins)]
    pub origins: Origins,

    /// The name authenticators show beside the passkey. Default: APP_NAME.
    #[arg(long, env = "WEBAUTHN_RP_NAME")]
    pub rp_name: Option<String>,

    /// How long a ceremony's challenge can be answered.
    #[arg(long, env = "WEBAUTHN_CHALLENGE_TTL", default_value = "5m", value_parser = values::parse_duration)]
    pub challenge_ttl: Duration,

    /// Open ceremonies per client network (IPv4 address or IPv6 prefix) before
    /// RATE_LIMITED: bounds what anonymous sign-in starts can make the server store.
    #[arg(long, env = "WEBAUTHN_CEREMONIES_PER_IP", default_value_t = 50)]
    pub ceremonies_per_ip: u32,

    /// Open ceremonies per account; a new one replaces the oldest, so strangers starting
    /// sign-ins for a username cannot crowd out its owner.
    #[arg(long, env = "WEBAUTHN_CEREMONIES_PER_ACCOUNT", default_value_t = 5)]
    pub ceremonies_per_account: u32,
}

/// The relying party as resolved from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webauthn {
    pub rp_id: String,
    pub rp_name: String,
    /// Exact origins (scheme, host, port).
    pub origins: Vec<String>,
    /// Development's default: `http://localhost` on any port.
    pub any_port: bool,
}

impl Config {
    /// The relying party, `None` with PASSKEYS off; an error names the setting that
    /// leaves it undefendable.
    pub fn webauthn(&self) -> Result<Option<Webauthn>, ConfigError> {
        let passkeys = &self.passkeys;
        if !passkeys.enabled {
            return Ok(None);
        }
        let err = |var: &'static str, msg: String| Err(ConfigError { var, msg });
        let production = self.is_production();
        // A browser binds passkeys to a domain name, never to an IP address.
        let is_ip = |host: &str| host.parse::<std::net::IpAddr>().is_ok();
        let cors_host =
            self.cors_origins.as_slice().first().and_then(|o| host_of(o.to_str().ok()?)).filter(|host| !is_ip(host));
        let rp_id = match (&passkeys.rp_id, cors_host) {
            (Some(id), _) => id.trim().to_ascii_lowercase(),
            (None, Some(host)) => host,
            (None, None) if !production => "localhost".to_owned(),
            (None, None) => {
                return err(
                    "WEBAUTHN_RP_ID",
                    "is required in production with PASSKEYS on (the domain users see, e.g. example.com; \
                     or set CORS_ORIGINS, or PASSKEYS=off)"
                        .into(),
                );
            }
        };
        if rp_id.is_empty() || rp_id.contains(['/', ':', ' ']) || is_ip(&rp_id) {
            return err("WEBAUTHN_RP_ID", format!("{rp_id:?} is not a domain like example.com"));
        }
        if production && (rp_id == "localhost" || !rp_id.contains('.')) {
            return err(
                "WEBAUTHN_RP_ID",
                format!("{rp_id:?} cannot hold passkeys in production: give the registrable domain users see"),
            );
        }
        let explicit = !passkeys.origins.is_empty();
        let candidates: Vec<String> = if explicit { &passkeys.origins } else { &self.cors_origins }
            .as_slice()
            .iter()
            .filter_map(|o| o.to_str().ok().map(str::to_owned))
            .collect();
        let mut origins = Vec::new();
        for origin in candidates {
            let within = host_of(&origin).is_some_and(|host| host == rp_id || host.ends_with(&format!(".{rp_id}")));
            if !within && explicit {
                return err("WEBAUTHN_ORIGINS", format!("{origin} is not within the RP ID {rp_id}"));
            }
            if within && production && !origin.starts_with("https://") {
                return err("WEBAUTHN_ORIGINS", format!("{origin} must be https in production"));
            }
            if within {
                origins.push(origin);
            }
        }
        let any_port = origins.is_empty() && rp_id == "localhost" && !production;
        if any_port {
            origins.push("http://localhost".to_owned());
        }
        if origins.is_empty() {
            return err("WEBAUTHN_ORIGINS", format!("is required: no CORS_ORIGINS entry is within the RP ID {rp_id}"));
        }
        if passkeys.challenge_ttl < Duration::from_secs(30) || passkeys.challenge_ttl > Duration::from_secs(3600) {
            return err("WEBAUTHN_CHALLENGE_TTL", "must be between 30s and 1h".into());
        }
        if passkeys.ceremonies_per_ip == 0 || passkeys.ceremonies_per_account == 0 {
            return err("WEBAUTHN_CEREMONIES_PER_IP", "and WEBAUTHN_CEREMONIES_PER_ACCOUNT must be at least 1".into());
        }
        let rp_name = passkeys.rp_name.clone().unwrap_or_else(|| self.email.app_name.clone());
        Ok(Some(Webauthn { rp_id, rp_name, origins, any_port }))
    }
}

/// The host of an origin like `https://app.example.com:8443`, lowercased.
fn host_of(origin: &str) -> Option<String> {
    let rest = origin.split_once("://")?.1;
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => rest.split(':').next()?,
    };
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AppEnv;

    #[test]
    fn development_defaults_to_localhost_on_any_port() {
        let config = Config::defaults();
        let rp = config.webauthn().unwrap().unwrap();
        assert_eq!(
            (rp.rp_id.as_str(), rp.origins.as_slice(), rp.any_port),
            ("localhost", &["http://localhost".to_owned()][..], true)
        );
    }

    #[test]
    fn an_ip_address_is_never_an_rp_id() {
        let mut config = Config::defaults();
        config.cors_origins = "http://127.0.0.1:5173".parse().unwrap();
        let rp = config.webauthn().unwrap().unwrap();
        assert_eq!((rp.rp_id.as_str(), rp.any_port), ("localhost", true), "development falls back to localhost");
        config.passkeys.rp_id = Some("127.0.0.1".into());
        assert_eq!(config.webauthn().unwrap_err().var, "WEBAUTHN_RP_ID");
    }

    #[test]
    fn the_rp_id_follows_cors_and_origins_must_be_within_it() {
        let mut config = Config::defaults();
        config.cors_origins = "https://app.example.com, https://other.test".parse().unwrap();
        let rp = config.webauthn().unwrap().unwrap();
        assert_eq!(
            (rp.rp_id.as_str(), rp.origins.as_slice()),
            ("app.example.com", &["https://app.example.com".to_owned()][..])
        );
        config.passkeys.rp_id = Some("example.com".into());
        config.passkeys.origins = "https://evil.test".parse().unwrap();
        assert_eq!(config.webauthn().unwrap_err().var, "WEBAUTHN_ORIGINS");
        config.passkeys.origins = "https://login.example.com".parse().unwrap();
        assert_eq!(config.webauthn().unwrap().unwrap().origins, ["https://login.example.com"]);
    }

    #[test]
    fn production_needs_a_domain_it_can_defend() {
        let mut config = Config::defaults();
        config.app_env = AppEnv::Production;
        assert_eq!(config.webauthn().unwrap_err().var, "WEBAUTHN_RP_ID");
        for id in ["localhost", "10.0.0.1", "com"] {
            config.passkeys.rp_id = Some(id.into());
            assert_eq!(config.webauthn().unwrap_err().var, "WEBAUTHN_RP_ID", "{id}");
        }
        config.passkeys.rp_id = Some("example.com".into());
        assert_eq!(config.webauthn().unwrap_err().var, "WEBAUTHN_ORIGINS", "no origin within it");
        config.passkeys.origins = "http://example.com".parse().unwrap();
        assert_eq!(config.webauthn().unwrap_err().var, "WEBAUTHN_ORIGINS", "not https");
        config.passkeys.origins = "https://example.com".parse().unwrap();
        assert!(config.webauthn().unwrap().is_some());
        config.passkeys.enabled = false;
        config.passkeys.rp_id = None;
        assert_eq!(config.webauthn().unwrap(), None);
    }
}
