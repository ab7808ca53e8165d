//! Operation limits: the document budget, checked before async-graphql parses or
//! validates anything it could be made to spend time on.
//!
//! GraphQL lets one small request ask for a great deal of work: deep nesting, many
//! aliases of one expensive field, fragments that spread fragments until a kilobyte of
//! text means a billion fields, or fifty aliased `signin`s that would each hash a
//! password. In order, each step bounded by the size of what the previous one let
//! through:
//!
//! 1. the text: size, tokens and bracket nesting (`lexer`), so the parser's time and
//!    recursion are bounded;
//! 2. the parse, done here (or taken from the `cache`) instead of by async-graphql,
//!    whose own pass after parsing walks every fragment at every spread;
//! 3. the document (`walk`): every operation and every fragment, each fragment
//!    measured once, in time linear in the text; a cycle or an expansion over the
//!    selections budget stops it;
//! 4. each operation's depth, cost, aliases, root fields and directives, whichever
//!    operation the request names, since validation will visit them all;
//! 5. the request-wide budget of password and token mutations.
//!
//! Only then does validation run, on a document whose expansion is within budget.
//!
//! Depth counts the operation's own fields. Introspection is measured apart: the
//! standard introspection query nests `ofType` about fifteen levels deep, which is
//! fine, while `fields { type { fields { type … } } }` re-enters the type graph again
//! and again and is refused by counting those re-entries.

mod cache;
pub mod lexer;
pub(crate) mod operation;
pub mod walk;

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use async_graphql::{
    ErrorExtensions, Request, ServerError, ServerResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextRequest},
    parser::types::ExecutableDocument,
};

use crate::error::AppError;
use crate::error::code;

use self::{
    cache::DocumentCache,
    operation::RequestedOperation,
    walk::{DocumentMeasure, Measure, Overrun},
};

/// Every mutation that checks a secret (a password, a refresh token, an emailed token
/// or code, a TOTP or recovery code, a provider's code), sets a password, or mints
/// tokens or recovery codes: at most one per HTTP request, counting aliases and every operation of a
/// batch, so that one request costs at most one password-grade hash and one guess.
/// `tests/it/schema.rs` derives the same set from the schema (a secret among a
/// mutation's arguments, tokens or recovery codes in its answer) and fails when the two
/// differ, so a new such mutation cannot be left out.
pub const AUTH_MUTATIONS: [&str; 17] = [
    "signup",
    "signin",
    "refresh",
    "changePassword",
    "resetPassword",
    "verifyEmail",
    "changeEmail",
    "verifyMfa",
    "confirmTotp",
    "disableTotp",
    "regenerateRecoveryCodes",
    "finishPasskeySignIn",
    "impersonate",
    "verifyPasskey",
    "finishSocialSignIn",
    "finishIdentityLink",
    "setPassword",
];

/// Re-entries allowed on one introspection path: `__schema { types { fields { type … } } }`
/// needs two.
const MAX_TYPE_REENTRY: u64 = 2;
/// Longest path inside introspection (`ofType` chains of the standard query are ~15).
const MAX_INTROSPECTION_DEPTH: u64 = 30;

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
    /// Fields, fragment spreads and inline fragments of a whole document, fragments
    /// counted where they are spread: what validating it costs.
    pub max_selections: usize,
    /// When false, `__schema` and `__type` are refused with an error (async-graphql
    /// alone would answer null, which tools misread as an empty schema).
    pub introspection: bool,
}

impl Limits {
    /// Steps 1 to 4 for a query text: the parsed document, or the refusal. Used by the
    /// extension and by the persisted-query store, which keeps only what passes.
    pub fn admit(&self, query: &str, variables: &Variables) -> ServerResult<(ExecutableDocument, DocumentMeasure)> {
        let document = self.parse(query)?;
        let measure = self.check_document(&document, variables)?;
        Ok((document, measure))
    }

    /// Steps 1 and 2: the document, parsed only once its text is within the limits, for
    /// callers that need its shape and not its measure (is this a mutation?).
    pub fn parse(&self, query: &str) -> ServerResult<ExecutableDocument> {
        self.check_text(query)?;
        async_graphql::parser::parse_query(query).map_err(|err| {
            let mut err = ServerError::from(err);
            err.extensions.get_or_insert_with(Default::default).set("code", code::GRAPHQL_VALIDATION_FAILED);
            err
        })
    }

    fn check_text(&self, query: &str) -> ServerResult<()> {
        if query.len() > self.max_query_bytes {
            return Err(limit_error(format!(
                "Query is {} bytes; the limit is {} (max query size)",
                query.len(),
                self.max_query_bytes
            )));
        }
        let text = lexer::scan(query, self.max_tokens + 1);
        if text.tokens > self.max_tokens {
            return Err(limit_error(format!("Query has more than {} tokens (max tokens)", self.max_tokens)));
        }
        if text.nesting > lexer::MAX_NESTING {
            return Err(limit_error(format!(
                "Query nests brackets {} levels deep; the limit is {} (max nesting)",
                text.nesting,
                lexer::MAX_NESTING
            )));
        }
        Ok(())
    }

