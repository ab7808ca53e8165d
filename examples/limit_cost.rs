//! What the operation limits cost per request: runs the lexer pass and the document
//! walk (the work `graphql::limits` adds to every request) on typical documents, next
//! to the parse that every request pays anyway, and prints nanoseconds per call.
//!
//! `cargo run --release --example limit_cost`

use std::time::Instant;

use async_graphql::{Variables, parser::parse_query};
use authgraph::graphql::limits::{lexer, walk};

fn per_call(iterations: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iterations / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(iterations)
}

fn main() {
    let of_type = (0..14).fold(String::from("kind name"), |inner, _| format!("kind name ofType {{ {inner} }}"));
    let introspection = format!(
        "query IntrospectionQuery {{ __schema {{ queryType {{ name }} mutationType {{ name }} types {{ ...FullType }} \
         directives {{ name locations args {{ ...InputValue }} }} }} }} \
         fragment FullType on __Type {{ kind name description fields(includeDeprecated: true) {{ name args {{ ...InputValue }} \
         type {{ ...TypeRef }} isDeprecated deprecationReason }} inputFields {{ ...InputValue }} interfaces {{ ...TypeRef }} \
         enumValues(includeDeprecated: true) {{ name }} possibleTypes {{ ...TypeRef }} }} \
         fragment InputValue on __InputValue {{ name type {{ ...TypeRef }} defaultValue }} \
         fragment TypeRef on __Type {{ {of_type} }}"
    );
    let documents = [
        ("me", "query Me { me { id name username role createdAt } }".to_owned()),
        (
            "users page",
            "query Users($after: String) { users(first: 20, after: $after) { totalCount edges { cursor node { id username } } pageInfo { hasNextPage endCursor } } }".to_owned(),
        ),
        ("signin", "mutation($i: SigninInput!) { signin(input: $i) { accessToken refreshToken expiresIn user { id } } }".to_owned()),
        ("introspection", introspection),
    ];
    println!("{:<14} {:>7} {:>12} {:>12} {:>12}", "document", "bytes", "tokens ns", "walk ns", "parse ns");
    for (name, doc) in &documents {
        let tokens = per_call(20_000, || {
            std::hint::black_box(lexer::scan(std::hint::black_box(doc), 2001));
        });
        let parsed = parse_query(doc).unwrap();
        let vars = Variables::default();
        let walk = per_call(20_000, || {
            std::hint::black_box(walk::measure_document(&parsed, &vars, 2000).unwrap());
        });
        let parse = per_call(5_000, || {
            std::hint::black_box(parse_query(std::hint::black_box(doc)).unwrap());
        });
        println!("{name:<14} {:>7} {tokens:>12.0} {walk:>12.0} {parse:>12.0}", doc.len());
    }
}
