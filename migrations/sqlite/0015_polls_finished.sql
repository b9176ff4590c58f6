-- How many polls have finished on this state (state::poll::finish_poll counts them). A process
-- keeps, from one of its polls to its next, which cases and children the placements' clocks
-- read (sync::placements::FactReaders); another count, or another watermark, than its last poll
-- left means another process polled in between, and until its next full pass the process looks
-- every changed case's placements up.
ALTER TABLE poll_state ADD COLUMN polls_finished INTEGER NOT NULL DEFAULT 0;
