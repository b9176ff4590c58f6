-- The index of the last day alone: every new deadline, and every cycle a review starts, wrote an
-- entry in it, for one reader, the compliance report's period. A report now reads a short period
-- unit by unit in deadlines_unit_due (state::report, state::digest::UNITS) and a long one by a
-- scan. The open deadlines by day (deadlines_open_due) and the withdrawn ones
-- (deadlines_withdrawn_due, retention) keep theirs.
DROP INDEX deadlines_due;
