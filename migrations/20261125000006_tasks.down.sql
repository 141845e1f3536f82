DROP TABLE idempotency_keys;
DROP TABLE task_events;
DROP FUNCTION task_events_ensure_partitions(date, date);
DROP TABLE tasks;
DROP TABLE task_template_versions;
DROP TABLE task_templates;
