//! The rules of announcements: who may send them where, what one needs, corrections
//! instead of edits, and receipts per staff member, each written with its event in one
//! transaction.

use chrono::{Duration, Utc};
use sqlx::{PgPool, types::Json as SqlJson};

use super::{
    AnnouncementAcknowledged, AnnouncementScheduled, AnnouncementStatus, Audience,
    dto::{
        AnnouncementDto, AnnouncementStoreDto, MAX_BODY, MAX_TITLE, MyAnnouncementDto,
        NewAnnouncement, Progress, ReceiptDto, RegionProgress,
    },
    metrics, repo,
};
use crate::{
    auth::Principal,
    error::{ApiError, FieldError},
    events::outbox,
    http::pagination::{Page, PageRequest},
    ids::AnnouncementId,
    input,
    tasks::Priority,
};

/// The furthest ahead an announcement may be published or expire.
const HORIZON_DAYS: i64 = 366;

/// An announcement the caller may manage or follow; others do not exist for them.
async fn visible(
    db: &PgPool,
    principal: &Principal,
    id: AnnouncementId,
) -> Result<repo::AnnouncementRow, ApiError> {
    let mut conn = db.acquire().await?;
    match repo::find(&mut conn, id, false).await? {
        Some(row) if principal.may_see_targeted(row.region_scope.as_ref())? => Ok(row),
        _ => Err(ApiError::NotFound(format!(
            "announcement {id} does not exist"
        ))),
    }
}

/// Checks the times of a new announcement: `expires_at` after the publishing time (for
/// the store-local form, after it in the westernmost zone), nothing beyond the horizon.
fn check_times(body: &NewAnnouncement, errors: &mut Vec<FieldError>) {
    let now = Utc::now();
    let horizon = now + Duration::days(HORIZON_DAYS);
    let publish = body
        .publish_at
        .or_else(|| {
            body.publish_local
                .map(|l| l.and_utc() + Duration::hours(12))
        })
        .unwrap_or(now);
    if body.publish_at.is_some_and(|at| at > horizon)
        || body.publish_local.is_some_and(|l| l.and_utc() > horizon)
    {
        errors.push(FieldError::new(
            if body.publish_at.is_some() {
                "publish_at"
            } else {
                "publish_local"
            },
            format!("must be at most {HORIZON_DAYS} days ahead"),
        ));
    }
    if body.publish_at.is_some() && body.publish_local.is_some() {
        errors.push(FieldError::new(
            "publish_at",
            "give at most one of publish_at or publish_local",
        ));
    }
    if let Some(expires) = body.expires_at {
        if expires <= publish.max(now) {
            errors.push(FieldError::new(
                "expires_at",
                "must be after the publishing time (and in the future)",
            ));
        } else if expires > publish + Duration::days(HORIZON_DAYS) {
            errors.push(FieldError::new(
                "expires_at",
                format!("must be at most {HORIZON_DAYS} days after publishing"),
            ));
        }
    }
}

