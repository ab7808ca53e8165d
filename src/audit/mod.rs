//! The audit trail: every security-relevant change leaves one row, written by triggers
//! in the change's own transaction (migration `audit_trail`; the request's origin comes
//! from `db::change::Origin`), and the rows are chained here, afterwards, under a key the
//! database never sees.
//!
//! - `chain`: the canonical form of a row, its HMAC, the chainer (one at a time across
//!   instances, the newest link written to the log) and the verification that names the
//!   first row whose HMAC or link does not verify;
//! - `events`: reading the trail, an admin's and the owner's own view.
//!
//! Why chain afterwards: a chain is a total order, and ordering writers as they commit
//! would make every sign-in wait on one lock. Rows are instead inserted unchained (a
//! sign-in pays one insert) and linked in the order they became visible; until then
//! (a fraction of a second) a row is only as safe as the table.

pub mod chain;
pub mod events;

pub use chain::{ChainKeys, ChainStatus};
