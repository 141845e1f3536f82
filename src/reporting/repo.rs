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

/// The group key, its code and its display name, per grouping. Constants, never input.
fn group_columns(group_by: GroupBy) -> (&'static str, &'static str, &'static str) {
    match group_by {
        GroupBy::Region => ("r.code", "r.code", "r.name"),
        GroupBy::Store => ("d.store_id::text", "s.code", "s.name"),
        GroupBy::Template => (
            "coalesce(d.template_id::text, 'kind:' || d.kind)",
            "NULL::text",
            "coalesce(tv.title, 'Without template (' || d.kind || ')')",
        ),
    }
}

/// Sums per group; the median minutes to complete is the done-weighted median of the
/// per-store-day medians (exact medians over months would need every task).
pub async fn compliance(
    client: &Client,
    query: &ComplianceQuery,
) -> Result<Vec<ComplianceRow>, tokio_postgres::Error> {
    let (key, code, name) = group_columns(query.group_by);
    let template_join = if query.group_by == GroupBy::Template {
        "LEFT JOIN task_templates tt ON tt.id = d.template_id
         LEFT JOIN task_template_versions tv ON tv.template_id = tt.id AND tv.version = tt.current_version"
    } else {
        ""
    };
    let sql = format!(
        "WITH scoped AS (
             SELECT {key} AS key, {code} AS code, {name} AS name, d.tasks, d.done, d.done_on_time,
                    d.overdue, d.expired, d.cancelled, d.median_minutes_to_done
               FROM daily_store_stats d
               JOIN stores s ON s.id = d.store_id
               JOIN regions r ON r.id = s.region_id
               {template_join}
              WHERE d.day BETWEEN $1 AND $2
                AND ($3::text IS NULL OR r.code = $3)
                AND ($4::uuid IS NULL OR d.store_id = $4)
         ), grouped AS (
             SELECT key, min(code) AS code, min(name) AS name, sum(tasks)::bigint AS tasks,
                    sum(done)::bigint AS done, sum(done_on_time)::bigint AS done_on_time,
                    sum(overdue)::bigint AS overdue, sum(expired)::bigint AS expired,
                    sum(cancelled)::bigint AS cancelled
               FROM scoped GROUP BY key
         ), weighted AS (
             SELECT key, median_minutes_to_done AS minutes,
                    sum(done) OVER (PARTITION BY key ORDER BY median_minutes_to_done
                                    ROWS UNBOUNDED PRECEDING) AS running,
                    sum(done) OVER (PARTITION BY key) AS total
               FROM scoped WHERE done > 0 AND median_minutes_to_done IS NOT NULL
         ), medians AS (
             SELECT DISTINCT ON (key) key, minutes FROM weighted
              WHERE running * 2 >= total ORDER BY key, running
         )
         SELECT g.key, g.code, g.name, g.tasks, g.done, g.done_on_time, g.overdue, g.expired,
                g.cancelled, m.minutes
           FROM grouped g LEFT JOIN medians m ON m.key = g.key
          ORDER BY g.name, g.key"
    );
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
            "SELECT s.id, s.code, s.name, r.code, count(*) AS overdue,
                    count(*) FILTER (WHERE t.overdue_level >= 2) AS escalated,
                    min(t.due_at) AS oldest_due_at
               FROM tasks t
               JOIN stores s ON s.id = t.store_id
               JOIN regions r ON r.id = s.region_id
              WHERE t.status IN ('open', 'in_progress') AND t.due_at < now()
                AND ($1::text IS NULL OR r.code = $1)
                AND ($2::uuid IS NULL OR s.id = $2)
              GROUP BY s.id, s.code, s.name, r.code
              ORDER BY overdue DESC, oldest_due_at, s.code
              LIMIT $3",
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
