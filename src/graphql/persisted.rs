//! Automatic persisted queries: Apollo's `persistedQuery` request extension, version 1.
//!
//! A client sends `extensions.persistedQuery.sha256Hash` without `query`; if the server
//! knows the hash it runs that document, otherwise it answers
//! `PERSISTED_QUERY_NOT_FOUND` and the client sends the hash and the text together once,
//! which registers it. Clients save bandwidth, and hashed queries can go over GET, where
//! CDNs and browsers can cache them.
//!
//! Why not async-graphql's own extension: it hands the executor a document it parsed
//! itself, so the size and token limits, which run on the query text, would never see
//! it; and its errors carry no `code`. Here the hash only stands in for the text: the
//! request then goes through parsing and every limit like any other.
//!
//! The store is keyed by the SHA-256 of the text, checked on registration, so nobody can
//! register a different document under a hash that other clients use. Only documents
//! that parse and pass every limit are kept: anything else is refused with the error it
//! would get anyway. The store is bounded by the memory it takes, entries counted with
//! their overhead and not only their text, so a flood of tiny distinct texts cannot grow
//! it either; when full, the oldest entries go, and their clients just register again.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use crate::error::code;
use async_graphql::{ErrorExtensions, Request, ServerError, Value};
use sha2::{Digest, Sha256};

use super::limits::Limits;

/// What the store may hold, text and overhead together.
pub const STORE_BYTES: usize = 4 * 1024 * 1024;
/// Memory an entry takes besides its text: the 32-byte key twice (map and eviction
/// queue), the boxed text's pointer and length, the map's control byte and spare
/// capacity (it is at most 7/8 full), and the allocator's header and rounding of the
/// text's own block. An overestimate on purpose.
pub const ENTRY_OVERHEAD: usize = 128;

pub struct PersistedQueries {
    /// Every limit applies to a text before it is kept.
    limits: Arc<Limits>,
    store: Mutex<Store>,
}

#[derive(Default)]
struct Store {
    queries: HashMap<[u8; 32], Box<str>>,
    /// Hashes in the order they were stored: the oldest is dropped first.
    order: VecDeque<[u8; 32]>,
    /// Text plus `ENTRY_OVERHEAD` per entry.
    bytes: usize,
}

/// How full the store is, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub entries: usize,
    pub bytes: usize,
}

impl PersistedQueries {
    pub fn new(limits: Arc<Limits>) -> Self {
        Self { limits, store: Mutex::default() }
    }

    pub fn usage(&self) -> Usage {
        let store = self.store.lock().unwrap();
        Usage { entries: store.queries.len(), bytes: store.bytes }
    }

    /// Replaces a request's `persistedQuery` extension by the query text it stands
    /// for, registering the text when the client sent it. A request without the
    /// extension is left alone, so calling this twice is harmless.
    pub fn resolve(&self, request: &mut Request) -> Result<(), ServerError> {
        let Some(extension) = request.extensions.remove("persistedQuery") else {
            return Ok(());
        };
        let (outcome, result) = self.resolve_hash(&extension, &mut request.query, &request.variables);
        // These requests may never reach the schema, so the per-operation metrics would
        // not see them; the hit rate tells whether the store is large enough.
        metrics::counter!("authgraph_persisted_queries_total", "outcome" => outcome).increment(1);
        result
    }

    fn resolve_hash(
        &self,
        extension: &Value,
        query: &mut String,
        variables: &async_graphql::Variables,
    ) -> (&'static str, Result<(), ServerError>) {
        let hash = match parse_extension(extension) {
            Ok(hash) => hash,
            Err(err) => return ("refused", Err(err)),
        };
        if query.is_empty() {
            return match self.store.lock().unwrap().queries.get(&hash) {
                Some(text) => {
                    *query = text.to_string();
                    ("hit", Ok(()))
                }
                None => ("miss", Err(error(code::PERSISTED_QUERY_NOT_FOUND, "PersistedQueryNotFound"))),
            };
        }
        if <[u8; 32]>::from(Sha256::digest(query.as_bytes())) != hash {
            return (
                "refused",
                Err(error(code::BAD_REQUEST, "persistedQuery.sha256Hash is not the SHA-256 of the query")),
            );
        }
        if self.store.lock().unwrap().queries.contains_key(&hash) {
            return ("registered", Ok(()));
        }
        // Kept only if it would run: the same checks, and the same refusal, as execution.
        if let Err(err) = self.limits.admit(query, variables) {
            return ("refused", Err(err));
        }
        self.insert(hash, query);
        ("registered", Ok(()))
    }

