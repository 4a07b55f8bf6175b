//! Ferry's tunnel, shared by the agent (client) and the broker (server).
//!
//! The agent dials *out* to the broker over one QUIC connection with mutual
//! TLS; everything else (control messages, one stream per data task) is
//! multiplexed inside it. Where UDP is blocked, the same protocol runs over
//! TLS on TCP with yamux streams. This crate holds what both ends need and
//! nothing that is specific to either:
//!
//! - [`conn`]: one connection type over either transport;
//! - [`tcp`]: the TLS-over-TCP fallback;
//! - [`settings`]: transport parameters (keep-alive, idle timeout, windows,
//!   congestion controller, MTU) with defaults chosen for NAT'd, long paths;
//! - [`endpoint`]: building quinn endpoints from rustls configs;
//! - [`framed`]: reading and writing `ferry-protocol` frames on QUIC streams
//!   with hard size limits;
//! - [`backoff`]: reconnect delays (exponential, full jitter, reset only after
//!   a stable period) so a restarted broker is not stormed by its agents;
//! - [`close`]: application close codes and the classification of why a
//!   connection ended (including TLS refusals), so both sides can log one
//!   clear, distinct reason.

pub mod backoff;
pub mod close;
pub mod conn;
pub mod endpoint;
pub mod framed;
pub mod settings;
pub mod tcp;

pub use backoff::Backoff;
pub use close::{CloseCause, CloseCode};
pub use conn::{Connection, RecvStream, SendStream, Transport};
pub use endpoint::{client_endpoint, server_endpoint, EndpointError};
pub use framed::{FrameReader, FrameWriter, StreamError};
pub use settings::{Congestion, TransportSettings};
