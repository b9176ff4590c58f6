-- The quiet first start and chained investigations (issue "The law beyond three clocks").
--
-- first_seen_on: the day a poll first stored the deadline. A deadline first seen more than
-- ladder.first_sight_horizon after its legal last day gets no notice (its steps are recorded as
-- skipped). NULL for deadlines stored before this migration: they were known already, so the
-- horizon does not silence them.
ALTER TABLE deadlines ADD COLUMN first_seen_on TEXT;
-- child_key: the register's pseudonymous key of the child, kept on investigation deadlines only
-- and only to find chained investigations (JO 2565-2016); never shown anywhere. Deleted with the
-- deadline by retention.
ALTER TABLE deadlines ADD COLUMN child_key TEXT;
CREATE INDEX deadlines_child ON deadlines (child_key) WHERE child_key IS NOT NULL;
