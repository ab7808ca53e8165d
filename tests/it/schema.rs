//! Generated artefacts that must not drift: `schema.graphql` from the code, the
//! contract inside it, and `src/db/schema.rs` from the migrations.
//!
//! Run with `UPDATE_SNAPSHOTS=1` to rewrite `schema.graphql` and `src/db/schema.rs`
//! after an intended change, then review and commit the diff.

use std::{collections::BTreeMap, fmt::Write, path::Path};

use async_graphql_parser::{
    parse_schema,
    types::{InputValueDefinition, ServiceDocument, TypeKind, TypeSystemDefinition},
};
use diesel::{QueryableByName, sql_query, sql_types::Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn update_snapshots() -> bool {
    std::env::var_os("UPDATE_SNAPSHOTS").is_some()
}

/// Compares a generated file with the committed one, or rewrites it on request.
fn check_snapshot(relative: &str, generated: &str) {
    let path = root().join(relative);
    if update_snapshots() {
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{relative} is out of date; run `UPDATE_SNAPSHOTS=1 cargo test --test it schema` and commit it.\n\
         --- generated ---\n{generated}"
    );
}

#[test]
fn schema_graphql_matches_the_code() {
    check_snapshot("schema.graphql", &authgraph::graphql::sdl());
}

#[test]
fn the_binary_prints_the_same_schema() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authgraph")).arg("schema").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), authgraph::graphql::sdl());
}

