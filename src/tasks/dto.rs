//! What the task routes take and answer: request bodies, queries and DTOs, kept apart
//! from the rows they are made from.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, PartialSchema, ToSchema};
use uuid::Uuid;

use super::{
    Priority, TaskItemState, TaskSource, TaskStatus,
    repo::{self, TaskEventRow, TaskItemRow, TaskRow},
};
use crate::{
    error::Problem,
    evidence::ContentType,
    ids::{CampaignId, EvidenceId, IngestId, StaffId, StoreId, TaskId, TaskKind, TemplateId},
    input::rules::{self, CrossFieldRules},
    templates::EvidenceRef,
};

/// A task as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskDto {
    pub id: TaskId,
    pub store_id: StoreId,
    pub kind: TaskKind,
    pub source: TaskSource,
    pub title: String,
    pub description: Option<String>,
    pub template_id: Option<TemplateId>,
    pub template_version: Option<i32>,
    pub campaign_id: Option<CampaignId>,
    pub status: TaskStatus,
    pub priority: Priority,
    pub assignee_id: Option<StaffId>,
    pub review_required: bool,
    pub due_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<Object>)]
    pub answers: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub evidence: Option<Value>,
    pub created_by: String,
    pub completed_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Same value as the ETag header.
    pub version: i32,
}

/// The 409 of a task transition: a `Problem` whose `current` is the task as it is now
/// (done, cancelled, or someone else's since the app last looked), so an app that was
/// offline shows the conflict instead of retrying. The server writes it as any problem
/// (`ApiError::ConflictWith`); this type states `current`'s shape for client generators.
pub struct TaskConflict;

impl utoipa::PartialSchema for TaskConflict {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{Ref, RefOr, schema::Schema};
        let mut schema = Problem::schema();
        if let RefOr::T(Schema::Object(problem)) = &mut schema {
            problem.description = Some(
                "A transition refused by the task's state (problem+json); `current` is the task \
                 as it is now."
                    .to_owned(),
            );
            problem.properties.insert(
                "current".to_owned(),
                RefOr::Ref(Ref::from_schema_name(TaskDto::name())),
            );
            problem.required.push("current".to_owned());
        }
        schema
    }
}

impl ToSchema for TaskConflict {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((TaskDto::name().into(), TaskDto::schema()));
        <TaskDto as ToSchema>::schemas(schemas);
        <Problem as ToSchema>::schemas(schemas);
    }
}

/// A task in the store task list; `GET /tasks/{id}` has the rest. The list writes it
/// with `summary_json` (byte for byte what this derive writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskSummaryDto {
    pub id: TaskId,
    pub store_id: StoreId,
    pub kind: TaskKind,
    pub source: TaskSource,
    pub title: String,
    pub status: TaskStatus,
    pub priority: Priority,
    pub assignee_id: Option<StaffId>,
    pub review_required: bool,
    pub due_at: DateTime<Utc>,
    pub template_id: Option<TemplateId>,
    pub campaign_id: Option<CampaignId>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Same value as the task's ETag.
    pub version: i32,
}

impl From<repo::TaskSummaryRow> for TaskSummaryDto {
    fn from(row: repo::TaskSummaryRow) -> Self {
        Self {
            kind: row.kind,
            source: row.source,
            status: row.status,
            priority: row.priority,
            id: row.id,
            store_id: row.store_id,
            title: row.title,
            assignee_id: row.assignee_id,
            review_required: row.review_required,
            due_at: row.due_at,
            template_id: row.template_id,
            campaign_id: row.campaign_id,
            completed_at: row.completed_at,
            version: row.row_version,
        }
    }
}

impl From<TaskRow> for TaskDto {
    fn from(row: TaskRow) -> Self {
        Self {
            kind: row.kind,
            source: row.source,
            status: row.status,
            priority: row.priority,
            id: row.id,
            store_id: row.store_id,
            title: row.title,
            description: row.description,
            template_id: row.template_id,
            template_version: row.template_version,
            campaign_id: row.campaign_id,
            assignee_id: row.assignee_id,
            review_required: row.review_required,
            due_at: row.due_at,
            expires_at: row.expires_at,
            answers: row.answers.map(|a| a.0),
            evidence: row.evidence.map(|e| e.0),
            created_by: row.created_by,
            completed_by: row.completed_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
            started_at: row.started_at,
            submitted_at: row.submitted_at,
            completed_at: row.completed_at,
            cancelled_at: row.cancelled_at,
            version: row.row_version,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskListQuery {
    /// Comma-separated statuses, e.g. `open,in_progress`.
    #[param(
        pattern = "^(open|in_progress|submitted|done|cancelled|expired)(,(open|in_progress|submitted|done|cancelled|expired))*$"
    )]
    pub status: Option<String>,
    /// Staff id of the assignee.
    #[param(value_type = Option<String>, format = Uuid)]
    pub assignee: Option<StaffId>,
    #[param(value_type = Option<TaskKind>)]
    pub kind: Option<String>,
    /// Only tasks due before this instant (RFC 3339, years 2000-2099).
    #[serde(default, deserialize_with = "crate::input::optional_instant")]
    #[param(pattern = "^20[0-9]{2}-")]
    pub due_before: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTaskBody {
    /// Required unless `template_id` gives one; 1-200 characters, not all blank.
    #[schema(
        max_length = 200,
        pattern = "^[^\\x00]*[^\\x00\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\x00]*$"
    )]
    pub title: Option<String>,
    #[schema(max_length = 4000, pattern = "^[^\\x00]*$")]
    pub description: Option<String>,
    /// Create from this template's current version.
    pub template_id: Option<TemplateId>,
    /// Default: the template's kind, else `adhoc`.
    pub kind: Option<TaskKind>,
    pub priority: Option<Priority>,
    pub assignee_id: Option<StaffId>,
    /// Default: now plus the template's due window, else 24 h. At most a year ahead.
    #[serde(default, deserialize_with = "crate::input::optional_instant")]
    #[schema(pattern = "^20[0-9]{2}-")]
    pub due_at: Option<DateTime<Utc>>,
    /// After `due_at`, at most a year after it.
    #[serde(default, deserialize_with = "crate::input::optional_instant")]
    #[schema(pattern = "^20[0-9]{2}-")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl CrossFieldRules for NewTaskBody {
    fn cross_field_rules() -> Vec<serde_json::Value> {
        vec![rules::any_given(&["title", "template_id"])]
    }
}

