//! Fault injection: a job of 200,000 rows runs while the agent is killed,
//! the broker is killed and the link between them is cut, at least ten
//! times, and the target still ends equal to the source.
//!
//! Topology (per scenario; names carry the scenario and the test's pid, all
//! removed on drop, also when a test fails):
//!
//! ```text
//!   idc-*  10.232.N.2/30  ── veth ──  10.232.N.1/30  cloud-*
//!   `ferry agent run`                 `ferry broker run` (QUIC + admin API)
//! ```
//!
//! The databases listen on the root namespace's loopback, which the
//! namespaces cannot reach: the agent reads and the broker writes through
//! the servers' unix sockets (sockets are not namespaced). The admin API is
//! driven with `ferry job …` run inside `cloud`.
//!
//! Faults, from a seeded RNG (the seed is printed; `FERRY_FAULT_SEED`
//! replays a run): SIGKILL of the agent, restarted after 0–2 s; SIGKILL of
//! the broker, restarted on the same SQLite state after 0–2 s; the agent's
//! veth end set down for 2–6 s; iptables dropping the QUIC traffic in the
//! agent's namespace for 2–6 s. Each fault waits until the job has moved
//! since the previous one, so every fault hits a job that is writing.
//!
//! Every scenario first runs the job fault-free (the baseline), then with
//! faults, and checks both targets against the source: same number of rows,
//! no duplicate and no missing `id` (full id sets compared), and every row's
//! content equal (a per-row digest over an identical text rendering, plus a
//! checksum over all rows). It prints the faults, the rows moved, and the
//! time the faults cost (faulted run minus baseline).
//!
//! Scenarios: MySQL → PostgreSQL and PostgreSQL → Parquet files, each with
//! `channel: 1` and `--compression none`, and with `channel: 4` and
//! `--compression zstd:1`. The tunnel is always encrypted (QUIC is TLS 1.3,
//! with mutual certificates), so every scenario runs with encryption on.
//!
//! For Parquet the target directory is also listed: any name that is not a
//! finished part (e.g. a hidden `.part-….inprogress-…` of a writer that was
//! killed) is reported.
//!
//! Pacing: the job is throttled (`setting.speed.record`) to about 25 s
//! without faults. The throttle does not make up for time a fault cost
//! (at most one second's worth of budget is saved up), so the extra time
//! of the faulted run is what the faults cost. The "rows written"
//! printed with each fault is the broker's progress counter, which counts
//! again from the job's state after a broker restart and drops when a split
//! is started again.
//!
//! Run (as root, with `ip`, `iptables`, and PostgreSQL and MariaDB on their
//! default unix sockets; `FERRY_TEST_PG_SOCKET`, a URL, and
//! `FERRY_TEST_MYSQL_SOCKET`, a socket path, override them; the test itself
//! prepares and checks the databases over TCP as the other tests do):
//!
//! ```text
//! cargo build -p ferry
//! cargo test -p ferry-tests --test faults -- --nocapture
//! ```
//!
//! Two scenarios run at once (a MySQL one beside a Parquet one), in
//! namespaces and subnets of their own.
//!
//! The PostgreSQL target has no key and is written with `writeMode:
//! insert`, so a row written twice shows as a duplicate.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use ferry_tests::db::{MyDb, PgSchema};
use ferry_tests::netns::{self, Netns};
use ferry_tests::proc::{ferry, ferry_bin, free_port, Proc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// Source rows.
const ROWS: u64 = 200_000;
/// Job-wide rows per second: the fault-free run takes about 33 s. Between
/// faults the job moves for a second or two, so ten faults land before it
/// ends (at 8,000 rows/s, 25 s, a run once ended after nine).
const RECORDS_PER_SEC: u64 = 6_000;
/// Faults per faulted run, at least.
const MIN_FAULTS: usize = 10;
/// Least time between the end of one fault and the start of the next.
const MIN_GAP: Duration = Duration::from_millis(1200);
/// A whole job, faults included, must end within this.
const JOB_DEADLINE: Duration = Duration::from_secs(170);
/// Two lanes: a MySQL scenario may run beside a Parquet one (they use
/// different namespaces and subnets); more at once would crowd two cores.
static LANES: [Mutex<()>; 2] = [Mutex::new(()), Mutex::new(())];

fn pg_socket_url() -> String {
    std::env::var("FERRY_TEST_PG_SOCKET")
        .unwrap_or_else(|_| "postgres://postgres@localhost/test?host=/var/run/postgresql".into())
}

fn mysql_socket_url(db: &str) -> String {
    let server = std::env::var("FERRY_TEST_MYSQL_SOCKET")
        .unwrap_or_else(|_| "/run/mysqld/mysqld.sock".into());
    format!("mysql://root@localhost/{db}?socket={server}")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    MysqlToPg,
    PgToParquet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillAgent,
    KillBroker,
    LinkDown,
    DropQuic,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::KillAgent => "kill agent",
            Fault::KillBroker => "kill broker",
            Fault::LinkDown => "link down",
            Fault::DropQuic => "drop QUIC",
        }
    }
}

