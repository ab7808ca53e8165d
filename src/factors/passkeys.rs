//! Passkey flows: registration, sign-in (with or without a username), `verifyPasskey`
//! (the second factor of a password session), and the owner's list, names and
//! deletions.
//!
//! What an anonymous caller can make the server do: `startPasskeySignIn` stores one
//! ceremony row (its state, a few hundred bytes) for `WEBAUTHN_CHALLENGE_TTL`, at most
//! `WEBAUTHN_CEREMONIES_PER_IP` per client network (then `RATE_LIMITED`), and costs
//! one small transaction; `finishPasskeySignIn` deletes that row (so a challenge is
//! answered once, by exactly one of concurrent finishes), counts a sign-in attempt as
//! a password sign-in does, atomically, before the signature check (one ES256, ES384
//! or RS256 verification, as the authenticator chose; no password hash), and forgives
//! it when right. A username
//! changes neither the answer nor the work: the options never list credentials (all
//! of ours are discoverable), and the ceremony is bound to the account when there is
//! one, to the name when there is none, so a finish fails the same way for both.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::{
    Factors, flows,
    webauthn::{self, COUNTER_WENT_BACKWARDS, RelyingParty, Started},
};
use crate::{
    auth::{Auth, Caller, Client, Grant, check::forgiven, rate_limit::account_key, sessions},
    db::{
        self,
        ids::{CeremonyId, PasskeyId},
        models::{Ceremony, FirstFactor, Methods, NewCeremony, NewPasskey, PasskeyRow, SecondFactor},
        passkeys::Refused,
    },
    error::{AppError, AppResult},
    mail::message::Content,
    users::validate,
};

const REGISTRATION: &str = "REGISTRATION";
const SIGN_IN: &str = "SIGN_IN";
const VERIFICATION: &str = "VERIFICATION";

/// The longest name an owner may give a passkey.
const MAX_NAME_CHARS: usize = 64;

/// What a start hands the client.
pub struct Challenge {
    pub id: CeremonyId,
    pub options_json: String,
    pub expires_at: DateTime<Utc>,
}

fn relying_party(factors: &Factors) -> AppResult<&RelyingParty> {
    factors.relying_party.as_ref().ok_or_else(|| AppError::bad_input("passkeys", "Passkeys are off on this server"))
}

/// Stores the ceremony's state and hands out its options.
async fn open(
    auth: &Auth,
    factors: &Factors,
    client: &Client,
    kind: &str,
    caller: Option<&Caller>,
    account: (Option<db::ids::UserId>, Option<&str>),
    started: Started,
) -> AppResult<Challenge> {
    let limits = &factors.ceremonies;
    let expires_at = Utc::now() + limits.ttl;
    // A client whose address is unknown (only in-process callers) counts as one network.
    let network = auth.rate_limits.network(client.ip).map_or_else(|| "unknown".to_owned(), |n| n.to_string());
    let new = NewCeremony {
        kind,
        user_id: account.0,
        session_id: caller.map(|c| c.session_id),
        username_key: account.1,
        network: &network,
        state: &started.state,
        expires_at,
    };
    let mut conn = auth.pool.get().await?;
    match db::passkeys::open_ceremony(&mut conn, new, limits.per_network, limits.per_account).await? {
        Ok(id) => Ok(Challenge { id, options_json: started.options_json, expires_at }),
        Err(Refused::NetworkFull { frees_at }) => {
            metrics::counter!("authgraph_rate_limited_total", "bucket" => "passkey_ceremonies").increment(1);
            let seconds = (frees_at - Utc::now()).num_seconds().max(1) as u64;
            Err(AppError::RateLimited { retry_after_secs: seconds })
        }
    }
}

/// Takes the ceremony `id` of `kind`, or `INVALID_PASSKEY`.
async fn take(conn: &mut AsyncPgConnection, id: CeremonyId, kind: &str) -> AppResult<Ceremony> {
    db::passkeys::take_ceremony(conn, id, kind)
        .await?
        .ok_or(AppError::InvalidPasskey("the challenge is unknown, used, expired or of another ceremony"))
}

