//! `ferry job submit|status|list|cancel|resume|logs`: jobs through a running broker.
//!
//! The job file is checked here first (so a config error names its field
//! without a round trip), then sent as text with its variables; the broker
//! parses it again and runs it: the reader on an agent of the job's group,
//! the writer on the broker.

use crate::out::outln;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ferry_broker::admin::{ApiError, LogPage, SubmitRequest, Submitted};
use ferry_broker::jobs::{JobState, JobStatus};
use ferry_engine::Job;

#[derive(Args)]
pub struct JobArgs {
    /// The broker's admin API address.
    #[arg(long, global = true, default_value = "127.0.0.1:7801")]
    admin: SocketAddr,
    #[command(flatten)]
    token: AdminToken,
    #[command(subcommand)]
    command: JobCommand,
}

#[derive(Subcommand)]
enum JobCommand {
    /// Submit a job and follow it to the end (progress on stderr, summary on stdout).
    Submit {
        /// The job file (YAML or JSON, DataX-shaped); its reader names `datasource: group/name`.
        job: PathBuf,
        /// Set a variable used as ${name} in the job (repeatable): -p bizdate=20240620.
        #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Compression on the tunnel, `none` or `zstd:<level>` (default: the
        /// job's `setting.compression`, else `zstd:1`).
        #[arg(long)]
        compression: Option<String>,
        /// Print the job id and return at once.
        #[arg(long)]
        detach: bool,
        /// No progress line.
        #[arg(long)]
        quiet: bool,
    },
    /// Print what a job would do without touching the target: its tables, the DDL by
    /// stage, every lossy conversion flagged (`ferry run --dry-run` does the same). Runs
    /// here, so the job's reader must be a `url` this machine reaches.
    Plan {
        job: PathBuf,
        #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
    },
    /// Show one job (its summary once it ended).
    Status {
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the broker's jobs.
    List {
        #[arg(long)]
        json: bool,
    },
    /// End a running job.
    Cancel { id: String },
    /// Stop a running job to go on later with `resume` (a stream keeps its position in
    /// its target).
    Stop { id: String },
    /// Start a failed or cancelled job again: the splits it finished are
    /// not read again. Follows it like `submit`.
    Resume {
        id: String,
        /// Return at once.
        #[arg(long)]
        detach: bool,
        /// No progress line.
        #[arg(long)]
        quiet: bool,
    },
    /// Print a job's log (planning, tasks and the agents that ran them,
    /// retries, the end).
    Logs {
        id: String,
        /// Keep printing new entries until the job ends.
        #[arg(long, short)]
        follow: bool,
    },
}

/// The admin API's bearer token, when the broker has one.
#[derive(Args)]
pub struct AdminToken {
    /// File holding the broker's admin token (its `admin_token_file`).
    #[arg(long, global = true, env = "FERRY_ADMIN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

impl AdminToken {
    /// An HTTP client that sends the token, if one was given. The token may
    /// also come from `FERRY_ADMIN_TOKEN` (never from the command line,
    /// where other users could read it).
    pub fn client(&self) -> Result<reqwest::Client> {
        let token = match (&self.token_file, std::env::var("FERRY_ADMIN_TOKEN")) {
            (Some(path), _) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the admin token {}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, Ok(t)) => Some(t.trim().to_string()),
            (None, Err(_)) => None,
        };
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                .context("the admin token holds characters a header cannot carry")?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        Ok(reqwest::Client::builder()
            .default_headers(headers)
            .build()?)
    }
}

/// The job variables: the defaults, then `-p NAME=VALUE`s.
pub(crate) fn job_vars(params: &[String]) -> Result<BTreeMap<String, String>> {
    let mut vars: BTreeMap<String, String> = ferry_engine::config::default_vars();
    for p in params {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("-p `{p}`: expected NAME=VALUE"))?;
        vars.insert(k.to_string(), v.to_string());
    }
    Ok(vars)
}

/// `ferry verify` of a job whose reader is an agent's data source: the broker at `admin`
/// verifies it (`POST /v1/verify`).
pub(crate) async fn verify_through(
    admin: &SocketAddr,
    token: &AdminToken,
    job: String,
    vars: BTreeMap<String, String>,
    opts: &ferry_engine::verify::VerifyOptions,
) -> Result<ferry_engine::verify::VerifyReport> {
    let api = Api {
        base: format!("http://{admin}"),
        http: token.client()?,
    };
    let req = ferry_broker::admin::VerifyRequest {
        job,
        vars,
        show_values: opts.show_values,
        limit: Some(opts.listed),
        repair: opts.repair,
    };
    api.post("/v1/verify", &req).await
}

