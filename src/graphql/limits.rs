//! Operation limits, applied after parsing and before any resolver runs.
//!
//! GraphQL lets one small request ask for a great deal of work: deep nesting, many
//! aliases of one expensive field, or fifty aliased `signin`s that would each hash a
//! password. This extension measures the operation that is about to run and refuses
//! it, naming the limit, when any measure is over its setting. Everything here is
//! arithmetic on the parsed document; nothing touches the database.
//!
//! Depth counts the operation's own fields. Introspection is measured apart: the
//! standard introspection query nests `ofType` about fifteen levels deep, which is
//! fine, while `fields { type { fields { type … } } }` re-enters the type graph again
//! and again and is refused by counting those re-entries.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU32, Ordering},
};

use async_graphql::{
    ErrorExtensions, Request, ServerError, ServerResult, Value, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextRequest},
    parser::types::{
        DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection, SelectionSet,
    },
};

/// The limits, from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_depth: usize,
    pub max_cost: usize,
    pub max_aliases: usize,
    pub max_root_fields: usize,
    pub max_directives: usize,
    pub max_tokens: usize,
    pub max_query_bytes: usize,
    /// When false, `__schema` and `__type` are refused with an error (async-graphql
    /// alone would answer null, which tools misread as an empty schema).
    pub introspection: bool,
}

/// Mutations that check or set a password, or mint tokens: at most one per HTTP
/// request, counting aliases and every operation of a batch.
const AUTH_MUTATIONS: [&str; 4] = ["signup", "signin", "refresh", "changePassword"];
/// Introspection fields that lead from a type back into the type graph.
const TYPE_REENTRY: [&str; 5] = ["fields", "inputFields", "interfaces", "possibleTypes", "types"];
/// Re-entries allowed on one path: `__schema { types { fields { type … } } }` needs two.
const MAX_TYPE_REENTRY: usize = 2;
/// Longest path inside introspection (`ofType` chains of the standard query are ~15).
const MAX_INTROSPECTION_DEPTH: usize = 30;
/// Page size assumed for `users` without a `first` argument (its default).
const DEFAULT_LIST_SIZE: usize = 20;

/// Shared by the operations of one HTTP request (a batch), so limits that span the
/// whole request can be counted.
#[derive(Default)]
pub struct RequestBudget {
    auth_mutations: AtomicU32,
}

pub struct OperationLimits {
    limits: Arc<Limits>,
    cache: Arc<DocumentCache>,
}

impl OperationLimits {
    pub fn new(limits: Limits) -> Self {
        Self { limits: Arc::new(limits), cache: Arc::default() }
    }
}

impl ExtensionFactory for OperationLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(LimitsExtension {
            limits: self.limits.clone(),
            cache: self.cache.clone(),
            operation: RequestedOperation::default(),
        })
    }
}

/// Parsed documents by query text. Clients send the same few documents again and
/// again, and async-graphql's parser was the largest single cost of a small request
/// in the profile; a cached document is cloned instead (names are shared `Arc<str>`).
/// Bounded: small documents only, and the whole map is dropped when full, which keeps
/// it simple and lets a client churning unique queries cost only its own parses.
#[derive(Default)]
struct DocumentCache {
    documents: Mutex<std::collections::HashMap<Box<str>, Arc<ExecutableDocument>>>,
}

const CACHE_ENTRIES: usize = 256;
const CACHE_MAX_QUERY_BYTES: usize = 4096;

impl DocumentCache {
    fn get(&self, query: &str) -> Option<ExecutableDocument> {
        let found = self.documents.lock().unwrap().get(query).cloned();
        found.map(|doc| (*doc).clone())
    }

