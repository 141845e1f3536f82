-- Photo evidence (PRODUCT §4 "Evidence"): one row per granted upload. The bytes live in
-- the object store under object_key (and thumbnail_key once a worker made one); a row
-- is the only record of an object, so pruning deletes objects before rows.
-- No foreign key to tasks: tasks are pruned in batches of their own, and evidence of a
-- task that no longer exists is pruned with its objects (evidence::retention).
CREATE TABLE evidence (
    id                 uuid PRIMARY KEY,
    task_id            uuid NOT NULL,
    store_id           uuid NOT NULL,
    item_key           text NOT NULL,
    content_type       text NOT NULL,
    size_bytes         bigint NOT NULL,
    object_key         text NOT NULL,
    granted_by         text NOT NULL,
    granted_at         timestamptz NOT NULL DEFAULT now(),
    -- The upload URL's expiry; attaching is possible until expires_at + the attach window.
    expires_at         timestamptz NOT NULL,
    -- When the task was created: a photo taken before it is flagged for the reviewer.
    task_created_at    timestamptz NOT NULL,
    state              text NOT NULL DEFAULT 'granted',
    attached_at        timestamptz,
    width              integer,
    height             integer,
    captured_at        timestamptz,
    taken_before_task  boolean,
    thumbnail_key      text,
    processed_at       timestamptz,
    failure            text,
    CONSTRAINT evidence_state_known CHECK (state IN ('granted', 'attached', 'processed', 'failed')),
    CONSTRAINT evidence_content_type_known CHECK (content_type IN ('image/jpeg', 'image/png', 'image/webp')),
    CONSTRAINT evidence_size_positive CHECK (size_bytes > 0),
    CONSTRAINT evidence_item_key_format CHECK (item_key ~ '^[a-z0-9_]{1,64}$'),
    CONSTRAINT evidence_object_key_key UNIQUE (object_key)
);

-- A task's photos, in the order they were granted (ids are v7).
CREATE INDEX evidence_task_idx ON evidence (task_id, id);
-- Grants never attached, by expiry: what pruning removes with their objects.
CREATE INDEX evidence_unattached_idx ON evidence (expires_at) WHERE state = 'granted';

-- Objects to delete from the store: queued in the transaction that deletes their rows
-- (a pruned task's photos, an expired grant), deleted a batch at a time after it.
CREATE TABLE evidence_deletions (
    object_key  text PRIMARY KEY,
    queued_at   timestamptz NOT NULL DEFAULT now()
);
