-- The broker's state (SQLite). Keep in step with ../postgres/0001_init.sql:
-- the two differ only in how ids are generated.
-- Times are unix milliseconds; counters and u64 values are 64-bit integers.

CREATE TABLE jobs (
    number          INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused, even after deletes
    spec            TEXT    NOT NULL,
    vars_json       TEXT    NOT NULL,
    compression     TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    state           TEXT    NOT NULL,                  -- running | succeeded | failed | cancelled
    submitted_ms    BIGINT  NOT NULL,
    ended_ms        BIGINT  NULL,
    schema_json     TEXT    NULL,
    estimated_rows  BIGINT  NULL,
    summary_json    TEXT    NULL,
    error           TEXT    NULL,
    resumes         BIGINT  NOT NULL DEFAULT 0,
    -- Unused for now: for several brokers sharing this state later, the
    -- broker running a job and until when its claim holds.
    lease_owner     TEXT    NULL,
    lease_until_ms  BIGINT  NULL
);
CREATE INDEX jobs_by_state ON jobs (state);

CREATE TABLE splits (
    job             BIGINT  NOT NULL REFERENCES jobs (number) ON DELETE CASCADE,
    split_index     BIGINT  NOT NULL,
    split_json      TEXT    NOT NULL,
    state           TEXT    NOT NULL,                  -- pending | running | done | failed
    agent           TEXT    NULL,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    rows_committed  BIGINT  NOT NULL DEFAULT 0,
    last_seq        BIGINT  NULL,
    error           TEXT    NULL,
    updated_ms      BIGINT  NOT NULL,
    PRIMARY KEY (job, split_index)
);

CREATE TABLE agent_sessions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id        TEXT    NOT NULL,
    agent_group     TEXT    NOT NULL,
    remote          TEXT    NOT NULL,
    sources_json    TEXT    NOT NULL,
    connected_ms    BIGINT  NOT NULL,
    disconnected_ms BIGINT  NULL,
    reason          TEXT    NULL
);
CREATE INDEX agent_sessions_open ON agent_sessions (id) WHERE disconnected_ms IS NULL;

CREATE TABLE job_logs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    job             BIGINT  NOT NULL REFERENCES jobs (number) ON DELETE CASCADE,
    at_ms           BIGINT  NOT NULL,
    level           TEXT    NOT NULL,
    message         TEXT    NOT NULL
);
CREATE INDEX job_logs_by_job ON job_logs (job, id);
