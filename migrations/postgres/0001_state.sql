-- fristvakt state store, PostgreSQL. Native types: dates are `date`, instants `timestamptz`,
-- flags `boolean`, structured values `jsonb`. From here on migrations are append-only.

-- One row per (case, kind): the deadline as last computed from the register. Its status is not
-- stored: it depends on the day it is looked at, and `rules` computes it.
CREATE TABLE deadlines (
    case_ref        TEXT        NOT NULL,
    kind            TEXT        NOT NULL,
    unit            TEXT        NOT NULL,
    caseworker      TEXT,
    -- 'F' or 'M' (register::Sex), kept for aggregated compliance figures only.
    child_sex       TEXT        CHECK (child_sex IN ('F', 'M')),
    start_on        DATE        NOT NULL,
    nominal_due_on  DATE        NOT NULL,
    due_on          DATE        NOT NULL,
    closed_on       DATE,
    -- nominal | next_day | moved | extended (rules::DueReason).
    due_reason      TEXT        NOT NULL,
    -- The decided last day when due_reason = 'extended'.
    extended_to     DATE,
    -- The days the holiday rule passed over when due_reason = 'moved', in order:
    -- [["2026-12-24", "christmas_eve"], ["2026-12-25", {"holiday": "christmas_day"}], …].
    moved_over      JSONB,
    -- The next day a ladder step may fire; NULL when closed, withdrawn or past its last step.
    next_step_on    DATE,
    -- The case left the register or the deadline no longer exists: no more notices.
    withdrawn       BOOLEAN     NOT NULL DEFAULT FALSE,
    row_updated_at  TIMESTAMPTZ NOT NULL,
    seen_in_poll    BIGINT      NOT NULL,
    PRIMARY KEY (case_ref, kind)
);
CREATE INDEX deadlines_next_step ON deadlines (next_step_on) WHERE next_step_on IS NOT NULL;
CREATE INDEX deadlines_unit_due ON deadlines (unit, due_on);
CREATE INDEX deadlines_due ON deadlines (due_on);

-- Progress of polling: a single row.
CREATE TABLE poll_state (
    id                  BIGINT PRIMARY KEY CHECK (id = 1),
    poll_seq            BIGINT NOT NULL DEFAULT 0,
    watermark           TIMESTAMPTZ,
    last_full_pass_on   DATE,
    last_success_at     TIMESTAMPTZ
);
INSERT INTO poll_state (id) VALUES (1);

-- Every notice and digest, written before it is sent; unique per key so a repeat adds nothing.
CREATE TABLE outbox (
    id              BIGSERIAL   PRIMARY KEY,
    notice_key      TEXT        NOT NULL UNIQUE,
    -- notice | digest | digest_run (state::OutboxCategory); the payload's shape follows it.
    category        TEXT        NOT NULL,
    case_ref        TEXT,
    kind            TEXT,
    step            BIGINT,
    recipients      JSONB       NOT NULL,
    payload         JSONB       NOT NULL,
    state           TEXT        NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    not_before      TIMESTAMPTZ NOT NULL,
    attempts        BIGINT      NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    last_error      TEXT,
    sent_at         TIMESTAMPTZ,
    message_id      TEXT        NOT NULL,
    claimed_by      TEXT,
    claimed_until   TIMESTAMPTZ
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_case ON outbox (case_ref, kind);

-- Named leases so that only one replica runs a scheduled job at a time.
CREATE TABLE leases (
    name        TEXT        PRIMARY KEY,
    holder      TEXT        NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
