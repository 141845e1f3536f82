-- pgbench: what GET /stores/{id}/tasks?status=open&limit=50 runs. The store's scope
-- lookup is served from the api's store cache, so the database sees only the list; the
-- subquery just turns pgbench's random number into a store id. One status: the api
-- sends `status = $2` then (src/tasks/repo.rs).
\set n random(1, 1000)
SELECT id, store_id, kind, source, title, status, priority, assignee_id, review_required,
       due_at, template_id, campaign_id, completed_at, row_version
  FROM tasks
 WHERE store_id = (SELECT id FROM bench_stores WHERE n = :n) AND status = 'open'
 ORDER BY due_at, id LIMIT 51;
