//! The chain itself: regions, stores (ERP code, time zone, format, opening hours,
//! closure dates) and their staff. Read-mostly; written by `storeops seed` and, later,
//! by master-data integrations.

pub mod directory;
mod repo;
mod routes;
pub mod seed;
pub mod target;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use directory::{StaffBySubject, StoreDirectory};
pub use repo::count_closed;
pub use routes::{ScopedStore, router};
pub use target::Target;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StoreFormat {
    Hypermarket,
    Supermarket,
    Convenience,
    Express,
}

impl StoreFormat {
    pub const ALL: [StoreFormat; 4] = [
        Self::Hypermarket,
        Self::Supermarket,
        Self::Convenience,
        Self::Express,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hypermarket => "hypermarket",
            Self::Supermarket => "supermarket",
            Self::Convenience => "convenience",
            Self::Express => "express",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == raw)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    Associate,
    StoreManager,
}

/// Opening and closing time of one day, store-local `HH:MM` (`closes` may be `24:00`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DayHours {
    pub opens: String,
    pub closes: String,
}

/// Weekly opening hours; a missing day means closed that day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OpeningHours {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mon: Option<DayHours>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tue: Option<DayHours>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wed: Option<DayHours>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thu: Option<DayHours>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fri: Option<DayHours>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sat: Option<DayHours>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sun: Option<DayHours>,
}

impl OpeningHours {
    pub fn every_day(opens: &str, closes: &str) -> Self {
        let day = || {
            Some(DayHours {
                opens: opens.to_owned(),
                closes: closes.to_owned(),
            })
        };
        Self {
            mon: day(),
            tue: day(),
            wed: day(),
            thu: day(),
            fri: day(),
            sat: day(),
            sun: day(),
        }
    }
}

/// Adds the rules between this module's request fields to the OpenAPI document.
pub fn schema_rules(document: &mut serde_json::Value) {
    crate::input::rules::add_to_document::<Target>(document);
}
