//! A change stream that outlives its processes, its link and its source server: `ferry
//! broker run` and `ferry agent run` as real processes, killed with SIGKILL while a writer
//! changes the source and started again, the agent's link to the broker cut (a UDP relay
//! that drops everything for longer than the idle timeout), and the source server shut down
//! and started again (PostgreSQL: a server of the test's own; MariaDB: the shared one). At the end the target equals the source: no change lost,
//! none applied twice (a replayed key change or delete would fail or leave a difference).
//! Each fault's recovery time is printed: from the fault until a change made after it
//! reached the target.
//!
//! The MariaDB run restarts the shared MariaDB server: no other test of this binary uses
//! it, and cargo runs test binaries one after another.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_tests::db::{mariadb_cli, pg_url, MyDb, PgSchema};
use ferry_tests::pgcluster::PgCluster;
use ferry_tests::proc::{ferry, ferry_bin, free_port, Proc};

/// Transactions the writer has ready (more than it gets through: it is stopped once the
/// faults are over, so every fault strikes under load).
const TXNS: usize = 50_000;

/// The source a run streams from.
enum Source {
    /// A schema on a private server (restarted by the faults).
    Pg(PgSchema, PgCluster),
    My(MyDb),
}

impl Source {
    /// The highest key the writer inserted so far.
    fn high(&self) -> i64 {
        let v = match self {
            Source::Pg(s, _) => s.sql(&format!(
                "SELECT coalesce(max(id), 0) FROM {}.t WHERE id < 1000000",
                s.name
            )),
            Source::My(m) => m.sql("SELECT COALESCE(MAX(id), 0) FROM t WHERE id < 1000000"),
        };
        v.trim().parse().unwrap_or(0)
    }

    /// Count, distinct keys and a digest of every row.
    fn digest(&self) -> String {
        match self {
            Source::Pg(s, _) => digest_pg(s),
            Source::My(m) => m
                .sql(
                    "SET SESSION group_concat_max_len = 1073741824;
                     SELECT COUNT(*), COUNT(DISTINCT id), MD5(COALESCE(GROUP_CONCAT(
                       CONCAT(id, ':', v, ':', IFNULL(note, '~')) ORDER BY id SEPARATOR ','), ''))
                     FROM t",
                )
                .split_whitespace()
                .collect::<Vec<_>>()
                .join("|"),
        }
    }
}

fn digest_pg(s: &PgSchema) -> String {
    s.sql(&format!(
        "SELECT count(*), count(DISTINCT id), md5(coalesce(string_agg(id || ':' || v || ':' || coalesce(note, '~'), ',' ORDER BY id), '')) FROM {}.t",
        s.name
    ))
    .trim()
    .to_string()
}

/// The writer: TXNS transactions of inserts, updates, key changes and deletes, in the
/// source's SQL.
fn transactions(my: bool) -> impl Iterator<Item = String> {
    (1..=TXNS).map(move |k| {
        let h = k / 2 + 1;
        let mut t = if my {
            format!("BEGIN; INSERT INTO t VALUES ({k}, 0, 'n{k}'); UPDATE t SET v = v + 1, note = CONCAT(note, '.') WHERE id = {h};")
        } else {
            format!("BEGIN; INSERT INTO t VALUES ({k}, 0, 'n{k}'); UPDATE t SET v = v + 1, note = note || '.' WHERE id = {h};")
        };
        if k % 7 == 0 {
            t.push_str(&format!(" DELETE FROM t WHERE id = {};", k - 5));
        }
        if k % 11 == 0 {
            t.push_str(&format!(
                " UPDATE t SET id = id + 1000000 WHERE id = {};",
                k - 3
            ));
        }
        t.push_str(if my {
            " COMMIT; DO SLEEP(0.008);\n"
        } else {
            " COMMIT; SELECT pg_sleep(0.008);\n"
        });
        t
    })
}

/// A running writer: chunks of transactions, each through its own client (a server
/// restart ends a client; the next chunk connects again).
struct Writer(Arc<AtomicBool>, std::thread::JoinHandle<()>);

impl Writer {
    /// Runs the source's transactions through `exec`, 25 at a time.
    fn start(my: bool, exec: impl Fn(&str) + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let h = std::thread::spawn(move || {
            let all: Vec<String> = transactions(my).collect();
            for chunk in all.chunks(25) {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                // A chunk cut off by a server restart is given up: the check is the
                // target against the source, whatever the writer got done.
                exec(&chunk.concat());
            }
        });
        Writer(stop, h)
    }

    fn running(&mut self) -> bool {
        !self.1.is_finished()
    }

    fn stop(self) {
        self.0.store(true, Ordering::Relaxed);
        let _ = self.1.join();
    }
}

