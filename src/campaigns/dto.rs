//! The campaign API's wire types.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::CampaignId;
use crate::{
    ids::{RegionCode, StoreId, TaskId, TaskKind, TemplateId},
    input::rules::{self, CrossFieldRules},
    stores::Target,
    tasks::{Priority, TaskStatus},
};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    /// Required unless `template_id` gives one.
    #[schema(
        max_length = 200,
        pattern = "^[^\\x00]*[^\\x00\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\x00]*$"
    )]
    pub title: Option<String>,
    #[schema(pattern = "^[^\\x00]*$")]
    pub description: Option<String>,
    pub template_id: Option<TemplateId>,
    pub kind: Option<TaskKind>,
    pub priority: Option<Priority>,
    pub target: Target,
    /// One instant for every store (RFC 3339)...
    #[serde(default, deserialize_with = "crate::input::optional_instant")]
    #[schema(pattern = "^20[0-9]{2}-")]
    pub due_at: Option<DateTime<Utc>>,
    /// ...or a wall-clock time applied in each store's own time zone.
    #[serde(default, deserialize_with = "crate::input::optional_local")]
    #[schema(schema_with = crate::input::local_schema)]
    pub due_local: Option<NaiveDateTime>,
}

impl CrossFieldRules for NewCampaign {
    fn cross_field_rules() -> Vec<serde_json::Value> {
        vec![
            rules::any_given(&["title", "template_id"]),
            rules::one_given(&["due_at", "due_local"]),
        ]
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignAccepted {
    pub id: CampaignId,
    pub status: String,
    /// Poll this for progress.
    pub status_url: String,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct TaskCounts {
    pub total: i64,
    pub open: i64,
    pub in_progress: i64,
    pub submitted: i64,
    pub done: i64,
    pub cancelled: i64,
    pub expired: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignDto {
    pub id: CampaignId,
    pub title: String,
    pub kind: TaskKind,
    pub target: Target,
    /// Set for a regional manager's campaign.
    pub region_scope: Option<RegionCode>,
    /// `pending` until the worker has fanned it out, then `active`.
    pub status: String,
    pub target_count: Option<i32>,
    pub tasks: TaskCounts,
    /// Done tasks over all tasks (0 when there are none yet).
    pub completion_rate: f64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub fanned_out_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignStoreDto {
    pub store_id: StoreId,
    pub store_code: String,
    pub store_name: String,
    pub task_id: TaskId,
    pub status: TaskStatus,
    pub due_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CampaignStoresQuery {
    pub cursor: Option<String>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}
