-- Delivery per recipient. A notice goes to each recipient on its own account: the outcome of
-- every recipient the mail server answered for is kept, so that a retry goes only to those
-- still owed the mail, and a notice that no recipient received goes one role up.

-- The recipients' outcomes so far, in the order they were settled:
-- [{"address": "…", "outcome": "delivered" | "refused", "at": "…", "error": "…"}]. NULL: none yet.
ALTER TABLE outbox ADD COLUMN deliveries JSONB;
-- For a notice sent one role up because every recipient of an earlier row refused it: the
-- recipients it goes instead of (the same shape as `recipients`). NULL for every other row.
ALTER TABLE outbox ADD COLUMN replaces JSONB;
