-- The most urgent mail first. A notice's legal last day (the deadline it is about) is kept
-- with its outbox row, so that when mail has waited (a mail server down, a closed sending
-- window), the notices of the most overdue deadlines go out first. NULL for digests.
ALTER TABLE outbox ADD COLUMN due_on TEXT;
UPDATE outbox SET due_on = json_extract(payload, '$.due_on')
    WHERE category = 'notice' AND json_valid(payload) AND json_type(payload, '$.due_on') = 'text';
