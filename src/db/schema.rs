// @generated from migrations/ by the `db_schema_matches_migrations` test.
// Do not edit: change a migration, then run that test with UPDATE_SNAPSHOTS=1.

diesel::table! {
    audit_events (id) {
        id -> Int8,
        at -> Timestamptz,
        kind -> Text,
        actor_id -> Nullable<Uuid>,
        subject_id -> Nullable<Uuid>,
        session_id -> Nullable<Uuid>,
        network -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        detail -> Jsonb,
        chain_seq -> Nullable<Int8>,
        key_id -> Nullable<Text>,
        prev_hmac -> Nullable<Bytea>,
        hmac -> Nullable<Bytea>,
    }
}

diesel::table! {
    email_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        purpose -> Text,
        email -> Text,
        token_hash -> Bytea,
        code_hash -> Bytea,
        attempts -> Int4,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        superseded_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    identities (id) {
        id -> Uuid,
        user_id -> Uuid,
        provider -> Text,
        subject -> Text,
        email -> Nullable<Text>,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        kind -> Text,
        recipient -> Text,
        subject -> Nullable<Text>,
        text_body -> Nullable<Text>,
        html_body -> Nullable<Text>,
        created_at -> Timestamptz,
        next_attempt_at -> Timestamptz,
        leased_until -> Nullable<Timestamptz>,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        sent_at -> Nullable<Timestamptz>,
        abandoned_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    passkey_ceremonies (id) {
        id -> Uuid,
        kind -> Text,
        user_id -> Nullable<Uuid>,
        session_id -> Nullable<Uuid>,
        username_key -> Nullable<Text>,
        network -> Text,
        state -> Jsonb,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    passkeys (id) {
        id -> Uuid,
        user_id -> Uuid,
        credential_id -> Bytea,
        credential -> Jsonb,
        name -> Text,
        backed_up -> Bool,
        backup_eligible -> Bool,
        transports -> Array<Text>,
        sign_count -> Int8,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        flagged_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    provider_flows (id) {
        id -> Uuid,
        state_hash -> Bytea,
        flow -> Text,
        provider -> Text,
        redirect_uri -> Text,
        nonce -> Text,
        pkce_verifier -> Text,
        user_id -> Nullable<Uuid>,
        session_id -> Nullable<Uuid>,
        network -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    rate_limit_events (id) {
        id -> Int8,
        bucket -> Text,
        key -> Text,
        at -> Timestamptz,
    }
}

diesel::table! {
    recovery_codes (id) {
        id -> Uuid,
        user_id -> Uuid,
        lookup -> Int4,
        code_hash -> Text,
        created_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Uuid,
        session_id -> Uuid,
        token_hash -> Bytea,
        parent_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
        expires_at -> Timestamptz,
        max_expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        mfa_at -> Nullable<Timestamptz>,
        mfa_method -> Nullable<Text>,
        refresh_tokens_since -> Nullable<Timestamptz>,
        signed_in_with -> Text,
        impersonator_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    signin_addresses (account, network) {
        account -> Text,
        network -> Text,
        last_success_at -> Timestamptz,
    }
}

diesel::table! {
    totp_factors (id) {
        id -> Uuid,
        user_id -> Uuid,
        key_id -> Text,
        sealed -> Bytea,
        created_at -> Timestamptz,
        confirmed_at -> Nullable<Timestamptz>,
        last_step -> Nullable<Int8>,
    }
}

diesel::table! {
    user_count (singleton) {
        singleton -> Bool,
        total -> Int8,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        name -> Text,
        username -> Text,
        password_hash -> Nullable<Text>,
        role -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        email -> Nullable<Text>,
        email_verified_at -> Nullable<Timestamptz>,
        mfa_enabled_at -> Nullable<Timestamptz>,
        email_key -> Nullable<Text>,
        banned_until -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(email_tokens -> users (user_id));
diesel::joinable!(identities -> users (user_id));
diesel::joinable!(passkey_ceremonies -> sessions (session_id));
diesel::joinable!(passkey_ceremonies -> users (user_id));
diesel::joinable!(passkeys -> users (user_id));
diesel::joinable!(provider_flows -> sessions (session_id));
diesel::joinable!(provider_flows -> users (user_id));
diesel::joinable!(recovery_codes -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(totp_factors -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    audit_events,
    email_tokens,
    identities,
    outbox,
    passkey_ceremonies,
    passkeys,
    provider_flows,
    rate_limit_events,
    recovery_codes,
    refresh_tokens,
    sessions,
    signin_addresses,
    totp_factors,
    user_count,
    users,
);
