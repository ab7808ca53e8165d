//! The document walk: what every operation and fragment of a document asks for, with
//! fragments expanded where they are spread, in time linear in the document's size.
//!
//! A fragment may be spread many times, and fragments may spread fragments: ten lines
//! of `fragment F1 on Query { ...F2 ...F2 }` expand to a thousand fields, thirty to a
//! billion. Walking the expansion (as async-graphql's own checks do) takes time
//! exponential in the text. So each fragment is summarised once, bottom-up (fragments
//! that spread nothing first), and a spread adds its fragment's summary instead of
//! walking it again. Every figure is exact, saturating at `u64::MAX`, and the walk
//! stops at the first fragment whose expansion is over the selections budget.
//!
//! A summary does not depend on where its fragment is spread: the page size that
//! multiplies `edges` and `nodes` is kept apart (`cost_paged`) and applied by the
//! field that owns the page, and the figures about the top level of a selection set
//! (root fields, introspection) are kept apart from the figures of the whole subtree.

use std::collections::{HashMap, HashSet};

use async_graphql::{
    Name, Value, Variables,
    parser::types::{ExecutableDocument, Field, OperationType, Selection, SelectionSet},
};

use super::AUTH_MUTATIONS;
use crate::users;

/// Introspection fields that lead from a type back into the type graph.
const TYPE_REENTRY: [&str; 5] = ["fields", "inputFields", "interfaces", "possibleTypes", "types"];

/// What one operation asks for, fragments expanded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Measure {
    /// The operation's name, if it has one.
    pub name: Option<String>,
    /// Deepest path of the operation's own fields (`__typename` and introspection
    /// excluded).
    pub depth: u64,
    /// One per field (`__typename` included), `edges` and `nodes` times the page size.
    pub cost: u64,
    /// Aliased fields other than `__typename`.
    pub aliases: u64,
    pub root_fields: u64,
    pub directives: u64,
    /// Root fields of a mutation that hash passwords or mint tokens.
    pub auth_mutations: u64,
    /// Most type re-entries on one introspection path.
    pub type_reentry: u64,
    /// Longest path inside introspection.
    pub introspection_depth: u64,
    /// `__schema` or `__type` at the root.
    pub introspects: bool,
    /// A `first` argument that is no 32-bit integer: execution would fail on it with
    /// async-graphql's own message, so it is refused first, naming the argument.
    pub first_out_of_range: bool,
}

/// What a whole document asks for.
#[derive(Debug, Default)]
pub struct DocumentMeasure {
    /// Fields, fragment spreads and inline fragments of every operation, fragments
    /// expanded where spread, plus fragments that nothing spreads: the work that
    /// validating the document takes.
    pub selections: u64,
    pub operations: Vec<Measure>,
}

/// Why a document was not measured to the end.
#[derive(Debug, PartialEq, Eq)]
pub enum Overrun {
    /// A fragment's expansion alone is over the budget; `selections` is its real size.
    Selections { fragment: String, selections: u64 },
    /// A fragment spreads itself, directly or through others.
    Cycle { fragment: String },
}

