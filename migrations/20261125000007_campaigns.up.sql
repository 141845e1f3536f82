-- Campaigns: one task to many stores, fanned out by the worker.
CREATE TABLE campaigns (
    id                uuid PRIMARY KEY,
    title             text NOT NULL,
    description       text,
    kind              text NOT NULL,
    template_id       uuid,
    template_version  integer,
    -- {"all": true} | {"regions": [...]} | {"formats": [...]} | {"store_codes": [...]}
    target            jsonb NOT NULL,
    -- A regional manager's campaign is confined to this region.
    region_scope      text,
    due_at            timestamptz,
    due_local         timestamp,
    priority          text NOT NULL DEFAULT 'normal',
    status            text NOT NULL DEFAULT 'pending',
    target_count      integer,
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    fanned_out_at     timestamptz,
    CONSTRAINT campaigns_template_version_fkey FOREIGN KEY (template_id, template_version)
        REFERENCES task_template_versions (template_id, version),
    CONSTRAINT campaigns_title_length CHECK (length(title) BETWEEN 1 AND 200),
    CONSTRAINT campaigns_status_known CHECK (status IN ('pending', 'active')),
    CONSTRAINT campaigns_due_given CHECK (due_at IS NOT NULL OR due_local IS NOT NULL)
);

CREATE INDEX campaigns_region_scope_idx ON campaigns (region_scope, created_at);
CREATE INDEX tasks_campaign_idx ON tasks (campaign_id, status) WHERE campaign_id IS NOT NULL;
