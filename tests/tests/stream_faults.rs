//! A change stream that outlives its processes and its link: `ferry broker run` and
//! `ferry agent run` as real processes, killed with SIGKILL while a writer changes the
//! source and started again, and the agent's link to the broker cut (a UDP relay that drops
//! everything for longer than the idle timeout). At the end the target equals the source:
//! no change lost, none applied twice (a replayed key change or delete would fail or leave
//! a difference). Each fault's recovery time is printed: from the fault until a change
//! made after it reached the target.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ferry_tests::db::{pg_url, PgSchema};
use ferry_tests::proc::{ferry, ferry_bin, free_port, Proc};

/// Transactions the writer has ready (more than it gets through: it is stopped once the
/// faults are over, so every fault strikes under load).
const TXNS: usize = 50_000;

struct Site {
    tmp: tempfile::TempDir,
    admin: String,
    /// The agent's path to the broker.
    link: ferry_tests::relay::SwitchRelay,
    src: PgSchema,
    dst: PgSchema,
}

impl Site {
    fn new() -> Option<Self> {
        let src = PgSchema::new("ferry_sf_src")?;
        if src.sql("SHOW wal_level").trim() != "logical" {
            ferry_tests::missing("PostgreSQL wal_level logical (.ci/cdc-servers.sh sets it)");
            return None;
        }
        let dst = PgSchema::new("ferry_sf_dst")?;
        src.sql("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, note text)");
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
        std::fs::write(
            dir.join("agent.toml"),
            format!(
                "broker = \"{relay}\"\n[tls]\nca = \"pki/ca.pem\"\ncert = \"pki/agents/sf-a.pem\"\nkey = \"pki/agents/sf-a.key\"\n\
                 [reconnect]\ninitial_ms = 200\nmax_secs = 1\n{transport}\
                 [sources.shop]\nkind = \"postgres\"\nurl = \"{}\"\nchanges = {{ slot = \"{}\" }}\n",
                pg_url(),
                src.name,
                relay = link.addr,
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("job.yaml"),
            format!(
                "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: idc-sf/shop\n    table: {s}.t\n\
                 writer:\n  name: postgresqlwriter\n  parameter:\n    url: {url}\n    table: {d}.t\n    createTable: true\n\
                 setting:\n  mode: stream\n  retry: {{backoffMs: 200}}\n",
                s = src.name,
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

    fn slot(&self) -> &str {
        &self.src.name
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

    /// Whether the agent's stream is attached to the slot.
    fn attached(&self) -> bool {
        self.src
            .sql(&format!(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}' AND active",
                self.slot()
            ))
            .trim()
            == "1"
    }

    /// Seconds until the stream is attached.
    fn wait_attached(&self) -> f64 {
        let start = Instant::now();
        while !self.attached() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
        }
        start.elapsed().as_secs_f64()
    }

    /// The highest key the writer inserted so far, in `s`.
    fn high(&self, s: &PgSchema) -> i64 {
        s.sql(&format!(
            "SELECT coalesce(max(id), 0) FROM {}.t WHERE id < 1000000",
            s.name
        ))
        .trim()
        .parse()
        .unwrap_or(0)
    }

    /// Seconds from `t` until the target holds a key above `high` (the source's highest
    /// when the fault struck): a change made after the fault arrived.
    fn recovered(&self, t: Instant, high: i64, what: &str) -> f64 {
        while self.high(&self.dst) <= high {
            assert!(
                t.elapsed() < Duration::from_secs(90),
                "the stream did not recover after {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        t.elapsed().as_secs_f64()
    }

    /// Count, distinct keys and a digest of every row.
    fn digest(&self, s: &PgSchema) -> String {
        s.sql(&format!(
            "SELECT count(*), count(DISTINCT id), md5(coalesce(string_agg(id || ':' || v || ':' || coalesce(note, '~'), ',' ORDER BY id), '')) FROM {}.t",
            s.name
        ))
        .trim()
        .to_string()
    }

    /// The writer: TXNS transactions of inserts, updates, key changes and deletes.
    fn writer(&self) -> Child {
        let mut script = format!("SET search_path = {};\n", self.src.name);
        for k in 1..=TXNS {
            script.push_str(&format!(
                "BEGIN; INSERT INTO t VALUES ({k}, 0, 'n{k}'); UPDATE t SET v = v + 1, note = note || '.' WHERE id = {h};",
                h = k / 2 + 1
            ));
            if k % 7 == 0 {
                script.push_str(&format!(" DELETE FROM t WHERE id = {};", k - 5));
            }
            if k % 11 == 0 {
                script.push_str(&format!(
                    " UPDATE t SET id = id + 1000000 WHERE id = {};",
                    k - 3
                ));
            }
            script.push_str(" COMMIT; SELECT pg_sleep(0.008);\n");
        }
        let path = self.dir().join("writer.sql");
        std::fs::write(&path, script).unwrap();
        Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null", "-f"])
            .arg(&path)
            .arg(pg_url())
            .spawn()
            .expect("psql runs")
    }
}

/// Drops the test's slot and publication, also when it fails.
struct Cleanup<'a>(&'a Site);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let slot = self.0.slot();
        for _ in 0..50 {
            let _ = self.0.src.sql(&format!(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '{slot}' AND active_pid IS NOT NULL"
            ));
            let _ = self.0.src.sql(&format!(
                "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots WHERE slot_name = '{slot}' AND NOT active"
            ));
            let left = self.0.src.sql(&format!(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"
            ));
            if left.trim() == "0" {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self
            .0
            .src
            .sql(&format!("DROP PUBLICATION IF EXISTS {slot}"));
    }
}

#[test]
fn a_stream_survives_killed_processes_and_cut_links() {
    let Some(site) = Site::new() else {
        return;
    };
    let _cleanup = Cleanup(&site);
    let mut broker = Some(site.broker());
    let mut agent = Some(site.agent());
    let out = site.job(&["submit", "--detach", "job.yaml"]);
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(site.wait_attached() < 60.0, "the stream never attached");
    let mut writer = site.writer();

    let mut faults = Vec::new();
    let plan = [
        "agent", "broker", "link", "agent", "broker", "link", "agent", "broker", "link", "agent",
    ];
    for (i, victim) in plan.iter().enumerate() {
        std::thread::sleep(Duration::from_millis(1200));
        let t = Instant::now();
        let high = site.high(&site.src);
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
            _ => {
                // Longer than the idle timeout: both sides give the connection up.
                site.link.close();
                std::thread::sleep(Duration::from_secs(4));
                site.link.open();
            }
        }
        let took = site.recovered(t, high, victim);
        faults.push(format!(
            "fault {}: {} — changes made after it reached the target {took:.1} s after it",
            i + 1,
            match *victim {
                "agent" => "SIGKILL the agent (started again after 0.3 s)",
                "broker" => "SIGKILL the broker (started again after 0.3 s)",
                _ => "link cut for 4 s",
            }
        ));
    }
    // Stopped mid-transaction: the open one is rolled back by the server, never applied.
    assert!(
        writer.try_wait().expect("the writer runs").is_none(),
        "the writer ended before the faults did"
    );
    writer.kill().expect("the writer stops");
    let _ = writer.wait();
    std::thread::sleep(Duration::from_millis(500));
    let want = site.digest(&site.src);
    let start = Instant::now();
    loop {
        if site.digest(&site.dst) == want {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the target did not catch up: source {want}, target {}\n{}",
            site.digest(&site.dst),
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