    fn check_document(&self, document: &ExecutableDocument, variables: &Variables) -> ServerResult<DocumentMeasure> {
        let max_selections = self.max_selections as u64;
        let measure = walk::measure_document(document, variables, max_selections).map_err(|overrun| match overrun {
            Overrun::Selections { fragment, selections } => limit_error(format!(
                "Fragment \"{fragment}\" expands to {selections} selections; the limit is {max_selections} \
                 (max selections)"
            )),
            Overrun::Cycle { fragment } => {
                limit_error(format!("Fragment \"{fragment}\" spreads itself, directly or through other fragments"))
            }
        })?;
        if measure.selections > max_selections {
            return Err(limit_error(format!(
                "Document has {} selections with fragments expanded; the limit is {max_selections} (max selections)",
                measure.selections
            )));
        }
        for operation in &measure.operations {
            self.check_operation(operation)?;
        }
        Ok(measure)
    }

    fn check_operation(&self, m: &Measure) -> ServerResult<()> {
        let subject = match &m.name {
            Some(name) => format!("Operation \"{name}\""),
            None => "Operation".to_owned(),
        };
        let over = |what: &str, value: u64, max: usize| {
            Err(limit_error(format!("{subject} {what} is {value}; the limit is {max} (max {what})")))
        };
        if m.introspects && !self.introspection {
            return Err(limit_error("GraphQL introspection is disabled on this server".to_owned()));
        }
        if m.depth > self.max_depth as u64 {
            return over("depth", m.depth, self.max_depth);
        }
        if m.cost > self.max_cost as u64 {
            return over("cost", m.cost, self.max_cost);
        }
        if m.aliases > self.max_aliases as u64 {
            return over("aliases", m.aliases, self.max_aliases);
        }
        if m.root_fields > self.max_root_fields as u64 {
            return over("root fields", m.root_fields, self.max_root_fields);
        }
        if m.directives > self.max_directives as u64 {
            return over("directives", m.directives, self.max_directives);
        }
        if m.type_reentry > MAX_TYPE_REENTRY || m.introspection_depth > MAX_INTROSPECTION_DEPTH {
            return Err(limit_error(
                "Introspection query nests the type graph too deeply (max introspection depth)".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Shared by the operations of one HTTP request (a batch), so limits that span the
/// whole request can be counted.
#[derive(Default)]
pub struct RequestBudget {
    auth_mutations: AtomicU64,
}

pub struct OperationLimits {
    limits: Arc<Limits>,
    cache: Arc<DocumentCache>,
}

impl OperationLimits {
    pub fn new(limits: Arc<Limits>) -> Self {
        Self { limits, cache: Arc::default() }
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
        .extend_with(|_, e| e.set("code", code::GRAPHQL_VALIDATION_FAILED))
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
            if has_code {
                continue;
            }
            // Errors without a path are validation's (ours and the parser's carry codes);
            // with a path, they come from coercing an argument (resolvers' errors all
            // have codes).
            let code = if error.path.is_empty() { code::GRAPHQL_VALIDATION_FAILED } else { code::BAD_USER_INPUT };
            error.extensions.get_or_insert_with(Default::default).set("code", code);
            // Their messages name fields, arguments and types ("Field \"me\" of type
            // \"User!\" must have a selection of subfields"): with introspection off, a
            // probe could read the schema out of them. The detail goes to the log.
            if !self.limits.introspection {
                tracing::info!(detail = %error.message, "invalid operation (message withheld from the client)");
                error.message = if code == code::BAD_USER_INPUT {
                    "An argument has a value its type does not accept".to_owned()
                } else {
                    "The operation does not fit this API; see the server log for the detail".to_owned()
                };
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

    /// Parses the document itself and never runs `next`: async-graphql's parse step
    /// also walks every fragment at every spread (its recursion-depth check), which is
    /// the exponential work this extension exists to refuse. The nesting limit and the
    /// cycle check here stand in for that check.
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        _next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let limits = &self.limits;
        let (document, measure) = match self.cache.get(query) {
            Some(document) => {
                let measure = limits.check_document(&document, variables)?;
                (document, measure)
            }
            None => {
                let (document, measure) = limits.admit(query, variables)?;
                self.cache.put(query, &document);
                (document, measure)
            }
        };
        let Some(operation) = walk::selected(&measure.operations, self.operation.name().as_deref()) else {
            // No such operation: validation will say so.
            return Ok(document);
        };
        if operation.first_out_of_range {
            let max = crate::users::MAX_PAGE_SIZE;
            let err = AppError::bad_input("first", format!("first must be between 1 and {max}"));
            return Err(async_graphql::Error::from(err).into_server_error(Default::default()));
        }
        if operation.auth_mutations > 0 {
            let previous = match ctx.data_opt::<Arc<RequestBudget>>() {
                Some(budget) => budget.auth_mutations.fetch_add(operation.auth_mutations, Ordering::SeqCst),
                None => 0,
            };
            if previous + operation.auth_mutations > 1 {
                return Err(limit_error(format!(
                    "At most one of {} may run per request, aliases and batches included (auth mutations)",
                    AUTH_MUTATIONS.join(", ")
                )));
            }
        }
        Ok(document)
    }
}
