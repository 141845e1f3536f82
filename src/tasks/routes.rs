//! Task routes: thin handlers that read headers, paths and bodies, call the rules in
//! `service.rs` and answer with DTOs (the store task list: `summary_json.rs`).

use axum::{
    body::Bytes,
    extract::{FromRef, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    Action, TaskStatus,
    dto::{
        ChangesQuery, CompleteBody, EmptyBody, EvidenceGrantDto, EvidenceQuery, HistoryQuery,
        NewComment, NewEvidence, NewTaskBody, ReasonBody, TaskConflict, TaskDto, TaskEventDto,
        TaskItemDto, TaskItemsQuery, TaskListQuery, TaskPatch, TaskSummaryDto,
    },
    repo::{self, ListFilter},
    service::{self, IfMatch, TransitionRequest},
    sync::{ChangesPage, Token},
};
use crate::{
    auth::Principal,
    error::{ApiError, FieldError, Problem},
    evidence::{Evidence, EvidenceDto},
    http::{
        extract::{
            IdempotencyKey, IfNoneMatch, Json, JsonBytes, Path, Query, not_modified,
            parse_optional_json, tagged,
        },
        pagination::{Page, PageRequest},
    },
    ids::{EvidenceId, StoreId, TaskId, TaskKind},
    stores::ScopedStore,
};

/// This module's routes, on any state that provides what its handlers take.
pub fn router<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    PgPool: FromRef<S>,
    crate::stores::StoreDirectory: FromRef<S>,
    Evidence: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(list_store_tasks, create_task))
        .routes(routes!(get_task, patch_task))
        .routes(routes!(start_task))
        .routes(routes!(complete_task))
        .routes(routes!(approve_task))
        .routes(routes!(redo_task))
        .routes(routes!(cancel_task))
        .routes(routes!(task_history))
        .routes(routes!(task_items))
        .routes(routes!(add_comment))
        .routes(routes!(list_evidence, grant_evidence))
        .routes(routes!(store_changes))
}

/// The store task list's ETag: its store's list version.
fn list_etag(version: i64) -> String {
    format!("\"s{version}\"")
}

/// The task with its ETag header.
fn with_etag(status: StatusCode, task: TaskDto) -> Response {
    tagged(&task_etag(&task), (status, Json(task)))
}

/// A task's tag: its version, which every change of it bumps.
fn task_etag(task: &TaskDto) -> String {
    format!("\"{}\"", task.version)
}

/// The precondition an `If-Match` header names (`"3"`, `W/"3"` or `*`).
fn if_match(headers: &HeaderMap) -> Result<Option<IfMatch>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(Some(IfMatch::Any));
    }
    let version = text
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i32>()
        .map_err(|_| {
            ApiError::PreconditionFailed("If-Match does not name a version of this task".to_owned())
        })?;
    Ok(Some(IfMatch::Version(version)))
}

