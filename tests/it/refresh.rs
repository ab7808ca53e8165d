//! Refresh-token rotation, reuse detection and expiry.

use std::{sync::Arc, time::Duration};

use authgraph::db::schema::{refresh_tokens, sessions};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::support::{Auth, TestApp, expect_error};

const ME: &str = "{ me { id } }";

fn reason(res: &serde_json::Value) -> &str {
    expect_error(res, "INVALID_REFRESH_TOKEN")["extensions"]["reason"].as_str().unwrap()
}

async fn token_rows(app: &TestApp) -> i64 {
    let mut conn = app.state.auth.pool.get().await.unwrap();
    refresh_tokens::table.count().get_result(&mut conn).await.unwrap()
}

#[tokio::test]
async fn refresh_rotates_to_a_new_pair_that_works() {
    let app = TestApp::new().await;
    let first = app.signup("ada").await;
    let second = Auth::from_payload(&app.refresh(&first.refresh).await, "refresh");
    assert_ne!(second.refresh, first.refresh);
    assert_ne!(second.access, first.access);
    assert_eq!(second.user_id, first.user_id);
    assert!(app.gql(Some(&second.access), ME, json!({})).await["data"]["me"].is_object());
    let third = Auth::from_payload(&app.refresh(&second.refresh).await, "refresh");
    assert_ne!(third.refresh, second.refresh);
    assert_eq!(token_rows(&app).await, 3);
}

#[tokio::test]
async fn replay_inside_the_reuse_interval_returns_the_same_successor() {
    let app = TestApp::new().await;
    let first = app.signup("ada").await;
    let a = Auth::from_payload(&app.refresh(&first.refresh).await, "refresh");
    let b = Auth::from_payload(&app.refresh(&first.refresh).await, "refresh");
    assert_eq!(a.refresh, b.refresh, "a retried refresh gets the same child");
    // Even after the child rotated, the parent still leads to the session's current token.
    let c = Auth::from_payload(&app.refresh(&a.refresh).await, "refresh");
    let d = Auth::from_payload(&app.refresh(&first.refresh).await, "refresh");
    assert_eq!(d.refresh, c.refresh);
    assert!(app.gql(Some(&d.access), ME, json!({})).await["data"]["me"].is_object());
    assert_eq!(token_rows(&app).await, 3, "no token was minted twice");
}

