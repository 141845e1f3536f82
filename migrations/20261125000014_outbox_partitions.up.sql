-- The outbox is the busiest table to prune: one row per event, published within
-- seconds and kept only OUTBOX_RETENTION_HOURS. Partitioned by UTC day of its id (a
-- UUIDv7, whose first 48 bits are the creation time in milliseconds), a published
-- day is dropped whole instead of deleted row by row. There is no default partition:
-- it would forbid `DETACH PARTITION ... CONCURRENTLY`, which is what lets pruning
-- remove a day without blocking the inserts of staff requests. Partitions are made two
-- weeks ahead, here and by the scheduler's partitions job (hourly).

-- A UUIDv7 for `at`: a random UUID with the time in front and the version set to 7.
CREATE FUNCTION uuid_v7(at timestamptz DEFAULT clock_timestamp()) RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM at) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

-- The smallest UUIDv7 of a UTC day: the outbox's partition bounds.
CREATE FUNCTION uuid_v7_floor(day date) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (lpad(to_hex((extract(epoch FROM day::timestamp) * 1000)::bigint), 12, '0')
            || repeat('0', 20))::uuid
$$;

-- The UTC day a UUIDv7 was made on (NULL for other versions).
CREATE FUNCTION uuid_v7_day(id uuid) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN substr(id::text, 15, 1) = '7' THEN
        (to_timestamp(('x' || lpad(replace(left(id::text, 13), '-', ''), 16, '0'))::bit(64)::bigint / 1000.0)
            AT TIME ZONE 'UTC')::date
    END
$$;

ALTER TABLE outbox RENAME TO outbox_unpartitioned;
ALTER INDEX outbox_pkey RENAME TO outbox_unpartitioned_pkey;
DROP INDEX outbox_pending_idx;
DROP INDEX outbox_published_at_idx;
DROP TRIGGER outbox_notify ON outbox_unpartitioned;

CREATE TABLE outbox (
    id               uuid NOT NULL,               -- the AMQP message id, a UUIDv7
    routing_key      text NOT NULL,
    payload          jsonb NOT NULL,
    headers          jsonb NOT NULL DEFAULT '{}', -- W3C trace context, ...
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at     timestamptz,
    -- A publish the broker refused (nack) waits until then before the next try.
    next_attempt_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    -- Set when the broker returned the message as unroutable (no queue bound).
    returned_at      timestamptz,
    PRIMARY KEY (id),
    CONSTRAINT outbox_routing_key_format CHECK (routing_key ~ '^[a-z0-9_]+(\.[a-z0-9_]+)*$')
) PARTITION BY RANGE (id);

-- The relay's claim: unpublished rows, oldest first. Stays tiny: published rows leave it.
CREATE INDEX outbox_pending_idx ON outbox (created_at) WHERE published_at IS NULL;
-- Pruning: which days are wholly published before the cutoff, and the stragglers.
CREATE INDEX outbox_published_at_idx ON outbox (published_at) WHERE published_at IS NOT NULL;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Makes the daily partitions from `from_day` to `to_day` (UTC) that do not exist yet.
CREATE FUNCTION outbox_ensure_partitions(from_day date, to_day date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    day date := from_day;
    made integer := 0;
    name text;
BEGIN
    WHILE day <= to_day LOOP
        name := format('outbox_%s', to_char(day, 'YYYY_MM_DD'));
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF outbox FOR VALUES FROM (%L) TO (%L)',
                           name, uuid_v7_floor(day), uuid_v7_floor(day + 1));
            made := made + 1;
        END IF;
        day := day + 1;
    END LOOP;
    RETURN made;
END;
$$;
REVOKE EXECUTE ON FUNCTION outbox_ensure_partitions(date, date) FROM PUBLIC;

-- Existing rows move over; one whose id is not a UUIDv7 (none written by storeops)
-- gets one from its creation time, with partitions for every day that holds a row.
SELECT outbox_ensure_partitions(
    LEAST((now() AT TIME ZONE 'UTC')::date,
          (SELECT min(coalesce(uuid_v7_day(id), (created_at AT TIME ZONE 'UTC')::date))
             FROM outbox_unpartitioned)),
    (now() AT TIME ZONE 'UTC')::date + 14);
INSERT INTO outbox
SELECT CASE WHEN uuid_v7_day(id) IS NULL THEN uuid_v7(created_at) ELSE id END,
       routing_key, payload, headers, created_at, published_at, next_attempt_at, attempts,
       last_error, returned_at
  FROM outbox_unpartitioned;
DROP TABLE outbox_unpartitioned;