fn parse<T: serde::de::DeserializeOwned>(json: &str) -> AppResult<T> {
    serde_json::from_str(json).map_err(|_| {
        AppError::bad_input("credentialJson", "Not a credential: send JSON.stringify(credential.toJSON())")
    })
}

/// `startPasskeyRegistration`: options for a new discoverable passkey of the caller.
/// The guard has asked for AAL2 if the account has a factor already.
pub async fn start_registration(
    auth: &Auth,
    factors: &Factors,
    caller: &Caller,
    client: &Client,
) -> AppResult<Challenge> {
    let rp = relying_party(factors)?;
    let user = &caller.user;
    let existing = {
        let mut conn = auth.pool.get().await?;
        db::passkeys::list(&mut conn, user.id).await?
    };
    let exclude = existing.iter().map(|p| p.credential_id.clone()).collect();
    let started = rp.start_registration(user.id, &user.username, &user.name, exclude)?;
    open(auth, factors, client, REGISTRATION, Some(caller), (Some(user.id), None), started).await
}

/// `finishPasskeyRegistration`: stores the verified credential. The account's first
/// factor raises this session to AAL2 (its refresh then says so), as `confirmTotp` does,
/// and tells the owner a second factor is on.
pub async fn finish_registration(
    auth: &Auth,
    factors: &Factors,
    caller: &Caller,
    challenge: CeremonyId,
    credential_json: &str,
    name: Option<&str>,
) -> AppResult<PasskeyRow> {
    let rp = relying_party(factors)?;
    let credential: RegisterPublicKeyCredential = parse(credential_json)?;
    let name = match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => validate_name(name)?,
        None => default_name(credential_json),
    };
    let ceremony = take(&mut *auth.pool.get().await?, challenge, REGISTRATION).await?;
    if ceremony.user_id != Some(caller.user.id) || ceremony.session_id != Some(caller.session_id) {
        return Err(AppError::InvalidPasskey("another session's registration"));
    }
    let passkey = rp.finish_registration(&credential, ceremony.state)?;
    let record = serde_json::to_value(&passkey).map_err(AppError::internal)?;
    let flags = webauthn::flags_of(&record);
    let transports = transports(&credential);
    let user = &caller.user;
    let session_id = caller.session_id;
    let credential_id: &[u8] = passkey.cred_id().as_ref();
    let new = NewPasskey {
        user_id: user.id,
        credential_id,
        credential: &record,
        name: &name,
        backed_up: flags.backed_up,
        backup_eligible: flags.backup_eligible,
        transports: &transports,
        sign_count: flags.counter,
    };
    let inserted = auth
        .changes
        .run(async |c| {
            db::users::lock(c, user.id).await?;
            let (row, first) = match db::passkeys::insert(c, new).await {
                Ok(inserted) => inserted,
                Err(err) if db::unique_violation(&err) == Some("passkeys_credential_id_key") => {
                    return Err(AppError::PasskeyExists);
                }
                Err(err) => return Err(err.into()),
            };
            if first {
                let method = SecondFactor::passkey(flags.backup_eligible);
                if db::factors::raise_session(c, session_id, method, false).await?.is_none() {
                    return Err(AppError::Unauthenticated(crate::auth::SESSION_ENDED));
                }
            }
            if let Some(address) = user.verified_address().filter(|_| auth.mail.enabled) {
                auth.mail.queue_notice(c, &address, Content::PasskeyAdded { first }).await?;
            }
            Ok(row)
        })
        .await;
    match inserted {
        // A credential id registered to another account is not this caller's to learn of.
        Err(AppError::PasskeyExists) => {
            let mut conn = auth.pool.get().await?;
            match db::passkeys::find_by_credential(&mut conn, credential_id).await? {
                Some(row) if row.user_id == user.id => Err(AppError::PasskeyExists),
                _ => Err(AppError::InvalidPasskey("a credential id registered to another account")),
            }
        }
        other => other,
    }
}

