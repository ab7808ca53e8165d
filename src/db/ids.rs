//! Ids that must not be confused have types of their own: a `UserId` where a
//! `SessionId` is expected is a compile error, not a query that finds nothing (or the
//! wrong row). Both are UUIDs in the database and in tokens; the Diesel conversions
//! live here once, the GraphQL `ID` ones in `graphql::types`.

use std::{fmt, str::FromStr};

use diesel::{
    deserialize::{self, FromSql, FromSqlRow},
    expression::AsExpression,
    pg::{Pg, PgValue},
    serialize::{self, Output, ToSql},
    sql_types,
};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, AsExpression, FromSqlRow,
            serde::Serialize, serde::Deserialize,
        )]
        #[diesel(sql_type = sql_types::Uuid)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new random id (the database makes the ids of new rows; tests and
            /// tools use this).
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }

        impl ToSql<sql_types::Uuid, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <Uuid as ToSql<sql_types::Uuid, Pg>>::to_sql(&self.0, out)
            }
        }

        impl FromSql<sql_types::Uuid, Pg> for $name {
            fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
                <Uuid as FromSql<sql_types::Uuid, Pg>>::from_sql(value).map(Self)
            }
        }
    };
}

uuid_id!(
    /// An account (`users.id`, a token's `sub`).
    UserId
);
uuid_id!(
    /// A signed-in device (`sessions.id`, a token's `sid`).
    SessionId
);
uuid_id!(
    /// A registered passkey (`passkeys.id`; not the authenticator's credential id).
    PasskeyId
);
uuid_id!(
    /// A passkey ceremony begun and not yet finished (`passkey_ceremonies.id`).
    CeremonyId
);
uuid_id!(
    /// An identity at another provider linked to an account (`identities.id`).
    IdentityId
);

/// The SHA-256 of a secret token (a refresh token, an email link token): what is
/// stored and looked up, never the token itself. A type of its own, so a token's text cannot be passed where its hash is
/// meant (which would store or search the secret).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HashedToken([u8; 32]);

impl HashedToken {
    pub fn of(token: &str) -> Self {
        use sha2::Digest;
        Self(sha2::Sha256::digest(token.as_bytes()).into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}
