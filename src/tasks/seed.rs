//! The demo chain's past work (`storeops seed --days D`): closed tasks with their audit
//! events, written set-based like every other bulk task write.

use sqlx::{Postgres, Transaction};

/// One past day of work per store: each template's task, plus ad-hoc ones, ~10 a
/// store, mostly done on time, some late, some expired or cancelled. Ids are v7
/// (time-ordered) and derived from the day, store and slot, so re-runs add nothing.
pub async fn insert_history_day(
    tx: &mut Transaction<'_, Postgres>,
    days_ago: u32,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "SELECT task_events_ensure_partitions((current_date - $1::int)::date, current_date)",
    )
    .bind(i32::try_from(days_ago).unwrap_or(i32::MAX))
    .execute(&mut **tx)
    .await?;
    let inserted: i64 = sqlx::query_scalar(
        "WITH slots AS (
            SELECT s.id AS store_id, s.time_zone, g AS slot,
                   ((current_date - $1::int) + time '07:00' + g * interval '75 minutes') AT TIME ZONE s.time_zone AS created_at,
                   abs(hashtext(s.id::text || $1::text || g::text)) % 100 AS fate
              FROM stores s CROSS JOIN generate_series(0, 9) g
         ), shaped AS (
            SELECT sl.*, created_at + interval '3 hours' AS due_at,
                   (lpad(to_hex((extract(epoch FROM created_at) * 1000)::bigint), 12, '0') || '7'
                     || substr(md5(store_id::text || $1::text || slot::text), 1, 3) || '8'
                     || substr(md5(store_id::text || $1::text || slot::text), 4, 15))::uuid AS id,
                   t.id AS template_id, t.title AS template_title, t.review_required
              FROM slots sl
              LEFT JOIN LATERAL (
                  SELECT tt.id, v.title, v.review_required FROM task_templates tt
                    JOIN task_template_versions v ON v.template_id = tt.id AND v.version = 1
                   WHERE tt.created_by = 'seed' ORDER BY tt.id OFFSET sl.slot LIMIT 1
              ) t ON sl.slot < 5
         ), inserted AS (
         INSERT INTO tasks (id, store_id, kind, source, title, template_id, template_version, status,
                            review_required, due_at, created_by, completed_by, created_at, updated_at,
                            started_at, completed_at, cancelled_at, answers)
         SELECT id, store_id,
                CASE WHEN template_id IS NULL THEN 'adhoc' ELSE 'checklist' END,
                CASE WHEN template_id IS NULL THEN 'manual' ELSE 'schedule' END,
                COALESCE(template_title, 'Restock and tidy aisle ' || (slot - 4)),
                template_id, CASE WHEN template_id IS NULL THEN NULL ELSE 1 END,
                CASE WHEN fate < 90 THEN 'done' WHEN fate < 96 THEN 'expired' ELSE 'cancelled' END,
                COALESCE(review_required, false), due_at, 'seed',
                CASE WHEN fate < 90 THEN 'seed' END,
                created_at, created_at + interval '4 hours',
                CASE WHEN fate < 90 THEN created_at + interval '20 minutes' END,
                CASE WHEN fate < 80 THEN created_at + (fate % 170) * interval '1 minute'
                     WHEN fate < 90 THEN due_at + (fate % 10 + 1) * interval '25 minutes' END,
                CASE WHEN fate >= 96 THEN created_at + interval '1 hour' END,
                CASE WHEN fate < 90 THEN '{}'::jsonb END
           FROM shaped
         ON CONFLICT (id) DO NOTHING
         RETURNING id, store_id, created_at, completed_at, cancelled_at
         ), events AS (
         INSERT INTO task_events (id, task_id, store_id, occurred_at, kind, actor, data)
         SELECT gen_random_uuid(), i.id, i.store_id, e.at, e.kind, 'seed', '{}'
           FROM inserted i
          CROSS JOIN LATERAL (VALUES ('created', i.created_at), ('completed', i.completed_at),
                                     ('cancelled', i.cancelled_at)) AS e(kind, at)
          WHERE e.at IS NOT NULL
         )
         SELECT count(*) FROM inserted",
    )
    .bind(i32::try_from(days_ago).unwrap_or(i32::MAX))
    .fetch_one(&mut **tx)
    .await?;
    Ok(u64::try_from(inserted).unwrap_or_default())
}
