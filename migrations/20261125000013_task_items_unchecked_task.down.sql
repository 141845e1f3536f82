DELETE FROM task_items i WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = i.task_id);
ALTER TABLE task_items
    ADD CONSTRAINT task_items_task_id_fkey FOREIGN KEY (task_id) REFERENCES tasks (id) ON DELETE CASCADE;
