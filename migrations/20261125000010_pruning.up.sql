-- Daily statistics per store, local day (of the due time) and task kind: written
-- before tasks are pruned, so reports over pruned periods still answer.
CREATE TABLE daily_store_stats (
    store_id                  uuid NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    day                       date NOT NULL,
    kind                      text NOT NULL,
    tasks                     integer NOT NULL,
    done                      integer NOT NULL,
    done_on_time              integer NOT NULL,
    expired                   integer NOT NULL,
    cancelled                 integer NOT NULL,
    median_minutes_to_done    double precision,
    computed_at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, day, kind)
);

CREATE INDEX daily_store_stats_day_idx ON daily_store_stats (day);

-- The pruning scan: closed tasks by age.
CREATE INDEX tasks_closed_updated_idx ON tasks (updated_at)
    WHERE status IN ('done', 'cancelled', 'expired');
-- The same for webhook deliveries and idempotency keys.
CREATE INDEX webhook_deliveries_created_idx ON webhook_deliveries (created_at);
