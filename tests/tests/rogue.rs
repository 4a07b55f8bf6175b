//! A hostile agent: another group's agent (a valid certificate of the same
//! CA) speaking the real protocol, trying to answer for an agent of a
//! group it does not belong to, and trying to make the broker buffer more
//! than its limits. Real broker, real QUIC on loopback.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Schema, SchemaRef};
use bytes::Bytes;
use common::*;
use ferry_broker::jobs::JobState;
use ferry_protocol::control::{ControlMessage, SourceInfo};
use ferry_protocol::data::{BatchEncoder, Compression, End, StreamHeader};
use ferry_protocol::frame::{encode_header, FrameKind};
use ferry_protocol::limits::Limits;
use ferry_protocol::version::VersionRange;
use ferry_tests::db::{pg_url, PgSchema};
use ferry_tests::pki::{CertFiles, Pki};
use ferry_tunnel::{Connection, FrameReader, FrameWriter};

/// An agent that says whatever the test wants on its control stream and
/// records what the broker sends it.
struct RawAgent {
    conn: Connection,
    control: tokio::sync::Mutex<FrameWriter>,
    received: Arc<Mutex<Vec<ControlMessage>>>,
    _endpoint: quinn::Endpoint,
}

impl RawAgent {
    async fn connect(
        pki: &Pki,
        cert: &CertFiles,
        broker: SocketAddr,
        agent_id: &str,
        sources: &[&str],
    ) -> Self {
        let ep = ferry_tunnel::client_endpoint(
            "127.0.0.1:0".parse().unwrap(),
            common::raw_client(&pki.ca_pem(), &cert.cert, &cert.key),
            &ferry_tunnel::TransportSettings::default(),
        )
        .unwrap();
        let quic = ep
            .connect(broker, "localhost")
            .unwrap()
            .await
            .expect("TLS with a valid certificate");
        let conn = Connection::from(quic);
        let (send, recv) = conn.open_bi().await.unwrap();
        let mut writer = FrameWriter::new(send);
        let mut reader = FrameReader::new(recv, Limits::default().max_control_frame);
        let hello = ControlMessage::Hello {
            versions: VersionRange::ours(),
            agent_id: agent_id.into(),
            software: "rogue/0".into(),
            capabilities: Vec::new(),
        };
        writer.send(&hello.to_frame().unwrap()).await.unwrap();
        let welcome = ControlMessage::from_frame(&reader.require().await.unwrap()).unwrap();
        assert!(
            matches!(welcome, ControlMessage::Welcome { .. }),
            "{welcome:?}"
        );
        let catalog = ControlMessage::Catalog {
            sources: sources
                .iter()
                .map(|s| SourceInfo {
                    name: s.to_string(),
                    kind: "postgres".into(),
                })
                .collect(),
        };
        writer.send(&catalog.to_frame().unwrap()).await.unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let r = received.clone();
        tokio::spawn(async move {
            while let Ok(Some(f)) = reader.next().await {
                if let Ok(m) = ControlMessage::from_frame(&f) {
                    r.lock().unwrap().push(m);
                }
            }
        });
        Self {
            conn,
            control: tokio::sync::Mutex::new(writer),
            received,
            _endpoint: ep,
        }
    }

    async fn send(&self, msg: ControlMessage) {
        let frame = msg.to_frame().unwrap();
        self.control.lock().await.send(&frame).await.unwrap();
    }

    /// Plan requests and task assignments the broker sent this agent.
    fn work_received(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|m| {
                matches!(
                    m,
                    ControlMessage::PlanRequest { .. } | ControlMessage::TaskAssign { .. }
                )
            })
            .map(|m| format!("{m:?}"))
            .collect()
    }

    /// Opens a data stream for `task_id` carrying `batch` and ends it;
    /// returns what the broker answered on the stream (`Err`: reset or
    /// refused).
    async fn send_stream(&self, task_id: &str, batch: &RecordBatch) -> Result<String, String> {
        let (send, recv) = self.conn.open_bi().await.map_err(|e| e.to_string())?;
        let mut w = FrameWriter::new(send);
        let mut r = FrameReader::new(recv, Limits::default().max_control_frame);
        let header = StreamHeader {
            task_id: task_id.into(),
            split: 0,
            resume_after_seq: None,
            compression: Compression::None,
            schema: batch.schema(),
        };
        let mut enc = BatchEncoder::new(batch.schema(), Compression::None);
        let b = enc.encode(1, batch).map_err(|e| e.to_string())?;
        let end = End {
            batches: 1,
            rows: batch.num_rows() as u64,
            changed: Default::default(),
        };
        for f in [header.to_frame().unwrap(), b.frame, end.to_frame().unwrap()] {
            w.send(&f).await.map_err(|e| e.to_string())?;
        }
        let _ = w.finish();
        match tokio::time::timeout(Duration::from_secs(10), r.next()).await {
            Ok(Ok(Some(f))) if f.kind == FrameKind::Control => {
                Err(format!("{:?}", ControlMessage::from_frame(&f)))
            }
            Ok(Ok(Some(f))) => Ok(format!("{:?} frame", f.kind)),
            Ok(Ok(None)) => Err("finished without an answer".into()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Ok("no answer in 10 s".into()),
        }
    }
}

