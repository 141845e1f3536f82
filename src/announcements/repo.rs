//! SQL for announcements, their deliveries (one per store) and receipts (one per staff
//! member of a store).

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::{PgConnection, PgPool, types::Json};

use super::{AnnouncementStatus, Audience, dto::MyAnnouncementDto};
use crate::{
    ids::{AnnouncementId, RegionCode, StoreId},
    stores::Target,
    tasks::Priority,
};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AnnouncementRow {
    pub id: AnnouncementId,
    pub title: String,
    pub body: String,
    pub priority: Priority,
    pub target: Json<Target>,
    pub region_scope: Option<RegionCode>,
    pub audience: Audience,
    pub requires_ack: bool,
    pub publish_at: Option<DateTime<Utc>>,
    pub publish_local: Option<NaiveDateTime>,
    pub expires_at: Option<DateTime<Utc>>,
    pub supersedes: Option<AnnouncementId>,
    pub status: AnnouncementStatus,
    pub target_count: Option<i32>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub fanned_out_at: Option<DateTime<Utc>>,
    pub published_at: Option<DateTime<Utc>>,
}

impl AnnouncementRow {
    /// The status as readers see it: `expired` once `expires_at` has passed.
    pub fn status_at(&self, now: DateTime<Utc>) -> AnnouncementStatus {
        match self.expires_at {
            Some(at) if at <= now && self.status != AnnouncementStatus::Draft => {
                AnnouncementStatus::Expired
            }
            _ => self.status,
        }
    }
}

const COLUMNS: &str = "id, title, body, priority, target, region_scope, audience, requires_ack,
    publish_at, publish_local, expires_at, supersedes, status, target_count, created_by,
    created_at, fanned_out_at, published_at";

pub async fn insert(conn: &mut PgConnection, row: &AnnouncementRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO announcements (id, title, body, priority, target, region_scope, audience,
                                    requires_ack, publish_at, publish_local, expires_at,
                                    supersedes, status, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(row.id)
    .bind(&row.title)
    .bind(&row.body)
    .bind(row.priority)
    .bind(&row.target)
    .bind(&row.region_scope)
    .bind(row.audience)
    .bind(row.requires_ack)
    .bind(row.publish_at)
    .bind(row.publish_local)
    .bind(row.expires_at)
    .bind(row.supersedes)
    .bind(row.status)
    .bind(&row.created_by)
    .execute(conn)
    .await
    .map(drop)
}

pub async fn find(
    conn: &mut PgConnection,
    id: AnnouncementId,
    lock: bool,
) -> Result<Option<AnnouncementRow>, sqlx::Error> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM announcements WHERE id = $1{lock}"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The correction of `id`, if one was made.
pub async fn superseded_by(
    conn: &mut PgConnection,
    id: AnnouncementId,
) -> Result<Option<AnnouncementId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM announcements WHERE supersedes = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// A draft becomes scheduled, to be seen from `publish_at` (now unless it names a time).
pub async fn schedule_draft(
    conn: &mut PgConnection,
    id: AnnouncementId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE announcements SET status = 'scheduled',
                publish_at = CASE WHEN publish_local IS NULL THEN COALESCE(publish_at, now()) END
          WHERE id = $1 AND status = 'draft'",
    )
    .bind(id)
    .execute(conn)
    .await
    .map(drop)
}

/// Delivers `row` to `stores` (those already delivered keep their row): each store
/// sees it from `publish_at`, or from `publish_local` in the store's own time zone.
/// Returns how many deliveries were new.
pub async fn deliver(
    conn: &mut PgConnection,
    row: &AnnouncementRow,
    stores: &[StoreId],
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO announcement_deliveries (announcement_id, store_id, visible_at)
         SELECT $1, s.id, COALESCE($3, $4::timestamp AT TIME ZONE s.time_zone, now())
           FROM stores s WHERE s.id = ANY($2)
         ON CONFLICT (announcement_id, store_id) DO NOTHING",
    )
    .bind(row.id)
    .bind(stores)
    .bind(row.publish_at)
    .bind(row.publish_local)
    .execute(conn)
    .await
    .map(|r| r.rows_affected())
}

pub async fn mark_delivered(
    conn: &mut PgConnection,
    id: AnnouncementId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE announcements SET fanned_out_at = now(),
                target_count = (SELECT count(*) FROM announcement_deliveries WHERE announcement_id = $1)
          WHERE id = $1",
    )
    .bind(id)
    .execute(conn)
    .await
    .map(drop)
}

