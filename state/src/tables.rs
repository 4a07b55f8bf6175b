//! The tables of a whole-database job: which ones the job owns the content of (it created,
//! emptied or dropped them) and which finished loading, so a resume re-runs only the rest.

use serde::Serialize;

use crate::row::Cols;
use crate::{now_ms, to_db, StateError, StateStore};

/// A stored table of a whole-database job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableRecord {
    /// The source table, as the job names it.
    pub source: String,
    /// The job created, emptied or dropped it: its rows are all the job's.
    pub owned: bool,
    /// Its load (and indexes) finished.
    pub done: bool,
    /// Its summary line as JSON, once done.
    pub line_json: Option<String>,
}

impl StateStore {
    /// Records the tables a whole-database job takes, none done, each with whether the job
    /// owns its content; a table recorded before keeps its record (a resumed job's).
    pub async fn tables_planned(
        &self,
        number: u64,
        tables: &[(String, bool)],
    ) -> Result<(), StateError> {
        let job = to_db(number, "job number")?;
        for (source, owned) in tables {
            sqlx::query(
                "INSERT INTO job_tables (job, source, owned, done, updated_ms) \
                 VALUES ($1, $2, $3, 0, $4) ON CONFLICT (job, source) DO NOTHING",
            )
            .bind(job)
            .bind(source)
            .bind(i64::from(*owned))
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(StateError::db(|| {
                format!("recording the tables of job {number}")
            }))?;
        }
        Ok(())
    }

    /// A table's load ended: `done` with its summary line, or not (it is loaded again
    /// when the job resumes).
    pub async fn table_ended(
        &self,
        number: u64,
        source: &str,
        done: bool,
        line_json: Option<&str>,
    ) -> Result<(), StateError> {
        sqlx::query(
            "UPDATE job_tables SET done = $3, line_json = $4, updated_ms = $5 \
             WHERE job = $1 AND source = $2",
        )
        .bind(to_db(number, "job number")?)
        .bind(source)
        .bind(i64::from(done))
        .bind(line_json)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(StateError::db(|| {
            format!("recording table {source} of job {number}")
        }))?;
        Ok(())
    }

    /// The tables of a whole-database job, by name.
    pub async fn tables(&self, number: u64) -> Result<Vec<TableRecord>, StateError> {
        let rows = sqlx::query(
            "SELECT source, owned, done, line_json FROM job_tables WHERE job = $1 ORDER BY source",
        )
        .bind(to_db(number, "job number")?)
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::db(|| {
            format!("reading the tables of job {number}")
        }))?;
        rows.iter()
            .map(|row| {
                let c = Cols::new(row, "job_tables");
                Ok(TableRecord {
                    source: c.text("source")?,
                    owned: c.i64("owned")? != 0,
                    done: c.i64("done")? != 0,
                    line_json: c.opt_text("line_json")?,
                })
            })
            .collect()
    }
}
