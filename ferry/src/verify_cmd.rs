//! `ferry verify job.yaml`: does the job's target hold exactly what its source holds?
//!
//! A job whose reader is a `url` is verified here, both sides read by this process. One whose
//! reader names an agent's data source (`datasource: group/name`) is verified by the broker
//! (`--admin`): the agent fingerprints the source where it is, the broker the target, and only
//! fingerprints cross the tunnel. Exit status 0 only when every table matches.

use crate::out::outln;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use ferry_engine::config::Location;
use ferry_engine::verify::{VerifyOptions, VerifyReport};
use ferry_engine::Job;

#[derive(Args)]
pub struct VerifyArgs {
    /// The job file (YAML or JSON, DataX-shaped) whose copy to verify.
    job: PathBuf,
    /// Set a variable used as ${name} in the job (repeatable): -p bizdate=20240620.
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Show the differing rows' values, both sides (off by default: values may be sensitive).
    #[arg(long)]
    show_values: bool,
    /// Most differing rows listed per table.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Re-sync the rows that differ (delete them in the target, copy the source's again),
    /// then verify again. Needs a primary key of integers, decimals or text.
    #[arg(long)]
    repair: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// The broker's admin API, for a job whose reader is an agent's data source.
    #[arg(long, default_value = "127.0.0.1:7801")]
    admin: SocketAddr,
    #[command(flatten)]
    token: crate::job_cmd::AdminToken,
}

pub async fn run(args: VerifyArgs) -> Result<()> {
    let vars = crate::job_cmd::job_vars(&args.params)?;
    let job = Job::load(&args.job, &vars).with_context(|| format!("job {}", args.job.display()))?;
    let opts = VerifyOptions {
        show_values: args.show_values,
        listed: args.limit,
        repair: args.repair,
    };
    let report = match &job.reader.location {
        Location::Url(_) => ferry_engine::verify::verify_standalone(&job, &opts).await?,
        Location::DataSource { .. } => {
            let text = std::fs::read_to_string(&args.job)
                .with_context(|| format!("cannot read {}", args.job.display()))?;
            crate::job_cmd::verify_through(&args.admin, &args.token, text, vars, &opts).await?
        }
    };
    print(&report, args.json)?;
    finish(&report)
}

pub(crate) fn print(report: &VerifyReport, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(report)?);
    } else {
        outln!("{report}");
    }
    Ok(())
}

/// An error naming the tables that do not match, if any.
pub(crate) fn finish(report: &VerifyReport) -> Result<()> {
    let failed = report.failed_tables();
    if !failed.is_empty() {
        bail!(
            "verification failed: {} of {} tables differ or could not be read: {}",
            failed.len(),
            report.tables.len(),
            failed.join(", ")
        );
    }
    Ok(())
}
