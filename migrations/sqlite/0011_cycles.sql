-- Recurring clocks (register contract §2 "Recurring clocks", §3): a deadline is identified by
-- (reference, kind, cycle start day). One-off clocks keep the cycle '' (their rows and outbox
-- keys unchanged, so nothing stored before is sent again); a recurring clock's cycle, and the
-- second cycle of lvu_care_application, hold the cycle's first start day (YYYY-MM-DD), which
-- stays when the running cycle is recomputed in place. SQLite cannot change a primary key: the
-- table is built anew with every row kept. The outbox keeps the cycle of a notice so that the
-- steps recorded and the notices cancelled are each cycle's own.
CREATE TABLE deadlines_cycles (
    case_ref        TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    cycle_start     TEXT    NOT NULL DEFAULT '',
    unit            TEXT    NOT NULL,
    caseworker      TEXT,
    child_sex       TEXT    CHECK (child_sex IN ('F', 'M')),
    start_on        TEXT    NOT NULL,
    nominal_due_on  TEXT    NOT NULL,
    due_on          TEXT    NOT NULL,
    closed_on       TEXT,
    due_reason      TEXT    NOT NULL,
    extended_to     TEXT,
    moved_over      TEXT,
    next_step_on    TEXT,
    withdrawn       INTEGER NOT NULL DEFAULT 0,
    row_updated_at  TEXT    NOT NULL,
    first_seen_on   TEXT,
    child_key       TEXT,
    case_of         TEXT,
    PRIMARY KEY (case_ref, kind, cycle_start)
);
INSERT INTO deadlines_cycles (case_ref, kind, cycle_start, unit, caseworker, child_sex, start_on, nominal_due_on,
    due_on, closed_on, due_reason, extended_to, moved_over, next_step_on, withdrawn, row_updated_at, first_seen_on,
    child_key, case_of)
SELECT case_ref, kind, '', unit, caseworker, child_sex, start_on, nominal_due_on, due_on, closed_on, due_reason,
    extended_to, moved_over, next_step_on, withdrawn, row_updated_at, first_seen_on, child_key, case_of
FROM deadlines;
DROP TABLE deadlines;
ALTER TABLE deadlines_cycles RENAME TO deadlines;
CREATE INDEX deadlines_next_step ON deadlines (next_step_on) WHERE next_step_on IS NOT NULL;
CREATE INDEX deadlines_unit_due ON deadlines (unit, due_on);
CREATE INDEX deadlines_due ON deadlines (due_on);
CREATE INDEX deadlines_child ON deadlines (child_key) WHERE child_key IS NOT NULL;
CREATE INDEX deadlines_closed ON deadlines (closed_on) WHERE closed_on IS NOT NULL;
CREATE INDEX deadlines_withdrawn_due ON deadlines (due_on) WHERE withdrawn = TRUE;
CREATE INDEX deadlines_open_due ON deadlines (due_on) WHERE closed_on IS NULL AND withdrawn = FALSE;
