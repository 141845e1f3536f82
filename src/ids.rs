//! Newtype ids and stored enums: a `StoreId` cannot be passed where a `StaffId` is
//! expected, and an enum stored as text is read and written as its type. All ids that
//! cross the wire are UUID v7 (time-ordered, so they index well).

/// A UUID as JSON Schema's `format: uuid` spells it (RFC 9562: 36 characters, hyphens
/// at 8-4-4-4-12). `Uuid::parse_str` also takes the simple, braced and URN forms.
pub fn hyphenated_uuid(raw: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::try_parse(raw)
        .ok()
        .filter(|_| raw.len() == 36)
        .ok_or_else(|| "must be a UUID, xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx".to_owned())
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
