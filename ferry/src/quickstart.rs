//! `ferry quickstart`: a whole agent → broker sync on one machine, with
//! nothing to set up.
//!
//! In `./ferry-quickstart` (or `--dir`): a CA and certificates; a "private
//! network" source made of a SQLite database with the DataWorks tutorial's
//! `ods_user_info_d` (uid, gender, age_range, zodiac) and its access log
//! `user_log.txt`; a broker and an agent on loopback (in this process, the
//! agent offering both as data sources by name); then four jobs through
//! the tunnel into a local lake (Parquet, partition `dt=<yesterday>`) and a
//! SQLite warehouse. The configs and job files it leaves behind run the same
//! setup as separate processes.

use crate::out::outln;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use ferry_broker::jobs::JobState;
use ferry_certs::{CertificateAuthority, Validity};
use ferry_connectors::{Sink, WriteSpec};
use ferry_protocol::data::Compression;

const USERS: usize = 20_000;
const LOG_LINES: usize = 200_000;
const AGENT: &str = "quickstart-01";
const GROUP: &str = "local";

pub async fn run(dir: PathBuf) -> Result<()> {
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = std::fs::canonicalize(&dir)?;
    outln!("ferry quickstart in {}", dir.display());

    // 1. Certificates.
    let pki = dir.join("pki");
    let ca = if pki.join("ca.pem").exists() {
        CertificateAuthority::load(&pki)?
    } else {
        CertificateAuthority::init(&pki, "Ferry quickstart CA", Validity::days(30))?
    };
    let server = ca.issue_server(
        "broker",
        &["127.0.0.1".parse()?, "localhost".parse()?],
        Validity::days(30),
    )?;
    server.write(&pki.join("broker.pem"), &pki.join("broker.key"))?;
    let agent = ca.issue_agent(AGENT, GROUP, Validity::days(30))?;
    std::fs::create_dir_all(pki.join("agents"))?;
    agent.write(
        &pki.join(format!("agents/{AGENT}.pem")),
        &pki.join(format!("agents/{AGENT}.key")),
    )?;
    outln!(
        "  1. CA, broker and agent certificates in {}",
        pki.display()
    );

    // 2. The source side: what the agent can reach and the broker cannot.
    let source = dir.join("source");
    std::fs::create_dir_all(source.join("logs"))?;
    let bizdate = ferry_engine::config::default_vars()
        .remove("bizdate")
        .unwrap_or_else(|| "20240101".into());
    make_users(&source.join("shop.db")).await?;
    make_log(&source.join("logs/user_log.txt"), &bizdate)?;
    outln!(
        "  2. source: {USERS} users in {}, {LOG_LINES} access-log lines in {}",
        source.join("shop.db").display(),
        source.join("logs/user_log.txt").display()
    );

    // 3. Broker and agent on loopback.
    write_configs(&dir, "127.0.0.1:0", "127.0.0.1:0")?;
    let broker = ferry_broker::Broker::start(
        ferry_broker::BrokerConfig::load(&dir.join("broker.toml"))?,
        ferry_broker::data::refuse_all(),
    )
    .await
    .context("starting the broker")?;
    write_configs(
        &dir,
        &broker.local_addr().to_string(),
        &broker.admin_addr().to_string(),
    )?;
    let agent_config = ferry_agent::AgentConfig::load(&dir.join("agent.toml"))?;
    let (stop_agent, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent_task = tokio::spawn(ferry_agent::run(agent_config, async {
        let _ = stopped.await;
    }));
    let listed = wait_for_agent(&broker).await?;
    outln!(
        "  3. broker on {} (QUIC/UDP); agent `{}` (group `{}`) dialled out from {} and offers: {}",
        broker.local_addr(),
        listed.agent_id,
        listed.group,
        listed.remote_addr,
        listed
            .sources
            .iter()
            .map(|s| format!("{} ({})", s.name, s.kind))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // 4. The jobs, through the tunnel.
    let jobs_dir = dir.join("jobs");
    std::fs::create_dir_all(&jobs_dir)?;
    std::fs::create_dir_all(dir.join("warehouse"))?;
    let jobs = jobs(&dir);
    outln!("  4. jobs (reader on the agent, writer on the broker, zstd-1 on the wire):");
    std::fs::write(jobs_dir.join("lake_to_csv.yaml"), lake_to_csv(&dir))?;
    let mut failed = false;
    for (name, text) in &jobs {
        std::fs::write(jobs_dir.join(format!("{name}.yaml")), text)?;
        let vars = ferry_engine::config::default_vars();
        let id = broker
            .submit(text, vars, Some(Compression::Zstd { level: 1 }))
            .await
            .with_context(|| format!("submitting {name}"))?;
        let status = loop {
            let s = broker.jobs().get(&id).await?.context("job vanished")?;
            if s.state != JobState::Running {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        outln!("\n     {name} ({id}):");
        match &status.summary {
            Some(summary) => {
                for line in summary.to_string().lines() {
                    outln!("       {line}");
                }
            }
            None => outln!("       FAILED: {}", status.error.as_deref().unwrap_or("?")),
        }
        failed |= status.state != JobState::Succeeded;
    }

    let _ = stop_agent.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), agent_task).await;
    broker.shutdown().await;
    write_configs(&dir, "127.0.0.1:7800", "127.0.0.1:7801")?;
    if failed {
        bail!("a quickstart job failed (see above)");
    }

    let d = dir.display();
    outln!("\nLook at the result:");
    outln!("  find {d}/lake -name '*.parquet'          # dt={bizdate} partitions");
    outln!(
        "  sqlite3 {d}/warehouse/warehouse.db \"SELECT zodiac, count(*) FROM ods_user_info_d GROUP BY 1\""
    );
    outln!("  sqlite3 {d}/warehouse/warehouse.db \"SELECT col FROM ods_raw_log_d LIMIT 3\"");
    outln!("  ferry run {d}/jobs/lake_to_csv.yaml       # the Parquet log partition as CSV, read back by Ferry");
    outln!("\nThe same with separate processes (configs and jobs written in {d}):");
    outln!("  ferry broker run -c {d}/broker.toml");
    outln!("  ferry agent run -c {d}/agent.toml");
    outln!("  ferry job submit {d}/jobs/ods_raw_log_d.yaml");
    Ok(())
}

async fn wait_for_agent(broker: &ferry_broker::Broker) -> Result<ferry_broker::AgentInfo> {
    for _ in 0..200 {
        if let Some(a) = broker
            .registry()
            .list()
            .into_iter()
            .find(|a| a.agent_id == AGENT && !a.sources.is_empty())
        {
            return Ok(a);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the agent did not connect within 10 s")
}

fn write_configs(dir: &Path, broker: &str, admin: &str) -> Result<()> {
    std::fs::write(
        dir.join("broker.toml"),
        format!("listen = \"{broker}\"\nadmin_listen = \"{admin}\"\njobs_dir = \"jobs/broker\"\n\n[tls]\nca = \"pki/ca.pem\"\ncert = \"pki/broker.pem\"\nkey = \"pki/broker.key\"\ncrl = \"pki/crl.pem\"\n"),
    )?;
    let src = dir.join("source");
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            "broker = \"{broker}\"\nserver_name = \"localhost\"\n\n[tls]\nca = \"pki/ca.pem\"\ncert = \"pki/agents/{AGENT}.pem\"\nkey = \"pki/agents/{AGENT}.key\"\n\n\
             # What this agent may read. The broker learns the names and kinds, never the URLs.\n\
             [sources.shop]\nkind = \"sqlite\"\nurl = \"sqlite://{}\"\n\n\
             [sources.logs]\nkind = \"file\"\nurl = \"{}\"\n",
            src.join("shop.db").display(),
            src.join("logs").display()
        ),
    )?;
    Ok(())
}

/// The four jobs, as YAML a user could edit and submit again.
fn jobs(dir: &Path) -> Vec<(&'static str, String)> {
    let d = dir.display();
    let wh = format!("sqlite://{d}/warehouse/warehouse.db");
    vec![
        (
            "ods_user_info_d",
            format!(
                "# Users from the agent's SQLite database into the warehouse (re-runnable).\n\
                 reader:\n  name: sqlitereader\n  parameter:\n    datasource: {GROUP}/shop\n    table: ods_user_info_d\n    column: [uid, gender, age_range, zodiac]\n\
                 writer:\n  name: sqlitewriter\n  parameter:\n    url: {wh}\n    table: ods_user_info_d\n    createTable: true\n    existing: truncate\n\
                 setting:\n  speed: {{channel: 1}}\n"
            ),
        ),
        (
            "ods_user_info_d_lake",
            format!(
                "# The same users into the lake, partition dt=${{bizdate}}.\n\
                 reader:\n  name: sqlitereader\n  parameter:\n    datasource: {GROUP}/shop\n    table: ods_user_info_d\n\
                 writer:\n  name: parquetwriter\n  parameter:\n    path: {d}/lake/ods_user_info_d/dt=${{bizdate}}/\n    writeMode: truncate\n"
            ),
        ),
        (
            "ods_raw_log_d",
            format!(
                "# The access log parsed into fields (nginx-style, the tutorial's variant) into the lake.\n\
                 reader:\n  name: logreader\n  parameter:\n    datasource: {GROUP}/logs\n    path: user_log.txt\n    pattern: user_log\n    timeFormat: \"%d/%b/%Y:%H:%M:%S %z\"\n\
                 \x20   column:\n\
                 \x20     - {{name: remote_addr, type: string}}\n\
                 \x20     - {{name: time_local, type: timestamp}}\n\
                 \x20     - {{name: request, type: string}}\n\
                 \x20     - {{name: status, type: int}}\n\
                 \x20     - {{name: body_bytes_sent, type: bigint}}\n\
                 \x20     - {{name: http_referer, type: string}}\n\
                 \x20     - {{name: http_user_agent, type: string}}\n\
                 writer:\n  name: parquetwriter\n  parameter:\n    path: {d}/lake/ods_raw_log_d/dt=${{bizdate}}/\n    writeMode: truncate\n\
                 setting:\n  speed: {{channel: 2}}\n"
            ),
        ),
        (
            "ods_raw_log_d_raw",
            format!(
                "# The access log as the tutorial loads it: each line into one column `col`.\n\
                 reader:\n  name: logreader\n  parameter:\n    datasource: {GROUP}/logs\n    path: user_log.txt\n    column: [{{name: col, type: string}}]\n\
                 writer:\n  name: sqlitewriter\n  parameter:\n    url: {wh}\n    table: ods_raw_log_d\n    createTable: true\n    existing: truncate\n"
            ),
        ),
    ]
}

/// A standalone job (`ferry run`) to read the lake back.
fn lake_to_csv(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "# Standalone (`ferry run`): read the lake's log partition back and write it as CSV.\n\
         reader:\n  name: parquetreader\n  parameter:\n    path: {d}/lake/ods_raw_log_d/dt=${{bizdate}}/\n\
         writer:\n  name: csvwriter\n  parameter:\n    path: {d}/export/ods_raw_log_d/\n    writeMode: truncate\n"
    )
}

/// Deterministic pseudo-random numbers (a small LCG), so every run makes
/// the same data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

const ZODIAC: [&str; 12] = [
    "白羊座",
    "金牛座",
    "双子座",
    "巨蟹座",
    "狮子座",
    "处女座",
    "天秤座",
    "天蝎座",
    "射手座",
    "摩羯座",
    "水瓶座",
    "双鱼座",
];
const AGES: [&str; 6] = ["0-20", "20-30", "30-40", "40-50", "50-60", "60+"];

fn uid(i: usize) -> String {
    format!("00{:011}", 16_359_810_821u64 + i as u64 * 7919)
}

/// `ods_user_info_d` in a SQLite database, written by Ferry's own SQLite sink.
async fn make_users(path: &Path) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let schema = Arc::new(Schema::new(vec![
        Field::new("uid", DataType::Utf8, false),
        Field::new("gender", DataType::Utf8, true),
        Field::new("age_range", DataType::Utf8, true),
        Field::new("zodiac", DataType::Utf8, true),
    ]));
    let mut r = Lcg(42);
    let (mut uids, mut genders, mut ages, mut signs) = (vec![], vec![], vec![], vec![]);
    for i in 0..USERS {
        uids.push(uid(i));
        let x = r.next();
        genders.push(match x % 10 {
            0 => None,
            n if n < 5 => Some("male"),
            _ => Some("female"),
        });
        ages.push(Some(AGES[(r.next() % 6) as usize]));
        signs.push(Some(ZODIAC[(r.next() % 12) as usize]));
    }
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(uids)),
            Arc::new(StringArray::from(genders)),
            Arc::new(StringArray::from(ages)),
            Arc::new(StringArray::from(signs)),
        ],
    )?;
    let sink =
        ferry_connectors::sqlite::SqliteSink::connect(&format!("sqlite://{}", path.display()))
            .await?;
    let spec = WriteSpec {
        table: "ods_user_info_d".into(),
        create_table: true,
        keys: vec!["uid".into()],
        ..WriteSpec::default()
    };
    let schema = batch.schema();
    sink.prepare(&spec, &schema).await?;
    let mut w = sink.writer(&spec, &schema).await?;
    w.write(&batch).await?;
    w.close().await?;
    Ok(())
}

