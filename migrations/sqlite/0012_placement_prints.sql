-- Per-placement fingerprints (issue 27, item 5): the prints of the placements view's rows, kept
-- as the cases' are (state::prints, migrations 0005 and 0007) but on a shelf of their own, so
-- that a steady full pass skips an unchanged placement without a statement. A placement's print
-- covers its row, the facts of the cases view its clocks read (its case's investigation close,
-- the investigations opened in its child's cases) and the settings that shape the computation.
CREATE TABLE placement_prints (
    bucket  INTEGER PRIMARY KEY,
    prints  BLOB NOT NULL
);
CREATE TABLE placement_print_log (
    seq     INTEGER PRIMARY KEY,
    prints  BLOB NOT NULL
);
-- NULL until a full pass has built the placements' prints (then also the list of the stored
-- placements that a full pass checks for placements gone from the view).
ALTER TABLE poll_state ADD COLUMN placement_print_bits INTEGER;