struct Scenario {
    name: &'static str,
    /// Distinguishes namespaces, veth names and subnets of scenarios.
    n: u8,
    flow: Flow,
    channel: u32,
    compression: &'static str,
}

/// Source rows keyed by id, each rendered as text (or digested) the same
/// way on both sides.
type Rows = Vec<(i64, String)>;

enum SourceDb {
    My(MyDb),
    Pg(PgSchema),
}

/// Certificates, configs, the two namespaces and the processes in them.
/// Fields drop in order: processes first, then namespaces, then files.
struct Site {
    broker: Option<Proc>,
    agent: Option<Proc>,
    /// Output tails of processes killed so far (for failure messages).
    history: String,
    idc: Netns,
    cloud: Netns,
    veth: String,
    broker_ip: String,
    port: u16,
    admin: String,
    src: SourceDb,
    dst: Option<PgSchema>,
    tmp: tempfile::TempDir,
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn sh_ok(out: &Output) -> bool {
    out.status.success()
}

/// A veth pair with names we know (the idc end is set down by faults).
fn veth(idc: &Netns, cloud: &Netns, n: u8) -> (String, String, String) {
    let pid = std::process::id();
    let (a, b) = (format!("fx{n}a{pid}"), format!("fx{n}b{pid}"));
    let (ip_a, ip_b) = (format!("10.232.{n}.2"), format!("10.232.{n}.1"));
    let _ = Command::new("ip").args(["link", "del", &a]).output();
    netns::sh(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
    netns::sh(&["ip", "link", "set", &a, "netns", &idc.name]);
    netns::sh(&["ip", "link", "set", &b, "netns", &cloud.name]);
    idc.exec(&["ip", "addr", "add", &format!("{ip_a}/30"), "dev", &a]);
    cloud.exec(&["ip", "addr", "add", &format!("{ip_b}/30"), "dev", &b]);
    idc.exec(&["ip", "link", "set", &a, "up"]);
    cloud.exec(&["ip", "link", "set", &b, "up"]);
    (a, ip_a, ip_b)
}

impl Site {
    fn new(sc: &Scenario) -> Option<Self> {
        if let Err(why) = netns::available() {
            if ferry_tests::missing(&why) {
                return None;
            }
        }
        let src = match sc.flow {
            Flow::MysqlToPg => SourceDb::My(MyDb::new("ferry_fx_src")?),
            Flow::PgToParquet => SourceDb::Pg(PgSchema::new("ferry_fx_src")?),
        };
        let dst = match sc.flow {
            Flow::MysqlToPg => Some(PgSchema::new("ferry_fx_dst")?),
            Flow::PgToParquet => None,
        };
        let idc = Netns::new(&format!("fxidc{}", sc.n));
        let cloud = Netns::new(&format!("fxcloud{}", sc.n));
        let (veth, _agent_ip, broker_ip) = veth(&idc, &cloud, sc.n);
        let tmp = tempfile::tempdir().expect("temp dir");
        let site = Self {
            broker: None,
            agent: None,
            history: String::new(),
            idc,
            cloud,
            veth,
            broker_ip,
            port: free_port(),
            admin: format!("127.0.0.1:{}", free_port()),
            src,
            dst,
            tmp,
        };
        site.fill_source();
        site.write_configs();
        Some(site)
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn fill_source(&self) {
        match &self.src {
            // Text with non-ASCII, a decimal, microsecond timestamps, a nullable column.
            SourceDb::My(my) => {
                my.sql(&format!(
                    "CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR(80) NOT NULL, n DECIMAL(12,2) NOT NULL,
                                     ts DATETIME(6) NOT NULL, opt INT NULL);
                     INSERT INTO t SELECT seq, CONCAT(MD5(seq), IF(seq % 13 = 0, ' 東京 🚚', '')), seq / 7,
                            TIMESTAMP('2024-01-01') + INTERVAL seq SECOND + INTERVAL (seq % 1000) MICROSECOND,
                            IF(seq % 5 = 0, NULL, seq % 1000)
                       FROM seq_1_to_{ROWS};
                     ANALYZE TABLE t;"
                ));
            }
            SourceDb::Pg(pg) => {
                pg.sql(&format!(
                    "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL, n numeric(12,2) NOT NULL,
                                     ts timestamp NOT NULL, opt int);
                     INSERT INTO t SELECT g, md5(g::text) || CASE WHEN g % 13 = 0 THEN ' 東京 🚚' ELSE '' END,
                            g / 7.0, timestamp '2024-01-01' + g * interval '1 second' + (g % 1000) * interval '1 microsecond',
                            CASE WHEN g % 5 = 0 THEN NULL ELSE g % 1000 END
                       FROM generate_series(1, {ROWS}) g;
                     ANALYZE t;"
                ));
            }
        }
    }

    fn write_configs(&self) {
        let dir = self.dir();
        for args in [
            &["certs", "init"][..],
            &["certs", "server", "--san", &self.broker_ip],
            &["certs", "agent", "--id", "fx-agent", "--group", "idc-fx"],
        ] {
            let out = ferry(dir, args);
            assert!(sh_ok(&out), "ferry {args:?}: {out:?}");
        }
        std::fs::write(dir.join("admin.token"), "fault-injection-operator-token\n")
            .expect("write admin.token");
        // Short timeouts so a dead peer or a cut link is noticed in seconds.
        let transport = "[transport]\nkeep_alive_secs = 1\nidle_timeout_secs = 3\n";
        std::fs::write(
            dir.join("broker.toml"),
            format!(
                "listen = \"{ip}:{port}\"\nadmin_listen = \"{admin}\"\nadmin_token_file = \"admin.token\"\n\
                 [tls]\nca = \"pki/ca.pem\"\ncert = \"pki/broker.pem\"\nkey = \"pki/broker.key\"\ncrl = \"pki/crl.pem\"\n{transport}",
                ip = self.broker_ip,
                port = self.port,
                admin = self.admin,
            ),
        )
        .expect("write broker.toml");
        let (kind, url) = match &self.src {
            SourceDb::My(my) => ("mysql", mysql_socket_url(&my.name)),
            SourceDb::Pg(_) => ("postgres", pg_socket_url()),
        };
        std::fs::write(
            dir.join("agent.toml"),
            format!(
                "broker = \"{ip}:{port}\"\n[tls]\nca = \"pki/ca.pem\"\ncert = \"pki/agents/fx-agent.pem\"\nkey = \"pki/agents/fx-agent.key\"\n\
                 [reconnect]\ninitial_ms = 200\nmax_secs = 1\n{transport}\
                 [sources.src]\nkind = \"{kind}\"\nurl = \"{url}\"\n",
                ip = self.broker_ip,
                port = self.port,
            ),
        )
        .expect("write agent.toml");
    }

    /// Output tails of the broker and the agent (current and killed ones).
    fn tails(&self) -> String {
        let mut s = format!("---- earlier processes ----\n{}\n", tail(&self.history, 60));
        for p in [&self.broker, &self.agent].into_iter().flatten() {
            let _ = writeln!(s, "---- {} (tail) ----\n{}", p.name, tail(&p.output(), 40));
        }
        s
    }

    fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n{}", self.tails())
    }