    fn put(&self, query: &str, document: &ExecutableDocument) {
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

struct LimitsExtension {
    limits: Arc<Limits>,
    cache: Arc<DocumentCache>,
    /// Which operation of the document will run, noted before parsing.
    operation: RequestedOperation,
}

/// A refusal that names the limit; `GRAPHQL_VALIDATION_FAILED` like other invalid
/// operations, since the client must change the operation, not retry it.
pub fn limit_error(message: String) -> ServerError {
    async_graphql::Error::new(message)
        .extend_with(|_, e| e.set("code", "GRAPHQL_VALIDATION_FAILED"))
        .into_server_error(Default::default())
}

#[async_graphql::async_trait::async_trait]
impl Extension for LimitsExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> async_graphql::Response {
        let mut response = next.run(ctx).await;
        // async-graphql's own parse and validation errors carry no code; give them the
        // one clients expect, so every error has a code to branch on.
        for error in &mut response.errors {
            let has_code = error.extensions.as_ref().is_some_and(|e| e.get("code").is_some());
            if !has_code && error.path.is_empty() {
                error.extensions.get_or_insert_with(Default::default).set("code", "GRAPHQL_VALIDATION_FAILED");
            }
        }
        response
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        self.operation.remember(&request);
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let limits = &self.limits;
        if query.len() > limits.max_query_bytes {
            return Err(limit_error(format!(
                "Query is {} bytes; the limit is {} (max query size)",
                query.len(),
                limits.max_query_bytes
            )));
        }
        let tokens = count_tokens(query, limits.max_tokens + 1);
        if tokens > limits.max_tokens {
            return Err(limit_error(format!("Query has more than {} tokens (max tokens)", limits.max_tokens)));
        }
        let document = match self.cache.get(query) {
            Some(document) => document,
            None => {
                let document = next.run(ctx, query, variables).await?;
                self.cache.put(query, &document);
                document
            }
        };
        let Some(operation) = self.operation.select(&document) else {
            // No such operation: validation will say so.
            return Ok(document);
        };
        let measure = measure(&document, operation, variables, limits.max_cost.saturating_mul(10));
        check(limits, &measure)?;
        if measure.auth_mutations > 0 {
            let previous = match ctx.data_opt::<Arc<RequestBudget>>() {
                Some(budget) => budget.auth_mutations.fetch_add(measure.auth_mutations, Ordering::SeqCst),
                None => 0,
            };
            if previous + measure.auth_mutations > 1 {
                return Err(limit_error(format!(
                    "At most one of {} may run per request, aliases and batches included (auth mutations)",
                    AUTH_MUTATIONS.join(", ")
                )));
            }
        }
        Ok(document)
    }
}

fn check(limits: &Limits, m: &Measure) -> ServerResult<()> {
    let over = |what: &str, value: usize, max: usize| {
        Err(limit_error(format!("Operation {what} is {value}; the limit is {max} (max {what})")))
    };
    if m.introspects && !limits.introspection {
        return Err(limit_error("GraphQL introspection is disabled on this server".to_owned()));
    }
    if m.exhausted {
        return over("cost", m.cost, limits.max_cost);
    }
    if m.depth > limits.max_depth {
        return over("depth", m.depth, limits.max_depth);
    }
    if m.cost > limits.max_cost {
        return over("cost", m.cost, limits.max_cost);
    }
    if m.aliases > limits.max_aliases {
        return over("aliases", m.aliases, limits.max_aliases);
    }
    if m.root_fields > limits.max_root_fields {
        return over("root fields", m.root_fields, limits.max_root_fields);
    }
    if m.directives > limits.max_directives {
        return over("directives", m.directives, limits.max_directives);
    }
    if m.type_reentry > MAX_TYPE_REENTRY || m.introspection_depth > MAX_INTROSPECTION_DEPTH {
        return Err(limit_error(
            "Introspection query nests the type graph too deeply (max introspection depth)".to_owned(),
        ));
    }
    Ok(())
}

/// The name of the operation a request asks to run, noted before parsing so that the
/// parsed document's operation can be picked out (by this extension and by `observe`).
#[derive(Default)]
pub(crate) struct RequestedOperation(Mutex<Option<String>>);

impl RequestedOperation {
    pub(crate) fn remember(&self, request: &Request) {
        *self.0.lock().unwrap() = request.operation_name.clone();
    }

    pub(crate) fn select<'a>(&self, document: &'a ExecutableDocument) -> Option<&'a OperationDefinition> {
        let name = self.0.lock().unwrap().clone();
        select_operation(document, name.as_deref())
    }
}

fn select_operation<'a>(doc: &'a ExecutableDocument, name: Option<&str>) -> Option<&'a OperationDefinition> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| &op.node),
        // A lone named operation may be run without naming it.
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next().map(|op| &op.node),
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// What an operation asks for.
#[derive(Debug, Default)]
pub struct Measure {
    pub depth: usize,
    pub cost: usize,
    pub aliases: usize,
    pub root_fields: usize,
    pub directives: usize,
    pub auth_mutations: u32,
    pub type_reentry: usize,
    pub introspection_depth: usize,
    /// `__schema` or `__type` at the root.
    pub introspects: bool,
    /// The walk stopped early: fragments multiplied the work past any sane limit.
    pub exhausted: bool,
}

