DROP TABLE schedule_progress;
DROP INDEX tasks_occurrence_key;
ALTER TABLE tasks DROP COLUMN occurrence_at;
ALTER TABLE task_template_versions DROP COLUMN recurrence;
