//! The announcement API's wire types.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{AnnouncementStatus, Audience};
use crate::{
    ids::{AnnouncementId, RegionCode, StoreId},
    input::rules::{self, CrossFieldRules},
    stores::Target,
    tasks::Priority,
};

/// Most characters of an announcement's body.
pub const MAX_BODY: usize = 10_000;
/// Most characters of its title.
pub const MAX_TITLE: usize = 200;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAnnouncement {
    /// 1-200 characters, not all blank.
    #[schema(
        max_length = 200,
        pattern = "^[^\\x00]*[^\\x00\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\x00]*$"
    )]
    pub title: String,
    /// 1-10000 characters, not all blank.
    #[schema(
        max_length = 10000,
        pattern = "^[^\\x00]*[^\\x00\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\x00]*$"
    )]
    pub body: String,
    /// Default `normal`.
    pub priority: Option<Priority>,
    pub target: Target,
    /// Default `everyone`.
    pub audience: Option<Audience>,
    /// Whether staff must acknowledge it (reminders and escalation chase stores that
    /// have not). Default false.
    #[serde(default)]
    pub requires_ack: bool,
    /// Keep it as a draft: no store sees it until `POST …/publish`.
    #[serde(default)]
    pub draft: bool,
    /// When every store sees it (RFC 3339); default now...
    #[serde(default, deserialize_with = "crate::input::optional_instant")]
    #[schema(pattern = "^20[0-9]{2}-")]
    pub publish_at: Option<DateTime<Utc>>,
    /// ...or a wall-clock time applied in each store's own time zone.
    #[serde(default, deserialize_with = "crate::input::optional_local")]
    #[schema(schema_with = crate::input::local_schema)]
    pub publish_local: Option<NaiveDateTime>,
    /// When staff stop seeing it: after the publishing time, at most a year ahead.
    #[serde(default, deserialize_with = "crate::input::optional_instant")]
    #[schema(pattern = "^20[0-9]{2}-")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The announcement this one corrects: staff see the link both ways.
    pub supersedes: Option<AnnouncementId>,
}

impl CrossFieldRules for NewAnnouncement {
    fn cross_field_rules() -> Vec<serde_json::Value> {
        vec![rules::at_most_one_given(&["publish_at", "publish_local"])]
    }
}

/// Receipts across the stores reached, overall or in one region.
#[derive(Debug, Default, Clone, Serialize, ToSchema)]
pub struct Progress {
    /// Stores the announcement was delivered to.
    pub stores_targeted: i64,
    /// Stores whose staff may see it now.
    pub stores_reached: i64,
    /// Stores reached where at least one addressed staff member read it.
    pub stores_read: i64,
    /// Stores reached where at least one addressed staff member acknowledged it.
    pub stores_acknowledged: i64,
    /// `stores_read / stores_reached` (0 when none reached).
    pub read_ratio: f64,
    /// `stores_acknowledged / stores_reached` (0 when none reached).
    pub ack_ratio: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegionProgress {
    pub region: RegionCode,
    #[serde(flatten)]
    pub progress: Progress,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnnouncementDto {
    pub id: AnnouncementId,
    pub title: String,
    pub body: String,
    pub priority: Priority,
    pub target: Target,
    /// Set for a regional manager's announcement.
    pub region_scope: Option<RegionCode>,
    pub audience: Audience,
    pub requires_ack: bool,
    pub status: AnnouncementStatus,
    pub publish_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>, example = "2026-12-01T18:00:00")]
    pub publish_local: Option<NaiveDateTime>,
    pub expires_at: Option<DateTime<Utc>>,
    pub supersedes: Option<AnnouncementId>,
    /// The correction that replaced this one, once it exists.
    pub superseded_by: Option<AnnouncementId>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    /// When the workers last delivered it (again when stores opened since).
    pub delivered_at: Option<DateTime<Utc>>,
    /// Stores targeted, once the workers have delivered it.
    pub target_count: Option<i32>,
    pub progress: Progress,
    /// The same figures by region, by region code.
    pub regions: Vec<RegionProgress>,
}

/// One store's receipts for an announcement.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnnouncementStoreDto {
    pub store_id: StoreId,
    pub store_code: String,
    pub store_name: String,
    pub region: RegionCode,
    /// When the store's staff see it.
    pub visible_at: DateTime<Utc>,
    /// Staff members who read it (acknowledging counts as reading).
    pub read_by: i64,
    pub acknowledged_by: i64,
    /// Reminders sent: 1 the store, 2 escalated to the store and regional managers.
    pub reminder_level: i16,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnnouncementStoresQuery {
    /// Only stores where nobody acknowledged it yet.
    pub unacknowledged: Option<bool>,
    pub cursor: Option<String>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// An announcement as a store's staff member sees it, with their own receipt (read
/// straight from the staff list's query).
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct MyAnnouncementDto {
    pub id: AnnouncementId,
    pub title: String,
    pub body: String,
    pub priority: Priority,
    pub requires_ack: bool,
    /// When it became visible in this store.
    pub visible_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub supersedes: Option<AnnouncementId>,
    pub superseded_by: Option<AnnouncementId>,
    pub read_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MyAnnouncementsQuery {
    /// Only those the caller has not read.
    pub unread: Option<bool>,
    pub cursor: Option<String>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// The caller's receipt after reading or acknowledging.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptDto {
    pub announcement_id: AnnouncementId,
    pub store_id: StoreId,
    pub read_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
}
