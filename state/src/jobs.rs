//! Jobs: submitted, planned once (schema and splits), finished, and reopened
//! when a restarted broker picks them up again.

use serde::Serialize;
use sqlx::any::AnyRow;

use crate::row::Cols;
use crate::{found, now_ms, to_db, StateError, StateStore};

/// A job as submitted, before it has a number.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewJob {
    /// The job text as submitted (YAML or JSON).
    pub spec: String,
    pub vars_json: String,
    pub compression: String,
    pub source: String,
    pub target: String,
    pub submitted_ms: i64,
    /// A key unique across brokers: the target's checkpoints are kept under it.
    pub job_key: String,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    /// The job's number; users see it as `job-{number}`.
    pub number: u64,
    pub spec: String,
    pub vars_json: String,
    pub compression: String,
    pub source: String,
    pub target: String,
    /// `running`, `succeeded`, `failed`, `cancelled` or `stopped`.
    pub state: String,
    pub submitted_ms: i64,
    pub ended_ms: Option<i64>,
    /// The Arrow schema as JSON, once planned.
    pub schema_json: Option<String>,
    pub estimated_rows: Option<u64>,
    pub summary_json: Option<String>,
    pub error: Option<String>,
    /// Times the job was picked up again ([`StateStore::reopen_job`]).
    pub resumes: u32,
    /// See [`NewJob::job_key`]; `None` for jobs stored before it existed.
    pub job_key: Option<String>,
}

/// The final states [`StateStore::finish_job`] takes.
const FINAL_STATES: [&str; 4] = ["succeeded", "failed", "cancelled", "stopped"];

const COLUMNS: &str = "number, spec, vars_json, compression, source, target, state, \
                       submitted_ms, ended_ms, schema_json, estimated_rows, summary_json, \
                       error, resumes, job_key";

fn job_record(row: &AnyRow) -> Result<JobRecord, StateError> {
    let c = Cols::new(row, "jobs");
    Ok(JobRecord {
        number: c.u64("number")?,
        spec: c.text("spec")?,
        vars_json: c.text("vars_json")?,
        compression: c.text("compression")?,
        source: c.text("source")?,
        target: c.text("target")?,
        state: c.text("state")?,
        submitted_ms: c.i64("submitted_ms")?,
        ended_ms: c.opt_i64("ended_ms")?,
        schema_json: c.opt_text("schema_json")?,
        estimated_rows: c.opt_u64("estimated_rows")?,
        summary_json: c.opt_text("summary_json")?,
        error: c.opt_text("error")?,
        resumes: c.u32("resumes")?,
        job_key: c.opt_text("job_key")?,
    })
}

impl StateStore {
    /// Inserts a job in state `running` and returns its number (unique and
    /// increasing, also across restarts; users see it as `job-{n}`).
    pub async fn insert_job(&self, job: &NewJob) -> Result<u64, StateError> {
        let row = sqlx::query(
            "INSERT INTO jobs (spec, vars_json, compression, source, target, state, submitted_ms, job_key) \
             VALUES ($1, $2, $3, $4, $5, 'running', $6, $7) RETURNING number",
        )
        .bind(&job.spec)
        .bind(&job.vars_json)
        .bind(&job.compression)
        .bind(&job.source)
        .bind(&job.target)
        .bind(job.submitted_ms)
        .bind(&job.job_key)
        .fetch_one(&self.pool)
        .await
        .map_err(StateError::db(|| "inserting a job".to_owned()))?;
        Cols::new(&row, "jobs").u64("number")
    }

