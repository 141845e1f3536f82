//! Photo evidence (PRODUCT §4 "Evidence"): the store app asks for an upload grant, puts
//! the photo straight into the object store with the presigned URL (the store enforces
//! the granted type and size), and answers the checklist's photo item with the
//! evidence id; completion attaches it only once the object is there, of the granted
//! size and type, with a matching image signature and a bounded pixel count. A worker
//! then makes a thumbnail and records dimensions and capture time; reviewers view both
//! through short-lived presigned URLs.
//!
//! This module owns the `evidence` table and the objects; `tasks` decides who may ask
//! (its routes and rules call [`grant`], [`verify`], [`attach`] and [`list`]).
//! Unattached grants and the evidence of pruned tasks go with their objects
//! (`retention.rs`).

mod handler;
pub mod image;
mod repo;
pub mod retention;
mod store;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;

pub use store::{ObjectHead, ObjectStore, PresignedUpload, StoreError};

use crate::{
    config::EvidenceConfig,
    events::{Event, consumer::Registry, outbox},
    ids::{EvidenceId, StoreId, TaskId},
    stores::StoreDirectory,
};

/// The photo types a grant may name: what phones take, and what browsers show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum ContentType {
    #[serde(rename = "image/jpeg")]
    Jpeg,
    #[serde(rename = "image/png")]
    Png,
    #[serde(rename = "image/webp")]
    Webp,
}

crate::string_enum!(ContentType {
    Jpeg => "image/jpeg",
    Png => "image/png",
    Webp => "image/webp",
});

impl ContentType {
    pub fn mime(self) -> &'static str {
        self.as_str()
    }
}

/// Where a photo is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceState {
    /// An upload URL was handed out; nothing is known of an upload yet.
    Granted,
    /// Verified and attached to a completion; the thumbnail is on its way.
    Attached,
    /// Thumbnail made, dimensions and capture time recorded.
    Processed,
    /// Attached, but no thumbnail could be made (the reason is kept).
    Failed,
}

crate::string_enum!(EvidenceState {
    Granted => "granted",
    Attached => "attached",
    Processed => "processed",
    Failed => "failed",
});

/// A photo was attached to a completed task; the `evidence` group makes its thumbnail.
/// Public (webhooks): ids and metadata only, never a URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceAttached {
    pub evidence_id: EvidenceId,
    pub task_id: TaskId,
    pub store_id: StoreId,
    pub item_key: String,
    pub content_type: ContentType,
    pub size_bytes: i64,
    pub attached_at: DateTime<Utc>,
}

impl Event for EvidenceAttached {
    const ROUTING_KEY: &'static str = "evidence.attached";
}

/// Every routing key this module emits.
pub const ROUTING_KEYS: &[&str] = &[EvidenceAttached::ROUTING_KEY];

/// The consumer group that makes thumbnails.
pub const GROUP: &str = "evidence";

/// Evidence as it runs: settings and the store (None: not configured here).
#[derive(Clone)]
pub struct Evidence {
    pub config: EvidenceConfig,
    pub store: Option<ObjectStore>,
}

impl Evidence {
    pub fn new(config: &EvidenceConfig) -> Result<Self, StoreError> {
        Ok(Self {
            store: config.store.as_ref().map(ObjectStore::new).transpose()?,
            config: config.clone(),
        })
    }

    /// The store, or why photos cannot be taken here.
    pub fn store(&self) -> Result<&ObjectStore, NotConfigured> {
        self.store.as_ref().ok_or(NotConfigured)
    }
}

/// No object store is configured (`S3_BUCKET` unset).
#[derive(Debug, thiserror::Error)]
#[error("photo evidence is not configured on this server")]
pub struct NotConfigured;

/// What a grant hands the store app.
#[derive(Debug, Clone)]
pub struct Grant {
    pub id: EvidenceId,
    pub upload: PresignedUpload,
    pub expires_at: DateTime<Utc>,
    pub object_key: String,
}

/// The task a grant is for, as `tasks` vouches for it.
pub struct GrantFor<'a> {
    pub task_id: TaskId,
    pub store_id: StoreId,
    pub task_created_at: DateTime<Utc>,
    pub item_key: &'a str,
    pub content_type: ContentType,
    pub size_bytes: u64,
    pub granted_by: &'a str,
}

