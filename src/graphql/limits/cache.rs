//! Parsed documents by query text.
//!
//! Clients send the same few documents again and again, and async-graphql's parser was
//! the largest single cost of a small request in the profile; a cached document is
//! cloned instead (names are shared `Arc<str>`). Bounded: small documents only, and the
//! whole map is dropped when full, which keeps it simple and lets a client churning
//! unique queries cost only its own parses. Only documents that passed the document
//! budget are kept, and they are measured again on every use (variables change costs).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_graphql::parser::types::ExecutableDocument;

const CACHE_ENTRIES: usize = 256;
const CACHE_MAX_QUERY_BYTES: usize = 4096;

#[derive(Default)]
pub(super) struct DocumentCache {
    documents: Mutex<HashMap<Box<str>, Arc<ExecutableDocument>>>,
}

impl DocumentCache {
    pub(super) fn get(&self, query: &str) -> Option<ExecutableDocument> {
        let found = self.documents.lock().unwrap().get(query).cloned();
        found.map(|doc| (*doc).clone())
    }

    pub(super) fn put(&self, query: &str, document: &ExecutableDocument) {
        if query.len() > CACHE_MAX_QUERY_BYTES {
            return;
        }
        let mut documents = self.documents.lock().unwrap();
        if documents.len() >= CACHE_ENTRIES {
            documents.clear();
        }
        documents.insert(query.into(), Arc::new(document.clone()));
    }
}