/// Measures every operation and fragment of `doc`. Page sizes given as variables take
/// the request's value, or the variable's default when the request has none.
pub fn measure_document(
    doc: &ExecutableDocument,
    variables: &Variables,
    max_selections: u64,
) -> Result<DocumentMeasure, Overrun> {
    let mut walker = Walker { defaults: HashMap::new(), variables, fragments: HashMap::new() };
    for (_, op) in doc.operations.iter() {
        for var in &op.node.variable_definitions {
            if let Some(default) = &var.node.default_value {
                let page = page_value(&default.node);
                let entry = walker.defaults.entry(var.node.name.node.clone()).or_insert(page);
                *entry = (*entry).max(page);
            }
        }
    }

    let order = fragment_order(doc)?;
    for name in &order {
        let fragment = &doc.fragments[name];
        let mut summary = walker.summarize(&fragment.node.selection_set.node);
        summary.directives = summary.directives.saturating_add(fragment.node.directives.len() as u64);
        if summary.nodes > max_selections {
            return Err(Overrun::Selections { fragment: name.to_string(), selections: summary.nodes });
        }
        walker.fragments.insert(name.clone(), summary);
    }

    let spread: HashSet<&Name> = doc.fragments.values().flat_map(|f| spreads_in(&f.node.selection_set.node)).collect();
    let spread_from_operations: HashSet<&Name> =
        doc.operations.iter().flat_map(|(_, op)| spreads_in(&op.node.selection_set.node)).collect();
    let mut selections = doc
        .fragments
        .keys()
        .filter(|name| !spread.contains(name) && !spread_from_operations.contains(name))
        .fold(0u64, |sum, name| sum.saturating_add(walker.fragments[name].nodes));

    let mut operations = Vec::new();
    for (name, op) in doc.operations.iter() {
        let s = walker.summarize(&op.node.selection_set.node);
        selections = selections.saturating_add(s.nodes);
        operations.push(Measure {
            name: name.map(|n| n.to_string()),
            depth: s.data_depth,
            cost: s.cost(None),
            aliases: s.aliases,
            root_fields: s.root_fields,
            directives: s.directives.saturating_add(op.node.directives.len() as u64),
            auth_mutations: if op.node.ty == OperationType::Mutation { s.auth_mutations } else { 0 },
            type_reentry: s.introspection_reentry,
            introspection_depth: s.introspection_depth,
            introspects: s.introspects,
            first_out_of_range: s.first_out_of_range,
        });
    }
    Ok(DocumentMeasure { selections, operations })
}

/// The measure of the operation a request runs, by the one rule (`operation::pick`).
pub fn selected<'a>(measures: &'a [Measure], name: Option<&str>) -> Option<&'a Measure> {
    super::operation::pick(measures.iter().map(|m| (m.name.as_deref(), m)), name)
}

/// What a selection set asks for, fragments expanded.
#[derive(Debug, Default, Clone, Copy)]
struct Summary {
    /// Fields, spreads and inline fragments in the whole subtree.
    nodes: u64,
    /// Cost outside any `edges`/`nodes` of this level, and the cost of those, which the
    /// enclosing field multiplies by its page size.
    cost_base: u64,
    cost_paged: u64,
    /// Deepest path of non-`__typename` fields below this set.
    depth: u64,
    aliases: u64,
    directives: u64,
    /// Most type re-entries on one path below this set.
    reentry: u64,
    // The top level of the set, through fragments and inline fragments.
    root_fields: u64,
    auth_mutations: u64,
    data_depth: u64,
    introspection_depth: u64,
    introspection_reentry: u64,
    introspects: bool,
    first_out_of_range: bool,
}

impl Summary {
    fn cost(&self, page: Option<u64>) -> u64 {
        self.cost_base.saturating_add(page.unwrap_or(1).saturating_mul(self.cost_paged))
    }

    /// Adds a fragment's summary at this level.
    fn merge(&mut self, other: &Summary) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.cost_base = self.cost_base.saturating_add(other.cost_base);
        self.cost_paged = self.cost_paged.saturating_add(other.cost_paged);
        self.depth = self.depth.max(other.depth);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.directives = self.directives.saturating_add(other.directives);
        self.reentry = self.reentry.max(other.reentry);
        self.root_fields = self.root_fields.saturating_add(other.root_fields);
        self.auth_mutations = self.auth_mutations.saturating_add(other.auth_mutations);
        self.data_depth = self.data_depth.max(other.data_depth);
        self.introspection_depth = self.introspection_depth.max(other.introspection_depth);
        self.introspection_reentry = self.introspection_reentry.max(other.introspection_reentry);
        self.introspects |= other.introspects;
        self.first_out_of_range |= other.first_out_of_range;
    }
}

struct Walker<'a> {
    /// The largest default of each variable, over the document's operations.
    defaults: HashMap<Name, Option<u64>>,
    variables: &'a Variables,
    /// Summaries of the fragments measured so far.
    fragments: HashMap<Name, Summary>,
}

