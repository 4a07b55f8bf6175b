//! Job logs: what happened to a job, in order, paged by entry id.

use serde::Serialize;

use crate::row::Cols;
use crate::{now_ms, to_db, StateError, StateStore};

/// One entry of a job's log.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LogRecord {
    /// Increasing; page with [`StateStore::logs`]'s `after`.
    pub id: i64,
    pub at_ms: i64,
    pub level: String,
    pub message: String,
}

impl StateStore {
    /// Appends an entry to the job's log, stamped now; returns its id.
    pub async fn append_log(
        &self,
        number: u64,
        level: &str,
        message: &str,
    ) -> Result<i64, StateError> {
        let row = sqlx::query(
            "INSERT INTO job_logs (job, at_ms, level, message) VALUES ($1, $2, $3, $4) \
             RETURNING id",
        )
        .bind(to_db(number, "job number")?)
        .bind(now_ms())
        .bind(level)
        .bind(message)
        .fetch_one(&self.pool)
        .await
        .map_err(StateError::db(|| {
            format!("appending to the log of job {number}")
        }))?;
        Cols::new(&row, "job_logs").i64("id")
    }

    /// The job's log entries with id > `after`, oldest first, at most
    /// `limit` of them.
    pub async fn logs(
        &self,
        number: u64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<LogRecord>, StateError> {
        let rows = sqlx::query(
            "SELECT id, at_ms, level, message FROM job_logs \
             WHERE job = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(to_db(number, "job number")?)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::db(|| {
            format!("reading the log of job {number}")
        }))?;
        rows.iter()
            .map(|row| {
                let c = Cols::new(row, "job_logs");
                Ok(LogRecord {
                    id: c.i64("id")?,
                    at_ms: c.i64("at_ms")?,
                    level: c.text("level")?,
                    message: c.text("message")?,
                })
            })
            .collect()
    }
}
