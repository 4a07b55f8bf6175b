//! `ferry run job.yaml`: a job with reader and writer in this process.

use crate::out::outln;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use ferry_engine::{Job, RunOptions};

#[derive(Args)]
pub struct RunArgs {
    /// The job file (YAML or JSON, DataX-shaped).
    job: PathBuf,
    /// Set a variable used as ${name} in the job (repeatable): -p bizdate=20240620.
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Where dirty records go (JSON lines).
    #[arg(long)]
    dirty_file: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Print what the job would do (tables, the DDL by stage, every flagged conversion)
    /// and stop: the target is not opened.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(args: RunArgs) -> Result<()> {
    let vars = crate::job_cmd::job_vars(&args.params)?;
    let job = Job::load(&args.job, &vars).with_context(|| format!("job {}", args.job.display()))?;
    if args.dry_run {
        let plan = ferry_engine::plan::plan_job(&job).await?;
        outln!("{plan}");
        return Ok(());
    }
    let stem = args
        .job
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "job".into());
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut opts = RunOptions::new(
        args.dirty_file
            .unwrap_or_else(|| PathBuf::from(format!("ferry-dirty-{stem}-{stamp}.jsonl"))),
    );
    opts.progress = !args.quiet && std::io::stderr().is_terminal();
    let many = match (&job.reader.tables, &job.reader.merge) {
        (Some(_), _) => Some(ferry_engine::run_database_standalone(&job, &opts).await?),
        (_, Some(_)) => Some(ferry_engine::merge::run_merge_standalone(&job, &opts).await?),
        _ => None,
    };
    if let Some(summary) = many {
        outln!("{summary}");
        let failed = summary.failed_tables();
        if !failed.is_empty() {
            bail!(
                "{} of {} tables failed: {}",
                failed.len(),
                summary.tables.len(),
                failed.join(", ")
            );
        }
        if let Some(e) = &summary.failed {
            bail!("job failed: {e}");
        }
        return verify_after(&job).await;
    }
    let summary = ferry_engine::run_standalone(&job, &opts).await?;
    outln!("{summary}");
    if let Some(e) = &summary.failed {
        bail!("job failed: {e}");
    }
    verify_after(&job).await
}

/// `setting.verify`: the job wrote everything; does the target hold exactly the source?
async fn verify_after(job: &Job) -> Result<()> {
    if !job.setting.verify {
        return Ok(());
    }
    let opts = ferry_engine::verify::VerifyOptions::default();
    let report = ferry_engine::verify::verify_standalone(job, &opts).await?;
    outln!("{report}");
    crate::verify_cmd::finish(&report)
}