/// `startPasskeySignIn`: options for any discoverable passkey of this RP. With a
/// username, the same options, and the ceremony bound to that account (or name).
pub async fn start_sign_in(
    auth: &Auth,
    factors: &Factors,
    username: Option<&str>,
    client: &Client,
) -> AppResult<Challenge> {
    let rp = relying_party(factors)?;
    let account = match username.map(str::trim).filter(|u| !u.is_empty()) {
        Some(username) => {
            let found = if validate::username(username).is_ok() {
                let mut conn = auth.pool.get().await?;
                db::users::find_by_username(&mut conn, username).await?.map(|u| u.id)
            } else {
                None
            };
            (found, Some(account_key(username)))
        }
        None => (None, None),
    };
    let started = rp.start_sign_in()?;
    open(auth, factors, client, SIGN_IN, None, (account.0, account.1.as_deref()), started).await
}

/// `finishPasskeySignIn`: checks the assertion and opens a session at AAL2.
pub async fn finish_sign_in(
    auth: &Auth,
    factors: &Factors,
    challenge: CeremonyId,
    credential_json: &str,
    client: &Client,
) -> AppResult<Grant> {
    let rp = relying_party(factors)?;
    let credential: PublicKeyCredential = parse(credential_json)?;
    // The ceremony, the credential, its account and the attempt, on one connection.
    let (ceremony, handle, row, user, attempt) = {
        let mut conn = auth.pool.get().await?;
        let ceremony = take(&mut conn, challenge, SIGN_IN).await?;
        let (handle, credential_id) = rp.identify(&credential)?;
        let row = db::passkeys::find_by_credential(&mut conn, credential_id).await?;
        let user = match &row {
            Some(row) => db::users::find(&mut conn, row.user_id).await?,
            None => None,
        };
        // Counted for the account the ceremony was begun for, else the one the
        // credential names, else the client's network alone.
        let counted = ceremony.username_key.clone().or_else(|| user.as_ref().map(|u| account_key(&u.username)));
        let attempt = auth.rate_limits.take_passkey_signin(&mut conn, counted.as_deref(), client.ip).await?;
        (ceremony, handle, row, user, attempt)
    };
    let (Some(row), Some(user)) = (row, user) else {
        return Err(AppError::InvalidPasskey("an unknown credential"));
    };
    if row.user_id.as_uuid() != handle {
        return Err(AppError::InvalidPasskey("the user handle is not the credential's account"));
    }
    if ceremony.username_key.is_some() && ceremony.user_id != Some(user.id) {
        return Err(AppError::InvalidPasskey("another account's credential"));
    }
    let method = checked_use(auth, &row, |passkey| rp.finish_sign_in(&credential, ceremony.state, passkey)).await;
    let method = match method {
        Ok(method) => method,
        Err(err @ AppError::InvalidPasskey(_)) => {
            // An assertion of the account's passkey that did not verify is a failed
            // sign-in in the trail, as a wrong password is (the limits bound how many).
            auth.record_failed_signin(client, Some(user.id), Some(&user.username), None, "PASSKEY_NOT_VERIFIED")
                .await?;
            return Err(err);
        }
        Err(err) => return Err(forgiven(auth, attempt, err).await),
    };
    {
        let mut conn = auth.pool.get().await?;
        auth.rate_limits.signin_succeeded(&mut conn, attempt).await?;
    }
    let policy = &auth.sessions;
    let user_agent = client.user_agent.as_deref();
    let methods = Methods { first: FirstFactor::Passkey, second: Some(method) };
    let (session, token) =
        auth.changes.run(async |c| sessions::open(c, policy, user.id, user_agent, methods).await).await?;
    sessions::grant(auth, user, session.id, token, session.methods())
}

/// `startPasskeyVerification`: options for one of the caller's passkeys.
pub async fn start_verification(
    auth: &Auth,
    factors: &Factors,
    caller: &Caller,
    client: &Client,
) -> AppResult<Challenge> {
    let rp = relying_party(factors)?;
    let rows = {
        let mut conn = auth.pool.get().await?;
        db::passkeys::list(&mut conn, caller.user.id).await?
    };
    let passkeys = rows
        .iter()
        .filter(|r| r.flagged_at.is_none())
        .map(|r| webauthn::passkey_of(&r.credential))
        .collect::<AppResult<Vec<_>>>()?;
    if passkeys.is_empty() {
        return Err(AppError::bad_input("passkeys", "This account has no passkey"));
    }
    let started = rp.start_verification(&passkeys)?;
    open(auth, factors, client, VERIFICATION, Some(caller), (Some(caller.user.id), None), started).await
}