struct Walker<'a> {
    doc: &'a ExecutableDocument,
    variables: &'a Variables,
    measure: Measure,
    /// Fragment names on the current path, to stop on cycles (validation rejects them).
    fragment_path: Vec<&'a str>,
    /// Selections visited; fragments spread many times can make this exponential.
    visited: usize,
    budget: usize,
}

/// Measures `op`, giving up after `budget` visited selections.
pub fn measure(doc: &ExecutableDocument, op: &OperationDefinition, variables: &Variables, budget: usize) -> Measure {
    let mut w = Walker { doc, variables, measure: Measure::default(), fragment_path: Vec::new(), visited: 0, budget };
    w.measure.directives += op.directives.len();
    let is_mutation = op.ty == OperationType::Mutation;
    let cost = w.walk(&op.selection_set.node, Place::Root { is_mutation }, None);
    w.measure.cost = cost;
    w.measure
}

#[derive(Clone, Copy)]
enum Place {
    Root {
        is_mutation: bool,
    },
    /// Inside the operation's own fields, at this depth.
    Data(usize),
    /// Inside introspection: path length and type re-entries so far.
    Introspection {
        depth: usize,
        reentry: usize,
    },
}

impl<'a> Walker<'a> {
    /// Walks a selection set and returns its cost. `page` is the page size of the
    /// enclosing connection field, which multiplies the cost of its `edges` and `nodes`.
    fn walk(&mut self, set: &'a SelectionSet, place: Place, page: Option<usize>) -> usize {
        let mut cost = 0usize;
        for item in &set.items {
            self.visited += 1;
            if self.visited > self.budget {
                self.measure.exhausted = true;
                return cost;
            }
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let name = field.name.node.as_str();
                    self.measure.directives += field.directives.len();
                    if name == "__typename" {
                        continue;
                    }
                    if field.alias.is_some() {
                        self.measure.aliases += 1;
                    }
                    let child_place = match place {
                        Place::Root { is_mutation } => {
                            self.measure.root_fields += 1;
                            if is_mutation && AUTH_MUTATIONS.contains(&name) {
                                self.measure.auth_mutations += 1;
                            }
                            if name.starts_with("__") {
                                self.measure.introspects = true;
                                Place::Introspection { depth: 1, reentry: 0 }
                            } else {
                                self.measure.depth = self.measure.depth.max(1);
                                Place::Data(1)
                            }
                        }
                        Place::Data(depth) => {
                            self.measure.depth = self.measure.depth.max(depth + 1);
                            Place::Data(depth + 1)
                        }
                        Place::Introspection { depth, reentry } => {
                            let reentry = reentry + usize::from(TYPE_REENTRY.contains(&name));
                            self.measure.type_reentry = self.measure.type_reentry.max(reentry);
                            self.measure.introspection_depth = self.measure.introspection_depth.max(depth + 1);
                            Place::Introspection { depth: depth + 1, reentry }
                        }
                    };
                    let child_page = match place {
                        Place::Introspection { .. } => None,
                        _ => self.page_size(field),
                    };
                    let children = self.walk(&field.selection_set.node, child_place, child_page);
                    let multiplier = match (page, name) {
                        (Some(size), "edges" | "nodes") => size,
                        _ => 1,
                    };
                    cost = cost.saturating_add(1).saturating_add(children.saturating_mul(multiplier));
                }
                Selection::FragmentSpread(spread) => {
                    self.measure.directives += spread.node.directives.len();
                    let name = spread.node.fragment_name.node.as_str();
                    if self.fragment_path.contains(&name) {
                        continue;
                    }
                    let Some(fragment) = self.doc.fragments.get(&spread.node.fragment_name.node) else {
                        continue;
                    };
                    self.measure.directives += fragment.node.directives.len();
                    self.fragment_path.push(name);
                    cost = cost.saturating_add(self.walk(&fragment.node.selection_set.node, place, page));
                    self.fragment_path.pop();
                }
                Selection::InlineFragment(inline) => {
                    self.measure.directives += inline.node.directives.len();
                    cost = cost.saturating_add(self.walk(&inline.node.selection_set.node, place, page));
                }
            }
        }
        cost
    }

    /// The page size of a connection field: its `first` argument, or the default page
    /// size for the paginated `users`; `None` for other fields.
    fn page_size(&self, field: &async_graphql::parser::types::Field) -> Option<usize> {
        let first = field.arguments.iter().find(|(name, _)| name.node == "first").map(|(_, v)| &v.node);
        let value = match first {
            Some(async_graphql_value::Value::Number(n)) => n.as_u64(),
            Some(async_graphql_value::Value::Variable(var)) => match self.variables.get(var) {
                Some(Value::Number(n)) => n.as_u64(),
                _ => None,
            },
            _ => None,
        };
        match (value, field.name.node.as_str()) {
            (Some(n), _) => Some(usize::try_from(n).unwrap_or(usize::MAX).max(1)),
            (None, "users") => Some(DEFAULT_LIST_SIZE),
            (None, _) => None,
        }
    }
}