/// A store's tasks by due time: the hottest read.
#[utoipa::path(
    get, path = "/stores/{store_id}/tasks", tag = "tasks",
    params(("store_id" = StoreId, Path, description = "The store's id"), TaskListQuery, IfNoneMatch),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<TaskSummaryDto>, description = "The page, tagged with the store list's version", headers(("ETag" = String, description = "Send as If-None-Match to ask whether anything changed"))),
        (status = 304, description = "Nothing in the store's task lists changed since the ETag sent (no body)", headers(("ETag" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "No valid bearer token"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "The store is outside the caller's scope"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "No such store"),
    )
)]
async fn list_store_tasks(
    ScopedStore { store, .. }: ScopedStore,
    State(db): State<PgPool>,
    known: IfNoneMatch,
    Query(query): Query<TaskListQuery>,
) -> Result<Response, ApiError> {
    let page = PageRequest::<(DateTime<Utc>, TaskId)>::parse(query.cursor.as_deref(), query.limit)?
        .check(|(due_at, _)| crate::input::within_reach(due_at))?;
    let mut errors = Vec::new();
    let statuses = query.status.as_deref().map(|list| {
        // Exactly as documented: no spaces, no empty entries.
        list.split(',')
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
        assignee: query.assignee,
        kind: query.kind,
        due_before: query.due_before,
    };
    // A conditional poll reads the version alone first, and a match ends it there (no
    // list query); otherwise the list brings its own version, read with its rows.
    if !known.is_absent() {
        let etag = list_etag(service::list_version(&db, store.id).await?);
        if known.matches(&etag) {
            return Ok(not_modified(&etag));
        }
    }
    let (version, rows) =
        repo::list_for_store(&db, store.id, &filter, page.after, page.fetch_limit()).await?;
    let etag = list_etag(version);
    let page = page
        .page(rows, |row| (row.due_at, row.id))
        .map(TaskSummaryDto::from);
    Ok(tagged(&etag, JsonBytes(super::summary_json::page(&page))))
}

/// Create a task in a store (store manager, HQ). Honours `Idempotency-Key`.
#[utoipa::path(
    post, path = "/stores/{store_id}/tasks", tag = "tasks",
    params(
        ("store_id" = StoreId, Path, description = "The store's id"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = "^[\\x21-\\x7e]{1,200}$", description = "Replays the first answer for the same request"),
    ),
    request_body = NewTaskBody,
    security(("bearer" = [])),
    responses(
        (status = 201, body = TaskDto, headers(("ETag" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_task(
    ScopedStore { principal, store }: ScopedStore,
    State(db): State<PgPool>,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<NewTaskBody>,
) -> Result<Response, ApiError> {
    let task = service::create(&db, &principal, store.id, key.as_deref(), body).await?;
    Ok(with_etag(StatusCode::CREATED, task))
}

/// One task, with its ETag.
#[utoipa::path(
    get, path = "/tasks/{task_id}", tag = "tasks",
    params(("task_id" = TaskId, Path, description = "The task's id"), IfNoneMatch),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TaskDto, headers(("ETag" = String, description = "The task's version; send as If-None-Match or If-Match"))),
        (status = 304, description = "The task did not change since the ETag sent (no body)", headers(("ETag" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "No valid bearer token"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "Outside the caller's scope"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "No such task in the caller's scope"),
    )
)]
async fn get_task(
    principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<TaskId>,
    known: IfNoneMatch,
) -> Result<Response, ApiError> {
    let task = service::get(&db, &principal, id).await?;
    let etag = task_etag(&task);
    if known.matches(&etag) {
        return Ok(not_modified(&etag));
    }
    Ok(with_etag(StatusCode::OK, task))
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
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
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
    let task = service::update(&db, &principal, id, if_match(&headers)?, patch).await?;
    Ok(with_etag(StatusCode::OK, task))
}

macro_rules! transition_route {
    ($name:ident, $path:literal, $body:ty, $summary:literal, $make:expr) => {
        #[doc = $summary]
        #[utoipa::path(
            post, path = $path, tag = "tasks",
            params(
                ("task_id" = TaskId, Path, description = "The task's id"),
                ("If-Match" = Option<String>, Header, nullable = false, description = "Refuse (412) if the task changed since this ETag"),
                ("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = "^[\\x21-\\x7e]{1,200}$", description = "Replays the first answer for the same request (an offline app resending)"),
            ),
            request_body(content = Option<$body>),
            security(("bearer" = [])),
            responses(
                (status = 200, body = TaskDto, headers(("ETag" = String))),
                (status = 401, body = Problem, content_type = "application/problem+json"),
                (status = 403, body = Problem, content_type = "application/problem+json"),
                (status = 404, body = Problem, content_type = "application/problem+json"),
                (status = 409, body = TaskConflict, content_type = "application/problem+json", description = "Illegal in the task's current status, or the task was assigned to someone else; `current` is the task as it is now"),
                (status = 412, body = Problem, content_type = "application/problem+json"),
            )
        )]
        async fn $name(
            principal: Principal,
            State(db): State<PgPool>,
            State(evidence): State<Evidence>,
            Path(id): Path<TaskId>,
            IdempotencyKey(key): IdempotencyKey,
            headers: HeaderMap,
            body: Bytes,
        ) -> Result<Response, ApiError> {
            let body: $body = parse_optional_json(&headers, &body)?;
            let make: fn($body) -> Result<TransitionRequest, ApiError> = $make;
            let task = service::apply(
                &db,
                &evidence,
                &principal,
                id,
                if_match(&headers)?,
                key.as_deref(),
                make(body)?,
            )
            .await?;
            Ok(with_etag(StatusCode::OK, task))
        }
    };
}

transition_route!(
    start_task,
    "/tasks/{task_id}/start",
    EmptyBody,
    "Start working on a task.",
    |_| Ok(TransitionRequest::plain(Action::Start))
);
transition_route!(
    complete_task,
    "/tasks/{task_id}/complete",
    CompleteBody,
    "Complete a task with checklist answers and evidence; goes to review when its template requires it.",
    TransitionRequest::completion
);
transition_route!(
    approve_task,
    "/tasks/{task_id}/approve",
    EmptyBody,
    "Approve submitted work (store manager, HQ).",
    |_| Ok(TransitionRequest::plain(Action::Approve))
);
transition_route!(
    redo_task,
    "/tasks/{task_id}/redo",
    ReasonBody,
    "Send submitted work back (store manager, HQ).",
    |body| TransitionRequest::with_reason(Action::Redo, body)
);
transition_route!(
    cancel_task,
    "/tasks/{task_id}/cancel",
    ReasonBody,
    "Cancel a task (store manager, HQ).",
    |body| TransitionRequest::with_reason(Action::Cancel, body)
);

/// The task's audit trail, oldest first.
#[utoipa::path(
    get, path = "/tasks/{task_id}/history", tag = "tasks",
    params(("task_id" = TaskId, Path, description = "The task's id"), HistoryQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<TaskEventDto>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn task_history(
    principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<TaskId>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Page<TaskEventDto>>, ApiError> {
    let page = PageRequest::<(DateTime<Utc>, Uuid)>::parse(query.cursor.as_deref(), query.limit)?
        .check(|(at, _)| crate::input::within_reach(at))?;
    let rows = service::history(&db, &principal, id, page.after, page.fetch_limit()).await?;
    Ok(Json(
        page.page(rows, |e| (e.occurred_at, e.id))
            .map(TaskEventDto::from),
    ))
}

/// A relabel task's items (SKUs) by SKU, for the relabel app; other kinds of task have
/// none (an empty page).
#[utoipa::path(
    get, path = "/tasks/{task_id}/items", tag = "tasks",
    params(("task_id" = TaskId, Path, description = "The task's id"), TaskItemsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<TaskItemDto>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn task_items(
    principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<TaskId>,
    Query(query): Query<TaskItemsQuery>,
) -> Result<Json<Page<TaskItemDto>>, ApiError> {
    // The key is the last SKU; one this API issued is a SKU as ingest accepts them.
    let page =
        PageRequest::<String>::parse(query.cursor.as_deref(), query.limit)?.check(|sku| {
            (1..=64).contains(&sku.chars().count()) && !sku.chars().any(char::is_control)
        })?;
    let rows = service::items(
        &db,
        &principal,
        id,
        page.after.as_deref(),
        page.fetch_limit(),
    )
    .await?;
    Ok(Json(
        page.page(rows, |item| item.sku.clone())
            .map(TaskItemDto::from),
    ))
}

/// Comment on a task (anyone who can see it).
#[utoipa::path(
    post, path = "/tasks/{task_id}/comments", tag = "tasks",
    params(("task_id" = TaskId, Path, description = "The task's id")),
    request_body = NewComment,
    security(("bearer" = [])),
    responses(
        (status = 201, body = TaskEventDto),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn add_comment(
    principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<TaskId>,
    Json(comment): Json<NewComment>,
) -> Result<(StatusCode, Json<TaskEventDto>), ApiError> {
    let event = service::comment(&db, &principal, id, &comment.body).await?;
    Ok((StatusCode::CREATED, Json(event)))
}

/// Ask to upload a photo for a photo item of the task (staff who may work on it, while
/// it is open or in progress). Answers a presigned `PUT` valid for at most 15 minutes
/// for exactly this type and size: the object store refuses anything else. Complete
/// the task with `{"evidence_id"}` as the item's answer.
#[utoipa::path(
    post, path = "/tasks/{task_id}/evidence", tag = "tasks",
    params(("task_id" = TaskId, Path, description = "The task's id")),
    request_body = NewEvidence,
    security(("bearer" = [])),
    responses(
        (status = 201, body = EvidenceGrantDto, description = "Granted: upload with `upload`"),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "No valid bearer token"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "Not someone who may work on this task"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "No such task in the caller's scope"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "The task is no longer open"),
    )
)]
async fn grant_evidence(
    principal: Principal,
    State(db): State<PgPool>,
    State(evidence): State<Evidence>,
    Path(id): Path<TaskId>,
    Json(body): Json<NewEvidence>,
) -> Result<Response, ApiError> {
    let grant = service::grant_evidence(&db, &evidence, &principal, id, body).await?;
    Ok((StatusCode::CREATED, Json(grant)).into_response())
}

/// The task's attached photos (whoever may see the task), each with presigned `GET`
/// URLs of the original and, once a worker made it, a thumbnail; the URLs expire at
/// `urls_expire_at`.
#[utoipa::path(
    get, path = "/tasks/{task_id}/evidence", tag = "tasks",
    params(("task_id" = TaskId, Path, description = "The task's id"), EvidenceQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<EvidenceDto>),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "No valid bearer token"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "Outside the caller's scope"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "No such task in the caller's scope"),
    )
)]
async fn list_evidence(
    principal: Principal,
    State(db): State<PgPool>,
    State(evidence): State<Evidence>,
    Path(id): Path<TaskId>,
    Query(query): Query<EvidenceQuery>,
) -> Result<Json<Page<EvidenceDto>>, ApiError> {
    let page = PageRequest::<EvidenceId>::parse(query.cursor.as_deref(), query.limit)?;
    let rows = service::list_evidence(
        &db,
        &evidence,
        &principal,
        id,
        page.after,
        page.fetch_limit(),
    )
    .await?;
    Ok(Json(page.page(rows, |photo| photo.evidence_id)))
}

