//! updateUser and deleteUser: ownership, the admin override, and their errors.

use serde_json::json;

use crate::support::{TestApp, expect_error};

const UPDATE: &str =
    "mutation($id: ID!, $input: UpdateUserInput!) { updateUser(id: $id, input: $input) { id name username role } }";
const DELETE: &str = "mutation($id: ID!) { deleteUser(id: $id) }";
const ME: &str = "{ me { id } }";

#[tokio::test]
async fn a_user_edits_their_own_account() {
    let app = TestApp::new().await;
    let ada = app.signup("ada").await;
    let res = app
        .gql(
            Some(&ada.access),
            UPDATE,
            json!({ "id": ada.user_id, "input": { "name": " Countess ", "username": "lovelace" } }),
        )
        .await;
    assert_eq!(res["data"]["updateUser"]["name"], "Countess", "{res}");
    assert_eq!(res["data"]["updateUser"]["username"], "lovelace");
    // An empty input changes nothing and returns the account.
    let same = app.gql(Some(&ada.access), UPDATE, json!({ "id": ada.user_id, "input": {} })).await;
    assert_eq!(same["data"]["updateUser"]["username"], "lovelace");
}

#[tokio::test]
async fn editing_or_deleting_someone_else_is_forbidden() {
    let app = TestApp::new().await;
    let ada = app.signup("ada").await;
    let bob = app.signup("bob").await;
    let edit = app.gql(Some(&bob.access), UPDATE, json!({ "id": ada.user_id, "input": { "name": "pwned" } })).await;
    expect_error(&edit, "FORBIDDEN");
    expect_error(&app.gql(Some(&bob.access), DELETE, json!({ "id": ada.user_id })).await, "FORBIDDEN");
    // A stranger cannot tell a missing id from someone else's.
    let missing = uuid::Uuid::new_v4().to_string();
    expect_error(&app.gql(Some(&bob.access), DELETE, json!({ "id": missing })).await, "FORBIDDEN");
    let ada_now = app.gql(None, "query($id: ID!) { user(id: $id) { name } }", json!({ "id": ada.user_id })).await;
    assert_eq!(ada_now["data"]["user"]["name"], "ada name");
}

#[tokio::test]
async fn an_admin_may_edit_and_delete_any_account() {
    let app = TestApp::new().await;
    let ada = app.signup("ada").await;
    let root = app.signup("root").await;
    app.make_admin("root").await;
    let edit = app.gql(Some(&root.access), UPDATE, json!({ "id": ada.user_id, "input": { "name": "Renamed" } })).await;
    assert_eq!(edit["data"]["updateUser"]["name"], "Renamed", "{edit}");
    let missing = uuid::Uuid::new_v4().to_string();
    expect_error(
        &app.gql(Some(&root.access), UPDATE, json!({ "id": missing, "input": { "name": "x" } })).await,
        "NOT_FOUND",
    );
    expect_error(&app.gql(Some(&root.access), DELETE, json!({ "id": missing })).await, "NOT_FOUND");
    let deleted = app.gql(Some(&root.access), DELETE, json!({ "id": ada.user_id })).await;
    assert_eq!(deleted["data"]["deleteUser"], true);
    expect_error(&app.gql(Some(&ada.access), ME, json!({})).await, "UNAUTHENTICATED");
}

#[tokio::test]
async fn the_role_cannot_be_set_through_graphql() {
    let app = TestApp::new().await;
    let ada = app.signup("ada").await;
    let res = app.gql(Some(&ada.access), UPDATE, json!({ "id": ada.user_id, "input": { "role": "ADMIN" } })).await;
    assert!(res["errors"].is_array() && res["data"].is_null(), "{res}");
    let me = app.gql(Some(&ada.access), "{ me { role } }", json!({})).await;
    assert_eq!(me["data"]["me"]["role"], "USER");
}

#[tokio::test]
async fn update_checks_its_input() {
    let app = TestApp::new().await;
    let ada = app.signup("ada").await;
    app.signup("bob").await;
    let taken = app.gql(Some(&ada.access), UPDATE, json!({ "id": ada.user_id, "input": { "username": "BOB" } })).await;
    expect_error(&taken, "USERNAME_TAKEN");
    let bad = app.gql(Some(&ada.access), UPDATE, json!({ "id": ada.user_id, "input": { "username": "a b" } })).await;
    assert_eq!(expect_error(&bad, "BAD_USER_INPUT")["extensions"]["field"], "username");
    let bad_id = app.gql(Some(&ada.access), UPDATE, json!({ "id": "42", "input": {} })).await;
    assert_eq!(expect_error(&bad_id, "BAD_USER_INPUT")["extensions"]["field"], "id");
}

#[tokio::test]
async fn deleting_your_account_ends_its_sessions() {
    let app = TestApp::new().await;
    let ada = app.signup("ada").await;
    let res = app.gql(Some(&ada.access), DELETE, json!({ "id": ada.user_id })).await;
    assert_eq!(res["data"]["deleteUser"], true, "{res}");
    expect_error(&app.gql(Some(&ada.access), ME, json!({})).await, "UNAUTHENTICATED");
    expect_error(&app.refresh(&ada.refresh).await, "INVALID_REFRESH_TOKEN");
    expect_error(&app.signin("ada", crate::support::PASSWORD).await, "INVALID_CREDENTIALS");
    // The username is free again.
    app.signup("ada").await;
}
