-- Stores: the ERP code is the external natural key, `id` is what the API and JWTs use.
CREATE TABLE stores (
    id             uuid PRIMARY KEY,
    code           text NOT NULL,
    name           text NOT NULL,
    region_id      uuid NOT NULL REFERENCES regions (id),
    format         text NOT NULL,
    time_zone      text NOT NULL,
    -- {"mon": {"opens": "08:00", "closes": "22:00"}, ...}; a missing day is closed.
    opening_hours  jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT stores_code_key UNIQUE (code),
    CONSTRAINT stores_code_format CHECK (code ~ '^[A-Z0-9][A-Z0-9-]{1,31}$'),
    CONSTRAINT stores_name_length CHECK (length(name) BETWEEN 1 AND 200),
    CONSTRAINT stores_format_known CHECK (format IN ('hypermarket', 'supermarket', 'convenience', 'express')),
    CONSTRAINT stores_time_zone_length CHECK (length(time_zone) BETWEEN 1 AND 64),
    CONSTRAINT stores_opening_hours_object CHECK (jsonb_typeof(opening_hours) = 'object')
);

-- Region filter of the store list, in code order (keyset pagination).
CREATE INDEX stores_region_code_idx ON stores (region_id, code);

-- Days a store is closed (holidays, refits): recurring tasks skip them.
CREATE TABLE store_closures (
    store_id   uuid NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    closed_on  date NOT NULL,
    reason     text,
    PRIMARY KEY (store_id, closed_on),
    CONSTRAINT store_closures_reason_length CHECK (reason IS NULL OR length(reason) <= 500)
);
