use async_graphql::{Context, ID, MergedObject, Object};

use super::{
    auth_of, caller, deliver, factors_of,
    guard::Protected,
    request_auth,
    types::{
        AuthPayload, ChangeEmailInput, ChangePasswordInput, LogoutScopeValue, RecoveryCodes, ResetPasswordInput,
        SigninInput, SignupInput, TotpEnrollment, UpdateUserInput, VerifyEmailInput, secret,
    },
};
use crate::{
    auth::{self, credentials, sessions::LogoutScope},
    db::models::User,
    email,
    error::AppResult,
    factors, users,
};

/// The mutations: the core's, then each capability's own, merged into one type.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    CoreMutation,
    super::passkeys::PasskeyMutation,
    super::social::SocialMutation,
    super::admin::AdminMutation,
);

#[derive(Default)]
pub struct CoreMutation;

#[Object]
impl CoreMutation {
    /// Public. Creates the account and its first session.
    async fn signup(&self, ctx: &Context<'_>, input: SignupInput) -> AppResult<AuthPayload> {
        let input = credentials::SignupInput {
            name: input.name,
            username: input.username,
            password: secret(input.password),
            email: input.email,
        };
        Ok(deliver(ctx, credentials::signup(auth_of(ctx), input, &request_auth(ctx).client).await?))
    }

    /// Public. Opens a new session.
    async fn signin(&self, ctx: &Context<'_>, input: SigninInput) -> AppResult<AuthPayload> {
        let password = secret(input.password);
        let client = &request_auth(ctx).client;
        Ok(deliver(ctx, credentials::signin(auth_of(ctx), &input.username, &password, client).await?))
    }

    /// Public. Rotates the refresh token (argument, or the httpOnly cookie when enabled).
    async fn refresh(&self, ctx: &Context<'_>, refresh_token: Option<String>) -> AppResult<AuthPayload> {
        let client = &request_auth(ctx).client;
        let token = match refresh_token {
            Some(token) => secret(token),
            None if client.refresh_cookie_duplicated => {
                let message = "The refresh cookie was sent more than once; clear the site's cookies";
                return Err(crate::error::AppError::bad_input("refreshToken", message));
            }
            None => client.refresh_cookie.clone().unwrap_or_else(|| secret(String::new())),
        };
        Ok(deliver(ctx, auth::sessions::refresh(auth_of(ctx), &token).await?))
    }

    /// Protected; an AAL1 session may call it. Ends sessions; their access tokens stop
    /// working at once.
    #[graphql(guard = "Protected")]
    async fn logout(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(LogoutScopeValue::Current)")] scope: Option<LogoutScopeValue>,
    ) -> AppResult<bool> {
        let caller = caller(ctx).await?;
        let scope: LogoutScope = scope.unwrap_or(LogoutScopeValue::Current).into();
        // An impersonation ends itself, never the user's own sessions.
        if caller.impersonator.is_some() && scope != LogoutScope::Current {
            return Err(crate::error::AppError::Forbidden);
        }
        auth::sessions::logout(auth_of(ctx), caller, scope).await?;
        if scope != LogoutScope::Others {
            request_auth(ctx).end_refresh();
        }
        Ok(true)
    }

    /// Protected. The caller's own account, or any account for an ADMIN.
    #[graphql(guard = "Protected")]
    async fn update_user(&self, ctx: &Context<'_>, id: ID, input: UpdateUserInput) -> AppResult<User> {
        let caller = caller(ctx).await?;
        let (auth, (name, username)) = (auth_of(ctx), (input.name.as_deref(), input.username.as_deref()));
        // An impersonation may change the user's name, not the name they sign in with.
        if caller.impersonator.is_some() && username.is_some() {
            return Err(crate::error::AppError::Forbidden);
        }
        Ok(users::update(&auth.changes, &caller.user, caller.admin(auth.admin_rule), &id, name, username).await?)
    }

    /// Protected. Needs the current password; ends every other session.
    #[graphql(guard = "Protected")]
    async fn change_password(&self, ctx: &Context<'_>, input: ChangePasswordInput) -> AppResult<bool> {
        let caller = caller(ctx).await?;
        let (current, new) = (secret(input.current_password), secret(input.new_password));
        credentials::change_password(auth_of(ctx), caller, &current, &new).await?;
        Ok(true)
    }

    /// Protected. The caller's own account, or any account for an ADMIN; ends its sessions.
    #[graphql(guard = "Protected")]
    async fn delete_user(&self, ctx: &Context<'_>, id: ID) -> AppResult<bool> {
        let caller = caller(ctx).await?;
        let auth = auth_of(ctx);
        users::delete(&auth.changes, &caller.user, caller.admin(auth.admin_rule), &id).await?;
        Ok(true)
    }

