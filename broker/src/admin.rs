//! The broker's HTTP admin API.
//!
//! Bound to loopback by default (`admin_listen`). With `admin_token_file`
//! every `/v1` route wants `Authorization: Bearer <token>` (compared in
//! constant time); a broker whose admin API listens beyond loopback must
//! have one. `/healthz` stays open for load balancers.
//!
//! On loopback without a token, the only guard is that just this machine can
//! connect; a web page the operator opens could still reach the API by DNS
//! rebinding (its own host name resolving to 127.0.0.1). The browser sends
//! that name as `Host`, so such a broker answers only requests whose `Host`
//! is `localhost`, `127.0.0.1`, `[::1]` or the bound address, with or
//! without the bound port, and 421 to anything else.
//!
//! - `GET /v1/agents`: connected agents and their data sources;
//! - `POST /v1/jobs` `{"job": "<YAML or JSON>", "vars": {..}, "compression": "zstd:1"}`:
//!   submit; `GET /v1/jobs`, `GET /v1/jobs/{id}` (with its tasks),
//!   `GET /v1/jobs/{id}/logs?after=N&limit=M`, `POST /v1/jobs/{id}/cancel`,
//!   `POST /v1/jobs/{id}/stop` (to resume later), `POST /v1/jobs/{id}/resume` (a failed,
//!   cancelled or stopped job);
//! - `GET /v1/openapi.json`: this API, described (OpenAPI 3.1);
//! - `GET /metrics`: Prometheus metrics (OpenMetrics text), behind the
//!   token like `/v1`;
//! - `GET /healthz`, open.
//!
//! The description lives in `broker/openapi.json`; a test checks it against
//! this router and the types the handlers return.

use std::sync::Arc;

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_protocol::data::Compression;
use serde::{Deserialize, Serialize};

use crate::jobs::JobStatus;

use crate::jobs::JobHub;
use crate::registry::AgentInfo;
use crate::server::Sessions;

#[derive(Serialize)]
struct Health {
    status: &'static str,
    agents: usize,
    handshakes_in_progress: usize,
    /// No slot: busy, source_busy and source_rate together.
    refused_busy: u64,
    refused_tls: u64,
    refused_handshake: u64,
    refused_timeout: u64,
}

/// What the admin API reads: the sessions (agents, health, metrics) and
/// the jobs.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub sessions: Arc<Sessions>,
    pub hub: Arc<JobHub>,
}

pub(crate) fn router(
    state: AdminState,
    token: Option<String>,
    bound: std::net::SocketAddr,
) -> Router {
    let open_on_loopback = token.is_none() && bound.ip().is_loopback();
    let v1 = Router::new()
        .route("/v1/agents", get(agents))
        .route("/v1/jobs", post(submit).get(list_jobs))
        .route("/v1/jobs/{id}", get(job))
        .route("/v1/jobs/{id}/logs", get(logs))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/stop", post(stop))
        .route("/v1/jobs/{id}/resume", post(resume))
        .route("/v1/verify", post(verify))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    let v1 = match token {
        Some(t) => v1.layer(axum::middleware::from_fn_with_state(
            Arc::new(t),
            require_token,
        )),
        None => v1,
    };
    let app = Router::new()
        .route("/healthz", get(health))
        .with_state(state)
        .merge(v1);
    if open_on_loopback {
        app.layer(axum::middleware::from_fn_with_state(
            Arc::new(LoopbackHosts::new(bound)),
            require_loopback_host,
        ))
    } else {
        app
    }
}

/// The `Host` values a tokenless loopback admin API answers.
struct LoopbackHosts {
    bound: std::net::SocketAddr,
}

impl LoopbackHosts {
    fn new(bound: std::net::SocketAddr) -> Self {
        Self { bound }
    }

    fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let port = self.bound.port().to_string();
        // `name` or `name:port`; IPv6 literals keep their brackets.
        let name = match host.rsplit_once(':') {
            Some((name, p)) if !name.is_empty() && !p.contains(']') => {
                if p != port {
                    return false;
                }
                name
            }
            _ => host.as_str(),
        };
        let bound_ip = match self.bound.ip() {
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        };
        matches!(name, "localhost" | "127.0.0.1" | "[::1]") || name == bound_ip
    }
}

