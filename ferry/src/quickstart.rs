//! `ferry quickstart`: the whole tunnel on one machine, with nothing to set up.
//!
//! Creates a CA and certificates in a scratch directory, starts a broker and
//! an agent on loopback (in this process), shows the agent as the broker
//! lists it, pushes a generated table through the tunnel (zstd level 1) and
//! prints what crossed. The configs it writes run the same setup as two
//! separate processes.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use arrow_array::{
    BooleanArray, Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use ferry_certs::{CertificateAuthority, Validity};
use ferry_protocol::data::{Compression, StreamHeader};

const ROWS: usize = 200_000;
const BATCH: usize = 8192;

pub async fn run(dir: Option<PathBuf>) -> Result<()> {
    let (dir, _guard) = match dir {
        Some(d) => {
            std::fs::create_dir_all(&d)
                .with_context(|| format!("cannot create {}", d.display()))?;
            (d, None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("ferry-quickstart-")
                .tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    println!("ferry quickstart in {}", dir.display());

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
    let agent = ca.issue_agent("quickstart-01", "local", Validity::days(30))?;
    std::fs::create_dir_all(pki.join("agents"))?;
    agent.write(
        &pki.join("agents/quickstart-01.pem"),
        &pki.join("agents/quickstart-01.key"),
    )?;
    println!(
        "  1. CA, broker and agent certificates in {}",
        pki.display()
    );

    // 2. Broker on loopback.
    write_configs(&dir, "127.0.0.1:0", "127.0.0.1:0")?;
    let counters = Arc::new(ferry_broker::data::Counters::default());
    let broker = ferry_broker::Broker::start(
        ferry_broker::BrokerConfig::load(&dir.join("broker.toml"))?,
        ferry_broker::data::counting(counters.clone()),
    )
    .await
    .context("starting the broker")?;
    println!(
        "  2. broker listening on {} (QUIC/UDP), admin API http://{}",
        broker.local_addr(),
        broker.admin_addr()
    );

    // 3. Agent dials out.
    write_configs(
        &dir,
        &broker.local_addr().to_string(),
        &broker.admin_addr().to_string(),
    )?;
    let agent_config = ferry_agent::AgentConfig::load(&dir.join("agent.toml"))?;
    let session = ferry_agent::connect(&agent_config)
        .await
        .context("agent connecting")?;
    println!(
        "  3. agent `{}` (group `{}`) connected, session {}",
        session.welcome().agent_id,
        session.welcome().group,
        session.welcome().session_id
    );
    for a in broker.registry().list() {
        let since = a
            .connected_since
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        println!(
            "     broker lists: agent={} group={} address={} since={since} protocol={}",
            a.agent_id, a.group, a.remote_addr, a.protocol_version
        );
    }

    // 4. A table through the tunnel.
    let schema = schema();
    let header = StreamHeader {
        task_id: "quickstart".into(),
        split: 0,
        resume_after_seq: None,
        compression: Compression::Zstd { level: 1 },
        schema: schema.clone(),
    };
    let start = Instant::now();
    let mut tx = session.open_stream(header, 2).await?;
    let mut sent = 0;
    while sent < ROWS {
        let n = BATCH.min(ROWS - sent);
        tx.send(batch(&schema, sent, n)?).await?;
        sent += n;
    }
    let summary = tx.finish().await?;
    let secs = start.elapsed().as_secs_f64();
    let wire = session.connection().stats().udp_tx.bytes;
    println!(
        "  4. sent {} rows in {} batches through the tunnel in {:.2}s",
        summary.rows, summary.batches, secs
    );
    println!("     Arrow payload {:.1} MB, frames {:.1} MB (zstd-1, ratio {:.2}), UDP bytes {:.1} MB, {:.0} rows/s",
        summary.raw_bytes as f64 / 1e6, summary.frame_bytes as f64 / 1e6,
        summary.raw_bytes as f64 / summary.frame_bytes.max(1) as f64, wire as f64 / 1e6, summary.rows as f64 / secs);
    println!(
        "     broker received and acknowledged {} rows",
        counters.rows.load(Ordering::Relaxed)
    );

    session.close("quickstart done").await;
    broker.shutdown().await;

    write_configs(&dir, "127.0.0.1:7800", "127.0.0.1:7801")?;
    println!(
        "\nThe same, as two processes (configs written in {}):",
        dir.display()
    );
    println!(
        "  ferry broker run -c {}",
        dir.join("broker.toml").display()
    );
    println!("  ferry agent run -c {}", dir.join("agent.toml").display());
    println!("  ferry broker agents");
    if _guard.is_some() {
        println!("(this scratch directory is removed now; pass --dir DIR to keep it)");
    }
    Ok(())
}

fn write_configs(dir: &Path, broker: &str, admin: &str) -> Result<()> {
    std::fs::write(
        dir.join("broker.toml"),
        format!("listen = \"{broker}\"\nadmin_listen = \"{admin}\"\n\n[tls]\nca = \"pki/ca.pem\"\ncert = \"pki/broker.pem\"\nkey = \"pki/broker.key\"\ncrl = \"pki/crl.pem\"\n"),
    )?;
    std::fs::write(
        dir.join("agent.toml"),
        format!("broker = \"{broker}\"\nserver_name = \"localhost\"\n\n[tls]\nca = \"pki/ca.pem\"\ncert = \"pki/agents/quickstart-01.pem\"\nkey = \"pki/agents/quickstart-01.key\"\n"),
    )?;
    Ok(())
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer", DataType::Utf8, true),
        Field::new("amount", DataType::Decimal128(18, 4), false),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("ship_date", DataType::Date32, true),
        Field::new("paid", DataType::Boolean, false),
    ]))
}

/// Deterministic, varied rows (a small LCG; no zeros, no constants).
fn batch(schema: &SchemaRef, start: usize, n: usize) -> Result<RecordBatch> {
    const NAMES: [&str; 8] = [
        "Ana García",
        "张伟",
        "Jürgen Müller",
        "محمد الحسن",
        "김민준",
        "Zoë Dubois 🚀",
        "Olga Иванова",
        "Priya Kumar",
    ];
    let mut x = (start as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    let ids: Vec<i64> = (start..start + n).map(|i| i as i64 + 1).collect();
    let mut customer = Vec::with_capacity(n);
    let mut amount = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    let mut ship = Vec::with_capacity(n);
    let mut paid = Vec::with_capacity(n);
    for _ in 0..n {
        let r = next();
        customer
            .push((r % 10 != 0).then(|| format!("{} #{}", NAMES[(r % 8) as usize], r % 100_000)));
        amount.push((next() % 10_000_000_000) as i128 - 200_000_000);
        let ts = 1_577_836_800_000_000i64 + (next() % 157_680_000_000_000) as i64;
        created.push(ts);
        ship.push((r % 9 != 0).then_some((ts / 86_400_000_000) as i32 + (r % 14) as i32));
        paid.push(r % 10 < 7);
    }
    Ok(RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(customer)),
            Arc::new(Decimal128Array::from(amount).with_precision_and_scale(18, 4)?),
            Arc::new(TimestampMicrosecondArray::from(created).with_timezone("UTC")),
            Arc::new(Date32Array::from(ship)),
            Arc::new(BooleanArray::from(paid)),
        ],
    )?)
}
