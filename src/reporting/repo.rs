//! Report queries, run on a reporting connection (a replica or the primary) with
//! tokio-postgres. Compliance reads the daily statistics (kept fresh by
//! [`super::stats`]), so a month of a 1,000-store chain is a few hundred thousand
//! summary rows rather than millions of tasks; the overdue report reads open tasks now.

use chrono::{DateTime, NaiveDate, Utc};
use tokio_postgres::{Client, Row};
use uuid::Uuid;

use super::GroupBy;

/// Which stores a report covers (already narrowed to the caller's scope).
#[derive(Debug, Clone, Default)]
pub struct ReportScope {
    pub region: Option<String>,
    pub store: Option<Uuid>,
}

#[derive(Debug, Clone)]
pub struct ComplianceQuery {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub group_by: GroupBy,
    pub scope: ReportScope,
}

#[derive(Debug)]
pub struct ComplianceRow {
    pub key: String,
    pub code: Option<String>,
    pub name: String,
    pub tasks: i64,
    pub done: i64,
    pub done_on_time: i64,
    pub overdue: i64,
    pub expired: i64,
    pub cancelled: i64,
    pub median_minutes: Option<f64>,
}

/// The figures of a set of daily statistics rows `d`, and the median minutes to
/// complete: the median of the per-(store, day, kind, template) medians (exact medians
/// over months would need every task; weighting them by count would need a sort of
/// every summary row, about five times slower on a month of 1,000 stores).
const FIGURES: &str = "sum(d.tasks)::bigint AS tasks, sum(d.done)::bigint AS done,
    sum(d.done_on_time)::bigint AS done_on_time, sum(d.overdue)::bigint AS overdue,
    sum(d.expired)::bigint AS expired, sum(d.cancelled)::bigint AS cancelled,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY d.median_minutes_to_done)
        FILTER (WHERE d.done > 0) AS minutes";

/// The scope filters on a store `s` (and its region `r`): $3 region code, $4 store id.
const SCOPE: &str = "($3::text IS NULL OR r.code = $3) AND ($4::uuid IS NULL OR s.id = $4)";

/// Each group's rows are read from a covering index, group by group (per store: the
/// statistics key's range for that store; per template or kind: its own partial
/// index), so nothing is sorted but each group's medians. The SQL is assembled from
/// constants only; every value is a bound parameter.
fn compliance_sql(group_by: GroupBy) -> String {
    match group_by {
        GroupBy::Store => format!(
            "SELECT s.id::text, s.code, s.name, a.*
               FROM stores s JOIN regions r ON r.id = s.region_id
              CROSS JOIN LATERAL (
                  SELECT {FIGURES} FROM daily_store_stats d
                   WHERE d.store_id = s.id AND d.day BETWEEN $1 AND $2) a
              WHERE {SCOPE} AND a.tasks IS NOT NULL
              ORDER BY s.name, s.id"
        ),
        GroupBy::Region => format!(
            "SELECT r.code, r.code, r.name, a.*
               FROM regions r
              CROSS JOIN LATERAL (
                  SELECT {FIGURES} FROM stores s
                    JOIN daily_store_stats d ON d.store_id = s.id AND d.day BETWEEN $1 AND $2
                   WHERE s.region_id = r.id AND {SCOPE}) a
              WHERE a.tasks IS NOT NULL
              ORDER BY r.name, r.code"
        ),
        GroupBy::Template => {
            // The groups: every template, and each kind for tasks without one.
            let kinds = crate::ids::TaskKind::ALL
                .iter()
                .map(|k| format!("('{}')", k.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            let scope = "($3::text IS NULL OR d.store_id IN (
                              SELECT s.id FROM stores s JOIN regions r ON r.id = s.region_id
                               WHERE r.code = $3))
                          AND ($4::uuid IS NULL OR d.store_id = $4)";
            format!(
                "SELECT tt.id::text, NULL::text, tv.title, a.*
                   FROM task_templates tt
                   JOIN task_template_versions tv
                     ON tv.template_id = tt.id AND tv.version = tt.current_version
                  CROSS JOIN LATERAL (
                      SELECT {FIGURES} FROM daily_store_stats d
                       WHERE d.template_id = tt.id AND d.day BETWEEN $1 AND $2 AND {scope}) a
                  WHERE a.tasks IS NOT NULL
                 UNION ALL
                 SELECT 'kind:' || k.kind, NULL::text, 'Without template (' || k.kind || ')', a.*
                   FROM (VALUES {kinds}) AS k (kind)
                  CROSS JOIN LATERAL (
                      SELECT {FIGURES} FROM daily_store_stats d
                       WHERE d.template_id IS NULL AND d.kind = k.kind
                         AND d.day BETWEEN $1 AND $2 AND {scope}) a
                  WHERE a.tasks IS NOT NULL
                  ORDER BY 3, 1"
            )
        }
    }
}