async fn require_loopback_host(
    State(hosts): State<Arc<LoopbackHosts>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    match host {
        Some(h) if hosts.allows(h) => next.run(req).await,
        _ => {
            let shown = host.unwrap_or("(none)");
            tracing::warn!(host = %shown, "admin API request refused: Host is not a loopback name (DNS rebinding?)");
            error(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "Host `{shown}` refused: this admin API has no token, so it answers only requests for localhost, 127.0.0.1 or [::1] (port {}), not a name that merely resolves to this machine; set admin_token_file to use another name",
                    hosts.bound.port()
                ),
            )
        }
    }
}

async fn require_token(
    State(token): State<Arc<String>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => next.run(req).await,
        Some(_) => error(StatusCode::UNAUTHORIZED, "wrong admin token"),
        None => error(
            StatusCode::UNAUTHORIZED,
            "this broker's admin API needs `Authorization: Bearer <token>` (ferry: --token-file or FERRY_ADMIN_TOKEN)",
        ),
    }
}

/// Equal without an early exit, so the time taken says nothing about how
/// much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn agents(State(s): State<AdminState>) -> Json<Vec<AgentInfo>> {
    Json(s.sessions.registry.list())
}

async fn health(State(s): State<AdminState>) -> Json<Health> {
    let m = &s.sessions.metrics;
    Json(Health {
        status: "ok",
        agents: s.sessions.registry.len(),
        handshakes_in_progress: s.sessions.handshakes_in_progress(),
        refused_busy: m.refused_count("busy")
            + m.refused_count("source_busy")
            + m.refused_count("source_rate"),
        refused_tls: m.refused_count("tls"),
        refused_handshake: m.refused_count("rejected"),
        refused_timeout: m.refused_count("timeout"),
    })
}

/// A job submission.
#[derive(Debug, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// The job file's text (YAML or JSON).
    pub job: String,
    /// `${name}` values; `bizdate` defaults to yesterday.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// `none` or `zstd:<level>`; default `zstd:1`.
    #[serde(default)]
    pub compression: Option<String>,
}

/// `POST /v1/verify`: verify a job's target against its source, without copying.
#[derive(Debug, Serialize, Deserialize)]
pub struct VerifyRequest {
    /// The job file's text (YAML or JSON).
    pub job: String,
    /// `${name}` values; `bizdate` defaults to yesterday.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Fetch the differing rows' values from both sides (values may be sensitive).
    #[serde(default)]
    pub show_values: bool,
    /// Most differing rows listed per table (default 20).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Re-sync the differing rows (delete them in the target, copy the source's again),
    /// then verify again.
    #[serde(default)]
    pub repair: bool,
}

/// The answer to a submission.
#[derive(Debug, Serialize, Deserialize)]
pub struct Submitted {
    pub id: String,
}

/// An API error body.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            error: message.into(),
        }),
    )
        .into_response()
}

