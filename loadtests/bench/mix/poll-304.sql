-- pgbench, the load's mix: a conditional poll that answers 304 (the store's list version).
\set n random(1, :stores)
SELECT version FROM store_versions WHERE store_id = (SELECT id FROM bench_stores WHERE n = :n);
