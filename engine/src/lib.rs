//! Ferry jobs.
//!
//! A job is DataX-shaped: a `reader {name, parameter}`, a
//! `writer {name, parameter}` and `setting {speed, errorLimit}`, in YAML or
//! JSON, with `${var}` placeholders filled from the command line.
//!
//! - [`config`]: parsing, variables, validation with errors that name the field;
//! - [`registry`]: which connector a reader/writer name means, and opening it;
//! - [`throttle`]: the job-wide bytes/s and records/s limits;
//! - [`run`]: the runner, the same for both transports: plan splits, run up
//!   to `channel` tasks, count, route dirty records, enforce `errorLimit`,
//!   report progress and a summary. Batches come through a [`Reading`]:
//! - [`database`]: whole-database jobs: a reader's `tables`, each into its own
//!   target table, sharing the job's `channel`; foreign keys once all are loaded;
//! - [`merge`]: sharded jobs: the tables of one or more sources (`shards`) into one
//!   target table, with columns naming where each row came from;
//! - [`retype`]: a writer's `typeMap` (`tinyint(1)` as boolean, geometry as WKB);
//! - [`verify`]: does the target hold exactly what the source holds (fingerprints of both
//!   sides, compared; the differing rows named);
//! - [`plan`]: what a job would do (tables, DDL, flagged conversions), touching nothing;
//! - [`local`]: the reader in this process (`ferry run`); the broker has the
//!   other one, an agent across the tunnel.

pub mod config;
pub mod database;
pub mod local;
pub mod merge;
pub mod plan;
mod position;
pub mod registry;
pub mod retype;
pub mod run;
pub mod stream;
pub mod summary;
pub mod throttle;
pub mod verify;

pub use config::{Job, JobError};
pub use database::{run_database, run_database_standalone};
pub use local::run_standalone;
pub use merge::run_merge;
pub use run::{
    new_job_key, run_job, Progress, ProgressSnapshot, ReadError, Reading, Resume, RunError,
    RunObserver, RunOptions, SplitFeed,
};
pub use summary::{Summary, TableLine};
