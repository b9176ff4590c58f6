-- How many polls have finished on this state (state::poll::finish_poll counts them). A process
-- keeps, from one of its polls to the next, which cases and children the placements' clocks
-- read (sync::placements::FactReaders); a number other than the one its last poll left means
-- another process polled in between, and the process looks every changed case's placements up.
ALTER TABLE poll_state ADD COLUMN polls_finished BIGINT NOT NULL DEFAULT 0;
