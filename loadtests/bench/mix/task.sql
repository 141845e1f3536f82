-- pgbench, the load's mix: opening a task (GET /tasks/{id}).
\set n random(1, :tasks)
SELECT t.id, t.store_id, r.code AS region, t.kind, t.source, t.title, t.description,
       t.template_id, t.template_version, t.campaign_id, t.status, t.priority, t.assignee_id,
       t.review_required, t.due_at, t.expires_at, t.answers, t.evidence, t.created_by, t.completed_by,
       t.created_at, t.updated_at, t.started_at, t.submitted_at, t.completed_at, t.cancelled_at, t.row_version
  FROM tasks t JOIN stores s ON s.id = t.store_id JOIN regions r ON r.id = s.region_id
 WHERE t.id = (SELECT id FROM bench_tasks WHERE n = :n);
