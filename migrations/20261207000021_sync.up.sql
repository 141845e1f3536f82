-- Sync for store apps on weak networks (PRODUCT §4 "Sync"): a version per store that
-- every change of its tasks (or staff) bumps, so a conditional GET of the store task
-- list is answered from one primary-key read; and a change log per store that a
-- changes feed reads without ever skipping a change.
--
-- Both are written by triggers, so no writer of tasks (HTTP, campaigns, schedules,
-- ingest, escalation, expiry, pruning, fixtures) can change a list and leave its
-- version unchanged.

-- Every change of a task, by the transaction that made it. `xid` (the writing
-- transaction's id) orders the log in a way a reader can trust: rows of transactions
-- older than the oldest one still running (pg_snapshot_xmin) are final, whatever order
-- transactions committed in; sequence numbers alone are not (a transaction can commit
-- after one that took a later number).
CREATE TABLE task_changes (
    seq         bigint GENERATED ALWAYS AS IDENTITY,
    xid         bigint NOT NULL DEFAULT pg_current_xact_id()::text::bigint,
    store_id    uuid NOT NULL,
    task_id     uuid NOT NULL,
    op          text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT task_changes_pkey PRIMARY KEY (store_id, xid, seq),
    CONSTRAINT task_changes_op_known CHECK (op IN ('insert', 'update', 'delete'))
);
-- This transaction's changes (the version bump at commit), and pruning by age.
CREATE INDEX task_changes_xid_idx ON task_changes (xid);
CREATE INDEX task_changes_changed_at_idx ON task_changes (changed_at);

-- Below this transaction id the log has been pruned: a feed token from before it
-- answers 410 Gone (the client resyncs).
CREATE TABLE task_changes_horizon (
    singleton      boolean PRIMARY KEY DEFAULT true,
    pruned_below   bigint NOT NULL DEFAULT 0,
    CONSTRAINT task_changes_horizon_singleton CHECK (singleton)
);
INSERT INTO task_changes_horizon DEFAULT VALUES;

-- A store's list version: bumped once per committing transaction that changed its
-- tasks or staff.
CREATE TABLE store_versions (
    store_id  uuid PRIMARY KEY,
    version   bigint NOT NULL DEFAULT 0
);

CREATE FUNCTION task_changes_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_changes (store_id, task_id, op) SELECT store_id, id, 'insert' FROM changed_rows;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO task_changes (store_id, task_id, op) SELECT store_id, id, 'update' FROM changed_rows;
    ELSE
        INSERT INTO task_changes (store_id, task_id, op) SELECT store_id, id, 'delete' FROM changed_rows;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_log_inserts AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION task_changes_log();
CREATE TRIGGER tasks_log_updates AFTER UPDATE ON tasks
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION task_changes_log();
CREATE TRIGGER tasks_log_deletes AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION task_changes_log();

-- At commit, once per transaction: bump the version of every store it changed, in
-- store order (two committing transactions lock versions in the same order, so they
-- never deadlock, and each holds the rows only for the commit itself).
CREATE FUNCTION store_versions_bump() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    me bigint := pg_current_xact_id()::text::bigint;
BEGIN
    IF current_setting('storeops.versions_bumped_by', true) = me::text THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('storeops.versions_bumped_by', me::text, true);
    INSERT INTO store_versions AS v (store_id, version)
    SELECT store_id, 1 FROM (SELECT DISTINCT store_id FROM task_changes WHERE xid = me) s ORDER BY store_id
    ON CONFLICT (store_id) DO UPDATE SET version = v.version + 1;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER task_changes_bump_versions AFTER INSERT ON task_changes
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION store_versions_bump();

-- Staff changes alter what a list filtered by assignee may hold: bump the store too.
CREATE FUNCTION staff_bump_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO store_versions AS v (store_id, version)
    SELECT store_id, 1 FROM (SELECT DISTINCT store_id FROM changed_rows) s ORDER BY store_id
    ON CONFLICT (store_id) DO UPDATE SET version = v.version + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER staff_versions_inserts AFTER INSERT ON staff
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION staff_bump_versions();
CREATE TRIGGER staff_versions_updates AFTER UPDATE ON staff
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION staff_bump_versions();
CREATE TRIGGER staff_versions_deletes AFTER DELETE ON staff
    REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION staff_bump_versions();