    fn start_broker(&mut self) {
        let mut cmd = self.cloud.command(&ferry_bin());
        cmd.current_dir(self.dir())
            .args(["broker", "run", "-c", "broker.toml"]);
        self.broker = Some(Proc::spawn("broker", cmd));
        let up = self
            .broker
            .as_ref()
            .is_some_and(|b| b.wait_for("broker listening", Duration::from_secs(20)));
        if !up {
            self.fail("broker did not start listening within 20 s");
        }
    }

    fn start_agent(&mut self) {
        let mut cmd = self.idc.command(&ferry_bin());
        cmd.current_dir(self.dir())
            .args(["agent", "run", "-c", "agent.toml"]);
        self.agent = Some(Proc::spawn("agent", cmd));
    }

    /// SIGKILL (Proc's drop); keeps the output tail for failure messages.
    fn kill(&mut self, which: Fault) {
        let p = match which {
            Fault::KillAgent => self.agent.take(),
            _ => self.broker.take(),
        };
        if let Some(p) = p {
            let _ = writeln!(
                self.history,
                "---- {} pid {} (killed) ----\n{}",
                p.name,
                p.pid(),
                tail(&p.output(), 30)
            );
            drop(p);
        }
    }

    /// `ferry ARGS` inside the broker's namespace, where the admin API listens.
    fn cli(&self, args: &[&str]) -> Output {
        self.cloud
            .command(&ferry_bin())
            .current_dir(self.dir())
            .args(args)
            .output()
            .expect("run ferry in the cloud namespace")
    }

