//! The flows of sign-in with other providers: start (a URL for the browser and a row
//! holding the flow's secrets), finish (the code exchanged, the identity checked, an
//! account found, created or linked, a session opened), the owner's identities,
//! unlinking, and `setPassword` for an account created without one.
//!
//! What an anonymous caller can make the server do: a start stores one row (the hash
//! of its state, a nonce, a PKCE verifier, a redirect URI: about 250 bytes, and 120 of
//! index entries) for
//! `OIDC_STATE_TTL`, at most `OIDC_FLOWS_PER_IP` per client network (then
//! `RATE_LIMITED`), and costs one small transaction, plus one discovery request to a
//! provider not discovered yet (at most one per provider every few seconds). A finish
//! first takes its flow (a state is used once, by exactly one of concurrent finishes)
//! and counts a sign-in attempt for the client's network, as a password sign-in does;
//! only then does the server talk to the provider: one token request, at most one or
//! two user-info requests, and one fetch of its keys for a key it has not seen (at most
//! one a second). No password is hashed. A new account is one row in `users` and one in
//! `identities`.

use chrono::{DateTime, Utc};

use super::{
    Social,
    provider::{Profile, Provider},
};
use crate::{
    auth::{Auth, Caller, Client, Grant, check, password, sessions},
    db::{
        self,
        ids::{HashedToken, IdentityId, UserId},
        models::{FirstFactor, IdentityRow, Methods, NewIdentity, NewProviderFlow, NewUser, ProviderFlow},
        passkeys::Refused,
    },
    email_address::EmailAddress,
    error::{AppError, AppResult},
    mail::message::Content,
    users::validate,
};
use secrecy::{ExposeSecret, SecretString};

const SIGN_IN: &str = "SIGN_IN";
const LINK: &str = "LINK";

/// How a provider sign-in proves who is there: AAL1, like a password.
const PROVIDER: Methods = Methods { first: FirstFactor::Provider, second: None };

/// Where the browser goes, and until when the flow can be finished.
pub struct Started {
    pub authorization_url: String,
    pub state: String,
    pub expires_at: DateTime<Utc>,
}

fn provider<'a>(social: &'a Social, id: &str) -> AppResult<&'a Provider> {
    social.provider(id.trim()).map(|p| &**p).ok_or_else(|| AppError::bad_input("provider", "No such identity provider"))
}

fn redirect_uri<'a>(social: &Social, uri: &'a str) -> AppResult<&'a str> {
    if social.redirect_uris.iter().any(|allowed| allowed == uri) {
        Ok(uri)
    } else {
        Err(AppError::bad_input("redirectUri", "Not one of this server's redirect URIs (OIDC_REDIRECT_URIS)"))
    }
}

/// `startSocialSignIn`.
pub async fn start_sign_in(
    auth: &Auth,
    social: &Social,
    provider_id: &str,
    redirect: &str,
    client: &Client,
) -> AppResult<Started> {
    start(auth, social, SIGN_IN, provider_id, redirect, None, client).await
}

/// `startIdentityLink`: the guard has asked for AAL2 where the account has a factor.
pub async fn start_link(
    auth: &Auth,
    social: &Social,
    caller: &Caller,
    provider_id: &str,
    redirect: &str,
    client: &Client,
) -> AppResult<Started> {
    start(auth, social, LINK, provider_id, redirect, Some(caller), client).await
}

