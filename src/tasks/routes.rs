//! Task routes: the store task list, create (with Idempotency-Key), read (ETag),
//! PATCH (If-Match), transitions, comments and history.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    Action, Priority, TaskId, TaskKind, TaskSource, TaskStatus, idempotency, metrics,
    repo::{self, ListFilter, NewTask, TaskChanges, TaskRow, TransitionWrite},
    transition,
};
use crate::{
    auth::{Access, Principal},
    error::{ApiError, FieldError, Problem},
    events::outbox,
    http::{
        AppState,
        extract::{Json, JsonBytes, Path, Query},
        pagination::{Page, PageRequest},
    },
    stores::{RegionCode, ScopedStore, StaffId, StoreId},
    templates::{self, EvidenceRef, TemplateId},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_store_tasks, create_task))
        .routes(routes!(get_task, patch_task))
        .routes(routes!(start_task))
        .routes(routes!(complete_task))
        .routes(routes!(approve_task))
        .routes(routes!(redo_task))
        .routes(routes!(cancel_task))
        .routes(routes!(task_history))
        .routes(routes!(add_comment))
}

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
    pub campaign_id: Option<Uuid>,
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
    pub campaign_id: Option<Uuid>,
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

impl TryFrom<TaskRow> for TaskDto {
    type Error = ApiError;

    fn try_from(row: TaskRow) -> Result<Self, ApiError> {
        Ok(Self {
            kind: TaskKind::parse(&row.kind)?,
            source: TaskSource::parse(&row.source)?,
            status: TaskStatus::parse(&row.status)?,
            priority: Priority::parse(&row.priority)?,
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
        })
    }
}

/// The task with its ETag header.
fn with_etag(status: StatusCode, task: TaskDto) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", task.version)).ok();
    let mut response = (status, Json(task)).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

// ---------------------------------------------------------------- permissions

/// The caller's staff id, when their token's `sub` is one (staff tokens).
fn staff_id(principal: &Principal) -> Option<StaffId> {
    principal.subject.parse().ok().map(StaffId)
}

/// Read scope; outside it a task does not exist (404), so ids cannot be probed.
fn ensure_readable(principal: &Principal, task: &TaskRow) -> Result<(), ApiError> {
    let region =
        RegionCode::parse(&task.region).map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
    principal
        .ensure_store_readable(task.store_id, &region)
        .map_err(|_| ApiError::NotFound(format!("task {} does not exist", task.id)))
}

/// Store managers and HQ manage tasks: create, assign, approve, redo, cancel.
fn ensure_manager(principal: &Principal) -> Result<(), ApiError> {
    match principal.access {
        Access::StoreManager { .. } | Access::Hq => Ok(()),
        _ => Err(ApiError::Forbidden(
            "only the store's manager or HQ may do this".to_owned(),
        )),
    }
}

/// Associates work on tasks assigned to them or to nobody; managers and HQ on any.
fn ensure_worker(principal: &Principal, task: &TaskRow) -> Result<(), ApiError> {
    match principal.access {
        Access::StoreManager { .. } | Access::Hq => Ok(()),
        Access::Associate { .. } => match task.assignee_id {
            None => Ok(()),
            Some(assignee) if Some(assignee) == staff_id(principal) => Ok(()),
            Some(_) => Err(ApiError::Forbidden(
                "this task is assigned to someone else".to_owned(),
            )),
        },
        _ => Err(ApiError::Forbidden(
            "only store staff and HQ work on tasks".to_owned(),
        )),
    }
}

/// Loads a task for reading, enforcing scope.
async fn readable_task(
    conn: &mut PgConnection,
    principal: &Principal,
    id: TaskId,
    lock: bool,
) -> Result<TaskRow, ApiError> {
    let task = repo::find(conn, id, lock)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {id} does not exist")))?;
    ensure_readable(principal, &task)?;
    Ok(task)
}

// ---------------------------------------------------------------- list

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskListQuery {
    /// Comma-separated statuses, e.g. `open,in_progress`.
    pub status: Option<String>,
    /// Staff id of the assignee.
    pub assignee: Option<Uuid>,
    pub kind: Option<String>,
    /// Only tasks due before this instant (RFC 3339).
    pub due_before: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    /// 1..=200, default 50.
    pub limit: Option<u32>,
}

