-- Per-case fingerprints (issue "Performance at national scale").
--
-- case_prints: for every case whose deadlines are stored, a 64-bit hash (XXH3) of the register
-- row they were computed from, together with the settings that shape the computation. A full
-- pass computes and writes only the cases whose print differs, so that an unchanged register
-- costs a read and no statement per case. The prints are kept in buckets (by a hash of the case
-- reference; 2^poll_state.print_bits of them, about 64 cases each), one row per bucket holding
-- (print, case reference) pairs, so that a full pass loads every print in a few thousand rows
-- and a poll of 1 000 changed rows touches about 1 000 rows of a few kilobytes.
CREATE TABLE case_prints (
    bucket  INTEGER PRIMARY KEY,
    prints  BLOB NOT NULL
);
-- NULL until the first full pass has built the prints (then also the list of stored cases
-- that a full pass checks for cases that left the register).
ALTER TABLE poll_state ADD COLUMN print_bits INTEGER;
-- Dead since vanished cases are found without stamping every deadline read.
ALTER TABLE deadlines DROP COLUMN seen_in_poll;
ALTER TABLE poll_state DROP COLUMN poll_seq;
-- Retention (run by every full pass) deletes closed deadlines and withdrawn ones by day: these
-- two indexes let it find them without reading every deadline (0.8 s of a full pass at a
-- million cases).
CREATE INDEX deadlines_closed ON deadlines (closed_on) WHERE closed_on IS NOT NULL;
CREATE INDEX deadlines_withdrawn_due ON deadlines (due_on) WHERE withdrawn = TRUE;
