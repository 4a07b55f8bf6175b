-- The tables of a whole-database job: whether the job owns each one's content (it
-- created, emptied or dropped it) and whether its load finished, so a resume
-- re-runs only the others.
CREATE TABLE job_tables (
    job             BIGINT  NOT NULL REFERENCES jobs (number) ON DELETE CASCADE,
    source          TEXT    NOT NULL,
    owned           BIGINT  NOT NULL,
    done            BIGINT  NOT NULL DEFAULT 0,
    line_json       TEXT    NULL,
    updated_ms      BIGINT  NOT NULL,
    PRIMARY KEY (job, source)
);