/// Counts GraphQL tokens (names, numbers, strings, punctuators), stopping at `stop`,
/// so a huge query costs no more than the limit to refuse.
pub fn count_tokens(query: &str, stop: usize) -> usize {
    let bytes = query.as_bytes();
    let (mut i, mut tokens) = (0, 0);
    while i < bytes.len() && tokens < stop {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            0xEF if bytes[i..].starts_with(&[0xEF, 0xBB, 0xBF]) => i += 3,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                tokens += 1;
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 3;
            }
            b'"' => {
                tokens += 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => {
                tokens += 1;
                i += 3;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                tokens += 1;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'.' | b'-' | b'+'))
                {
                    i += 1;
                }
            }
            _ => {
                tokens += 1;
                i += 1;
            }
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measure_of(query: &str) -> Measure {
        let doc = async_graphql::parser::parse_query(query).unwrap();
        let op = select_operation(&doc, None).unwrap();
        measure(&doc, op, &Variables::default(), 100_000)
    }

    #[test]
    fn a_lone_named_operation_is_measured() {
        let doc = async_graphql::parser::parse_query("query Named { me { id } }").unwrap();
        let op = select_operation(&doc, None).expect("the only operation");
        assert_eq!(measure(&doc, op, &Variables::default(), 1000).depth, 2);
    }

    #[test]
    fn depth_counts_nested_fields_through_fragments() {
        assert_eq!(measure_of("{ me { id } }").depth, 2);
        let m = measure_of("query { users { nodes { ...F } } } fragment F on User { id }");
        assert_eq!(m.depth, 3);
        assert_eq!(measure_of("{ __typename }").depth, 0);
    }

    #[test]
    fn aliases_root_fields_and_auth_mutations_are_counted() {
        let m = measure_of(
            "mutation { a: signin(input: {username: \"a\", password: \"b\"}) { accessToken } b: signin(input: {username: \"a\", password: \"b\"}) { accessToken } t: __typename }",
        );
        assert_eq!((m.aliases, m.root_fields, m.auth_mutations), (2, 2, 2));
    }

    #[test]
    fn circular_introspection_is_caught_and_ordinary_introspection_is_not() {
        let circular = measure_of("{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }");
        assert!(circular.type_reentry > MAX_TYPE_REENTRY);
        let normal = measure_of(
            "{ __schema { types { name fields { name type { name ofType { name ofType { name ofType { name } } } } } } } }",
        );
        assert!(normal.type_reentry <= MAX_TYPE_REENTRY && normal.depth == 0);
    }

    #[test]
    fn cost_multiplies_by_page_size() {
        // users 1 + nodes (1 + 100 × (id + name))
        assert_eq!(measure_of("{ users(first: 100) { nodes { id name } } }").cost, 1 + 1 + 100 * 2);
        // totalCount and pageInfo are paid once, not per row.
        assert_eq!(
            measure_of("{ users { totalCount nodes { id } pageInfo { hasNextPage } } }").cost,
            1 + 1 + (1 + 20) + 2
        );
    }

    #[test]
    fn tokens_are_counted_roughly_like_the_lexer() {
        assert_eq!(count_tokens("{ me { id } }", 100), 6);
        assert_eq!(count_tokens("query Q($a: Int = 1) { x(a: $a, s: \"a b\") } # comment", 100), 22);
        assert_eq!(count_tokens(&"{".repeat(100_000), 2001), 2001, "stops early");
    }
}
