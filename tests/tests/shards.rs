//! Sharded jobs: the `order_[0-9]` tables of four MariaDB databases, read by an agent
//! through the tunnel, merged into one PostgreSQL table with columns naming each row's
//! database and table; a key two shards share is reported as a collision; shards whose
//! columns differ are named before anything is written.

use ferry_tests::db::{pg_url, MyDb, PgSchema};

mod common;
use common::{Rig, RigSource};

fn one(text: String) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

/// `order_0`…`order_3` in `db`, order_k of shard i holding `rows(i, k)` rows with ids from
/// 1 (so every shard has ids 1, 2, …), and an `order_log` the pattern does not take.
fn shard(db: &MyDb, i: usize) {
    let mut sql = String::new();
    for k in 0..4 {
        sql.push_str(&format!(
            "CREATE TABLE order_{k} (id INT AUTO_INCREMENT PRIMARY KEY, customer INT NOT NULL,
               amount DECIMAL(10,2) NOT NULL DEFAULT 0, placed DATETIME NOT NULL,
               note VARCHAR({w}) NULL, KEY idx_customer (customer));
             INSERT INTO order_{k} (customer, amount, placed, note)
               SELECT seq % 7, seq * 1.25, '2026-01-01' + INTERVAL seq HOUR, IF(seq % 3 = 0, NULL, 'n')
               FROM seq_1_to_{n};",
            w = 20 + 10 * i,
            n = rows(i, k),
        ));
    }
    sql.push_str("CREATE TABLE order_log (id INT PRIMARY KEY, line TEXT); INSERT INTO order_log VALUES (1, 'x');");
    db.sql(&sql);
}

