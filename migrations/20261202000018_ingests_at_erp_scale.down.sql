ALTER TABLE ingest_chunks ADD COLUMN prices float8[];
UPDATE ingest_chunks c
   SET prices = (SELECT array_agg((p::numeric / 10000)::float8 ORDER BY n)
                   FROM unnest(c.price_units) WITH ORDINALITY AS u(p, n))
 WHERE c.price_units IS NOT NULL;
ALTER TABLE ingest_chunks DROP COLUMN price_units;
ALTER TABLE ingest_chunks ALTER COLUMN prices SET STORAGE EXTERNAL;

ALTER TABLE ingests DROP CONSTRAINT ingests_raw_encoding_known, DROP COLUMN raw_encoding;

DROP INDEX tasks_delivery_key;
CREATE UNIQUE INDEX tasks_delivery_key ON tasks (external_ref) WHERE source = 'delivery';
DROP INDEX ingests_sender_key;
DROP INDEX ingests_revision_key;
CREATE UNIQUE INDEX ingests_revision_key ON ingests (source, external_id, body_sha256);
CREATE UNIQUE INDEX ingests_sender_key ON ingests (source, external_id) WHERE source <> 'delivery';
