-- Regions of the chain; each has a main IANA time zone (stores carry their own too).
CREATE TABLE regions (
    id          uuid PRIMARY KEY,
    code        text NOT NULL,
    name        text NOT NULL,
    time_zone   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT regions_code_key UNIQUE (code),
    CONSTRAINT regions_code_format CHECK (code ~ '^[a-z0-9][a-z0-9-]{1,31}$'),
    CONSTRAINT regions_name_length CHECK (length(name) BETWEEN 1 AND 200),
    CONSTRAINT regions_time_zone_length CHECK (length(time_zone) BETWEEN 1 AND 64)
);
