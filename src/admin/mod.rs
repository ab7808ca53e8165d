//! Administration: what an ADMIN (through the API) or an operator (through the command
//! line, `cli`) may do to other accounts — find them, see and end their sessions,
//! change their role, ban them, reset their second factor, act as them.
//!
//! Every power takes an `Acting`: who acts and why. For the API it is made by
//! `Acting::admin`, which passes `Caller::admin` (the one admin rule) first, so no
//! power can be reached without it. The change then runs with the actor and the
//! reason named to its transaction (`db::change::Origin`), so the audit rows its
//! triggers write say who did it and why; nothing here writes an audit row itself.
//!
//! The last ADMIN in good standing cannot be demoted, banned or deleted through the
//! API (`keep_an_admin`); the command line, run on the server's machine, can, since it
//! is also how the first ADMIN is made.

pub mod cli;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{
    auth::{AdminRule, Auth, Caller, Client, sessions},
    change::Changes,
    db::{
        self, DbPool,
        change::{ORIGIN, Origin},
        ids::{SessionId, UserId},
        models::{Methods, Role, Session, User, permanent_ban},
        sessions::EndReason,
        users::Search,
    },
    error::{AppError, AppResult},
    mail::Mail,
    users::{self, UserPage},
};

/// The longest reason kept; the audit row keeps this much.
const MAX_REASON_CHARS: usize = 1000;
/// The longest search text.
const MAX_SEARCH_CHARS: usize = 100;

/// Who acts and why.
#[derive(Debug, Clone)]
pub struct Acting {
    /// The ADMIN acting through the API; `None` for the command line, whose operator
    /// the door already named.
    admin: Option<UserId>,
    reason: String,
}

impl Acting {
    /// An ADMIN through the API: the admin rule first (`FORBIDDEN`, `MFA_REQUIRED`),
    /// then the reason, which every admin mutation must give.
    pub fn admin(caller: &Caller, rule: AdminRule, reason: &str) -> AppResult<Self> {
        caller.admin(rule)?;
        Ok(Self { admin: Some(caller.user.id), reason: reason_of(reason)? })
    }

    /// The operator of the command line (named by `cli::operator`).
    pub fn operator(reason: Option<&str>) -> AppResult<Self> {
        let reason = reason.map(reason_of).transpose()?.unwrap_or_else(|| "command line".to_owned());
        Ok(Self { admin: None, reason })
    }

    /// Whether the API acts: only then does the last-ADMIN rule hold.
    fn through_api(&self) -> bool {
        self.admin.is_some()
    }

    /// The door's origin with this actor and reason, for the audit rows.
    fn origin(&self) -> Origin {
        Origin { reason: Some(self.reason.clone()), ..Origin::acting(self.admin) }
    }

    /// Runs `work` with this actor and reason in scope for every change it makes.
    async fn scope<T>(&self, work: impl Future<Output = AppResult<T>>) -> AppResult<T> {
        ORIGIN.scope(self.origin(), work).await
    }
}

fn reason_of(reason: &str) -> AppResult<String> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(AppError::bad_input("reason", "Say why: the reason goes into the audit trail"));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(AppError::bad_input("reason", format!("reason is at most {MAX_REASON_CHARS} characters")));
    }
    Ok(reason.to_owned())
}

/// What `adminUsers` filters on, as the client sent it.
#[derive(Debug, Default)]
pub struct UserFilter {
    pub search: Option<String>,
    pub role: Option<Role>,
    pub banned: Option<bool>,
}

/// `adminUsers`: accounts matching the filter, oldest first, keyset-paged like `users`
/// (the same cursors). The total counts the matches, and is read only when asked for.
pub async fn search(
    pool: &DbPool,
    filter: UserFilter,
    first: Option<i32>,
    after: Option<&str>,
    with_total: bool,
) -> AppResult<UserPage> {
    let first = users::page_size(first)?;
    let position = after.map(users::decode_cursor).transpose()?;
    let text = match filter.search.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) if text.chars().count() > MAX_SEARCH_CHARS => {
            return Err(AppError::bad_input("search", format!("search is at most {MAX_SEARCH_CHARS} characters")));
        }
        Some(text) if text.chars().any(char::is_control) => {
            return Err(AppError::bad_input("search", "search has a control character"));
        }
        Some(text) => Some(text.to_lowercase()),
    };
    let search = Search { text, role: filter.role, banned: filter.banned };
    let (mut found, total) = db::read(pool, |conn| {
        let search = search.clone();
        Box::pin(async move { db::users::search(conn, &search, position, i64::from(first) + 1, with_total).await })
    })
    .await?;
    let has_next_page = found.len() > first as usize;
    found.truncate(first as usize);
    Ok(UserPage { users: found, has_next_page, has_previous_page: position.is_some(), total_count: total })
}

/// `userSessions`: any account's live sessions (impersonations among them).
pub async fn sessions_of(pool: &DbPool, id: UserId) -> AppResult<Vec<Session>> {
    let found = db::read(pool, |conn| {
        Box::pin(async move {
            if db::users::find(conn, id).await?.is_none() {
                return Ok(None);
            }
            Ok(Some(db::sessions::list_live(conn, id).await?))
        })
    })
    .await?;
    found.ok_or(AppError::NotFound)
}