/// The contracts the schema keeps: the core, and one file per capability built since
/// (`tests/contracts/`, copies of the shared `contracts/` files).
fn contracts() -> Vec<std::path::PathBuf> {
    let mut files = vec![root().join("tests/contract.graphql")];
    let mut capabilities: Vec<_> = std::fs::read_dir(root().join("tests/contracts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "graphql"))
        .collect();
    capabilities.sort();
    assert!(!capabilities.is_empty(), "tests/contracts/ holds the capabilities' contracts");
    files.extend(capabilities);
    files
}

/// Our copies of the contracts are the shared ones, where the shared folder is present.
#[test]
fn the_contract_copy_is_current() {
    for ours in contracts() {
        let relative = ours.strip_prefix(root().join("tests")).unwrap().to_owned();
        let shared = root().join("../shared").join(&relative);
        if let Ok(theirs) = std::fs::read_to_string(&shared) {
            let text = std::fs::read_to_string(&ours).unwrap();
            assert_eq!(text, theirs, "tests/{} differs from {}", relative.display(), shared.display());
        }
    }
}

/// Every type, field, argument, default and enum value of the contract is in our
/// schema with the same type. Ours may add descriptions, types, output fields, and
/// optional (nullable) arguments and input fields; nothing else.
/// An `extend type` is checked for the members it adds.
#[test]
fn schema_keeps_the_contract() {
    let ours = index(&parse_schema(authgraph::graphql::sdl()).unwrap());
    let mut problems = Vec::new();
    for file in contracts() {
        let contract = index(&parse_schema(std::fs::read_to_string(&file).unwrap()).unwrap());
        let before = problems.len();
        check_contract(&contract, &ours, &mut problems);
        for problem in &mut problems[before..] {
            *problem = format!("{}: {problem}", file.file_name().unwrap().to_string_lossy());
        }
    }
    assert!(problems.is_empty(), "schema breaks the contract:\n{}", problems.join("\n"));
}

fn check_contract(
    contract: &BTreeMap<String, TypeShape>,
    ours: &BTreeMap<String, TypeShape>,
    problems: &mut Vec<String>,
) {
    for (name, theirs) in contract {
        let Some(mine) = ours.get(name) else {
            problems.push(format!("missing type {name}"));
            continue;
        };
        if mine.kind != theirs.kind {
            problems.push(format!("{name} is a {} here, a {} in the contract", mine.kind, theirs.kind));
        }
        for (member, expected) in &theirs.members {
            let Some(actual) = mine.members.get(member) else {
                problems.push(format!("missing {name}.{member}"));
                continue;
            };
            if actual.ty != expected.ty {
                problems.push(format!("{name}.{member}: `{}` here, `{}` in the contract", actual.ty, expected.ty));
            }
            for (arg, ty) in &expected.args {
                if actual.args.get(arg) != Some(ty) {
                    problems.push(format!(
                        "{name}.{member}({arg}): {:?} here, `{ty}` in the contract",
                        actual.args.get(arg)
                    ));
                }
            }
            for (arg, ty) in actual.args.iter().filter(|(a, _)| !expected.args.contains_key(*a)) {
                if ty.ends_with('!') {
                    problems.push(format!("{name}.{member}({arg}) is a new required argument"));
                }
            }
        }
        let added = mine.members.iter().filter(|(m, _)| !theirs.members.contains_key(*m) && !theirs.extends);
        for (member, actual) in added {
            match theirs.kind {
                "enum" => problems.push(format!("{name}.{member} is a new enum value")),
                "input" if actual.ty.ends_with('!') => {
                    problems.push(format!("{name}.{member} is a new required input field"))
                }
                _ => {}
            }
        }
    }
}

struct TypeShape {
    kind: &'static str,
    /// `extend type …`: only its own members are the contract's.
    extends: bool,
    members: BTreeMap<String, Member>,
}

/// A field, input field or enum value: its type (with default), and its arguments.
struct Member {
    ty: String,
    args: BTreeMap<String, String>,
}

fn index(doc: &ServiceDocument) -> BTreeMap<String, TypeShape> {
    let mut out = BTreeMap::new();
    for def in &doc.definitions {
        let TypeSystemDefinition::Type(ty) = def else { continue };
        let ty = &ty.node;
        let (kind, members) = match &ty.kind {
            TypeKind::Scalar => ("scalar", BTreeMap::new()),
            TypeKind::Object(o) => (
                "type",
                o.fields
                    .iter()
                    .map(|f| {
                        let args = f
                            .node
                            .arguments
                            .iter()
                            .map(|a| (a.node.name.node.to_string(), input_type(&a.node)))
                            .collect();
                        (f.node.name.node.to_string(), Member { ty: f.node.ty.node.to_string(), args })
                    })
                    .collect(),
            ),
            TypeKind::InputObject(o) => (
                "input",
                o.fields
                    .iter()
                    .map(|f| (f.node.name.node.to_string(), Member { ty: input_type(&f.node), args: BTreeMap::new() }))
                    .collect(),
            ),
            TypeKind::Enum(e) => (
                "enum",
                e.values
                    .iter()
                    .map(|v| (v.node.value.node.to_string(), Member { ty: String::new(), args: BTreeMap::new() }))
                    .collect(),
            ),
            TypeKind::Interface(_) => ("interface", BTreeMap::new()),
            TypeKind::Union(_) => ("union", BTreeMap::new()),
        };
        out.insert(ty.name.node.to_string(), TypeShape { kind, members, extends: ty.extend });
    }
    out
}

/// The per-request limit of secret-checking mutations is fed from one list
/// (`AUTH_MUTATIONS`). Derived here from the schema instead: a mutation that takes a
/// secret (in an argument or a field of its input) or answers with an access token.
/// The two must be equal, so a new mutation of that kind fails this test until it is
/// in the list (and a mutation that no longer is one, until it leaves it).
#[test]
fn every_mutation_that_checks_a_secret_or_mints_tokens_is_limited() {
    const SECRETS: [&str; 6] = ["password", "currentPassword", "newPassword", "refreshToken", "token", "code"];
    let sdl = std::fs::read_to_string(root().join("schema.graphql")).unwrap();
    let types = index(&parse_schema(&sdl).unwrap());
    let named = |ty: &str| ty.split(|c: char| !c.is_alphanumeric()).find(|s| !s.is_empty()).unwrap_or("").to_owned();
    let members = |ty: &str| types.get(&named(ty)).map(|t| t.members.keys().cloned().collect::<Vec<_>>());
    let derived: std::collections::BTreeSet<String> = types["Mutation"]
        .members
        .iter()
        .filter(|(_, field)| {
            let takes_secret = field.args.iter().any(|(name, ty)| {
                SECRETS.contains(&name.as_str())
                    || members(ty).is_some_and(|fields| fields.iter().any(|f| SECRETS.contains(&f.as_str())))
            });
            let mints = members(&field.ty).is_some_and(|fields| fields.iter().any(|f| f == "accessToken"));
            takes_secret || mints
        })
        .map(|(name, _)| name.clone())
        .collect();
    let listed: std::collections::BTreeSet<String> =
        authgraph::graphql::limits::AUTH_MUTATIONS.iter().map(|s| s.to_string()).collect();
    assert_eq!(derived, listed, "AUTH_MUTATIONS must list exactly the mutations that check secrets or mint tokens");
    assert!(derived.len() >= 11, "the schema was not read: {derived:?}");
}

/// `Type` or `Type = default`: a changed default is a contract change too.
fn input_type(v: &InputValueDefinition) -> String {
    match &v.default_value {
        Some(d) => format!("{} = {}", v.ty.node, d.node),
        None => v.ty.node.to_string(),
    }
}

#[derive(QueryableByName)]
struct ColumnRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    udt_name: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
    #[diesel(sql_type = Text)]
    is_key: String,
}

#[derive(QueryableByName)]
struct ForeignKeyRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    foreign_table: String,
}

