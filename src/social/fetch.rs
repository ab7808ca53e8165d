//! The server as an HTTP client of identity providers. A provider is somebody else's
//! server, reached from inside ours: every request has a deadline (connecting and the
//! whole body included), follows no redirect (a provider's endpoints are fixed by its
//! discovery or configuration; a redirect could point the request, and the client's
//! secret, anywhere), and reads at most `MAX_RESPONSE_BYTES`. No database connection is
//! held while one runs, so a slow or hostile provider costs a waiting task, never a
//! worker or the pool.

use std::{path::Path, time::Duration};

use serde::de::DeserializeOwned;

use crate::error::AppError;

/// The most a provider's answer may hold. Discovery documents, key sets, token and
/// user-info answers are a few kilobytes.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// What a provider answered: the status and the body, whole and bounded.
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON of type `T`; `what` names the request in the error.
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, AppError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| AppError::OidcProviderError(format!("{what}: not the JSON expected ({e})")))
    }

    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }
}

pub struct Fetcher {
    client: reqwest::Client,
}

impl Fetcher {
    /// `ca_file`: PEM certificates trusted beside the platform's roots.
    pub fn new(timeout: Duration, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("authgraph/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("OIDC_CA_FILE {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("OIDC_CA_FILE {}: {e}", path.display()))?;
            anyhow::ensure!(!certs.is_empty(), "OIDC_CA_FILE {}: no certificate in it", path.display());
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self { client: builder.build()? })
    }

    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.client.get(url)
    }

    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.client.post(url)
    }

    /// Sends `request` and reads its answer, refusing one larger than
    /// `MAX_RESPONSE_BYTES` (by its length when it says, else as it arrives). A
    /// redirect is an answer like any other (its status is not a success).
    pub async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Answer, AppError> {
        let failed = |e: reqwest::Error| AppError::OidcProviderError(format!("{what}: {:#}", anyhow::Error::from(e)));
        let mut response = request.send().await.map_err(failed)?;
        let too_large = || AppError::OidcProviderError(format!("{what}: an answer over {MAX_RESPONSE_BYTES} bytes"));
        if response.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
            return Err(too_large());
        }
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer { status, body })
    }
}