/// The store's changes since a token, for an app coming back online: changed tasks'
/// summaries, tasks that left its work (`removed`, with why), and the next token. Without
/// `since`, a first sync: the store's unfinished work, then the token to follow. Never
/// skips a change, whatever order writes committed in: a change is served once every
/// older transaction has finished, and the same task may be named again on a later page
/// (apply each entry as "the task is now this" / "the task left"); a token older than
/// the changes kept answers 410 (sync again without `since`).
#[utoipa::path(
    get, path = "/stores/{store_id}/changes", tag = "tasks",
    params(("store_id" = StoreId, Path, description = "The store's id"), ChangesQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ChangesPage),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "No valid bearer token"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "The store is outside the caller's scope"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "No such store"),
        (status = 410, body = Problem, content_type = "application/problem+json", description = "The token is older than the changes kept: sync again without `since`"),
    )
)]
async fn store_changes(
    ScopedStore { store, .. }: ScopedStore,
    State(db): State<PgPool>,
    Query(query): Query<ChangesQuery>,
) -> Result<Json<ChangesPage>, ApiError> {
    let since = query
        .since
        .as_deref()
        .map(|raw| {
            Token::decode(raw)
                .ok_or_else(|| ApiError::validation("since", "is not a token this API issued"))
        })
        .transpose()?;
    let limit = match query.limit {
        None => 100,
        Some(limit) if (1..=200).contains(&limit) => i64::from(limit),
        Some(_) => return Err(ApiError::validation("limit", "must be 1..=200")),
    };
    Ok(Json(
        service::changes(&db, store.id, since, query.assignee, limit).await?,
    ))
}