/// Prints the Diesel schema of the migrated database the way `diesel print-schema`
/// does, so `src/db/schema.rs` can be checked without the Diesel CLI (and libpq).
#[tokio::test]
async fn db_schema_matches_migrations() {
    let database = crate::support::fresh_database().await;
    let mut conn = AsyncPgConnection::establish(&database.url).await.unwrap();
    let columns: Vec<ColumnRow> = sql_query(
        "SELECT c.table_name::text, c.column_name::text, c.udt_name::text, c.is_nullable::text,
                (EXISTS (SELECT 1 FROM information_schema.key_column_usage k
                         JOIN information_schema.table_constraints t USING (constraint_schema, constraint_name)
                         WHERE t.constraint_type = 'PRIMARY KEY' AND k.table_name = c.table_name
                           AND k.column_name = c.column_name))::text AS is_key
         FROM information_schema.columns c
         WHERE c.table_schema = 'public' AND c.table_name <> '__diesel_schema_migrations'
         ORDER BY c.table_name, c.ordinal_position",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let foreign_keys: Vec<ForeignKeyRow> = sql_query(
        "SELECT k.table_name::text, k.column_name::text, u.table_name::text AS foreign_table
         FROM information_schema.table_constraints t
         JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name)
         JOIN information_schema.constraint_column_usage u USING (constraint_schema, constraint_name)
         WHERE t.constraint_type = 'FOREIGN KEY' AND t.table_schema = 'public' AND k.table_name <> u.table_name
         ORDER BY k.table_name, k.column_name",
    )
    .load(&mut conn)
    .await
    .unwrap();

    let mut tables: BTreeMap<&str, Vec<&ColumnRow>> = BTreeMap::new();
    for column in &columns {
        tables.entry(&column.table_name).or_default().push(column);
    }
    let mut out = String::from(
        "// @generated from migrations/ by the `db_schema_matches_migrations` test.\n\
         // Do not edit: change a migration, then run that test with UPDATE_SNAPSHOTS=1.\n",
    );
    for (table, cols) in &tables {
        let keys: Vec<&str> = cols.iter().filter(|c| c.is_key == "true").map(|c| c.column_name.as_str()).collect();
        writeln!(out, "\ndiesel::table! {{\n    {table} ({}) {{", keys.join(", ")).unwrap();
        for c in cols {
            let ty = match c.udt_name.as_str() {
                "uuid" => "Uuid",
                "text" => "Text",
                "varchar" => "Varchar",
                "timestamptz" => "Timestamptz",
                "bytea" => "Bytea",
                "int4" => "Int4",
                "int8" => "Int8",
                "bool" => "Bool",
                "inet" => "Inet",
                "jsonb" => "Jsonb",
                "_text" => "Array<Text>",
                other => panic!("map the PostgreSQL type {other} in this test"),
            };
            let ty = if c.is_nullable == "YES" { format!("Nullable<{ty}>") } else { ty.to_owned() };
            writeln!(out, "        {} -> {ty},", c.column_name).unwrap();
        }
        out.push_str("    }\n}\n");
    }
    out.push('\n');
    for fk in &foreign_keys {
        writeln!(out, "diesel::joinable!({} -> {} ({}));", fk.table_name, fk.foreign_table, fk.column_name).unwrap();
    }
    let names: Vec<&str> = tables.keys().copied().collect();
    // As rustfmt lays it out: on one line while it fits in 120 columns.
    let one_line = format!("diesel::allow_tables_to_appear_in_same_query!({},);", names.join(", "));
    if one_line.len() <= 120 {
        writeln!(out, "\n{one_line}").unwrap();
    } else {
        let lines: String = names.iter().map(|n| format!("    {n},\n")).collect();
        writeln!(out, "\ndiesel::allow_tables_to_appear_in_same_query!(\n{lines});").unwrap();
    }
    check_snapshot("src/db/schema.rs", &out);
}

/// Every migration's `down.sql` undoes its `up.sql`: all of them reverted and applied
/// again on a database, and the schema is the same as before.
#[tokio::test]
async fn migrations_revert_and_apply_again() {
    let database = crate::support::fresh_database().await;
    let url = database.url.clone();
    let reverted = tokio::task::spawn_blocking(move || {
        use diesel::Connection;
        use diesel_migrations::MigrationHarness;
        let mut conn =
            <diesel_async::async_connection_wrapper::AsyncConnectionWrapper<AsyncPgConnection> as Connection>::establish(
                &url,
            )
            .unwrap();
        let reverted = conn.revert_all_migrations(authgraph::db::MIGRATIONS).unwrap().len();
        assert!(reverted >= 6, "{reverted} migrations reverted");
        reverted
    })
    .await
    .unwrap();
    // Applied again as the server applies them (with the step between two of them).
    let applied = authgraph::db::run_migrations(&database.url).await.unwrap();
    assert_eq!(applied, reverted);
    // The app still works on the re-made schema.
    let mut conn = AsyncPgConnection::establish(&database.url).await.unwrap();
    sql_query("INSERT INTO users (name, username, password_hash) VALUES ('a', 'again', 'x')")
        .execute(&mut conn)
        .await
        .unwrap();
    let count: Vec<ColumnCount> = sql_query("SELECT total FROM user_count").load(&mut conn).await.unwrap();
    assert_eq!(count[0].total, 1, "the count's trigger is back");
}

#[derive(QueryableByName)]
struct ColumnCount {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    total: i64,
}