async fn submit(State(s): State<AdminState>, Json(req): Json<SubmitRequest>) -> Response {
    let mut vars = ferry_engine::config::default_vars();
    vars.extend(req.vars);
    let compression = match req.compression.as_deref() {
        None => None,
        Some(c) => match Compression::parse(c) {
            Ok(c) => Some(c),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("compression: {e}")),
        },
    };
    match crate::jobs::submit(&s.hub, &req.job, vars, compression).await {
        Ok(id) => (StatusCode::CREATED, Json(Submitted { id })).into_response(),
        Err(crate::jobs::SubmitError::State(e)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, format!("state store: {e}"))
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Answers with the report once every table is verified (a difference is a report, not an
/// HTTP error).
async fn verify(State(s): State<AdminState>, Json(req): Json<VerifyRequest>) -> Response {
    let mut vars = ferry_engine::config::default_vars();
    vars.extend(req.vars);
    let opts = ferry_engine::verify::VerifyOptions {
        show_values: req.show_values,
        listed: req.limit.unwrap_or(20).min(10_000),
        repair: req.repair,
    };
    match crate::jobs::verify(&s.hub, &req.job, vars, &opts).await {
        Ok(report) => Json(report).into_response(),
        Err(crate::jobs::SubmitError::State(e)) => store_error(e),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

fn store_error(e: ferry_state::StateError) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, format!("state store: {e}"))
}

async fn list_jobs(State(s): State<AdminState>) -> Response {
    match s.hub.jobs.list().await {
        Ok(jobs) => Json::<Vec<JobStatus>>(jobs).into_response(),
        Err(e) => store_error(e),
    }
}

async fn job(State(s): State<AdminState>, Path(id): Path<String>) -> Response {
    match s.hub.jobs.get(&id).await {
        Ok(Some(s)) => Json(s).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no job `{id}`")),
        Err(e) => store_error(e),
    }
}

/// `?after=` (an entry id; 0: from the start) and `?limit=` (at most 1000).
#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    #[serde(default)]
    pub after: i64,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// A page of a job's log.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogPage {
    pub entries: Vec<ferry_state::LogRecord>,
    /// Pass as `after` for the next page (the last entry's id, or `after`).
    pub next: i64,
    /// Whether the job still runs (more entries may come).
    pub running: bool,
}

async fn logs(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<LogsQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(1000).clamp(1, 1000);
    let entries = match s.hub.jobs.logs(&id, q.after, limit).await {
        Ok(Some(e)) => e,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no job `{id}`")),
        Err(e) => return store_error(e),
    };
    let running = s.hub.jobs.is_running(&id);
    let next = entries.last().map_or(q.after, |e| e.id);
    Json(LogPage {
        entries,
        next,
        running,
    })
    .into_response()
}

async fn stop(State(s): State<AdminState>, Path(id): Path<String>) -> Response {
    if s.hub.jobs.stop(&id) {
        return StatusCode::ACCEPTED.into_response();
    }
    not_running(&s, &id).await
}

async fn cancel(State(s): State<AdminState>, Path(id): Path<String>) -> Response {
    if s.hub.jobs.cancel(&id) {
        return StatusCode::ACCEPTED.into_response();
    }
    not_running(&s, &id).await
}

/// Why job `id` could not be stopped or cancelled.
async fn not_running(s: &AdminState, id: &str) -> Response {
    match s.hub.jobs.get(id).await {
        Ok(Some(s)) => error(
            StatusCode::CONFLICT,
            format!("job `{id}` is not running here (it is {:?})", s.state),
        ),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no job `{id}`")),
        Err(e) => store_error(e),
    }
}

async fn resume(State(s): State<AdminState>, Path(id): Path<String>) -> Response {
    use crate::jobs::ResumeError;
    match crate::jobs::resume(&s.hub, &id).await {
        Ok(()) => (StatusCode::ACCEPTED, Json(Submitted { id })).into_response(),
        Err(e @ ResumeError::NotFound(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ (ResumeError::Running(_) | ResumeError::Succeeded(_))) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        Err(e @ ResumeError::Unusable { .. }) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(ResumeError::State(e)) => store_error(e),
    }
}

/// This API's OpenAPI description.
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

/// The metrics text, gauges from live state.
pub(crate) fn render_metrics(s: &AdminState) -> String {
    let (jobs_running, tasks_active) = s.hub.jobs.running();
    s.sessions.metrics.render(crate::metrics::Live {
        agents: s.sessions.registry.len(),
        handshakes: s.sessions.handshakes_in_progress(),
        tasks_active,
        jobs_running,
        streams: s.hub.jobs.streams(),
    })
}

async fn metrics(State(s): State<AdminState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        render_metrics(&s),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::LoopbackHosts;

    #[test]
    fn loopback_names_with_or_without_the_bound_port() {
        let h = LoopbackHosts::new("127.0.0.1:7801".parse().unwrap());
        for ok in [
            "localhost",
            "localhost:7801",
            "LOCALHOST:7801",
            "127.0.0.1",
            "127.0.0.1:7801",
            "[::1]",
            "[::1]:7801",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7801",
            "localhost:80",
            "127.0.0.1:7802",
            "localhost.evil.example",
            "127.0.0.1.nip.io:7801",
            "[::1]:1",
            "",
            ":7801",
        ] {
            assert!(!h.allows(bad), "{bad}");
        }
        let v6 = LoopbackHosts::new("[::1]:9000".parse().unwrap());
        assert!(v6.allows("[::1]:9000") && v6.allows("localhost"));
        let other = LoopbackHosts::new("127.0.0.2:9000".parse().unwrap());
        assert!(other.allows("127.0.0.2:9000") && !other.allows("127.0.0.3:9000"));
    }
}
