//! A hostile broker against a real agent: crafted plan requests, task
//! assignments and splits sent over the real control stream of a real QUIC
//! tunnel to an agent with real PostgreSQL, MariaDB, SQLite and file
//! sources. The broker here is Ferry's own, used as an attacker would: its
//! session's outbox carries any message we write, its control tap shows
//! every answer the agent sends, and every data stream the agent opens is
//! read to the end and kept. Each attack must be refused by the agent with
//! a clear error, and nothing outside the agent's policy may be read,
//! written or created: checked in the answers, the data streams, the
//! databases and on disk.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Rig, RigSource};
use ferry_broker::data::DataStream;
use ferry_protocol::control::ControlMessage;
use ferry_protocol::data::Compression;
use ferry_tests::db::{pg_url, MyDb, PgSchema};
use serde_json::{json, Value};

/// A data stream the agent opened, read to its end.
#[derive(Debug, Clone, Default)]
struct Captured {
    rows: u64,
    /// Every batch, printed (to look for values that must not be there).
    text: String,
    ended: bool,
    error: Option<String>,
}

/// What the agent answered to a task.
#[derive(Debug)]
enum TaskOutcome {
    Failed(String),
    Streamed(Captured),
}

struct Hostile {
    rig: Rig,
    /// Every control message the agent sent, decoded.
    answers: Arc<Mutex<Vec<Value>>>,
    /// Data streams by task id.
    streams: Arc<Mutex<BTreeMap<String, Captured>>>,
}