    /// Public. If an account has this verified address, sends it a reset link and code.
    /// Always true: the answer never tells whether such an account exists.
    async fn request_password_reset(&self, ctx: &Context<'_>, email: String) -> AppResult<bool> {
        email::request_password_reset(auth_of(ctx), &email, &request_auth(ctx).client).await?;
        Ok(true)
    }

    /// Public. Sets a new password with a token, or an address and code, from
    /// requestPasswordReset. Ends every session of the account and opens a new one.
    async fn reset_password(&self, ctx: &Context<'_>, input: ResetPasswordInput) -> AppResult<AuthPayload> {
        let input = email::ResetInput {
            token: input.token,
            email: input.email,
            code: input.code,
            new_password: secret(input.new_password),
        };
        Ok(deliver(ctx, email::reset_password(auth_of(ctx), input, &request_auth(ctx).client).await?))
    }

    /// Protected. Sends a fresh verification message to the caller's unverified address.
    #[graphql(guard = "Protected")]
    async fn request_email_verification(&self, ctx: &Context<'_>) -> AppResult<bool> {
        let caller = caller(ctx).await?;
        email::request_verification(auth_of(ctx), caller, &request_auth(ctx).client).await?;
        Ok(true)
    }

    /// Public with a link token; protected with a code. Marks the address verified.
    async fn verify_email(&self, ctx: &Context<'_>, input: VerifyEmailInput) -> AppResult<bool> {
        // Only a code needs the session: a link works signed out, whatever token rides along.
        let caller = if input.code.is_some() { Some(caller(ctx).await?) } else { None };
        let client = &request_auth(ctx).client;
        email::verify_email(auth_of(ctx), input.token.as_deref(), input.code.as_deref(), caller, client).await?;
        Ok(true)
    }

    /// Protected. Needs the current password. The new address gets a verification
    /// message and the old one a notice; the change takes effect when the new address
    /// is verified.
    #[graphql(guard = "Protected")]
    async fn change_email(&self, ctx: &Context<'_>, input: ChangeEmailInput) -> AppResult<bool> {
        let caller = caller(ctx).await?;
        let password = secret(input.current_password);
        let client = &request_auth(ctx).client;
        email::change_email(auth_of(ctx), caller, &password, &input.new_email, client).await?;
        Ok(true)
    }

    /// Protected (AAL2 when a factor is already on). Starts TOTP enrollment: a new
    /// secret for an authenticator app. Nothing changes until confirmTotp.
    #[graphql(guard = "Protected")]
    async fn enroll_totp(&self, ctx: &Context<'_>) -> AppResult<TotpEnrollment> {
        let caller = caller(ctx).await?;
        let e = factors::flows::enroll(auth_of(ctx), factors_of(ctx), caller).await?;
        Ok(TotpEnrollment { secret: e.secret, uri: e.uri, qr_svg: e.qr_svg })
    }

    /// Protected. Confirms enrollment with a current code: turns the factor on (in place
    /// of an earlier one), raises this session to AAL2 and returns ten recovery codes,
    /// shown this once, with an access token at AAL2. The account's other sessions must
    /// pass verifyMfa.
    #[graphql(guard = "Protected")]
    async fn confirm_totp(&self, ctx: &Context<'_>, code: String) -> AppResult<RecoveryCodes> {
        let caller = caller(ctx).await?;
        let confirmed = factors::flows::confirm(auth_of(ctx), factors_of(ctx), caller, &secret(code)).await?;
        Ok(RecoveryCodes::new(&confirmed.codes, Some(confirmed.access_token)))
    }

    /// Protected; an AAL1 session may call it. A TOTP code or a recovery code: raises the
    /// session to AAL2 and returns new tokens (the session's earlier refresh token stops
    /// working). With a recovery code, recoveryCodesLeft says how many remain.
    #[graphql(guard = "Protected")]
    async fn verify_mfa(&self, ctx: &Context<'_>, code: String) -> AppResult<AuthPayload> {
        let caller = caller(ctx).await?;
        Ok(deliver(ctx, factors::flows::verify(auth_of(ctx), factors_of(ctx), caller, &secret(code)).await?))
    }

    /// Protected, AAL2. Turns the factor off; needs a current TOTP code. Removes the
    /// recovery codes and ends the account's other sessions.
    #[graphql(guard = "Protected")]
    async fn disable_totp(&self, ctx: &Context<'_>, code: String) -> AppResult<bool> {
        let caller = caller(ctx).await?;
        factors::flows::disable(auth_of(ctx), factors_of(ctx), caller, &secret(code)).await?;
        Ok(true)
    }

    /// Protected, AAL2. Replaces every recovery code with ten new ones, shown this once.
    #[graphql(guard = "Protected")]
    async fn regenerate_recovery_codes(&self, ctx: &Context<'_>) -> AppResult<RecoveryCodes> {
        let caller = caller(ctx).await?;
        let codes = factors::flows::regenerate(auth_of(ctx), factors_of(ctx), caller).await?;
        Ok(RecoveryCodes::new(&codes, None))
    }
}
