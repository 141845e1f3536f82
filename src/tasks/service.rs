//! The rules of working on tasks, between the thin handlers of `routes.rs` and the
//! write API of `write.rs`: defaults, validation against templates and the store, scope
//! (outside it a task does not exist), the transition table, optimistic concurrency.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use super::{
    Action, Priority, TaskSource, TaskStatus,
    dto::{
        CompleteBody, EvidenceGrantDto, NewEvidence, NewTaskBody, ReasonBody, TaskDto,
        TaskEventDto, TaskPatch, UploadDto,
    },
    idempotency,
    repo::{self, TaskRow},
    transition,
    write::{self, NewTask, TaskChanges, TransitionWrite},
};
use crate::{
    auth::Principal,
    error::{ApiError, FieldError},
    evidence::{Evidence, EvidenceDto, GrantFor},
    ids::{EvidenceId, RegionCode, StoreId, TaskId, TaskKind},
    templates::{self, EvidenceRef, ItemType, PhotoAnswer},
};

/// How far from now a task may be due, either way: work a store plans (or records
/// late), not a calendar.
const MAX_DUE_DAYS_FROM_NOW: i64 = 366;
/// How long after its due time a task may stay open before it expires.
const MAX_EXPIRY_AFTER_DUE_DAYS: i64 = 366;

/// An `If-Match` precondition: `*` (any version) or one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    Any,
    Version(i32),
}

/// Loads a task for reading, enforcing scope: outside it a task does not exist (404),
/// so ids cannot be probed.
async fn readable_task(
    conn: &mut PgConnection,
    principal: &Principal,
    id: TaskId,
    lock: bool,
) -> Result<TaskRow, ApiError> {
    let task = repo::find(conn, id, lock)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {id} does not exist")))?;
    let region =
        RegionCode::parse(&task.region).map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
    principal
        .ensure_store_readable(task.store_id, &region)
        .map_err(|_| ApiError::NotFound(format!("task {id} does not exist")))?;
    Ok(task)
}

fn check_version(task: &TaskRow, expected: Option<IfMatch>) -> Result<(), ApiError> {
    match expected {
        Some(IfMatch::Version(version)) if version != task.row_version => {
            Err(ApiError::PreconditionFailed(format!(
                "the task changed (now version {}); reload it and retry",
                task.row_version
            )))
        }
        _ => Ok(()),
    }
}

pub async fn get(db: &PgPool, principal: &Principal, id: TaskId) -> Result<TaskDto, ApiError> {
    let mut conn = db.acquire().await?;
    Ok(readable_task(&mut conn, principal, id, false).await?.into())
}

