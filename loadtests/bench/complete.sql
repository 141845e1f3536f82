-- pgbench: the transaction POST /tasks/{id}/complete runs (lock, update, re-read, audit event, outbox).
\set n random(1, :pool)
SELECT id FROM bench_complete WHERE n = :n \gset
BEGIN;
SELECT t.id, t.store_id, r.code AS region, t.kind, t.status, t.review_required, t.row_version, t.assignee_id
  FROM tasks t JOIN stores s ON s.id = t.store_id JOIN regions r ON r.id = s.region_id
 WHERE t.id = :id FOR UPDATE OF t;
UPDATE tasks SET status = 'done', row_version = row_version + 1, updated_at = now(),
       completed_at = now(), completed_by = 'bench', answers = '{}', evidence = '[]'
 WHERE id = :id;
SELECT t.id, t.store_id, r.code AS region, t.kind, t.source, t.title, t.description,
       t.template_id, t.template_version, t.campaign_id, t.status, t.priority, t.assignee_id,
       t.review_required, t.due_at, t.expires_at, t.answers, t.evidence, t.created_by, t.completed_by,
       t.created_at, t.updated_at, t.started_at, t.submitted_at, t.completed_at, t.cancelled_at, t.row_version
  FROM tasks t JOIN stores s ON s.id = t.store_id JOIN regions r ON r.id = s.region_id WHERE t.id = :id;
INSERT INTO task_events (id, task_id, store_id, kind, actor, data)
  SELECT gen_random_uuid(), id, store_id, 'completed', 'bench', '{}' FROM tasks WHERE id = :id;
INSERT INTO outbox (id, routing_key, payload, headers) VALUES (uuid_v7(), 'task.completed', '{"bench": true}', '{}');
COMMIT;
