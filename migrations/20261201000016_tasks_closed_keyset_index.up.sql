-- no-transaction
-- Pruning walks closed tasks in (updated_at, id) order and continues from the last
-- task of its previous batch. Restarting each batch at the index's head would step over
-- every entry deleted so far that is not yet removable (a replica's hot_standby_feedback
-- holds the horizon back by seconds): the deleted entries piled up in front of it and
-- made each batch slower than the last. `id` breaks ties (a bulk expiry closes
-- thousands of tasks with one timestamp). Built concurrently: task writes never wait.
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_closed_updated_id_idx ON tasks (updated_at, id)
    WHERE status IN ('done', 'cancelled', 'expired');
