-- pgbench, the load's mix: a sync from a recent token (the watermark, then the log).
\set n random(1, :stores)
SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin,
       (SELECT pruned_below FROM task_changes_horizon) AS pruned \gset
SELECT xid, seq, task_id FROM task_changes
 WHERE store_id = (SELECT id FROM bench_stores WHERE n = :n)
   AND (xid, seq) > (:xmin::bigint - 1000, 0) AND xid < :xmin::bigint
 ORDER BY xid, seq LIMIT 100;
