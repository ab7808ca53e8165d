//! Flows that check or set a password: signup, signin, changePassword.

use secrecy::{ExposeSecret, SecretString};

use super::{
    Auth, Caller, Client, Grant,
    check::{WithoutPassword, forgiven, verify_current_password},
    password::{Lane, Requester, Ticket},
    sessions,
};
use crate::{
    db::{
        self,
        models::{Methods, NewUser, Purpose},
        sessions::EndReason,
        users::PasswordWrite,
    },
    email_address::EmailAddress,
    error::{AppError, AppResult},
    mail::message::Content,
    users::validate,
};

pub struct SignupInput {
    pub name: String,
    pub username: String,
    pub password: SecretString,
    /// Optional; a verification message goes to it.
    pub email: Option<String>,
}

/// `signup`: creates the account and its first session in one transaction.
pub async fn signup(auth: &Auth, input: SignupInput, client: &Client) -> AppResult<Grant> {
    let name = validate::name(&input.name)?;
    let username = validate::username(&input.username)?;
    validate::password("password", &input.password)?;
    let email = match input.email.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
        Some(address) => {
            auth.mail.require("email")?;
            Some(validate::email("email", address)?)
        }
        None => None,
    };
    {
        let mut conn = auth.pool.get().await?;
        auth.rate_limits.take_signup(&mut conn, client.ip).await?;
        if let Some(address) = &email {
            // Signing up with someone else's address sends them a message too.
            auth.rate_limits.take_email(&mut conn, address, client.ip).await?;
        }
    }
    let network = auth.rate_limits.network(client.ip);
    let password_hash = auth.hasher.hash(Ticket::new(Lane::Signup, network), &input.password).await?;

    let user_agent = client.user_agent.as_deref();
    let policy = &auth.sessions;
    let (user, session, token) = auth
        .changes
        .run(async |c| {
            let new = NewUser {
                name: &name,
                username,
                password_hash: Some(&password_hash),
                email: email.as_ref().map(EmailAddress::as_str),
                email_key: email.as_ref().map(EmailAddress::key),
            };
            let user = db::users::insert(c, new).await.map_err(|e| match db::unique_violation(&e) {
                Some("users_username_lower_key") => AppError::UsernameTaken,
                _ => e.into(),
            })?;
            // An address another account verified stays that account's: the new one
            // keeps it as an unverified claim, its owner is told, and the answer is the
            // one a free address gets, so sign-up tells nobody whose address it is.
            if let Some(address) = &email {
                match db::users::find_by_verified_email(c, address).await?.and_then(|o| o.verified_address()) {
                    Some(owner) => auth.mail.queue_notice(c, &owner, Content::SignupWithYourAddress).await?,
                    None => auth.mail.queue_token(c, user.id, Purpose::VerifyEmail, address).await?,
                }
            }
            let (session, token) = sessions::open(c, policy, user.id, user_agent, Methods::PASSWORD).await?;
            Ok((user, session, token))
        })
        .await?;
    sessions::grant(auth, user, session.id, token, Methods::PASSWORD)
}

/// `signin`: one answer and one cost for a wrong password and an unknown user.
pub async fn signin(auth: &Auth, username: &str, password: &SecretString, client: &Client) -> AppResult<Grant> {
    let mut conn = auth.pool.get().await?;
    // Counted as a failure from here on, before the hash; forgiven if right.
    let attempt = auth.rate_limits.take_signin(&mut conn, username, client.ip).await?;
    // Usernames that could never exist still cost a hash: the time must not tell.
    let found = if validate::username(username).is_ok() {
        db::users::find_credentials(&mut conn, username).await?
    } else {
        None
    };
    // Do not hold a connection while hashing: the pool is smaller than the queue.
    drop(conn);
    // An account without a password (made through another provider) fails like an
    // unknown one, after the same hash.
    let stored = found.as_ref().and_then(|(_, hash)| hash.as_deref());
    let ticket = Ticket::new(Lane::Signin, auth.rate_limits.network(client.ip));
    let verified = match auth.hasher.verify(ticket, password, stored).await {
        Ok(verified) => verified,
        // Nothing was checked (the queue was full): not a failure of the client's.
        Err(err) => return Err(forgiven(auth, attempt, err).await),
    };
    let (Some((user, Some(stored_hash))), true) = (found.clone(), verified) else {
        // A guess that reached the hash is in the audit trail (the limits bound how
        // many); one the limits refused before it is only counted by them.
        let subject = found.as_ref().map(|(user, _)| user.id);
        let reason = if found.is_some() { "WRONG_PASSWORD" } else { "UNKNOWN_ACCOUNT" };
        auth.record_failed_signin(client, subject, Some(username), None, reason).await?;
        return Err(AppError::InvalidCredentials);
    };

    let upgraded =
        if auth.hasher.needs_rehash(&stored_hash) { Some(auth.hasher.hash(ticket, password).await?) } else { None };
    let mut conn = auth.pool.get().await?;
    auth.rate_limits.signin_succeeded(&mut conn, attempt).await?;
    drop(conn);
    let policy = &auth.sessions;
    let user_id = user.id;
    let user_agent = client.user_agent.as_deref();
    let (session, token) = auth
        .changes
        .run(async |c| {
            if let Some(hash) = &upgraded {
                db::users::set_password_hash(c, user_id, hash, PasswordWrite::Rehash).await?;
            }
            sessions::open(c, policy, user_id, user_agent, Methods::PASSWORD).await
        })
        .await?;
    sessions::grant(auth, user, session.id, token, Methods::PASSWORD)
}

/// `changePassword`: needs the current password; ends every other session.
pub async fn change_password(
    auth: &Auth,
    caller: &Caller,
    current: &SecretString,
    new: &SecretString,
) -> AppResult<()> {
    let user_id = caller.user.id;
    let without = WithoutPassword::Refused("currentPassword", "This account has no password yet: use setPassword");
    verify_current_password(auth, caller, current, without).await?;
    validate::password("newPassword", new)?;
    if new.expose_secret() == current.expose_secret() {
        return Err(AppError::bad_input("newPassword", "The new password must differ from the current one"));
    }
    let ticket = Ticket { lane: Lane::Account, requester: Requester::Account(user_id) };
    let hash = auth.hasher.hash(ticket, new).await?;
    let keep = caller.session_id;
    auth.changes
        .run(async |c| {
            db::users::set_password_hash(c, user_id, &hash, PasswordWrite::Changed).await?;
            db::events::password_changed(c, user_id, Some(keep)).await?;
            db::sessions::end_all(c, user_id, Some(keep), EndReason::PasswordChanged).await?;
            // Networks that knew the old password are strangers again.
            let account = super::rate_limit::account_key(&caller.user.username);
            db::signin_addresses::forget_account(c, &account).await?;
            if let Some(address) = caller.user.verified_address().filter(|_| auth.mail.enabled) {
                auth.mail.queue_notice(c, &address, Content::PasswordChanged).await?;
            }
            Ok(())
        })
        .await
}