/// Records a grant and presigns its upload: one object key per photo, under its store
/// and task.
pub async fn grant(
    conn: &mut PgConnection,
    evidence: &Evidence,
    request: GrantFor<'_>,
) -> Result<Grant, GrantError> {
    let store = evidence.store()?;
    if request.size_bytes == 0 || request.size_bytes > evidence.config.max_bytes {
        return Err(GrantError::TooLarge(evidence.config.max_bytes));
    }
    let id = EvidenceId::generate();
    let object_key = store.key(&format!(
        "stores/{}/tasks/{}/{}",
        request.store_id, request.task_id, id
    ));
    let ttl = evidence.config.grant_ttl;
    let expires_at = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default();
    repo::insert(
        conn,
        &repo::NewGrant {
            id,
            task_id: request.task_id,
            store_id: request.store_id,
            item_key: request.item_key,
            content_type: request.content_type,
            size_bytes: i64::try_from(request.size_bytes).unwrap_or(i64::MAX),
            object_key: &object_key,
            granted_by: request.granted_by,
            expires_at,
            task_created_at: request.task_created_at,
        },
    )
    .await?;
    metrics::GRANTS.inc();
    Ok(Grant {
        id,
        upload: store.presign_upload(&object_key, request.content_type, request.size_bytes, ttl),
        expires_at,
        object_key,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(transparent)]
    NotConfigured(#[from] NotConfigured),
    #[error("a photo may be at most {0} bytes")]
    TooLarge(u64),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Why a photo answer is refused (each a 422 naming the item).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no such evidence for this task")]
    Unknown,
    #[error("this evidence was granted for another checklist item")]
    OtherItem,
    #[error("this evidence is already attached")]
    Reused,
    #[error("this evidence's grant has expired; ask for a new upload")]
    Expired,
    #[error("the photo has not been uploaded")]
    Missing,
    #[error("the uploaded photo does not have the granted size")]
    SizeMismatch,
    #[error("the uploaded photo does not have the granted content type")]
    TypeMismatch,
    #[error("the uploaded bytes are not an image of the granted type")]
    SignatureMismatch,
    #[error("the photo has more pixels than allowed")]
    TooManyPixels,
}

impl Refusal {
    /// The `outcome` label of `storeops_evidence_uploads_verified_total`.
    fn outcome(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::OtherItem => "other_item",
            Self::Reused => "reused",
            Self::Expired => "expired",
            Self::Missing => "missing",
            Self::SizeMismatch => "size_mismatch",
            Self::TypeMismatch => "type_mismatch",
            Self::SignatureMismatch => "signature_mismatch",
            Self::TooManyPixels => "too_many_pixels",
        }
    }
}

/// How much of a photo is read to check its signature and header: a JPEG's
/// dimensions may follow up to 64 KiB of metadata per segment.
const HEADER_BYTES: u64 = 256 << 10;

/// A photo answer that passed [`verify`]: attach it inside the completion's transaction.
#[derive(Debug, Clone)]
pub struct Verified {
    pub id: EvidenceId,
    pub item_key: String,
}

/// Checks the photos a completion names against their grants and the object store,
/// outside any transaction (no lock is held across the store's round trips). Answers
/// the verified ones, or each refusal with its item key.
pub async fn verify(
    db: &PgPool,
    evidence: &Evidence,
    task: TaskId,
    answers: &[(String, EvidenceId)],
) -> Result<Result<Vec<Verified>, Vec<(String, Refusal)>>, VerifyError> {
    if answers.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    let store = evidence.store()?;
    let ids: Vec<EvidenceId> = answers.iter().map(|(_, id)| *id).collect();
    let rows = repo::find_many(db, &ids).await?;
    let mut verified = Vec::new();
    let mut refused = Vec::new();
    let attach_until =
        chrono::Duration::from_std(evidence.config.attach_window).unwrap_or_default();
    for (key, id) in answers {
        let outcome = match rows.iter().find(|r| r.id == *id && r.task_id == task) {
            None => Err(Refusal::Unknown),
            Some(row) if row.item_key != *key => Err(Refusal::OtherItem),
            Some(row) if row.state != EvidenceState::Granted => Err(Refusal::Reused),
            Some(row) if Utc::now() > row.expires_at + attach_until => Err(Refusal::Expired),
            Some(row) => check_object(store, row, evidence.config.max_pixels).await?,
        };
        metrics::VERIFIED
            .with_label_values(&[outcome.err().map_or("accepted", Refusal::outcome)])
            .inc();
        match outcome {
            Ok(()) => verified.push(Verified {
                id: *id,
                item_key: key.clone(),
            }),
            Err(refusal) => refused.push((key.clone(), refusal)),
        }
    }
    Ok(if refused.is_empty() {
        Ok(verified)
    } else {
        Err(refused)
    })
}

async fn check_object(
    store: &ObjectStore,
    row: &repo::EvidenceRow,
    max_pixels: u64,
) -> Result<Result<(), Refusal>, StoreError> {
    let Some(head) = store.head(&row.object_key).await? else {
        return Ok(Err(Refusal::Missing));
    };
    if i64::try_from(head.size).ok() != Some(row.size_bytes) {
        return Ok(Err(Refusal::SizeMismatch));
    }
    if head
        .content_type
        .as_deref()
        .is_some_and(|t| t != row.content_type.mime())
    {
        return Ok(Err(Refusal::TypeMismatch));
    }
    let prefix = store.read_prefix(&row.object_key, HEADER_BYTES).await?;
    if image::sniff(&prefix) != Some(row.content_type) {
        return Ok(Err(Refusal::SignatureMismatch));
    }
    match image::dimensions(&prefix, row.content_type) {
        Some((w, h)) if u64::from(w) * u64::from(h) <= max_pixels => Ok(Ok(())),
        Some(_) => Ok(Err(Refusal::TooManyPixels)),
        None => Ok(Err(Refusal::SignatureMismatch)),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    NotConfigured(#[from] NotConfigured),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Attaches verified photos in the completion's transaction, with their
/// `evidence.attached` events. A photo another completion attached meanwhile is
/// refused (`Reused`): the row only moves from `granted` once.
pub async fn attach(
    conn: &mut PgConnection,
    task: TaskId,
    verified: &[Verified],
) -> Result<Result<(), Vec<(String, Refusal)>>, sqlx::Error> {
    let mut refused = Vec::new();
    for photo in verified {
        match repo::attach(conn, photo.id, task).await? {
            Some(row) => {
                metrics::BYTES.inc_by(u64::try_from(row.size_bytes).unwrap_or(0));
                outbox::enqueue(
                    conn,
                    &EvidenceAttached {
                        evidence_id: row.id,
                        task_id: row.task_id,
                        store_id: row.store_id,
                        item_key: row.item_key,
                        content_type: row.content_type,
                        size_bytes: row.size_bytes,
                        attached_at: row.attached_at.unwrap_or_else(Utc::now),
                    },
                )
                .await?;
            }
            None => refused.push((photo.item_key.clone(), Refusal::Reused)),
        }
    }
    Ok(if refused.is_empty() {
        Ok(())
    } else {
        Err(refused)
    })
}

/// A task's photo as a reviewer sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EvidenceDto {
    pub evidence_id: EvidenceId,
    pub item_key: String,
    pub content_type: ContentType,
    pub size_bytes: i64,
    pub state: EvidenceState,
    pub granted_by: String,
    pub attached_at: Option<DateTime<Utc>>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    /// When the camera says it was taken (EXIF), if it says.
    pub captured_at: Option<DateTime<Utc>>,
    /// The camera dates the photo before the task existed: the reviewer should look
    /// twice (it is not refused: clocks drift, photos are retaken).
    pub taken_before_task: Option<bool>,
    /// The original, for `url_ttl` (`urls_expire_at`).
    pub url: String,
    /// The thumbnail, once a worker made it.
    pub thumbnail_url: Option<String>,
    pub urls_expire_at: DateTime<Utc>,
    /// Why no thumbnail could be made.
    pub failure: Option<String>,
}

/// The attached photos of a task, with presigned URLs.
pub async fn list(
    db: &PgPool,
    evidence: &Evidence,
    task: TaskId,
    after: Option<EvidenceId>,
    limit: i64,
) -> Result<Vec<EvidenceDto>, VerifyError> {
    let store = evidence.store()?;
    let ttl = evidence.config.url_ttl;
    let expire = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default();
    Ok(repo::attached_of(db, task, after, limit)
        .await?
        .into_iter()
        .map(|row| EvidenceDto {
            url: store.presign_view(&row.object_key, ttl),
            thumbnail_url: row
                .thumbnail_key
                .as_deref()
                .map(|key| store.presign_view(key, ttl)),
            urls_expire_at: expire,
            evidence_id: row.id,
            item_key: row.item_key,
            content_type: row.content_type,
            size_bytes: row.size_bytes,
            state: row.state,
            granted_by: row.granted_by,
            attached_at: row.attached_at,
            width: row.width,
            height: row.height,
            captured_at: row.captured_at,
            taken_before_task: row.taken_before_task,
            failure: row.failure,
        })
        .collect())
}

/// The `evidence` group: thumbnails. `stores` tells each store's time zone (capture
/// times without an offset are the store's local time).
pub fn register_handlers(registry: &mut Registry, evidence: &Evidence, stores: StoreDirectory) {
    registry.subscribe::<EvidenceAttached>(
        GROUP,
        Arc::new(handler::Thumbnail {
            evidence: evidence.clone(),
            stores,
            // Decoding is the memory-heavy part: one photo at a time per process.
            decoding: Arc::new(tokio::sync::Semaphore::new(1)),
        }),
    );
}

pub mod metrics {
    use std::sync::LazyLock;

    use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts};

    use crate::metrics::register;

    pub static GRANTS: LazyLock<IntCounter> = LazyLock::new(|| {
        register(
            IntCounter::new(
                "storeops_evidence_grants_total",
                "Photo upload grants handed out",
            )
            .expect("valid metric"),
        )
    });

    pub static VERIFIED: LazyLock<IntCounterVec> = LazyLock::new(|| {
        register(
            IntCounterVec::new(
                Opts::new(
                    "storeops_evidence_uploads_verified_total",
                    "Photo answers checked at completion, by outcome (accepted, or why refused)",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
        )
    });

    pub static BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
        register(
            IntCounter::new(
                "storeops_evidence_bytes_total",
                "Bytes of photos attached to completed tasks",
            )
            .expect("valid metric"),
        )
    });

    pub static THUMBNAILS: LazyLock<IntCounterVec> = LazyLock::new(|| {
        register(
            IntCounterVec::new(
                Opts::new(
                    "storeops_evidence_thumbnails_total",
                    "Thumbnails made by the evidence workers, by outcome (made, failed)",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
        )
    });

    pub static THUMBNAIL_LAG: LazyLock<Histogram> = LazyLock::new(|| {
        register(
            Histogram::with_opts(
                HistogramOpts::new(
                    "storeops_evidence_thumbnail_lag_seconds",
                    "From a photo's attachment to its thumbnail",
                )
                .buckets(vec![
                    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
                ]),
            )
            .expect("valid metric"),
        )
    });

    pub fn init() {
        LazyLock::force(&GRANTS);
        LazyLock::force(&VERIFIED);
        LazyLock::force(&BYTES);
        LazyLock::force(&THUMBNAILS);
        LazyLock::force(&THUMBNAIL_LAG);
    }
}

impl From<GrantError> for crate::error::ApiError {
    fn from(error: GrantError) -> Self {
        match error {
            GrantError::NotConfigured(e) => Self::ServiceUnavailable(e.to_string()),
            GrantError::TooLarge(max) => {
                Self::validation("size_bytes", format!("must be at most {max} bytes"))
            }
            GrantError::Database(e) => e.into(),
        }
    }
}

impl From<VerifyError> for crate::error::ApiError {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::NotConfigured(e) => Self::ServiceUnavailable(e.to_string()),
            VerifyError::Store(e) => {
                tracing::warn!(error = %e, "object store unavailable");
                Self::ServiceUnavailable("the photo store is unavailable; retry shortly".to_owned())
            }
            VerifyError::Database(e) => e.into(),
        }
    }
}
