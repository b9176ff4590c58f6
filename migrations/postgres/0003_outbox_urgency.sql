-- The most urgent mail first. A notice's legal last day (the deadline it is about) is kept
-- with its outbox row, so that when mail has waited (a mail server down, a closed sending
-- window), the notices of the most overdue deadlines go out first. NULL for digests.
ALTER TABLE outbox ADD COLUMN due_on DATE;
UPDATE outbox SET due_on = (payload ->> 'due_on')::date
    WHERE category = 'notice' AND jsonb_typeof(payload -> 'due_on') = 'string'
      AND (payload ->> 'due_on') ~ '^\d{4}-\d{2}-\d{2}$';
