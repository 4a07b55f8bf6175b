//! `tunnel-bench`: agent → broker throughput over loopback QUIC.
//!
//! The broker runs in a child process (this binary with `serve`), with a
//! sink that decodes every batch, counts it and acks it; this process is
//! the agent. Both use the real code paths (`ferry-agent`'s sender with
//! parallel encoding, `ferry-broker`'s data streams). Input: a table in
//! PostgreSQL COPY text form (`../shared/bench/gen_data.sh` makes one),
//! decoded once into Arrow batches and sent again and again until
//! `--mb` megabytes of payload (uncompressed Arrow IPC) have crossed.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ferry_bench::self_usage;
use ferry_protocol::data::{BatchEncoder, Compression, StreamHeader};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure (the agent side; starts the broker side itself).
    Run(RunArgs),
    /// The broker side (internal).
    Serve { pki: PathBuf },
}

#[derive(Parser, Clone)]
struct RunArgs {
    /// Table in COPY text form (bench_orders).
    #[arg(long)]
    tsv: PathBuf,
    /// Payload to send, in MB (10^6 bytes of uncompressed Arrow IPC).
    #[arg(long, default_value_t = 2000)]
    mb: u64,
    /// off, zstd:1, zstd:3, ...
    #[arg(long, default_value = "off")]
    compression: String,
    /// Rows per batch.
    #[arg(long, default_value_t = 16384)]
    batch_rows: usize,
    /// Encoders working at once on the agent.
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// Upper bound of path MTU discovery.
    #[arg(long, default_value_t = 1452)]
    max_mtu: u16,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize, Deserialize, Debug, Default)]
struct ServeReport {
    rows: u64,
    raw_bytes: u64,
    frame_bytes: u64,
    cpu_s: f64,
    max_rss_kib: u64,
    udp_rx_bytes: u64,
}

#[derive(Serialize, Debug)]
struct Result_ {
    compression: String,
    batch_rows: usize,
    parallelism: usize,
    max_mtu: u16,
    seconds: f64,
    rows: u64,
    payload_mb: f64,
    table_text_mb: f64,
    frame_mb: f64,
    wire_mb: f64,
    payload_mb_s: f64,
    table_text_mb_s: f64,
    wire_mb_s: f64,
    compression_ratio: f64,
    cpu_s_per_gb: f64,
    agent_cpu_s: f64,
    broker_cpu_s: f64,
    agent_rss_mib: f64,
    broker_rss_mib: f64,
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Serve { pki } => serve(pki),
        Cmd::Run(args) => run(args),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn serve(pki: PathBuf) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        let text = std::fs::read_to_string(pki.join("broker.toml"))?;
        let config: ferry_broker::BrokerConfig = toml::from_str(&text)?;
        let counters = Arc::new(ferry_broker::data::Counters::default());
        let broker =
            ferry_broker::Broker::start(config, ferry_broker::data::counting(counters.clone()))
                .await?;
        println!("READY {}", broker.local_addr());
        std::io::stdout().flush()?;
        let (cpu0, _) = self_usage();
        // Wait for the parent's REPORT request (or its exit).
        let mut line = String::new();
        tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await??;
        let (cpu1, rss) = self_usage();
        let report = ServeReport {
            rows: counters.rows.load(Ordering::Relaxed),
            raw_bytes: counters.raw_bytes.load(Ordering::Relaxed),
            frame_bytes: counters.wire_bytes.load(Ordering::Relaxed),
            cpu_s: cpu1 - cpu0,
            max_rss_kib: rss,
            udp_rx_bytes: 0,
        };
        println!("{}", serde_json::to_string(&report)?);
        broker.shutdown().await;
        Ok(())
    })
}

fn make_pki(dir: &std::path::Path, max_mtu: u16) -> Result<ferry_agent::AgentConfig> {
    use ferry_certs::{CertificateAuthority, Validity};
    let ca = CertificateAuthority::init(&dir.join("pki"), "Bench CA", Validity::days(1))?;
    let b = ca.issue_server("broker", &["127.0.0.1".parse()?], Validity::days(1))?;
    b.write(&dir.join("broker.pem"), &dir.join("broker.key"))?;
    let a = ca.issue_agent("bench-01", "bench", Validity::days(1))?;
    a.write(&dir.join("agent.pem"), &dir.join("agent.key"))?;
    let transport = format!("[transport]\nmax_mtu = {max_mtu}\n");
    std::fs::write(
        dir.join("broker.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[tls]\nca = \"{0}/pki/ca.pem\"\ncert = \"{0}/broker.pem\"\nkey = \"{0}/broker.key\"\ncrl = \"{0}/pki/crl.pem\"\n{transport}",
            dir.display()
        ),
    )?;
    let agent = format!(
        "broker = \"127.0.0.1:1\"\nserver_name = \"127.0.0.1\"\n[tls]\nca = \"{0}/pki/ca.pem\"\ncert = \"{0}/agent.pem\"\nkey = \"{0}/agent.key\"\n{transport}",
        dir.display()
    );
    Ok(toml::from_str(&agent)?)
}

