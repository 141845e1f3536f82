-- pgbench: what GET /reports/compliance?group_by=store&from=:from&to=:to runs for HQ
-- (src/reporting/repo.rs, compliance_sql(GroupBy::Store)), on the same replica.
SELECT s.id::text, s.code, s.name, a.*
  FROM stores s JOIN regions r ON r.id = s.region_id
 CROSS JOIN LATERAL (
     SELECT sum(d.tasks)::bigint AS tasks, sum(d.done)::bigint AS done,
            sum(d.done_on_time)::bigint AS done_on_time, sum(d.overdue)::bigint AS overdue,
            sum(d.expired)::bigint AS expired, sum(d.cancelled)::bigint AS cancelled,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY d.median_minutes_to_done)
                FILTER (WHERE d.done > 0) AS minutes
       FROM daily_store_stats d
      WHERE d.store_id = s.id AND d.day BETWEEN :from::date AND :to::date) a
 WHERE (NULL::text IS NULL OR r.code = NULL::text) AND (NULL::uuid IS NULL OR s.id = NULL::uuid)
   AND a.tasks IS NOT NULL
 ORDER BY s.name, s.id;
