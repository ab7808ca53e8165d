//! Where messages go: an SMTP server (lettre, async on tokio, `smtp://` with STARTTLS
//! when offered or `smtps://`, credentials from the URL), or in development without
//! `SMTP_URL`, one `.eml` file per message under `DATA_DIR/mail/` (mode 0600).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use lettre::{
    Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
};
use secrecy::ExposeSecret;

use crate::{config::EmailConfig, email_address::EmailAddress};

/// How long one SMTP conversation may take before the try counts as failed.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

pub enum Transport {
    Smtp { mailer: AsyncSmtpTransport<Tokio1Executor>, shown: String },
    Files(PathBuf),
}

/// Why a message was not accepted.
#[derive(Debug)]
pub enum SendError {
    /// Worth another try later: the server is down, busy, or said 4xx.
    Transient(String),
    /// Never going to work: the server said 5xx, or the address is malformed.
    Permanent(String),
}

impl SendError {
    pub fn text(&self) -> &str {
        match self {
            Self::Transient(t) | Self::Permanent(t) => t,
        }
    }
}

/// `SMTP_URL` with STARTTLS made opportunistic when the URL does not say: plain
/// `smtp://` would otherwise never upgrade, even for a server that offers it.
/// `?tls=none` asks for plain SMTP (a local catcher with a self-signed certificate).
fn with_tls_default(url: &str) -> String {
    let Some(rest) = url.strip_prefix("smtp://") else { return url.to_owned() };
    for none in ["?tls=none&", "&tls=none", "?tls=none"] {
        if rest.contains(none) {
            let replacement = if none.ends_with('&') { "?" } else { "" };
            return url.replacen(none, replacement, 1);
        }
    }
    if rest.contains("tls=") {
        return url.to_owned();
    }
    let separator = if rest.contains('?') { '&' } else { '?' };
    format!("{url}{separator}tls=opportunistic")
}

/// The URL without its password, for the start log.
fn shown(url: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| rest.rsplit_once('@').map(|(_, host)| (scheme, host))) {
        Some((scheme, host)) => format!("{scheme}://…@{host}"),
        None => url.to_owned(),
    }
}

impl Transport {
    pub fn new(config: &EmailConfig, data_dir: &Path) -> anyhow::Result<Self> {
        match &config.smtp_url {
            Some(url) => {
                let url = with_tls_default(url.expose_secret());
                let mailer = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
                    .context("SMTP_URL is not an smtp:// or smtps:// URL")?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build();
                Ok(Self::Smtp { mailer, shown: shown(&url) })
            }
            None => Ok(Self::Files(data_dir.join("mail"))),
        }
    }

    /// Where mail goes, for the start log (no password).
    pub fn describe(&self) -> String {
        match self {
            Self::Smtp { shown, .. } => format!("SMTP {shown}"),
            Self::Files(dir) => format!(".eml files in {}", dir.display()),
        }
    }

    pub async fn send(
        &self,
        from: &Mailbox,
        to: &EmailAddress,
        subject: &str,
        text: String,
        html: String,
    ) -> Result<(), SendError> {
        // Built from the canonical address's parts, never by parsing display text
        // (which would decode encoded words and unquote quoted strings).
        let to = Address::new(to.local(), to.domain())
            .map(|address| Mailbox::new(None, address))
            .map_err(|e| SendError::Permanent(format!("recipient {to}: {e}")))?;
        let message = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(subject)
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| SendError::Permanent(format!("message: {e}")))?;
        match self {
            Self::Smtp { mailer, .. } => mailer.send(message).await.map(|_| ()).map_err(|e| {
                if e.is_permanent() {
                    SendError::Permanent(format!("{e}"))
                } else {
                    SendError::Transient(format!("{e}"))
                }
            }),
            Self::Files(dir) => {
                write_file(dir, &message.formatted()).await.map_err(|e| SendError::Transient(format!("{e:#}")))
            }
        }
    }
}

/// Writes one message as an `.eml` file only its owner can read (it holds a token).
async fn write_file(dir: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = dir.to_owned();
    let bytes = bytes.to_vec();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let name = format!("{}-{}.eml", chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ"), uuid::Uuid::new_v4());
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(dir.join(name))?;
        std::io::Write::write_all(&mut file, &bytes)?;
        Ok(())
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_smtp_upgrades_when_offered_unless_the_url_says() {
        assert_eq!(with_tls_default("smtp://u:p@mail:587"), "smtp://u:p@mail:587?tls=opportunistic");
        assert_eq!(with_tls_default("smtp://mail:25?tls=required"), "smtp://mail:25?tls=required");
        assert_eq!(with_tls_default("smtps://u:p@mail:465"), "smtps://u:p@mail:465");
        assert_eq!(with_tls_default("smtp://localhost:1025?tls=none"), "smtp://localhost:1025");
        assert_eq!(with_tls_default("smtp://localhost:1025?tls=none&x=1"), "smtp://localhost:1025?x=1");
    }

    #[test]
    fn the_log_never_shows_the_password() {
        assert_eq!(
            shown("smtp://user:hunter2@mail.internal:587?tls=opportunistic"),
            "smtp://…@mail.internal:587?tls=opportunistic"
        );
        assert_eq!(shown("smtp://127.0.0.1:2525"), "smtp://127.0.0.1:2525");
    }
}
