-- pgbench, the load's mix: a poll that answers 200 (the version, then the list).
\set n random(1, :stores)
SELECT id AS store FROM bench_stores WHERE n = :n \gset
SELECT version FROM store_versions WHERE store_id = :store;
SELECT id, store_id, kind, source, title, status, priority, assignee_id,
       review_required, due_at, template_id, campaign_id, completed_at, row_version
  FROM tasks WHERE store_id = :store AND status = ANY('{open,in_progress}')
 ORDER BY due_at, id LIMIT 51;
