-- Announcements (PRODUCT §4 "Announcements"): HQ's and regional managers' notices to
-- many stores, delivered once per store by the `announcements` consumer group, with
-- read and acknowledgement receipts per staff member.
CREATE TABLE announcements (
    id                uuid PRIMARY KEY,
    title             text NOT NULL,
    body              text NOT NULL,
    priority          text NOT NULL DEFAULT 'normal',
    -- {"all": true} | {"regions": [...]} | {"formats": [...]} | {"store_codes": [...]}
    target            jsonb NOT NULL,
    -- A regional manager's announcement is confined to this region.
    region_scope      text,
    audience          text NOT NULL,
    requires_ack      boolean NOT NULL,
    -- One instant for every store, or a wall-clock time in each store's zone.
    publish_at        timestamptz,
    publish_local     timestamp,
    expires_at        timestamptz,
    supersedes        uuid REFERENCES announcements (id),
    status            text NOT NULL,
    target_count      integer,
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    fanned_out_at     timestamptz,
    published_at      timestamptz,
    CONSTRAINT announcements_title_length CHECK (length(title) BETWEEN 1 AND 200),
    CONSTRAINT announcements_body_length CHECK (length(body) BETWEEN 1 AND 10000),
    CONSTRAINT announcements_audience_known CHECK (audience IN ('associates', 'managers', 'everyone')),
    CONSTRAINT announcements_status_known CHECK (status IN ('draft', 'scheduled', 'published')),
    CONSTRAINT announcements_publish_once CHECK (publish_at IS NULL OR publish_local IS NULL),
    -- A correction supersedes one announcement, and is superseded at most once itself.
    CONSTRAINT announcements_supersedes_key UNIQUE (supersedes)
);

CREATE INDEX announcements_region_scope_idx ON announcements (region_scope, created_at);
-- The publishing job's scan: scheduled announcements only.
CREATE INDEX announcements_scheduled_idx ON announcements (id) WHERE status = 'scheduled';

-- One row per (announcement, store): the fan-out's unit, unique so a redelivered or
-- repeated fan-out adds nothing. `visible_at` is when the store's staff see it (the
-- store-local form resolved in the store's zone); `reminder_level` counts reminders
-- sent (1: the store, 2: escalated to the store and regional managers).
CREATE TABLE announcement_deliveries (
    announcement_id   uuid NOT NULL REFERENCES announcements (id) ON DELETE CASCADE,
    store_id          uuid NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    visible_at        timestamptz NOT NULL,
    delivered_at      timestamptz NOT NULL DEFAULT now(),
    reminder_level    smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (announcement_id, store_id),
    CONSTRAINT announcement_deliveries_reminder_level CHECK (reminder_level BETWEEN 0 AND 2)
);

-- A store's announcements, newest first (the staff list and its tag).
CREATE INDEX announcement_deliveries_store_idx ON announcement_deliveries (store_id, visible_at DESC, announcement_id);

-- The reminder job's scan: deliveries not yet escalated, oldest first.
CREATE INDEX announcement_deliveries_reminder_idx ON announcement_deliveries (visible_at)
    WHERE reminder_level < 2;

-- Receipts: one per (announcement, staff member); acknowledging implies reading.
-- `staff_subject` is the token's subject, the identity a receipt belongs to.
CREATE TABLE announcement_receipts (
    announcement_id   uuid NOT NULL,
    store_id          uuid NOT NULL,
    staff_subject     text NOT NULL,
    read_at           timestamptz NOT NULL,
    acknowledged_at   timestamptz,
    PRIMARY KEY (announcement_id, store_id, staff_subject),
    FOREIGN KEY (announcement_id, store_id)
        REFERENCES announcement_deliveries (announcement_id, store_id) ON DELETE CASCADE,
    CONSTRAINT announcement_receipts_ack_after_read CHECK (acknowledged_at IS NULL OR acknowledged_at >= read_at)
);

-- A staff member's receipts in their store (the staff list's join and its tag).
CREATE INDEX announcement_receipts_staff_idx ON announcement_receipts (store_id, staff_subject);

CREATE VIEW reporting.announcements AS
SELECT id AS announcement_id, title, priority, target, region_scope, audience, requires_ack,
       publish_at, publish_local, expires_at, supersedes, status, target_count, created_by,
       created_at, published_at
  FROM announcements;

CREATE VIEW reporting.announcement_receipts AS
SELECT d.announcement_id, d.store_id, s.code AS store_code, r.code AS region_code,
       d.visible_at, d.reminder_level, c.staff_subject, c.read_at, c.acknowledged_at
  FROM announcement_deliveries d
  JOIN stores s ON s.id = d.store_id JOIN regions r ON r.id = s.region_id
  LEFT JOIN announcement_receipts c
    ON c.announcement_id = d.announcement_id AND c.store_id = d.store_id;

GRANT SELECT ON reporting.announcements, reporting.announcement_receipts TO storeops_analyst;