/// A batch of `schema` whose integer columns hold `marker` and text
/// columns `ROGUE`; anything else null.
fn rogue_batch(schema: SchemaRef, marker: i64) -> RecordBatch {
    let cols: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Int64 => Arc::new(Int64Array::from(vec![marker, marker - 1])) as ArrayRef,
            DataType::Utf8 => Arc::new(StringArray::from(vec!["ROGUE", "ROGUE"])) as ArrayRef,
            t => arrow_array::new_null_array(t, 2),
        })
        .collect();
    RecordBatch::try_new(schema, cols).unwrap()
}

/// The broker asks only agents of the job's group; another group's agent
/// (even one with the same agent id) that answers anyway is refused for
/// plan replies, plan failures, task failures and data streams, with
/// guessed ids and with the real ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_groups_agent_cannot_answer_for_the_agent_asked() {
    let Some(src) = PgSchema::new("ferry_rogue_src") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_rogue_dst") else {
        return;
    };
    src.sql(
        "CREATE TABLE orders (id bigint, name text);
         INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 200000) g;
         ANALYZE orders;",
    );

    // The tap sees A's plan reply before the broker routes it: it hands the
    // real request id to the rogue and holds A's reply until the rogue's
    // forgery with that id was refused.
    let (real_tx, real_rx) = std::sync::mpsc::channel::<(u64, Schema)>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = Mutex::new(go_rx);
    let real_tx = Mutex::new(real_tx);
    let held = AtomicBool::new(false);
    let tap: ferry_broker::server::ControlTap = Arc::new(move |payload: &[u8]| {
        let Ok(ControlMessage::PlanReply {
            request_id, schema, ..
        }) = serde_json::from_slice::<ControlMessage>(payload)
        else {
            return;
        };
        if schema.field_with_name("pwned").is_ok() || held.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = real_tx.lock().unwrap().send((request_id, schema));
        // The tap runs inside A's session task: hand its worker's other
        // tasks to another thread while it waits.
        tokio::task::block_in_place(|| {
            let _ = go_rx.lock().unwrap().recv_timeout(Duration::from_secs(20));
        });
    });
    let rig = Rig::start_with(
        &[RigSource {
            name: "shop",
            kind: "postgres",
            url: &pg_url(),
            extra: "",
        }],
        &BTreeMap::new(),
        Some(tap),
    )
    .await;
    let a_key = format!("{}/{}", rig.group, rig.agent_id);

    // The rogue: group `evil`, the very same agent id as A, offering a
    // source of the same name.
    let rogue_cert = rig.setup.pki.agent(&rig.agent_id, "evil");
    let rogue = Arc::new(
        RawAgent::connect(
            &rig.setup.pki,
            &rogue_cert,
            rig.broker.local_addr(),
            &rig.agent_id,
            &["shop"],
        )
        .await,
    );
    eventually("both agents listed", Duration::from_secs(5), || {
        let l = rig.broker.registry().list();
        l.len() == 2 && l.iter().all(|a| a.sources.len() == 1)
    })
    .await;

    // Guesses before the job: the ids a sequential counter would give.
    for id in 0..64u64 {
        rogue
            .send(ControlMessage::PlanReply {
                request_id: id,
                schema: pwned_schema(),
                splits: Vec::new(),
                estimated_rows: None,
                table: None,
            })
            .await;
    }

    let job = format!(
        "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: {ds}\n    table: {s}.orders\n    splitPk: id\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {url}\n    table: {d}.orders\n    createTable: true\n\
         setting:\n  speed: {{channel: 2}}\n",
        ds = rig.datasource("shop"),
        s = src.name,
        d = dst.name,
        url = pg_url()
    );
    let id = rig
        .broker
        .submit(&job, ferry_engine::config::default_vars(), None)
        .await
        .unwrap();
    let number: u64 = id.strip_prefix("job-").unwrap().parse().unwrap();

    // The real plan request id, from the tap; the forgery goes first.
    let (real_id, real_schema) = tokio::task::spawn_blocking(move || {
        real_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("A planned")
    })
    .await
    .unwrap();
    let schema: SchemaRef = Arc::new(real_schema);
    rogue
        .send(ControlMessage::PlanReply {
            request_id: real_id,
            schema: pwned_schema(),
            splits: vec![ferry_connectors::Split::all()],
            estimated_rows: Some(1),
            table: None,
        })
        .await;
    rogue
        .send(ControlMessage::PlanFailed {
            request_id: real_id,
            message: "pwned".into(),
        })
        .await;
    // Sequential guesses around the real id, too.
    for d in 1..8u64 {
        for guess in [real_id.wrapping_add(d), real_id.wrapping_sub(d)] {
            rogue
                .send(ControlMessage::PlanFailed {
                    request_id: guess,
                    message: "pwned".into(),
                })
                .await;
        }
    }
    let refused_reply = wait_log(
        &["plan reply refused", &real_id.to_string(), &a_key, "evil/"],
        Duration::from_secs(10),
    )
    .await;
    let refused_failure = wait_log(
        &["plan failure refused", &real_id.to_string(), &a_key],
        Duration::from_secs(10),
    )
    .await;
    go_tx.send(()).unwrap();
    assert!(
        refused_reply,
        "the forged plan reply was not refused by name"
    );
    assert!(refused_failure, "the forged plan failure was not refused");

    // Tasks: the real ids as the broker logs them, and the old sequential
    // pattern as guesses; the rogue fails each and opens a stream for it.
    let marker = -777_000;
    let bad = rogue_batch(schema.clone(), marker);
    let prefix = format!("job-{number}");
    let mut seen = BTreeSet::new();
    let mut stream_answers = Vec::new();
    for s in 0..8 {
        let guess = format!("{prefix}-s{s}-a1");
        rogue
            .send(ControlMessage::task_failed(guess.clone(), "pwned"))
            .await;
        stream_answers.push(rogue.send_stream(&guess, &bad).await);
    }
    let start = Instant::now();
    let status = loop {
        for line in log_text().lines() {
            if !line.contains("task assigned") || !line.contains(&format!("agent={a_key}")) {
                continue;
            }
            let Some(task) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("task="))
                .filter(|t| t.starts_with(&format!("{prefix}-s")))
            else {
                continue;
            };
            if !seen.insert(task.to_string()) {
                continue;
            }
            rogue
                .send(ControlMessage::task_failed(task, "pwned: disk on fire"))
                .await;
            stream_answers.push(rogue.send_stream(task, &bad).await);
        }
        let s = rig.broker.jobs().get(&id).await.unwrap().unwrap();
        if s.state != JobState::Running {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "job still running"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };

    assert_eq!(status.state, JobState::Succeeded, "{status:?}");
    assert_eq!(status.summary.as_ref().unwrap().records_written, 200_000);
    assert!(
        status
            .tasks
            .iter()
            .all(|t| t.agent.as_deref() == Some(rig.agent_id.as_str()) && t.error.is_none()),
        "{status:?}"
    );
    assert!(!seen.is_empty(), "no task ids seen in the broker's log");
    // Exactly A's data: the source, nothing more, no rogue column.
    let diff = dst.sql(&format!(
        "SELECT count(*) FROM ((SELECT id, name FROM {s}.orders EXCEPT ALL SELECT id, name FROM orders)
          UNION ALL (SELECT id, name FROM orders EXCEPT ALL SELECT id, name FROM {s}.orders)) x",
        s = src.name
    ));
    assert_eq!(diff.trim(), "0", "target differs from the source");
    assert_eq!(
        dst.sql("SELECT count(*) FROM orders WHERE id <= -776000 OR name = 'ROGUE'")
            .trim(),
        "0"
    );
    let columns = dst.sql(&format!(
        "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns
          WHERE table_schema = '{}' AND table_name = 'orders'",
        dst.name
    ));
    assert_eq!(columns.trim(), "id,name");

    // Every stream was refused, the real task ids by name of the agent
    // they were assigned to.
    for a in &stream_answers {
        assert!(a.is_err(), "a rogue stream was accepted: {a:?}");
    }
    let text = log_text();
    let refused_streams = text
        .lines()
        .filter(|l| {
            l.contains("data stream refused: the task was assigned to another agent")
                && l.contains(&format!("assigned_to={a_key}"))
                && l.contains("agent=evil/")
        })
        .count();
    let refused_failures = text
        .lines()
        .filter(|l| {
            l.contains("task failure refused")
                && l.contains(&format!("sent_to={a_key}"))
                && l.contains("agent=evil/")
        })
        .count();
    eprintln!(
        "{} real tasks: {refused_streams} rogue streams and {refused_failures} rogue failures refused by name, {} rogue streams in all",
        seen.len(),
        stream_answers.len()
    );
    assert!(
        refused_streams >= 1 && refused_failures >= 1,
        "streams refused {refused_streams}, failures refused {refused_failures} of {} real tasks",
        seen.len()
    );
    assert!(
        rig.broker
            .metrics_text()
            .contains("ferry_errors_total{kind=\"foreign_answer\"}"),
        "refusals not counted"
    );
    assert!(
        rogue.work_received().is_empty(),
        "the rogue was sent work: {:?}",
        rogue.work_received()
    );
    rig.stop().await;
}