/// Records an announcement: a draft, or scheduled with its delivery event.
pub async fn create(
    db: &PgPool,
    principal: &Principal,
    body: NewAnnouncement,
) -> Result<AnnouncementDto, ApiError> {
    principal.targeting_scope()?;
    let mut errors = Vec::new();
    let title = input::required_text("title", &body.title, MAX_TITLE)
        .map_err(|e| errors.push(e))
        .unwrap_or_default();
    let text = input::required_text("body", &body.body, MAX_BODY)
        .map_err(|e| errors.push(e))
        .unwrap_or_default();
    body.target.validate("target", &mut errors);
    check_times(&body, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    body.target.check_names(db, "target", &mut errors).await?;
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let region_scope =
        principal.ensure_targets_within_scope(&body.target.named_regions(db).await?)?;
    let mut tx = crate::db::begin(db).await?;
    if let Some(old) = body.supersedes {
        // Locked, so two corrections of one announcement cannot both pass the check.
        let found = repo::find(&mut tx, old, true).await?;
        let Some(found) = found.filter(|o| {
            principal
                .may_see_targeted(o.region_scope.as_ref())
                .unwrap_or(false)
        }) else {
            return Err(ApiError::validation(
                "supersedes",
                format!("unknown announcement {old}"),
            ));
        };
        if found.status == AnnouncementStatus::Draft {
            return Err(ApiError::validation(
                "supersedes",
                "a draft is changed by publishing another draft, not corrected",
            ));
        }
        if let Some(newer) = repo::superseded_by(&mut tx, old).await? {
            return Err(ApiError::Conflict(format!(
                "announcement {old} was already corrected by {newer}; correct that one"
            )));
        }
    }
    let status = if body.draft {
        AnnouncementStatus::Draft
    } else {
        AnnouncementStatus::Scheduled
    };
    let row = repo::AnnouncementRow {
        id: AnnouncementId::generate(),
        title,
        body: text,
        priority: body.priority.unwrap_or(Priority::Normal),
        target: SqlJson(body.target),
        region_scope,
        audience: body.audience.unwrap_or(Audience::Everyone),
        requires_ack: body.requires_ack,
        // Published now unless it names a time (a draft: when it is published).
        publish_at: match (body.publish_at, body.publish_local, body.draft) {
            (None, None, false) => Some(Utc::now()),
            (at, _, _) => at,
        },
        publish_local: body.publish_local,
        expires_at: body.expires_at,
        supersedes: body.supersedes,
        status,
        target_count: None,
        created_by: principal.subject.clone(),
        created_at: Utc::now(),
        fanned_out_at: None,
        published_at: None,
    };
    repo::insert(&mut tx, &row).await?;
    if status == AnnouncementStatus::Scheduled {
        outbox::enqueue(
            &mut tx,
            &AnnouncementScheduled {
                announcement_id: row.id,
            },
        )
        .await?;
    }
    tx.commit().await?;
    dto(db, row).await
}

/// A draft goes out: scheduled, and delivered by the workers.
pub async fn publish(
    db: &PgPool,
    principal: &Principal,
    id: AnnouncementId,
) -> Result<AnnouncementDto, ApiError> {
    principal.targeting_scope()?;
    visible(db, principal, id).await?;
    let mut tx = crate::db::begin(db).await?;
    let Some(row) = repo::find(&mut tx, id, true).await? else {
        return Err(ApiError::NotFound(format!(
            "announcement {id} does not exist"
        )));
    };
    if row.status != AnnouncementStatus::Draft {
        return Err(ApiError::Conflict(format!(
            "announcement {id} is not a draft; send a correction instead"
        )));
    }
    if row.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(ApiError::Conflict(format!(
            "announcement {id} expired before it was published"
        )));
    }
    repo::schedule_draft(&mut tx, id).await?;
    outbox::enqueue(
        &mut tx,
        &AnnouncementScheduled {
            announcement_id: id,
        },
    )
    .await?;
    let row = repo::find(&mut tx, id, false)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("announcement {id} does not exist")))?;
    tx.commit().await?;
    dto(db, row).await
}

fn ratio(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn progress(counts: &[repo::RegionCounts]) -> Progress {
    let sum = |f: fn(&repo::RegionCounts) -> i64| counts.iter().map(f).sum::<i64>();
    let (targeted, reached) = (sum(|c| c.targeted), sum(|c| c.reached));
    let (read, acknowledged) = (sum(|c| c.read), sum(|c| c.acknowledged));
    Progress {
        stores_targeted: targeted,
        stores_reached: reached,
        stores_read: read,
        stores_acknowledged: acknowledged,
        read_ratio: ratio(read, reached),
        ack_ratio: ratio(acknowledged, reached),
    }
}

async fn dto(db: &PgPool, row: repo::AnnouncementRow) -> Result<AnnouncementDto, ApiError> {
    let counts = repo::progress_by_region(db, row.id).await?;
    let regions = counts
        .iter()
        .map(|c| RegionProgress {
            region: c.region.clone(),
            progress: progress(std::slice::from_ref(c)),
        })
        .collect();
    let superseded_by = repo::superseded_by(&mut *db.acquire().await?, row.id).await?;
    Ok(AnnouncementDto {
        status: row.status_at(Utc::now()),
        id: row.id,
        title: row.title,
        body: row.body,
        priority: row.priority,
        target: row.target.0,
        region_scope: row.region_scope,
        audience: row.audience,
        requires_ack: row.requires_ack,
        publish_at: row.publish_at,
        publish_local: row.publish_local,
        expires_at: row.expires_at,
        supersedes: row.supersedes,
        superseded_by,
        created_by: row.created_by,
        created_at: row.created_at,
        published_at: row.published_at,
        delivered_at: row.fanned_out_at,
        target_count: row.target_count,
        progress: progress(&counts),
        regions,
    })
}

/// An announcement with its progress, overall and by region.
pub async fn get(
    db: &PgPool,
    principal: &Principal,
    id: AnnouncementId,
) -> Result<AnnouncementDto, ApiError> {
    let row = visible(db, principal, id).await?;
    dto(db, row).await
}

/// Each store's receipts, by store code.
pub async fn stores(
    db: &PgPool,
    principal: &Principal,
    id: AnnouncementId,
    unacknowledged: bool,
    page: PageRequest<String>,
) -> Result<Page<AnnouncementStoreDto>, ApiError> {
    visible(db, principal, id).await?;
    let rows = repo::stores(
        db,
        id,
        unacknowledged,
        page.after.as_deref(),
        page.fetch_limit(),
    )
    .await?;
    Ok(page
        .page(rows, |row| row.store_code.clone())
        .map(|row| AnnouncementStoreDto {
            store_id: row.store_id,
            store_code: row.store_code,
            store_name: row.store_name,
            region: row.region,
            visible_at: row.visible_at,
            read_by: row.read_by,
            acknowledged_by: row.acknowledged_by,
            reminder_level: row.reminder_level,
        }))
}

/// Every receipt as CSV: one line per staff member who read it, and one per store
/// where nobody did (empty staff and times).
pub async fn receipts_csv(
    db: &PgPool,
    principal: &Principal,
    id: AnnouncementId,
) -> Result<String, ApiError> {
    visible(db, principal, id).await?;
    let lines = repo::receipt_lines(db, id).await?;
    let mut csv = String::from("store_code,region,visible_at,staff,read_at,acknowledged_at\n");
    let time = |t: Option<chrono::DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    for line in lines {
        csv.push_str(&format!(
            "{},{},{},{},{},{}\n",
            line.store_code,
            line.region,
            line.visible_at.to_rfc3339(),
            csv_field(line.staff_subject.as_deref().unwrap_or_default()),
            time(line.read_at),
            time(line.acknowledged_at),
        ));
    }
    Ok(csv)
}

/// A CSV field (RFC 4180): quoted when it holds a separator, quote or line break, and
/// prefixed with `'` when a spreadsheet would run it as a formula.
fn csv_field(raw: &str) -> String {
    let raw = if raw.starts_with(['=', '+', '-', '@']) {
        format!("'{raw}")
    } else {
        raw.to_owned()
    };
    if raw.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", raw.replace('"', "\"\""))
    } else {
        raw
    }
}

