ALTER TABLE idempotency_keys ADD COLUMN status integer NOT NULL DEFAULT 201;
ALTER TABLE idempotency_keys ALTER COLUMN status DROP DEFAULT;
