//! The second factor's building blocks, below the flows that will use them: TOTP
//! codes (RFC 6238), the sealing of TOTP secrets at rest, and recovery codes. The flows, the schema and
//! the configuration (`MFA_ENCRYPTION_KEY`) come with the rest of the second-factor
//! work; these parts are complete and tested on their own.

pub mod recovery;
pub mod sealed;
pub mod totp;
