-- Reporting (PRODUCT §7, §9): daily statistics kept fresh by the scheduler, so reports
-- read a few hundred thousand summary rows instead of millions of tasks; a
-- `reporting` schema of views for analysts; and the `storeops_analyst` role.

-- Statistics per store, local day of the due time, kind and template (NULL: no
-- template), so compliance can be grouped by template too. `overdue` counts work still
-- open past its due time when the row was computed. `final` marks days that pruning
-- has touched: they are never recomputed from the tasks that are left.
ALTER TABLE daily_store_stats
    ADD COLUMN template_id uuid,
    ADD COLUMN overdue integer NOT NULL DEFAULT 0,
    ADD COLUMN final boolean NOT NULL DEFAULT false,
    DROP CONSTRAINT daily_store_stats_pkey,
    -- The figures ride along in the key's index, so a store's days are an index-only
    -- range scan in store order (the compliance report reads them store by store).
    ADD CONSTRAINT daily_store_stats_key UNIQUE NULLS NOT DISTINCT (store_id, day, kind, template_id)
        INCLUDE (tasks, done, done_on_time, overdue, expired, cancelled, median_minutes_to_done);

-- A day range across all stores (analysts' queries).
DROP INDEX daily_store_stats_day_idx;
CREATE INDEX daily_store_stats_day_idx ON daily_store_stats (day, store_id);
-- Compliance by template reads one template (or, without one, one kind) at a time,
-- index-only, with the figures riding along.
CREATE INDEX daily_store_stats_template_idx ON daily_store_stats (template_id, day)
    INCLUDE (store_id, tasks, done, done_on_time, overdue, expired, cancelled, median_minutes_to_done)
    WHERE template_id IS NOT NULL;
CREATE INDEX daily_store_stats_kind_idx ON daily_store_stats (kind, day)
    INCLUDE (store_id, tasks, done, done_on_time, overdue, expired, cancelled, median_minutes_to_done)
    WHERE template_id IS NULL;

-- Recomputes the statistics of the given (store, local day) pairs from their tasks;
-- the one definition of the numbers, used by the statistics job and by pruning (which
-- passes final = true for days it is about to thin out). Returns the rows written.
CREATE FUNCTION refresh_daily_store_stats(store_ids uuid[], days date[], final boolean)
RETURNS bigint LANGUAGE sql AS $$
    WITH pairs AS (
        SELECT DISTINCT p.store_id, p.day, s.time_zone
          FROM unnest(store_ids, days) AS p(store_id, day) JOIN stores s ON s.id = p.store_id
    ), written AS (
        INSERT INTO daily_store_stats (store_id, day, kind, template_id, tasks, done, done_on_time,
                                       overdue, expired, cancelled, median_minutes_to_done,
                                       computed_at, final)
        SELECT p.store_id, p.day, t.kind, t.template_id, count(*),
               count(*) FILTER (WHERE t.status = 'done'),
               count(*) FILTER (WHERE t.status = 'done' AND t.completed_at <= t.due_at),
               count(*) FILTER (WHERE t.status IN ('open', 'in_progress') AND t.due_at < now()),
               count(*) FILTER (WHERE t.status = 'expired'),
               count(*) FILTER (WHERE t.status = 'cancelled'),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM t.completed_at - t.created_at) / 60)
                   FILTER (WHERE t.status = 'done'),
               now(), final
          FROM pairs p
          JOIN tasks t ON t.store_id = p.store_id
                      AND t.due_at >= (p.day::timestamp AT TIME ZONE p.time_zone)
                      AND t.due_at < ((p.day + 1)::timestamp AT TIME ZONE p.time_zone)
         GROUP BY p.store_id, p.day, t.kind, t.template_id
        ON CONFLICT (store_id, day, kind, template_id) DO UPDATE
           SET tasks = EXCLUDED.tasks, done = EXCLUDED.done, done_on_time = EXCLUDED.done_on_time,
               overdue = EXCLUDED.overdue, expired = EXCLUDED.expired, cancelled = EXCLUDED.cancelled,
               median_minutes_to_done = EXCLUDED.median_minutes_to_done,
               computed_at = EXCLUDED.computed_at, final = EXCLUDED.final
         WHERE NOT daily_store_stats.final
        RETURNING 1
    )
    SELECT count(*) FROM written