/// Scheduled, delivered announcements that some store may now see become published
/// (`only`: just that one), at most `limit`; returns them. The status condition makes
/// this once per announcement whoever runs it (the fan-out or the scheduler's job).
pub async fn publish_due(
    conn: &mut PgConnection,
    only: Option<AnnouncementId>,
    limit: i64,
) -> Result<Vec<AnnouncementRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH due AS (
            SELECT a.id FROM announcements a
             WHERE a.status = 'scheduled' AND a.fanned_out_at IS NOT NULL
               AND ($1::uuid IS NULL OR a.id = $1)
               AND EXISTS (SELECT 1 FROM announcement_deliveries d
                            WHERE d.announcement_id = a.id AND d.visible_at <= now())
             LIMIT $2
             FOR UPDATE SKIP LOCKED
         )
         UPDATE announcements a SET status = 'published', published_at = now()
           FROM due WHERE a.id = due.id
         RETURNING {}",
        COLUMNS
            .split(',')
            .map(|c| format!("a.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    )))
    .bind(only)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Announcements still in force delivered before a store opened (stores added to a
/// region later): marked undelivered and returned, to be delivered again.
pub async fn redeliver_for_new_stores(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<AnnouncementId>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH stale AS (
            SELECT a.id FROM announcements a
             WHERE a.status IN ('scheduled', 'published') AND a.fanned_out_at IS NOT NULL
               AND (a.expires_at IS NULL OR a.expires_at > now())
               AND EXISTS (SELECT 1 FROM stores s WHERE s.created_at > a.fanned_out_at)
             LIMIT $1
             FOR UPDATE SKIP LOCKED
         )
         UPDATE announcements a SET fanned_out_at = NULL FROM stale WHERE a.id = stale.id
         RETURNING a.id",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Receipts figures of one region (or of all of them).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RegionCounts {
    pub region: RegionCode,
    pub targeted: i64,
    pub reached: i64,
    pub read: i64,
    pub acknowledged: i64,
}

pub async fn progress_by_region(
    db: &PgPool,
    id: AnnouncementId,
) -> Result<Vec<RegionCounts>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.code AS region, count(*) AS targeted,
                count(*) FILTER (WHERE d.visible_at <= now()) AS reached,
                count(*) FILTER (WHERE d.visible_at <= now() AND c.readers > 0) AS read,
                count(*) FILTER (WHERE d.visible_at <= now() AND c.acknowledgers > 0) AS acknowledged
           FROM announcement_deliveries d
           JOIN stores s ON s.id = d.store_id JOIN regions r ON r.id = s.region_id
           LEFT JOIN LATERAL (
               SELECT count(*) AS readers, count(acknowledged_at) AS acknowledgers
                 FROM announcement_receipts c
                WHERE c.announcement_id = d.announcement_id AND c.store_id = d.store_id
           ) c ON true
          WHERE d.announcement_id = $1
          GROUP BY r.code ORDER BY r.code",
    )
    .bind(id)
    .fetch_all(db)
    .await
}

#[derive(Debug, sqlx::FromRow)]
pub struct StoreReceiptsRow {
    pub store_id: StoreId,
    pub store_code: String,
    pub store_name: String,
    pub region: RegionCode,
    pub visible_at: DateTime<Utc>,
    pub read_by: i64,
    pub acknowledged_by: i64,
    pub reminder_level: i16,
}

pub async fn stores(
    db: &PgPool,
    id: AnnouncementId,
    unacknowledged: bool,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<StoreReceiptsRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.id AS store_id, s.code AS store_code, s.name AS store_name, r.code AS region,
                d.visible_at, d.reminder_level,
                count(c.read_at) AS read_by, count(c.acknowledged_at) AS acknowledged_by
           FROM announcement_deliveries d
           JOIN stores s ON s.id = d.store_id JOIN regions r ON r.id = s.region_id
           LEFT JOIN announcement_receipts c
             ON c.announcement_id = d.announcement_id AND c.store_id = d.store_id
          WHERE d.announcement_id = $1 AND ($2::text IS NULL OR s.code > $2)
          GROUP BY s.id, s.code, s.name, r.code, d.visible_at, d.reminder_level
         HAVING NOT $3 OR count(c.acknowledged_at) = 0
          ORDER BY s.code LIMIT $4",
    )
    .bind(id)
    .bind(after)
    .bind(unacknowledged)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Every receipt of an announcement by store code, with stores that have none, for the
/// CSV export.
#[derive(Debug, sqlx::FromRow)]
pub struct ReceiptLine {
    pub store_code: String,
    pub region: RegionCode,
    pub visible_at: DateTime<Utc>,
    pub staff_subject: Option<String>,
    pub read_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
}

pub async fn receipt_lines(
    db: &PgPool,
    id: AnnouncementId,
) -> Result<Vec<ReceiptLine>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.code AS store_code, r.code AS region, d.visible_at, c.staff_subject, c.read_at,
                c.acknowledged_at
           FROM announcement_deliveries d
           JOIN stores s ON s.id = d.store_id JOIN regions r ON r.id = s.region_id
           LEFT JOIN announcement_receipts c
             ON c.announcement_id = d.announcement_id AND c.store_id = d.store_id
          WHERE d.announcement_id = $1
          ORDER BY s.code, c.staff_subject",
    )
    .bind(id)
    .fetch_all(db)
    .await
}

/// Who is reading: their store, subject and the audiences that include them.
pub struct Reader<'a> {
    pub store: StoreId,
    pub subject: &'a str,
    pub audiences: [Audience; 2],
}

