//! Jobs that outlive their processes: `ferry broker run` and `ferry agent
//! run` as real processes, killed with SIGKILL mid-job.
//!
//! - Two agents of one group share a job's tasks; one is killed; its tasks
//!   move to the other and the job finishes with the target equal to the
//!   source.
//! - The broker is killed mid-job and started again on the same state
//!   store (SQLite, then PostgreSQL); it picks the job up and finishes it,
//!   without running `preSql` a second time.
//!
//! The target has no key and the job writes with `writeMode: insert`, so a
//! row written twice would show: a split started again after some of its
//! batches were committed resumes after the checkpoint committed with its
//! last batch (the target's `ferry_checkpoints`), reading `id > last key`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_tests::db::{pg_url, PgSchema};
use ferry_tests::proc::{ferry, ferry_bin, free_port, Proc};
use serde_json::Value;

const ROWS: u64 = 150_000;

/// Certificates, a broker config and agent configs in a temp dir; the
/// source and target schemas.
struct Site {
    tmp: tempfile::TempDir,
    admin: String,
    port: u16,
    src: PgSchema,
    dst: PgSchema,
}

impl Site {
    fn new(state: Option<&str>) -> Option<Self> {
        let src = PgSchema::new("ferry_fo_src")?;
        let dst = PgSchema::new("ferry_fo_dst")?;
        src.sql(&format!(
            "CREATE TABLE t (id int PRIMARY KEY, v text, n numeric(12,2));
             INSERT INTO t SELECT g, md5(g::text), g / 7.0 FROM generate_series(1, {ROWS}) g;
             ANALYZE t;"
        ));
        dst.sql(
            "CREATE TABLE t (id int, v text, n numeric(12,2));
             CREATE TABLE runs (at timestamptz);",
        );
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for args in [
            &["certs", "init"][..],
            &["certs", "server", "--san", "127.0.0.1"],
            &["certs", "agent", "--id", "fo-a", "--group", "idc-fo"],
            &["certs", "agent", "--id", "fo-b", "--group", "idc-fo"],
        ] {
            let out = ferry(dir, args);
            assert!(out.status.success(), "{out:?}");
        }
        let (port, admin) = (free_port(), free_port());
        std::fs::write(dir.join("admin.token"), "failover-operator-token-0123\n").unwrap();
        let state = state
            .map(|s| format!("state = \"{s}\"\n"))
            .unwrap_or_default();
        // A killed agent sends no close: the broker notices by the idle
        // timeout. Small stream windows keep most of a split on the agent's
        // side until the broker asks for it, so killing the agent mid-split
        // really loses the rest of the split's stream.
        let transport =
            "[transport]\nkeep_alive_secs = 1\nidle_timeout_secs = 3\nstream_window = 65536\n";
        std::fs::write(
            dir.join("broker.toml"),
            format!(
                "listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\nadmin_token_file = \"admin.token\"\n{state}\
                 [tls]\nca = \"pki/ca.pem\"\ncert = \"pki/broker.pem\"\nkey = \"pki/broker.key\"\ncrl = \"pki/crl.pem\"\n{transport}"
            ),
        )
        .unwrap();
        for id in ["fo-a", "fo-b"] {
            std::fs::write(
                dir.join(format!("{id}.toml")),
                format!(
                    "broker = \"127.0.0.1:{port}\"\n[tls]\nca = \"pki/ca.pem\"\ncert = \"pki/agents/{id}.pem\"\nkey = \"pki/agents/{id}.key\"\n\
                     [reconnect]\ninitial_ms = 200\nmax_secs = 1\n{transport}\
                     [sources.shop]\nkind = \"postgres\"\nurl = \"{}\"\n",
                    pg_url()
                ),
            )
            .unwrap();
        }
        // 150k rows at 30k rows/s: about 5 s, long enough to kill something mid-job.
        std::fs::write(
            dir.join("job.yaml"),
            format!(
                "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: idc-fo/shop\n    table: {s}.t\n    splitPk: id\n    fetchSize: 1000\n\
                 writer:\n  name: postgresqlwriter\n  parameter:\n    url: {url}\n    table: {d}.t\n    writeMode: insert\n\
                 \x20   preSql: [\"INSERT INTO {d}.runs VALUES (now())\"]\n\
                 setting:\n  speed: {{channel: 2, record: 30000}}\n  retry: {{attempts: 6, backoffMs: 200}}\n",
                s = src.name,
                d = dst.name,
                url = pg_url()
            ),
        )
        .unwrap();
        Some(Self {
            tmp,
            admin: format!("127.0.0.1:{admin}"),
            port,
            src,
            dst,
        })
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn broker(&self) -> Proc {
        let mut cmd = Command::new(ferry_bin());
        cmd.current_dir(self.dir())
            .args(["broker", "run", "-c", "broker.toml"]);
        let p = Proc::spawn("broker", cmd);
        assert!(
            p.wait_for("broker listening", Duration::from_secs(20)),
            "{}",
            p.output()
        );
        p
    }

    fn agent(&self, id: &str) -> Proc {
        let mut cmd = Command::new(ferry_bin());
        cmd.current_dir(self.dir())
            .args(["agent", "run", "-c", &format!("{id}.toml")]);
        Proc::spawn(id, cmd)
    }

    fn job(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["job", "--admin", &self.admin, "--token-file", "admin.token"];
        all.extend_from_slice(args);
        ferry(self.dir(), &all)
    }

    fn wait_agents(&self, ids: &[&str]) {
        let start = Instant::now();
        loop {
            let out = ferry(
                self.dir(),
                &[
                    "broker",
                    "agents",
                    "--admin",
                    &self.admin,
                    "--token-file",
                    "admin.token",
                ],
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if ids.iter().all(|id| text.contains(id)) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "agents {ids:?} not connected: {text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn submit(&self) -> String {
        let out = self.job(&["submit", "--detach", "job.yaml"]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The job as the API shows it; `None` while the broker is down.
    fn status(&self, id: &str) -> Option<Value> {
        let out = self.job(&["status", id, "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("status JSON"))
    }

    fn wait_until(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            if let Some(s) = self.status(id) {
                if f(&s) {
                    return s;
                }
                assert!(
                    s["state"] == "running" || f(&s),
                    "job ended before {what}: {s:#}"
                );
            }
            assert!(start.elapsed() < timeout, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_end(&self, id: &str) -> Value {
        let start = Instant::now();
        loop {
            if let Some(s) = self.status(id) {
                if s["state"] != "running" {
                    return s;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "job {id} did not end: {:#}",
                self.status(id).unwrap_or(Value::Null)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Target equals source: same rows, same content, no duplicate or missing key.
    fn assert_target_equals_source(&self) {
        let q = "SELECT count(*), count(DISTINCT id), md5(string_agg(id || ':' || v || ':' || n, ',' ORDER BY id)) FROM t";
        let (src, dst) = (self.src.sql(q), self.dst.sql(q));
        assert_eq!(dst.trim(), src.trim(), "target differs from source");
        assert!(src.starts_with(&format!("{ROWS}|{ROWS}|")), "{src}");
    }

    fn logs(&self, id: &str) -> String {
        let out = self.job(&["logs", id]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn written(s: &Value) -> u64 {
    s["progress"]["records_written"].as_u64().unwrap_or(0)
}

#[test]
fn a_killed_agents_tasks_move_to_another_agent_of_the_group() {
    let Some(site) = Site::new(None) else {
        return;
    };
    let _broker = site.broker();
    let mut a = Some(site.agent("fo-a"));
    let _b = site.agent("fo-b");
    site.wait_agents(&["fo-a", "fo-b"]);
    let id = site.submit();

    // Both agents read; wait until agent A is in the middle of a split
    // (a split is about 16,700 rows; a 64 KiB window holds about 3,000).
    let s = site.wait_until(
        &id,
        "a split half-read on fo-a",
        Duration::from_secs(60),
        |s| {
            s["tasks"].as_array().is_some_and(|t| {
                t.iter().any(|t| {
                    t["agent"] == "fo-a"
                        && t["state"] == "running"
                        && (1..8000).contains(&t["rows"].as_u64().unwrap_or(0))
                })
            })
        },
    );
    let victim = s["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["agent"] == "fo-a" && t["state"] == "running")
        .map(|t| t["split"].clone())
        .unwrap();
    let agents: std::collections::BTreeSet<_> = s["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["agent"].as_str())
        .collect();
    assert!(agents.contains("fo-b"), "both agents share the job: {s:#}");
    drop(a.take()); // SIGKILL

    let end = site.wait_end(&id);
    assert_eq!(end["state"], "succeeded", "{end:#}");
    site.assert_target_equals_source();
    assert_eq!(written(&end), ROWS, "each row counted once: {end:#}");
    let tasks = end["tasks"].as_array().unwrap();
    assert!(tasks.iter().all(|t| t["state"] == "done"), "{end:#}");
    let moved: Vec<_> = tasks
        .iter()
        .filter(|t| t["attempts"].as_u64() > Some(1))
        .collect();
    assert!(!moved.is_empty(), "a task was started again: {end:#}");
    assert!(
        moved.iter().all(|t| t["agent"] == "fo-b"),
        "the killed agent's tasks finished on the other one: {end:#}"
    );
    assert!(
        moved.iter().any(|t| t["split"] == victim),
        "the split cut off mid-stream was read again: {end:#}"
    );
    let logs = site.logs(&id);
    assert!(logs.contains("starting it again"), "{logs}");
    assert!(logs.contains("on agent `fo-b`"), "{logs}");
    assert!(logs.contains("ended succeeded"), "{logs}");
    assert_eq!(site.dst.sql("SELECT count(*) FROM runs").trim(), "1");
    assert_eq!(
        site.dst
            .sql("SELECT count(*) FROM ferry_checkpoints")
            .trim(),
        "0",
        "a finished job's checkpoints are removed"
    );
}

fn broker_restart_mid_job(site: &Site) {
    let mut broker = Some(site.broker());
    let _agent = site.agent("fo-a");
    site.wait_agents(&["fo-a"]);
    let id = site.submit();
    site.wait_until(&id, "a third of the rows", Duration::from_secs(60), |s| {
        written(s) >= ROWS / 3
    });
    drop(broker.take()); // SIGKILL, mid-job
    let committed: u64 = site
        .dst
        .sql("SELECT count(*) FROM t")
        .trim()
        .parse()
        .unwrap();
    assert!(
        committed > 0 && committed < ROWS,
        "killed mid-job: {committed} rows in"
    );

    let restarted = site.broker();
    assert!(
        restarted.wait_for("resuming job", Duration::from_secs(10)),
        "{}",
        restarted.output()
    );
    let end = site.wait_end(&id);
    assert_eq!(end["state"], "succeeded", "{end:#}");
    assert_eq!(end["resumes"], 1, "{end:#}");
    site.assert_target_equals_source();
    // The target was prepared once: preSql did not run again.
    assert_eq!(site.dst.sql("SELECT count(*) FROM runs").trim(), "1");
    let logs = site.logs(&id);
    assert!(
        logs.contains("picked up again after a broker restart"),
        "{logs}"
    );
    assert!(logs.contains("ended succeeded"), "{logs}");
    // The list survives restarts too.
    let out = site.job(&["list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    drop(restarted);
    let _ = site.port;
}

#[test]
fn a_killed_broker_resumes_its_job_from_sqlite_state() {
    let Some(site) = Site::new(None) else {
        return;
    };
    broker_restart_mid_job(&site);
    assert!(site.dir().join("jobs/state.db").exists());
}

#[test]
fn a_killed_broker_resumes_its_job_from_postgres_state() {
    let Some(db) = ferry_tests::db::PgDatabase::new("ferry_state_fo") else {
        return;
    };
    let url = db.url();
    let Some(site) = Site::new(Some(&url)) else {
        return;
    };
    broker_restart_mid_job(&site);
    assert!(!site.dir().join("jobs/state.db").exists());
    let jobs = Command::new("psql")
        .args([
            "-X",
            "-Atc",
            "SELECT count(*), max(resumes) FROM jobs",
            &url,
        ])
        .output()
        .expect("psql");
    assert_eq!(String::from_utf8_lossy(&jobs.stdout).trim(), "1|1");
}
