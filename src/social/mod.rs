//! Sign-in with other identity providers: OpenID Connect (authorization code with PKCE
//! S256, `state` and `nonce`) for any provider that publishes discovery, and plain
//! OAuth 2.0 with a user-info endpoint (GitHub) where configured.
//!
//! - `fetch`: the server as an HTTP client of providers (deadlines, no redirects,
//!   bounded answers, the CA file);
//! - `provider`: one provider's endpoints, keys, authorization URL and code exchange,
//!   with the ID token's checks;
//! - `flows`: `startSocialSignIn` … `setPassword`: flows in PostgreSQL, accounts and
//!   identities.
//!
//! Beside `auth` in the application state, like `factors`: the flows here use `auth`,
//! and `auth` knows nothing of them.

pub mod fetch;
pub mod flows;
pub mod provider;

use std::{sync::Arc, time::Duration};

use crate::config::Config;
use fetch::Fetcher;
use provider::Provider;

/// The configured providers and what their flows share.
pub struct Social {
    pub providers: Vec<Arc<Provider>>,
    pub fetcher: Fetcher,
    /// Exact redirect URIs a flow may name.
    pub redirect_uris: Vec<String>,
    pub state_ttl: Duration,
    pub flows_per_network: u32,
    pub link_verified_email: bool,
}

impl Social {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let social = &config.social;
        Ok(Self {
            providers: social.providers.iter().cloned().map(Provider::new).map(Arc::new).collect(),
            fetcher: Fetcher::new(social.http_timeout, social.ca_file.as_deref())?,
            redirect_uris: social.redirect_uris.iter().map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect(),
            state_ttl: social.state_ttl,
            flows_per_network: social.flows_per_ip,
            link_verified_email: social.link_verified_email,
        })
    }

    pub fn provider(&self, id: &str) -> Option<&Arc<Provider>> {
        self.providers.iter().find(|p| p.id() == id)
    }

    /// Discovers every OpenID Provider, retrying each that fails (reported in the log)
    /// until it answers, without holding up the others or the start. A provider not
    /// discovered yet is also tried on its first use.
    pub fn discover_in_background(self: &Arc<Self>) {
        for provider in self.providers.iter().filter(|p| p.is_oidc()) {
            let (social, provider) = (self.clone(), provider.clone());
            tokio::spawn(async move {
                let mut wait = Duration::from_secs(1);
                loop {
                    match provider.discover(&social.fetcher).await {
                        Ok(()) => {
                            tracing::info!(provider = provider.id(), "identity provider discovered");
                            return;
                        }
                        Err(err) => {
                            tracing::warn!(provider = provider.id(), error = ?err, retry_in = ?wait, "identity provider not discovered");
                        }
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(60));
                }
            });
        }
    }
}