impl Walker<'_> {
    /// Recursion follows the nesting of the text (bounded before parsing), never a
    /// fragment spread: the spread's fragment is already summarised.
    fn summarize(&self, set: &SelectionSet) -> Summary {
        let mut s = Summary::default();
        for item in &set.items {
            s.nodes = s.nodes.saturating_add(1);
            match &item.node {
                Selection::Field(field) => self.add_field(&mut s, &field.node),
                Selection::FragmentSpread(spread) => {
                    s.directives = s.directives.saturating_add(spread.node.directives.len() as u64);
                    // Unknown fragments are validation's to report.
                    if let Some(fragment) = self.fragments.get(&spread.node.fragment_name.node) {
                        s.merge(fragment);
                    }
                }
                Selection::InlineFragment(inline) => {
                    s.directives = s.directives.saturating_add(inline.node.directives.len() as u64);
                    s.merge(&self.summarize(&inline.node.selection_set.node));
                }
            }
        }
        s
    }

    fn add_field(&self, s: &mut Summary, field: &Field) {
        let name = field.name.node.as_str();
        s.directives = s.directives.saturating_add(field.directives.len() as u64);
        if name == "__typename" {
            s.cost_base = s.cost_base.saturating_add(1);
            return;
        }
        let page = self.page_size(field);
        let child = self.summarize(&field.selection_set.node);
        s.first_out_of_range |= child.first_out_of_range || self.first_out_of_range(field);
        let below = child.cost(page);
        if matches!(name, "edges" | "nodes") {
            s.cost_base = s.cost_base.saturating_add(1);
            s.cost_paged = s.cost_paged.saturating_add(below);
        } else {
            s.cost_base = s.cost_base.saturating_add(1).saturating_add(below);
        }
        s.nodes = s.nodes.saturating_add(child.nodes);
        s.depth = s.depth.max(child.depth.saturating_add(1));
        s.aliases = s.aliases.saturating_add(child.aliases).saturating_add(u64::from(field.alias.is_some()));
        s.directives = s.directives.saturating_add(child.directives);
        s.reentry = s.reentry.max(child.reentry.saturating_add(u64::from(TYPE_REENTRY.contains(&name))));
        s.root_fields = s.root_fields.saturating_add(1);
        s.auth_mutations = s.auth_mutations.saturating_add(u64::from(AUTH_MUTATIONS.contains(&name)));
        if name.starts_with("__") {
            s.introspects = true;
            s.introspection_depth = s.introspection_depth.max(child.depth.saturating_add(1));
            s.introspection_reentry = s.introspection_reentry.max(child.reentry);
        } else {
            s.data_depth = s.data_depth.max(child.depth.saturating_add(1));
        }
    }

    /// The page size of a connection field, as it will be costed: its `first` argument
    /// (a literal, a variable, or the variable's default), at most the largest page
    /// (a larger one reaches the resolver, which refuses it by name); the default page
    /// for `users` without one; `None` for other fields.
    fn page_size(&self, field: &Field) -> Option<u64> {
        let first = field.arguments.iter().find(|(name, _)| name.node == "first").map(|(_, v)| &v.node);
        let value = match first {
            Some(async_graphql_value::Value::Variable(var)) => match self.variables.get(var) {
                Some(value) => page_value(value),
                None => self.defaults.get(var).copied().flatten(),
            },
            Some(literal) => literal.clone().into_const().as_ref().and_then(page_value),
            None => None,
        };
        match (value, field.name.node.as_str()) {
            (Some(n), _) => Some(n),
            (None, "users") => Some(users::DEFAULT_PAGE_SIZE as u64),
            (None, _) => None,
        }
    }
}

impl Walker<'_> {
    fn first_out_of_range(&self, field: &Field) -> bool {
        let Some((_, first)) = field.arguments.iter().find(|(name, _)| name.node == "first") else {
            return false;
        };
        let value = match &first.node {
            async_graphql_value::Value::Variable(var) => self.variables.get(var).cloned(),
            literal => literal.clone().into_const(),
        };
        match value {
            Some(Value::Number(n)) => n.as_i64().is_none_or(|n| i32::try_from(n).is_err()),
            _ => false,
        }
    }
}

