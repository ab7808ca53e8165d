//! signup, signin, the guard, logout, sessions and changePassword, end to end.

use std::time::Duration;

use authgraph::auth::access_token::Claims;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::json;

use crate::support::{Auth, PASSWORD, SECRET, SIGNUP, TestApp, error_code, expect_error};

const ME: &str = "{ me { id username role } }";

#[tokio::test]
async fn signup_then_me_with_the_access_token() {
    let app = TestApp::new().await;
    let res = app
        .gql(None, SIGNUP, json!({ "input": { "name": "  Ada Lovelace ", "username": "Ada", "password": PASSWORD } }))
        .await;
    let payload = &res["data"]["signup"];
    assert_eq!(payload["tokenType"], "Bearer");
    assert_eq!(payload["expiresIn"], 900);
    assert_eq!(payload["user"]["name"], "Ada Lovelace", "name is trimmed");
    assert_eq!(payload["user"]["role"], "USER");
    let auth = Auth::from_payload(&res, "signup");
    let me = app.gql(Some(&auth.access), ME, json!({})).await;
    assert_eq!(me["data"]["me"]["id"], auth.user_id.as_str());
    assert_eq!(me["data"]["me"]["username"], "Ada");
}

#[tokio::test]
async fn the_whole_flow_from_signup_to_logout() {
    let app = TestApp::new().await;
    let signup = app.signup("ada").await;
    let signin = Auth::from_payload(&app.signin("ada", PASSWORD).await, "signin");
    let refreshed = Auth::from_payload(&app.refresh(&signin.refresh).await, "refresh");
    let me = app.gql(Some(&refreshed.access), ME, json!({})).await;
    assert_eq!(me["data"]["me"]["id"], signup.user_id.as_str());
    let out = app.gql(Some(&refreshed.access), "mutation { logout }", json!({})).await;
    assert_eq!(out["data"]["logout"], true);
    expect_error(&app.gql(Some(&refreshed.access), ME, json!({})).await, "UNAUTHENTICATED");
    expect_error(&app.refresh(&refreshed.refresh).await, "INVALID_REFRESH_TOKEN");
    // The first session was not touched.
    assert!(app.gql(Some(&signup.access), ME, json!({})).await["data"]["me"].is_object());
}

#[tokio::test]
async fn the_access_token_is_a_standard_hs256_jwt() {
    let app = TestApp::new().await;
    let auth = app.signup("ada").await;
    let header = decode_header(&auth.access).unwrap();
    assert_eq!(header.alg, Algorithm::HS256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    // Any HS256 implementation given the secret's UTF-8 bytes verifies it.
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&["authgraph"]);
    validation.set_issuer(&["authgraph"]);
    let claims =
        decode::<Claims>(&auth.access, &DecodingKey::from_secret(SECRET.as_bytes()), &validation).unwrap().claims;
    assert_eq!(claims.sub.to_string(), auth.user_id);
    assert_eq!(claims.role, "USER");
    assert_eq!(claims.exp - claims.iat, 900);
    let sessions = app.gql(Some(&auth.access), "{ sessions { id current } }", json!({})).await;
    assert_eq!(sessions["data"]["sessions"][0]["id"], claims.sid.to_string());
}

#[tokio::test]
async fn signup_validates_each_field() {
    let app = TestApp::new().await;
    let cases = [
        (json!({ "name": " ", "username": "ada", "password": PASSWORD }), "name"),
        (json!({ "name": "x".repeat(101), "username": "ada", "password": PASSWORD }), "name"),
        (json!({ "name": "Ada", "username": "ad", "password": PASSWORD }), "username"),
        (json!({ "name": "Ada", "username": "ada lovelace", "password": PASSWORD }), "username"),
        (json!({ "name": "Ada", "username": "ada", "password": "short" }), "password"),
        (json!({ "name": "Ada", "username": "ada", "password": "x".repeat(129) }), "password"),
        (json!({ "name": "Ada", "username": "ada", "password": "baseball" }), "password"),
    ];
    for (input, field) in cases {
        let res = app.gql(None, SIGNUP, json!({ "input": input })).await;
        let err = expect_error(&res, "BAD_USER_INPUT");
        assert_eq!(err["extensions"]["field"], field, "{input}");
    }
}

