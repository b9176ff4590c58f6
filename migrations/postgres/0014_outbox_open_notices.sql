-- The cases of the notices still to send (pending or retrying), for the cancellation a poll runs
-- in the transaction that closes or withdraws their deadlines (state::outbox::cancel_finished_sql):
-- the index of every row's case (outbox_case) led it to each of those cases' sent and skipped
-- notices too, a row read each only to be passed over. Holds only the rows it can cancel.
CREATE INDEX outbox_open_notices ON outbox (case_ref, kind) WHERE category = 'notice' AND state IN ('pending', 'retrying');