$$;

-- How far the statistics job has caught up with task changes (one row).
CREATE TABLE daily_stats_progress (
    singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    refreshed_through  timestamptz NOT NULL,
    refreshed_at       timestamptz NOT NULL DEFAULT now()
);

-- The statistics job finds the (store, day) pairs whose tasks changed since its last run.
CREATE INDEX tasks_updated_idx ON tasks (updated_at);

CREATE SCHEMA reporting;
COMMENT ON SCHEMA reporting IS 'Views for analysts (docs/ANALYTICS.md); the only schema storeops_analyst can read.';

CREATE VIEW reporting.regions AS
SELECT id AS region_id, code AS region_code, name AS region_name, time_zone
  FROM regions;

CREATE VIEW reporting.stores AS
SELECT s.id AS store_id, s.code AS store_code, s.name AS store_name, r.code AS region_code,
       s.format, s.time_zone, s.created_at
  FROM stores s JOIN regions r ON r.id = s.region_id;

CREATE VIEW reporting.task_templates AS
SELECT v.template_id, v.version, v.title, v.kind, v.review_required, v.estimated_minutes,
       v.due_window_minutes, jsonb_array_length(v.checklist) AS checklist_items, v.created_at,
       v.version = t.current_version AS is_current
  FROM task_template_versions v JOIN task_templates t ON t.id = v.template_id;

-- One row per task. Free text written by staff (answers, evidence, description) stays
-- out: it may hold personal data and is not needed for analysis.
CREATE VIEW reporting.tasks AS
SELECT t.id AS task_id, s.id AS store_id, s.code AS store_code, r.code AS region_code,
       t.kind, t.source, t.title, t.template_id, t.template_version, t.campaign_id,
       t.status, t.priority, t.assignee_id, t.review_required,
       t.due_at, (t.due_at AT TIME ZONE s.time_zone)::date AS local_due_date,
       t.expires_at, t.created_at, t.started_at, t.submitted_at, t.completed_at,
       t.cancelled_at, t.updated_at,
       CASE WHEN t.status = 'done' THEN t.completed_at <= t.due_at END AS done_on_time,
       CASE WHEN t.status = 'done' THEN EXTRACT(EPOCH FROM t.completed_at - t.created_at) / 60 END
           AS minutes_to_complete,
       t.overdue_level
  FROM tasks t JOIN stores s ON s.id = t.store_id JOIN regions r ON r.id = s.region_id;

CREATE VIEW reporting.task_events AS
SELECT e.id AS event_id, e.task_id, e.store_id, e.occurred_at, e.kind, e.actor
  FROM task_events e;

CREATE VIEW reporting.campaigns AS
SELECT id AS campaign_id, title, kind, template_id, template_version, target, region_scope,
       due_at, created_by, created_at
  FROM campaigns;

CREATE VIEW reporting.daily_store_stats AS
SELECT d.store_id, s.code AS store_code, r.code AS region_code, d.day, d.kind, d.template_id,
       d.tasks, d.done, d.done_on_time, d.overdue, d.expired, d.cancelled,
       d.median_minutes_to_done,
       d.done::double precision / NULLIF(d.tasks - d.cancelled, 0) AS completion_rate,
       d.done_on_time::double precision / NULLIF(d.done, 0) AS on_time_rate,
       d.computed_at
  FROM daily_store_stats d JOIN stores s ON s.id = d.store_id JOIN regions r ON r.id = s.region_id;

-- The analysts' role: cluster-wide, so it may exist already (another database of the
-- same cluster). Logins are granted membership by the DBA: GRANT storeops_analyst TO x.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'storeops_analyst') THEN
        CREATE ROLE storeops_analyst NOLOGIN;
    END IF;
END
$$;
-- Views run with their owner's rights, so reading them needs no grant on base tables.
GRANT USAGE ON SCHEMA reporting TO storeops_analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO storeops_analyst;
-- Functions are executable by PUBLIC by default; the analyst has no business here.
REVOKE EXECUTE ON FUNCTION task_events_ensure_partitions(date, date) FROM PUBLIC;
