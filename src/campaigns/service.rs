//! The rules of campaigns: who may send work where, what a campaign needs, and its
//! record written with its `campaign.created` event in one transaction.

use chrono::Utc;
use sqlx::{PgPool, types::Json as SqlJson};

use super::{
    CampaignCreated, CampaignId,
    dto::{CampaignAccepted, CampaignDto, CampaignStoreDto, NewCampaign, TaskCounts},
    repo,
};
use crate::{
    auth::Principal,
    error::{ApiError, FieldError},
    events::outbox,
    http::pagination::{Page, PageRequest},
    tasks::{Priority, TaskStatus},
    templates,
};

/// `pending` until the `campaigns` group has fanned a campaign out.
const PENDING: &str = "pending";

/// A campaign the caller may see; others do not exist for them.
async fn visible(
    db: &PgPool,
    principal: &Principal,
    id: CampaignId,
) -> Result<repo::CampaignRow, ApiError> {
    let mut conn = db.acquire().await?;
    match repo::find(&mut conn, id, false).await? {
        Some(campaign) if principal.may_see_targeted(campaign.region_scope.as_ref())? => {
            Ok(campaign)
        }
        _ => Err(ApiError::NotFound(format!("campaign {id} does not exist"))),
    }
}

/// Records a campaign for the workers to fan out.
pub async fn create(
    db: &PgPool,
    principal: &Principal,
    body: NewCampaign,
) -> Result<CampaignAccepted, ApiError> {
    principal.targeting_scope()?;
    let mut errors = Vec::new();
    let target = body.target;
    target.validate("target", &mut errors);
    if body.due_at.is_some() == body.due_local.is_some() {
        errors.push(FieldError::new(
            "due_at",
            "give exactly one of due_at or due_local",
        ));
    }
    let mut tx = crate::db::begin(db).await?;
    let (template, title) = templates::template_and_title(
        &mut tx,
        body.template_id,
        body.title.as_deref(),
        &mut errors,
    )
    .await?;
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    target.check_names(db, "target", &mut errors).await?;
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let region_scope = principal.ensure_targets_within_scope(&target.named_regions(db).await?)?;
    let kind = templates::task_kind(body.kind, template.as_ref());
    let campaign = repo::CampaignRow {
        id: CampaignId::generate(),
        title,
        description: body
            .description
            .or_else(|| template.as_ref().and_then(|t| t.description.clone())),
        kind,
        template_id: template.as_ref().map(|t| t.id),
        template_version: template.as_ref().map(|t| t.version),
        target: SqlJson(target),
        region_scope,
        due_at: body.due_at,
        due_local: body.due_local,
        priority: body.priority.unwrap_or(Priority::Normal),
        status: PENDING.to_owned(),
        target_count: None,
        created_by: principal.subject.clone(),
        created_at: Utc::now(),
        fanned_out_at: None,
    };
    repo::insert(&mut tx, &campaign).await?;
    outbox::enqueue(
        &mut tx,
        &CampaignCreated {
            campaign_id: campaign.id,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(CampaignAccepted {
        id: campaign.id,
        status: PENDING.to_owned(),
        status_url: format!("/api/v1/campaigns/{}", campaign.id),
    })
}

/// Progress of a campaign: task counts by status and completion rate.
pub async fn get(
    db: &PgPool,
    principal: &Principal,
    id: CampaignId,
) -> Result<CampaignDto, ApiError> {
    let campaign = visible(db, principal, id).await?;
    let mut tasks = TaskCounts::default();
    for (status, count) in repo::status_counts(db, id).await? {
        tasks.total += count;
        match status {
            TaskStatus::Open => tasks.open = count,
            TaskStatus::InProgress => tasks.in_progress = count,
            TaskStatus::Submitted => tasks.submitted = count,
            TaskStatus::Done => tasks.done = count,
            TaskStatus::Cancelled => tasks.cancelled = count,
            TaskStatus::Expired => tasks.expired = count,
        }
    }
    let completion_rate = if tasks.total == 0 {
        0.0
    } else {
        tasks.done as f64 / tasks.total as f64
    };
    Ok(CampaignDto {
        kind: campaign.kind,
        id: campaign.id,
        title: campaign.title,
        target: campaign.target.0,
        region_scope: campaign.region_scope,
        status: campaign.status,
        target_count: campaign.target_count,
        tasks,
        completion_rate,
        created_by: campaign.created_by,
        created_at: campaign.created_at,
        fanned_out_at: campaign.fanned_out_at,
    })
}

/// The campaign's task in each store, by store code.
pub async fn stores(
    db: &PgPool,
    principal: &Principal,
    id: CampaignId,
    page: PageRequest<String>,
) -> Result<Page<CampaignStoreDto>, ApiError> {
    visible(db, principal, id).await?;
    let rows = repo::stores(db, id, page.after.as_deref(), page.fetch_limit()).await?;
    let page = page.page(rows, |row| row.store_code.clone());
    Ok(Page {
        items: page
            .items
            .into_iter()
            .map(|row| CampaignStoreDto {
                status: row.status,
                store_id: row.store_id,
                store_code: row.store_code,
                store_name: row.store_name,
                task_id: row.task_id,
                due_at: row.due_at,
                completed_at: row.completed_at,
            })
            .collect(),
        next_cursor: page.next_cursor,
    })
}