/// `verifyPasskey`: one of the caller's passkeys raises the session to AAL2 and
/// returns a new pair; the refresh tokens the session was given before stop rotating.
/// Counted like a TOTP code (per session and account), forgiven when right.
pub async fn verify(
    auth: &Auth,
    factors: &Factors,
    caller: &Caller,
    challenge: CeremonyId,
    credential_json: &str,
) -> AppResult<Grant> {
    let rp = relying_party(factors)?;
    let credential: PublicKeyCredential = parse(credential_json)?;
    let user = &caller.user;
    // The attempt (counted first), the ceremony and the credential, on one connection.
    let (attempt, ceremony, row) = {
        let mut conn = auth.pool.get().await?;
        let attempt = auth.rate_limits.take_mfa(&mut conn, user.id, caller.session_id).await?;
        let ceremony = take(&mut conn, challenge, VERIFICATION).await?;
        if ceremony.user_id != Some(user.id) || ceremony.session_id != Some(caller.session_id) {
            return Err(AppError::InvalidPasskey("another session's verification"));
        }
        let row = db::passkeys::find_by_credential(&mut conn, credential.raw_id.as_ref()).await?;
        (attempt, ceremony, row)
    };
    let Some(row) = row.filter(|r| r.user_id == user.id) else {
        return Err(AppError::InvalidPasskey("not a credential of this account"));
    };
    let method = match checked_use(auth, &row, |_| rp.finish_verification(&credential, ceremony.state)).await {
        Ok(method) => method,
        Err(err @ AppError::InvalidPasskey(_)) => return Err(err),
        Err(err) => return Err(forgiven(auth, attempt, err).await),
    };
    {
        let mut conn = auth.pool.get().await?;
        auth.rate_limits.forgive(&mut conn, &attempt).await?;
    }
    let policy = &auth.sessions;
    let session_id = caller.session_id;
    let (token, methods) = auth
        .changes
        .run(async |c| {
            let Some(session) = db::factors::raise_session(c, session_id, method, true).await? else {
                return Err(AppError::Unauthenticated(crate::auth::SESSION_ENDED));
            };
            Ok((sessions::new_chain(c, policy, &session).await?, session.methods()))
        })
        .await?;
    sessions::grant(auth, user.clone(), session_id, token, methods)
}

/// Checks an assertion of the stored passkey `row` with `check`, then accepts its
/// counter (one conditional UPDATE). A counter that went backwards flags the passkey.
/// The factor it passed, device-bound or synced.
async fn checked_use(
    auth: &Auth,
    row: &PasskeyRow,
    check: impl FnOnce(&webauthn_rs::prelude::Passkey) -> AppResult<webauthn_rs::prelude::AuthenticationResult>,
) -> AppResult<SecondFactor> {
    if row.flagged_at.is_some() {
        return Err(AppError::InvalidPasskey("a passkey flagged as cloned"));
    }
    let mut passkey = webauthn::passkey_of(&row.credential)?;
    let result = match check(&passkey) {
        Ok(result) => result,
        Err(AppError::InvalidPasskey(COUNTER_WENT_BACKWARDS)) => {
            let (id, user) = (row.id, row.user_id);
            auth.changes.run(async |c| db::passkeys::flag(c, id, user).await.map_err(Into::into)).await?;
            tracing::warn!(passkey = %row.id, "passkey counter went backwards; flagged");
            return Err(AppError::InvalidPasskey(COUNTER_WENT_BACKWARDS));
        }
        Err(err) => return Err(err),
    };
    passkey.update_credential(&result);
    let record = serde_json::to_value(&passkey).map_err(AppError::internal)?;
    let counter = i64::from(result.counter());
    let mut conn = auth.pool.get().await?;
    if !db::passkeys::accept_use(&mut conn, row.id, counter, &record, result.backup_state()).await? {
        return Err(AppError::InvalidPasskey("a concurrent use moved the counter past this one"));
    }
    Ok(SecondFactor::passkey(result.backup_eligible()))
}