    /// The job numbered `number`, if any.
    pub async fn job(&self, number: u64) -> Result<Option<JobRecord>, StateError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE number = $1"))
            .bind(to_db(number, "job number")?)
            .fetch_optional(&self.pool)
            .await
            .map_err(StateError::db(|| format!("reading job {number}")))?;
        row.as_ref().map(job_record).transpose()
    }

    /// The newest `limit` jobs, returned oldest first.
    pub async fn jobs(&self, limit: u32) -> Result<Vec<JobRecord>, StateError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM \
             (SELECT {COLUMNS} FROM jobs ORDER BY number DESC LIMIT $1) AS newest \
             ORDER BY number"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::db(|| "listing jobs".to_owned()))?;
        rows.iter().map(job_record).collect()
    }

    /// Jobs in state `running` (to be picked up again after a restart),
    /// oldest first.
    pub async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>, StateError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE state = 'running' ORDER BY number"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::db(|| "listing unfinished jobs".to_owned()))?;
        rows.iter().map(job_record).collect()
    }

    /// Records the job's plan, once: its schema (Arrow schema as JSON), the
    /// estimate of its rows, and its splits (`splits[i]` is split `i`'s JSON),
    /// each `pending`. A job that already has splits is
    /// [`StateError::Corrupt`] ("already planned").
    pub async fn job_planned(
        &self,
        number: u64,
        schema_json: &str,
        estimated_rows: Option<u64>,
        splits: &[String],
    ) -> Result<(), StateError> {
        let job = to_db(number, "job number")?;
        let estimated_rows = estimated_rows
            .map(|rows| to_db(rows, "estimated rows"))
            .transpose()?;
        let context = || format!("planning job {number}");
        let mut tx = self.pool.begin().await.map_err(StateError::db(context))?;
        // The write comes first, so that SQLite takes its write lock at once
        // rather than upgrading a read transaction (which can fail as busy).
        let updated =
            sqlx::query("UPDATE jobs SET schema_json = $2, estimated_rows = $3 WHERE number = $1")
                .bind(job)
                .bind(schema_json)
                .bind(estimated_rows)
                .execute(&mut *tx)
                .await
                .map_err(StateError::db(context))?;
        found(updated, || format!("job {number}"))?;
        let row = sqlx::query("SELECT COUNT(*) AS n FROM splits WHERE job = $1")
            .bind(job)
            .fetch_one(&mut *tx)
            .await
            .map_err(StateError::db(context))?;
        if Cols::new(&row, "splits").i64("n")? != 0 {
            return Err(StateError::Corrupt {
                what: format!("job {number}"),
                message: "already planned".to_owned(),
            });
        }
        let now = now_ms();
        for (index, split) in splits.iter().enumerate() {
            let index = to_db(index as u64, "split index")?;
            sqlx::query(
                "INSERT INTO splits (job, split_index, split_json, state, updated_ms) \
                 VALUES ($1, $2, $3, 'pending', $4)",
            )
            .bind(job)
            .bind(index)
            .bind(split)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StateError::db(context))?;
        }
        tx.commit().await.map_err(StateError::db(context))
    }

    /// Ends the job: `state` is `succeeded`, `failed`, `cancelled` or `stopped`; sets
    /// `ended_ms` to now.
    pub async fn finish_job(
        &self,
        number: u64,
        state: &str,
        summary_json: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        if !FINAL_STATES.contains(&state) {
            return Err(StateError::Invalid(format!(
                "{state:?} is not a final job state (expected one of {FINAL_STATES:?})"
            )));
        }
        let result = sqlx::query(
            "UPDATE jobs SET state = $2, summary_json = $3, error = $4, ended_ms = $5 \
             WHERE number = $1",
        )
        .bind(to_db(number, "job number")?)
        .bind(state)
        .bind(summary_json)
        .bind(error)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(StateError::db(|| format!("finishing job {number}")))?;
        found(result, || format!("job {number}"))
    }

    /// Puts the job back to `running` (it is resumed): clears `ended_ms`,
    /// `error` and `summary_json`, and counts one more resume.
    pub async fn reopen_job(&self, number: u64) -> Result<(), StateError> {
        let result = sqlx::query(
            "UPDATE jobs SET state = 'running', ended_ms = NULL, error = NULL, \
             summary_json = NULL, resumes = resumes + 1 WHERE number = $1",
        )
        .bind(to_db(number, "job number")?)
        .execute(&self.pool)
        .await
        .map_err(StateError::db(|| format!("reopening job {number}")))?;
        found(result, || format!("job {number}"))
    }
}
