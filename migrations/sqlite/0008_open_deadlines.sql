-- The open deadlines by their legal last day (state::digest, state::show): the daily digest
-- reads the open deadlines overdue or due within a week, and `deadlines --status overdue |
-- due_today | due_soon | pending` the open ones around a day, without walking the closed ones
-- that make up most of the table.
CREATE INDEX deadlines_open_due ON deadlines (due_on) WHERE closed_on IS NULL AND withdrawn = FALSE;
