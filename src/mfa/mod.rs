//! The second factor's building blocks, below the flows that use them (`auth::second_factor`):
//! TOTP codes (RFC 6238), the sealing of TOTP secrets at rest, recovery codes, the QR
//! code of an enrolment, and the clock codes are checked against.

pub mod clock;
pub mod qr;
pub mod recovery;
pub mod sealed;
pub mod totp;
