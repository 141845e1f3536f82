-- Outbound webhooks: HQ subscribes a URL to event types; each matching event becomes
-- one delivery, POSTed with an HMAC-SHA256 signature and retried through the delay queues.
CREATE TABLE webhooks (
    id           uuid PRIMARY KEY,
    url          text NOT NULL,
    event_types  text[] NOT NULL,
    -- The signing secret: needed in clear to sign; shown to the caller only at creation.
    secret       text NOT NULL,
    description  text,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    CONSTRAINT webhooks_url_length CHECK (length(url) BETWEEN 8 AND 2048),
    CONSTRAINT webhooks_event_types_nonempty CHECK (cardinality(event_types) BETWEEN 1 AND 50),
    CONSTRAINT webhooks_secret_length CHECK (length(secret) BETWEEN 16 AND 256),
    CONSTRAINT webhooks_description_length CHECK (description IS NULL OR length(description) <= 500)
);

-- "Which live webhooks want this event type?" for every event.
CREATE INDEX webhooks_event_types_idx ON webhooks USING gin (event_types) WHERE deleted_at IS NULL;

-- One row per (event, webhook): what was sent and how it went.
CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY,
    webhook_id       uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id         uuid NOT NULL,
    event_type       text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    status           text NOT NULL DEFAULT 'pending',
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    CONSTRAINT webhook_deliveries_event_webhook_key UNIQUE (event_id, webhook_id),
    CONSTRAINT webhook_deliveries_status_known CHECK (status IN ('pending', 'delivered', 'failed'))
);

CREATE INDEX webhook_deliveries_webhook_idx ON webhook_deliveries (webhook_id, created_at);