    fn insert(&self, hash: [u8; 32], query: &str) {
        let size = query.len() + ENTRY_OVERHEAD;
        let mut store = self.store.lock().unwrap();
        if store.queries.contains_key(&hash) || size > STORE_BYTES {
            return;
        }
        while store.bytes + size > STORE_BYTES {
            let Some(victim) = store.order.pop_front() else { break };
            let removed = store.queries.remove(&victim).map_or(0, |q| q.len() + ENTRY_OVERHEAD);
            store.bytes -= removed;
        }
        store.bytes += size;
        store.order.push_back(hash);
        store.queries.insert(hash, query.into());
        metrics::gauge!("authgraph_persisted_queries_entries").set(store.queries.len() as f64);
        metrics::gauge!("authgraph_persisted_queries_bytes").set(store.bytes as f64);
    }
}

/// `{"version": 1, "sha256Hash": "<64 hex digits>"}`.
fn parse_extension(value: &Value) -> Result<[u8; 32], ServerError> {
    let malformed = || error(code::BAD_REQUEST, "extensions.persistedQuery needs version 1 and a sha256Hash");
    let Value::Object(fields) = value else { return Err(malformed()) };
    match fields.get("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
        Some(Value::Number(_)) => {
            return Err(error(code::PERSISTED_QUERY_NOT_SUPPORTED, "Only version 1 of persistedQuery is supported"));
        }
        _ => return Err(malformed()),
    }
    let Some(Value::String(hex)) = fields.get("sha256Hash") else { return Err(malformed()) };
    let mut hash = [0u8; 32];
    if hex.len() != 64 {
        return Err(malformed());
    }
    // Digits only: `from_str_radix` would also take a sign.
    let nibble = |b: u8| (b as char).to_digit(16);
    for (byte, pair) in hash.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let (Some(high), Some(low)) = (nibble(pair[0]), nibble(pair[1])) else { return Err(malformed()) };
        *byte = (high * 16 + low) as u8;
    }
    Ok(hash)
}

