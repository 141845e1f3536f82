DROP INDEX tasks_open_idx;
DROP INDEX tasks_expiry_scan_idx;
DROP INDEX tasks_overdue_scan_idx;
ALTER TABLE tasks DROP COLUMN overdue_level;
DROP TABLE scheduler_leases;
