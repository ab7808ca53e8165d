//! Which operation of a document a request runs, for the extensions that measure or
//! label it (the limits and `observe`).

use std::sync::Mutex;

use async_graphql::{
    Request,
    parser::types::{DocumentOperations, ExecutableDocument, OperationDefinition},
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

/// The operation named `name`, or the only one; `None` when there is no such
/// operation (validation then says so).
pub(crate) fn select<'a>(doc: &'a ExecutableDocument, name: Option<&str>) -> Option<&'a OperationDefinition> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| &op.node),
        // A lone named operation may be run without naming it.
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next().map(|op| &op.node),
        (DocumentOperations::Multiple(_), None) => None,
    }
}
