-- Recurring schedules live on template versions: {"frequency": "daily"|"weekly",
-- "at": "08:00", "weekdays": ["mon", "thu"], "due_window_minutes": 120, "target": {...}},
-- in each store's local time.
ALTER TABLE task_template_versions ADD COLUMN recurrence jsonb;

-- Each occurrence of a schedule exists once per store, whatever retries do.
ALTER TABLE tasks ADD COLUMN occurrence_at timestamptz;
CREATE UNIQUE INDEX tasks_occurrence_key ON tasks (template_id, store_id, occurrence_at)
    WHERE occurrence_at IS NOT NULL;

-- How far each template's schedule has been planned (published as schedule.due).
CREATE TABLE schedule_progress (
    template_id    uuid PRIMARY KEY REFERENCES task_templates (id) ON DELETE CASCADE,
    planned_until  timestamptz NOT NULL
);