/// `user_log.txt` in the tutorial's format: nginx "combined" without the
/// space before the referer, and a trailing `[unknown_content];`.
fn make_log(path: &Path, bizdate: &str) -> Result<()> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const PAGES: [&str; 6] = [
        "/",
        "/item/list",
        "/item/detail",
        "/cart",
        "/order/pay",
        "/search",
    ];
    const AGENTS: [&str; 4] = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
        "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/119.0 Mobile Safari/537.36",
        "curl/8.4.0",
    ];
    let (y, m, d) = match (
        bizdate.get(0..4).and_then(|s| s.parse::<u32>().ok()),
        bizdate.get(4..6).and_then(|s| s.parse::<usize>().ok()),
        bizdate.get(6..8).and_then(|s| s.parse::<u32>().ok()),
    ) {
        (Some(y), Some(m), Some(d)) if (1..=12).contains(&m) => (y, m, d),
        _ => bail!("bizdate `{bizdate}` is not YYYYMMDD"),
    };
    let mut r = Lcg(7);
    let mut out = String::with_capacity(LOG_LINES * 220);
    for i in 0..LOG_LINES {
        let secs = i * 86_400 / LOG_LINES;
        let (hh, mm, ss) = (secs / 3600, (secs / 60) % 60, secs % 60);
        let ip = format!(
            "{}.{}.{}.{}",
            r.next() % 223 + 1,
            r.next() % 256,
            r.next() % 256,
            r.next() % 254 + 1
        );
        let page = PAGES[(r.next() % 6) as usize];
        let user = uid((r.next() % USERS as u64) as usize);
        let status = match r.next() % 50 {
            0 => 404,
            1 => 500,
            2..=4 => 302,
            _ => 200,
        };
        let bytes = r.next() % 20_000 + 200;
        let referer = if r.next().is_multiple_of(3) {
            "-".to_string()
        } else {
            format!("https://www.example.com{}", PAGES[(r.next() % 6) as usize])
        };
        let agent = AGENTS[(r.next() % 4) as usize];
        let _ = writeln!(
            out,
            "{ip} - - [{d:02}/{}/{y}:{hh:02}:{mm:02}:{ss:02} +0800] \"GET {page}?uid={user} HTTP/1.1\" {status} {bytes}\"{referer}\" \"{agent}\" [-];",
            MONTHS[m - 1]
        );
    }
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