/// Sums per group, with the median minutes to complete (see [`FIGURES`]).
pub async fn compliance(
    client: &Client,
    query: &ComplianceQuery,
) -> Result<Vec<ComplianceRow>, tokio_postgres::Error> {
    let sql = compliance_sql(query.group_by);
    let rows = client
        .query(
            sql.as_str(),
            &[
                &query.from,
                &query.to,
                &query.scope.region,
                &query.scope.store,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| ComplianceRow {
            key: row.get(0),
            code: row.get(1),
            name: row.get(2),
            tasks: row.get(3),
            done: row.get(4),
            done_on_time: row.get(5),
            overdue: row.get(6),
            expired: row.get(7),
            cancelled: row.get(8),
            median_minutes: row.get(9),
        })
        .collect())
}

/// When the statistics job last caught up (None before its first run).
pub async fn statistics_refreshed_at(
    client: &Client,
) -> Result<Option<DateTime<Utc>>, tokio_postgres::Error> {
    let row = client
        .query_opt("SELECT refreshed_through FROM daily_stats_progress", &[])
        .await?;
    Ok(row.map(|r| r.get(0)))
}

#[derive(Debug)]
pub struct OverdueRow {
    pub store_id: Uuid,
    pub store_code: String,
    pub store_name: String,
    pub region: String,
    pub overdue: i64,
    pub escalated: i64,
    pub oldest_due_at: DateTime<Utc>,
}

/// Stores ranked by work still open past its due time, now.
pub async fn overdue(
    client: &Client,
    scope: &ReportScope,
    limit: i64,
) -> Result<Vec<OverdueRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            concat!(
                "SELECT s.id, s.code, s.name, r.code, count(*) AS overdue,
                    count(*) FILTER (WHERE t.overdue_level >= 2) AS escalated,
                    min(t.due_at) AS oldest_due_at
               FROM tasks t
               JOIN stores s ON s.id = t.store_id
               JOIN regions r ON r.id = s.region_id
              WHERE t.status IN ",
                crate::tasks::task_status_sql!(active),
                " AND t.due_at < now()
                AND ($1::text IS NULL OR r.code = $1)
                AND ($2::uuid IS NULL OR s.id = $2)
              GROUP BY s.id, s.code, s.name, r.code
              ORDER BY overdue DESC, oldest_due_at, s.code
              LIMIT $3"
            ),
            &[&scope.region, &scope.store, &limit],
        )
        .await?;
    Ok(rows.iter().map(overdue_row).collect())
}

fn overdue_row(row: &Row) -> OverdueRow {
    OverdueRow {
        store_id: row.get(0),
        store_code: row.get(1),
        store_name: row.get(2),
        region: row.get(3),
        overdue: row.get(4),
        escalated: row.get(5),
        oldest_due_at: row.get(6),
    }
}

/// The export: `reporting.tasks` rows whose due time falls on [from, to] in the
/// store's local calendar. COPY takes no bind parameters, so the filter values travel
/// as transaction-local settings set with bound parameters.
const EXPORT_COPY: &str = "
    COPY (
        SELECT v.* FROM reporting.tasks v
         WHERE v.due_at >= current_setting('storeops.export_from')::date - interval '1 day'
           AND v.due_at < current_setting('storeops.export_to')::date + interval '2 days'
           AND v.local_due_date BETWEEN current_setting('storeops.export_from')::date
                                    AND current_setting('storeops.export_to')::date
           AND (current_setting('storeops.export_region') = ''
                OR v.region_code = current_setting('storeops.export_region'))
           AND (current_setting('storeops.export_store') = ''
                OR v.store_id = NULLIF(current_setting('storeops.export_store'), '')::uuid)
    ) TO STDOUT WITH (FORMAT csv, HEADER true)";

#[derive(Debug, Clone)]
pub struct ExportQuery {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub scope: ReportScope,
}

/// Starts the export on `client` in a read-only snapshot; the rows arrive as the
/// server sends them (tokio-postgres applies backpressure), so memory stays flat.
/// The caller must send `COMMIT` after the stream ends.
pub async fn start_export(
    client: &Client,
    query: &ExportQuery,
) -> Result<tokio_postgres::CopyOutStream, tokio_postgres::Error> {
    client
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = 0",
        )
        .await?;
    let region = query.scope.region.clone().unwrap_or_default();
    let store = query.scope.store.map(|s| s.to_string()).unwrap_or_default();
    client
        .execute(
            "SELECT set_config('storeops.export_from', $1, true),
                    set_config('storeops.export_to', $2, true),
                    set_config('storeops.export_region', $3, true),
                    set_config('storeops.export_store', $4, true)",
            &[
                &query.from.to_string(),
                &query.to.to_string(),
                &region,
                &store,
            ],
        )
        .await?;
    client.copy_out(EXPORT_COPY).await
}
