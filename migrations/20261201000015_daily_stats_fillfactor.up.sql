-- Pruning marks each day's statistics `final` once before thinning out its tasks. The
-- flag is in no index, so with room left on the page the update is HOT: one small WAL
-- record instead of a new tuple and an entry in each of the table's four indexes.
-- Applies to pages written from now on.
ALTER TABLE daily_store_stats SET (fillfactor = 85);