/// What a staff member sees, in force, newest first, after `(visible_at, id)`.
pub async fn for_staff(
    db: &PgPool,
    reader: &Reader<'_>,
    unread: bool,
    after: Option<(DateTime<Utc>, AnnouncementId)>,
    limit: i64,
) -> Result<Vec<MyAnnouncementDto>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.id, a.title, a.body, a.priority, a.requires_ack, d.visible_at, a.expires_at,
                a.supersedes, n.id AS superseded_by, c.read_at, c.acknowledged_at
           FROM announcement_deliveries d
           JOIN announcements a ON a.id = d.announcement_id
           LEFT JOIN announcements n ON n.supersedes = a.id AND n.status = 'published'
           LEFT JOIN announcement_receipts c ON c.announcement_id = d.announcement_id
                 AND c.store_id = d.store_id AND c.staff_subject = $2
          WHERE d.store_id = $1 AND d.visible_at <= now()
            AND (a.expires_at IS NULL OR a.expires_at > now())
            AND a.audience = ANY($3)
            AND (NOT $4 OR c.read_at IS NULL)
            AND ($5::timestamptz IS NULL OR (d.visible_at, d.announcement_id) < ($5, $6))
          ORDER BY d.visible_at DESC, d.announcement_id DESC
          LIMIT $7",
    )
    .bind(reader.store)
    .bind(reader.subject)
    .bind(&reader.audiences[..])
    .bind(unread)
    .bind(after.map(|(at, _)| at))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The state a staff member's list is drawn from, as counters that only grow while the
/// list stays the same: time passing (visible, expired), corrections published and
/// the reader's own receipts. Any change of the list changes one of them.
pub async fn list_state(db: &PgPool, reader: &Reader<'_>) -> Result<[i64; 6], sqlx::Error> {
    let row: (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*),
                count(*) FILTER (WHERE d.visible_at <= now()),
                count(*) FILTER (WHERE a.expires_at <= now()),
                count(*) FILTER (WHERE EXISTS (SELECT 1 FROM announcements n
                                                WHERE n.supersedes = a.id AND n.status = 'published')),
                count(c.read_at), count(c.acknowledged_at)
           FROM announcement_deliveries d
           JOIN announcements a ON a.id = d.announcement_id
           LEFT JOIN announcement_receipts c ON c.announcement_id = d.announcement_id
                 AND c.store_id = d.store_id AND c.staff_subject = $2
          WHERE d.store_id = $1 AND a.audience = ANY($3)",
    )
    .bind(reader.store)
    .bind(reader.subject)
    .bind(&reader.audiences[..])
    .fetch_one(db)
    .await?;
    Ok([row.0, row.1, row.2, row.3, row.4, row.5])
}

/// Whether the reader may see the announcement now: `None` when it is not theirs to see
/// (not delivered to their store, not yet visible there, another audience), else
/// whether it has expired. Locks the delivery so receipts wait for a deleting prune.
pub async fn visible_to(
    conn: &mut PgConnection,
    reader: &Reader<'_>,
    id: AnnouncementId,
) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE(a.expires_at <= now(), false)
           FROM announcement_deliveries d JOIN announcements a ON a.id = d.announcement_id
          WHERE d.announcement_id = $1 AND d.store_id = $2 AND d.visible_at <= now()
            AND a.audience = ANY($3)
          FOR SHARE OF d",
    )
    .bind(id)
    .bind(reader.store)
    .bind(&reader.audiences[..])
    .fetch_optional(conn)
    .await
}

/// Records that the reader read it; true the first time.
pub async fn record_read(
    conn: &mut PgConnection,
    reader: &Reader<'_>,
    id: AnnouncementId,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "INSERT INTO announcement_receipts (announcement_id, store_id, staff_subject, read_at)
         VALUES ($1, $2, $3, now())
         ON CONFLICT (announcement_id, store_id, staff_subject) DO NOTHING",
    )
    .bind(id)
    .bind(reader.store)
    .bind(reader.subject)
    .execute(conn)
    .await
    .map(|r| r.rows_affected() == 1)
}

/// Records the reader's acknowledgement (after [`record_read`]): its time the first
/// time, None when they had acknowledged already. The row lock makes a concurrent second
/// acknowledgement wait and then find it set.
pub async fn record_acknowledgement(
    conn: &mut PgConnection,
    reader: &Reader<'_>,
    id: AnnouncementId,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE announcement_receipts SET acknowledged_at = now()
          WHERE announcement_id = $1 AND store_id = $2 AND staff_subject = $3
            AND acknowledged_at IS NULL
         RETURNING acknowledged_at",
    )
    .bind(id)
    .bind(reader.store)
    .bind(reader.subject)
    .fetch_optional(conn)
    .await
}

pub async fn receipt(
    conn: &mut PgConnection,
    reader: &Reader<'_>,
    id: AnnouncementId,
) -> Result<(DateTime<Utc>, Option<DateTime<Utc>>), sqlx::Error> {
    sqlx::query_as(
        "SELECT read_at, acknowledged_at FROM announcement_receipts
          WHERE announcement_id = $1 AND store_id = $2 AND staff_subject = $3",
    )
    .bind(id)
    .bind(reader.store)
    .bind(reader.subject)
    .fetch_one(conn)
    .await
}
