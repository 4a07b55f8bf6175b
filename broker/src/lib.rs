//! Ferry broker: the cloud half of a tunnel.
//!
//! The broker listens for QUIC connections from agents, authenticates them
//! by client certificate (identity and group come from the certificate,
//! never from what the agent says), keeps a registry of live sessions, and
//! hands each data stream an agent opens to whoever consumes it (the writer
//! side of a job, or a benchmark sink).
//!
//! - [`config`]: the broker's TOML configuration;
//! - [`listener`]: accept loops, one task per connection;
//! - [`admission`]: handshake slots: at once, per source address, per second;
//! - [`refusals`]: refused attempts, counted one by one, logged at a bounded rate;
//! - [`session`]: the control-stream protocol with one agent;
//! - [`routes`]: where an agent's answers and data streams go (sessions know no jobs);
//! - [`registry`]: who is connected; newest session of an agent wins;
//! - [`data`]: data streams (header, batches, acks);
//! - [`revocation`]: reloads the CRL without a restart and drops revoked agents;
//! - [`jobs`]: jobs: planning through agents, tasks, failover, resume;
//! - [`metrics`]: `/metrics` for Prometheus;
//! - [`admin`]: the HTTP admin API (agents, jobs, logs, metrics).
//!
//! Durable state (jobs, tasks, checkpoints, sessions, job logs) is in
//! [`ferry_state`]: SQLite by default, PostgreSQL on request.

pub mod admin;
pub mod admission;
pub mod config;
pub mod data;
pub mod jobs;
pub mod listener;
pub mod metrics;
pub mod refusals;
pub mod registry;
pub mod revocation;
pub mod routes;
pub mod server;
pub mod session;

pub use config::BrokerConfig;
pub use data::{DataHandler, DataStream};
pub use registry::{AgentInfo, Registry};
pub use server::{Broker, BrokerError};
