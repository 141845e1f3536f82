-- Store staff. Identity comes from the JWT `sub`; this is the roster managers assign from.
CREATE TABLE staff (
    id            uuid PRIMARY KEY,
    store_id      uuid NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    external_ref  text,
    display_name  text NOT NULL,
    role          text NOT NULL,
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT staff_external_ref_key UNIQUE (external_ref),
    CONSTRAINT staff_role_known CHECK (role IN ('associate', 'store_manager')),
    CONSTRAINT staff_display_name_length CHECK (length(display_name) BETWEEN 1 AND 200)
);

-- A store's roster, keyset-paginated by id.
CREATE INDEX staff_store_id_idx ON staff (store_id, id);
