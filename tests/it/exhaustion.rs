//! The attack suite, part two: small requests that try to exhaust CPU, memory, sockets
//! or the hashing queue. Each test makes the attack as measured on the earlier server
//! and asserts the outcome (refused, closed, answered); where a time bound is the
//! point it is generous and says why.

use std::time::{Duration, Instant};

use authgraph::auth::password::{Lane, Ticket};
use diesel::sql_query;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};

use crate::support::{Gql, PASSWORD, SIGNIN, SIGNUP, TestApp, count, error_code, expect_error};

/// `{ ...F0 } fragment F0 on Query { ...F1 ...F1 } … fragment F{levels} on Query { leaf }`:
/// `fan_out ^ levels` copies of `leaf` once expanded, in a few hundred bytes.
fn fragment_bomb(levels: usize, fan_out: usize, on: &str, spread: &str, leaf: &str) -> String {
    let mut fragments = String::new();
    for level in 0..levels {
        let spreads = spread.replace("NEXT", &format!("F{}", level + 1)).repeat(fan_out);
        fragments += &format!(" fragment F{level} on {on} {{ {spreads}}}");
    }
    fragments + &format!(" fragment F{levels} on {on} {{ {leaf} }}")
}

/// The shapes of fragment bomb tried against the earlier server, each under 2 KB.
fn bombs() -> Vec<(&'static str, Value)> {
    let query_bomb = |levels, fan_out, spread: &str| {
        format!("{{ ...F0 }}{}", fragment_bomb(levels, fan_out, "Query", spread, "__typename"))
    };
    vec![
        ("fan-out 2, 26 levels", json!({ "query": query_bomb(26, 2, "...NEXT ") })),
        ("fan-out 3, 30 levels", json!({ "query": query_bomb(30, 3, "...NEXT ") })),
        ("inline fragments around the spreads", json!({ "query": query_bomb(25, 2, "... on Query { ...NEXT } ") })),
        ("directives on the spreads", json!({ "query": query_bomb(25, 2, "...NEXT @include(if: true) ") })),
        (
            "aliases and fields inside fragments on a nested type",
            json!({ "query": format!(
                "{{ me {{ ...F0 }} }}{}",
                fragment_bomb(30, 2, "User", "a: id ...NEXT ", "id")
            ) }),
        ),
        (
            "the bomb in an operation that is not the one named",
            json!({
                "query": format!("query B {{ __typename }} query A {{ ...F0 }}{}", fragment_bomb(30, 3, "Query", "...NEXT ", "__typename")),
                "operationName": "B",
            }),
        ),
        (
            "fragments that no operation spreads",
            json!({ "query": format!("{{ __typename }}{}", fragment_bomb(30, 3, "Query", "...NEXT ", "__typename")) }),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragment_bombs_of_every_shape_are_refused_with_their_real_size() {
    let app = TestApp::new().await;
    for (shape, body) in bombs() {
        assert!(body["query"].as_str().unwrap().len() < 2048, "{shape}: a small request");
        // Spawned, so that a bomb that hogs one worker cannot stop the timeout firing:
        // the earlier server took seconds to years here.
        let task = app.spawn(Gql::body(body));
        let res = tokio::time::timeout(Duration::from_secs(10), task).await.expect(shape).unwrap();
        let message = expect_error(&res, "GRAPHQL_VALIDATION_FAILED")["message"].as_str().unwrap().to_owned();
        assert!(message.contains("(max selections)"), "{shape}: {message}");
        // The figure is the real one, not a count cut short at the budget.
        let figure: u64 = message.split_whitespace().find_map(|w| w.parse().ok()).unwrap();
        assert!(figure > 2000, "{shape}: {message}");
    }
}

#[tokio::test]
async fn a_fragment_cycle_is_refused_by_name() {
    let app = TestApp::new().await;
    let res =
        app.gql(None, "{ ...A } fragment A on Query { ...B } fragment B on Query { me { ...A } }", json!({})).await;
    let message = expect_error(&res, "GRAPHQL_VALIDATION_FAILED")["message"].as_str().unwrap();
    assert!(message.contains("spreads itself"), "{message}");
}

#[tokio::test]
async fn typename_counts_in_the_cost_so_a_refusal_never_says_zero() {
    let app = TestApp::new().await;
    let doubled =
        (0..11).fold(String::from("__typename"), |inner, i| format!("... on Query {{ a{i}: __typename {inner} }}"));
    let res = app.gql(None, &format!("{{ {doubled} }}"), json!({})).await;
    assert!(res["errors"].is_null(), "a dozen __typename are fine: {res}");
    // A thousand and one: costed like any field, and refused as such.
    let res = app.gql(None, &format!("{{ {} }}", "__typename ".repeat(1001)), json!({})).await;
    let message = expect_error(&res, "GRAPHQL_VALIDATION_FAILED")["message"].as_str().unwrap();
    assert!(message.contains("cost is 1001"), "{message}");
}

#[tokio::test]
async fn a_variable_default_is_costed_like_a_passed_value() {
    let app = TestApp::new().await;
    let pages: String = (0..10).map(|i| format!("p{i}: users(first: $f) {{ nodes {{ id }} }} ")).collect();
    let with_default = format!("query($f: Int = 100) {{ {pages} }}");
    let res = app.gql(None, &with_default, json!({})).await;
    let message = expect_error(&res, "GRAPHQL_VALIDATION_FAILED")["message"].as_str().unwrap();
    assert!(message.contains("cost is 1020"), "{message}");
    let passed = format!("query($f: Int) {{ {pages} }}");
    let res = app.gql(None, &passed, json!({ "f": 100 })).await;
    assert!(expect_error(&res, "GRAPHQL_VALIDATION_FAILED")["message"].as_str().unwrap().contains("cost is 1020"));
    // A small passed value overrides the default, as execution does.
    assert!(app.gql(None, &with_default, json!({ "f": 5 })).await["errors"].is_null());
}

#[tokio::test]
async fn page_sizes_out_of_range_are_bad_user_input_on_first() {
    let app = TestApp::new().await;
    for first in ["1000", "0", "-1", "2147483648", "99999999999999999999"] {
        let res = app.gql(None, &format!("{{ users(first: {first}) {{ nodes {{ id }} }} }}"), json!({})).await;
        let err = expect_error(&res, "BAD_USER_INPUT");
        assert_eq!(err["extensions"]["field"], "first", "first: {first}: {res}");
    }
    let res = app.gql(None, "query($n: Int) { users(first: $n) { nodes { id } } }", json!({ "n": 1000 })).await;
    assert_eq!(expect_error(&res, "BAD_USER_INPUT")["extensions"]["field"], "first");
    assert!(app.gql(None, "{ users(first: 100) { nodes { id } } }", json!({})).await["errors"].is_null());
}

/// Tuples read from `users` (table and indexes) by backends that have exited.
const USERS_TUPLES_READ: &str = "SELECT (coalesce(t.seq_tup_read, 0) + coalesce(t.idx_tup_fetch, 0) \
     + coalesce((SELECT sum(idx_tup_read) FROM pg_stat_user_indexes WHERE relname = 'users'), 0))::bigint AS n \
     FROM pg_stat_user_tables t WHERE t.relname = 'users'";

/// Waits until no other backend is connected to this database, so that every backend
/// that touched `users` has exited and flushed its statistics.
async fn others_gone(conn: &mut AsyncPgConnection) {
    let start = Instant::now();
    let others =
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()";
    while count(conn, others).await > 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "backends still connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A million accounts inserted with SQL; then many concurrent batches of `totalCount`,
/// each of a hundred counts. The earlier server counted the table for each (4.2 s per
/// batch here); now the count is one row, so the test asserts how many rows of `users`
/// all those requests read, from PostgreSQL's own statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_count_over_a_million_rows_reads_one_row_per_count() {
    const ACCOUNTS: i64 = 1_000_000;
    let app = TestApp::new().await;
    {
        let mut conn = AsyncPgConnection::establish(&app.database_url).await.unwrap();
        sql_query(format!(
            "INSERT INTO users (name, username, password_hash, created_at) \
             SELECT 'seeded', 'seeded' || i, 'not a hash', now() - i * interval '1 second' \
             FROM generate_series(1, {ACCOUNTS}) AS i"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let mut observer = AsyncPgConnection::establish(&app.database_url).await.unwrap();
    others_gone(&mut observer).await;
    let before = count(&mut observer, USERS_TUPLES_READ).await;

    let counts: String = (0..10).map(|i| format!("c{i}: users(first: 1) {{ totalCount }} ")).collect();
    let batch: Vec<Value> = (0..10).map(|_| json!({ "query": format!("{{ {counts} }}") })).collect();
    let start = Instant::now();
    let requests: Vec<_> = (0..8).map(|_| app.spawn(Gql::body(Value::Array(batch.clone())))).collect();
    let trivial = app.gql(None, "{ __typename }", json!({})).await;
    assert_eq!(trivial["data"]["__typename"], "Query");
    for request in requests {
        let answers = request.await.unwrap();
        for answer in answers.as_array().unwrap() {
            for i in 0..10 {
                assert_eq!(answer["data"][format!("c{i}")]["totalCount"], ACCOUNTS, "{answer}");
            }
        }
    }
    let elapsed = start.elapsed();
    app.state.auth.pool.close();
    others_gone(&mut observer).await;
    let read = count(&mut observer, USERS_TUPLES_READ).await - before;
    eprintln!("8 batches of 100 totalCount over {ACCOUNTS} accounts: {elapsed:?}, {read} tuples of users read");
    // 800 counts and 800 one-row pages; counting the table would read 800 million.
    assert!(read < 20_000, "{read} tuples of users read");
}

#[tokio::test]
async fn the_count_follows_signups_and_deletions() {
    let app = TestApp::new().await;
    let total =
        async || app.gql(None, "{ users { totalCount } }", json!({})).await["data"]["users"]["totalCount"].clone();
    assert_eq!(total().await, 0);
    let ada = app.signup("ada").await;
    app.signup("bob").await;
    assert_eq!(total().await, 2);
    let res =
        app.gql(Some(&ada.access), "mutation($id: ID!) { deleteUser(id: $id) }", json!({ "id": ada.user_id })).await;
    assert!(res["errors"].is_null(), "{res}");
    assert_eq!(total().await, 1);
}

/// Two hundred sign-ups from two hundred addresses at once, then one sign-in. The
/// earlier server hashed first come, first served: the sign-in waited for the whole
/// storm (2.7 s instead of 30 ms). Now the queue is bounded (the storm's excess is
/// refused before hashing, with a time to retry) and the sign-in lane is served in
/// turn, so the sign-in waits for the jobs already running and about one more per
/// thread, whatever the storm's size. Counted in jobs, not in milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signin_stays_fast_during_a_signup_storm() {
    let app = TestApp::with_config(|c| c.signups_per_ip = 1000).await;
    app.signup("ada").await;
    let storm: Vec<_> = (0..200u32)
        .map(|i| {
            let input = json!({ "name": "storm", "username": format!("storm{i}"), "password": PASSWORD });
            app.spawn(Gql::query(SIGNUP, json!({ "input": input })).peer(&format!("10.1.{}.{}", i / 256, i % 256)))
        })
        .collect();
    let hasher = &app.state.auth.hasher;
    let start = Instant::now();
    while hasher.queued() < 24 {
        assert!(start.elapsed() < Duration::from_secs(30), "the storm never queued");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The sign-in's hash itself, queued behind the storm: first come, first served it
    // would wait for every job ahead; fairly, for the jobs running and one per thread.
    let ahead = hasher.queued() as u64;
    let before = hasher.computed();
    let ticket = Ticket::new(Lane::Signin, None);
    hasher.verify(ticket, &PASSWORD.to_owned().into(), None).await.unwrap();
    let during = hasher.computed() - before;
    eprintln!("the sign-in's hash waited for {during} hashes with {ahead} queued ahead");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    assert!(during <= 2 * threads + 2, "{during} hashes ran while the sign-in waited behind {ahead}");
    // And the whole sign-in, during the same storm, is answered, not refused.
    let signin = app.signin("ada", PASSWORD).await;
    assert!(signin["data"]["signin"]["accessToken"].is_string(), "{signin}");

    let (mut signed_up, mut busy) = (0, 0);
    for task in storm {
        let res = task.await.unwrap();
        match error_code(&res) {
            "" => signed_up += 1,
            "SERVICE_UNAVAILABLE" => {
                assert!(res["errors"][0]["extensions"]["retryAfter"].as_u64().unwrap() >= 1, "{res}");
                busy += 1;
            }
            other => panic!("{other}: {res}"),
        }
    }
    assert!(busy > 0 && signed_up >= 32, "{signed_up} signed up, {busy} told to retry");
}

#[tokio::test]
async fn one_client_cannot_fill_the_hashing_queue() {
    // A small queue (one client may hold 4 jobs), so that 60 guesses at once exceed a
    // client's share however slowly a loaded machine lets them arrive.
    let app = TestApp::with_config(|c| {
        c.signin_failures_per_ip = 10_000;
        c.argon2_queue_limit = 16;
    })
    .await;
    app.signup("ada").await;
    let guesses = (0..60).map(|i| {
        let input = json!({ "username": format!("nobody{i}"), "password": "wrong guess" });
        Gql::query(SIGNIN, json!({ "input": input })).peer("10.9.9.9")
    });
    let codes: Vec<String> = app.concurrently(guesses).await.iter().map(|res| error_code(res).to_owned()).collect();
    assert!(codes.iter().any(|c| c == "SERVICE_UNAVAILABLE"), "{codes:?}");
    assert!(codes.iter().all(|c| c == "SERVICE_UNAVAILABLE" || c == "INVALID_CREDENTIALS"), "{codes:?}");
    // A guess the queue refused checked nothing, so it is not counted as a failure.
    let mut conn = AsyncPgConnection::establish(&app.database_url).await.unwrap();
    let counted = count(&mut conn, "SELECT count(*) AS n FROM rate_limit_events WHERE bucket = 'signin_ip'").await;
    let wrong = codes.iter().filter(|c| *c == "INVALID_CREDENTIALS").count() as i64;
    assert_eq!(counted, wrong, "{codes:?}");
}