/// Agent ids are unique within a group only: `a1` of X and `a1` of Y are
/// two agents, both listed, neither replacing the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_agent_id_in_two_groups_is_two_agents() {
    let s = Setup::new();
    let broker = s.broker(ferry_broker::data::refuse_all()).await;
    let x = s.pki.agent("a1", "grp-x");
    let y = s.pki.agent("a1", "grp-y");
    let sx = ferry_agent::connect(&s.agent_config(&x, broker.local_addr()))
        .await
        .unwrap();
    let sy = ferry_agent::connect(&s.agent_config(&y, broker.local_addr()))
        .await
        .unwrap();
    eventually("two agents registered", Duration::from_secs(5), || {
        broker.registry().len() == 2
    })
    .await;
    // Long enough for a superseding close to have arrived.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sx.connection().close_reason().is_none(), "X was closed");
    assert!(sy.connection().close_reason().is_none(), "Y was closed");
    let url = format!("http://{}/v1/agents", broker.admin_addr());
    let listed: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    let mut pairs: Vec<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["agent_id"].as_str().unwrap().to_string(),
                a["group"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            ("a1".to_string(), "grp-x".to_string()),
            ("a1".to_string(), "grp-y".to_string())
        ]
    );
    sx.close("done").await;
    eventually("X gone, Y stays", Duration::from_secs(5), || {
        let l = broker.registry().list();
        l.len() == 1 && l[0].group == "grp-y"
    })
    .await;
    sy.close("done").await;
    broker.shutdown().await;
}

