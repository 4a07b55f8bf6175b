//! Ferry connectors: readers and writers for databases and files, to and from Arrow record
//! batches.
//!
//! Every source is read into, and every target written from, Arrow [`RecordBatch`]es of one
//! schema per table, which is what crosses the tunnel between agent and broker (or stays in
//! process in standalone mode).
//!
//! * [`copy_text`]: decodes PostgreSQL `COPY ... (FORMAT text)` output — which is also
//!   MariaDB/MySQL `LOAD DATA` / `SELECT ... INTO OUTFILE` default format — into record
//!   batches, incrementally from a byte stream or from a file.
//!
//! Decoders treat their input as untrusted: malformed input is an error naming the line and
//! column, never a panic.
//!
//! [`RecordBatch`]: arrow_array::RecordBatch

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod copy_text;
