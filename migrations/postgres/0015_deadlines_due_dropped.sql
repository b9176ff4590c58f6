-- The index of the last day alone: every new deadline, and every cycle a review starts, wrote an
-- entry in it, for one reader, the compliance report's period, which now reads each unit's range
-- of days in deadlines_unit_due (state::report, state::digest::UNITS). The open deadlines by day
-- (deadlines_open_due) and the withdrawn ones (deadlines_withdrawn_due, retention) keep theirs.
DROP INDEX deadlines_due;
