-- A replayed answer's status is the route's (201 for a created task, 200 for a
-- transition), never stored: only the body of the first answer is.
ALTER TABLE idempotency_keys DROP COLUMN status;