async fn start(
    auth: &Auth,
    social: &Social,
    flow: &str,
    provider_id: &str,
    redirect: &str,
    caller: Option<&Caller>,
    client: &Client,
) -> AppResult<Started> {
    let provider = provider(social, provider_id)?;
    let redirect = redirect_uri(social, redirect)?;
    let authorization = provider.authorization(&social.fetcher, redirect).await?;
    let expires_at = Utc::now() + social.state_ttl;
    // A client whose address is unknown (only in-process callers) counts as one network.
    let network = auth.rate_limits.network(client.ip).map_or_else(|| "unknown".to_owned(), |n| n.to_string());
    let state_hash = HashedToken::of(authorization.state.expose_secret());
    let new = NewProviderFlow {
        state_hash: state_hash.as_bytes(),
        flow,
        provider: provider.id(),
        redirect_uri: redirect,
        nonce: &authorization.nonce,
        pkce_verifier: &authorization.pkce_verifier,
        user_id: caller.map(|c| c.user.id),
        session_id: caller.map(|c| c.session_id),
        network: &network,
        expires_at,
    };
    let mut conn = auth.pool.get().await?;
    match db::identities::open_flow(&mut conn, new, social.flows_per_network).await? {
        Ok(()) => Ok(Started {
            authorization_url: authorization.url,
            state: authorization.state.expose_secret().to_owned(),
            expires_at,
        }),
        Err(Refused::NetworkFull { frees_at }) => {
            metrics::counter!("authgraph_rate_limited_total", "bucket" => "provider_flows").increment(1);
            Err(AppError::RateLimited { retry_after_secs: (frees_at - Utc::now()).num_seconds().max(1) as u64 })
        }
    }
}

/// The code and state as the provider sent them back, before any is used up.
fn check_input(state: &str, code: &str) -> AppResult<()> {
    if state.trim().is_empty() || state.len() > 512 {
        return Err(AppError::InvalidOidcState("empty or oversized"));
    }
    if code.is_empty() || code.len() > 4096 {
        return Err(AppError::bad_input("code", "Pass the code the provider sent back"));
    }
    Ok(())
}

/// Takes the flow `state` names, if it is a live one of `flow` (and, for a link, of
/// `account`): a state of another flow or account is refused without being used up.
async fn take(auth: &Auth, state: &str, flow: &str, account: Option<UserId>) -> AppResult<ProviderFlow> {
    let mut conn = auth.pool.get().await?;
    let hash = HashedToken::of(state.trim());
    db::identities::take_flow(&mut conn, hash.as_bytes(), flow, account)
        .await?
        .ok_or(AppError::InvalidOidcState("unknown, used, expired, or of another flow or account"))
}

/// Exchanges the flow's code at its provider.
async fn exchange(social: &Social, flow: &ProviderFlow, code: &str) -> AppResult<(String, Profile)> {
    let Some(provider) = social.provider(&flow.provider) else {
        return Err(AppError::InvalidOidcState("its provider is no longer configured"));
    };
    let profile =
        provider.exchange(&social.fetcher, code, &flow.redirect_uri, &flow.pkce_verifier, &flow.nonce).await?;
    Ok((provider.settings.name.clone(), profile))
}

/// The identity's address, if the provider verified it and it is one we can deliver to.
fn verified_address(profile: &Profile) -> Option<EmailAddress> {
    profile.email.as_deref().filter(|_| profile.email_verified).and_then(|e| EmailAddress::parse(e).ok())
}

/// `finishSocialSignIn`: the identity's account (found, or created on a first
/// sign-in) gets a session at AAL1. Counted as a sign-in attempt of the client's
/// network before the provider is asked, forgiven when it succeeds.
pub async fn finish_sign_in(
    auth: &Auth,
    social: &Social,
    state: &str,
    code: &str,
    client: &Client,
) -> AppResult<Grant> {
    check_input(state, code)?;
    let flow = take(auth, state, SIGN_IN, None).await?;
    let attempt = {
        let mut conn = auth.pool.get().await?;
        auth.rate_limits.take_network_signin(&mut conn, client.ip).await?
    };
    let profile = match exchange(social, &flow, code).await {
        Ok((_, profile)) => profile,
        Err(err @ AppError::OidcProviderError(_)) => {
            // The provider refused the code, or its answer did not verify: a failed
            // sign-in in the trail (a state was used up for it, and states are
            // bounded per network).
            auth.record_failed_signin(client, None, None, Some(&flow.provider), "PROVIDER_REFUSED").await?;
            return Err(err);
        }
        Err(err) => return Err(err),
    };
    let user_agent = client.user_agent.as_deref();
    // A first sign-in races its twin (a double click) or a taken username: the loser's
    // transaction is rolled back, and it tries again and finds what the winner made.
    let mut tries = 0;
    let (user, session, token) = loop {
        tries += 1;
        let outcome = auth
            .changes
            .run(async |c| {
                let user = match db::identities::find(c, &flow.provider, &profile.subject).await? {
                    Some(identity) => {
                        db::identities::used(c, identity.id, profile.email.as_deref()).await?;
                        db::users::find(c, identity.user_id).await?.ok_or(AppError::NotFound)?
                    }
                    None => first_sign_in(social, c, &flow.provider, &profile).await?,
                };
                let (session, token) = sessions::open(c, &auth.sessions, user.id, user_agent, PROVIDER).await?;
                Ok((user, session, token))
            })
            .await;
        match outcome {
            Err(AppError::UsernameTaken | AppError::IdentityTaken) if tries < 3 => continue,
            other => break other?,
        }
    };
    {
        let mut conn = auth.pool.get().await?;
        auth.rate_limits.signin_succeeded(&mut conn, attempt).await?;
    }
    sessions::grant(auth, user, session.id, token, session.methods())
}

