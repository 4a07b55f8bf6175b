//! Ferry connectors: readers and writers for databases and files, to and from Arrow record
//! batches.
//!
//! Every source is read into, and every target written from, Arrow [`RecordBatch`]es of one
//! schema per table, which is what crosses the tunnel between agent and broker (or stays in
//! process in standalone mode).
//!
//! * [`kind`]: the connectors by kind: their names, options, SQL dialects.
//! * [`traits`]: the contract: a [`Source`] plans splits and reads one into batches; a
//!   [`Sink`] prepares the target and hands out [`SinkWriter`]s that commit batches.
//! * [`spec`]: what a job asks of a reader and a writer (DataX's parameters), split planning.
//! * [`ddl`]: a source table's keys, indexes, defaults and identity as a target's DDL.
//! * [`existing`]: what a writer does with a target table that exists already.
//! * [`file`]: CSV, JSON lines, Parquet and text-log readers and writers on opendal
//!   (local disk, S3-compatible stores, HTTP for reading).
//! * [`copy_text`]: decodes PostgreSQL `COPY ... (FORMAT text)` output — which is also
//!   MariaDB/MySQL `LOAD DATA` / `SELECT ... INTO OUTFILE` default format — into record
//!   batches, incrementally from a byte stream or from a file.
//!
//! Decoders treat their input as untrusted: malformed input is an error naming the line and
//! column, never a panic.
//!
//! [`RecordBatch`]: arrow_array::RecordBatch

#![forbid(unsafe_code)]

mod apply;
pub mod copy_text;
pub mod ddl;
pub mod error;
pub mod existing;
pub mod file;
pub mod kind;
pub mod mysql;
pub mod postgres;
pub mod repair;
pub mod spec;
pub mod sqlite;
pub mod stream;
pub mod traits;
mod utf8;

pub use error::ConnectorError;
pub use existing::Existing;
pub use kind::Kind;
pub use spec::{
    KeyValue, Position, ReadSpec, Split, SplitBounds, SplitOrder, TableRef, WriteMode, WriteSpec,
};
pub use traits::{
    tag_changes, take_changes, Checkpoint, DirtyRecord, Sink, SinkWriter, Source, TableListing,
    WriteOutcome,
};
