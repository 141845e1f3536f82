-- A relabel batch writes a million items at a time; the foreign key to `tasks` cost a
-- referential check per row (about a third of the write, docs/PERFORMANCE.md). Items are
-- only ever written in the transaction that creates or locks their task, and pruning
-- deletes them together with it (src/maintenance), so the key guarded nothing else.
ALTER TABLE task_items DROP CONSTRAINT task_items_task_id_fkey;