fn reader(principal: &Principal) -> Result<repo::Reader<'_>, ApiError> {
    let staff = principal.store_staff()?;
    Ok(repo::Reader {
        store: staff.store_id,
        subject: &principal.subject,
        audiences: Audience::including(staff),
    })
}

/// The tag of a staff member's list: changes whenever what it shows does.
pub async fn my_list_tag(db: &PgPool, principal: &Principal) -> Result<String, ApiError> {
    let reader = reader(principal)?;
    let state = repo::list_state(db, &reader).await?;
    Ok(format!("\"a{}\"", state.map(|n| n.to_string()).join(".")))
}

/// The caller's store's announcements in force, newest first.
pub async fn my_list(
    db: &PgPool,
    principal: &Principal,
    unread: bool,
    page: PageRequest<(chrono::DateTime<Utc>, AnnouncementId)>,
) -> Result<Page<MyAnnouncementDto>, ApiError> {
    let reader = reader(principal)?;
    let rows = repo::for_staff(db, &reader, unread, page.after, page.fetch_limit()).await?;
    Ok(page.page(rows, |row| (row.visible_at, row.id)))
}

/// Records the caller's read (and, when `acknowledge`, acknowledgement) of an
/// announcement their store sees; a repeat changes nothing and answers the same.
pub async fn receipt(
    db: &PgPool,
    principal: &Principal,
    id: AnnouncementId,
    acknowledge: bool,
) -> Result<ReceiptDto, ApiError> {
    let reader = reader(principal)?;
    let mut tx = crate::db::begin(db).await?;
    match repo::visible_to(&mut tx, &reader, id).await? {
        None => {
            return Err(ApiError::NotFound(format!(
                "announcement {id} does not exist"
            )));
        }
        Some(true) => {
            return Err(ApiError::Conflict(format!("announcement {id} has expired")));
        }
        Some(false) => {}
    }
    let first_read = repo::record_read(&mut tx, &reader, id).await?;
    let acknowledged = if acknowledge {
        repo::record_acknowledgement(&mut tx, &reader, id).await?
    } else {
        None
    };
    if let Some(at) = acknowledged {
        outbox::enqueue(
            &mut tx,
            &AnnouncementAcknowledged {
                announcement_id: id,
                store_id: reader.store,
                staff_subject: reader.subject.to_owned(),
                acknowledged_at: at,
            },
        )
        .await?;
    }
    let (read_at, acknowledged_at) = repo::receipt(&mut tx, &reader, id).await?;
    tx.commit().await?;
    if first_read {
        metrics::RECEIPTS.with_label_values(&["read"]).inc();
    }
    if acknowledged.is_some() {
        metrics::RECEIPTS.with_label_values(&["acknowledged"]).inc();
    }
    Ok(ReceiptDto {
        announcement_id: id,
        store_id: reader.store,
        read_at,
        acknowledged_at,
    })
}
