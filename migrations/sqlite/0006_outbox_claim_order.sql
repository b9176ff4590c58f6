-- The claim's order as an index (state::outbox::claim_outbox). The claim takes the most urgent
-- due rows first (ORDER BY due_on IS NULL, due_on, step DESC, next_attempt_at, id); without an
-- index in that order every claim read every open row (its due_on sits behind the payload, on
-- overflow pages) and sorted them all, to take 16 — the most of a dispatch run's time with 10 000
-- notices waiting. Partial on the open states, so that sent mail leaves it. The claim names it
-- (INDEXED BY): without statistics SQLite prefers outbox_due, whose order is not the claim's.
CREATE INDEX outbox_claim_order ON outbox (due_on IS NULL, due_on, step DESC, next_attempt_at, id)
    WHERE state IN ('pending', 'retrying');
