-- Transactional outbox: a module inserts its event in the same transaction as its
-- change; the relay publishes it to RabbitMQ and marks it only after the broker's confirm.
CREATE TABLE outbox (
    id               uuid PRIMARY KEY,            -- the AMQP message id
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
    CONSTRAINT outbox_routing_key_format CHECK (routing_key ~ '^[a-z0-9_]+(\.[a-z0-9_]+)*$')
);

-- The relay's claim: unpublished rows, oldest first. Stays tiny: published rows leave it.
CREATE INDEX outbox_pending_idx ON outbox (created_at) WHERE published_at IS NULL;
-- Pruning of published rows by age.
CREATE INDEX outbox_published_at_idx ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Wake the relays once per inserting statement (not per row: fan-outs insert thousands).
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('storeops_outbox', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Inbox: message ids a consumer group has applied, written in the handler's own
-- transaction, so a redelivered message is recognised and changes nothing twice.
CREATE TABLE inbox (
    consumer_group  text NOT NULL,
    message_id      uuid NOT NULL,
    processed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, message_id)
);

-- Pruning of old ids by age.
CREATE INDEX inbox_processed_at_idx ON inbox (processed_at);
