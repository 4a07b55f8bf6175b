//! The broker's HTTP admin API.
//!
//! Bound to loopback by default (`admin_listen`). Operator authentication
//! (token or mTLS) comes with the job API; until then, do not expose this
//! port beyond the broker host.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::registry::AgentInfo;
use crate::server::Shared;

#[derive(Serialize)]
struct Health {
    status: &'static str,
    agents: usize,
    refused_busy: u64,
    refused_tls: u64,
    refused_handshake: u64,
    refused_timeout: u64,
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/agents", get(agents))
        .route("/healthz", get(health))
        .with_state(shared)
}

async fn agents(State(shared): State<Arc<Shared>>) -> Json<Vec<AgentInfo>> {
    Json(shared.registry.list())
}

async fn health(State(shared): State<Arc<Shared>>) -> Json<Health> {
    let s = &shared.stats;
    Json(Health {
        status: "ok",
        agents: shared.registry.len(),
        refused_busy: s.refused_busy.load(Ordering::Relaxed),
        refused_tls: s.refused_tls.load(Ordering::Relaxed),
        refused_handshake: s.refused_handshake.load(Ordering::Relaxed),
        refused_timeout: s.refused_timeout.load(Ordering::Relaxed),
    })
}