/// `passkeys`: the caller's, newest first.
pub async fn list(auth: &Auth, caller: &Caller) -> AppResult<Vec<PasskeyRow>> {
    let user_id = caller.user.id;
    db::read(&auth.pool, |conn| Box::pin(db::passkeys::list(conn, user_id))).await
}

/// `renamePasskey`.
pub async fn rename(auth: &Auth, caller: &Caller, id: PasskeyId, name: &str) -> AppResult<PasskeyRow> {
    let name = validate_name(name.trim())?;
    let user_id = caller.user.id;
    auth.changes
        .run(async |c| db::passkeys::rename(c, user_id, id, &name).await.map_err(Into::into))
        .await?
        .ok_or(AppError::NotFound)
}

/// `deletePasskey`: ends no session. The account's last factor going turns the second
/// factor off (its recovery codes go) and tells the owner. `LAST_SIGN_IN_METHOD` when
/// it is the account's last way to sign in (no password, no linked identity).
pub async fn delete(auth: &Auth, caller: &Caller, id: PasskeyId) -> AppResult<()> {
    let user = &caller.user;
    auth.changes
        .run(async |c| {
            db::users::lock(c, user.id).await?;
            if !db::passkeys::delete(c, user.id, id).await? {
                return Err(AppError::NotFound);
            }
            // An account made through another provider may have no password: its
            // last passkey stays while no identity is linked either.
            if db::identities::ways_in(c, user.id).await? == 0 {
                return Err(AppError::LastSignInMethod);
            }
            if db::factors::settle(c, user.id).await? {
                flows::notify_off(&auth.mail, c, user, false).await?;
            }
            Ok(())
        })
        .await
}

fn validate_name(name: &str) -> AppResult<String> {
    // An account name's rules (NFC, no control or invisible formatting characters),
    // shorter: authenticators and lists show it on one line.
    let name = validate::name(name)?;
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AppError::bad_input("name", format!("A passkey's name is 1 to {MAX_NAME_CHARS} characters")));
    }
    Ok(name)
}

/// The transports the browser reported, as WebAuthn spells them.
fn transports(credential: &RegisterPublicKeyCredential) -> Vec<String> {
    let reported = credential.response.transports.as_deref().unwrap_or_default();
    reported
        .iter()
        .filter_map(|t| serde_json::to_value(t).ok()?.as_str().map(str::to_owned))
        .filter(|t| ["internal", "hybrid", "usb", "nfc", "ble"].contains(&t.as_str()))
        .collect()
}

/// Authenticators we can name from the AAGUID the browser's JSON reports (in
/// `response.authenticatorData`); the rest are "Passkey".
const KNOWN_AUTHENTICATORS: &[(&str, &str)] = &[
    ("fbfc3007-154e-4ecc-8c0b-6e020557d7bd", "iCloud Keychain"),
    ("ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4", "Google Password Manager"),
    ("adce0002-35bc-c60a-648b-0b25f1f05503", "Chrome on Mac"),
    ("08987058-cadc-4b81-b6e1-30de50dcbe96", "Windows Hello"),
    ("9ddd1817-af5a-4672-a2b9-3e3dd95000a9", "Windows Hello"),
    ("6028b017-b1d4-4c02-b4b3-afcdafc96bb2", "Windows Hello"),
    ("bada5566-a7aa-401f-bd96-45619a55120d", "1Password"),
    ("d548826e-79b4-db40-a3d8-11116f7e8349", "Bitwarden"),
];

/// The name of a passkey its owner did not name: its authenticator's, when known.
fn default_name(credential_json: &str) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let aaguid = serde_json::from_str::<serde_json::Value>(credential_json).ok().and_then(|v| {
        let data = URL_SAFE_NO_PAD.decode(v["response"]["authenticatorData"].as_str()?.trim_end_matches('=')).ok()?;
        // rpIdHash (32), flags (1), signCount (4), then the AAGUID (16).
        uuid::Uuid::from_slice(data.get(37..53)?).ok()
    });
    aaguid
        .and_then(|id| KNOWN_AUTHENTICATORS.iter().find(|(known, _)| *known == id.to_string()))
        .map_or_else(|| "Passkey".to_owned(), |(_, name)| (*name).to_owned())
}
