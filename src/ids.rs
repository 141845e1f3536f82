//! Newtype ids and stored enums: a `StoreId` cannot be passed where a `StaffId` is
//! expected, and an enum stored as text is read and written as its type. All ids that
//! cross the wire are UUID v7 (time-ordered, so they index well).
//!
//! Every module's ids live here, so that a module names another's rows without
//! importing that module (the layers of docs/ARCHITECTURE.md).

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A UUID as JSON Schema's `format: uuid` spells it (RFC 9562: 36 characters, hyphens
/// at 8-4-4-4-12). `Uuid::parse_str` also takes the simple, braced and URN forms.
pub fn hyphenated_uuid(raw: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::try_parse(raw)
        .ok()
        .filter(|_| raw.len() == 36)
        .ok_or_else(|| "must be a UUID, xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx".to_owned())
}

/// A time-ordered (v7-layout) UUID that is a pure function of `(kind, n)`: the demo
/// chain's ids (`storeops seed`), the same on every run.
pub fn seeded_uuid(kind: u8, n: u64) -> uuid::Uuid {
    // 2026-01-01T00:00:00Z, plus n ms so ids sort in creation order.
    const BASE_MS: u64 = 1_767_225_600_000;
    let mut x = (u64::from(kind) << 56) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut random = [0u8; 10];
    for chunk in random.chunks_mut(8) {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let bytes = z.to_be_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    uuid::Builder::from_unix_timestamp_millis(BASE_MS + n, &random).into_uuid()
}

/// Declares a UUID newtype that serialises, binds to SQL and documents as a plain UUID,
/// and reads only the spelling the document states ([`hyphenated_uuid`]).
#[macro_export]
macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, sqlx::Type, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A fresh time-ordered id.
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::ids::hyphenated_uuid(s).map(Self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <String as serde::Deserialize>::deserialize(d)?;
                raw.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Maps a stored string to an enum; a mismatch is a bug (the database constrains it).
/// Exported: the other modules' stored enums use it too.
#[macro_export]
macro_rules! string_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }

            pub fn parse(raw: &str) -> Result<Self, $crate::error::ApiError> {
                Self::from_param(raw).ok_or_else(|| {
                    $crate::error::ApiError::Internal(anyhow::anyhow!(
                        concat!("unknown ", stringify!($ty), " {:?} in the database"),
                        raw
                    ))
                })
            }

            pub fn from_param(raw: &str) -> Option<Self> {
                Self::from_bytes(raw.as_bytes())
            }

            fn from_bytes(raw: &[u8]) -> Option<Self> {
                match raw {
                    $(x if x == $text.as_bytes() => Some($ty::$variant),)+
                    _ => None,
                }
            }
        }

        /// Read straight from a text column: no `String` per row on hot lists.
        impl sqlx::Type<sqlx::Postgres> for $ty {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        /// Bound as its text.
        impl<'q> sqlx::Encode<'q, sqlx::Postgres> for $ty {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<'q, sqlx::Postgres>>::encode_by_ref(&self.as_str(), buf)
            }
        }

        impl sqlx::postgres::PgHasArrayType for $ty {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $ty {
            fn decode(
                value: sqlx::postgres::PgValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                // Matched as bytes: a known value is valid UTF-8 without checking it.
                let raw = value.as_bytes()?;
                Self::from_bytes(raw).ok_or_else(|| {
                    format!(
                        concat!("unknown ", stringify!($ty), " {:?} in the database"),
                        String::from_utf8_lossy(raw)
                    )
                    .into()
                })
            }
        }
    };
}

// ---------------------------------------------------------------- the ids

uuid_id!(
    /// A store, as the API returns it and as JWT `store_id` claims name it.
    StoreId
);
uuid_id!(RegionId);
uuid_id!(StaffId);

/// Declares a code type: a string that only `valid` spellings become, documented with
/// the same `pattern`, bound to SQL as text.
macro_rules! code_type {
    ($(#[$meta:meta])* $name:ident, pattern = $pattern:literal, valid = $valid:expr, message = $message:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
        #[serde(try_from = "String", into = "String")]
        #[sqlx(transparent)]
        #[schema(value_type = String, pattern = $pattern)]
        pub struct $name(String);

        impl $name {
            /// The documented shape (the schema's `pattern`).
            pub const PATTERN: &str = $pattern;

            pub fn parse(raw: &str) -> Result<Self, String> {
                let valid: fn(&[u8]) -> bool = $valid;
                if valid(raw.as_bytes()) {
                    Ok(Self(raw.to_owned()))
                } else {
                    Err($message.to_owned())
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(code: $name) -> Self {
                code.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

code_type!(
    /// A region's code (`moscow`, `far-east`): lowercase letters, digits and dashes.
    RegionCode,
    pattern = "^[a-z0-9][a-z0-9-]{1,31}$",
    valid = |b| {
        (2..=32).contains(&b.len())
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
    },
    message = "must be 2-32 lowercase letters, digits or dashes"
);

code_type!(
    /// A store's ERP code (`MSK-0001`), the natural key integrations and HQ name stores
    /// by: what the `stores_code_format` constraint admits.
    StoreCode,
    pattern = "^[A-Z0-9][A-Z0-9-]{1,31}$",
    valid = |b| {
        (2..=32).contains(&b.len())
            && b.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
    },
    message = "must be 2-32 capital letters, digits or dashes, not starting with a dash"
);

uuid_id!(TaskId);

/// The kinds of store task. Here rather than in `tasks`: templates name a kind, and
/// templates sit below tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Adhoc,
    Checklist,
    PriceRelabel,
    Receiving,
    Restock,
}

crate::string_enum!(TaskKind {
    Adhoc => "adhoc",
    Checklist => "checklist",
    PriceRelabel => "price_relabel",
    Receiving => "receiving",
    Restock => "restock",
});

uuid_id!(TemplateId);
uuid_id!(IngestId);
uuid_id!(WebhookId);
uuid_id!(CampaignId);
uuid_id!(
    /// A notice to many stores, read and acknowledged by their staff.
    AnnouncementId
);
uuid_id!(
    /// A photo: granted an upload, then attached to its task's checklist answer.
    EvidenceId
);

#[cfg(test)]
mod code_tests {
    use super::{RegionCode, StoreCode};

    /// The documented pattern and the server's check agree on every sample.
    #[test]
    fn codes_accept_exactly_what_their_patterns_say() {
        let samples = [
            "moscow",
            "far-east",
            "MSK-0001",
            "A1",
            "a",
            "-a",
            "a-",
            "ab_c",
            "AB c",
            "",
            "x\u{0}y",
            "Ж1",
            "0123456789012345678901234567890123",
            "01234567890123456789012345678901",
        ];
        let region = regex::Regex::new(RegionCode::PATTERN).expect("pattern");
        let store = regex::Regex::new(StoreCode::PATTERN).expect("pattern");
        for sample in samples {
            assert_eq!(
                RegionCode::parse(sample).is_ok(),
                region.is_match(sample),
                "{sample:?}"
            );
            assert_eq!(
                StoreCode::parse(sample).is_ok(),
                store.is_match(sample),
                "{sample:?}"
            );
        }
    }
}
