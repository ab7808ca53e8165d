//! Email: the secrets of messages, their texts, the outbox they wait in and the
//! transport that delivers them. Below the flows that send mail (`email`, `factors`, `auth`), above `db`.
//!
//! A message is written to the outbox in the same transaction as the token it
//! carries, so a rolled-back request sends nothing and a committed one is never lost;
//! the sender (`outbox::run`) delivers it after the request has answered, so a slow or
//! dead SMTP server never slows a request.

pub mod message;
pub mod outbox;
pub mod secret;
pub mod transport;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use chrono::Utc;
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use lettre::message::Mailbox;
use secrecy::ExposeSecret;
use tokio::sync::Notify;

use crate::{
    config::EmailConfig,
    db::change::Change,
    db::{
        self,
        ids::UserId,
        models::{NewEmailToken, NewMessage, Purpose},
    },
    email_address::EmailAddress,
    error::{AppError, AppResult},
    secret::Keys,
};
use message::{Content, Rendered};
use secret::CodeKey;

/// The email settings and keys every flow and the sender share.
pub struct Mail {
    pub enabled: bool,
    pub from: Mailbox,
    pub app_name: String,
    verify_url: String,
    reset_url: String,
    pub verify_ttl: Duration,
    pub reset_ttl: Duration,
    pub code_attempts: u32,
    pub give_up_after: Duration,
    pub code_key: CodeKey,
    /// Rung after a commit that queued a message, so this instance's sender starts at
    /// once instead of at its next poll.
    wake: Arc<Notify>,
}

impl Mail {
    pub fn new(config: &EmailConfig, keys: &Keys) -> anyhow::Result<Self> {
        Ok(Self {
            enabled: config.enabled,
            from: config.mail_from.parse().context("MAIL_FROM")?,
            app_name: config.app_name.clone(),
            verify_url: config.verify_url.clone(),
            reset_url: config.reset_url.clone(),
            verify_ttl: config.verify_ttl,
            reset_ttl: config.reset_ttl,
            code_attempts: config.code_attempts,
            give_up_after: config.give_up_after,
            code_key: CodeKey::from_key(keys.refresh.current.expose_secret()),
            wake: Arc::new(Notify::new()),
        })
    }

    /// `BAD_USER_INPUT` on `field` when this server sends no mail (`EMAIL_ENABLED=false`):
    /// what every flow that takes an address answers first.
    pub fn require(&self, field: &'static str) -> AppResult<()> {
        if self.enabled { Ok(()) } else { Err(AppError::bad_input(field, "Email is switched off on this server")) }
    }

    /// Wakes the sender: `Changes::run` does, after a transaction that queued a message
    /// commits.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub(crate) fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Inside the caller's transaction: supersedes the account's live token of
    /// `purpose`, stores a new link token and code (hashes only), and writes the message
    /// that carries them to the outbox, addressed to `address`.
    pub async fn queue_token(
        &self,
        change: &mut Change<'_>,
        user_id: UserId,
        purpose: Purpose,
        address: &EmailAddress,
    ) -> QueryResult<()> {
        let message = self.token_message(change, user_id, purpose, address).await?;
        db::outbox::insert(change, message).await?;
        metrics::counter!("authgraph_mail_queued_total").increment(1);
        Ok(())
    }

    /// The token and its message, for `queue_token` and for a reset request the sender
    /// resolves.
    pub(crate) async fn token_message(
        &self,
        conn: &mut AsyncPgConnection,
        user_id: UserId,
        purpose: Purpose,
        address: &EmailAddress,
    ) -> QueryResult<NewMessage> {
        let (token, code) = secret::generate();
        let valid_for = match purpose {
            Purpose::VerifyEmail => self.verify_ttl,
            Purpose::ResetPassword => self.reset_ttl,
        };
        // One new token at a time per account: senders resolve reset requests in
        // parallel, and requests can race.
        db::users::lock(conn, user_id).await?;
        db::email_tokens::supersede(conn, user_id, purpose).await?;
        db::email_tokens::insert(
            conn,
            NewEmailToken {
                user_id,
                purpose,
                email: address.as_str(),
                token_hash: secret::hash_token(token.expose_secret()).as_bytes(),
                code_hash: &self.code_key.hash(user_id, purpose, code.expose_secret()),
                expires_at: Utc::now() + valid_for,
            },
        )
        .await?;
        let (link, code) = (self.link(purpose, token.expose_secret()), code.expose_secret());
        let content = match purpose {
            Purpose::VerifyEmail => Content::Verify { link: &link, code, valid_for },
            Purpose::ResetPassword => Content::Reset { link: &link, code, valid_for },
        };
        Ok(self.message(address, &content))
    }

    /// Inside the caller's transaction: a notice with no secret in it.
    pub async fn queue_notice(
        &self,
        change: &mut Change<'_>,
        address: &EmailAddress,
        content: Content<'_>,
    ) -> QueryResult<()> {
        db::outbox::insert(change, self.message(address, &content)).await?;
        metrics::counter!("authgraph_mail_queued_total").increment(1);
        Ok(())
    }

    /// A reset asked for `address`: only the address is written, and the sender decides
    /// whether an account has it, so the request's work is the same either way.
    pub async fn queue_reset_request(&self, change: &mut Change<'_>, address: &EmailAddress) -> QueryResult<()> {
        db::outbox::insert(
            change,
            NewMessage {
                kind: db::outbox::RESET_REQUEST,
                recipient: address.as_str().to_owned(),
                subject: None,
                text_body: None,
                html_body: None,
            },
        )
        .await?;
        Ok(())
    }

    fn link(&self, purpose: Purpose, token: &str) -> String {
        let template = match purpose {
            Purpose::VerifyEmail => &self.verify_url,
            Purpose::ResetPassword => &self.reset_url,
        };
        template.replace("{token}", token)
    }

    pub(crate) fn message(&self, address: &EmailAddress, content: &Content<'_>) -> NewMessage {
        let Rendered { subject, text, html } = message::render(&self.app_name, content);
        NewMessage {
            kind: db::outbox::MESSAGE,
            recipient: address.as_str().to_owned(),
            subject: Some(subject),
            text_body: Some(text),
            html_body: Some(html),
        }
    }
}
