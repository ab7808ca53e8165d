//! The public `users` and `user(id)` queries.

use std::collections::HashSet;

use authgraph::db::{self, models::NewUser};
use serde_json::{Value, json};

use crate::support::{TestApp, expect_error};

const PAGE: &str = "query($first: Int, $after: String) { users(first: $first, after: $after) { totalCount edges { cursor node { id username } } nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";

/// Inserts accounts directly: pagination needs many, and hashing each would only
/// slow the test down.
async fn seed(app: &TestApp, n: usize) -> Vec<String> {
    let mut conn = app.state.auth.pool.get().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let username = format!("user{i:03}");
        let user = db::users::insert(
            &mut conn,
            NewUser { name: "Seed", username: &username, password_hash: Some("x"), email: None, email_key: None },
        )
        .await
        .unwrap();
        ids.push(user.id.to_string());
    }
    ids
}

#[tokio::test]
async fn paging_walks_every_user_once_oldest_first() {
    let app = TestApp::new().await;
    let ids = seed(&app, 25).await;
    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let res = app.gql(None, PAGE, json!({ "first": 10, "after": after })).await;
        let conn = &res["data"]["users"];
        assert_eq!(conn["totalCount"], 25, "{res}");
        let edges = conn["edges"].as_array().unwrap();
        assert_eq!(conn["nodes"].as_array().unwrap().len(), edges.len());
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], pages > 0);
        assert_eq!(conn["pageInfo"]["endCursor"], edges.last().unwrap()["cursor"]);
        seen.extend(edges.iter().map(|e| e["node"]["id"].as_str().unwrap().to_owned()));
        pages += 1;
        if conn["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids, "every user once, in creation order");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);
}

#[tokio::test]
async fn users_created_between_pages_are_neither_skipped_nor_repeated() {
    let app = TestApp::new().await;
    seed(&app, 5).await;
    let first = app.gql(None, PAGE, json!({ "first": 3 })).await;
    let cursor = first["data"]["users"]["pageInfo"]["endCursor"].clone();
    app.signup("latecomer").await;
    let rest = app.gql(None, PAGE, json!({ "first": 10, "after": cursor })).await;
    let names: Vec<&str> = rest["data"]["users"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["user003", "user004", "latecomer"]);
}

#[tokio::test]
async fn page_size_and_cursor_are_checked() {
    let app = TestApp::new().await;
    seed(&app, 1).await;
    let default = app.gql(None, PAGE, json!({})).await;
    assert_eq!(default["data"]["users"]["edges"].as_array().unwrap().len(), 1);
    for first in [0, 101, -1] {
        let res = app.gql(None, PAGE, json!({ "first": first })).await;
        assert_eq!(expect_error(&res, "BAD_USER_INPUT")["extensions"]["field"], "first", "{first}");
    }
    let res = app.gql(None, PAGE, json!({ "after": "bm90IGEgY3Vyc29y" })).await;
    assert_eq!(expect_error(&res, "BAD_USER_INPUT")["extensions"]["field"], "after");
    let full = app.gql(None, PAGE, json!({ "first": 100 })).await;
    assert!(full["data"]["users"].is_object());
}

#[tokio::test]
async fn user_by_id_is_public_and_null_when_absent() {
    let app = TestApp::new().await;
    let ids = seed(&app, 1).await;
    let q = "query($id: ID!) { user(id: $id) { id username role } }";
    let found = app.gql(None, q, json!({ "id": ids[0] })).await;
    assert_eq!(found["data"]["user"]["username"], "user000");
    let missing = app.gql(None, q, json!({ "id": uuid::Uuid::new_v4().to_string() })).await;
    assert_eq!(missing, json!({ "data": { "user": null } }));
    let bad = app.gql(None, q, json!({ "id": "not-a-uuid" })).await;
    assert_eq!(expect_error(&bad, "BAD_USER_INPUT")["extensions"]["field"], "id");
}

#[tokio::test]
async fn pages_without_total_count_still_page() {
    let app = TestApp::new().await;
    let ids = seed(&app, 3).await;
    let q =
        "query($after: String) { users(first: 2, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } }";
    let first = app.gql(None, q, json!({})).await;
    assert_eq!(first["data"]["users"]["nodes"].as_array().unwrap().len(), 2);
    let cursor = first["data"]["users"]["pageInfo"]["endCursor"].clone();
    let rest = app.gql(None, q, json!({ "after": cursor })).await;
    assert_eq!(rest["data"]["users"]["nodes"][0]["id"], ids[2].as_str());
    assert_eq!(rest["data"]["users"]["pageInfo"]["hasNextPage"], false);
    // Asked for through a fragment, the count is still computed.
    let fragment = "{ users { ...Counted } } fragment Counted on UserConnection { totalCount }";
    assert_eq!(app.gql(None, fragment, json!({})).await["data"]["users"]["totalCount"], 3);
}

/// A page with its total is one statement, counted by PostgreSQL; so is a page past
/// the end without a total, while one with a total reads the count on its own.
#[tokio::test]
async fn a_page_with_its_total_is_one_statement() {
    let app = TestApp::new().await;
    seed(&app, 25).await;
    let first = app.gql(None, PAGE, json!({ "first": 20 })).await;
    let (res, statements) = crate::support::statements_of(&app, app.gql(None, PAGE, json!({ "first": 20 }))).await;
    assert_eq!(res["data"]["users"]["totalCount"], 25, "{res}");
    assert_eq!(res, first);
    assert_eq!(statements.iter().map(|(_, calls)| calls).sum::<i64>(), 1, "{statements:#?}");

    let end = first["data"]["users"]["pageInfo"]["endCursor"].as_str().unwrap().to_owned();
    let next = app.gql(None, PAGE, json!({ "first": 20, "after": end })).await;
    let last = next["data"]["users"]["pageInfo"]["endCursor"].as_str().unwrap().to_owned();
    let past = |query: &'static str| app.gql(None, query, json!({ "after": last }));
    let (res, statements) =
        crate::support::statements_of(&app, past("query($after: String) { users(after: $after) { totalCount } }"))
            .await;
    assert_eq!(res["data"]["users"]["totalCount"], 25, "{res}");
    assert_eq!(statements.iter().map(|(_, calls)| calls).sum::<i64>(), 2, "{statements:#?}");
    let (res, statements) =
        crate::support::statements_of(&app, past("query($after: String) { users(after: $after) { nodes { id } } }"))
            .await;
    assert_eq!(res["data"]["users"]["nodes"], json!([]), "{res}");
    assert_eq!(statements.iter().map(|(_, calls)| calls).sum::<i64>(), 1, "{statements:#?}");
}

/// The pool's connections keep their statements' generic plans: a page's `LIMIT $1`
/// over a large table would otherwise be planned anew at every request.
#[tokio::test]
async fn pool_connections_keep_generic_plans() {
    use diesel::{QueryableByName, sql_types::Text};
    use diesel_async::RunQueryDsl;
    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Text)]
        plan_cache_mode: String,
    }
    let app = TestApp::new().await;
    let mut conn = app.state.auth.pool.get().await.unwrap();
    let setting: Setting = diesel::sql_query("SHOW plan_cache_mode").get_result(&mut conn).await.unwrap();
    assert_eq!(setting.plan_cache_mode, "force_generic_plan");
}