/// Creates a task in a store (store manager, HQ); with an idempotency key, a repeated
/// request answers what the first one did.
pub async fn create(
    db: &PgPool,
    principal: &Principal,
    store: StoreId,
    key: Option<&str>,
    body: NewTaskBody,
) -> Result<TaskDto, ApiError> {
    principal.ensure_manages_tasks()?;
    let mut tx = crate::db::begin(db).await?;
    if let Some(key) = key {
        let fingerprint = idempotency::fingerprint(&format!("POST /stores/{store}/tasks"), &body);
        if let idempotency::Claim::Replay(response) =
            idempotency::claim(&mut tx, &principal.subject, key, &fingerprint).await?
        {
            return serde_json::from_value(response).map_err(|e| ApiError::Internal(e.into()));
        }
    }

    let mut errors = Vec::new();
    let (template, title) = templates::template_and_title(
        &mut tx,
        body.template_id,
        body.title.as_deref(),
        &mut errors,
    )
    .await?;
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
    let kind = templates::task_kind(body.kind, template.as_ref());
    let now = Utc::now();
    let window = template
        .as_ref()
        .map_or(1440, |t| i64::from(t.due_window_minutes));
    let due_at = body.due_at.unwrap_or(now + Duration::minutes(window));
    check_due(due_at, now, &mut errors);
    if let Some(expires) = body.expires_at {
        if expires <= due_at {
            errors.push(FieldError::new("expires_at", "must be after due_at"));
        } else if expires > due_at + Duration::days(MAX_EXPIRY_AFTER_DUE_DAYS) {
            errors.push(FieldError::new(
                "expires_at",
                "must be within a year after due_at",
            ));
        }
    }
    if let Some(assignee) = body.assignee_id
        && !repo::staff_in_store(&mut tx, assignee, store).await?
    {
        errors.push(FieldError::new(
            "assignee_id",
            "is not active staff of this store",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let row = write::create(
        &mut tx,
        &NewTask {
            store_id: store,
            kind,
            source: TaskSource::Manual,
            title: &title,
            description: description.as_deref(),
            template: template.as_ref().map(|t| (t.id, t.version)),
            priority: body.priority.unwrap_or(Priority::Normal),
            assignee_id: body.assignee_id,
            review_required: template.as_ref().is_some_and(|t| t.review_required),
            due_at,
            expires_at: body.expires_at,
            created_by: &principal.subject,
        },
    )
    .await?;
    let task = TaskDto::from(row);
    if let Some(key) = key {
        idempotency::remember(&mut tx, &principal.subject, key, &task).await?;
    }
    tx.commit().await?;
    Ok(task)
}

fn check_due(due_at: DateTime<Utc>, now: DateTime<Utc>, errors: &mut Vec<FieldError>) {
    if (due_at - now).num_days().abs() > MAX_DUE_DAYS_FROM_NOW {
        errors.push(FieldError::new("due_at", "must be within a year of now"));
    }
}

/// Assign, reprioritise or reschedule (store manager, HQ); needs the ETag it is based on.
pub async fn update(
    db: &PgPool,
    principal: &Principal,
    id: TaskId,
    expected: Option<IfMatch>,
    patch: TaskPatch,
) -> Result<TaskDto, ApiError> {
    let mut tx = crate::db::begin(db).await?;
    let task = readable_task(&mut tx, principal, id, true).await?;
    principal.ensure_manages_tasks()?;
    if expected.is_none() {
        return Err(ApiError::PreconditionRequired(
            "send If-Match with the task's ETag so concurrent changes are not lost".to_owned(),
        ));
    }
    check_version(&task, expected)?;
    if matches!(
        task.status,
        TaskStatus::Done | TaskStatus::Cancelled | TaskStatus::Expired
    ) {
        return Err(ApiError::Conflict(format!(
            "a {} task cannot be changed",
            task.status.as_str()
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
    if let Some(due_at) = patch.due_at {
        check_due(due_at, Utc::now(), &mut errors);
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let changes = TaskChanges {
        assignee: patch.assignee_id,
        priority: patch.priority,
        due_at: patch.due_at,
    };
    let updated = write::update(&mut tx, id, &changes, &principal.subject).await?;
    tx.commit().await?;
    Ok(updated.into())
}

/// A transition as staff asked for it.
pub struct TransitionRequest {
    pub action: Action,
    answers: Option<Value>,
    evidence: Option<Value>,
    detail: Value,
}

impl TransitionRequest {
    /// What the request asked for, as its idempotency fingerprint covers it.
    fn as_sent(&self) -> Value {
        serde_json::json!({
            "answers": self.answers,
            "evidence": self.evidence,
            "detail": self.detail,
        })
    }

    /// The photo answers of a completion (none for other actions).
    fn photo_answers(&self) -> Vec<(String, EvidenceId)> {
        match (
            self.action,
            self.answers.as_ref().and_then(Value::as_object),
        ) {
            (Action::Complete, Some(answers)) => PhotoAnswer::in_answers(answers),
            _ => Vec::new(),
        }
    }

    /// start, approve: nothing to say.
    pub fn plain(action: Action) -> Self {
        Self {
            action,
            answers: None,
            evidence: None,
            detail: serde_json::json!({}),
        }
    }

    /// redo, cancel: an optional reason.
    pub fn with_reason(action: Action, body: ReasonBody) -> Result<Self, ApiError> {
        let reason = crate::input::optional_text("reason", body.reason, 500)?;
        Ok(Self {
            detail: serde_json::json!({ "reason": reason }),
            ..Self::plain(action)
        })
    }

    /// complete: checklist answers and evidence.
    pub fn completion(body: CompleteBody) -> Result<Self, ApiError> {
        if body.note.as_ref().is_some_and(|n| n.chars().count() > 2000) {
            return Err(ApiError::validation(
                "note",
                "must be at most 2000 characters",
            ));
        }
        let evidence =
            serde_json::to_value(&body.evidence).map_err(|e| ApiError::Internal(e.into()))?;
        Ok(Self {
            action: Action::Complete,
            detail: serde_json::json!({ "note": body.note, "evidence_count": body.evidence.len() }),
            answers: Some(Value::Object(body.answers)),
            evidence: Some(evidence),
        })
    }
}

/// Who may take an action on a task: workers start and complete (and upload photos),
/// managers approve, redo and cancel.
fn authorize(principal: &Principal, task: &TaskRow, action: Action) -> Result<(), ApiError> {
    match action {
        Action::Start | Action::Complete => principal.ensure_works_on(task.assignee_id),
        Action::Approve | Action::Redo | Action::Cancel => principal.ensure_manages_tasks(),
    }
}

/// The one way staff change a task's status: lock, check scope and permission, check
/// the transition table and If-Match, then write status, audit event and outbox event
/// together. A completion's photos are checked against the object store first, with
/// no lock held across its round trips, and attached in the same transaction. With an
/// idempotency key, a repeated request (an offline app resending) answers what the
/// first one did; a conflict (the task moved on, or went to someone else) answers 409
/// with the task as it is now.
pub async fn apply(
    db: &PgPool,
    evidence: &Evidence,
    principal: &Principal,
    id: TaskId,
    expected: Option<IfMatch>,
    key: Option<&str>,
    request: TransitionRequest,
) -> Result<TaskDto, ApiError> {
    let fingerprint = key.map(|_| {
        idempotency::fingerprint(
            &format!("POST /tasks/{id}/{}", request.action.verb()),
            &request.as_sent(),
        )
    });
    if let (Some(key), Some(fingerprint)) = (key, &fingerprint)
        && let Some(answer) = idempotency::peek(db, &principal.subject, key, fingerprint).await?
    {
        return serde_json::from_value(answer).map_err(|e| ApiError::Internal(e.into()));
    }
    let photos = request.photo_answers();
    let verified = if photos.is_empty() {
        Vec::new()
    } else {
        {
            // What the transaction below refuses first is refused before the photos
            // are looked at (it checks again under the lock).
            let mut conn = db.acquire().await?;
            let task = readable_task(&mut conn, principal, id, false).await?;
            admissible(principal, &task, request.action)?;
        }
        crate::evidence::verify(db, evidence, id, &photos)
            .await?
            .map_err(refused_photos)?
    };
    let mut tx = crate::db::begin(db).await?;
    if let (Some(key), Some(fingerprint)) = (key, &fingerprint)
        && let idempotency::Claim::Replay(answer) =
            idempotency::claim(&mut tx, &principal.subject, key, fingerprint).await?
    {
        return serde_json::from_value(answer).map_err(|e| ApiError::Internal(e.into()));
    }
    let task = readable_task(&mut tx, principal, id, true).await?;
    let to = admissible(principal, &task, request.action)?;
    check_version(&task, expected)?;
    if request.action == Action::Complete {
        validate_completion(&mut tx, &task, &request).await?;
        crate::evidence::attach(&mut tx, id, &verified)
            .await?
            .map_err(refused_photos)?;
    }
    let updated = write::transition(
        &mut tx,
        id,
        request.action,
        to,
        &TransitionWrite {
            answers: request.answers,
            evidence: request.evidence,
        },
        &principal.subject,
        request.detail,
    )
    .await?;
    let answer = TaskDto::from(updated);
    if let Some(key) = key {
        idempotency::remember(&mut tx, &principal.subject, key, &answer).await?;
    }
    tx.commit().await?;
    Ok(answer)
}

/// Whether `action` may be taken on the task now, by this caller: where it leads.
/// Refusals that come from the task's state (its status, or its being assigned to
/// someone else) are conflicts that carry the task as it is.
fn admissible(
    principal: &Principal,
    task: &TaskRow,
    action: Action,
) -> Result<TaskStatus, ApiError> {
    authorize(principal, task, action)
        .and_then(|()| legal_transition(task, action))
        .map_err(|error| match error {
            ApiError::Conflict(detail) => ApiError::ConflictWith {
                detail,
                current: serde_json::to_value(TaskDto::from(task.clone())).unwrap_or_default(),
            },
            other => other,
        })
}

/// The version of the store's task lists (their ETag).
pub async fn list_version(db: &PgPool, store: StoreId) -> Result<i64, ApiError> {
    Ok(super::sync::store_version(db, store).await?)
}

/// A page of the store's changes feed.
pub async fn changes(
    db: &PgPool,
    store: StoreId,
    since: Option<super::sync::Token>,
    assignee: Option<crate::ids::StaffId>,
    limit: i64,
) -> Result<super::sync::ChangesPage, ApiError> {
    super::sync::feed(db, store, since, assignee, limit)
        .await
        .map_err(|error| match error {
            super::sync::FeedError::Gone => ApiError::Gone(error.to_string()),
            super::sync::FeedError::Database(e) => e.into(),
        })
}

/// Where `action` leads from the task's status, or 409 when the table forbids it.
fn legal_transition(task: &TaskRow, action: Action) -> Result<TaskStatus, ApiError> {
    let (from, to) = transition(action, task.review_required);
    if from.contains(&task.status) {
        Ok(to)
    } else {
        Err(ApiError::Conflict(format!(
            "cannot {} a task that is {}",
            action.verb(),
            task.status.as_str()
        )))
    }
}

/// Photo answers the object store or their grants refuse: 422 naming each item.
fn refused_photos(refused: Vec<(String, crate::evidence::Refusal)>) -> ApiError {
    ApiError::Validation(
        refused
            .into_iter()
            .map(|(key, refusal)| FieldError::new(format!("answers.{key}"), refusal.to_string()))
            .collect(),
    )
}

/// Grants a photo upload for a photo item of a task the caller may work on, while it is
/// open or in progress.
pub async fn grant_evidence(
    db: &PgPool,
    evidence: &Evidence,
    principal: &Principal,
    id: TaskId,
    body: NewEvidence,
) -> Result<EvidenceGrantDto, ApiError> {
    let mut tx = crate::db::begin(db).await?;
    let task = readable_task(&mut tx, principal, id, false).await?;
    principal.ensure_works_on(task.assignee_id)?;
    if !TaskStatus::ACTIVE.contains(&task.status) {
        return Err(ApiError::Conflict(format!(
            "photos are taken for open work; this task is {}",
            task.status.as_str()
        )));
    }
    let photo_item = match (task.template_id, task.template_version) {
        (Some(template), Some(version)) => {
            templates::find_version(&mut tx, template, Some(version))
                .await?
                .is_some_and(|t| {
                    t.checklist
                        .0
                        .iter()
                        .any(|item| item.key == body.item_key && item.item_type == ItemType::Photo)
                })
        }
        _ => false,
    };
    if !photo_item {
        return Err(ApiError::validation(
            "item_key",
            "is not a photo item of this task's checklist",
        ));
    }
    let grant = crate::evidence::grant(
        &mut tx,
        evidence,
        GrantFor {
            task_id: task.id,
            store_id: task.store_id,
            task_created_at: task.created_at,
            item_key: &body.item_key,
            content_type: body.content_type,
            size_bytes: body.size_bytes,
            granted_by: &principal.subject,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(EvidenceGrantDto {
        evidence_id: grant.id,
        item_key: body.item_key,
        upload: UploadDto {
            method: "PUT".to_owned(),
            url: grant.upload.url,
            headers: grant
                .upload
                .headers
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
        },
        expires_at: grant.expires_at,
    })
}

/// The attached photos of a task the caller can see.
pub async fn list_evidence(
    db: &PgPool,
    evidence: &Evidence,
    principal: &Principal,
    id: TaskId,
    after: Option<EvidenceId>,
    limit: i64,
) -> Result<Vec<EvidenceDto>, ApiError> {
    {
        let mut conn = db.acquire().await?;
        readable_task(&mut conn, principal, id, false).await?;
    }
    Ok(crate::evidence::list(db, evidence, id, after, limit).await?)
}

/// Answers against the template version the task was created from, evidence shapes.
async fn validate_completion(
    conn: &mut PgConnection,
    task: &TaskRow,
    request: &TransitionRequest,
) -> Result<(), ApiError> {
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

/// The audit trail of a task the caller can see.
pub async fn history(
    db: &PgPool,
    principal: &Principal,
    id: TaskId,
    after: Option<(DateTime<Utc>, uuid::Uuid)>,
    limit: i64,
) -> Result<Vec<repo::TaskEventRow>, ApiError> {
    {
        let mut conn = db.acquire().await?;
        readable_task(&mut conn, principal, id, false).await?;
    }
    Ok(repo::history(db, id, after, limit).await?)
}

/// A relabel task's items, of a task the caller can see (404 otherwise, as `get`).
/// Other kinds have no items: an empty page rather than an error, so the app may ask
/// for any task it shows.
pub async fn items(
    db: &PgPool,
    principal: &Principal,
    id: TaskId,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<repo::TaskItemRow>, ApiError> {
    let task = {
        let mut conn = db.acquire().await?;
        readable_task(&mut conn, principal, id, false).await?
    };
    if task.kind != TaskKind::PriceRelabel {
        return Ok(Vec::new());
    }
    Ok(repo::items(db, id, after, limit).await?)
}

/// Anyone who can see a task may comment on it.
pub async fn comment(
    db: &PgPool,
    principal: &Principal,
    id: TaskId,
    body: &str,
) -> Result<TaskEventDto, ApiError> {
    let body = crate::input::required_text("body", body, 2000)?;
    let mut tx = crate::db::begin(db).await?;
    let task = readable_task(&mut tx, principal, id, false).await?;
    let data = serde_json::json!({ "body": body });
    let event_id = write::comment(&mut tx, &task, &principal.subject, data.clone()).await?;
    tx.commit().await?;
    Ok(TaskEventDto {
        id: event_id,
        occurred_at: Utc::now(),
        kind: "commented".to_owned(),
        actor: principal.subject.clone(),
        data,
    })
}
