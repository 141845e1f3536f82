-- Task templates, versioned: a PATCH writes a new version; tasks keep the one they
-- were created from.
CREATE TABLE task_templates (
    id               uuid PRIMARY KEY,
    current_version  integer NOT NULL DEFAULT 1,
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE task_template_versions (
    template_id         uuid NOT NULL REFERENCES task_templates (id) ON DELETE CASCADE,
    version             integer NOT NULL,
    title               text NOT NULL,
    description         text,
    kind                text NOT NULL,
    -- [{"key": "shelf_clean", "label": "...", "type": "check|number|text|photo", "required": true}]
    checklist           jsonb NOT NULL DEFAULT '[]',
    review_required     boolean NOT NULL DEFAULT false,
    estimated_minutes   integer,
    due_window_minutes  integer NOT NULL DEFAULT 1440,
    created_by          text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template_id, version),
    CONSTRAINT task_template_versions_title_length CHECK (length(title) BETWEEN 1 AND 200),
    CONSTRAINT task_template_versions_kind_known CHECK (kind IN ('adhoc', 'checklist', 'price_relabel', 'receiving', 'restock')),
    CONSTRAINT task_template_versions_checklist_array CHECK (jsonb_typeof(checklist) = 'array'),
    CONSTRAINT task_template_versions_estimate_range CHECK (estimated_minutes IS NULL OR estimated_minutes BETWEEN 1 AND 1440),
    CONSTRAINT task_template_versions_due_window_range CHECK (due_window_minutes BETWEEN 5 AND 43200)
);

-- Store tasks. `row_version` is the ETag: every write bumps it.
CREATE TABLE tasks (
    id                uuid PRIMARY KEY,
    store_id          uuid NOT NULL REFERENCES stores (id),
    kind              text NOT NULL,
    source            text NOT NULL,
    title             text NOT NULL,
    description       text,
    template_id       uuid,
    template_version  integer,
    campaign_id       uuid,
    status            text NOT NULL DEFAULT 'open',
    priority          text NOT NULL DEFAULT 'normal',
    assignee_id       uuid REFERENCES staff (id),
    review_required   boolean NOT NULL DEFAULT false,
    due_at            timestamptz NOT NULL,
    expires_at        timestamptz,
    answers           jsonb,
    evidence          jsonb,
    created_by        text NOT NULL,
    completed_by      text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    submitted_at      timestamptz,
    completed_at      timestamptz,
    cancelled_at      timestamptz,
    row_version       integer NOT NULL DEFAULT 1,
    CONSTRAINT tasks_template_version_fkey FOREIGN KEY (template_id, template_version)
        REFERENCES task_template_versions (template_id, version),
    CONSTRAINT tasks_kind_known CHECK (kind IN ('adhoc', 'checklist', 'price_relabel', 'receiving', 'restock')),
    CONSTRAINT tasks_source_known CHECK (source IN ('manual', 'campaign', 'schedule', 'price_change', 'delivery', 'stock_alert')),
    CONSTRAINT tasks_status_known CHECK (status IN ('open', 'in_progress', 'submitted', 'done', 'cancelled', 'expired')),
    CONSTRAINT tasks_priority_known CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    CONSTRAINT tasks_title_length CHECK (length(title) BETWEEN 1 AND 200),
    CONSTRAINT tasks_description_length CHECK (description IS NULL OR length(description) <= 4000)
);

-- The store task list, the hottest read: a store's tasks by due time (keyset on due_at, id),
-- with the status filter as an index condition.
CREATE INDEX tasks_store_status_due_idx ON tasks (store_id, status, due_at, id);
CREATE INDEX tasks_store_due_idx ON tasks (store_id, due_at, id);
-- One task per store per campaign, whatever the fan-out retries do.
CREATE UNIQUE INDEX tasks_campaign_store_key ON tasks (campaign_id, store_id) WHERE campaign_id IS NOT NULL;

-- The append-only audit trail, partitioned by month so pruning drops whole partitions.
CREATE TABLE task_events (
    id           uuid NOT NULL,
    task_id      uuid NOT NULL,
    store_id     uuid NOT NULL,
    occurred_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind         text NOT NULL,
    actor        text NOT NULL,
    data         jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (occurred_at, id)
) PARTITION BY RANGE (occurred_at);

CREATE INDEX task_events_task_idx ON task_events (task_id, occurred_at);

-- Creates the monthly partitions covering [from_month, to_month]; idempotent. The
-- scheduler keeps partitions made ahead; seeding history calls it for the past.
CREATE FUNCTION task_events_ensure_partitions(from_month date, to_month date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    month date := date_trunc('month', from_month)::date;
    made integer := 0;
    name text;
BEGIN
    WHILE month <= to_month LOOP
        name := format('task_events_%s', to_char(month, 'YYYY_MM'));
        IF to_regclass(name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF task_events FOR VALUES FROM (%L) TO (%L)',
                name, month, (month + interval '1 month')::date);
            made := made + 1;
        END IF;
        month := (month + interval '1 month')::date;
    END LOOP;
    RETURN made;
END;
$$;

SELECT task_events_ensure_partitions((now() - interval '13 months')::date, (now() + interval '12 months')::date);

-- Idempotency-Key: the first answer to (caller, key) is replayed for the same request
-- and a different request with the same key is refused.
CREATE TABLE idempotency_keys (
    subject       text NOT NULL,
    key           text NOT NULL,
    request_hash  text NOT NULL,
    status        integer NOT NULL,
    response      jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, key)
);

CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