/// A store's tasks by due time: the hottest read.
#[utoipa::path(
    get, path = "/stores/{store_id}/tasks", tag = "tasks",
    params(("store_id" = StoreId, Path, description = "The store's id"), TaskListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<TaskSummaryDto>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_store_tasks(
    ScopedStore { store, .. }: ScopedStore,
    State(db): State<PgPool>,
    Query(query): Query<TaskListQuery>,
) -> Result<JsonBytes, ApiError> {
    let page = PageRequest::<(DateTime<Utc>, TaskId)>::parse(query.cursor.as_deref(), query.limit)?;
    let mut errors = Vec::new();
    let statuses = query.status.as_deref().map(|list| {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .filter_map(|s| match TaskStatus::from_param(s) {
                Some(status) => Some(status.as_str().to_owned()),
                None => {
                    errors.push(FieldError::new("status", format!("unknown status {s:?}")));
                    None
                }
            })
            .collect::<Vec<_>>()
    });
    if let Some(kind) = query.kind.as_deref()
        && TaskKind::from_param(kind).is_none()
    {
        errors.push(FieldError::new("kind", format!("unknown kind {kind:?}")));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let filter = ListFilter {
        statuses,
        assignee: query.assignee.map(StaffId),
        kind: query.kind,
        due_before: query.due_before,
    };
    let rows = repo::list_for_store(&db, store.id, &filter, page.after, page.fetch_limit()).await?;
    let page = page
        .page(rows, |row| (row.due_at, row.id))
        .map(TaskSummaryDto::from);
    Ok(JsonBytes(super::summary_json::page(&page)))
}

// ---------------------------------------------------------------- create

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTaskBody {
    /// Required unless `template_id` gives one.
    pub title: Option<String>,
    pub description: Option<String>,
    /// Create from this template's current version.
    pub template_id: Option<TemplateId>,
    /// Default: the template's kind, else `adhoc`.
    pub kind: Option<TaskKind>,
    pub priority: Option<Priority>,
    pub assignee_id: Option<StaffId>,
    /// Default: now plus the template's due window, else 24 h.
    pub due_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Create a task in a store (store manager, HQ). Honours `Idempotency-Key`.
#[utoipa::path(
    post, path = "/stores/{store_id}/tasks", tag = "tasks",
    params(
        ("store_id" = StoreId, Path, description = "The store's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same request"),
    ),
    request_body = NewTaskBody,
    security(("bearer" = [])),
    responses(
        (status = 201, body = TaskDto, headers(("ETag" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_task(
    ScopedStore { principal, store }: ScopedStore,
    State(db): State<PgPool>,
    headers: HeaderMap,
    Json(body): Json<NewTaskBody>,
) -> Result<Response, ApiError> {
    ensure_manager(&principal)?;
    let key = idempotency::key(&headers)?;
    let mut tx = db.begin().await?;
    if let Some(key) = &key {
        let fingerprint =
            idempotency::fingerprint(&format!("POST /stores/{}/tasks", store.id), &body);
        if let idempotency::Claim::Replay(status, response) =
            idempotency::claim(&mut tx, &principal.subject, key, &fingerprint).await?
        {
            let task: TaskDto =
                serde_json::from_value(response).map_err(|e| ApiError::Internal(e.into()))?;
            return Ok(with_etag(status, task));
        }
    }

    let mut errors = Vec::new();
    let template = match body.template_id {
        Some(id) => {
            let found = templates::find_version(&mut tx, id, None).await?;
            if found.is_none() {
                errors.push(FieldError::new("template_id", "no such template"));
            }
            found
        }
        None => None,
    };
    let title = body
        .title
        .as_deref()
        .map(str::trim)
        .map(str::to_owned)
        .or_else(|| template.as_ref().map(|t| t.title.clone()))
        .unwrap_or_default();
    if !(1..=200).contains(&title.chars().count()) {
        errors.push(FieldError::new(
            "title",
            "is required (1-200 characters) unless a template gives one",
        ));
    }
    let description = body
        .description
        .or_else(|| template.as_ref().and_then(|t| t.description.clone()));
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 4000)
    {
        errors.push(FieldError::new(
            "description",
            "must be at most 4000 characters",
        ));
    }
    let kind = match (body.kind, &template) {
        (Some(kind), _) => kind,
        (None, Some(t)) => TaskKind::parse(&t.kind)?,
        (None, None) => TaskKind::Adhoc,
    };
    let now = Utc::now();
    let window = template
        .as_ref()
        .map_or(1440, |t| i64::from(t.due_window_minutes));
    let due_at = body.due_at.unwrap_or(now + Duration::minutes(window));
    if due_at > now + Duration::days(366) {
        errors.push(FieldError::new("due_at", "must be within a year"));
    }
    if let Some(expires) = body.expires_at
        && expires <= due_at
    {
        errors.push(FieldError::new("expires_at", "must be after due_at"));
    }
    if let Some(assignee) = body.assignee_id
        && !repo::staff_in_store(&mut tx, assignee, store.id).await?
    {
        errors.push(FieldError::new(
            "assignee_id",
            "is not active staff of this store",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let row = repo::insert(
        &mut tx,
        &NewTask {
            store_id: store.id,
            kind: kind.as_str(),
            source: TaskSource::Manual.as_str(),
            title: &title,
            description: description.as_deref(),
            template: template.as_ref().map(|t| (t.id, t.version)),
            priority: body.priority.unwrap_or(Priority::Normal).as_str(),
            assignee_id: body.assignee_id,
            review_required: template.as_ref().is_some_and(|t| t.review_required),
            due_at,
            expires_at: body.expires_at,
            created_by: &principal.subject,
        },
    )
    .await?;
    let task = TaskDto::try_from(row)?;
    if let Some(key) = &key {
        idempotency::remember(&mut tx, &principal.subject, key, StatusCode::CREATED, &task).await?;
    }
    tx.commit().await?;
    metrics::CREATED
        .with_label_values(&[task.kind.as_str(), TaskSource::Manual.as_str()])
        .inc();
    Ok(with_etag(StatusCode::CREATED, task))
}

// ---------------------------------------------------------------- read and patch

/// One task, with its ETag.
#[utoipa::path(
    get, path = "/tasks/{task_id}", tag = "tasks",
    params(("task_id" = TaskId, Path, description = "The task's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TaskDto, headers(("ETag" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_task(
    principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<TaskId>,
) -> Result<Response, ApiError> {
    let mut conn = db.acquire().await?;
    let task = readable_task(&mut conn, &principal, id, false).await?;
    Ok(with_etag(StatusCode::OK, task.try_into()?))
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
    pub due_at: Option<DateTime<Utc>>,
}

/// The row version an `If-Match` header names (`"3"`, `W/"3"` or `*`).
fn if_match(headers: &HeaderMap) -> Result<Option<Option<i32>>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(Some(None));
    }
    let version = text
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i32>()
        .map_err(|_| {
            ApiError::PreconditionFailed("If-Match does not name a version of this task".to_owned())
        })?;
    Ok(Some(Some(version)))
}

fn check_version(task: &TaskRow, expected: Option<Option<i32>>) -> Result<(), ApiError> {
    match expected {
        Some(Some(version)) if version != task.row_version => {
            Err(ApiError::PreconditionFailed(format!(
                "the task changed (now version {}); reload it and retry",
                task.row_version
            )))
        }
        _ => Ok(()),
    }
}

/// Assign, reprioritise or reschedule (store manager, HQ). Needs `If-Match`.
#[utoipa::path(
    patch, path = "/tasks/{task_id}", tag = "tasks",
    params(
        ("task_id" = TaskId, Path, description = "The task's id"),
        ("If-Match" = String, Header, description = "The ETag this change is based on"),
    ),
    request_body = TaskPatch,
    security(("bearer" = [])),
    responses(
        (status = 200, body = TaskDto, headers(("ETag" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 428, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn patch_task(
    principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<TaskId>,
    headers: HeaderMap,
    Json(patch): Json<TaskPatch>,
) -> Result<Response, ApiError> {
    let mut tx = db.begin().await?;
    let task = readable_task(&mut tx, &principal, id, true).await?;
    ensure_manager(&principal)?;
    let expected = if_match(&headers)?;
    if expected.is_none() {
        return Err(ApiError::PreconditionRequired(
            "send If-Match with the task's ETag so concurrent changes are not lost".to_owned(),
        ));
    }
    check_version(&task, expected)?;
    let status = TaskStatus::parse(&task.status)?;
    if matches!(
        status,
        TaskStatus::Done | TaskStatus::Cancelled | TaskStatus::Expired
    ) {
        return Err(ApiError::Conflict(format!(
            "a {} task cannot be changed",
            status.as_str()
        )));
    }
    let mut errors = Vec::new();
    if let Some(Some(assignee)) = patch.assignee_id
        && !repo::staff_in_store(&mut tx, assignee, task.store_id).await?
    {
        errors.push(FieldError::new(
            "assignee_id",
            "is not active staff of this store",
        ));
    }
    if patch
        .due_at
        .is_some_and(|d| d > Utc::now() + Duration::days(366))
    {
        errors.push(FieldError::new("due_at", "must be within a year"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let changes = TaskChanges {
        assignee: patch.assignee_id,
        priority: patch.priority.map(|p| p.as_str().to_owned()),
        due_at: patch.due_at,
    };
    repo::update(&mut tx, id, &changes).await?;
    let updated = repo::find(&mut tx, id, false)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {id}")))?;
    repo::record(
        &mut tx,
        &updated,
        "updated",
        &principal.subject,
        serde_json::json!({
            "assignee_id": changes.assignee.map(|a| a.map(|s| s.0)),
            "priority": changes.priority,
            "due_at": changes.due_at,
        }),
    )
    .await?;
    outbox::enqueue(&mut tx, "task.updated", &repo::event_payload(&updated)).await?;
    tx.commit().await?;
    Ok(with_etag(StatusCode::OK, updated.try_into()?))
}

// ---------------------------------------------------------------- transitions

/// Parses an optional JSON body: empty means defaults.
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.contains("+json"));
    if !json {
        return Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: application/json".to_owned(),
        ));
    }
    axum::Json::<T>::from_bytes(body)
        .map(|j| j.0)
        .map_err(ApiError::from)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    /// Checklist answers by item key, validated against the task's template version.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub answers: serde_json::Map<String, Value>,
    /// References to evidence (photos) stored elsewhere.
    #[serde(default)]
    pub evidence: Vec<EvidenceRef>,
    pub note: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    pub reason: Option<String>,
}

struct TransitionRequest {
    action: Action,
    answers: Option<Value>,
    evidence: Option<Value>,
    detail: Value,
}

/// The one way a task changes status: lock, check scope and permission, check the
/// transition table and If-Match, write status, audit event and outbox event together.
async fn apply(
    db: &PgPool,
    principal: &Principal,
    id: TaskId,
    headers: &HeaderMap,
    request: TransitionRequest,
) -> Result<Response, ApiError> {
    let mut tx = db.begin().await?;
    let task = readable_task(&mut tx, principal, id, true).await?;
    match request.action {
        Action::Start | Action::Complete => ensure_worker(principal, &task)?,
        Action::Approve | Action::Redo | Action::Cancel => ensure_manager(principal)?,
    }
    let status = TaskStatus::parse(&task.status)?;
    let (from, to) = transition(request.action, task.review_required);
    if !from.contains(&status) {
        return Err(ApiError::Conflict(format!(
            "cannot {} a task that is {}",
            request.action.verb(),
            status.as_str()
        )));
    }
    check_version(&task, if_match(headers)?)?;
    if request.action == Action::Complete {
        validate_completion(&mut tx, &task, &request).await?;
    }
    repo::set_status(
        &mut tx,
        id,
        to,
        &TransitionWrite {
            answers: request.answers,
            evidence: request.evidence,
            actor: principal.subject.clone(),
        },
    )
    .await?;
    let updated = repo::find(&mut tx, id, false)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {id}")))?;
    let (recorded, routing_key) = request.action.recorded_as(to);
    repo::record(
        &mut tx,
        &updated,
        recorded,
        &principal.subject,
        request.detail,
    )
    .await?;
    outbox::enqueue(&mut tx, routing_key, &repo::event_payload(&updated)).await?;
    tx.commit().await?;
    if to == TaskStatus::Done
        && let Some(completed_at) = updated.completed_at
    {
        let on_time = if completed_at <= updated.due_at {
            "true"
        } else {
            "false"
        };
        metrics::COMPLETED
            .with_label_values(&[updated.kind.as_str(), on_time])
            .inc();
        metrics::COMPLETION_SECONDS
            .with_label_values(&[updated.kind.as_str()])
            .observe((completed_at - updated.created_at).num_milliseconds() as f64 / 1000.0);
    }
    Ok(with_etag(StatusCode::OK, updated.try_into()?))
}

/// Answers against the template version the task was created from, evidence shapes.
async fn validate_completion(
    conn: &mut PgConnection,
    task: &TaskRow,
    request: &TransitionRequest,
) -> Result<(), ApiError> {
    {
        let mut errors = Vec::new();
        let answers = request
            .answers
            .as_ref()
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        match (task.template_id, task.template_version) {
            (Some(template), Some(version)) => {
                let template = templates::find_version(conn, template, Some(version))
                    .await?
                    .ok_or_else(|| {
                        ApiError::Internal(anyhow::anyhow!(
                            "task {} lost its template version",
                            task.id
                        ))
                    })?;
                templates::validate_answers(&template.checklist.0, &answers, &mut errors);
            }
            _ => {
                for key in answers.keys() {
                    errors.push(FieldError::new(
                        format!("answers.{key}"),
                        "this task has no checklist",
                    ));
                }
            }
        }
        if let Some(evidence) = request.evidence.as_ref().and_then(Value::as_array) {
            if evidence.len() > 20 {
                errors.push(FieldError::new("evidence", "at most 20 references"));
            }
            for (i, item) in evidence.iter().enumerate() {
                match serde_json::from_value::<EvidenceRef>(item.clone()) {
                    Ok(reference) => reference.validate(&format!("evidence[{i}]"), &mut errors),
                    Err(e) => errors.push(FieldError::new(format!("evidence[{i}]"), e.to_string())),
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(errors))
        }
    }
}

fn reason(body: ReasonBody) -> Result<Value, ApiError> {
    let reason = body
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(ApiError::validation(
            "reason",
            "must be at most 500 characters",
        ));
    }
    Ok(serde_json::json!({ "reason": reason }))
}

macro_rules! transition_route {
    ($name:ident, $path:literal, $action:expr, $body:ty, $summary:literal, $make:expr) => {
        #[doc = $summary]
        #[utoipa::path(
            post, path = $path, tag = "tasks",
            params(
                ("task_id" = TaskId, Path, description = "The task's id"),
                ("If-Match" = Option<String>, Header, description = "Refuse (412) if the task changed since this ETag"),
            ),
            request_body(content = Option<$body>),
            security(("bearer" = [])),
            responses(
                (status = 200, body = TaskDto, headers(("ETag" = String))),
                (status = 400, body = Problem, content_type = "application/problem+json"),
                (status = 401, body = Problem, content_type = "application/problem+json"),
                (status = 403, body = Problem, content_type = "application/problem+json"),
                (status = 404, body = Problem, content_type = "application/problem+json"),
                (status = 409, body = Problem, content_type = "application/problem+json", description = "Illegal in the task's current status"),
                (status = 412, body = Problem, content_type = "application/problem+json"),
                (status = 415, body = Problem, content_type = "application/problem+json"),
                (status = 422, body = Problem, content_type = "application/problem+json"),
            )
        )]
        async fn $name(
            principal: Principal,
            State(db): State<PgPool>,
            Path(id): Path<TaskId>,
            headers: HeaderMap,
            body: Bytes,
        ) -> Result<Response, ApiError> {
            let body: $body = optional_body(&headers, &body)?;
            let make: fn($body) -> Result<TransitionRequest, ApiError> = $make;
            let request = make(body)?;
            apply(&db, &principal, id, &headers, TransitionRequest { action: $action, ..request }).await
        }
    };
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

fn plain(_: EmptyBody) -> Result<TransitionRequest, ApiError> {
    Ok(TransitionRequest {
        action: Action::Start,
        answers: None,
        evidence: None,
        detail: serde_json::json!({}),
    })
}

fn with_reason(body: ReasonBody) -> Result<TransitionRequest, ApiError> {
    Ok(TransitionRequest {
        action: Action::Cancel,
        answers: None,
        evidence: None,
        detail: reason(body)?,
    })
}

fn completion(body: CompleteBody) -> Result<TransitionRequest, ApiError> {
    if body.note.as_ref().is_some_and(|n| n.chars().count() > 2000) {
        return Err(ApiError::validation(
            "note",
            "must be at most 2000 characters",
        ));
    }
    let evidence =
        serde_json::to_value(&body.evidence).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(TransitionRequest {
        action: Action::Complete,
        detail: serde_json::json!({ "note": body.note, "evidence_count": body.evidence.len() }),
        answers: Some(Value::Object(body.answers)),
        evidence: Some(evidence),
    })
}

transition_route!(
    start_task,
    "/tasks/{task_id}/start",
    Action::Start,
    EmptyBody,
    "Start working on a task.",
    plain
);
transition_route!(
    complete_task,
    "/tasks/{task_id}/complete",
    Action::Complete,
    CompleteBody,
    "Complete a task with checklist answers and evidence; goes to review when its template requires it.",
    completion
);
transition_route!(
    approve_task,
    "/tasks/{task_id}/approve",
    Action::Approve,
    EmptyBody,
    "Approve submitted work (store manager, HQ).",
    plain
);
transition_route!(
    redo_task,
    "/tasks/{task_id}/redo",
    Action::Redo,
    ReasonBody,
    "Send submitted work back (store manager, HQ).",
    with_reason
);
transition_route!(
    cancel_task,
    "/tasks/{task_id}/cancel",
    Action::Cancel,
    ReasonBody,
    "Cancel a task (store manager, HQ).",
    with_reason
);

// ---------------------------------------------------------------- history and comments

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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    pub cursor: Option<String>,
    /// 1..=200, default 50.
    pub limit: Option<u32>,
}

/// The task's audit trail, oldest first.
#[utoipa::path(
    get, path = "/tasks/{task_id}/history", tag = "tasks",
    params(("task_id" = TaskId, Path, description = "The task's id"), HistoryQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<TaskEventDto>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn task_history(
    principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<TaskId>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Page<TaskEventDto>>, ApiError> {
    let page = PageRequest::<(DateTime<Utc>, Uuid)>::parse(query.cursor.as_deref(), query.limit)?;
    {
        let mut conn = db.acquire().await?;
        readable_task(&mut conn, &principal, id, false).await?;
    }
    let rows = repo::history(&db, id, page.after, page.fetch_limit()).await?;
    Ok(Json(page.page(rows, |e| (e.occurred_at, e.id)).map(|e| {
        TaskEventDto {
            id: e.id,
            occurred_at: e.occurred_at,
            kind: e.kind,
            actor: e.actor,
            data: e.data.0,
        }
    })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    /// 1-2,000 characters.
    pub body: String,
}

/// Comment on a task (anyone who can see it).
#[utoipa::path(
    post, path = "/tasks/{task_id}/comments", tag = "tasks",
    params(("task_id" = TaskId, Path, description = "The task's id")),
    request_body = NewComment,
    security(("bearer" = [])),
    responses(
        (status = 201, body = TaskEventDto),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn add_comment(
    principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<TaskId>,
    Json(comment): Json<NewComment>,
) -> Result<(StatusCode, Json<TaskEventDto>), ApiError> {
    let body = comment.body.trim().to_owned();
    if !(1..=2000).contains(&body.chars().count()) {
        return Err(ApiError::validation("body", "must be 1-2000 characters"));
    }
    let mut tx = db.begin().await?;
    let task = readable_task(&mut tx, &principal, id, false).await?;
    let data = serde_json::json!({ "body": body });
    let event_id = repo::record(
        &mut tx,
        &task,
        "commented",
        &principal.subject,
        data.clone(),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(TaskEventDto {
            id: event_id,
            occurred_at: Utc::now(),
            kind: "commented".to_owned(),
            actor: principal.subject,
            data,
        }),
    ))
}
