-- Recurring clocks (register contract §2 "Recurring clocks", §3): a deadline is identified by
-- (reference, kind, cycle start day). One-off clocks keep the cycle '' (their rows and outbox
-- keys unchanged, so nothing stored before is sent again); a recurring clock's cycle, and the
-- second cycle of lvu_care_application, hold the cycle's first start day (YYYY-MM-DD), which
-- stays when the running cycle is recomputed in place. The outbox keeps the cycle of a notice so
-- that the steps recorded and the notices cancelled are each cycle's own.
ALTER TABLE deadlines ADD COLUMN cycle_start TEXT NOT NULL DEFAULT '';
ALTER TABLE deadlines DROP CONSTRAINT deadlines_pkey;
ALTER TABLE deadlines ADD PRIMARY KEY (case_ref, kind, cycle_start);
