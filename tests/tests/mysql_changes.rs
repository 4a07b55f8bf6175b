//! MariaDB change streams through the tunnel (`setting.mode: stream`): the agent reads its
//! source's binary log as a replica does, the broker applies the changes to PostgreSQL
//! transaction by transaction, and the target's checkpoint is the stream's position.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ferry_broker::jobs::{JobState, JobStatus};
use ferry_tests::db::{pg_url, MyDb, PgSchema};

/// A source database whose server writes a binlog a stream reads, or `None` (skipped, not
/// under CI).
fn source(prefix: &str) -> Option<MyDb> {
    logs();
    let my = MyDb::new(prefix)?;
    let settings = my.sql("SELECT @@log_bin, @@binlog_format, @@binlog_row_image");
    if settings.split_whitespace().collect::<Vec<_>>() != ["1", "ROW", "FULL"] {
        ferry_tests::missing(&format!(
            "MariaDB's binary log in ROW format with FULL images (log_bin, binlog_format, \
             binlog_row_image are {}; .ci/cdc-servers.sh sets them)",
            settings.trim()
        ));
        return None;
    }
    Some(my)
}

async fn rig(my: &MyDb, extra: &str) -> Rig {
    let url = my.url();
    Rig::start(&[RigSource {
        name: "legacy",
        kind: "mysql",
        url: &url,
        extra: &format!("{extra}\nchanges = {{}}"),
    }])
    .await
}

fn stream_job(ds: &str, table: &str, dst: &str, existing: &str) -> String {
    format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    datasource: {ds}\n    table: {table}\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {url}\n    table: {dst}\n    createTable: true\n{existing}\
         setting:\n  mode: stream\n",
        url = pg_url()
    )
}

/// Waits until the job's stream committed a position in the target (a new stream records
/// where it began before its first change).
async fn wait_streaming(rig: &Rig, id: &str) -> JobStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = rig.broker.jobs().get(id).await.unwrap().unwrap();
        assert!(
            status.state == JobState::Running,
            "the stream ended: {status:?}\n{}",
            log_text()
        );
        if status.progress.stream.is_some() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the stream never started: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `acc`'s rows as text, by key: the source's.
fn source_rows(my: &MyDb, note: bool) -> Vec<String> {
    let out = my.sql(&format!(
        "SET time_zone = '+00:00';
         SELECT CONCAT_WS('|', id, IFNULL(name, '<null>'), IFNULL(amount, '<null>'),
                IFNULL(MD5(big), '<null>'), IFNULL(LENGTH(big), '<null>'),
                IFNULL(DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f'), '<null>'),
                IFNULL(DATE_FORMAT(dt, '%Y-%m-%d %H:%i:%s.%f'), '<null>'){})
           FROM acc ORDER BY id",
        if note { ", IFNULL(note, '<null>')" } else { "" }
    ));
    out.lines().map(str::to_string).collect()
}

/// `acc`'s rows as text, by key: the target's.
fn target_rows(dst: &PgSchema, note: bool) -> Vec<String> {
    let out = dst.sql(&format!(
        "SELECT concat_ws('|', id, coalesce(name, '<null>'), coalesce(amount::text, '<null>'),
                coalesce(md5(big), '<null>'), coalesce(length(big)::text, '<null>'),
                coalesce(to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), '<null>'),
                coalesce(to_char(dt, 'YYYY-MM-DD HH24:MI:SS.US'), '<null>'){})
           FROM {}.acc ORDER BY id",
        if note {
            ", coalesce(note, '<null>')"
        } else {
            ""
        },
        dst.name
    ));
    out.lines().map(str::to_string).collect()
}

