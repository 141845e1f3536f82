-- pgbench: what GET /reports/compliance?group_by=store&from=:from&to=:to runs for HQ
-- (src/reporting/repo.rs, group_by = store), on the same replica. -D from=... -D to=...
WITH g AS (
    SELECT d.store_id, sum(d.tasks)::bigint AS tasks, sum(d.done)::bigint AS done,
           sum(d.done_on_time)::bigint AS done_on_time, sum(d.overdue)::bigint AS overdue,
           sum(d.expired)::bigint AS expired, sum(d.cancelled)::bigint AS cancelled,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY d.median_minutes_to_done)
               FILTER (WHERE d.done > 0) AS minutes
      FROM daily_store_stats d
     WHERE d.day BETWEEN :from::date AND :to::date
       AND (NULL::text IS NULL OR d.store_id IN (
               SELECT s.id FROM stores s JOIN regions r ON r.id = s.region_id WHERE r.code = NULL::text))
       AND (NULL::uuid IS NULL OR d.store_id = NULL::uuid)
     GROUP BY d.store_id
)
SELECT s.id::text AS key, s.code AS code, s.name AS name, g.tasks, g.done, g.done_on_time,
       g.overdue, g.expired, g.cancelled, g.minutes
  FROM g JOIN stores s ON s.id = g.store_id
 ORDER BY 3, 1;
