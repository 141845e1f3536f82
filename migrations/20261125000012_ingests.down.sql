DROP VIEW reporting.ingests;
DROP VIEW reporting.task_items;
DROP TABLE task_items;
DROP INDEX tasks_open_restock_key;
DROP INDEX tasks_delivery_key;
DROP INDEX tasks_ingest_store_key;
ALTER TABLE tasks DROP COLUMN external_ref, DROP COLUMN ingest_id;
DROP TABLE ingest_chunks;
DROP TABLE ingests;