/// A page size as costed: at least 1, at most the largest page, and the largest page
/// for a number that is not a small positive integer (the resolver refuses those).
fn page_value(value: &Value) -> Option<u64> {
    let max = users::MAX_PAGE_SIZE as u64;
    match value {
        Value::Number(n) => Some(n.as_u64().map_or(max, |n| n.clamp(1, max))),
        Value::Null => None,
        _ => Some(max),
    }
}

/// Fragment names spread anywhere in `set` (inline fragments included), in order.
fn spreads_in(set: &SelectionSet) -> Vec<&Name> {
    let mut out = Vec::new();
    fn collect<'a>(set: &'a SelectionSet, out: &mut Vec<&'a Name>) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => collect(&field.node.selection_set.node, out),
                Selection::FragmentSpread(spread) => out.push(&spread.node.fragment_name.node),
                Selection::InlineFragment(inline) => collect(&inline.node.selection_set.node, out),
            }
        }
    }
    collect(set, &mut out);
    out
}

/// The document's fragments, each after every fragment it spreads; a cycle is an
/// overrun. Iterative, so a long chain of fragments cannot exhaust the stack.
fn fragment_order(doc: &ExecutableDocument) -> Result<Vec<Name>, Overrun> {
    #[derive(PartialEq)]
    enum State {
        Open,
        Done,
    }
    let mut state: HashMap<&Name, State> = HashMap::new();
    let mut order = Vec::with_capacity(doc.fragments.len());
    for root in doc.fragments.keys() {
        if state.contains_key(root) {
            continue;
        }
        // (fragment, its spreads, how many of them are handled)
        let mut stack = vec![(root, spreads_in(&doc.fragments[root].node.selection_set.node), 0usize)];
        state.insert(root, State::Open);
        while let Some((name, spreads, next)) = stack.last_mut() {
            let Some(child) = spreads.get(*next).copied() else {
                state.insert(*name, State::Done);
                order.push((*name).clone());
                stack.pop();
                continue;
            };
            *next += 1;
            match state.get(child) {
                Some(State::Done) => {}
                Some(State::Open) => return Err(Overrun::Cycle { fragment: child.to_string() }),
                None => {
                    if let Some(fragment) = doc.fragments.get(child) {
                        state.insert(child, State::Open);
                        stack.push((child, spreads_in(&fragment.node.selection_set.node), 0));
                    }
                }
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measure_of(query: &str) -> Measure {
        let doc = async_graphql::parser::parse_query(query).unwrap();
        measure_document(&doc, &Variables::default(), u64::MAX).unwrap().operations.remove(0)
    }

    /// `{ ...F0 } fragment F0 on Query { ...F1 ...F1 } … fragment F{levels} on Query { __typename }`
    pub(crate) fn fragment_bomb(levels: usize, fan_out: usize) -> String {
        let mut query = String::from("{ ...F0 }");
        for level in 0..levels {
            let spreads = format!("...F{} ", level + 1).repeat(fan_out);
            query += &format!(" fragment F{level} on Query {{ {spreads}}}");
        }
        query + &format!(" fragment F{levels} on Query {{ __typename }}")
    }

    #[test]
    fn a_lone_named_operation_is_measured() {
        assert_eq!(measure_of("query Named { me { id } }").depth, 2);
    }

    #[test]
    fn depth_counts_nested_fields_through_fragments() {
        assert_eq!(measure_of("{ me { id } }").depth, 2);
        let m = measure_of("query { users { nodes { ...F } } } fragment F on User { id }");
        assert_eq!(m.depth, 3);
        assert_eq!(measure_of("{ __typename }").depth, 0);
        let nested =
            measure_of("{ ...A } fragment A on Query { users { ...B } } fragment B on UserConnection { nodes { id } }");
        assert_eq!(nested.depth, 3);
    }

    #[test]
    fn aliases_root_fields_and_auth_mutations_are_counted() {
        let m = measure_of(
            "mutation { a: signin(input: {username: \"a\", password: \"b\"}) { accessToken } b: signin(input: {username: \"a\", password: \"b\"}) { accessToken } t: __typename }",
        );
        assert_eq!((m.aliases, m.root_fields, m.auth_mutations), (2, 2, 2));
        let through_fragments = measure_of(
            "mutation { ...S ...S } fragment S on Mutation { signin(input: {username: \"a\", password: \"b\"}) { accessToken } }",
        );
        assert_eq!(through_fragments.auth_mutations, 2);
    }

    #[test]
    fn circular_introspection_is_caught_and_ordinary_introspection_is_not() {
        let circular = measure_of("{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }");
        assert_eq!(circular.type_reentry, 4, "types, then fields three times");
        let normal = measure_of(
            "{ __schema { types { name fields { name type { name ofType { name ofType { name ofType { name } } } } } } } }",
        );
        assert_eq!((normal.type_reentry, normal.depth), (2, 0));
        assert!(normal.introspects);
        assert_eq!(normal.introspection_depth, 8);
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
        // Through a fragment on the connection, the page still multiplies.
        assert_eq!(
            measure_of("{ users(first: 50) { ...P } } fragment P on UserConnection { edges { node { id } } }").cost,
            1 + 1 + 50 * 2
        );
        // A page over the maximum is costed at the maximum (the resolver refuses it).
        assert_eq!(measure_of("{ users(first: 1000) { nodes { id } } }").cost, 1 + 1 + 100);
        assert_eq!(measure_of("{ users(first: 2147483648) { nodes { id } } }").cost, 1 + 1 + 100);
    }

    #[test]
    fn variable_defaults_count_like_passed_values() {
        let query = "query($f: Int = 100) { users(first: $f) { nodes { id } } }";
        assert_eq!(measure_of(query).cost, 1 + 1 + 100);
        let doc = async_graphql::parser::parse_query(query).unwrap();
        let passed = Variables::from_json(serde_json::json!({ "f": 5 }));
        assert_eq!(measure_document(&doc, &passed, u64::MAX).unwrap().operations[0].cost, 1 + 1 + 5);
    }

    #[test]
    fn typename_costs_like_any_field_but_is_no_alias_or_root_field() {
        let m = measure_of("{ a: __typename b: __typename }");
        assert_eq!((m.cost, m.aliases, m.root_fields), (2, 0, 0));
    }

    #[test]
    fn a_fragment_bomb_is_measured_exactly_in_linear_time() {
        let doc = async_graphql::parser::parse_query(fragment_bomb(30, 3)).unwrap();
        let start = std::time::Instant::now();
        let m = measure_document(&doc, &Variables::default(), u64::MAX).unwrap();
        assert!(start.elapsed() < std::time::Duration::from_secs(1), "{:?}", start.elapsed());
        assert_eq!(m.operations[0].cost, 3u64.pow(30));
        // Stopped at the first fragment over the budget, with its real size.
        let over = measure_document(&doc, &Variables::default(), 1000).unwrap_err();
        assert_eq!(
            over,
            Overrun::Selections { fragment: "F24".into(), selections: (3u64.pow(7) - 3) / 2 + 3u64.pow(6) }
        );
    }

    #[test]
    fn cycles_are_overruns_not_loops() {
        let doc =
            async_graphql::parser::parse_query("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }")
                .unwrap();
        assert!(matches!(measure_document(&doc, &Variables::default(), 1000), Err(Overrun::Cycle { .. })));
        let doc = async_graphql::parser::parse_query("{ ...A } fragment A on Query { me { ...A } }").unwrap();
        assert!(matches!(measure_document(&doc, &Variables::default(), 1000), Err(Overrun::Cycle { .. })));
    }

    #[test]
    fn every_operation_and_unused_fragment_counts_towards_selections() {
        let doc = async_graphql::parser::parse_query(
            "query A { me { id } } query B { __typename } fragment U on Query { me { id name } }",
        )
        .unwrap();
        let m = measure_document(&doc, &Variables::default(), u64::MAX).unwrap();
        assert_eq!(m.selections, 2 + 1 + 3);
        assert_eq!(m.operations.len(), 2);
    }
}