#[tokio::test]
async fn replay_after_the_interval_revokes_the_session_and_its_access_tokens() {
    let app = TestApp::with_config(|c| c.refresh_reuse_interval = Duration::ZERO).await;
    let first = app.signup("ada").await;
    let other = Auth::from_payload(&app.signin("ada", crate::support::PASSWORD).await, "signin");
    let second = Auth::from_payload(&app.refresh(&first.refresh).await, "refresh");
    tokio::time::sleep(Duration::from_millis(20)).await;

    assert_eq!(reason(&app.refresh(&first.refresh).await), "REUSED");
    // The thief's replay ended the session: the legitimate holder's tokens die too.
    assert_eq!(reason(&app.refresh(&second.refresh).await), "REVOKED");
    for token in [&first.access, &second.access] {
        expect_error(&app.gql(Some(token), ME, json!({})).await, "UNAUTHENTICATED");
    }
    // Other sessions of the same user are not affected.
    assert!(app.gql(Some(&other.access), ME, json!({})).await["data"]["me"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_refreshes_of_one_token_yield_one_successor() {
    let app = Arc::new(TestApp::with_config(|c| c.database_pool_size = 20).await);
    let first = app.signup("ada").await;
    let tasks = (0..20).map(|_| {
        let (app, token) = (app.clone(), first.refresh.clone());
        tokio::spawn(async move { app.refresh(&token).await })
    });
    let results = futures::future::join_all(tasks).await;
    let successors: std::collections::HashSet<String> =
        results.iter().map(|r| Auth::from_payload(r.as_ref().unwrap(), "refresh").refresh).collect();
    assert_eq!(successors.len(), 1, "{successors:?}");
    assert_eq!(token_rows(&app).await, 2, "the parent and exactly one child");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_without_a_reuse_interval_make_exactly_one_successor() {
    let app = Arc::new(
        TestApp::with_config(|c| {
            c.refresh_reuse_interval = Duration::ZERO;
            c.database_pool_size = 20;
        })
        .await,
    );
    let first = app.signup("ada").await;
    let tasks = (0..10).map(|_| {
        let (app, token) = (app.clone(), first.refresh.clone());
        tokio::spawn(async move { app.refresh(&token).await })
    });
    let results: Vec<_> = futures::future::join_all(tasks).await.into_iter().map(Result::unwrap).collect();
    let ok = results.iter().filter(|r| r["data"]["refresh"].is_object()).count();
    // Zero interval: a presentation in the same instant may still count as inside it, so
    // more than one may get the (same) successor, but never two different ones.
    let successors: std::collections::HashSet<&str> =
        results.iter().filter_map(|r| r["data"]["refresh"]["refreshToken"].as_str()).collect();
    assert!(ok >= 1 && successors.len() == 1, "{results:?}");
    assert_eq!(token_rows(&app).await, 2, "the parent and exactly one child");
}

#[tokio::test]
async fn unknown_and_malformed_tokens_are_not_found() {
    let app = TestApp::new().await;
    app.signup("ada").await;
    let unknown = authgraph::auth::refresh_token::generate();
    assert_eq!(reason(&app.refresh(secrecy::ExposeSecret::expose_secret(&unknown)).await), "NOT_FOUND");
    assert_eq!(reason(&app.refresh("garbage").await), "NOT_FOUND");
    let no_argument = app.gql(None, "mutation { refresh { accessToken } }", json!({})).await;
    assert_eq!(reason(&no_argument), "NOT_FOUND");
}

#[tokio::test]
async fn an_idle_session_expires() {
    let app = TestApp::new().await;
    let auth = app.signup("ada").await;
    let mut conn = app.state.auth.pool.get().await.unwrap();
    diesel::update(sessions::table)
        .set(sessions::expires_at.eq(chrono::Utc::now() - chrono::Duration::seconds(1)))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(reason(&app.refresh(&auth.refresh).await), "EXPIRED");
    expect_error(&app.gql(Some(&auth.access), ME, json!({})).await, "UNAUTHENTICATED");
}

#[tokio::test]
async fn refresh_never_extends_a_session_past_its_maximum_age() {
    let app = TestApp::new().await;
    let auth = app.signup("ada").await;
    let mut conn = app.state.auth.pool.get().await.unwrap();
    let cap = chrono::Utc::now() + chrono::Duration::minutes(5);
    diesel::update(sessions::table).set(sessions::max_expires_at.eq(cap)).execute(&mut conn).await.unwrap();
    Auth::from_payload(&app.refresh(&auth.refresh).await, "refresh");
    let expires_at: chrono::DateTime<chrono::Utc> =
        sessions::table.select(sessions::expires_at).first(&mut conn).await.unwrap();
    assert!(expires_at <= cap, "{expires_at} > {cap}");
}

#[tokio::test]
async fn refresh_tokens_are_stored_only_as_hashes() {
    let app = TestApp::new().await;
    let auth = app.signup("ada").await;
    let mut conn = app.state.auth.pool.get().await.unwrap();
    let stored: Vec<Vec<u8>> = refresh_tokens::table.select(refresh_tokens::token_hash).load(&mut conn).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0], authgraph::auth::refresh_token::hash(&auth.refresh).as_bytes());
    assert!(!stored[0].windows(8).any(|w| auth.refresh.as_bytes().windows(8).any(|t| t == w)));
}

/// A rotation is one read (token, session and account joined) and one write (child,
/// parent, session), without BEGIN or COMMIT: counted by PostgreSQL itself.
#[tokio::test]
async fn a_rotation_runs_two_statements() {
    let app = TestApp::new().await;
    let first = app.signup("ada").await;
    // The pool's connection and its prepared statements exist after a first refresh.
    let second = Auth::from_payload(&app.refresh(&first.refresh).await, "refresh");
    let (answer, statements) = crate::support::statements_of(&app, app.refresh(&second.refresh)).await;
    let third = Auth::from_payload(&answer, "refresh");
    assert!(app.gql(Some(&third.access), ME, json!({})).await["data"]["me"].is_object());
    let total: i64 = statements.iter().map(|(_, calls)| calls).sum();
    assert_eq!(total, 2, "a refresh ran: {statements:#?}");
    assert!(statements.iter().all(|(q, _)| !q.contains("BEGIN") && !q.contains("COMMIT")), "{statements:#?}");
}