/// A handler that keeps every data stream open without reading it.
fn holding(held: Arc<Mutex<Vec<ferry_broker::DataStream>>>) -> ferry_broker::DataHandler {
    Arc::new(move |ds| held.lock().unwrap().push(ds))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_streams_over_the_cap_are_reset() {
    let s = Setup::new();
    let mut config = s.broker_config("127.0.0.1:0".parse().unwrap());
    config.limits.max_data_streams = 4;
    let held = Arc::new(Mutex::new(Vec::new()));
    let broker = ferry_broker::Broker::start(config, holding(held.clone()))
        .await
        .unwrap();
    let cert = s.pki.agent("capped-01", "capped");
    let agent = RawAgent::connect(&s.pki, &cert, broker.local_addr(), "capped-01", &[]).await;
    let batch = sample_batch(0, 3);
    let header = |task: &str| StreamHeader {
        task_id: task.into(),
        split: 0,
        resume_after_seq: None,
        compression: Compression::None,
        schema: batch.schema(),
    };
    // Four streams are taken and held open by the handler.
    let mut open = Vec::new();
    for i in 0..4 {
        let (send, recv) = agent.conn.open_bi().await.unwrap();
        let mut w = FrameWriter::new(send);
        w.send(&header(&format!("held-{i}")).to_frame().unwrap())
            .await
            .unwrap();
        open.push((w, recv));
    }
    eventually("four streams held", Duration::from_secs(5), || {
        held.lock().unwrap().len() == 4
    })
    .await;
    // The fifth is reset at once, and said so in the log.
    let (send, recv) = agent.conn.open_bi().await.unwrap();
    let mut w = FrameWriter::new(send);
    w.send(&header("one-too-many").to_frame().unwrap())
        .await
        .unwrap();
    let mut r = FrameReader::new(recv, 1 << 20);
    let answer = tokio::time::timeout(Duration::from_secs(5), r.next())
        .await
        .expect("the broker answers the fifth stream at once");
    assert!(answer.is_err(), "fifth stream not reset: {answer:?}");
    assert!(
        wait_log(
            &[
                "capped/capped-01",
                "limits.max_data_streams",
                "data stream reset"
            ],
            Duration::from_secs(5)
        )
        .await
    );
    assert_eq!(held.lock().unwrap().len(), 4);
    // A stream that ends frees its slot.
    drop(held.lock().unwrap().pop());
    let (send, _recv) = agent.conn.open_bi().await.unwrap();
    let mut w = FrameWriter::new(send);
    w.send(&header("after-one-ended").to_frame().unwrap())
        .await
        .unwrap();
    eventually(
        "a new stream is taken again",
        Duration::from_secs(5),
        || {
            held.lock()
                .unwrap()
                .iter()
                .any(|d| d.header().task_id == "after-one-ended")
        },
    )
    .await;
    held.lock().unwrap().clear();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_requests_over_the_cap_fail_fast() {
    let s = Setup::new();
    let jobs = tempfile::tempdir().unwrap();
    let mut config = s.broker_config("127.0.0.1:0".parse().unwrap());
    config.jobs_dir = jobs.path().to_path_buf();
    config.limits.max_plans_per_agent = 2;
    let broker = ferry_broker::Broker::start(config, ferry_broker::data::refuse_all())
        .await
        .unwrap();
    // An agent that offers `shop` and never answers a plan request.
    let cert = s.pki.agent("mute-01", "mute");
    let agent = RawAgent::connect(&s.pki, &cert, broker.local_addr(), "mute-01", &["shop"]).await;
    eventually("agent offers shop", Duration::from_secs(5), || {
        broker
            .registry()
            .list()
            .iter()
            .any(|a| a.sources.len() == 1)
    })
    .await;
    let job = |n: u32| {
        format!(
            "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: mute/shop\n    table: public.t{n}\n\
             writer:\n  name: sqlitewriter\n  parameter:\n    url: sqlite://{}\n    table: t\n    createTable: true\n",
            jobs.path().join(format!("t{n}.db")).display()
        )
    };
    let vars = ferry_engine::config::default_vars;
    let mut waiting = Vec::new();
    for n in 0..2 {
        waiting.push(broker.submit(&job(n), vars(), None).await.unwrap());
    }
    let plans = || {
        agent
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|m| matches!(m, ControlMessage::PlanRequest { .. }))
            .count()
    };
    eventually(
        "two plan requests in flight",
        Duration::from_secs(10),
        || plans() == 2,
    )
    .await;
    let started = Instant::now();
    let third = broker.submit(&job(2), vars(), None).await.unwrap();
    let status = loop {
        let s = broker.jobs().get(&third).await.unwrap().unwrap();
        if s.state != JobState::Running {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the third plan waits instead of failing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.state, JobState::Failed);
    let e = status.error.unwrap_or_default();
    assert!(
        e.contains("already has 2 plan requests in flight") && e.contains("max_plans_per_agent"),
        "{e}"
    );
    assert_eq!(plans(), 2, "a third request was sent to the agent");
    for id in &waiting {
        broker.jobs().cancel(id);
    }
    broker.shutdown().await;
}

/// Eight streams, each declaring a 60 MiB stream header and sending it:
/// the header limit (1 MiB) refuses each on its length prefix, and the
/// broker process (a real `ferry broker run`) does not grow by the 480 MiB
/// it was offered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_stream_headers_are_refused_before_they_are_buffered() {
    use ferry_tests::proc::{ferry_bin, free_port, Proc};
    logs();
    let pki = Pki::new();
    let broker_cert = pki.broker(&["127.0.0.1", "localhost"]);
    let (port, admin) = (free_port(), free_port());
    let config = pki.dir.path().join("broker.toml");
    std::fs::write(
        &config,
        pki.broker_toml(
            &broker_cert,
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{admin}"),
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(ferry_bin());
    cmd.current_dir(pki.dir.path())
        .args(["broker", "run", "--config"])
        .arg(&config);
    let broker = Proc::spawn("broker", cmd);
    assert!(
        broker.wait_for("broker listening", Duration::from_secs(10)),
        "{}",
        broker.output()
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cert = pki.agent("big-01", "bulky");
    let agent = RawAgent::connect(&pki, &cert, addr, "big-01", &[]).await;
    assert!(broker.wait_for("agent connected", Duration::from_secs(5)));
    let pid = broker.pid();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = ferry_tests::proc::rss_kib(pid);
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(before));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    if let Some(kb) = s
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.split_whitespace().next())
                        .and_then(|v| v.parse::<u64>().ok())
                    {
                        peak.fetch_max(kb, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    const DECLARED: u32 = 60 << 20;
    let chunk = Bytes::from(vec![0x5a_u8; 1 << 20]);
    let mut sends = Vec::new();
    for _ in 0..8 {
        let (send, recv) = agent.conn.open_bi().await.unwrap();
        let chunk = chunk.clone();
        sends.push(tokio::spawn(async move {
            let _recv = recv;
            let mut send = send;
            let mut sent = 0u64;
            let mut parts = [Bytes::copy_from_slice(&encode_header(
                FrameKind::StreamHeader,
                DECLARED,
            ))];
            if send.write_all_chunks(&mut parts).await.is_err() {
                return sent;
            }
            for _ in 0..60 {
                let mut parts = [chunk.clone()];
                let w = tokio::time::timeout(
                    Duration::from_secs(10),
                    send.write_all_chunks(&mut parts),
                )
                .await;
                match w {
                    Ok(Ok(())) => sent += chunk.len() as u64,
                    _ => break,
                }
            }
            sent
        }));
    }
    let mut total = 0;
    for s in sends {
        total += s.await.unwrap();
    }
    // Whatever was in flight has arrived or been dropped by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let grew_mb = peak.load(Ordering::Relaxed).saturating_sub(before) as f64 / 1024.0;
    let out = broker.output();
    let refused = out
        .lines()
        .filter(|l| {
            l.contains("data stream refused") && l.contains("62914560") && l.contains("1048576")
        })
        .count();
    assert_eq!(refused, 8, "each header refused on its length:\n{out}");
    assert!(
        grew_mb < 40.0,
        "the broker grew by {grew_mb:.1} MB under 8 x 60 MiB headers (before: {before} kB)"
    );
    assert!(
        total < 8 * u64::from(DECLARED),
        "the broker read every header to the end ({total} bytes)"
    );
    eprintln!("broker RSS grew by {grew_mb:.1} MB; the rogue got {total} bytes into the streams");
}

/// Without a token on loopback, only loopback names reach the admin API
/// (a browser page on a rebinding name sends its own name as Host).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokenless_loopback_admin_api_answers_only_loopback_host_names() {
    let s = Setup::new();
    let broker = s.broker(ferry_broker::data::refuse_all()).await;
    let admin = broker.admin_addr();
    let port = admin.port();
    let http = reqwest::Client::new();
    let get = |host: String, path: &'static str| {
        let http = http.clone();
        async move {
            http.get(format!("http://{admin}{path}"))
                .header(reqwest::header::HOST, host)
                .send()
                .await
                .unwrap()
        }
    };
    for host in [
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let r = get(host.clone(), "/v1/agents").await;
        assert_eq!(r.status().as_u16(), 200, "{host}");
    }
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("127.0.0.1.nip.io:{port}"),
        "localhost:1".to_string(),
    ] {
        for path in ["/v1/agents", "/healthz", "/metrics"] {
            let r = get(host.clone(), path).await;
            assert_eq!(r.status().as_u16(), 421, "{host} {path}");
            let body: serde_json::Value = r.json().await.unwrap();
            let e = body["error"].as_str().unwrap();
            assert!(e.contains("admin_token_file") && e.contains(&host), "{e}");
        }
    }
    // The ordinary client (Host from the URL) is unaffected.
    let r = reqwest::get(format!("http://{admin}/v1/agents"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    broker.shutdown().await;

    // With a token, the token is the guard; any Host may ask.
    let token = s.pki.dir.path().join("admin.token");
    std::fs::write(&token, "0123456789abcdef-rebind-test\n").unwrap();
    let mut config = s.broker_config("127.0.0.1:0".parse().unwrap());
    config.admin_token_file = Some(token);
    let broker = ferry_broker::Broker::start(config, ferry_broker::data::refuse_all())
        .await
        .unwrap();
    let r = http
        .get(format!("http://{}/v1/agents", broker.admin_addr()))
        .header(reqwest::header::HOST, "evil.example")
        .bearer_auth("0123456789abcdef-rebind-test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    broker.shutdown().await;
}

/// The schema a forged plan reply carries: one column the real table does not have.
fn pwned_schema() -> Schema {
    Schema::new(vec![arrow_schema::Field::new(
        "pwned",
        arrow_schema::DataType::Utf8,
        true,
    )])
}