#[tokio::test]
async fn usernames_are_unique_whatever_their_case() {
    let app = TestApp::new().await;
    app.signup("ada").await;
    let res = app
        .gql(None, SIGNUP, json!({ "input": { "name": "Imposter", "username": "ADA", "password": PASSWORD } }))
        .await;
    expect_error(&res, "USERNAME_TAKEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_signups_of_one_username_create_one_account() {
    let app = std::sync::Arc::new(TestApp::new().await);
    let attempts = (0..6).map(|i| {
        let app = app.clone();
        tokio::spawn(async move {
            let username = ["racer", "RACER", "Racer"][i % 3];
            let input = json!({ "name": format!("racer {i}"), "username": username, "password": PASSWORD });
            app.gql(None, SIGNUP, json!({ "input": input })).await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let codes: Vec<String> = results.iter().map(|r| error_code(r.as_ref().unwrap()).to_owned()).collect();
    assert_eq!(codes.iter().filter(|c| c.is_empty()).count(), 1, "{codes:?}");
    assert!(codes.iter().filter(|c| !c.is_empty()).all(|c| c == "USERNAME_TAKEN"), "{codes:?}");
}

#[tokio::test]
async fn signin_opens_a_new_session_and_ignores_username_case() {
    let app = TestApp::new().await;
    let first = app.signup("ada").await;
    let res = app.signin("ADA", PASSWORD).await;
    let second = Auth::from_payload(&res, "signin");
    assert_eq!(second.user_id, first.user_id);
    let sessions = app.gql(Some(&second.access), "{ sessions { id current } }", json!({})).await;
    let list = sessions["data"]["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{sessions}");
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same_and_cost_a_hash_each() {
    let app = TestApp::new().await;
    app.signup("ada").await;
    let before = app.state.auth.hasher.computed();
    let wrong = app.signin("ada", "not the password").await;
    let after_wrong = app.state.auth.hasher.computed();
    let unknown = app.signin("nobody", PASSWORD).await;
    let after_unknown = app.state.auth.hasher.computed();
    let invalid = app.signin("no such user!", PASSWORD).await;
    let after_invalid = app.state.auth.hasher.computed();
    let (a, b, c) = (
        expect_error(&wrong, "INVALID_CREDENTIALS"),
        expect_error(&unknown, "INVALID_CREDENTIALS"),
        expect_error(&invalid, "INVALID_CREDENTIALS"),
    );
    assert_eq!(a["message"], b["message"]);
    assert_eq!(a["message"], c["message"]);
    assert_eq!(after_wrong - before, 1, "a wrong password costs one argon2 verification");
    assert_eq!(after_unknown - after_wrong, 1, "an unknown user costs one too");
    assert_eq!(after_invalid - after_unknown, 1, "so does an impossible username");
}

#[tokio::test]
async fn protected_fields_fail_alone_without_a_token() {
    let app = TestApp::new().await;
    app.signup("ada").await;
    let res = app.gql(None, "{ users { totalCount } me { id } }", json!({})).await;
    assert_eq!(res["data"]["users"]["totalCount"], 1, "public field still answers: {res}");
    let err = expect_error(&res, "UNAUTHENTICATED");
    assert_eq!(err["path"], json!(["me"]));
    for mutation in ["mutation { logout }", "mutation { deleteUser(id: \"x\") }"] {
        expect_error(&app.gql(None, mutation, json!({})).await, "UNAUTHENTICATED");
    }
}

#[tokio::test]
async fn forged_and_malformed_tokens_are_unauthenticated() {
    let app = TestApp::new().await;
    let auth = app.signup("ada").await;
    let other_key = jsonwebtoken::EncodingKey::from_secret(b"some-other-secret-some-other-secret");
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    let claims = decode::<serde_json::Value>(&auth.access, &DecodingKey::from_secret(SECRET.as_bytes()), &{
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&["authgraph"]);
        v
    })
    .unwrap()
    .claims;
    let wrong_key = jsonwebtoken::encode(&header, &claims, &other_key).unwrap();
    let (head, rest) = auth.access.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let b64 = |v: serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let mut admin_claims = claims.clone();
    admin_claims["role"] = json!("ADMIN");
    let tampered = format!("{head}.{}.{sig}", b64(admin_claims));
    let alg_none = format!("{}.{}.", b64(json!({ "alg": "none", "typ": "at+jwt" })), b64(claims.clone()));
    let mut jwt_typ = jsonwebtoken::Header::new(Algorithm::HS256);
    jwt_typ.typ = Some("JWT".into());
    let wrong_typ =
        jsonwebtoken::encode(&jwt_typ, &claims, &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
    let mut expired_claims = claims.clone();
    expired_claims["exp"] = json!(chrono::Utc::now().timestamp() - 60);
    let expired =
        jsonwebtoken::encode(&header, &expired_claims, &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()))
            .unwrap();
    let truncated = auth.access[..auth.access.len() - 5].to_owned();
    for (label, token) in [
        ("wrong key", wrong_key.as_str()),
        ("tampered payload", &tampered),
        ("alg none", &alg_none),
        ("typ JWT", &wrong_typ),
        ("expired", &expired),
        ("truncated signature", &truncated),
        ("refresh token as access token", &auth.refresh),
        ("garbage", "not-a-jwt"),
    ] {
        let res = app.gql(Some(token), ME, json!({})).await;
        assert_eq!(error_code(&res), "UNAUTHENTICATED", "{label}: {res}");
    }
    // The genuine token still works.
    assert!(app.gql(Some(&auth.access), ME, json!({})).await["data"]["me"].is_object());
}

#[tokio::test]
async fn logout_current_ends_only_this_session() {
    let app = TestApp::new().await;
    let one = app.signup("ada").await;
    let two = Auth::from_payload(&app.signin("ada", PASSWORD).await, "signin");
    let res = app.gql(Some(&one.access), "mutation { logout }", json!({})).await;
    assert_eq!(res["data"]["logout"], true);
    expect_error(&app.gql(Some(&one.access), ME, json!({})).await, "UNAUTHENTICATED");
    let refused = app.refresh(&one.refresh).await;
    assert_eq!(expect_error(&refused, "INVALID_REFRESH_TOKEN")["extensions"]["reason"], "REVOKED");
    assert!(app.gql(Some(&two.access), ME, json!({})).await["data"]["me"].is_object());
}

#[tokio::test]
async fn logout_others_and_all() {
    let app = TestApp::new().await;
    let one = app.signup("ada").await;
    let two = Auth::from_payload(&app.signin("ada", PASSWORD).await, "signin");
    let three = Auth::from_payload(&app.signin("ada", PASSWORD).await, "signin");
    let bob = app.signup("bob").await;

    app.gql(Some(&one.access), "mutation { logout(scope: OTHERS) }", json!({})).await;
    assert!(app.gql(Some(&one.access), ME, json!({})).await["data"]["me"].is_object());
    for ended in [&two, &three] {
        expect_error(&app.gql(Some(&ended.access), ME, json!({})).await, "UNAUTHENTICATED");
    }

    let four = Auth::from_payload(&app.signin("ada", PASSWORD).await, "signin");
    app.gql(Some(&four.access), "mutation { logout(scope: ALL) }", json!({})).await;
    for ended in [&one, &four] {
        expect_error(&app.gql(Some(&ended.access), ME, json!({})).await, "UNAUTHENTICATED");
    }
    assert!(app.gql(Some(&bob.access), ME, json!({})).await["data"]["me"].is_object(), "other users untouched");
}

#[tokio::test]
async fn change_password_needs_the_current_one_and_ends_other_sessions() {
    let app = TestApp::new().await;
    let here = app.signup("ada").await;
    let elsewhere = Auth::from_payload(&app.signin("ada", PASSWORD).await, "signin");
    let change = "mutation($input: ChangePasswordInput!) { changePassword(input: $input) }";
    let new_password = "a brand new passphrase";

    let wrong = app
        .gql(
            Some(&here.access),
            change,
            json!({ "input": { "currentPassword": "nope nope", "newPassword": new_password } }),
        )
        .await;
    expect_error(&wrong, "INVALID_CREDENTIALS");
    let weak = app
        .gql(
            Some(&here.access),
            change,
            json!({ "input": { "currentPassword": PASSWORD, "newPassword": "password1" } }),
        )
        .await;
    assert_eq!(expect_error(&weak, "BAD_USER_INPUT")["extensions"]["field"], "newPassword");

    let ok = app
        .gql(
            Some(&here.access),
            change,
            json!({ "input": { "currentPassword": PASSWORD, "newPassword": new_password } }),
        )
        .await;
    assert_eq!(ok["data"]["changePassword"], true, "{ok}");
    assert!(app.gql(Some(&here.access), ME, json!({})).await["data"]["me"].is_object(), "this session lives");
    expect_error(&app.gql(Some(&elsewhere.access), ME, json!({})).await, "UNAUTHENTICATED");
    expect_error(&app.refresh(&elsewhere.refresh).await, "INVALID_REFRESH_TOKEN");
    expect_error(&app.signin("ada", PASSWORD).await, "INVALID_CREDENTIALS");
    Auth::from_payload(&app.signin("ada", new_password).await, "signin");
}

#[tokio::test]
async fn signin_upgrades_a_weaker_stored_hash() {
    use argon2::{Algorithm as A, Argon2, Params, Version, password_hash::PasswordHasher};
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let app = TestApp::new().await;
    let auth = app.signup("ada").await;
    let weak = Argon2::new(A::Argon2id, Version::V0x13, Params::new(8192, 1, 1, None).unwrap())
        .hash_password(PASSWORD.as_bytes())
        .unwrap()
        .to_string();
    let id: uuid::Uuid = auth.user_id.parse().unwrap();
    let mut conn = app.state.auth.pool.get().await.unwrap();
    use authgraph::db::schema::users;
    diesel::update(users::table.find(id)).set(users::password_hash.eq(&weak)).execute(&mut conn).await.unwrap();
    Auth::from_payload(&app.signin("ada", PASSWORD).await, "signin");
    let stored: Option<String> = users::table.find(id).select(users::password_hash).first(&mut conn).await.unwrap();
    assert!(stored.as_deref().unwrap_or_default().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored:?}");
}

#[tokio::test]
async fn no_response_ever_carries_a_password_hash() {
    let app = TestApp::new().await;
    let auth = app.signup("ada").await;
    let everything = "{ me { id name username role createdAt updatedAt } users { nodes { id name username } } }";
    let body = app.gql(Some(&auth.access), everything, json!({})).await.to_string();
    assert!(!body.contains("argon2") && !body.contains(PASSWORD), "{body}");
    let sdl = authgraph::graphql::sdl().to_lowercase();
    assert!(!sdl.contains("hash"), "no hash field anywhere in the schema");
}

#[tokio::test]
async fn an_expired_access_token_is_unauthenticated() {
    let app = TestApp::with_config(|c| {
        c.access_token_ttl = Duration::from_secs(1);
    })
    .await;
    let auth = app.signup("ada").await;
    assert!(app.gql(Some(&auth.access), ME, json!({})).await["data"]["me"].is_object());
    // exp is checked with 5 s of leeway for clock skew: wait until that has passed.
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(&["authgraph"]);
    let exp = decode::<Claims>(&auth.access, &DecodingKey::from_secret(SECRET.as_bytes()), &v).unwrap().claims.exp;
    while chrono::Utc::now().timestamp() <= exp + 5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    expect_error(&app.gql(Some(&auth.access), ME, json!({})).await, "UNAUTHENTICATED");
}
