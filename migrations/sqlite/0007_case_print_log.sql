-- The case prints changed by incremental polls (state::prints): each transaction of a poll that
-- computed cases appends one row, a blob of their (print, tag, case reference) entries in the
-- form of a case_prints bucket, instead of rewriting the bucket of every case it computed (a
-- thousand changed rows rewrote about a thousand buckets scattered over the table). A later
-- row's print of a case stands over an earlier one's and over its bucket's. The full pass, and
-- a poll that finds the log long, fold it into case_prints in one transaction and delete it.
CREATE TABLE case_print_log (
    seq     INTEGER PRIMARY KEY,
    prints  BLOB NOT NULL
);
