-- fristvakt state store, SQLite. Dates are TEXT as sqlx encodes NaiveDate (YYYY-MM-DD), instants
-- TEXT as it encodes DateTime<Utc> (RFC 3339, +00:00), so that text order is time order; flags
-- are INTEGER 0/1, structured values JSON TEXT. From here on migrations are append-only.

-- One row per (case, kind): the deadline as last computed from the register. Its status is not
-- stored: it depends on the day it is looked at, and `rules` computes it.
CREATE TABLE deadlines (
    case_ref        TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    unit            TEXT    NOT NULL,
    caseworker      TEXT,
    -- 'F' or 'M' (register::Sex), kept for aggregated compliance figures only.
    child_sex       TEXT    CHECK (child_sex IN ('F', 'M')),
    start_on        TEXT    NOT NULL,
    nominal_due_on  TEXT    NOT NULL,
    due_on          TEXT    NOT NULL,
    closed_on       TEXT,
    -- nominal | next_day | moved | extended (rules::DueReason).
    due_reason      TEXT    NOT NULL,
    -- The decided last day when due_reason = 'extended'.
    extended_to     TEXT,
    -- The days the holiday rule passed over when due_reason = 'moved', in order:
    -- [["2026-12-24", "christmas_eve"], ["2026-12-25", {"holiday": "christmas_day"}], …].
    moved_over      TEXT,
    -- The next day a ladder step may fire; NULL when closed, withdrawn or past its last step.
    next_step_on    TEXT,
    -- 1 when the case left the register or the deadline no longer exists: no more notices.
    withdrawn       INTEGER NOT NULL DEFAULT 0,
    row_updated_at  TEXT    NOT NULL,
    seen_in_poll    INTEGER NOT NULL,
    PRIMARY KEY (case_ref, kind)
);
CREATE INDEX deadlines_next_step ON deadlines (next_step_on) WHERE next_step_on IS NOT NULL;
CREATE INDEX deadlines_unit_due ON deadlines (unit, due_on);
CREATE INDEX deadlines_due ON deadlines (due_on);

-- Progress of polling: a single row.
CREATE TABLE poll_state (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    poll_seq            INTEGER NOT NULL DEFAULT 0,
    watermark           TEXT,
    last_full_pass_on   TEXT,
    last_success_at     TEXT
);
INSERT INTO poll_state (id) VALUES (1);

-- Every notice and digest, written before it is sent; unique per key so a repeat adds nothing.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    notice_key      TEXT    NOT NULL UNIQUE,
    -- notice | digest | digest_run (state::OutboxCategory); the payload's shape follows it.
    category        TEXT    NOT NULL,
    case_ref        TEXT,
    kind            TEXT,
    step            INTEGER,
    recipients      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    not_before      TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    last_error      TEXT,
    sent_at         TEXT,
    message_id      TEXT    NOT NULL,
    claimed_by      TEXT,
    claimed_until   TEXT
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_case ON outbox (case_ref, kind);

-- Named leases so that only one replica runs a scheduled job at a time.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