fn error(code: &'static str, message: &str) -> ServerError {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code)).into_server_error(Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUERY: &str = "{ me { id } }";

    fn store_with(max_query_bytes: usize) -> PersistedQueries {
        let mut config = crate::config::Config::defaults();
        config.graphql_max_query_bytes = max_query_bytes;
        PersistedQueries::new(Arc::new(crate::graphql::limits(&config)))
    }

    fn hash_of(query: &str) -> String {
        Sha256::digest(query.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    fn request(query: &str, hash: &str) -> Request {
        let extensions = serde_json::json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
        let mut request = Request::new(query);
        request.extensions = serde_json::from_value(extensions).unwrap();
        request
    }

    fn code(err: &ServerError) -> String {
        match err.extensions.as_ref().and_then(|e| e.get("code")) {
            Some(Value::String(code)) => code.clone(),
            other => panic!("no code: {other:?}"),
        }
    }

    #[test]
    fn an_unknown_hash_is_not_found_until_registered() {
        let store = store_with(1024);
        let err = store.resolve(&mut request("", &hash_of(QUERY))).unwrap_err();
        assert_eq!(code(&err), "PERSISTED_QUERY_NOT_FOUND");
        assert_eq!(err.message, "PersistedQueryNotFound", "Apollo's link matches this message");

        let mut registering = request(QUERY, &hash_of(QUERY));
        store.resolve(&mut registering).unwrap();
        assert_eq!(registering.query, QUERY);
        assert!(registering.extensions.is_empty());

        let mut by_hash = request("", &hash_of(QUERY));
        store.resolve(&mut by_hash).unwrap();
        assert_eq!(by_hash.query, QUERY);
    }

    #[test]
    fn a_text_cannot_be_registered_under_another_texts_hash() {
        let store = store_with(1024);
        let popular = hash_of(QUERY);
        let err = store.resolve(&mut request("{ users { totalCount } }", &popular)).unwrap_err();
        assert_eq!(code(&err), "BAD_REQUEST");
        let err = store.resolve(&mut request("", &popular)).unwrap_err();
        assert_eq!(code(&err), "PERSISTED_QUERY_NOT_FOUND", "nothing was stored");
    }

    #[test]
    fn malformed_extensions_are_refused() {
        let store = store_with(1024);
        for hash in ["", "abc", &"g".repeat(64), &"+a".repeat(32), &"é".repeat(32)] {
            assert_eq!(code(&store.resolve(&mut request("", hash)).unwrap_err()), "BAD_REQUEST", "{hash:?}");
        }
        let mut v2 = Request::new("");
        v2.extensions = serde_json::from_value(
            serde_json::json!({ "persistedQuery": { "version": 2, "sha256Hash": hash_of(QUERY) } }),
        )
        .unwrap();
        assert_eq!(code(&store.resolve(&mut v2).unwrap_err()), "PERSISTED_QUERY_NOT_SUPPORTED");
        // No extension: untouched.
        let mut plain = Request::new(QUERY);
        store.resolve(&mut plain).unwrap();
        assert_eq!(plain.query, QUERY);
    }

    #[test]
    fn the_store_stays_within_its_byte_budget() {
        let store = store_with(64 * 1024);
        let big = |i: usize| format!("{{ me {{ id }} }} # {i} {}", "x".repeat(60 * 1024));
        for i in 0..200 {
            let query = big(i);
            store.resolve(&mut request(&query, &hash_of(&query))).unwrap();
        }
        let stored = store.store.lock().unwrap();
        assert!(stored.bytes <= STORE_BYTES, "{} bytes", stored.bytes);
        let texts = stored.queries.values().map(|q| q.len() + ENTRY_OVERHEAD).sum::<usize>();
        assert_eq!(stored.bytes, texts);
        assert_eq!(stored.order.len(), stored.queries.len());
        assert!(stored.queries.len() > 10);
    }

    #[test]
    fn tiny_texts_are_counted_with_their_overhead() {
        let store = store_with(1024);
        let floods = STORE_BYTES / ENTRY_OVERHEAD + 1000;
        for i in 0..floods {
            let query = format!("{{a{i}:__typename}}");
            store.resolve(&mut request(&query, &hash_of(&query))).unwrap();
        }
        let usage = store.usage();
        assert!(usage.bytes <= STORE_BYTES, "{usage:?}");
        assert!(usage.entries < STORE_BYTES / ENTRY_OVERHEAD, "{usage:?}");
        // The newest are kept, the oldest dropped.
        let newest = format!("{{a{}:__typename}}", floods - 1);
        store.resolve(&mut request("", &hash_of(&newest))).unwrap();
        let oldest = "{a0:__typename}";
        assert_eq!(code(&store.resolve(&mut request("", &hash_of(oldest))).unwrap_err()), "PERSISTED_QUERY_NOT_FOUND");
    }

    #[test]
    fn only_documents_that_parse_and_pass_the_limits_are_kept() {
        let store = store_with(8);
        let err = store.resolve(&mut request(QUERY, &hash_of(QUERY))).unwrap_err();
        assert!(err.message.contains("max query size"), "{}", err.message);
        let store = store_with(1024);
        for text in ["{ me { id ", "not graphql at all", "{ ...A } fragment A on Query { ...A }"] {
            assert_eq!(
                code(&store.resolve(&mut request(text, &hash_of(text))).unwrap_err()),
                "GRAPHQL_VALIDATION_FAILED"
            );
        }
        assert_eq!(store.usage().entries, 0);
    }
}