/// Waits until the target holds the source's rows.
async fn wait_equal(my: &MyDb, dst: &PgSchema, note: bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (s, d) = (source_rows(my, note), target_rows(dst, note));
        if s == d {
            return;
        }
        if Instant::now() > deadline {
            let differ: Vec<String> = s
                .iter()
                .zip(&d)
                .filter(|(a, b)| a != b)
                .map(|(a, b)| format!("{a} / {b}"))
                .collect();
            panic!(
                "the target did not catch up: {} source rows, {} target rows, {} differ: {:?}; the log:\n{}",
                s.len(),
                d.len(),
                differ.len(),
                &differ[..differ.len().min(25)],
                log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_changes_reach_postgres_through_the_tunnel() {
    let Some(my) = source("ferry_mchg") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_mchg_dst") else {
        return;
    };
    my.sql(
        "CREATE TABLE acc (id BIGINT PRIMARY KEY, name VARCHAR(100), amount DECIMAL(18,4),
                           big LONGTEXT, ts TIMESTAMP(6) NULL, dt DATETIME(6));
         INSERT INTO acc VALUES (1, 'before the stream', 1, 'x', NULL, NULL);",
    );
    let rig = rig(&my, "").await;
    let vars = ferry_engine::config::default_vars();
    let job = stream_job(
        &rig.datasource("legacy"),
        "acc",
        &format!("{}.acc", dst.name),
        "",
    );
    let id = rig.broker.submit(&job, vars.clone(), None).await.unwrap();
    wait_streaming(&rig, &id).await;
    // The stream starts at the server's position when the job began: rows from before it
    // are a snapshot's.
    my.sql("DELETE FROM acc WHERE id = 1");
    my.sql(
        "SET time_zone = '+08:00';
         INSERT INTO acc SELECT seq, CONCAT('name ', seq), seq * 1.5, 'small',
                TIMESTAMP '2024-06-20 08:00:00' + INTERVAL seq MINUTE,
                TIMESTAMP '2024-06-20 00:00:00.000001' + INTERVAL seq SECOND
           FROM seq_1_to_1000",
    );
    my.sql("UPDATE acc SET name = NULL WHERE id % 10 = 0");
    my.sql("UPDATE acc SET big = REPEAT('large ', 20000) WHERE id IN (5, 6)");
    my.sql("UPDATE acc SET amount = amount + 1 WHERE id IN (5, 6)");
    // A key change.
    my.sql("UPDATE acc SET id = 100005 WHERE id = 5");
    my.sql("DELETE FROM acc WHERE id BETWEEN 900 AND 950");
    my.sql(
        "BEGIN;
         INSERT INTO acc VALUES (2000, 'in a transaction', 1, 'b', NULL, NULL);
         UPDATE acc SET name = 'moved', id = 2001 WHERE id = 2000;
         DELETE FROM acc WHERE id = 7;
         INSERT INTO acc VALUES (7, 'again', 7, 'c', NOW(6), NOW(6));
         COMMIT;
         BEGIN;
         INSERT INTO acc VALUES (3000, 'rolled back', 1, 'r', NULL, NULL);
         DELETE FROM acc WHERE id = 8;
         ROLLBACK;",
    );
    // One transaction of 100,000 rows.
    my.sql("INSERT INTO acc SELECT seq, 'bulk', seq, 'b', NULL, NULL FROM seq_200000_to_299999");
    wait_equal(&my, &dst, false).await;
    // How far the target is behind the binlog's end is measured too (once a second).
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = rig.broker.jobs().get(&id).await.unwrap().unwrap();
        if status
            .progress
            .stream
            .as_ref()
            .is_some_and(|s| s.behind_bytes.is_some())
        {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no distance reported: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        status.progress.line().contains("behind"),
        "{}",
        status.progress.line()
    );
    let st = status.progress.stream.clone().expect("a stream's progress");
    assert!(st.position.contains(':'), "file:offset, {st:?}");
    assert!(status.progress.records_written >= 101_000, "{status:?}");

    // ADD COLUMN mid-stream: the target gets the column, and the stream goes on.
    my.sql(
        "UPDATE acc SET name = 'before the new column' WHERE id = 3;
         ALTER TABLE acc ADD COLUMN note VARCHAR(20);
         UPDATE acc SET note = 'added' WHERE id BETWEEN 1 AND 20;
         INSERT INTO acc VALUES (5000, 'after', 1, 'a', NULL, NULL, 'with note');",
    );
    wait_equal(&my, &dst, true).await;

    // A busy database, a quiet table: the position the target holds still moves.
    let before = st.position.clone();
    my.sql(
        "CREATE TABLE busy (id INT PRIMARY KEY, pad TEXT);
         INSERT INTO busy SELECT seq, REPEAT('p', 200) FROM seq_1_to_2000;",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = rig.broker.jobs().get(&id).await.unwrap().unwrap();
        let now = status.progress.stream.map(|s| s.position);
        if now.as_ref().is_some_and(|p| *p != before) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the quiet stream's position stayed at {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Stopped, the job keeps its position in the target; changes made meanwhile reach it
    // when the job is resumed.
    assert!(rig.broker.jobs().cancel(&id));
    let status = rig.wait(&id, Duration::from_secs(30)).await;
    assert_eq!(status.state, JobState::Cancelled, "{status:?}");
    my.sql("INSERT INTO acc VALUES (4000, 'while stopped', 4, 's', NULL, NULL, NULL)");
    my.sql("UPDATE acc SET note = 'while stopped' WHERE id = 2");
    let code = rig.resume(&id).await;
    assert!((200..300).contains(&code), "resume answered {code}");
    wait_equal(&my, &dst, true).await;
    let status = rig.broker.jobs().get(&id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Running, "{status:?}");
    assert!(rig.broker.jobs().cancel(&id));
    rig.wait(&id, Duration::from_secs(30)).await;
    rig.stop().await;
}

/// Every MariaDB type of the mapping table, streamed: the target's rows equal a snapshot
/// copy's of the same source rows, value for value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_every_type_streams_as_a_snapshot_reads_it() {
    let Some(my) = source("ferry_mchg_types") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_mchg_types_dst") else {
        return;
    };
    my.sql(
        "CREATE TABLE t (
          id INT PRIMARY KEY,
          ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
          mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
          d65 DECIMAL(65,30), d650 DECIMAL(65,0), d18 DECIMAL(18,4), f FLOAT, db DOUBLE,
          ch CHAR(3), vc VARCHAR(100), tx TEXT, bn BINARY(4), vb VARBINARY(300), bl BLOB,
          dt DATE, dtm DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, tm TIME(6), yr YEAR,
          en ENUM('a','b','c'), st SET('x','y','z'), js JSON, b1 BIT(1), b64 BIT(64), bo BOOLEAN,
          zd DATE NULL, zdt DATETIME NULL, geo GEOMETRY NULL, l1 VARCHAR(20) CHARACTER SET latin1
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    );
    let rig = rig(&my, "").await;
    let vars = ferry_engine::config::default_vars();
    let job = stream_job(
        &rig.datasource("legacy"),
        "t",
        &format!("{}.streamed", dst.name),
        "",
    );
    let id = rig.broker.submit(&job, vars, None).await.unwrap();
    wait_streaming(&rig, &id).await;
    let d65 = format!("{}.{}", "9".repeat(35), "9".repeat(30));
    let d650 = "9".repeat(65);
    let b64 = "1".repeat(64);
    let all: String = (0..=255u8).map(|b| format!("{b:02X}")).collect();
    my.sql(&format!(
        r#"SET time_zone = '+08:00';
        INSERT INTO t VALUES
         (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
          '-{d65}', '-{d650}', -99999999999999.9999, -3.4028234663852886e38, -1.7976931348623157e308,
          'ab', '🚀👍🏽 中文 ''q'' "dq" back\\slash\ttab\nnewline', '', X'00', X'00', X'0000FF00',
          '1000-01-01', '1000-01-01 00:00:00.000001', '1970-01-01 08:00:01', '-838:59:59', 1901,
          'a', '', '{{"a": [1, 2, {{"b": null}}], "ü": "東京 🚀"}}', b'0', 0, 0,
          '2024-02-29', '2024-02-29 12:00:00', ST_GeomFromText('POINT(1 2)'), 'café €'),
         (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
          9223372036854775807, 18446744073709551615,
          '{d65}', '{d650}', 99999999999999.9999, 3.4028234663852886e38, 1.7976931348623157e308,
          'xyz', '', '漢字 🚀 한국어', X'FFFFFFFF', X'{all}', X'',
          '9999-12-31', '9999-12-31 23:59:59.999999', '2038-01-19 11:14:07.999999', '838:59:59', 2155,
          'c', 'x,y,z', '[]', b'1', b'{b64}', 1, NULL, NULL, ST_GeomFromText('LINESTRING(0 0, 1.5 -2)'), ''),
         (3, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
          '-0.000000000000000000000000000001', '0', 0.0001, 1.17549435e-38, 2.2250738585072014e-308,
          '', ' a ', 'trailing space ', X'0000FF00', X'0000FF00', X'00000000',
          '2024-02-29', '2024-02-29 23:59:59.5', '2024-01-01 08:00:00.123456', '-01:00:00.5', 0,
          'b', 'y', '"str"', b'1', b'1010', 127, NULL, NULL, NULL, NULL),
         (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        SET SESSION sql_mode = '';
        INSERT INTO t (id, f, db, tm, bo, zd, zdt, bn)
          VALUES (5, -0.0e0, -0.0e0, '25:00:00.000001', -128, '0000-00-00', '0000-00-00 00:00:00', X'41');
        INSERT INTO t (id, vc) VALUES (6, 'to be deleted'), (7, 'to be moved');
        UPDATE t SET vc = 'updated', en = 'c', st = 'x,z' WHERE id = 3;
        UPDATE t SET id = 8 WHERE id = 7;
        DELETE FROM t WHERE id = 6;"#
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while dst
        .sql(&format!("SELECT count(*) FROM {}.streamed", dst.name))
        .trim()
        != "6"
    {
        assert!(
            Instant::now() < deadline,
            "the stream did not deliver the rows:\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Settled: the last transaction applied whole, nothing pending.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rig.broker.jobs().cancel(&id));
    rig.wait(&id, Duration::from_secs(30)).await;

    // The same rows copied as a snapshot.
    let copy = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    datasource: {}\n    table: t\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {}\n    table: {}.copied\n    createTable: true\n",
        rig.datasource("legacy"),
        pg_url(),
        dst.name
    );
    let status = rig.run(&copy).await;
    assert_eq!(status.state, JobState::Succeeded, "{status:?}");
    rig.stop().await;
    let types = |t: &str| {
        dst.sql(&format!(
            "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
               FROM pg_attribute WHERE attrelid = '{}.{t}'::regclass AND attnum > 0 AND NOT attisdropped",
            dst.name
        ))
    };
    assert_eq!(
        types("streamed").replace("streamed_", ""),
        types("copied").replace("copied_", ""),
        "the same target types"
    );
    let rows = |t: &str| {
        dst.sql(&format!(
            "SELECT x::text FROM {}.{t} x ORDER BY id",
            dst.name
        ))
    };
    let (streamed, copied) = (rows("streamed"), rows("copied"));
    for (s, c) in streamed.lines().zip(copied.lines()) {
        assert_eq!(s, c, "a streamed row differs from the snapshot's");
    }
    assert_eq!(streamed, copied);
    assert_eq!(
        dst.sql(&format!("SELECT count(*) FROM {}.copied", dst.name))
            .trim(),
        "6"
    );
}

/// DDL other than ADD COLUMN stops the stream before it, naming the statement; the rows
/// before it are in the target, and the job resumes once the target matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_ddl_other_than_add_column_stops_the_stream() {
    let Some(my) = source("ferry_mchg_ddl") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_mchg_ddl_dst") else {
        return;
    };
    my.sql("CREATE TABLE acc (id BIGINT PRIMARY KEY, name VARCHAR(100))");
    let rig = rig(&my, "").await;
    let job = stream_job(
        &rig.datasource("legacy"),
        "acc",
        &format!("{}.acc", dst.name),
        "",
    );
    let id = rig
        .broker
        .submit(&job, ferry_engine::config::default_vars(), None)
        .await
        .unwrap();
    wait_streaming(&rig, &id).await;
    my.sql("INSERT INTO acc VALUES (1, 'a'), (2, 'b')");
    my.sql("ALTER TABLE acc MODIFY name VARCHAR(200)");
    my.sql("INSERT INTO acc VALUES (3, 'after the change')");
    let deadline = Instant::now() + Duration::from_secs(60);
    while rig.broker.jobs().get(&id).await.unwrap().unwrap().state == JobState::Running {
        assert!(
            Instant::now() < deadline,
            "the stream went on past the statement:\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = rig.wait(&id, Duration::from_secs(10)).await;
    assert_eq!(status.state, JobState::Failed, "{status:?}");
    let error = status.error.unwrap_or_default();
    assert!(
        error.contains("ALTER TABLE acc MODIFY name VARCHAR(200)") && error.contains("stops"),
        "{error}"
    );
    assert_eq!(
        dst.sql(&format!(
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM {}.acc",
            dst.name
        ))
        .trim(),
        "1,2",
        "the rows before the statement, and none after"
    );
    // The user makes the target match; the resumed job goes on from the statement.
    dst.sql(&format!(
        "ALTER TABLE {}.acc ALTER name TYPE varchar(200)",
        dst.name
    ));
    let code = rig.resume(&id).await;
    assert!((200..300).contains(&code), "resume answered {code}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ids = dst.sql(&format!(
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM {}.acc",
            dst.name
        ));
        if ids.trim() == "1,2,3" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resumed stream did not go on: {ids}\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(rig.broker.jobs().cancel(&id));
    rig.wait(&id, Duration::from_secs(30)).await;
    rig.stop().await;
}

/// The ids and names of `gt` in the target: empty until the job has made its table.
fn target_ids(dst: &PgSchema, table: &str) -> String {
    let made = dst.sql(&format!(
        "SELECT to_regclass('{}.{table}') IS NOT NULL",
        dst.name
    ));
    if made.trim() != "t" {
        return String::new();
    }
    dst.sql(&format!(
        "SELECT coalesce(string_agg(id || '=' || name, ',' ORDER BY id), '') FROM {}.{table}",
        dst.name
    ))
    .trim()
    .to_string()
}

async fn wait_target(rig: &Rig, id: &str, dst: &PgSchema, table: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = target_ids(dst, table);
        if got == want {
            return;
        }
        let status = rig.broker.jobs().get(id).await.unwrap().unwrap();
        assert!(
            status.state == JobState::Running && Instant::now() < deadline,
            "{table}: {got} (want {want}); {status:?}\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A stream started where the job says: after a MariaDB GTID position, or after a binlog
/// file and offset. Changes before it never reach the target, every change after it does,
/// and the resumed job goes on from what the target committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_stream_starts_after_a_gtid_or_a_binlog_position() {
    let Some(my) = source("ferry_mchg_gtid") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_mchg_gtid_dst") else {
        return;
    };
    my.sql(
        "CREATE TABLE gt (id INT PRIMARY KEY, name VARCHAR(50));
         INSERT INTO gt SELECT seq, 'before' FROM seq_1_to_10;",
    );
    // What a snapshot taken now would hold, in both forms.
    let at = my.sql("SELECT @@gtid_binlog_pos; SHOW MASTER STATUS");
    let mut lines = at.lines();
    let gtid = lines.next().unwrap_or("").trim().to_string();
    let mut master = lines.next().unwrap_or("").split_whitespace();
    let (file, pos) = (
        master.next().unwrap_or("").to_string(),
        master.next().unwrap_or("").to_string(),
    );
    assert!(gtid.contains('-') && !file.is_empty(), "{at}");
    my.sql(
        "INSERT INTO gt SELECT seq, 'after' FROM seq_11_to_15;
         UPDATE gt SET name = 'changed' WHERE id = 5;
         DELETE FROM gt WHERE id IN (3, 12);",
    );
    let rig = rig(&my, "").await;
    let vars = ferry_engine::config::default_vars();
    let ds = rig.datasource("legacy");
    let by_gtid = format!(
        "{}  start:\n    gtid: \"{gtid}\"\n",
        stream_job(&ds, "gt", &format!("{}.by_gtid", dst.name), "")
    );
    let by_file = format!(
        "{}  start:\n    binlogFile: {file}\n    binlogPosition: {pos}\n",
        stream_job(&ds, "gt", &format!("{}.by_file", dst.name), "")
    );
    let want = "5=changed,11=after,13=after,14=after,15=after";
    let mut ids = Vec::new();
    for (job, table) in [(&by_gtid, "by_gtid"), (&by_file, "by_file")] {
        let id = rig.broker.submit(job, vars.clone(), None).await.unwrap();
        wait_target(&rig, &id, &dst, table, want).await;
        ids.push((id, table));
    }
    // Stopped and resumed, each goes on from the file and offset its target committed.
    for (id, _) in &ids {
        let status = rig.broker.jobs().get(id).await.unwrap().unwrap();
        assert!(rig.broker.jobs().cancel(id), "{status:?}\n{}", log_text());
        rig.wait(id, Duration::from_secs(30)).await;
    }
    my.sql("INSERT INTO gt VALUES (16, 'while stopped')");
    for (id, table) in &ids {
        let status = rig.broker.jobs().get(id).await.unwrap().unwrap();
        let position = status
            .progress
            .stream
            .map(|s| s.position)
            .unwrap_or_default();
        // The file a GTID start learnt from the server is one it lists.
        let logs = my.sql("SHOW BINARY LOGS");
        let named = position.rsplit_once(':').map_or("", |(f, _)| f);
        assert!(
            !named.is_empty()
                && logs
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(named)),
            "{table}: {position} is not in\n{logs}"
        );
        let code = rig.resume(id).await;
        assert!((200..300).contains(&code), "resume answered {code}");
        wait_target(&rig, id, &dst, table, &format!("{want},16=while stopped")).await;
        assert!(rig.broker.jobs().cancel(id));
        rig.wait(id, Duration::from_secs(30)).await;
    }
    // A set of the other server's form, and a position the server never wrote, fail the
    // job and say why.
    for (start, needle) in [
        (
            "gtid: \"3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5\"".to_string(),
            "the server is MariaDB",
        ),
        (
            format!("gtid: \"{}\"", bump(&gtid)),
            "cannot stream from the position given",
        ),
    ] {
        let job = format!(
            "{}  start:\n    {start}\n",
            stream_job(&ds, "gt", &format!("{}.refused", dst.name), "")
        );
        let status = rig.run(&job).await;
        assert_eq!(status.state, JobState::Failed, "{start}: {status:?}");
        let error = status.error.unwrap_or_default();
        assert!(error.contains(needle), "{start}: {error}");
    }
    rig.stop().await;
}

/// `gtid` with each sequence number far ahead of what the server wrote.
fn bump(gtid: &str) -> String {
    gtid.split(',')
        .map(|m| match m.rsplit_once('-') {
            Some((head, _)) => format!("{head}-999999999"),
            None => m.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A table the agent's policy does not list never streams (positions a hostile broker could
/// give are attacked in `hostile_broker.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_stream_keeps_to_the_agents_policy() {
    let Some(my) = source("ferry_mchg_pol") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_mchg_pol_dst") else {
        return;
    };
    my.sql(
        "CREATE TABLE acc (id BIGINT PRIMARY KEY, name VARCHAR(100));
         CREATE TABLE secret (id BIGINT PRIMARY KEY, pin VARCHAR(10));",
    );
    let rig = rig(&my, "tables = [\"acc\"]").await;
    let status = rig
        .run(&stream_job(
            &rig.datasource("legacy"),
            "secret",
            &format!("{}.secret", dst.name),
            "",
        ))
        .await;
    assert_eq!(status.state, JobState::Failed, "{status:?}");
    let error = status.error.unwrap_or_default();
    assert!(error.contains("secret"), "{error}");
    assert!(!error.contains("Binlog"), "{error}");
    rig.stop().await;
}

/// A whole-database selection from MariaDB in one stream: a transaction across the selected
/// tables is applied whole, and an unselected table's changes never reach the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_whole_database_stream_keeps_transactions_across_tables() {
    let Some(my) = source("ferry_mchg_db") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_mchg_db_dst") else {
        return;
    };
    my.sql(
        "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL);
         CREATE TABLE orders (id BIGINT PRIMARY KEY, customer INT NOT NULL,
                              amount DECIMAL(12,2), FOREIGN KEY (customer) REFERENCES customers (id));
         CREATE TABLE notes (id INT PRIMARY KEY, body TEXT);",
    );
    let rig = rig(&my, "").await;
    let job = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    datasource: {ds}\n    tables: [customers, orders, \"late_*\"]\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {url}\n    schema: {d}\n    createTable: true\n\
         setting:\n  mode: stream\n",
        ds = rig.datasource("legacy"),
        d = dst.name,
        url = pg_url()
    );
    let id = rig
        .broker
        .submit(&job, ferry_engine::config::default_vars(), None)
        .await
        .unwrap();
    wait_streaming(&rig, &id).await;
    let mut script = String::new();
    for i in 0..50 {
        script.push_str(&format!(
            "BEGIN;
             INSERT INTO customers VALUES ({i}, 'c{i}');
             INSERT INTO orders VALUES ({i}00, {i}, {i}.5), ({i}01, {i}, 1);
             UPDATE customers SET name = CONCAT(name, '!') WHERE id = {i};
             DELETE FROM orders WHERE id = {i}01;
             INSERT INTO notes VALUES ({i}, 'not selected');
             COMMIT;\n"
        ));
    }
    script.push_str(
        "BEGIN; DELETE FROM orders WHERE customer = 3; DELETE FROM customers WHERE id = 3; COMMIT;",
    );
    my.sql(&script);
    let text = |rows: String| -> Vec<String> { rows.lines().map(str::to_string).collect() };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let src = (
            text(my.sql("SELECT CONCAT_WS('|', id, name) FROM customers ORDER BY id")),
            text(my.sql("SELECT CONCAT_WS('|', id, customer, amount) FROM orders ORDER BY id")),
        );
        let tgt = (
            text(dst.sql(&format!(
                "SELECT concat_ws('|', id, name) FROM {}.customers ORDER BY id",
                dst.name
            ))),
            text(dst.sql(&format!(
                "SELECT concat_ws('|', id, customer, amount) FROM {}.orders ORDER BY id",
                dst.name
            ))),
        );
        if src == tgt && src.0.len() == 49 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the target did not catch up: {} customers, {} orders\n{}",
            tgt.0.len(),
            tgt.1.len(),
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let notes = dst.sql(&format!(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{}' AND table_name = 'notes'",
        dst.name
    ));
    assert_eq!(notes.trim(), "0", "an unselected table reached the target");

    // A table the selection takes (`late_*`) made while the stream runs: copied, then
    // streamed, with writes to it and to another table before, during and after it joins.
    my.sql(
        "CREATE TABLE late_orders (id INT PRIMARY KEY, note VARCHAR(40));
         INSERT INTO late_orders SELECT seq, CONCAT('n', seq) FROM seq_1_to_3000;",
    );
    let same = |src_sql: &str, dst_sql: &str| text(my.sql(src_sql)) == text(dst.sql(dst_sql));
    let late = (
        "SELECT CONCAT_WS('|', id, note) FROM late_orders ORDER BY id".to_string(),
        format!(
            "SELECT concat_ws('|', id, note) FROM {}.late_orders ORDER BY id",
            dst.name
        ),
    );
    let customers = (
        "SELECT CONCAT_WS('|', id, name) FROM customers ORDER BY id".to_string(),
        format!(
            "SELECT concat_ws('|', id, name) FROM {}.customers ORDER BY id",
            dst.name
        ),
    );
    let exists = format!(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{}' \
           AND table_name = 'late_orders'",
        dst.name
    );
    rig.write_then_wait(
        &id,
        Duration::from_secs(20),
        |k| {
            my.sql(&format!(
                "UPDATE late_orders SET note = 'u{k}' WHERE id % 50 = {m};
                 INSERT INTO late_orders VALUES ({n}, 'new {k}');
                 DELETE FROM late_orders WHERE id = {k};
                 INSERT INTO customers VALUES ({c}, 'late {k}');",
                m = k % 50,
                n = 10_000 + k,
                c = 1_000 + k
            ));
        },
        || {
            dst.sql(&exists).trim() == "1"
                && same(&late.0, &late.1)
                && same(&customers.0, &customers.1)
        },
    )
    .await;
    assert!(log_text().contains("tables join the stream"));

    // A table made while the job is stopped joins when it is resumed; the tables that
    // joined before are not copied again.
    assert!(rig.broker.jobs().cancel(&id));
    rig.wait(&id, Duration::from_secs(30)).await;
    my.sql(
        "CREATE TABLE late_items (id INT PRIMARY KEY, v INT);
         INSERT INTO late_items SELECT seq, seq FROM seq_1_to_500;
         INSERT INTO customers VALUES (5000, 'while stopped');",
    );
    let code = rig.resume(&id).await;
    assert!((200..300).contains(&code), "resume answered {code}");
    let items = (
        "SELECT CONCAT_WS('|', id, v) FROM late_items ORDER BY id".to_string(),
        format!(
            "SELECT concat_ws('|', id, v) FROM {}.late_items ORDER BY id",
            dst.name
        ),
    );
    let items_exist = exists.replace("'late_orders'", "'late_items'");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(dst.sql(&items_exist).trim() == "1"
        && same(&items.0, &items.1)
        && same(&customers.0, &customers.1)
        && same(&late.0, &late.1))
    {
        let status = rig.broker.jobs().get(&id).await.unwrap().unwrap();
        assert!(
            status.state == JobState::Running && Instant::now() < deadline,
            "the table made while stopped did not join: {status:?}\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let copies = log_text()
        .lines()
        .filter(|l| l.contains("snapshot of the table starting") && l.contains("table=late_"))
        .count();
    assert_eq!(copies, 2, "late_orders and late_items copied once each");
    assert!(rig.broker.jobs().cancel(&id));
    rig.wait(&id, Duration::from_secs(30)).await;
    rig.stop().await;
}

/// The same stream into a SQLite target: upserts and deletes by key, a key change,
/// transactions whole or not at all, ADD COLUMN, and a resume from the position the SQLite
/// file holds; the target ends equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_changes_apply_to_a_sqlite_target() {
    let Some(my) = source("ferry_mchg_tolite") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("target.db");
    my.sql(
        "CREATE TABLE acc (id BIGINT PRIMARY KEY, name VARCHAR(100), amount DECIMAL(18,4),
                           big LONGTEXT, dt DATETIME(6));",
    );
    let rig = rig(&my, "").await;
    let job = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    datasource: {ds}\n    table: acc\n\
         writer:\n  name: sqlitewriter\n  parameter:\n    url: sqlite://{db}\n    table: acc\n    createTable: true\n\
         setting:\n  mode: stream\n",
        ds = rig.datasource("legacy"),
        db = db.display()
    );
    let vars = ferry_engine::config::default_vars();
    let id = rig.broker.submit(&job, vars, None).await.unwrap();
    wait_streaming(&rig, &id).await;
    my.sql(
        "INSERT INTO acc SELECT seq, CONCAT('name ', seq), seq * 1.5, 'small',
                TIMESTAMP '2024-06-20 00:00:00.000001' + INTERVAL seq SECOND
           FROM seq_1_to_1000;
         UPDATE acc SET name = NULL WHERE id % 10 = 0;
         UPDATE acc SET big = REPEAT('large ', 20000) WHERE id IN (5, 6);
         UPDATE acc SET id = 100005 WHERE id = 5;
         DELETE FROM acc WHERE id BETWEEN 900 AND 950;
         BEGIN;
         INSERT INTO acc VALUES (2000, 'in a transaction', 1, 'b', NULL);
         UPDATE acc SET name = 'moved', id = 2001 WHERE id = 2000;
         DELETE FROM acc WHERE id = 7;
         INSERT INTO acc VALUES (7, 'again', 7, 'c', NOW(6));
         COMMIT;
         BEGIN;
         INSERT INTO acc VALUES (3000, 'rolled back', 1, 'r', NULL);
         DELETE FROM acc WHERE id = 8;
         ROLLBACK;
         INSERT INTO acc SELECT seq, 'bulk', seq, 'b', NULL FROM seq_200000_to_219999;
         ALTER TABLE acc ADD COLUMN note VARCHAR(20);
         UPDATE acc SET note = 'added' WHERE id BETWEEN 1 AND 20;
         INSERT INTO acc VALUES (5000, 'after', 1, 'a', NULL, 'with note');",
    );
    wait_same_in_sqlite(&my, &db).await;
    // Stopped (`ferry job stop`), then resumed from the position the SQLite file holds.
    let code = rig.stop_job(&id).await;
    assert!((200..300).contains(&code), "stop answered {code}");
    let status = rig.wait(&id, Duration::from_secs(30)).await;
    assert_eq!(status.state, JobState::Stopped, "{status:?}");
    my.sql(
        "INSERT INTO acc VALUES (4000, 'while stopped', 4, 's', NULL, NULL);
         UPDATE acc SET note = 'while stopped', amount = amount * 2 WHERE id BETWEEN 10 AND 30;
         DELETE FROM acc WHERE id = 11;",
    );
    let code = rig.resume(&id).await;
    assert!((200..300).contains(&code), "resume answered {code}");
    wait_same_in_sqlite(&my, &db).await;
    let status = rig.broker.jobs().get(&id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Running, "{status:?}");
    assert!(rig.broker.jobs().cancel(&id));
    rig.wait(&id, Duration::from_secs(30)).await;
    rig.stop().await;
}

