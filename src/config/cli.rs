//! The command line's shape: the global settings (`Config`), then an optional
//! subcommand for the operator.

use clap::{Parser, Subcommand, ValueEnum};

use super::Config;

/// The command line: global configuration, then an optional subcommand (`serve` when
/// none is given).
#[derive(Debug, Parser)]
#[command(name = "authgraph", version, about = "GraphQL accounts and sessions server")]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the GraphQL API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL) that the server serves.
    Schema,
    /// Manage accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Link the events not chained yet, then verify the chain (every kept event, or the
    /// newest --last): exits 1 and names the first event whose HMAC or link does not
    /// verify. Needs AUDIT_CHAIN_KEY (and AUDIT_CHAIN_KEY_PREVIOUS).
    Verify {
        #[arg(long)]
        last: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Delete sessions (and their refresh tokens), email tokens and sent or abandoned
    /// mail that ended more than SESSION_RETENTION ago, and rate-limit counts no window
    /// uses. The server also does this every ten minutes.
    Prune,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List accounts, oldest first, with their live sessions.
    List,
    /// End every session of an account: its access and refresh tokens stop working.
    RevokeSessions {
        username: String,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Remove an account's second factors, passkeys and recovery codes (lost devices)
    /// and end every session; its verified address gets a notice. The owner signs in
    /// with the password alone afterwards and may enrol again.
    ResetMfa {
        username: String,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Give an account the USER or ADMIN role: the way to make the first ADMIN (after
    /// that, an ADMIN may also use setUserRole). Unlike the API, this may demote the
    /// last ADMIN.
    SetRole {
        username: String,
        #[arg(value_enum, ignore_case = true)]
        role: RoleArg,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Ban an account: end every session now and refuse every sign-in (ACCOUNT_BANNED)
    /// until --until (an RFC 3339 time), or for good.
    Ban {
        username: String,
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift an account's ban.
    Unban {
        username: String,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Set an account's email address, unverified (a verification message is not sent:
    /// the user asks for one) or, with --verified, verified at once. Refused when
    /// another account has verified the address.
    SetEmail {
        username: String,
        address: String,
        #[arg(long)]
        verified: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum RoleArg {
    User,
    Admin,
}