/// Shuts the MariaDB server down and starts it again, as `.ci/cdc-servers.sh` does.
fn restart_mariadb() {
    let down = Command::new("mariadb-admin")
        .args([
            "--no-defaults",
            "--protocol=TCP",
            "-h",
            "127.0.0.1",
            "-P",
            "3306",
            "-u",
            "root",
            "shutdown",
        ])
        .status()
        .expect("mariadb-admin runs");
    assert!(down.success(), "mariadb-admin shutdown: {down}");
    let start = Instant::now();
    while Command::new("pgrep")
        .args(["-x", "mariadbd"])
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "mariadbd did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::create_dir_all("/run/mysqld");
    let _ = Command::new("chown")
        .args(["mysql:mysql", "/run/mysqld"])
        .status();
    let up = Command::new("start-stop-daemon")
        .args([
            "--start",
            "--oknodo",
            "--background",
            "--exec",
            "/usr/sbin/mariadbd",
        ])
        .status()
        .expect("start-stop-daemon runs");
    assert!(up.success(), "start-stop-daemon: {up}");
    while !mariadb_cli(None)
        .args(["-e", "SELECT 1"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "MariaDB did not come back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Site {
    tmp: tempfile::TempDir,
    admin: String,
    /// The agent's path to the broker.
    link: ferry_tests::relay::SwitchRelay,
    src: Source,
    dst: PgSchema,
}

impl Site {
    fn new(my: bool) -> Option<Self> {
        let src = if my {
            let m = MyDb::new("ferry_sf_my")?;
            let settings = m.sql("SELECT @@log_bin, @@binlog_format, @@binlog_row_image");
            if settings.split_whitespace().collect::<Vec<_>>() != ["1", "ROW", "FULL"] {
                ferry_tests::missing(
                    "MariaDB's binary log in ROW format with FULL images (.ci/cdc-servers.sh)",
                );
                return None;
            }
            m.sql("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL, note TEXT)");
            Source::My(m)
        } else {
            let cluster = PgCluster::start()?;
            let s = PgSchema::new_on(&cluster.url(), "ferry_sf_src")?;
            s.sql("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, note text)");
            Source::Pg(s, cluster)
        };
        let dst = PgSchema::new("ferry_sf_dst")?;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for args in [
            &["certs", "init"][..],
            &["certs", "server", "--san", "127.0.0.1"],
            &["certs", "agent", "--id", "sf-a", "--group", "idc-sf"],
        ] {
            let out = ferry(dir, args);
            assert!(out.status.success(), "{out:?}");
        }
        let (port, admin) = (free_port(), free_port());
        let link =
            ferry_tests::relay::SwitchRelay::new(format!("127.0.0.1:{port}").parse().unwrap());
        link.open();
        let transport = "[transport]\nkeep_alive_secs = 1\nidle_timeout_secs = 3\n";
        std::fs::write(
            dir.join("broker.toml"),
            format!(
                "listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
                 [tls]\nca = \"pki/ca.pem\"\ncert = \"pki/broker.pem\"\nkey = \"pki/broker.key\"\ncrl = \"pki/crl.pem\"\n{transport}"
            ),
        )
        .unwrap();
        let (source, reader, table) = match &src {
            Source::Pg(s, _) => (
                format!(
                    "kind = \"postgres\"\nurl = \"{}\"\nchanges = {{ slot = \"{}\" }}",
                    s.url(),
                    s.name
                ),
                "postgresqlreader",
                format!("{}.t", s.name),
            ),
            Source::My(m) => (
                format!("kind = \"mysql\"\nurl = \"{}\"\nchanges = {{}}", m.url()),
                "mysqlreader",
                "t".to_string(),
            ),
        };
        std::fs::write(
            dir.join("agent.toml"),
            format!(
                "broker = \"{relay}\"\n[tls]\nca = \"pki/ca.pem\"\ncert = \"pki/agents/sf-a.pem\"\nkey = \"pki/agents/sf-a.key\"\n\
                 [reconnect]\ninitial_ms = 200\nmax_secs = 1\n{transport}\
                 [sources.shop]\n{source}\n",
                relay = link.addr,
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("job.yaml"),
            format!(
                "reader:\n  name: {reader}\n  parameter:\n    datasource: idc-sf/shop\n    table: {table}\n\
                 writer:\n  name: postgresqlwriter\n  parameter:\n    url: {url}\n    table: {d}.t\n    createTable: true\n\
                 setting:\n  mode: stream\n  retry: {{backoffMs: 200}}\n",
                d = dst.name,
                url = pg_url()
            ),
        )
        .unwrap();
        Some(Self {
            tmp,
            admin: format!("127.0.0.1:{admin}"),
            link,
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

    fn agent(&self) -> Proc {
        let mut cmd = Command::new(ferry_bin());
        cmd.current_dir(self.dir())
            .args(["agent", "run", "-c", "agent.toml"]);
        Proc::spawn("agent", cmd)
    }

    fn job(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["job", "--admin", &self.admin];
        all.extend_from_slice(args);
        ferry(self.dir(), &all)
    }

    /// Whether the agent's stream reads the source: attached to its slot, or a binlog dump
    /// thread of the server (no other test of this binary reads MariaDB's binlog).
    fn attached(&self) -> bool {
        match &self.src {
            Source::Pg(s, _) => {
                s.sql(&format!(
                    "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}' AND active",
                    s.name
                ))
                .trim()
                    == "1"
            }
            Source::My(m) => {
                m.sql(
                    "SELECT count(*) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'",
                )
                .trim()
                    != "0"
            }
        }
    }

    /// Seconds until the stream is attached.
    fn wait_attached(&self) -> f64 {
        let start = Instant::now();
        while !self.attached() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
        }
        start.elapsed().as_secs_f64()
    }

    /// The highest key the writer inserted that reached the target.
    fn target_high(&self) -> i64 {
        self.dst
            .sql(&format!(
                "SELECT coalesce(max(id), 0) FROM {}.t WHERE id < 1000000",
                self.dst.name
            ))
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Seconds from `t` until the target holds a key above `high` (the source's highest
    /// when the fault struck): a change made after the fault arrived.
    fn recovered(&self, t: Instant, high: i64) -> Option<f64> {
        while self.target_high() <= high {
            if t.elapsed() > Duration::from_secs(90) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(t.elapsed().as_secs_f64())
    }

    fn writer(&self) -> Writer {
        match &self.src {
            Source::Pg(s, _) => {
                let (url, schema) = (s.url().to_string(), s.name.clone());
                Writer::start(false, move |sql| {
                    let _ = ferry_tests::db::psql_on(&url, sql, Some(&schema));
                })
            }
            Source::My(m) => {
                let db = m.name.clone();
                Writer::start(true, move |sql| {
                    let _ = mariadb_cli(Some(&db)).args(["--force", "-e", sql]).output();
                })
            }
        }
    }
}

/// Runs `plan`'s faults under a steady writer, then checks the target equals the source.
fn faults(site: &Site, plan: &[&str]) {
    let mut broker = Some(site.broker());
    let mut agent = Some(site.agent());
    let out = site.job(&["submit", "--detach", "job.yaml"]);
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(site.wait_attached() < 60.0, "the stream never attached");
    let mut writer = site.writer();

    let mut faults = Vec::new();
    for (i, victim) in plan.iter().enumerate() {
        std::thread::sleep(Duration::from_millis(1200));
        let t = Instant::now();
        let mut high = site.src.high();
        match *victim {
            "agent" => {
                drop(agent.take()); // SIGKILL
                std::thread::sleep(Duration::from_millis(300));
                agent = Some(site.agent());
            }
            "broker" => {
                drop(broker.take()); // SIGKILL
                std::thread::sleep(Duration::from_millis(300));
                broker = Some(site.broker());
            }
            "server" => {
                match &site.src {
                    Source::Pg(_, cluster) => cluster.restart(),
                    Source::My(_) => restart_mariadb(),
                }
                // Changes made before the restart may have arrived before it: the recovery
                // is that of a change made once the server is back.
                high = site.src.high();
            }
            _ => {
                // Longer than the idle timeout: both sides give the connection up.
                site.link.close();
                std::thread::sleep(Duration::from_secs(4));
                site.link.open();
            }
        }
        let Some(took) = site.recovered(t, high) else {
            let tail = |p: &Option<Proc>| {
                let out = p.as_ref().map(Proc::output).unwrap_or_default();
                let lines: Vec<&str> = out.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            };
            let status = site.job(&["status", &id]);
            panic!(
                "the stream did not recover after fault {} ({victim}); the job: {}\nagent:\n{}\nbroker:\n{}",
                i + 1,
                String::from_utf8_lossy(&status.stdout),
                tail(&agent),
                tail(&broker)
            );
        };
        faults.push(format!(
            "fault {}: {} — changes made after it reached the target {took:.1} s after it",
            i + 1,
            match *victim {
                "agent" => "SIGKILL the agent (started again after 0.3 s)",
                "broker" => "SIGKILL the broker (started again after 0.3 s)",
                "server" => "restart the source server (shutdown, start)",
                _ => "link cut for 4 s",
            }
        ));
    }
    // Stopped mid-transaction: the open one is rolled back by the server, never applied.
    assert!(writer.running(), "the writer ended before the faults did");
    writer.stop();
    std::thread::sleep(Duration::from_millis(500));
    let want = site.src.digest();
    let start = Instant::now();
    loop {
        if digest_pg(&site.dst) == want {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the target did not catch up: source {want}, target {}\n{}",
            digest_pg(&site.dst),
            faults.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for f in &faults {
        println!("{f}");
    }
    println!(
        "caught up {:.1} s after the writer ended: {want}",
        start.elapsed().as_secs_f64()
    );
    let out = site.job(&["cancel", &id]);
    assert!(out.status.success(), "{out:?}");
    drop(agent);
    drop(broker);
}

#[test]
fn a_stream_survives_killed_processes_cut_links_and_a_restarted_server() {
    let Some(site) = Site::new(false) else {
        return;
    };
    faults(
        &site,
        &[
            "agent", "server", "broker", "link", "server", "agent", "broker", "link", "server",
            "agent",
        ],
    );
}

#[test]
fn a_mariadb_stream_survives_killed_processes_cut_links_and_a_restarted_server() {
    let Some(site) = Site::new(true) else {
        return;
    };
    faults(
        &site,
        &[
            "agent", "server", "broker", "link", "server", "agent", "broker", "link", "server",
            "agent",
        ],
    );
}
