GRANT EXECUTE ON FUNCTION task_events_ensure_partitions(date, date) TO PUBLIC;
DROP SCHEMA reporting CASCADE;
-- The role is shared by every database of the cluster: drop it only when nothing
-- else refers to it.
DO $$
BEGIN
    DROP ROLE IF EXISTS storeops_analyst;
EXCEPTION WHEN dependent_objects_still_exist THEN
    RAISE NOTICE 'storeops_analyst is still used elsewhere in this cluster; kept';
END
$$;

DROP INDEX tasks_updated_idx;
DROP FUNCTION refresh_daily_store_stats(uuid[], date[], boolean);
DROP TABLE daily_stats_progress;

-- Fold the template dimension back into one row per (store, day, kind).
CREATE TEMP TABLE daily_store_stats_merged ON COMMIT DROP AS
SELECT store_id, day, kind, sum(tasks)::integer AS tasks, sum(done)::integer AS done,
       sum(done_on_time)::integer AS done_on_time, sum(expired)::integer AS expired,
       sum(cancelled)::integer AS cancelled, max(median_minutes_to_done) AS median_minutes_to_done,
       min(computed_at) AS computed_at
  FROM daily_store_stats GROUP BY store_id, day, kind;
DELETE FROM daily_store_stats;
DROP INDEX daily_store_stats_kind_idx;
DROP INDEX daily_store_stats_template_idx;
DROP INDEX daily_store_stats_day_idx;
ALTER TABLE daily_store_stats
    DROP CONSTRAINT daily_store_stats_key,
    DROP COLUMN template_id,
    DROP COLUMN overdue,
    DROP COLUMN final,
    ADD PRIMARY KEY (store_id, day, kind);
CREATE INDEX daily_store_stats_day_idx ON daily_store_stats (day);
INSERT INTO daily_store_stats (store_id, day, kind, tasks, done, done_on_time, expired, cancelled,
                               median_minutes_to_done, computed_at)
SELECT store_id, day, kind, tasks, done, done_on_time, expired, cancelled, median_minutes_to_done,
       computed_at
  FROM daily_store_stats_merged;
