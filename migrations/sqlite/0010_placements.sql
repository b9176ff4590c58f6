-- The placements view (register contract §1b): a placement's deadlines are stored like a case's,
-- keyed by its placement_ref, and keep the case the placement belongs to (its row's case_ref) so
-- that a notice can link through mail.case_link when mail.placement_link is not set.
ALTER TABLE deadlines ADD COLUMN case_of TEXT;
