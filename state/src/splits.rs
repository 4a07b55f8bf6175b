//! Splits: the tasks of a job, each with its state and its checkpoint (the
//! last batch committed in the target).

use std::fmt;

use serde::Serialize;

use crate::row::Cols;
use crate::{found, now_ms, to_db, StateError, StateStore};

/// Where a split is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitState {
    Pending,
    Running,
    Done,
    Failed,
}

impl SplitState {
    /// The state as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            SplitState::Pending => "pending",
            SplitState::Running => "running",
            SplitState::Done => "done",
            SplitState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            SplitState::Pending,
            SplitState::Running,
            SplitState::Done,
            SplitState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

impl fmt::Display for SplitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored split of a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitRecord {
    /// The split's position in the plan, `0..total`.
    pub index: u32,
    pub split_json: String,
    pub state: SplitState,
    /// The agent reading it (or that read it last).
    pub agent: Option<String>,
    /// Writers started on it so far.
    pub attempts: u32,
    /// Rows of the split committed in the target so far.
    pub rows_committed: u64,
    /// Sequence number of the last batch committed in the target.
    pub last_seq: Option<u64>,
    /// Split key of the last row committed (key-ordered splits), as text.
    pub last_key: Option<String>,
    /// Why the last attempt failed (kept until the next start).
    pub error: Option<String>,
    pub updated_ms: i64,
}

impl StateStore {
    /// The job's splits, by index.
    pub async fn splits(&self, number: u64) -> Result<Vec<SplitRecord>, StateError> {
        let rows = sqlx::query(
            "SELECT split_index, split_json, state, agent, attempts, rows_committed, last_seq, \
             last_key, error, updated_ms FROM splits WHERE job = $1 ORDER BY split_index",
        )
        .bind(to_db(number, "job number")?)
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::db(|| {
            format!("reading the splits of job {number}")
        }))?;
        rows.iter()
            .map(|row| {
                let c = Cols::new(row, "splits");
                let state = c.text("state")?;
                Ok(SplitRecord {
                    index: c.u32("split_index")?,
                    split_json: c.text("split_json")?,
                    state: SplitState::parse(&state).ok_or_else(|| {
                        c.corrupt("state", format!("unknown split state {state:?}"))
                    })?,
                    agent: c.opt_text("agent")?,
                    attempts: c.u32("attempts")?,
                    rows_committed: c.u64("rows_committed")?,
                    last_seq: c.opt_u64("last_seq")?,
                    last_key: c.opt_text("last_key")?,
                    error: c.opt_text("error")?,
                    updated_ms: c.i64("updated_ms")?,
                })
            })
            .collect()
    }

    /// A writer started on the split: `running` on `agent`, one more
    /// attempt, error cleared.
    pub async fn split_started(
        &self,
        number: u64,
        index: u32,
        agent: Option<&str>,
    ) -> Result<(), StateError> {
        let result = sqlx::query(
            "UPDATE splits SET state = 'running', agent = $3, attempts = attempts + 1, \
             error = NULL, updated_ms = $4 WHERE job = $1 AND split_index = $2",
        )
        .bind(to_db(number, "job number")?)
        .bind(i64::from(index))
        .bind(agent)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(StateError::db(|| {
            format!("starting split {index} of job {number}")
        }))?;
        found(result, || format!("split {index} of job {number}"))
    }

    /// A batch of the split was committed in the target: its sequence
    /// number, the split's rows committed so far and the position of its
    /// last row (key-ordered splits), in its stored form. One UPDATE by primary key: this runs
    /// after every committed batch.
    pub async fn checkpoint(
        &self,
        number: u64,
        index: u32,
        seq: u64,
        rows_committed: u64,
        position: Option<&str>,
    ) -> Result<(), StateError> {
        let result = sqlx::query(
            "UPDATE splits SET last_seq = $3, rows_committed = $4, updated_ms = $5, last_key = $6 \
             WHERE job = $1 AND split_index = $2",
        )
        .bind(to_db(number, "job number")?)
        .bind(i64::from(index))
        .bind(to_db(seq, "batch sequence number")?)
        .bind(to_db(rows_committed, "rows committed")?)
        .bind(now_ms())
        .bind(position)
        .execute(&self.pool)
        .await
        .map_err(StateError::db(|| {
            format!("checkpointing split {index} of job {number}")
        }))?;
        found(result, || format!("split {index} of job {number}"))
    }

    /// The split finished: `done`, with `rows` rows in all.
    pub async fn split_done(&self, number: u64, index: u32, rows: u64) -> Result<(), StateError> {
        let result = sqlx::query(
            "UPDATE splits SET state = 'done', rows_committed = $3, error = NULL, \
             updated_ms = $4 WHERE job = $1 AND split_index = $2",
        )
        .bind(to_db(number, "job number")?)
        .bind(i64::from(index))
        .bind(to_db(rows, "rows")?)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(StateError::db(|| {
            format!("finishing split {index} of job {number}")
        }))?;
        found(result, || format!("split {index} of job {number}"))
    }

    /// The split failed: `failed`, with why.
    pub async fn split_failed(
        &self,
        number: u64,
        index: u32,
        error: &str,
    ) -> Result<(), StateError> {
        self.set_split_state(number, index, SplitState::Failed, Some(error))
            .await
    }

    /// Puts the split back to `pending` before a retry (its last agent and
    /// error stay until it starts again).
    pub async fn split_pending(&self, number: u64, index: u32) -> Result<(), StateError> {
        self.set_split_state(number, index, SplitState::Pending, None)
            .await
    }

    /// Sets the split's state, and its error when `error` is given.
    async fn set_split_state(
        &self,
        number: u64,
        index: u32,
        state: SplitState,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        let result = sqlx::query(
            "UPDATE splits SET state = $3, error = COALESCE($4, error), updated_ms = $5 \
             WHERE job = $1 AND split_index = $2",
        )
        .bind(to_db(number, "job number")?)
        .bind(i64::from(index))
        .bind(state.as_str())
        .bind(error)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(StateError::db(|| {
            format!("marking split {index} of job {number} {state}")
        }))?;
        found(result, || format!("split {index} of job {number}"))
    }
}
