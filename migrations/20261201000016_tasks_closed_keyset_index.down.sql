-- no-transaction
DROP INDEX CONCURRENTLY IF EXISTS tasks_closed_updated_id_idx;
