-- Integrations (price changes, deliveries, stock alerts): each request is stored raw as
-- an ingest, idempotent on the sender's id, then turned into tasks by the `ingest`
-- consumer group (src/ingest/).
CREATE TABLE ingests (
    id                 uuid PRIMARY KEY,
    source             text NOT NULL,
    -- The sender's id: batch_id, delivery_id or alert_id.
    external_id        text NOT NULL,
    -- A delivery may be re-sent with changes: each different body is a revision; for
    -- the other sources the same id with another body is refused.
    body_sha256        text NOT NULL,
    received_by        text NOT NULL,
    -- The request body exactly as received (lz4: JSON shrinks well and fast).
    raw                bytea COMPRESSION lz4 NOT NULL,
    item_count         integer NOT NULL,
    -- Price batches: an instant for every store, or a wall-clock time in each store's zone.
    effective_at       timestamptz,
    effective_local    timestamp,
    status             text NOT NULL DEFAULT 'received',
    chunks_total       integer NOT NULL DEFAULT 0,
    chunks_remaining   integer NOT NULL DEFAULT 0,
    tasks_created      integer NOT NULL DEFAULT 0,
    tasks_updated      integer NOT NULL DEFAULT 0,
    tasks_superseded   integer NOT NULL DEFAULT 0,
    tasks_cancelled    integer NOT NULL DEFAULT 0,
    items_created      integer NOT NULL DEFAULT 0,
    items_superseded   integer NOT NULL DEFAULT 0,
    -- [{"item": "items[3]", "field": "items[3].store_codes[0]", "message": "..."}], capped;
    -- error_count counts them all.
    errors             jsonb NOT NULL DEFAULT '[]',
    error_count        integer NOT NULL DEFAULT 0,
    received_at        timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    finished_at        timestamptz,
    CONSTRAINT ingests_source_known CHECK (source IN ('price_change', 'delivery', 'stock_alert')),
    CONSTRAINT ingests_status_known CHECK (status IN ('received', 'processing', 'done', 'failed')),
    CONSTRAINT ingests_external_id_length CHECK (length(external_id) BETWEEN 1 AND 100)
);

-- Idempotency on the sender's id: one ingest per batch or alert id, one per revision
-- (distinct body) of a delivery.
CREATE UNIQUE INDEX ingests_revision_key ON ingests (source, external_id, body_sha256);
CREATE UNIQUE INDEX ingests_sender_key ON ingests (source, external_id) WHERE source <> 'delivery';
-- Pruning by age.
CREATE INDEX ingests_received_at_idx ON ingests (received_at);

-- A price batch's work, planned once: one row per chunk of stores, its items as
-- column arrays (read back with unnest, no per-row staging). Emptied when applied.
CREATE TABLE ingest_chunks (
    ingest_id    uuid NOT NULL REFERENCES ingests (id) ON DELETE CASCADE,
    chunk_no     integer NOT NULL,
    store_ids    uuid[] NOT NULL,
    -- Per item: its store's position in store_ids (1-based), SKU, name, price, currency.
    item_store   integer[],
    skus         text[],
    names        text[],
    prices       float8[],
    currencies   text[],
    applied_at   timestamptz,
    PRIMARY KEY (ingest_id, chunk_no)
);
-- Written once and read once: compressing them costs more than it saves.
ALTER TABLE ingest_chunks ALTER COLUMN item_store SET STORAGE EXTERNAL,
                          ALTER COLUMN skus SET STORAGE EXTERNAL,
                          ALTER COLUMN names SET STORAGE EXTERNAL,
                          ALTER COLUMN prices SET STORAGE EXTERNAL,
                          ALTER COLUMN currencies SET STORAGE EXTERNAL;

-- Which ingest last wrote a task (UUID v7: later ingests compare greater), and the
-- external key it answers to: the delivery id (receiving) or the SKU (restock).
ALTER TABLE tasks ADD COLUMN ingest_id uuid, ADD COLUMN external_ref text;
-- One relabel task per store per price batch.
CREATE UNIQUE INDEX tasks_ingest_store_key ON tasks (ingest_id, store_id) WHERE kind = 'price_relabel';
-- One receiving task per delivery, whatever its revisions.
CREATE UNIQUE INDEX tasks_delivery_key ON tasks (external_ref) WHERE source = 'delivery';
-- At most one open restock task per store and SKU.
CREATE UNIQUE INDEX tasks_open_restock_key ON tasks (store_id, external_ref)
    WHERE kind = 'restock' AND status IN ('open', 'in_progress', 'submitted');

-- The SKUs of relabel tasks. `active` items are the ones to do; a later batch marks an
-- open task's item `superseded` (or `closed` when its task is already closed).
CREATE TABLE task_items (
    task_id        uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    sku            text NOT NULL,
    store_id       uuid NOT NULL,
    ingest_id      uuid NOT NULL,
    name           text NOT NULL,
    new_price      numeric(14, 4) NOT NULL,
    currency       text NOT NULL,
    state          text NOT NULL DEFAULT 'active',
    superseded_by  uuid,
    PRIMARY KEY (task_id, sku),
    CONSTRAINT task_items_state_known CHECK (state IN ('active', 'superseded', 'closed'))
);
-- One active relabel item per store and SKU: a later batch supersedes, never adds a second.
CREATE UNIQUE INDEX task_items_active_key ON task_items (store_id, sku) WHERE state = 'active';

-- For analysts (docs/ANALYTICS.md): relabel items and integration batches, without the
-- raw bodies.
CREATE VIEW reporting.task_items AS
SELECT i.task_id, i.store_id, s.code AS store_code, i.sku, i.name, i.new_price, i.currency,
       i.state, i.superseded_by, i.ingest_id
  FROM task_items i JOIN stores s ON s.id = i.store_id;

CREATE VIEW reporting.ingests AS
SELECT id AS ingest_id, source, external_id, received_by, item_count, effective_at, status,
       chunks_total, tasks_created, tasks_updated, tasks_superseded, tasks_cancelled,
       items_created, items_superseded, error_count, received_at, started_at, finished_at
  FROM ingests;

GRANT SELECT ON reporting.task_items, reporting.ingests TO storeops_analyst;
