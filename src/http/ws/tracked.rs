//! What the socket's parts share: the protocol's state as the input filter, the init
//! callback and the loop see it, and what `connection_init` established.

use std::collections::HashSet;

use tokio::time::Instant;

use super::close::Close;
use crate::events::sockets::Registration;

/// The socket's side of the protocol, shared by the input filter, the init callback
/// and the loop.
#[derive(Default)]
pub(super) struct Tracked {
    pub(super) initialised: bool,
    pub(super) active: HashSet<String>,
    pub(super) admitted: Option<Admitted>,
    /// Why init failed, to replace the protocol's generic close code.
    pub(super) refused: Option<Close>,
}

/// What `connection_init` established, for the loop.
pub(super) struct Admitted {
    pub(super) expires_at: Instant,
    pub(super) registration: Registration,
}
