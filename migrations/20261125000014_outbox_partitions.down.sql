ALTER TABLE outbox RENAME TO outbox_partitioned;
ALTER INDEX outbox_pkey RENAME TO outbox_partitioned_pkey;
DROP INDEX outbox_pending_idx;
DROP INDEX outbox_published_at_idx;
DROP TRIGGER outbox_notify ON outbox_partitioned;

CREATE TABLE outbox (
    id               uuid PRIMARY KEY,            -- the AMQP message id
    routing_key      text NOT NULL,
    payload          jsonb NOT NULL,
    headers          jsonb NOT NULL DEFAULT '{}', -- W3C trace context, ...
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at     timestamptz,
    next_attempt_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    returned_at      timestamptz,
    CONSTRAINT outbox_routing_key_format CHECK (routing_key ~ '^[a-z0-9_]+(\.[a-z0-9_]+)*$')
);
INSERT INTO outbox SELECT * FROM outbox_partitioned;
DROP TABLE outbox_partitioned;
DROP FUNCTION outbox_ensure_partitions(date, date);

CREATE INDEX outbox_pending_idx ON outbox (created_at) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at_idx ON outbox (published_at) WHERE published_at IS NOT NULL;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

DROP FUNCTION uuid_v7_day(uuid);
DROP FUNCTION uuid_v7_floor(date);
DROP FUNCTION uuid_v7(timestamptz);