/// Distinguishes an absent field (keep) from `null` (clear).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskPatch {
    /// A staff id of the store, or `null` to unassign.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub assignee_id: Option<Option<StaffId>>,
    pub priority: Option<Priority>,
    /// At most a year ahead.
    #[serde(default, deserialize_with = "crate::input::optional_instant")]
    #[schema(pattern = "^20[0-9]{2}-")]
    pub due_at: Option<DateTime<Utc>>,
}

/// Answers by checklist key: true/false, a number, text, or a photo's evidence id.
fn answers_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::{
        Ref, RefOr,
        schema::{AnyOfBuilder, ObjectBuilder, Schema, Type},
    };
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[a-z0-9_]{1,64}$")),
        ))
        .additional_properties(Some(RefOr::T(Schema::AnyOf(
            AnyOfBuilder::new()
                .item(ObjectBuilder::new().schema_type(Type::Boolean))
                .item(ObjectBuilder::new().schema_type(Type::Number))
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^[^\\x00]*$")),
                )
                .item(Ref::from_schema_name("PhotoAnswer"))
                .build(),
        ))))
        .build()
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    /// Checklist answers by item key, validated against the task's template version.
    #[serde(default)]
    #[schema(schema_with = answers_schema)]
    pub answers: serde_json::Map<String, Value>,
    /// References to pictures hosted elsewhere, kept as sent (not photo answers: those
    /// are uploaded, `PhotoAnswer`).
    #[serde(default)]
    #[schema(max_items = 20)]
    pub evidence: Vec<EvidenceRef>,
    #[schema(max_length = 2000, pattern = "^[^\\x00]*$")]
    pub note: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    #[schema(max_length = 500, pattern = "^[^\\x00]*$")]
    pub reason: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskEventDto {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// created, started, submitted, completed, approved, sent_back, cancelled, updated, commented, ...
    pub kind: String,
    pub actor: String,
    #[schema(value_type = Object)]
    pub data: Value,
}

impl From<TaskEventRow> for TaskEventDto {
    fn from(e: TaskEventRow) -> Self {
        Self {
            id: e.id,
            occurred_at: e.occurred_at,
            kind: e.kind,
            actor: e.actor,
            data: e.data.0,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    pub cursor: Option<String>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// An item (SKU) of a relabel task, as the relabel app shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskItemDto {
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,64}$")]
    pub sku: String,
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,200}$")]
    pub name: String,
    /// The new shelf price as an exact decimal string, without trailing zeros
    /// (`"9.99"`, `"0.1"`, `"3"`): never a binary floating-point number.
    #[schema(pattern = "^-?[0-9]+(\\.[0-9]{1,4})?$", example = "9.99")]
    pub new_price: String,
    /// ISO 4217, e.g. `EUR`.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
    pub state: TaskItemState,
    /// The price batch (ingest) that superseded or closed this item; `null` while active.
    pub superseded_by: Option<IngestId>,
}

impl From<TaskItemRow> for TaskItemDto {
    fn from(row: TaskItemRow) -> Self {
        Self {
            sku: row.sku,
            name: row.name,
            new_price: row.new_price,
            currency: row.currency,
            state: row.state,
            superseded_by: row.superseded_by,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskItemsQuery {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    /// 1-2,000 characters, not all blank.
    #[schema(
        max_length = 2000,
        pattern = "^[^\\x00]*[^\\x00\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\x00]*$"
    )]
    pub body: String,
}

/// A photo the store app is about to upload.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEvidence {
    /// The checklist item (of type photo) the photo will answer.
    #[schema(pattern = "^[a-z0-9_]{1,64}$")]
    pub item_key: String,
    pub content_type: ContentType,
    /// The photo's exact size in bytes; the upload must be this size. The largest
    /// allowed is the server's `EVIDENCE_MAX_BYTES` (the served document states it).
    #[serde(deserialize_with = "crate::input::integer")]
    #[schema(minimum = 1, maximum = 15_728_640)]
    pub size_bytes: u64,
}

/// How to upload a granted photo: `method` the `url` with exactly `headers`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadDto {
    /// Always `PUT`.
    pub method: String,
    pub url: String,
    /// Send exactly these (they are signed).
    pub headers: std::collections::BTreeMap<String, String>,
}

/// A granted photo upload.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EvidenceGrantDto {
    /// Answer the photo item with `{"evidence_id": …}` once uploaded.
    pub evidence_id: EvidenceId,
    pub item_key: String,
    pub upload: UploadDto,
    /// The upload URL's expiry (at most 15 minutes from now).
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EvidenceQuery {
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1..=200 (default 50); larger values are rejected with 422.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// The `next_token` of the last page read; absent: a first sync.
    #[param(pattern = "^[A-Za-z0-9_-]{1,200}$")]
    pub since: Option<String>,
    /// Only work assigned to this staff member or to nobody (an associate's own view);
    /// a task assigned to someone else comes as removed, `reassigned`.
    pub assignee: Option<StaffId>,
    /// Page size, 1..=200 (default 100).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}
