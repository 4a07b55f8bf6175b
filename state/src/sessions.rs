//! Agent sessions: a history of agents' connections (the live list of
//! agents stays in the broker's memory).

use serde::Serialize;

use crate::row::Cols;
use crate::{found, now_ms, StateError, StateStore};

/// One connection of an agent, from connect to disconnect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentSessionRecord {
    pub id: i64,
    pub agent_id: String,
    pub group: String,
    /// The agent's remote address.
    pub remote: String,
    /// The data sources it announced, as JSON.
    pub sources_json: String,
    pub connected_ms: i64,
    pub disconnected_ms: Option<i64>,
    /// Why it ended.
    pub reason: Option<String>,
}

/// The reason [`StateStore::close_stale_sessions`] gives.
const BROKER_RESTARTED: &str = "broker restarted";

impl StateStore {
    /// An agent connected: records a session and returns its id.
    pub async fn agent_connected(
        &self,
        agent_id: &str,
        group: &str,
        remote: &str,
        sources_json: &str,
    ) -> Result<i64, StateError> {
        let row = sqlx::query(
            "INSERT INTO agent_sessions (agent_id, agent_group, remote, sources_json, connected_ms) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(agent_id)
        .bind(group)
        .bind(remote)
        .bind(sources_json)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(StateError::db(|| {
            format!("recording a session of agent {agent_id}")
        }))?;
        Cols::new(&row, "agent_sessions").i64("id")
    }

    /// The session ended, for `reason`.
    pub async fn agent_disconnected(&self, session: i64, reason: &str) -> Result<(), StateError> {
        let result = sqlx::query(
            "UPDATE agent_sessions SET disconnected_ms = $2, reason = $3 WHERE id = $1",
        )
        .bind(session)
        .bind(now_ms())
        .bind(reason)
        .execute(&self.pool)
        .await
        .map_err(StateError::db(|| format!("ending agent session {session}")))?;
        found(result, || format!("agent session {session}"))
    }

    /// The newest `limit` sessions, newest first.
    pub async fn agent_sessions(&self, limit: u32) -> Result<Vec<AgentSessionRecord>, StateError> {
        let rows = sqlx::query(
            "SELECT id, agent_id, agent_group, remote, sources_json, connected_ms, \
             disconnected_ms, reason FROM agent_sessions ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::db(|| "listing agent sessions".to_owned()))?;
        rows.iter()
            .map(|row| {
                let c = Cols::new(row, "agent_sessions");
                Ok(AgentSessionRecord {
                    id: c.i64("id")?,
                    agent_id: c.text("agent_id")?,
                    group: c.text("agent_group")?,
                    remote: c.text("remote")?,
                    sources_json: c.text("sources_json")?,
                    connected_ms: c.i64("connected_ms")?,
                    disconnected_ms: c.opt_i64("disconnected_ms")?,
                    reason: c.opt_text("reason")?,
                })
            })
            .collect()
    }

    /// On broker start: closes the sessions a crash left open, with reason
    /// "broker restarted". Returns how many.
    pub async fn close_stale_sessions(&self) -> Result<u64, StateError> {
        let result = sqlx::query(
            "UPDATE agent_sessions SET disconnected_ms = $1, reason = $2 \
             WHERE disconnected_ms IS NULL",
        )
        .bind(now_ms())
        .bind(BROKER_RESTARTED)
        .execute(&self.pool)
        .await
        .map_err(StateError::db(|| "closing stale agent sessions".to_owned()))?;
        Ok(result.rows_affected())
    }
}