fn rows(i: usize, k: usize) -> usize {
    10 + 7 * i + 3 * k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_databases_of_four_tables_merge_into_one_with_source_columns() {
    let mut dbs = Vec::new();
    for i in 0..4 {
        let Some(db) = MyDb::new(&format!("ferry_shard{i}")) else {
            return;
        };
        shard(&db, i);
        dbs.push(db);
    }
    let Some(dst) = PgSchema::new("ferry_shard_dst") else {
        return;
    };
    let urls: Vec<String> = dbs.iter().map(MyDb::url).collect();
    let names: Vec<String> = (0..4).map(|i| format!("db_{i}")).collect();
    let sources: Vec<RigSource> = (0..4)
        .map(|i| RigSource {
            name: &names[i],
            kind: "mysql",
            url: &urls[i],
            extra: "",
        })
        .collect();
    let rig = Rig::start(&sources).await;
    let job = |table: &str, columns: &str| {
        let shards: String = (0..4)
            .map(|i| format!("      - {{datasource: {}}}\n", rig.datasource(&names[i])))
            .collect();
        format!(
            "reader:\n  name: mysqlreader\n  parameter:\n    tables: [\"order_[0-9]\"]\n    shards:\n{shards}\
             {columns}\
             writer:\n  name: postgresqlwriter\n  parameter:\n    url: {pg}\n    table: {d}.{table}\n    createTable: true\n\
             setting:\n  speed: {{channel: 3}}\n",
            pg = pg_url(),
            d = dst.name,
        )
    };
    let total: usize = (0..4).flat_map(|i| (0..4).map(move |k| rows(i, k))).sum();

    // With the source in the key: every row arrives, each shard's under its names.
    let status = rig
        .run(&job(
            "orders",
            "    sourceColumns: {source: src_db, table: src_table, inKey: true}\n",
        ))
        .await;
    let summary = status.summary.clone().expect("a summary");
    assert!(summary.succeeded(), "{summary}");
    assert_eq!(summary.tables.len(), 16, "{summary}");
    assert_eq!(summary.records_written, total as u64, "{summary}");
    assert!(summary.wire_bytes > 0, "through the tunnel: {summary}");
    assert_eq!(
        one(dst.sql("SELECT count(*) FROM orders")),
        total.to_string()
    );
    for i in 0..4 {
        for k in 0..4 {
            let ds = rig.datasource(&names[i]);
            assert_eq!(
                one(dst.sql(&format!(
                    "SELECT count(*) || ',' || sum(amount) FROM orders WHERE src_db = '{ds}' AND src_table = 'order_{k}'"
                ))),
                one(dbs[i].sql(&format!(
                    "SELECT CONCAT(count(*), ',', sum(amount)) FROM order_{k}"
                ))),
                "{ds}.order_{k}"
            );
        }
    }
    // The key holds the source columns; the index is built once; the widest note fits.
    assert_eq!(
        one(dst.sql(&format!(
            "SELECT string_agg(a.attname, ',' ORDER BY array_position(i.indkey, a.attnum)) \
             FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = '{}.orders'::regclass AND i.indisprimary",
            dst.name
        ))),
        "id,src_db,src_table"
    );
    assert_eq!(
        one(dst.sql(&format!(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = '{}' AND tablename = 'orders' AND indexdef LIKE '%(customer)%'",
            dst.name
        ))),
        "1"
    );
    assert_eq!(
        one(dst.sql(&format!(
            "SELECT character_maximum_length FROM information_schema.columns \
             WHERE table_schema = '{}' AND table_name = 'orders' AND column_name = 'note'",
            dst.name
        ))),
        "50"
    );
    assert_eq!(
        one(dst.sql("SELECT count(*) FROM orders WHERE src_table = 'order_log'")),
        "0"
    );

    // `ferry verify` of the merge: every shard table (on the agent) against the one target.
    let merged = job(
        "orders",
        "    sourceColumns: {source: src_db, table: src_table, inKey: true}
",
    );
    let tmp = tempfile::tempdir().unwrap();
    let verify = |args: &[&str]| {
        let path = tmp.path().join("merge.yaml");
        std::fs::write(&path, &merged).unwrap();
        let out = std::process::Command::new(ferry_tests::proc::ferry_bin())
            .arg("verify")
            .arg(&path)
            .args(["--json", "--admin", &rig.broker.admin_addr().to_string()])
            .args(args)
            .output()
            .expect("ferry verify");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (
            out.status.success(),
            report,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, report, _) = verify(&[]);
    assert!(ok, "{report:#}");
    assert_eq!(report["tables"][0]["source_rows"], total, "{report:#}");
    assert_eq!(report["tables"][0]["target_rows"], total, "{report:#}");
    assert!(report["wire_bytes"].as_u64().unwrap() > 0, "{report:#}");
    // One shard table's row changed, another's lost: both found (every shard has an id 3).
    let ds2 = rig.datasource(&names[2]);
    let ds3 = rig.datasource(&names[3]);
    dst.sql(&format!(
        "UPDATE orders SET amount = amount + 0.01 WHERE src_db = '{ds2}' AND src_table = 'order_1' AND id = 3;
         DELETE FROM orders WHERE src_db = '{ds3}' AND src_table = 'order_0' AND id = 5"
    ));
    let (ok, report, _) = verify(&[]);
    assert!(!ok, "{report:#}");
    let t = &report["tables"][0];
    assert_eq!(t["target_rows"], total - 1, "{report:#}");
    let found: Vec<(String, String, String)> = t["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["key"].as_str().unwrap().to_string(),
                d["kind"].as_str().unwrap().to_string(),
                d["columns"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "3".to_string(),
                "changed".to_string(),
                "[\"amount\"]".to_string()
            ),
            ("5".to_string(), "missing".to_string(), "[]".to_string()),
        ],
        "{report:#}"
    );

    // Without the source in the key: shards share ids 1, 2, …, a collision, reported.
    let status = rig
        .run(&job(
            "orders_by_id",
            "    sourceColumns: {source: src_db}\n",
        ))
        .await;
    assert_eq!(status.state, ferry_broker::jobs::JobState::Failed);
    let summary = status.summary.clone().expect("a summary");
    let collided: Vec<&ferry_engine::TableLine> = summary
        .tables
        .iter()
        .filter(|l| {
            l.failed
                .as_deref()
                .is_some_and(|f| f.contains("key collision across shards"))
        })
        .collect();
    assert!(!collided.is_empty(), "{summary}");
    let f = collided[0].failed.as_deref().unwrap_or_default();
    assert!(f.contains("inKey: true"), "says what to do: {f}");
    assert!(f.contains("already exists"), "names the key: {f}");
    assert!(
        summary
            .failed
            .as_deref()
            .is_some_and(|f| f.contains("shard tables failed")),
        "{summary}"
    );
    rig.stop().await;
}

#[test]
fn shards_with_other_columns_are_named_before_anything_is_written() {
    let mut dbs = Vec::new();
    for i in 0..2 {
        let Some(db) = MyDb::new(&format!("ferry_shardcol{i}")) else {
            return;
        };
        shard(&db, i);
        dbs.push(db);
    }
    let Some(dst) = PgSchema::new("ferry_shardcol_dst") else {
        return;
    };
    dbs[1].sql(
        "ALTER TABLE order_2 ADD COLUMN coupon VARCHAR(10) NULL, MODIFY customer BIGINT NOT NULL",
    );
    let tmp = tempfile::tempdir().unwrap();
    let job = |columns: &str| {
        format!(
            "reader:\n  name: mysqlreader\n  parameter:\n    tables: [\"order_[0-9]\"]\n{columns}    shards:\n\
             \x20     - {{url: \"{a}\", name: east}}\n      - {{url: \"{b}\", name: west}}\n\
             writer:\n  name: postgresqlwriter\n  parameter:\n    url: {pg}\n    table: {d}.orders\n    createTable: true\n",
            a = dbs[0].url(),
            b = dbs[1].url(),
            pg = pg_url(),
            d = dst.name,
        )
    };
    let (ok, out, err) = ferry_tests::proc::ferry_run_job(tmp.path(), &job(""), &["--quiet"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("west.order_2: column `customer` is Int64 where east.order_0 has Int32")
            && err.contains("an extra column `coupon`"),
        "{err}"
    );
    assert_eq!(
        one(dst.sql(&format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{}'",
            dst.name
        ))),
        "0",
        "nothing created"
    );

    // Reading the columns they share, the merge runs; its plan shows the one target.
    let shared = job(
        "    column: [id, amount, placed]\n    sourceColumns: {source: shard, table: tbl, inKey: true}\n",
    );
    let path = tmp.path().join("shards.yaml");
    std::fs::write(&path, &shared).unwrap();
    let plan = ferry_tests::proc::ferry(tmp.path(), &["job", "plan", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    for want in [
        "-- 8 shard tables: east.order_0, east.order_1",
        "west.order_3 -> ",
        "PRIMARY KEY (\"id\", \"shard\", \"tbl\")",
        "-- 1 tables,",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    let (ok, out, err) = ferry_tests::proc::ferry_run_job(tmp.path(), &shared, &["--quiet"]);
    assert!(ok, "{out}\n{err}");
    let total: usize = (0..2).flat_map(|i| (0..4).map(move |k| rows(i, k))).sum();
    assert_eq!(
        one(dst.sql("SELECT count(*) FROM orders")),
        total.to_string()
    );
    assert_eq!(
        one(dst.sql("SELECT string_agg(DISTINCT shard, ',' ORDER BY shard) FROM orders")),
        "east,west"
    );

    // Into MariaDB, which refuses rows one by one: a collision is still an error, not
    // a dirty record.
    let Some(my) = MyDb::new("ferry_shardcol_my") else {
        return;
    };
    let into_my = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    tables: [order_0]\n    column: [id, amount]\n    shards:\n\
         \x20     - {{url: \"{a}\", name: east}}\n      - {{url: \"{b}\", name: west}}\n\
         writer:\n  name: mysqlwriter\n  parameter:\n    url: {m}\n    table: orders\n    createTable: true\n",
        a = dbs[0].url(),
        b = dbs[1].url(),
        m = my.url(),
    );
    let (ok, out, err) = ferry_tests::proc::ferry_run_job(tmp.path(), &into_my, &["--quiet"]);
    assert!(!ok, "{out}");
    assert!(out.contains("key collision across shards"), "{out}\n{err}");
    assert!(out.contains("Duplicate entry"), "{out}");
}