impl Hostile {
    async fn start(sources: &[RigSource<'_>], agent_extra: &str) -> Self {
        let answers: Arc<Mutex<Vec<Value>>> = Arc::default();
        let seen = answers.clone();
        let streams: Arc<Mutex<BTreeMap<String, Captured>>> = Arc::default();
        let kept = streams.clone();
        let handler: ferry_broker::DataHandler = Arc::new(move |mut ds: DataStream| {
            let kept = kept.clone();
            tokio::spawn(async move {
                let task = ds.header().task_id.clone();
                let mut c = Captured::default();
                loop {
                    match ds.next_batch().await {
                        Ok(Some(b)) => {
                            c.rows += b.batch.num_rows() as u64;
                            c.text.push_str(&format!("{:?}\n", b.batch));
                            if ds.ack(b.seq, b.batch.num_rows() as u64).await.is_err() {
                                break;
                            }
                        }
                        Ok(None) => {
                            c.ended = true;
                            let _ = ds.finish();
                            break;
                        }
                        Err(e) => {
                            c.error = Some(e.to_string());
                            break;
                        }
                    }
                }
                kept.lock().unwrap().insert(task, c);
            });
        });
        let rig = Rig::start_full(
            sources,
            &BTreeMap::new(),
            Some(Arc::new(move |payload: &[u8]| {
                if let Ok(v) = serde_json::from_slice::<Value>(payload) {
                    seen.lock().unwrap().push(v);
                }
            })),
            handler,
            agent_extra,
        )
        .await;
        Self {
            rig,
            answers,
            streams,
        }
    }

    async fn send(&self, source: &str, msg: ControlMessage) {
        let handles = self.rig.broker.registry().offering(&self.rig.group, source);
        let agent = handles.first().expect("the agent is connected");
        agent.outbox.send(msg).await.expect("session is up");
    }

    /// Sends a plan request; the agent's `PlanReply` (schema, splits) or
    /// its `PlanFailed` message.
    async fn plan(
        &self,
        source: &str,
        spec: Value,
        options: Value,
        max_splits: u32,
    ) -> Result<Value, String> {
        let id = self.send_plan(source, &spec, options, max_splits).await;
        self.wait_plan(id, &spec).await
    }

    /// Sends a plan request; its id.
    async fn send_plan(&self, source: &str, spec: &Value, options: Value, max_splits: u32) -> u64 {
        let request_id: u64 = rand::random::<u64>() >> 1;
        self.send(
            source,
            ControlMessage::PlanRequest {
                request_id,
                datasource: source.into(),
                spec: Box::new(serde_json::from_value(spec.clone()).expect("a well-formed spec")),
                options: serde_json::from_value(options).expect("an options object"),
                max_splits,
            },
        )
        .await;
        request_id
    }

    /// The answer to plan request `request_id`.
    async fn wait_plan(&self, request_id: u64, spec: &Value) -> Result<Value, String> {
        let start = Instant::now();
        loop {
            let found = self
                .answers
                .lock()
                .unwrap()
                .iter()
                .find(|v| v["request_id"].as_u64() == Some(request_id))
                .cloned();
            match found {
                Some(v) if v["type"] == "plan_reply" => return Ok(v),
                Some(v) => return Err(v["message"].as_str().unwrap_or_default().to_string()),
                None => {}
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no answer to plan {spec}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a task; the agent's `TaskFailed` message or its data stream.
    async fn task(&self, source: &str, spec: Value, options: Value, split: Value) -> TaskOutcome {
        let task_id = self.send_task(source, &spec, options, &split).await;
        self.wait_task(&task_id, &spec, &split).await
    }

    /// Sends a verification task (`ferry verify`'s ask as raw JSON); what the agent did.
    async fn verify_task(
        &self,
        source: &str,
        spec: Value,
        split: Value,
        ask: Value,
    ) -> TaskOutcome {
        let task_id = format!("hostile-v-{:032x}", rand::random::<u128>());
        self.send(
            source,
            ControlMessage::TaskAssign {
                task_id: task_id.clone(),
                datasource: source.into(),
                spec: Box::new(serde_json::from_value(spec.clone()).expect("a well-formed spec")),
                options: Default::default(),
                split: Box::new(
                    serde_json::from_value(split.clone()).expect("a well-formed split"),
                ),
                compression: Compression::None,
                verify: Some(Box::new(
                    serde_json::from_value(ask).expect("a well-formed ask"),
                )),
            },
        )
        .await;
        self.wait_task(&task_id, &spec, &split).await
    }

    /// Sends a task; its id.
    async fn send_task(&self, source: &str, spec: &Value, options: Value, split: &Value) -> String {
        let task_id = format!("hostile-{:032x}", rand::random::<u128>());
        self.send(
            source,
            ControlMessage::TaskAssign {
                task_id: task_id.clone(),
                datasource: source.into(),
                spec: Box::new(serde_json::from_value(spec.clone()).expect("a well-formed spec")),
                options: serde_json::from_value(options).expect("an options object"),
                split: Box::new(
                    serde_json::from_value(split.clone()).expect("a well-formed split"),
                ),
                compression: Compression::None,
                verify: None,
            },
        )
        .await;
        task_id
    }

    /// Sends a change-stream task of `tables` (raw read specs); what the agent did.
    async fn stream_task(&self, source: &str, tables: Value, start: Option<Value>) -> TaskOutcome {
        let task_id = format!("hostile-c-{:032x}", rand::random::<u128>());
        self.send(
            source,
            ControlMessage::StreamAssign {
                task_id: task_id.clone(),
                datasource: source.into(),
                tables: serde_json::from_value(tables.clone()).expect("well-formed specs"),
                options: Default::default(),
                start: start.map(|p| serde_json::from_value(p).expect("a well-formed position")),
                compression: Compression::None,
            },
        )
        .await;
        // The agent opens a stream's data stream before the slot (which can wait), so a
        // refusal from there comes as a reset stream followed by its report.
        match self.wait_task(&task_id, &tables, &Value::Null).await {
            TaskOutcome::Streamed(c) if c.rows == 0 && !c.ended => {
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(10) {
                    if let Some(message) = self.failure(&task_id) {
                        return TaskOutcome::Failed(message);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                TaskOutcome::Streamed(c)
            }
            other => other,
        }
    }

    /// The agent's report of task `task_id` failing, if it sent one.
    fn failure(&self, task_id: &str) -> Option<String> {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .find(|v| v["type"] == "task_failed" && v["task_id"] == task_id)
            .map(|v| v["message"].as_str().unwrap_or_default().to_string())
    }

    /// What the agent did with task `task_id`.
    async fn wait_task(&self, task_id: &str, spec: &Value, split: &Value) -> TaskOutcome {
        let start = Instant::now();
        loop {
            if let Some(message) = self.failure(task_id) {
                return TaskOutcome::Failed(message);
            }
            if let Some(c) = self.streams.lock().unwrap().get(task_id) {
                return TaskOutcome::Streamed(c.clone());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no answer to task {spec} / {split}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the agent sent, as text (answers and data).
    fn everything(&self) -> String {
        let mut all: String = self
            .answers
            .lock()
            .unwrap()
            .iter()
            .map(|v| format!("{v}\n"))
            .collect();
        for c in self.streams.lock().unwrap().values() {
            all.push_str(&c.text);
        }
        all
    }
}

fn refused(what: &str, r: Result<Value, String>, needle: &str) -> String {
    match r {
        Ok(v) => panic!("{what}: the agent answered a plan: {v}"),
        Err(e) => {
            assert!(
                e.to_lowercase().contains(&needle.to_lowercase()),
                "{what}: refusal `{e}` does not say `{needle}`"
            );
            e
        }
    }
}

fn task_refused(what: &str, o: TaskOutcome, needle: &str) {
    match o {
        TaskOutcome::Failed(e) => assert!(
            e.to_lowercase().contains(&needle.to_lowercase()),
            "{what}: refusal `{e}` does not say `{needle}`"
        ),
        TaskOutcome::Streamed(c) => panic!("{what}: the agent streamed {} rows: {c:?}", c.rows),
    }
}

const MARKER: &str = "TOPSECRET-7f3a";

/// Relations of `schema` (to see that nothing was created).
fn pg_relations(s: &PgSchema) -> String {
    s.sql(&format!(
        "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{}' OR n.nspname LIKE 'pg_temp%'",
        s.name
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_source_refuses_a_hostile_broker() {
    let Some(s) = PgSchema::new("ferry_hostile") else {
        return;
    };
    s.sql(&format!(
        "CREATE TABLE orders (id int PRIMARY KEY, note text);
         INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 100) g;
         CREATE TABLE secret (id int, v text);
         INSERT INTO secret VALUES (1, '{MARKER}');
         CREATE SEQUENCE seq;
         CREATE TABLE shapes (id int PRIMARY KEY, p point);
         INSERT INTO shapes SELECT g, point(g, g) FROM generate_series(1, 5) g;"
    ));
    let relations = pg_relations(&s);
    let tables = format!("tables = [\"{0}.orders\", \"{0}.shapes\"]", s.name);
    let h = Hostile::start(
        &[RigSource {
            name: "pg",
            kind: "postgres",
            url: &pg_url(),
            extra: &tables,
        }],
        "[limits]\nmax_splits = 8\n",
    )
    .await;
    let orders = format!("{}.orders", s.name);
    let spec = |extra: Value| {
        let mut v = json!({"table": orders});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };

    // The harness works: an allowed read with a screened `where` streams
    // exactly the rows asked for.
    let plan = h
        .plan("pg", spec(json!({"where": "id > 90"})), json!({}), 1)
        .await
        .expect("an allowed plan");
    let splits: Vec<Value> = plan["splits"].as_array().unwrap().clone();
    let o = h
        .task(
            "pg",
            spec(json!({"where": "id > 90"})),
            json!({}),
            splits[0].clone(),
        )
        .await;
    match o {
        TaskOutcome::Streamed(c) => assert!(c.ended && c.rows == 10, "{c:?}"),
        other => panic!("allowed task: {other:?}"),
    }

    // A filter on a table with a column Ferry cannot carry (not read).
    let shapes =
        json!({"table": format!("{}.shapes", s.name), "columns": ["id"], "where": "id > 3"});
    let plan = h
        .plan("pg", shapes.clone(), json!({}), 1)
        .await
        .expect("a filter beside an unread point column");
    let splits: Vec<Value> = plan["splits"].as_array().unwrap().clone();
    match h.task("pg", shapes, json!({}), splits[0].clone()).await {
        TaskOutcome::Streamed(c) => assert!(c.ended && c.rows == 2, "{c:?}"),
        other => panic!("shapes: {other:?}"),
    }

    // `where` as SQL text: every one refused, naming the construct.
    for (w, needle) in [
        ("false) UNION ALL (TABLE secret", "where"),
        (
            "table_to_xml('secret', true, false, '')::text::int > 0",
            "table_to_xml",
        ),
        (
            "query_to_xml(E'\\x73elect * from pg_authid', true, false, '') is not null",
            "query_to_xml",
        ),
        ("pg_read_file('/etc/passwd') is not null", "pg_read_file"),
        ("setval('seq', 100) > 0", "setval"),
        ("lo_from_bytea(0, 'x') > 0", "lo_from_bytea"),
        ("id in (select id from secret)", "subquer"),
        ("id > 0; drop table orders", "where"),
        ("note = current_setting('is_superuser')", "current_setting"),
        ("secret.v is not null", "where"),
    ] {
        refused(
            w,
            h.plan("pg", spec(json!({"where": w})), json!({}), 1).await,
            needle,
        );
        // A task straight away, with no plan before it, is refused the same.
        task_refused(
            w,
            h.task(
                "pg",
                spec(json!({"where": w})),
                json!({}),
                json!({"index":0,"total":1,"bounds":{"kind":"all"}}),
            )
            .await,
            needle,
        );
    }
    // querySql in any form, tables outside the policy, catalogs.
    for (sp, needle) in [
        (json!({"querySql": " "}), "querySql"),
        (json!({"querySql": ""}), "querySql"),
        (json!({"table": orders, "querySql": " "}), "querySql"),
        (
            json!({"querySql": "select 1 as id; DROP TABLE orders; COMMIT"}),
            "querySql",
        ),
        (
            json!({"table": format!("{}.secret", s.name)}),
            "does not allow reading",
        ),
        (json!({"table": "pg_authid"}), "system catalog"),
        (json!({"table": "pg_catalog.pg_authid"}), "system catalog"),
        (
            json!({"table": "information_schema.tables"}),
            "system catalog",
        ),
        (
            json!({"table": orders, "fetchSize": 100_000_000_000u64}),
            "fetchSize",
        ),
        (
            json!({"table": orders, "columns": ["id", "(select v from secret)"]}),
            "column",
        ),
    ] {
        refused(
            &sp.to_string(),
            h.plan("pg", sp.clone(), json!({}), 1).await,
            needle,
        );
    }
    // A split naming another column than the table's, or a file.
    for (split, needle) in [
        (
            json!({"index":0,"total":1,"bounds":{"kind":"int_range","column":"v\" from secret --","lo":null,"hi":null}}),
            "not a column",
        ),
        (
            json!({"index":0,"total":1,"bounds":{"kind":"file","path":"etc/passwd"}}),
            "not a file source",
        ),
    ] {
        task_refused(
            &split.to_string(),
            h.task("pg", spec(json!({})), json!({}), split).await,
            needle,
        );
    }
    // A split ordered by something that is not a column, or of another
    // table than the read's.
    for (split, needle) in [
        (
            json!({"index":0,"total":1,"bounds":{"kind":"all"},
                   "order":{"columns":["note\" from secret --"],"unique":true}}),
            "not a column",
        ),
        (
            json!({"index":0,"total":1,"bounds":{"kind":"all"},
                   "table":{"source":"pg","schema":s.name,"name":"secret"}}),
            "another table",
        ),
    ] {
        task_refused(
            &split.to_string(),
            h.task("pg", spec(json!({})), json!({}), split).await,
            needle,
        );
    }
    // A resume position is data, never SQL: text that would close a quoted
    // literal (with or without backslash escapes) is compared as a value,
    // and exactly the rows after it in the column's collation arrive.
    for text in [
        "n9' UNION SELECT 0, v FROM secret --",
        "n9\\' UNION SELECT 0, v FROM secret --",
        "n5'); SELECT pg_sleep(30); --",
    ] {
        let after: u64 = s
            .sql(&format!(
                "SELECT count(*) FROM orders WHERE note > $q${text}$q$"
            ))
            .trim()
            .parse()
            .unwrap();
        assert!(after < 100, "{text}: {after}");
        let split = json!({"index":0,"total":1,"bounds":{"kind":"all"},
            "order":{"columns":["note"],"unique":true},"resume":[{"text": text}]});
        match h.task("pg", spec(json!({})), json!({}), split).await {
            TaskOutcome::Streamed(c) => assert!(c.ended && c.rows == after, "{text}: {c:?}"),
            other => panic!("{text}: {other:?}"),
        }
    }
    // Verification asks (`ferry verify`) go through the same checks as reads: a table outside
    // the policy, a filter, a split, a key column that is not read are refused; an allowed ask
    // sends fingerprints, and values only of what the read may read.
    let all = json!({"index":0,"total":1,"bounds":{"kind":"all"}});
    let buckets = json!({"key": ["id"], "buckets": 16, "pass": {"pass": "buckets"}});
    let pg_buckets = json!({"key": ["id"], "buckets": 16,
        "scheme": {"postgres": ["int", "text"]}, "pass": {"pass": "buckets"}});
    for (sp, split, ask, needle) in [
        (
            json!({"table": format!("{}.secret", s.name)}),
            all.clone(),
            json!({"key": [], "buckets": 16, "pass": {"pass": "rows", "buckets": [0, 1, 2, 3]}}),
            "does not allow reading",
        ),
        (
            spec(json!({"where": "id in (select id from secret)"})),
            all.clone(),
            buckets.clone(),
            "subquer",
        ),
        (
            spec(json!({"columns": ["id"]})),
            all.clone(),
            json!({"key": ["note"], "buckets": 16, "pass": {"pass": "buckets"}}),
            "no column `note`",
        ),
        (
            spec(json!({})),
            json!({"index":0,"total":1,"bounds":{"kind":"int_range","column":"v\" from secret --","lo":null,"hi":null}}),
            buckets.clone(),
            "not a column",
        ),
        // The PostgreSQL scheme, which the agent answers with SQL of its own: the same
        // checks first, then its own bounds (the message's own, such as a power of two of
        // buckets, are refused on decode: `ferry-protocol`'s tests).
        (
            spec(json!({"where": "id in (select id from secret)"})),
            all.clone(),
            pg_buckets.clone(),
            "subquer",
        ),
        (
            spec(json!({})),
            all.clone(),
            json!({"key": ["id) FROM secret --"], "buckets": 16,
                   "scheme": {"postgres": ["int", "text"]}, "pass": {"pass": "buckets"}}),
            "no column",
        ),
        (
            spec(json!({})),
            all.clone(),
            json!({"key": ["id"], "buckets": 16,
                   "scheme": {"postgres": ["int"]}, "pass": {"pass": "buckets"}}),
            "1 hash kinds for a read of 2 columns",
        ),
    ] {
        task_refused(
            &format!("verify {sp} {ask}"),
            h.verify_task("pg", sp, split, ask).await,
            needle,
        );
    }
    // Allowed: fingerprints only, whether hashed here or summed by the server; kinds that are
    // not the table's own are hashed by the agent over its read rows instead of becoming SQL.
    for ask in [
        buckets,
        pg_buckets,
        json!({"key": ["id"], "buckets": 16,
               "scheme": {"postgres": ["json", "bytes"]}, "pass": {"pass": "buckets"}}),
    ] {
        match h
            .verify_task("pg", spec(json!({})), all.clone(), ask.clone())
            .await
        {
            TaskOutcome::Streamed(c) => {
                assert!(c.ended && (1..=16).contains(&c.rows), "{ask}: {c:?}");
                assert!(!c.text.contains("n1"), "fingerprints only: {c:?}");
            }
            other => panic!("allowed verification {ask}: {other:?}"),
        }
    }
    // The key hashes of ids 1..=100, as any side computes them.
    let ids = arrow_array::RecordBatch::try_from_iter([(
        "id",
        Arc::new(arrow_array::Int32Array::from_iter_values(1..=100)) as arrow_array::ArrayRef,
    )])
    .unwrap();
    let rows_ask: ferry_model::VerifyAsk = serde_json::from_value(json!({"key": ["id"],
        "buckets": 1, "pass": {"pass": "rows", "buckets": [0]}}))
    .unwrap();
    let mut d = ferry_fingerprint::Digester::new(&ids.schema(), &rows_ask).unwrap();
    assert!(d.feed(&ids).unwrap().is_none());
    let keys: Vec<u64> = ferry_fingerprint::read_rows(&d.finish().unwrap().unwrap(), 1)
        .unwrap()
        .iter()
        .map(|r| r.key_hash)
        .collect();
    let values = json!({"key": ["id"], "buckets": 16, "pass": {"pass": "values", "keys": keys}});
    match h
        .verify_task("pg", spec(json!({"columns": ["id"]})), all, values)
        .await
    {
        TaskOutcome::Streamed(c) => {
            assert!(c.ended && c.rows == 100, "{c:?}");
            assert!(!c.text.contains("n1"), "only the columns read: {c:?}");
        }
        other => panic!("values of a narrowed read: {other:?}"),
    }

    // Numbers: a million splits asked for, the agent's cap given.
    let plan = h
        .plan("pg", spec(json!({"splitPk": "id"})), json!({}), 1_000_000)
        .await
        .expect("a capped plan");
    let splits: Vec<Value> = plan["splits"].as_array().unwrap().clone();
    assert!(splits.len() <= 9, "{} splits", splits.len());

    // The agent told its operator that its login is a superuser.
    assert!(
        common::wait_log(
            &["data source `pg`", "is a superuser"],
            Duration::from_secs(10)
        )
        .await,
        "no warning about the superuser login"
    );

    // Nothing was read, written or created.
    let all = h.everything();
    assert!(
        !all.contains(MARKER),
        "a secret value crossed the tunnel: {all}"
    );
    assert_eq!(s.sql("SELECT last_value FROM seq").trim(), "1");
    assert_eq!(s.sql("SELECT count(*) FROM orders").trim(), "100");
    assert_eq!(pg_relations(&s), relations);
    h.rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_source_refuses_a_hostile_broker() {
    let Some(db) = MyDb::new("ferry_hostile") else {
        return;
    };
    db.sql(&format!(
        "CREATE TABLE orders (id int PRIMARY KEY, note text);
         INSERT INTO orders VALUES (1,'a'),(2,'b'),(3,'c');
         CREATE TABLE secret (id int, v text);
         INSERT INTO secret VALUES (1, '{MARKER}');"
    ));
    let outfile = format!("/tmp/ferry-hostile-{:016x}", rand::random::<u64>());
    let h = Hostile::start(
        &[RigSource {
            name: "my",
            kind: "mysql",
            url: &db.url(),
            extra: "tables = [\"orders\"]",
        }],
        "",
    )
    .await;
    let spec = |w: &str| json!({"table": "orders", "where": w});
    let ok = h
        .plan("my", spec("id >= 2"), json!({}), 1)
        .await
        .expect("allowed");
    let splits: Vec<Value> = ok["splits"].as_array().unwrap().clone();
    match h
        .task("my", spec("id >= 2"), json!({}), splits[0].clone())
        .await
    {
        TaskOutcome::Streamed(c) => assert!(c.ended && c.rows == 2, "{c:?}"),
        other => panic!("allowed task: {other:?}"),
    }
    for (w, needle) in [
        ("load_file('/etc/passwd') is not null", "load_file"),
        ("id > 0 /*!50000 UNION SELECT id, v FROM secret */", "/*!"),
        (&format!("1) INTO OUTFILE '{outfile}' #") as &str, "where"),
        ("id = 1 UNION SELECT id, v FROM secret", "where"),
        ("sleep(1) = 0", "sleep"),
        ("@@version is not null", "where"),
    ] {
        let r = h.plan("my", spec(w), json!({}), 1).await;
        // A string the screen could accept must still be a plain filter:
        // here every one of these is refused.
        refused(w, r, needle);
    }
    // A backslash-quoted string is one string to MySQL and to the screen:
    // a plain comparison that matches nothing, not an injection.
    let w = "note = 'a\\' or 1=1 -- '";
    let ok = h
        .plan("my", spec(w), json!({}), 1)
        .await
        .expect("a plain filter");
    let splits: Vec<Value> = ok["splits"].as_array().unwrap().clone();
    match h.task("my", spec(w), json!({}), splits[0].clone()).await {
        TaskOutcome::Streamed(c) => assert!(c.ended && c.rows == 0, "{c:?}"),
        other => panic!("{w}: {other:?}"),
    }
    for (sp, needle) in [
        (json!({"querySql": " "}), "querySql"),
        (
            json!({"querySql": "select 1 as id; DROP TABLE orders; COMMIT"}),
            "querySql",
        ),
        (json!({"table": "secret"}), "does not allow reading"),
        (
            json!({"table": "mysql.user"}),
            "outside the source's database",
        ),
        (
            json!({"table": "information_schema.user_privileges"}),
            "outside",
        ),
    ] {
        refused(
            &sp.to_string(),
            h.plan("my", sp.clone(), json!({}), 1).await,
            needle,
        );
    }
    assert!(
        !std::path::Path::new(&outfile).exists(),
        "mysqld wrote {outfile}"
    );
    assert!(!h.everything().contains(MARKER));
    assert_eq!(db.sql("SELECT count(*) FROM orders").trim(), "3");
    h.rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_and_file_sources_refuse_a_hostile_broker() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(format!(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT); INSERT INTO orders VALUES (1,'a'),(2,'b');
             CREATE TABLE secret (v TEXT); INSERT INTO secret VALUES ('{MARKER}');"
        ))
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        _ => {
            if ferry_tests::missing("the sqlite3 CLI") {
                return;
            }
        }
    }
    // A file source's directory, with a symlink leaving it, a secret
    // beside it, and the agent's own key elsewhere on disk.
    let root = dir.path().join("logs");
    std::fs::create_dir_all(root.join("day")).unwrap();
    std::fs::write(root.join("day/a.csv"), "id,v\n1,x\n").unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("s.csv"), format!("id,v\n1,{MARKER}\n")).unwrap();
    std::os::unix::fs::symlink(outside.join("s.csv"), root.join("day/link.csv")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();

    let sqlite_url = format!("sqlite://{}", db.display());
    let root_url = root.display().to_string();
    let h = Hostile::start(
        &[
            RigSource {
                name: "lite",
                kind: "sqlite",
                url: &sqlite_url,
                extra: "tables = [\"orders\"]",
            },
            RigSource {
                name: "logs",
                kind: "file",
                url: &root_url,
                extra: "options = { format = \"csv\" }",
            },
        ],
        "",
    )
    .await;
    for (sp, needle) in [
        (json!({"querySql": " "}), "querySql"),
        (json!({"table": "sqlite_master"}), "system catalog"),
        (json!({"table": "secret"}), "does not allow reading"),
        (
            json!({"table": "orders", "where": "id = 1) union select * from secret --"}),
            "where",
        ),
    ] {
        refused(
            &sp.to_string(),
            h.plan("lite", sp.clone(), json!({}), 1).await,
            needle,
        );
    }

    // The file source: paths travel relative, the symlinks are not listed.
    let plan = h
        .plan("logs", json!({}), json!({}), 1)
        .await
        .expect("a file plan");
    let splits = plan["splits"].to_string();
    assert!(splits.contains("\"day/a.csv\""), "{splits}");
    assert!(
        !splits.contains(root_url.trim_start_matches('/')),
        "absolute path in {splits}"
    );
    assert!(
        !splits.contains("link.csv") && !splits.contains("escape"),
        "{splits}"
    );
    // The agent's own private key, by its absolute path.
    let key = std::fs::read_dir(h.rig.setup.pki.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&format!("agent-{}", h.rig.agent_id)) && name.ends_with(".key")
        })
        .expect("the agent's key file")
        .display()
        .to_string();
    for (path, options, needle) in [
        ("etc/passwd", json!({}), "not one this agent listed"),
        ("../outside/s.csv", json!({}), "refused"),
        (
            key.trim_start_matches('/'),
            json!({}),
            "not one this agent listed",
        ),
        (
            &*format!("/{}", key.trim_start_matches('/')),
            json!({}),
            "refused",
        ),
        ("day/link.csv", json!({}), "not one this agent listed"),
        ("escape/s.csv", json!({}), "not one this agent listed"),
        ("s.csv", json!({"path": "escape"}), "outside"),
    ] {
        let split = json!({"index":0,"total":1,"bounds":{"kind":"file","path":path}});
        task_refused(
            path,
            h.task("logs", json!({}), options, split).await,
            needle,
        );
    }
    // A job's `path` leading through the symlink is refused at the plan.
    refused(
        "path through a symlink",
        h.plan("logs", json!({}), json!({"path": "escape/s.csv"}), 1)
            .await,
        "outside",
    );
    // The listed file itself reads.
    let split = json!({"index":0,"total":1,"bounds":{"kind":"file","path":"day/a.csv"}});
    match h.task("logs", json!({}), json!({}), split).await {
        TaskOutcome::Streamed(c) => assert!(c.ended && c.rows == 1, "{c:?}"),
        other => panic!("listed file: {other:?}"),
    }
    let all = h.everything();
    assert!(!all.contains(MARKER), "{all}");
    // Nothing the agent sent says where its sources are on its disk.
    for place in [
        root_url.trim_start_matches('/'),
        db.to_str().unwrap().trim_start_matches('/'),
    ] {
        assert!(!all.contains(place), "`{place}` crossed the tunnel: {all}");
    }
    h.rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_agent_caps_what_one_broker_may_ask() {
    let Some(s) = PgSchema::new("ferry_hostile_caps") else {
        return;
    };
    s.sql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10);");
    let h = Hostile::start(
        &[RigSource {
            name: "pg",
            kind: "postgres",
            url: &pg_url(),
            extra: "",
        }],
        "[limits]\nmax_fetch_size = 1000\nmax_tasks = 2\nmax_plans = 2\n",
    )
    .await;
    let t = format!("{}.t", s.name);
    refused(
        "fetchSize",
        h.plan("pg", json!({"table": t, "fetchSize": 1001}), json!({}), 1)
            .await,
        "max_fetch_size",
    );
    // The agent is still there and answers (it did not abort).
    h.plan("pg", json!({"table": t, "fetchSize": 1000}), json!({}), 1)
        .await
        .expect("plan after a refused one");
    // A burst of plans: some are refused at once with the cap named.
    let mut refusals = 0;
    let spec = json!({"table": t, "fetchSize": 1000});
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(h.send_plan("pg", &spec, json!({}), 1).await);
    }
    for id in ids {
        if let Err(e) = h.wait_plan(id, &spec).await {
            assert!(e.contains("max_plans"), "{e}");
            refusals += 1;
        }
    }
    assert!(refusals > 0, "twelve plans at once, none refused");
    // A burst of tasks: some refused at once, the others read their split.
    let split = json!({"index":0,"total":1,"bounds":{"kind":"all"}});
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(h.send_task("pg", &spec, json!({}), &split).await);
    }
    let (mut refused_tasks, mut read) = (0, 0);
    for id in ids {
        match h.wait_task(&id, &spec, &split).await {
            TaskOutcome::Failed(e) => {
                assert!(e.contains("max_tasks"), "{e}");
                refused_tasks += 1;
            }
            TaskOutcome::Streamed(c) => {
                assert_eq!(c.rows, 10, "{c:?}");
                read += 1;
            }
        }
    }
    assert!(
        refused_tasks > 0 && read > 0,
        "{refused_tasks} refused, {read} read"
    );
    h.rig.stop().await;
}

/// The same attacks as job parameters through the admin API: a `where` or
/// `querySql` the agent would refuse, and numbers over the caps, are
/// refused when the job is submitted (400, naming the field); a table
/// outside the agent's policy fails the job at its plan, on the agent,
/// before a row is read or the target touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attacks_through_the_admin_api_are_refused_before_anything_runs() {
    let Some(src) = PgSchema::new("ferry_hostile_api_src") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_hostile_api_dst") else {
        return;
    };
    src.sql(&format!(
        "CREATE TABLE orders (id int PRIMARY KEY, note text);
         INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 50) g;
         CREATE TABLE secret (id int, v text);
         INSERT INTO secret VALUES (1, '{MARKER}');"
    ));
    let tables = format!("tables = [\"{}.orders\"]", src.name);
    let rig = Rig::start(&[RigSource {
        name: "pg",
        kind: "postgres",
        url: &pg_url(),
        extra: &tables,
    }])
    .await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", rig.broker.admin_addr());
    let job = |reader_extra: &str, table: &str, setting: &str| {
        format!(
            "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: {}\n    table: {table}\n{reader_extra}\
             writer:\n  name: postgresqlwriter\n  parameter:\n    url: {}\n    table: {}.t\n    createTable: true\n\
             setting:\n  speed: {{channel: {setting}}}\n",
            rig.datasource("pg"),
            pg_url(),
            dst.name
        )
    };
    let orders = format!("{}.orders", src.name);
    let submit = |text: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let resp = http
                .post(format!("{base}/v1/jobs"))
                .json(&json!({ "job": text }))
                .send()
                .await
                .expect("POST /v1/jobs");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for (reader_extra, setting, field, needle) in [
        (
            "    where: \"false) UNION ALL (TABLE secret\"\n",
            "1",
            "where",
            "where",
        ),
        (
            "    where: \"pg_read_file('/etc/passwd') is not null\"\n",
            "1",
            "where",
            "pg_read_file",
        ),
        (
            "    where: \"table_to_xml('secret', true, false, '')::text::int > 0\"\n",
            "1",
            "where",
            "table_to_xml",
        ),
        (
            "    where: \"id > 0; DROP TABLE orders\"\n",
            "1",
            "where",
            "where",
        ),
        (
            "    where: \"id > 0 /*!50000 UNION SELECT 1 */\"\n",
            "1",
            "where",
            "where",
        ),
        ("    fetchSize: 100000000000\n", "1", "fetchSize", "at most"),
        ("", "1000000", "channel", "at most"),
    ] {
        let (status, body) = submit(job(reader_extra, &orders, setting)).await;
        let text = body.to_string();
        assert_eq!(status, 400, "{reader_extra}{setting}: {text}");
        assert!(
            text.contains(field) && text.contains(needle),
            "{reader_extra}: {text}"
        );
    }
    // querySql instead of a table, blank or with a second statement.
    for q in ["\" \"", "\"select 1 as id; DROP TABLE orders; COMMIT\""] {
        let text = job("", &orders, "1").replace(
            &format!("    table: {orders}\n"),
            &format!("    querySql: {q}\n"),
        );
        let (status, body) = submit(text).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(body.to_string().contains("querySql"), "{q}: {body}");
    }
    // Tables the broker cannot judge reach the agent, which refuses the plan.
    for (table, needle) in [
        (format!("{}.secret", src.name), "does not allow reading"),
        ("pg_catalog.pg_authid".to_string(), "system catalog"),
    ] {
        let (status, body) = submit(job("", &table, "1")).await;
        assert_eq!(status, 201, "{table}: {body}");
        let id = body["id"].as_str().unwrap().to_string();
        let s = rig.wait(&id, Duration::from_secs(60)).await;
        assert_eq!(
            s.state,
            ferry_broker::jobs::JobState::Failed,
            "{table}: {s:?}"
        );
        let why = format!("{s:?}");
        assert!(why.contains(needle), "{table}: {why}");
        assert!(!why.contains(MARKER));
    }
    // Nothing reached the target: not even the table was created.
    assert_eq!(
        dst.sql(&format!(
            "SELECT count(*) FROM pg_tables WHERE schemaname = '{}' AND tablename = 't'",
            dst.name
        ))
        .trim(),
        "0"
    );
    assert_eq!(src.sql("SELECT count(*) FROM orders").trim(), "50");

    // A plain filter with a `${var}` still works end to end: substituted on
    // the broker, screened on both sides, re-rendered on the agent.
    let text = job(
        "    where: \"id > ${lo} AND note LIKE 'n%'\"\n",
        &orders,
        "2",
    )
    .replace(
        &format!("{}.t\n", dst.name),
        &format!("{}.good\n", dst.name),
    );
    let resp = http
        .post(format!("{base}/v1/jobs"))
        .json(&json!({ "job": text, "vars": {"lo": "45"} }))
        .send()
        .await
        .expect("POST /v1/jobs");
    assert_eq!(resp.status().as_u16(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = rig.wait(&id, Duration::from_secs(60)).await;
    assert_eq!(s.state, ferry_broker::jobs::JobState::Succeeded, "{s:?}");
    assert_eq!(
        dst.sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM good")
            .trim(),
        "46,47,48,49,50"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn change_streams_refuse_a_hostile_broker() {
    let Some(s) = PgSchema::new("ferry_hostile_cdc") else {
        return;
    };
    if s.sql("SHOW wal_level").trim() != "logical" {
        ferry_tests::missing("PostgreSQL wal_level logical (.ci/cdc-servers.sh sets it)");
        return;
    }
    s.sql(&format!(
        "CREATE TABLE orders (id int PRIMARY KEY, note text);
         CREATE TABLE secret (id int PRIMARY KEY, v text);
         INSERT INTO secret VALUES (1, '{MARKER}');"
    ));
    let slot = s.name.clone();
    let h = Hostile::start(
        &[
            RigSource {
                name: "pg",
                kind: "postgres",
                url: &pg_url(),
                extra: &format!(
                    "tables = [\"{0}.orders\"]\nchanges = {{ slot = \"{0}\" }}",
                    s.name
                ),
            },
            RigSource {
                name: "plain",
                kind: "postgres",
                url: &pg_url(),
                extra: &format!("tables = [\"{}.orders\"]", s.name),
            },
        ],
        "",
    )
    .await;
    let t = |table: &str| json!({ "table": format!("{}.{table}", s.name) });
    let attacks = [
        ("an unlisted table", json!([t("secret")]), "pg", "not"),
        (
            "a listed and an unlisted table",
            json!([t("orders"), t("secret")]),
            "pg",
            "not",
        ),
        (
            "a system catalog",
            json!([{ "table": "pg_catalog.pg_authid" }]),
            "pg",
            "system catalog",
        ),
        (
            "a where clause",
            json!([{ "table": format!("{}.orders", s.name), "where": "id > 0" }]),
            "pg",
            "whole tables",
        ),
        (
            "querySql",
            json!([{ "querySql": format!("SELECT * FROM {}.secret", s.name) }]),
            "pg",
            "whole tables",
        ),
        (
            "a source without [changes]",
            json!([t("orders")]),
            "plain",
            "does not allow change streams",
        ),
    ];
    for (what, tables, source, needle) in attacks {
        task_refused(what, h.stream_task(source, tables, None).await, needle);
    }
    // Nothing was made in the source by a refused stream: no publication, no slot.
    let made = |sql: &str| s.sql(&format!("{sql} '{slot}'")).trim().to_string();
    assert_eq!(
        made("SELECT count(*) FROM pg_publication WHERE pubname ="),
        "0"
    );
    assert_eq!(
        made("SELECT count(*) FROM pg_replication_slots WHERE slot_name ="),
        "0"
    );
    // A position that is not one of the source's is refused too.
    task_refused(
        "a position that is not an LSN",
        h.stream_task("pg", json!([t("orders")]), Some(json!([{ "text": "x" }])))
            .await,
        "LSN",
    );
    // Nor one past the server's WAL, which would skip every change up to it; nothing is
    // made for it either.
    task_refused(
        "a position past the server's WAL",
        h.stream_task(
            "pg",
            json!([t("orders")]),
            Some(json!([{ "int": i64::MAX.to_string() }])),
        )
        .await,
        "past the server's WAL",
    );
    assert_eq!(
        made("SELECT count(*) FROM pg_replication_slots WHERE slot_name ="),
        "0"
    );
    assert!(
        !h.everything().contains(MARKER),
        "a secret value left the agent"
    );
    h.rig.stop().await;
    s.sql(&format!(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}';
         DROP PUBLICATION IF EXISTS {slot};"
    ));
}

/// A hostile broker's `StreamAssign` for a MariaDB source: tables outside the policy, and
/// positions that are paths, other servers' files or past the binlog, are refused before a
/// binary log is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_change_streams_refuse_a_hostile_broker() {
    let Some(my) = MyDb::new("ferry_hostile_mcdc") else {
        return;
    };
    my.sql(&format!(
        "CREATE TABLE orders (id INT PRIMARY KEY, note TEXT);
         CREATE TABLE secret (id INT PRIMARY KEY, v TEXT);
         INSERT INTO secret VALUES (1, '{MARKER}');"
    ));
    let url = my.url();
    let h = Hostile::start(
        &[RigSource {
            name: "my",
            kind: "mysql",
            url: &url,
            extra: "tables = [\"orders\"]\nchanges = {}",
        }],
        "",
    )
    .await;
    let t = |table: &str| json!({ "table": table });
    task_refused(
        "an unlisted table",
        h.stream_task("my", json!([t("secret")]), None).await,
        "not",
    );
    task_refused(
        "another database's table",
        h.stream_task("my", json!([t("mysql.user")]), None).await,
        "outside the source's database",
    );
    let current = my.sql("SHOW MASTER STATUS");
    let file = current.split_whitespace().next().unwrap_or("").to_string();
    for (what, position, needle) in [
        (
            "a path for a binlog file",
            json!([{ "text": "../../etc/passwd" }, { "int": "4" }]),
            "not a binlog file name",
        ),
        (
            "a file the server does not have",
            json!([{ "text": "other-bin.000001" }, { "int": "4" }]),
            "not on the server",
        ),
        (
            "an offset past the binlog",
            json!([{ "text": file }, { "int": i64::MAX.to_string() }]),
            "past the end",
        ),
        (
            "an LSN",
            json!([{ "int": "12345" }]),
            "binlog file and offset",
        ),
        (
            "SQL in a GTID set",
            json!([{ "text": "0-1-1', @@global.read_only = '1" }]),
            "not a GTID set",
        ),
        (
            "a GTID set of the other server kind",
            json!([{ "text": "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5" }]),
            "the server is MariaDB",
        ),
    ] {
        task_refused(
            what,
            h.stream_task("my", json!([t("orders")]), Some(position))
                .await,
            needle,
        );
    }
    assert!(
        !h.everything().contains(MARKER),
        "a secret value left the agent"
    );
    h.rig.stop().await;
}
