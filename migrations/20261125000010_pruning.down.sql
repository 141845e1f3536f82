DROP INDEX webhook_deliveries_created_idx;
DROP INDEX tasks_closed_updated_idx;
DROP TABLE daily_store_stats;
