//! Ferry agent: the half of a tunnel that lives inside the private network.
//!
//! The agent dials *out* to the broker (one QUIC connection, mutual TLS) and
//! keeps that tunnel up: heartbeats, reconnects with backoff, registers again
//! after a broker restart. It needs no inbound port. Data it reads locally
//! leaves through data streams opened on the tunnel.
//!
//! - [`config`]: the agent's TOML configuration;
//! - [`connect`]: one connection attempt (TLS + Hello/Welcome);
//! - [`session`]: a live tunnel: heartbeats, data streams;
//! - [`sender`]: sending record batches on a data stream, compression spread
//!   over cores, acks tracked;
//! - [`runner`]: the reconnect loop;
//! - [`catalog`]: the agent's data sources (URLs and credentials stay here);
//! - [`policy`]: what a read may ask of a source, checked on the agent;
//! - [`files`]: which paths a file split may name;
//! - [`worker`]: the reading half of jobs: plans and tasks the broker asks for.

pub mod catalog;
pub mod config;
pub mod connect;
pub mod files;
pub mod policy;
pub mod runner;
pub mod sender;
pub mod session;
mod stream;
pub mod worker;

pub use config::AgentConfig;
pub use connect::{connect, ConnectError};
pub use runner::run;
pub use sender::{DataSender, SendError, SendSummary};
pub use session::Session;