    fn job(&self, args: &[&str]) -> Output {
        let mut all = vec!["job", "--admin", &self.admin, "--token-file", "admin.token"];
        all.extend_from_slice(args);
        self.cli(&all)
    }

    fn wait_agent(&self) {
        let start = Instant::now();
        loop {
            let out = self.cli(&[
                "broker",
                "agents",
                "--admin",
                &self.admin,
                "--token-file",
                "admin.token",
            ]);
            if String::from_utf8_lossy(&out.stdout).contains("fx-agent") {
                return;
            }
            if start.elapsed() > Duration::from_secs(20) {
                self.fail(&format!("agent not connected within 20 s: {out:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn submit(&self, job_file: &str, compression: &str) -> String {
        let out = self.job(&["submit", "--detach", "--compression", compression, job_file]);
        if !sh_ok(&out) {
            self.fail(&format!("submit failed: {out:?}"));
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The job as the API shows it; `None` while the broker is down.
    fn status(&self, id: &str) -> Option<Value> {
        let out = self.job(&["status", id, "--json"]);
        if !sh_ok(&out) {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    fn wait_end(&self, id: &str, since: Instant) -> Value {
        loop {
            if let Some(s) = self.status(id) {
                if s["state"] != "running" {
                    return s;
                }
            }
            if since.elapsed() > JOB_DEADLINE {
                let s = self.status(id).unwrap_or(Value::Null);
                self.fail(&format!(
                    "job {id} did not end within {JOB_DEADLINE:?}: {s:#}"
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Writes the job file for one run into a fresh target; returns its name.
    fn job_file(&self, sc: &Scenario, run: &str) -> String {
        let reader = match &self.src {
            SourceDb::My(_) => "mysqlreader",
            SourceDb::Pg(_) => "postgresqlreader",
        };
        let table = match &self.src {
            SourceDb::My(_) => "t".to_string(),
            SourceDb::Pg(pg) => format!("{}.t", pg.name),
        };
        let writer = match &self.dst {
            Some(dst) => {
                // No key: a row written twice would show.
                dst.sql(&format!(
                    "CREATE TABLE t_{run} (id bigint, v text, n numeric(12,2), ts timestamp, opt int)"
                ));
                format!(
                    "  name: postgresqlwriter\n  parameter:\n    url: \"{url}\"\n    table: {d}.t_{run}\n    writeMode: insert\n",
                    url = pg_socket_url(),
                    d = dst.name
                )
            }
            None => format!(
                "  name: parquetwriter\n  parameter:\n    path: {}\n",
                self.out_dir(run).display()
            ),
        };
        let name = format!("job_{run}.yaml");
        std::fs::write(
            self.dir().join(&name),
            format!(
                "reader:\n  name: {reader}\n  parameter:\n    datasource: idc-fx/src\n    table: {table}\n    splitPk: id\n    fetchSize: 1000\n\
                 writer:\n{writer}\
                 setting:\n  speed: {{channel: {ch}, record: {RECORDS_PER_SEC}}}\n  retry: {{attempts: 30, backoffMs: 200}}\n",
                ch = sc.channel
            ),
        )
        .expect("write job file");
        name
    }

    fn out_dir(&self, run: &str) -> PathBuf {
        self.dir().join(format!("out_{run}"))
    }

    /// Source rows: MySQL as an md5 per row over a text rendering that
    /// PostgreSQL reproduces exactly; PostgreSQL as the rendering itself
    /// (decimal unscaled, timestamp in epoch microseconds), which the
    /// Parquet side reproduces from Arrow values.
    fn source_rows(&self) -> Rows {
        let text = match &self.src {
            SourceDb::My(my) => my.sql(
                "SELECT id, MD5(CONCAT_WS('|', id, v, n, DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f'), COALESCE(opt, '<null>')))
                   FROM t ORDER BY id",
            ),
            SourceDb::Pg(pg) => pg.sql(
                "SELECT id || E'\\t' || concat_ws('|', id, v, (n * 100)::bigint,
                        (extract(epoch FROM ts) * 1000000)::bigint, coalesce(opt::text, '<null>'))
                   FROM t ORDER BY id",
            ),
        };
        parse_rows(&text)
    }

    /// Target rows of one run, rendered as [`Site::source_rows`] does, and
    /// any problems with the target's files.
    fn target_rows(&self, run: &str) -> (Rows, Vec<String>) {
        match &self.dst {
            Some(dst) => {
                let text = dst.sql(&format!(
                    "SELECT id || E'\\t' || md5(concat_ws('|', id, v, n, to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US'), coalesce(opt::text, '<null>')))
                       FROM t_{run}"
                ));
                (parse_rows(&text), Vec::new())
            }
            None => parquet_rows(&self.out_dir(run)),
        }
    }
}

fn parse_rows(text: &str) -> Rows {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (id, rest) = l.split_once('\t').unwrap_or((l, ""));
            let id = id
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("bad id in {l:?}: {e}"));
            (id, rest.to_string())
        })
        .collect()
}

/// Every part in `dir` read back; names that are not finished parts
/// (hidden in-progress files, anything else) are reported as problems.
fn parquet_rows(dir: &Path) -> (Rows, Vec<String>) {
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(d) => d
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => {
            problems.push(format!("cannot list {}: {e}", dir.display()));
            return (rows, problems);
        }
    };
    names.sort();
    let mut parts = 0;
    for name in &names {
        if name.starts_with('.') || !name.ends_with(".parquet") {
            problems.push(format!("leftover file in the target directory: {name}"));
            continue;
        }
        parts += 1;
        let path = dir.join(name);
        let file = std::fs::File::open(&path).expect("open part");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .unwrap_or_else(|e| panic!("{name} is not a readable Parquet file: {e}"));
        for batch in reader {
            let batch = batch.unwrap_or_else(|e| panic!("reading {name}: {e}"));
            render_batch(&batch, &mut rows, name);
        }
    }
    eprintln!("    {parts} part(s) in {}", dir.display());
    (rows, problems)
}

fn column(batch: &RecordBatch, name: &str, to: &DataType) -> arrow_array::ArrayRef {
    let c = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", batch.schema()));
    arrow_cast::cast(c, to).unwrap_or_else(|e| panic!("column {name} as {to}: {e}"))
}

fn render_batch(batch: &RecordBatch, rows: &mut Rows, part: &str) {
    let id = column(batch, "id", &DataType::Int64);
    let v = column(batch, "v", &DataType::Utf8);
    let opt = column(batch, "opt", &DataType::Int64);
    let ts = column(
        batch,
        "ts",
        &DataType::Timestamp(TimeUnit::Microsecond, None),
    );
    let n = batch.column_by_name("n").expect("column n");
    assert!(
        matches!(n.data_type(), DataType::Decimal128(_, 2)),
        "{part}: n is {} (expected Decimal128 with scale 2)",
        n.data_type()
    );
    let (id, v, opt, ts, n) = (
        id.as_primitive::<Int64Type>(),
        v.as_string::<i32>(),
        opt.as_primitive::<Int64Type>(),
        ts.as_primitive::<TimestampMicrosecondType>(),
        n.as_primitive::<Decimal128Type>(),
    );
    for i in 0..batch.num_rows() {
        let opt = if opt.is_null(i) {
            "<null>".to_string()
        } else {
            opt.value(i).to_string()
        };
        rows.push((
            id.value(i),
            format!(
                "{}|{}|{}|{}|{}",
                id.value(i),
                v.value(i),
                n.value(i),
                ts.value(i),
                opt
            ),
        ));
    }
}

/// FNV-1a over the rows in id order: the content checksum printed for
/// each side.
fn checksum(rows: &Rows) -> String {
    let mut sorted: Vec<&(i64, String)> = rows.iter().collect();
    sorted.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (id, r) in sorted {
        for b in id.to_le_bytes().iter().chain(r.as_bytes()).chain(b"\n") {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Differences between source and target rows: duplicates, missing and
/// extra ids, rows whose content differs, and the counts and checksums.
fn compare(src: &Rows, dst: &Rows) -> Vec<String> {
    let mut problems = Vec::new();
    let want: BTreeMap<i64, &str> = src.iter().map(|(i, r)| (*i, r.as_str())).collect();
    let mut got: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for (i, r) in dst {
        got.entry(*i).or_default().push(r);
    }
    let dups: Vec<i64> = got
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(i, _)| *i)
        .collect();
    let missing: Vec<i64> = want
        .keys()
        .filter(|i| !got.contains_key(i))
        .copied()
        .collect();
    let extra: Vec<i64> = got
        .keys()
        .filter(|i| !want.contains_key(i))
        .copied()
        .collect();
    let differ: Vec<i64> = got
        .iter()
        .filter(|(i, v)| want.get(i).is_some_and(|w| v.iter().any(|r| r != w)))
        .map(|(i, _)| *i)
        .collect();
    let sample = |v: &[i64]| format!("{:?}", &v[..v.len().min(10)]);
    if dst.len() != src.len() {
        problems.push(format!(
            "row count: target {} != source {}",
            dst.len(),
            src.len()
        ));
    }
    if !dups.is_empty() {
        problems.push(format!(
            "{} duplicate ids, e.g. {}",
            dups.len(),
            sample(&dups)
        ));
    }
    if !missing.is_empty() {
        problems.push(format!(
            "{} missing ids, e.g. {}",
            missing.len(),
            sample(&missing)
        ));
    }
    if !extra.is_empty() {
        problems.push(format!(
            "{} unknown ids, e.g. {}",
            extra.len(),
            sample(&extra)
        ));
    }
    if !differ.is_empty() {
        problems.push(format!(
            "{} rows differ in content, e.g. id {} source {:?} target {:?}",
            differ.len(),
            differ[0],
            want[&differ[0]],
            got[&differ[0]]
        ));
    }
    let (cs, cd) = (checksum(src), checksum(dst));
    if cs != cd {
        problems.push(format!("checksum: target {cd} != source {cs}"));
    }
    problems
}

fn written(s: &Value) -> u64 {
    s["progress"]["records_written"].as_u64().unwrap_or(0)
}

/// The seed: `FERRY_FAULT_SEED`, or the clock.
fn base_seed() -> u64 {
    match std::env::var("FERRY_FAULT_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("FERRY_FAULT_SEED={s:?}: {e}")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

/// One injected fault, for the report.
struct Injected {
    at: Duration,
    kind: Fault,
    detail: String,
    written: u64,
}

impl Site {
    /// Injects one fault and repairs it (restart, link up, rules deleted).
    fn inject(&mut self, kind: Fault, rng: &mut StdRng) -> String {
        match kind {
            Fault::KillAgent | Fault::KillBroker => {
                let down = Duration::from_millis(rng.random_range(0..=2000));
                self.kill(kind);
                std::thread::sleep(down);
                if kind == Fault::KillAgent {
                    self.start_agent();
                } else {
                    self.start_broker();
                }
                format!("SIGKILL, restarted after {:.1} s", down.as_secs_f64())
            }
            Fault::LinkDown => {
                let down = Duration::from_millis(rng.random_range(2000..=6000));
                self.idc
                    .exec(&["ip", "link", "set", self.veth.as_str(), "down"]);
                std::thread::sleep(down);
                self.idc
                    .exec(&["ip", "link", "set", self.veth.as_str(), "up"]);
                format!("veth {} down for {:.1} s", self.veth, down.as_secs_f64())
            }
            Fault::DropQuic => {
                let down = Duration::from_millis(rng.random_range(2000..=6000));
                let port = self.port.to_string();
                let rules = [["OUTPUT", "--dport"], ["INPUT", "--sport"]];
                for [chain, dir] in rules {
                    self.idc.exec(&[
                        "iptables", "-I", chain, "-p", "udp", dir, &port, "-j", "DROP",
                    ]);
                }
                std::thread::sleep(down);
                for [chain, dir] in rules {
                    self.idc.exec(&[
                        "iptables", "-D", chain, "-p", "udp", dir, &port, "-j", "DROP",
                    ]);
                }
                format!(
                    "iptables DROP udp port {port} for {:.1} s",
                    down.as_secs_f64()
                )
            }
        }
    }

    /// Runs the job with faults: each one once the job has written more
    /// than it had when the previous fault was repaired, at least
    /// [`MIN_GAP`] later. Returns the faults and the final status.
    fn faulted_run(
        &mut self,
        id: &str,
        start: Instant,
        rng: &mut StdRng,
        plan: &[Fault],
    ) -> (Vec<Injected>, Value) {
        let mut done = Vec::new();
        let mut repaired = start;
        let mut mark: Option<u64> = None;
        for &kind in plan {
            let w = loop {
                if start.elapsed() > JOB_DEADLINE {
                    self.fail(&format!(
                        "no progress for the next fault within {JOB_DEADLINE:?} ({} injected)",
                        done.len()
                    ));
                }
                if let Some(s) = self.status(id) {
                    if s["state"] == "succeeded" {
                        self.fail(&format!(
                            "job succeeded after only {} of {} faults (make the job slower or the faults denser): {s:#}",
                            done.len(),
                            plan.len()
                        ));
                    }
                    if s["state"] != "running" {
                        self.fail(&format!(
                            "job {} after {} of {} faults: {}\n{s:#}",
                            s["state"],
                            done.len(),
                            plan.len(),
                            s["error"]
                        ));
                    }
                    let w = written(&s);
                    match mark {
                        None => mark = Some(w),
                        Some(m) if w > m && repaired.elapsed() >= MIN_GAP => break w,
                        _ => {}
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            let at = start.elapsed();
            let detail = self.inject(kind, rng);
            eprintln!(
                "    fault {:>2} at {:>6.1} s: {}: {detail} (rows written {w})",
                done.len() + 1,
                at.as_secs_f64(),
                kind.name()
            );
            done.push(Injected {
                at,
                kind,
                detail,
                written: w,
            });
            repaired = Instant::now();
            mark = None;
        }
        let end = self.wait_end(id, start);
        (done, end)
    }
}

/// The fault plan: every kind twice, the rest random, shuffled.
fn plan(rng: &mut StdRng) -> Vec<Fault> {
    let kinds = [
        Fault::KillAgent,
        Fault::KillBroker,
        Fault::LinkDown,
        Fault::DropQuic,
    ];
    let mut p: Vec<Fault> = kinds.iter().chain(kinds.iter()).copied().collect();
    while p.len() < MIN_FAULTS {
        p.push(kinds[rng.random_range(0..kinds.len())]);
    }
    p.shuffle(rng);
    p
}

fn retries(s: &Value) -> u64 {
    s["tasks"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| t["attempts"].as_u64().unwrap_or(1).saturating_sub(1))
                .sum()
        })
        .unwrap_or(0)
}

fn run_scenario(sc: &Scenario) {
    let lane = usize::from(sc.flow == Flow::PgToParquet);
    let _lane = LANES[lane].lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut site) = Site::new(sc) else {
        return;
    };
    let base = base_seed();
    // Each scenario its own stream of the same seed.
    let mut rng = StdRng::seed_from_u64(base.wrapping_add(u64::from(sc.n)));
    eprintln!(
        "== {}: channel {}, compression {}, TLS on, {}; FERRY_FAULT_SEED={base}",
        sc.name,
        sc.channel,
        sc.compression,
        if sc.flow == Flow::MysqlToPg {
            "PostgreSQL target without a key, writeMode insert"
        } else {
            "Parquet target"
        },
    );
    let src = site.source_rows();
    assert_eq!(src.len() as u64, ROWS, "source rows");
    eprintln!(
        "    source: {} rows, checksum {}",
        src.len(),
        checksum(&src)
    );

    site.start_broker();
    site.start_agent();
    site.wait_agent();

    // Baseline: the same job, no faults.
    let job = site.job_file(sc, "base");
    let t0 = Instant::now();
    let id = site.submit(&job, sc.compression);
    let base = site.wait_end(&id, t0);
    let base_time = t0.elapsed();
    if base["state"] != "succeeded" {
        site.fail(&format!("baseline job failed: {base:#}"));
    }
    let (rows, mut problems) = site.target_rows("base");
    problems.extend(compare(&src, &rows));
    if !problems.is_empty() {
        site.fail(&format!(
            "baseline target differs:\n  {}",
            problems.join("\n  ")
        ));
    }
    eprintln!(
        "    baseline: {} rows in {:.1} s, checksum {}",
        rows.len(),
        base_time.as_secs_f64(),
        checksum(&rows)
    );

    // The same job again into a fresh target, with faults.
    let faults = plan(&mut rng);
    let job = site.job_file(sc, "fault");
    let t0 = Instant::now();
    let id = site.submit(&job, sc.compression);
    let (done, end) = site.faulted_run(&id, t0, &mut rng, &faults);
    let fault_time = t0.elapsed();
    let mut by_kind: BTreeMap<Fault, usize> = BTreeMap::new();
    for f in &done {
        *by_kind.entry(f.kind).or_default() += 1;
    }
    eprintln!(
        "    faulted: ended {} in {:.1} s after {} faults {by_kind:?}; resumes {}, task retries {}",
        end["state"],
        fault_time.as_secs_f64(),
        done.len(),
        end["resumes"],
        retries(&end)
    );
    if end["state"] != "succeeded" {
        site.fail(&format!("faulted job did not succeed: {end:#}"));
    }
    let (rows, leftovers) = site.target_rows("fault");
    // Rows first, then the files: leftovers do not hide row problems.
    let mut problems = compare(&src, &rows);
    problems.extend(leftovers);
    eprintln!(
        "    {}: {} rows moved, checksum {} (source {}); baseline {:.1} s, faulted {:.1} s, extra {:.1} s for {} faults",
        sc.name,
        rows.len(),
        checksum(&rows),
        checksum(&src),
        base_time.as_secs_f64(),
        fault_time.as_secs_f64(),
        fault_time.as_secs_f64() - base_time.as_secs_f64(),
        done.len()
    );
    for f in &done {
        eprintln!(
            "      {:>6.1} s  {:<11} {} (at {} rows written)",
            f.at.as_secs_f64(),
            f.kind.name(),
            f.detail,
            f.written
        );
    }
    assert!(done.len() >= MIN_FAULTS);
    assert!(done.iter().all(|f| f.at < fault_time && f.written < ROWS));
    if !problems.is_empty() {
        site.fail(&format!(
            "after {} faults the target differs from the source:\n  {}",
            done.len(),
            problems.join("\n  ")
        ));
    }
}

#[test]
fn mysql_to_postgres_channel_1_uncompressed() {
    run_scenario(&Scenario {
        name: "mysql→pg ch1 none",
        n: 1,
        flow: Flow::MysqlToPg,
        channel: 1,
        compression: "none",
    });
}

#[test]
fn postgres_to_parquet_channel_1_uncompressed() {
    run_scenario(&Scenario {
        name: "pg→parquet ch1 none",
        n: 2,
        flow: Flow::PgToParquet,
        channel: 1,
        compression: "none",
    });
}

#[test]
fn mysql_to_postgres_channel_4_zstd() {
    run_scenario(&Scenario {
        name: "mysql→pg ch4 zstd:1",
        n: 3,
        flow: Flow::MysqlToPg,
        channel: 4,
        compression: "zstd:1",
    });
}

#[test]
fn postgres_to_parquet_channel_4_zstd() {
    run_scenario(&Scenario {
        name: "pg→parquet ch4 zstd:1",
        n: 4,
        flow: Flow::PgToParquet,
        channel: 4,
        compression: "zstd:1",
    });
}