/// A first sign-in with an identity: the account whose verified address it is, when the
/// operator allows linking by address, else `ACCOUNT_EXISTS`; otherwise a new account.
async fn first_sign_in(
    social: &Social,
    c: &mut db::change::Change<'_>,
    provider: &str,
    profile: &Profile,
) -> AppResult<db::models::User> {
    let address = verified_address(profile);
    let owner = match &address {
        Some(address) => db::users::find_by_verified_email(c, address).await?,
        None => None,
    };
    let user = match owner {
        Some(owner) if social.link_verified_email => owner,
        Some(_) => return Err(AppError::AccountExists),
        None => {
            let username = free_username(c, profile).await?;
            let name = profile
                .name
                .as_deref()
                .and_then(|n| validate::name(n).ok())
                .filter(|n| n.chars().count() <= 100)
                .unwrap_or_else(|| username.clone());
            let new = NewUser { name: &name, username: &username, password_hash: None, email: None, email_key: None };
            let user = db::users::insert(c, new).await.map_err(|e| match db::unique_violation(&e) {
                Some("users_username_lower_key") => AppError::UsernameTaken,
                _ => e.into(),
            })?;
            match &address {
                Some(address) => {
                    // Another account verified it since we looked: its owner links.
                    db::users::set_verified_email(c, user.id, address).await.map_err(
                        |e| match db::unique_violation(&e) {
                            Some("users_verified_email_key") => AppError::AccountExists,
                            _ => e.into(),
                        },
                    )?;
                    db::users::find(c, user.id).await?.ok_or(AppError::NotFound)?
                }
                None => user,
            }
        }
    };
    link(c, user.id, provider, profile).await?;
    Ok(user)
}

/// Inserts the identity for `user_id`; `IDENTITY_TAKEN` when it is linked already.
async fn link(
    c: &mut db::change::Change<'_>,
    user_id: UserId,
    provider: &str,
    profile: &Profile,
) -> AppResult<IdentityRow> {
    let new = NewIdentity {
        user_id,
        provider,
        subject: &profile.subject,
        email: profile.email.as_deref(),
        last_used_at: Some(Utc::now()),
    };
    db::identities::insert(c, new).await.map_err(|e| match db::unique_violation(&e) {
        Some("identities_provider_subject_key") => AppError::IdentityTaken,
        _ => e.into(),
    })
}

