//! Announcement routes: HQ's and regional managers' (create, publish a draft, progress,
//! per store, receipts as CSV) and store staff's (their list, read, acknowledge).

use axum::{
    extract::{FromRef, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    dto::{
        AnnouncementDto, AnnouncementStoreDto, AnnouncementStoresQuery, MyAnnouncementDto,
        MyAnnouncementsQuery, NewAnnouncement, ReceiptDto,
    },
    service,
};
use crate::{
    auth::Principal,
    error::{ApiError, Problem},
    http::{
        extract::{IfNoneMatch, Json, Path, Query, not_modified, tagged},
        pagination::{Page, PageRequest},
    },
    ids::AnnouncementId,
};

/// This module's routes, on any state that provides what its handlers take.
pub fn router<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    PgPool: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(create_announcement))
        .routes(routes!(get_announcement))
        .routes(routes!(publish_announcement))
        .routes(routes!(announcement_stores))
        .routes(routes!(announcement_receipts_csv))
        .routes(routes!(my_announcements))
        .routes(routes!(read_announcement))
        .routes(routes!(acknowledge_announcement))
}

/// Send a notice to many stores (HQ; a regional manager within their region). A
/// correction names the announcement it `supersedes`; announcements are never edited.
#[utoipa::path(
    post, path = "/announcements", tag = "announcements",
    request_body = NewAnnouncement,
    security(("bearer" = [])),
    responses(
        (status = 201, body = AnnouncementDto, description = "Recorded: a draft, or scheduled for the workers to deliver", headers(("Location" = String, description = "The announcement"))),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "No valid bearer token"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "Only HQ and regional managers send announcements, a regional manager only to their region"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "The announcement it supersedes was already corrected"),
    )
)]
async fn create_announcement(
    principal: Principal,
    State(db): State<PgPool>,
    Json(body): Json<NewAnnouncement>,
) -> Result<Response, ApiError> {
    let created = service::create(&db, &principal, body).await?;
    Ok((
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("/api/v1/announcements/{}", created.id),
        )],
        Json(created),
    )
        .into_response())
}

/// An announcement with its progress: stores reached, read and acknowledged, overall
/// and by region.
#[utoipa::path(
    get, path = "/announcements/{announcement_id}", tag = "announcements",
    params(("announcement_id" = AnnouncementId, Path, description = "The announcement's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = AnnouncementDto, description = "The announcement and its progress"),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "No valid bearer token"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "Only HQ and regional managers follow announcements"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "No such announcement in the caller's scope"),
    )
)]
async fn get_announcement(
    principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<AnnouncementId>,
) -> Result<Json<AnnouncementDto>, ApiError> {
    Ok(Json(service::get(&db, &principal, id).await?))
}

/// Publish a draft: the workers deliver it to its stores.
#[utoipa::path(
    post, path = "/announcements/{announcement_id}/publish", tag = "announcements",
    params(("announcement_id" = AnnouncementId, Path, description = "The announcement's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = AnnouncementDto, description = "Scheduled for delivery"),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "No valid bearer token"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "Only HQ and regional managers publish announcements"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "No such announcement in the caller's scope"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "Not a draft, or expired before it was published"),
    )
)]
async fn publish_announcement(
    principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<AnnouncementId>,
) -> Result<Json<AnnouncementDto>, ApiError> {
    Ok(Json(service::publish(&db, &principal, id).await?))
}

/// Each store's receipts, by store code: who read and acknowledged it, reminders sent.
#[utoipa::path(
    get, path = "/announcements/{announcement_id}/stores", tag = "announcements",
    params(("announcement_id" = AnnouncementId, Path, description = "The announcement's id"), AnnouncementStoresQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<AnnouncementStoreDto>, description = "One page of stores"),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "No valid bearer token"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "Only HQ and regional managers follow announcements"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "No such announcement in the caller's scope"),
    )
)]
async fn announcement_stores(
    principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<AnnouncementId>,
    Query(query): Query<AnnouncementStoresQuery>,
) -> Result<Json<Page<AnnouncementStoreDto>>, ApiError> {
    let page = PageRequest::<String>::parse(query.cursor.as_deref(), query.limit)?;
    let unacknowledged = query.unacknowledged.unwrap_or(false);
    Ok(Json(
        service::stores(&db, &principal, id, unacknowledged, page).await?,
    ))
}

