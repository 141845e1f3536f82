//! `GET|POST /task-templates`, `GET|PATCH /task-templates/{template_id}`.

use axum::{
    extract::{FromRef, State},
    http::StatusCode,
};
use serde::Deserialize;
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{ChecklistItem, TemplateDto, repo, validate_checklist};
use crate::{
    auth::{HqPrincipal, Principal},
    error::{ApiError, FieldError, Problem},
    http::{
        extract::{Json, Path, Query},
        pagination::{Page, PageRequest},
    },
    ids::{TaskKind, TemplateId},
    templates::Recurrence,
};

/// This module's routes, on any state that provides what its handlers take.
pub fn router<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    PgPool: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(list_templates, create_template))
        .routes(routes!(get_template, patch_template))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTemplate {
    /// 1-200 characters, not all blank.
    #[schema(
        max_length = 200,
        pattern = "^[^\\x00]*[^\\x00\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\x00]*$"
    )]
    pub title: String,
    #[schema(max_length = 4000, pattern = "^[^\\x00]*$")]
    pub description: Option<String>,
    /// Default `checklist`.
    pub kind: Option<TaskKind>,
    #[serde(default)]
    pub checklist: Vec<ChecklistItem>,
    #[serde(default)]
    pub review_required: bool,
    #[serde(default, deserialize_with = "crate::input::optional_integer")]
    #[schema(minimum = 1, maximum = 1440)]
    pub estimated_minutes: Option<i32>,
    /// Minutes from creation to due; default 1440 (a day).
    #[serde(default, deserialize_with = "crate::input::optional_integer")]
    #[schema(minimum = 5, maximum = 43200)]
    pub due_window_minutes: Option<i32>,
    /// A recurring schedule in store-local time.
    pub recurrence: Option<Recurrence>,
}

/// Fields to change; the rest carries over from the current version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplatePatch {
    #[schema(
        max_length = 200,
        pattern = "^[^\\x00]*[^\\x00\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\x00]*$"
    )]
    pub title: Option<String>,
    #[schema(max_length = 4000, pattern = "^[^\\x00]*$")]
    pub description: Option<String>,
    pub kind: Option<TaskKind>,
    pub checklist: Option<Vec<ChecklistItem>>,
    pub review_required: Option<bool>,
    #[serde(default, deserialize_with = "crate::input::optional_integer")]
    #[schema(minimum = 1, maximum = 1440)]
    pub estimated_minutes: Option<i32>,
    #[serde(default, deserialize_with = "crate::input::optional_integer")]
    #[schema(minimum = 5, maximum = 43200)]
    pub due_window_minutes: Option<i32>,
    /// Replaces the schedule; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Recurrence>)]
    pub recurrence: Option<Option<Recurrence>>,
}