/// A username for a new account, from what the provider suggests (its username, the
/// address's local part, the name), in the characters usernames allow, made unique by
/// a random suffix when taken. The owner may rename it.
async fn free_username(c: &mut db::change::Change<'_>, profile: &Profile) -> AppResult<String> {
    let local = profile.email.as_deref().and_then(|e| e.split('@').next());
    let base = [profile.username.as_deref(), local, profile.name.as_deref()]
        .into_iter()
        .flatten()
        .map(|s| {
            let cleaned: String = s
                .chars()
                .map(|ch| if ch.is_whitespace() { '_' } else { ch })
                .filter(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'))
                .take(24)
                .collect();
            cleaned.trim_matches(['.', '-', '_']).to_owned()
        })
        .find(|s| s.len() >= 3)
        .unwrap_or_else(|| "user".to_owned());
    if base.len() >= 3 && db::users::find_by_username(c, &base).await?.is_none() {
        return Ok(base);
    }
    for _ in 0..5 {
        let mut bytes = [0u8; 4];
        rand::fill(&mut bytes);
        let candidate = format!("{base}-{}", u32::from_le_bytes(bytes) % 1_000_000);
        if db::users::find_by_username(c, &candidate).await?.is_none() {
            return Ok(candidate);
        }
    }
    Err(AppError::UsernameTaken)
}

/// `finishIdentityLink`: links the identity to the caller's account. An identity of
/// this account already is answered with its row; one of another account is
/// `IDENTITY_TAKEN`. The owner is told by mail.
pub async fn finish_link(
    auth: &Auth,
    social: &Social,
    caller: &Caller,
    state: &str,
    code: &str,
) -> AppResult<IdentityRow> {
    let user = &caller.user;
    check_input(state, code)?;
    let flow = take(auth, state, LINK, Some(user.id)).await?;
    let (provider_name, profile) = exchange(social, &flow, code).await?;
    auth.changes
        .run(async |c| {
            db::users::lock(c, user.id).await?;
            if let Some(existing) = db::identities::find(c, &flow.provider, &profile.subject).await? {
                return if existing.user_id == user.id { Ok(existing) } else { Err(AppError::IdentityTaken) };
            }
            let row = link(c, user.id, &flow.provider, &profile).await?;
            if let Some(address) = user.verified_address().filter(|_| auth.mail.enabled) {
                auth.mail.queue_notice(c, &address, Content::IdentityLinked { provider: &provider_name }).await?;
            }
            Ok(row)
        })
        .await
}

/// `linkedIdentities`: the caller's, oldest first.
pub async fn list(auth: &Auth, caller: &Caller) -> AppResult<Vec<IdentityRow>> {
    let user_id = caller.user.id;
    db::read(&auth.pool, |conn| Box::pin(db::identities::list(conn, user_id))).await
}

/// `unlinkIdentity`: refused with `LAST_SIGN_IN_METHOD` when the account would have no
/// password, passkey or other identity left.
pub async fn unlink(auth: &Auth, caller: &Caller, id: IdentityId) -> AppResult<()> {
    let user_id = caller.user.id;
    auth.changes
        .run(async |c| {
            db::users::lock(c, user_id).await?;
            if !db::identities::delete(c, user_id, id).await? {
                return Err(AppError::NotFound);
            }
            if db::identities::ways_in(c, user_id).await? == 0 {
                return Err(AppError::LastSignInMethod);
            }
            Ok(())
        })
        .await
}

/// `hasPassword`.
pub async fn has_password(auth: &Auth, user_id: UserId) -> AppResult<bool> {
    let found = db::read(&auth.pool, |conn| Box::pin(db::users::has_password(conn, user_id))).await?;
    found.ok_or(AppError::NotFound)
}

/// `setPassword`: the first password of an account created through a provider. The
/// session must have signed in within REAUTH_WINDOW, as the current password stands
/// for elsewhere: a stolen access token must not buy a permanent way in.
pub async fn set_password(auth: &Auth, caller: &Caller, new: &SecretString) -> AppResult<()> {
    let user = &caller.user;
    if has_password(auth, user.id).await? {
        return Err(AppError::bad_input("newPassword", "This account has a password: use changePassword"));
    }
    validate::password("newPassword", new)?;
    if !check::recently_signed_in(auth, caller).await? {
        return Err(AppError::InvalidCredentials);
    }
    let ticket = password::Ticket { lane: password::Lane::Account, requester: password::Requester::Account(user.id) };
    let hash = auth.hasher.hash(ticket, new).await?;
    auth.changes
        .run(async |c| {
            if !db::users::set_first_password(c, user.id, &hash).await? {
                return Err(AppError::bad_input("newPassword", "This account has a password: use changePassword"));
            }
            if let Some(address) = user.verified_address().filter(|_| auth.mail.enabled) {
                auth.mail.queue_notice(c, &address, Content::PasswordSet).await?;
            }
            Ok(())
        })
        .await
}