/// Every receipt as CSV: a line per staff member who read it, and a line with empty
/// staff for each store where nobody did.
#[utoipa::path(
    get, path = "/announcements/{announcement_id}/receipts.csv", tag = "announcements",
    params(("announcement_id" = AnnouncementId, Path, description = "The announcement's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = String, content_type = "text/csv", description = "store_code,region,visible_at,staff,read_at,acknowledged_at"),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "No valid bearer token"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "Only HQ and regional managers follow announcements"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "No such announcement in the caller's scope"),
    )
)]
async fn announcement_receipts_csv(
    principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<AnnouncementId>,
) -> Result<Response, ApiError> {
    let csv = service::receipts_csv(&db, &principal, id).await?;
    let mut response = csv.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) =
        HeaderValue::from_str(&format!("attachment; filename=\"announcement-{id}.csv\""))
    {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The caller's store's announcements in force that address them, newest first, with
/// their own receipts (associates and store managers).
#[utoipa::path(
    get, path = "/me/announcements", tag = "announcements",
    params(MyAnnouncementsQuery, IfNoneMatch),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<MyAnnouncementDto>, description = "The page, tagged with the list's state", headers(("ETag" = String, description = "Send as If-None-Match to ask whether anything changed"))),
        (status = 304, description = "Nothing in the caller's announcements changed since the ETag sent (no body)", headers(("ETag" = String, description = "The tag the client has"))),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "No valid bearer token"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "Only store staff have announcements of their own"),
    )
)]
async fn my_announcements(
    principal: Principal,
    State(db): State<PgPool>,
    known: IfNoneMatch,
    Query(query): Query<MyAnnouncementsQuery>,
) -> Result<Response, ApiError> {
    let page = PageRequest::<(DateTime<Utc>, AnnouncementId)>::parse(
        query.cursor.as_deref(),
        query.limit,
    )?
    .check(|(at, _)| crate::input::within_reach(at))?;
    // The tag first, then the list: a write between the two gives an older tag on
    // newer content (the next poll fetches again), never the reverse.
    let etag = service::my_list_tag(&db, &principal).await?;
    if known.matches(&etag) {
        return Ok(not_modified(&etag));
    }
    let page = service::my_list(&db, &principal, query.unread.unwrap_or(false), page).await?;
    Ok(tagged(&etag, Json(page)))
}

/// Record that the caller read it. Idempotent: a repeat answers the same receipt.
#[utoipa::path(
    post, path = "/announcements/{announcement_id}/read", tag = "announcements",
    params(("announcement_id" = AnnouncementId, Path, description = "The announcement's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ReceiptDto, description = "The caller's receipt"),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "No valid bearer token"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "Only store staff read announcements"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "Not an announcement the caller's store sees"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "The announcement has expired"),
    )
)]
async fn read_announcement(
    principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<AnnouncementId>,
) -> Result<Json<ReceiptDto>, ApiError> {
    Ok(Json(service::receipt(&db, &principal, id, false).await?))
}

/// Acknowledge it (which also marks it read). Idempotent: a repeat keeps the first
/// acknowledgement's time.
#[utoipa::path(
    post, path = "/announcements/{announcement_id}/acknowledge", tag = "announcements",
    params(("announcement_id" = AnnouncementId, Path, description = "The announcement's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ReceiptDto, description = "The caller's receipt"),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "No valid bearer token"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "Only store staff acknowledge announcements"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "Not an announcement the caller's store sees"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "The announcement has expired"),
    )
)]
async fn acknowledge_announcement(
    principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<AnnouncementId>,
) -> Result<Json<ReceiptDto>, ApiError> {
    Ok(Json(service::receipt(&db, &principal, id, true).await?))
}
