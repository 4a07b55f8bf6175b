//! Ferry jobs.
//!
//! A job is DataX-shaped: a `reader {name, parameter}`, a
//! `writer {name, parameter}` and `setting {speed, errorLimit}`, in YAML or
//! JSON, with `${var}` placeholders filled from the command line.
//!
//! - [`config`]: parsing, variables, validation with errors that name the field;
//! - [`registry`]: which connector a reader/writer name means, and opening it;
//! - [`throttle`]: the job-wide bytes/s and records/s limits;
//! - [`run`]: the standalone runner (reader and writer in one process):
//!   plan splits, run up to `channel` tasks, count, route dirty records,
//!   enforce `errorLimit`, report progress and a summary.

pub mod config;
pub mod registry;
pub mod run;
pub mod summary;
pub mod throttle;

pub use config::{Job, JobError};
pub use run::{run_standalone, RunOptions};
pub use summary::Summary;
