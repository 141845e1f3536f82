-- pgbench: what GET /reports/compliance?group_by=store&from=:from&to=:to runs for HQ
-- (src/reporting/repo.rs, group_by = store), on the same replica. -D from=... -D to=...
WITH scoped AS (
    SELECT d.store_id::text AS key, s.code AS code, s.name AS name, d.tasks, d.done, d.done_on_time,
           d.overdue, d.expired, d.cancelled, d.median_minutes_to_done
      FROM daily_store_stats d
      JOIN stores s ON s.id = d.store_id
      JOIN regions r ON r.id = s.region_id
     WHERE d.day BETWEEN :from::date AND :to::date
), grouped AS (
    SELECT key, min(code) AS code, min(name) AS name, sum(tasks)::bigint AS tasks,
           sum(done)::bigint AS done, sum(done_on_time)::bigint AS done_on_time,
           sum(overdue)::bigint AS overdue, sum(expired)::bigint AS expired,
           sum(cancelled)::bigint AS cancelled
      FROM scoped GROUP BY key
), weighted AS (
    SELECT key, median_minutes_to_done AS minutes,
           sum(done) OVER (PARTITION BY key ORDER BY median_minutes_to_done ROWS UNBOUNDED PRECEDING) AS running,
           sum(done) OVER (PARTITION BY key) AS total
      FROM scoped WHERE done > 0 AND median_minutes_to_done IS NOT NULL
), medians AS (
    SELECT DISTINCT ON (key) key, minutes FROM weighted WHERE running * 2 >= total ORDER BY key, running
)
SELECT g.key, g.code, g.name, g.tasks, g.done, g.done_on_time, g.overdue, g.expired, g.cancelled, m.minutes
  FROM grouped g LEFT JOIN medians m ON m.key = g.key
 ORDER BY g.name, g.key;
