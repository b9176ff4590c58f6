-- The case prints changed by incremental polls (state::prints): each transaction of a poll that
-- computed cases appends one row, a blob of their (print, tag, case reference) entries in the
-- form of a case_prints bucket, instead of rewriting the bucket of every case it computed (a
-- thousand changed rows rewrote about a thousand buckets scattered over the table). A later
-- row's print of a case stands over an earlier one's and over its bucket's. The full pass, and
-- a poll that finds the log long, fold it into case_prints in one transaction and delete it.
CREATE TABLE case_print_log (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prints  BYTEA NOT NULL
);

-- Room on every page of deadlines for a new version of its rows: an update that changes no
-- indexed column (a new caseworker, a new updated_at) then stays on its page and writes no index
-- (a HOT update); on full pages every such update wrote all seven indexes. Pages written before
-- this keep no room until the table is rewritten (VACUUM FULL).
ALTER TABLE deadlines SET (fillfactor = 80);