/// Distinguishes an absent field (keep) from `null` (clear).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// A specific version (default: the current one).
    pub version: Option<i32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TemplateListQuery {
    pub cursor: Option<String>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

impl TryFrom<repo::TemplateVersionRow> for TemplateDto {
    type Error = ApiError;

    fn try_from(row: repo::TemplateVersionRow) -> Result<Self, ApiError> {
        Ok(Self {
            kind: row.kind,
            id: row.id,
            version: row.version,
            title: row.title,
            description: row.description,
            checklist: row.checklist.0,
            review_required: row.review_required,
            estimated_minutes: row.estimated_minutes,
            due_window_minutes: row.due_window_minutes,
            recurrence: row.recurrence.map(|r| r.0),
            created_at: row.created_at,
        })
    }
}

/// Which of a version's structured fields the request sent. One kept from the latest
/// version was checked when it was stored, perhaps under looser rules, and must not make
/// a change of something else fail.
struct Sent {
    checklist: bool,
    recurrence: bool,
}

impl Sent {
    /// A new template sends everything.
    const EVERYTHING: Self = Self {
        checklist: true,
        recurrence: true,
    };
}

/// Checks a version's fields as sent; the title is kept trimmed.
fn validate(
    mut fields: repo::VersionFieldsOwned,
    sent: Sent,
) -> Result<repo::VersionFieldsOwned, ApiError> {
    let mut errors = Vec::new();
    match crate::input::required_text("title", &fields.title, 200) {
        Ok(title) => fields.title = title,
        Err(error) => errors.push(error),
    }
    if fields
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 4000)
    {
        errors.push(FieldError::new(
            "description",
            "must be at most 4000 characters",
        ));
    }
    if sent.checklist {
        validate_checklist(&fields.checklist, "checklist", &mut errors);
    }
    if let Some(recurrence) = fields.recurrence.as_ref().filter(|_| sent.recurrence) {
        recurrence.validate("recurrence", &mut errors);
    }
    if fields
        .estimated_minutes
        .is_some_and(|m| !(1..=1440).contains(&m))
    {
        errors.push(FieldError::new("estimated_minutes", "must be 1-1440"));
    }
    if !(5..=43_200).contains(&fields.due_window_minutes) {
        errors.push(FieldError::new("due_window_minutes", "must be 5-43200"));
    }
    if errors.is_empty() {
        Ok(fields)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Current versions of all templates.
#[utoipa::path(
    get, path = "/task-templates", tag = "templates",
    params(TemplateListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<TemplateDto>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_templates(
    _principal: Principal,
    State(db): State<PgPool>,
    Query(query): Query<TemplateListQuery>,
) -> Result<Json<Page<TemplateDto>>, ApiError> {
    let page = PageRequest::<TemplateId>::parse(query.cursor.as_deref(), query.limit)?;
    let rows = repo::list_current(&db, page.after, page.fetch_limit()).await?;
    let page = page.page(rows, |row| row.id);
    Ok(Json(Page {
        items: page
            .items
            .into_iter()
            .map(TemplateDto::try_from)
            .collect::<Result<_, _>>()?,
        next_cursor: page.next_cursor,
    }))
}

/// Create a template (HQ).
#[utoipa::path(
    post, path = "/task-templates", tag = "templates",
    request_body = NewTemplate,
    security(("bearer" = [])),
    responses(
        (status = 201, body = TemplateDto),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_template(
    HqPrincipal(principal): HqPrincipal,
    State(db): State<PgPool>,
    Json(body): Json<NewTemplate>,
) -> Result<(StatusCode, Json<TemplateDto>), ApiError> {
    let fields = repo::VersionFieldsOwned {
        recurrence: body.recurrence,
        title: body.title,
        description: body.description,
        kind: body.kind.unwrap_or(TaskKind::Checklist),
        checklist: body.checklist,
        review_required: body.review_required,
        estimated_minutes: body.estimated_minutes,
        due_window_minutes: body.due_window_minutes.unwrap_or(1440),
    };
    let fields = validate(fields, Sent::EVERYTHING)?;
    let row = repo::create(&db, &fields.borrowed(), &principal.subject).await?;
    Ok((StatusCode::CREATED, Json(row.try_into()?)))
}

/// A template: its current version, or `?version=N`.
#[utoipa::path(
    get, path = "/task-templates/{template_id}", tag = "templates",
    params(("template_id" = TemplateId, Path, description = "The template's id"), VersionQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TemplateDto),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_template(
    _principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<TemplateId>,
    Query(query): Query<VersionQuery>,
) -> Result<Json<TemplateDto>, ApiError> {
    let mut conn = db.acquire().await?;
    let row = repo::find_version(&mut conn, id, query.version)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "template {id} (version {:?}) does not exist",
                query.version
            ))
        })?;
    Ok(Json(row.try_into()?))
}

/// Change a template (HQ): writes a new version; existing tasks keep theirs.
#[utoipa::path(
    patch, path = "/task-templates/{template_id}", tag = "templates",
    params(("template_id" = TemplateId, Path, description = "The template's id")),
    request_body = TemplatePatch,
    security(("bearer" = [])),
    responses(
        (status = 200, body = TemplateDto, description = "The new version"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn patch_template(
    HqPrincipal(principal): HqPrincipal,
    State(db): State<PgPool>,
    Path(id): Path<TemplateId>,
    Json(patch): Json<TemplatePatch>,
) -> Result<Json<TemplateDto>, ApiError> {
    let row = repo::new_version(
        &db,
        id,
        |latest| {
            let sent = Sent {
                checklist: patch.checklist.is_some(),
                recurrence: patch.recurrence.is_some(),
            };
            let fields = repo::VersionFieldsOwned {
                recurrence: match patch.recurrence {
                    Some(change) => change,
                    None => latest.recurrence.as_ref().map(|r| r.0.clone()),
                },
                title: patch.title.unwrap_or_else(|| latest.title.clone()),
                description: patch.description.or_else(|| latest.description.clone()),
                kind: patch.kind.unwrap_or(latest.kind),
                checklist: patch
                    .checklist
                    .unwrap_or_else(|| latest.checklist.0.clone()),
                review_required: patch.review_required.unwrap_or(latest.review_required),
                estimated_minutes: patch.estimated_minutes.or(latest.estimated_minutes),
                due_window_minutes: patch
                    .due_window_minutes
                    .unwrap_or(latest.due_window_minutes),
            };
            validate(fields, sent)
        },
        &principal.subject,
    )
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("template {id} does not exist")))?;
    Ok(Json(row.try_into()?))
}
