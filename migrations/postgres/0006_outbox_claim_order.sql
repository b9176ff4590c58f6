-- The claim's order as an index (state::outbox::claim_outbox). The claim takes the most urgent
-- due rows first (ORDER BY due_on IS NULL, due_on, step DESC, next_attempt_at, id); without an
-- index in that order every claim read and sorted every open row to take a few. Partial on the
-- open states, so that sent mail leaves it.
CREATE INDEX outbox_claim_order ON outbox ((due_on IS NULL), due_on, step DESC, next_attempt_at, id)
    WHERE state IN ('pending', 'retrying');