pub async fn run(args: JobArgs) -> Result<()> {
    let api = Api {
        base: format!("http://{}", args.admin),
        http: args.token.client()?,
    };
    match args.command {
        JobCommand::Plan { job, params } => {
            let vars = job_vars(&params)?;
            let job = Job::load(&job, &vars).with_context(|| format!("job {}", job.display()))?;
            if !matches!(job.reader.location, ferry_engine::config::Location::Url(_)) {
                anyhow::bail!(
                    "`ferry job plan` reads the source's catalog from here, so the reader needs a `url`; \
                     for an agent's data source, plan with a url job on the agent's side"
                );
            }
            let plan = ferry_engine::plan::plan_job(&job).await?;
            outln!("{plan}");
            Ok(())
        }
        JobCommand::Submit {
            job,
            params,
            compression,
            detach,
            quiet,
        } => {
            let vars = job_vars(&params)?;
            Job::load(&job, &vars).with_context(|| format!("job {}", job.display()))?;
            let text = std::fs::read_to_string(&job)
                .with_context(|| format!("cannot read {}", job.display()))?;
            let req = SubmitRequest {
                job: text,
                vars,
                compression,
            };
            let Submitted { id } = api.post("/v1/jobs", &req).await?;
            if detach {
                outln!("{id}");
                return Ok(());
            }
            eprintln!("submitted {id} to {}", api.base);
            follow(&api, &id, !quiet && std::io::stderr().is_terminal()).await
        }
        JobCommand::Status { id, json } => {
            let status: JobStatus = api.get(&format!("/v1/jobs/{id}")).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
            Ok(())
        }
        JobCommand::List { json } => {
            let jobs: Vec<JobStatus> = api.get("/v1/jobs").await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&jobs)?);
            } else if jobs.is_empty() {
                outln!("no jobs");
            } else {
                outln!(
                    "{:<10} {:<10} {:<28} {:<10} {:>12}",
                    "JOB",
                    "STATE",
                    "SOURCE",
                    "TARGET",
                    "RECORDS"
                );
                for j in jobs {
                    outln!(
                        "{:<10} {:<10} {:<28} {:<10} {:>12}",
                        j.id,
                        state_name(j.state),
                        j.source,
                        j.target,
                        j.progress.records_written
                    );
                }
            }
            Ok(())
        }
        JobCommand::Resume { id, detach, quiet } => {
            let Submitted { id } = api
                .post(&format!("/v1/jobs/{id}/resume"), &serde_json::json!({}))
                .await?;
            if detach {
                outln!("{id}");
                return Ok(());
            }
            eprintln!("resumed {id} on {}", api.base);
            follow(&api, &id, !quiet && std::io::stderr().is_terminal()).await
        }
        JobCommand::Logs { id, follow } => {
            let mut after = 0;
            loop {
                let page: LogPage = api
                    .get(&format!("/v1/jobs/{id}/logs?after={after}"))
                    .await?;
                for e in &page.entries {
                    let at = time::OffsetDateTime::from_unix_timestamp_nanos(
                        i128::from(e.at_ms) * 1_000_000,
                    )
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_else(|| e.at_ms.to_string());
                    outln!("{at} {:<5} {}", e.level.to_uppercase(), e.message);
                }
                after = page.next;
                if !follow || (!page.running && page.entries.is_empty()) {
                    return Ok(());
                }
                if page.entries.is_empty() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        JobCommand::Stop { id } => {
            post_action(&api, &id, "stop").await?;
            outln!("{id}: stopping (`ferry job resume {id}` goes on from there)");
            Ok(())
        }
        JobCommand::Cancel { id } => {
            post_action(&api, &id, "cancel").await?;
            outln!("{id}: cancelling");
            Ok(())
        }
    }
}

/// `POST /v1/jobs/{id}/{action}`; an answer other than success is the error.
async fn post_action(api: &Api, id: &str, action: &str) -> Result<()> {
    let resp = api
        .http
        .post(format!("{}/v1/jobs/{id}/{action}", api.base))
        .send()
        .await
        .with_context(|| format!("cannot reach the broker's admin API at {}", api.base))?;
    if !resp.status().is_success() {
        bail!("{}", api_error(resp).await);
    }
    Ok(())
}

fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
        JobState::Stopped => "stopped",
    }
}

fn print_status(s: &JobStatus) {
    outln!("Job                   : {}", s.id);
    outln!("Source                : {}", s.source);
    outln!("Target                : {}", s.target);
    if s.resumes > 0 {
        outln!(
            "Resumed               : {} time(s) after a broker restart",
            s.resumes
        );
    }
    match &s.summary {
        Some(summary) => outln!("{summary}"),
        None => {
            outln!("State                 : {}", state_name(s.state));
            outln!("Progress              : {}", s.progress.line());
            if let Some(e) = &s.error {
                outln!("Error                 : {e}");
            }
        }
    }
    if !s.tasks.is_empty() {
        outln!();
        outln!(
            "{:>6} {:<8} {:<20} {:>8} {:>12}  ERROR",
            "SPLIT",
            "STATE",
            "AGENT",
            "ATTEMPTS",
            "ROWS"
        );
        for t in &s.tasks {
            outln!(
                "{:>6} {:<8} {:<20} {:>8} {:>12}  {}",
                t.split + 1,
                t.state,
                t.agent.as_deref().unwrap_or("-"),
                t.attempts,
                t.rows,
                t.error.as_deref().unwrap_or("")
            );
        }
    }
}

/// Polls until the job ends; prints its summary; fails if the job failed.
async fn follow(api: &Api, id: &str, progress: bool) -> Result<()> {
    let path = format!("/v1/jobs/{id}");
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let status = loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => {
                if progress {
                    eprintln!();
                }
                eprintln!("stopped following {id}; it keeps running: ferry job status {id}, ferry job cancel {id}");
                return Ok(());
            }
        }
        let s: JobStatus = api.get(&path).await?;
        if s.state != JobState::Running {
            break s;
        }
        if progress {
            eprint!("\r{}   ", s.progress.line());
        }
    };
    if progress {
        eprintln!("\r{}   ", status.progress.line());
    }
    match &status.summary {
        Some(summary) => outln!("{summary}"),
        None => print_status(&status),
    }
    if let Some(e) = &status.error {
        bail!("job {id} failed: {e}");
    }
    Ok(())
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.call(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the broker's admin API at {}", self.base))?;
        if !resp.status().is_success() {
            bail!("{}", api_error(resp).await);
        }
        resp.json()
            .await
            .context("the admin API answered with something unexpected")
    }
}

async fn api_error(resp: reqwest::Response) -> String {
    let status = resp.status();
    match resp.json::<ApiError>().await {
        Ok(e) => format!("broker refused ({status}): {}", e.error),
        Err(_) => format!("broker answered {status}"),
    }
}
