ALTER TABLE staff DROP COLUMN email, DROP COLUMN external_subject;
