-- no-transaction
-- Superseded by tasks_closed_updated_id_idx (migration 16), which serves every query
-- this one did; one index fewer to write on every closed task.
DROP INDEX CONCURRENTLY IF EXISTS tasks_closed_updated_idx;
