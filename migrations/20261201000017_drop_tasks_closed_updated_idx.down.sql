-- no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_closed_updated_idx ON tasks (updated_at)
    WHERE status IN ('done', 'cancelled', 'expired');