/// Waits until the SQLite file's `acc` (with the added `note`) holds MariaDB's rows.
async fn wait_same_in_sqlite(my: &MyDb, db: &std::path::Path) {
    let want = my.sql(
        "SELECT CONCAT_WS('|', id, IFNULL(name, '<null>'), IFNULL(amount, '<null>'),
                IFNULL(CHAR_LENGTH(big), '<null>'), IFNULL(RIGHT(big, 8), '<null>'),
                IFNULL(DATE_FORMAT(dt, '%Y-%m-%d %H:%i:%s.%f'), '<null>'), IFNULL(note, '<null>'))
           FROM acc ORDER BY id",
    );
    let got = || {
        std::process::Command::new("sqlite3")
            .args(["-batch", "-noheader"])
            .arg(db)
            .arg(
                "SELECT id || '|' || ifnull(name, '<null>') || '|' || ifnull(amount, '<null>')
                        || '|' || ifnull(length(big), '<null>') || '|' || ifnull(substr(big, -8), '<null>')
                        || '|' || ifnull(dt, '<null>') || '|' || ifnull(note, '<null>')
                   FROM acc ORDER BY id",
            )
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .expect("the sqlite3 CLI runs (.ci/run installs it)")
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = got();
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the SQLite target did not catch up ({} rows of {}); first differences: {:?}; the log:\n{}",
            now.lines().count(),
            want.lines().count(),
            now.lines()
                .zip(want.lines())
                .filter(|(a, b)| a != b)
                .take(5)
                .collect::<Vec<_>>(),
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
