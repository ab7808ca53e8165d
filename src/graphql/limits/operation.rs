//! Which operation of a document a request runs: one rule (`pick`), the one
//! async-graphql executes by, for everything that must agree with it: the limits (on
//! their measures), `observe` (the label), and the HTTP edge (a mutation over GET).

use std::sync::Mutex;

use async_graphql::{
    Request,
    parser::types::{ExecutableDocument, OperationDefinition},
};

/// The name of the operation a request asks to run, noted before parsing so that the
/// parsed document's operation can be picked out.
#[derive(Default)]
pub(crate) struct RequestedOperation(Mutex<Option<String>>);

impl RequestedOperation {
    pub(crate) fn remember(&self, request: &Request) {
        *self.0.lock().unwrap() = request.operation_name.clone();
    }

    pub(crate) fn name(&self) -> Option<String> {
        self.0.lock().unwrap().clone()
    }

    pub(crate) fn select<'a>(&self, document: &'a ExecutableDocument) -> Option<&'a OperationDefinition> {
        select(document, self.name().as_deref())
    }
}

/// Of a document's operations (each with its name, `None` for the anonymous one), the
/// one a request runs, as async-graphql decides: with a name, the operation of that
/// name (an anonymous one never matches); without, the only operation. `None`
/// otherwise, and then async-graphql runs nothing either ("Unknown operation named",
/// "Operation name required").
pub fn pick<'n, T>(operations: impl IntoIterator<Item = (Option<&'n str>, T)>, wanted: Option<&str>) -> Option<T> {
    let mut operations = operations.into_iter();
    match wanted {
        Some(wanted) => operations.find(|(name, _)| *name == Some(wanted)).map(|(_, op)| op),
        None => {
            let (_, only) = operations.next()?;
            operations.next().is_none().then_some(only)
        }
    }
}

/// The operation of `doc` that a request naming `name` (or none) runs.
pub fn select<'a>(doc: &'a ExecutableDocument, name: Option<&str>) -> Option<&'a OperationDefinition> {
    pick(doc.operations.iter().map(|(n, op)| (n.map(|n| n.as_str()), &op.node)), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_is_async_graphqls() {
        let doc = |q: &str| async_graphql::parser::parse_query(q).unwrap();
        let ty = |d: &ExecutableDocument, n: Option<&str>| select(d, n).map(|op| op.ty);
        use async_graphql::parser::types::OperationType::{Mutation, Query};
        let anonymous = doc("mutation { logout }");
        assert_eq!(ty(&anonymous, None), Some(Mutation));
        assert_eq!(ty(&anonymous, Some("M")), None, "an anonymous operation has no name to match");
        let one = doc("mutation M { logout }");
        assert_eq!((ty(&one, None), ty(&one, Some("M")), ty(&one, Some("X"))), (Some(Mutation), Some(Mutation), None));
        let two = doc("query Q { me { id } } mutation M { logout }");
        assert_eq!((ty(&two, Some("Q")), ty(&two, Some("M"))), (Some(Query), Some(Mutation)));
        assert_eq!(ty(&two, None), None, "two operations need a name");
    }
}