/// Refuses a change that would leave no ADMIN in good standing, when `id` is one and
/// the API acts (see `db::users::admins_besides` for the lock that makes this hold
/// under concurrent requests).
async fn keep_an_admin(c: &mut db::change::Change<'_>, acting: &Acting, id: UserId) -> AppResult<()> {
    if !acting.through_api() {
        return Ok(());
    }
    match db::users::admins_besides(c, id).await? {
        (true, 0) => Err(AppError::LastAdmin),
        _ => Ok(()),
    }
}

/// `setUserRole`, and the command line's `users set-role`.
pub async fn set_role(changes: &Changes, acting: &Acting, id: UserId, role: Role) -> AppResult<User> {
    acting
        .scope(changes.run(async |c| {
            if role != Role::Admin {
                keep_an_admin(c, acting, id).await?;
            }
            db::users::set_role(c, id, role).await?.ok_or(AppError::NotFound)
        }))
        .await
}

/// `banUser`: refuses every new session of the account until `until` (`None`:
/// permanently) and ends every session it has, in one transaction; the sessions'
/// sockets close on every instance when they hear of it (the session events).
pub async fn ban(changes: &Changes, acting: &Acting, id: UserId, until: Option<DateTime<Utc>>) -> AppResult<User> {
    if until.is_some_and(|until| until <= Utc::now()) {
        return Err(AppError::bad_input("until", "until must be in the future"));
    }
    if acting.admin == Some(id) {
        return Err(AppError::bad_input("userId", "An admin cannot ban their own account"));
    }
    let until = until.unwrap_or_else(permanent_ban);
    acting
        .scope(changes.run(async |c| {
            keep_an_admin(c, acting, id).await?;
            // The row first: a sign-in inserting a session now waits for this commit
            // and is then refused; one that got in before is ended just below.
            let user = db::users::set_ban(c, id, Some(until)).await?.ok_or(AppError::NotFound)?;
            db::sessions::end_all(c, id, None, EndReason::Banned).await?;
            Ok(user)
        }))
        .await
}

/// `unbanUser`: the account may sign in again.
pub async fn unban(changes: &Changes, acting: &Acting, id: UserId) -> AppResult<User> {
    acting.scope(changes.run(async |c| db::users::set_ban(c, id, None).await?.ok_or(AppError::NotFound))).await
}

/// `endUserSessions`: one session of the account (`session`), or all of them. Returns
/// how many ended.
pub async fn end_sessions(
    changes: &Changes,
    acting: &Acting,
    id: UserId,
    session: Option<SessionId>,
) -> AppResult<usize> {
    acting
        .scope(changes.run(async |c| {
            if db::users::find(c, id).await?.is_none() {
                return Err(AppError::NotFound);
            }
            Ok(match session {
                Some(session) => usize::from(db::sessions::end_of_user(c, id, session, EndReason::Admin).await?),
                None => db::sessions::end_all(c, id, None, EndReason::Admin).await?,
            })
        }))
        .await
}

/// `resetUserMfa`: removes every second factor and passkey of the account (lost
/// devices), ends its sessions and tells its verified address.
pub async fn reset_mfa(changes: &Changes, mail: &Mail, acting: &Acting, id: UserId) -> AppResult<(User, usize)> {
    let (_, ended) = acting.scope(crate::factors::flows::reset(changes, mail, id)).await?;
    let user = db::read(changes.pool(), |conn| Box::pin(db::users::find(conn, id))).await?;
    Ok((user.ok_or(AppError::NotFound)?, ended))
}

/// What `impersonate` hands the ADMIN: an access token for the account, and nothing
/// to renew it with.
pub struct Impersonation {
    pub access_token: String,
    pub expires_in: i64,
    pub user: User,
    pub methods: Methods,
}

/// `impersonate`: a session of the account in which `admin` acts (its token's `act`
/// claim), lasting `ttl`, with the assurance of the admin's own session, no refresh
/// token and no cookie. Never of an ADMIN (nor of oneself); a banned account is
/// refused like any sign-in of it (`ACCOUNT_BANNED`).
pub async fn impersonate(
    auth: &Auth,
    admin: &Caller,
    acting: &Acting,
    id: UserId,
    client: &Client,
    ttl: Duration,
) -> AppResult<Impersonation> {
    let own = admin.session_id;
    let admin_id = admin.user.id;
    let user_agent = client.user_agent.as_deref();
    let (user, session) = acting
        .scope(auth.changes.run(async |c| {
            let user = db::users::find(c, id).await?.ok_or(AppError::NotFound)?;
            if user.role == Role::Admin || user.id == admin_id {
                return Err(AppError::Forbidden);
            }
            let methods = db::sessions::find(c, own)
                .await?
                .map(|s| s.methods())
                .ok_or(AppError::Unauthenticated("session ended"))?;
            let session = sessions::open_impersonation(c, id, admin_id, user_agent, methods, ttl).await?;
            Ok((user, session))
        }))
        .await?;
    let methods = session.methods();
    let access_token =
        auth.tokens.issue_acting(user.id, session.id, user.role, methods, admin_id, ttl).map_err(AppError::internal)?;
    Ok(Impersonation { access_token, expires_in: ttl.as_secs() as i64, user, methods })
}

/// Finds an account by username for the command line.
pub async fn find_by_username(pool: &DbPool, username: &str) -> anyhow::Result<User> {
    db::read(pool, |conn| {
        let name = username.to_owned();
        Box::pin(async move { db::users::find_by_username(conn, &name).await })
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:?}"))?
    .ok_or_else(|| anyhow::anyhow!("no user named {username:?}"))
}