fn run(args: RunArgs) -> Result<()> {
    let compression = Compression::parse(&args.compression)?;
    let schema = ferry_connectors::copy_text::bench_orders_schema();
    let load_start = Instant::now();
    let batches =
        ferry_connectors::copy_text::read_file(&args.tsv, schema.clone(), args.batch_rows)
            .with_context(|| format!("reading {}", args.tsv.display()))?;
    if batches.is_empty() {
        bail!("{} holds no rows", args.tsv.display());
    }
    let table_text_bytes = std::fs::metadata(&args.tsv)?.len();
    let table_rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    // Uncompressed IPC size of one pass, to know how many passes make --mb.
    let mut probe = BatchEncoder::new(schema.clone(), Compression::None);
    let mut pass_raw = 0u64;
    for (i, b) in batches.iter().enumerate() {
        pass_raw += probe.encode(i as u64 + 1, b)?.raw_len as u64;
    }
    let target = args.mb * 1_000_000;
    let total_batches = ((target as f64 / pass_raw as f64) * batches.len() as f64).ceil() as usize;
    eprintln!(
        "loaded {table_rows} rows ({:.1} MB text, {:.1} MB Arrow IPC) in {:.1}s; sending {total_batches} batches",
        table_text_bytes as f64 / 1e6,
        pass_raw as f64 / 1e6,
        load_start.elapsed().as_secs_f64()
    );

    let tmp = tempfile::tempdir()?;
    let mut agent_config = make_pki(tmp.path(), args.max_mtu)?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("serve")
        .arg(tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the broker side")?;
    let mut child_out = BufReader::new(child.stdout.take().context("child stdout")?);
    let mut line = String::new();
    child_out.read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("READY ")
        .context("broker side did not start")?
        .to_string();
    agent_config.broker = addr;

    let rt = runtime()?;
    let (seconds, summary, udp_tx, agent_cpu) = rt.block_on(async {
        let session = ferry_agent::connect(&agent_config).await?;
        let header = StreamHeader {
            task_id: "bench".into(),
            split: 0,
            resume_after_seq: None,
            compression,
            schema: schema.clone(),
        };
        let (cpu0, _) = self_usage();
        let start = Instant::now();
        let mut tx = session.open_stream(header, args.parallelism).await?;
        for i in 0..total_batches {
            tx.send(batches[i % batches.len()].clone()).await?;
        }
        let summary = tx.finish().await?;
        let seconds = start.elapsed().as_secs_f64();
        let (cpu1, _) = self_usage();
        let udp_tx = session
            .connection()
            .quic()
            .map(|q| q.stats().udp_tx.bytes)
            .unwrap_or(0);
        session.close("bench done").await;
        anyhow::Ok((seconds, summary, udp_tx, cpu1 - cpu0))
    })?;

    let stdin = child.stdin.as_mut().context("child stdin")?;
    writeln!(stdin, "REPORT")?;
    line.clear();
    child_out.read_line(&mut line)?;
    let report: ServeReport = serde_json::from_str(line.trim()).context("broker report")?;
    let _ = child.wait();
    if report.rows != summary.rows {
        bail!(
            "broker counted {} rows, agent sent {}",
            report.rows,
            summary.rows
        );
    }
    let (_, agent_rss) = self_usage();

    let payload = summary.raw_bytes as f64;
    let table_text = table_text_bytes as f64 * summary.rows as f64 / table_rows as f64;
    let r = Result_ {
        compression: args.compression.clone(),
        batch_rows: args.batch_rows,
        parallelism: args.parallelism,
        max_mtu: args.max_mtu,
        seconds,
        rows: summary.rows,
        payload_mb: payload / 1e6,
        table_text_mb: table_text / 1e6,
        frame_mb: summary.frame_bytes as f64 / 1e6,
        wire_mb: udp_tx as f64 / 1e6,
        payload_mb_s: payload / 1e6 / seconds,
        table_text_mb_s: table_text / 1e6 / seconds,
        wire_mb_s: udp_tx as f64 / 1e6 / seconds,
        compression_ratio: payload / summary.frame_bytes as f64,
        cpu_s_per_gb: (agent_cpu + report.cpu_s) / (payload / 1e9),
        agent_cpu_s: agent_cpu,
        broker_cpu_s: report.cpu_s,
        agent_rss_mib: agent_rss as f64 / 1024.0,
        broker_rss_mib: report.max_rss_kib as f64 / 1024.0,
    };
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("{r:#?}");
    }
    Ok(())
}
