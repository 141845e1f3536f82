-- Integrations at ERP scale (src/ingest/).
--
-- A sender's ids are its own: two senders may use the same batch, delivery or alert id.
DROP INDEX ingests_revision_key;
DROP INDEX ingests_sender_key;
CREATE UNIQUE INDEX ingests_revision_key ON ingests (received_by, source, external_id, body_sha256);
CREATE UNIQUE INDEX ingests_sender_key ON ingests (received_by, source, external_id)
    WHERE source <> 'delivery';
-- One receiving task per delivery of a sender (created_by is the sender).
DROP INDEX tasks_delivery_key;
CREATE UNIQUE INDEX tasks_delivery_key ON tasks (created_by, external_ref) WHERE source = 'delivery';

-- Large bodies are stored gzip-compressed as they stream in (the api never holds a whole
-- batch); `raw` holds the body in this encoding.
ALTER TABLE ingests ADD COLUMN raw_encoding text NOT NULL DEFAULT 'identity',
    ADD CONSTRAINT ingests_raw_encoding_known CHECK (raw_encoding IN ('identity', 'gzip'));

-- Prices are exact: ten-thousandths of the currency unit as integers (numeric(14,4) on
-- task_items), never binary floating point.
ALTER TABLE ingest_chunks ADD COLUMN price_units bigint[];
UPDATE ingest_chunks c
   SET price_units = (SELECT array_agg(round(p::numeric * 10000)::bigint ORDER BY n)
                        FROM unnest(c.prices) WITH ORDINALITY AS u(p, n))
 WHERE c.prices IS NOT NULL;
ALTER TABLE ingest_chunks DROP COLUMN prices;
ALTER TABLE ingest_chunks ALTER COLUMN price_units SET STORAGE EXTERNAL;
