-- Leader election for the scheduler role: one row per lease, held until expires_at and
-- renewed by its holder. Not an advisory lock: poolers and pool recycling drop those.
CREATE TABLE scheduler_leases (
    name         text PRIMARY KEY,
    holder       text NOT NULL,
    expires_at   timestamptz NOT NULL,
    acquired_at  timestamptz NOT NULL,
    renewed_at   timestamptz NOT NULL
);

-- Escalation state: 0 none, 1 the store manager was told (at due time), 2 the
-- regional manager was told (after the escalation delay). Not part of the ETag.
ALTER TABLE tasks ADD COLUMN overdue_level smallint NOT NULL DEFAULT 0;

-- The overdue job's scan: open work past its due time, not yet escalated fully.
CREATE INDEX tasks_overdue_scan_idx ON tasks (due_at)
    WHERE status IN ('open', 'in_progress') AND overdue_level < 2;
-- The expiry job's scan.
CREATE INDEX tasks_expiry_scan_idx ON tasks (expires_at)
    WHERE status IN ('open', 'in_progress', 'submitted') AND expires_at IS NOT NULL;
-- The state gauges: open work by store and kind.
CREATE INDEX tasks_open_idx ON tasks (store_id, kind, due_at)
    WHERE status IN ('open', 'in_progress', 'submitted');
