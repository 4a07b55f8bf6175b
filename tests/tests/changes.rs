//! Change streams through the tunnel (`setting.mode: stream`): the agent reads its
//! PostgreSQL source's committed changes over logical replication, the broker applies them to
//! the target transaction by transaction, and the slot moves only past what the target
//! committed.

mod common;

use std::time::{Duration, Instant};

use common::replication::*;
use common::*;
use ferry_broker::jobs::JobState;
use ferry_tests::db::{pg_url, MyDb, PgSchema};

/// The job's stream progress, once it has one.
async fn stream_of(rig: &Rig, id: &str) -> Option<ferry_engine::run::StreamSnapshot> {
    let status = rig.broker.jobs().get(id).await.unwrap().unwrap();
    assert_eq!(
        status.state,
        JobState::Running,
        "{status:?}\n{}",
        log_text()
    );
    status.progress.stream
}

/// Status and `/metrics` show how far the target is behind the source's WAL: held up by a
/// lock on the target table, the distance grows past what the source wrote meanwhile;
/// released, the stream catches up and the distance falls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_how_far_behind_the_source_a_stream_is() {
    let Some((repl, dst)) = Replication::with_target("ferry_chg_behind") else {
        return;
    };
    let src = &repl.src;
    src.sql(
        "CREATE TABLE acc (id bigint PRIMARY KEY, name text, amount numeric(18,4), \
                           big text NOT NULL, ts timestamptz)",
    );
    let rig = repl.rig("").await;
    let job = stream_job(&rig.datasource("shop"), &src.name, &dst.name, "");
    let id = rig
        .broker
        .submit(&job, ferry_engine::config::default_vars(), None)
        .await
        .unwrap();
    repl.wait_active().await;
    src.sql("INSERT INTO acc VALUES (1, 'first', 1, 'x', NULL)");
    let deadline = Instant::now() + Duration::from_secs(60);
    while stream_of(&rig, &id)
        .await
        .and_then(|s| s.behind_bytes)
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "no distance reported\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The target table held by another session for 10 s.
    let table = format!("{}.acc", dst.name);
    let holder = std::thread::spawn(move || {
        ferry_tests::db::psql(
            &format!(
                "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(10); COMMIT;"
            ),
            None,
        )
    });
    let locked = format!(
        "SELECT count(*) FROM pg_locks WHERE relation = '{}.acc'::regclass AND granted \
           AND mode = 'AccessExclusiveLock'",
        dst.name
    );
    while dst.sql(&locked).trim() != "1" {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A small transaction first: once the agent sent its commit, the position it tells the
    // source is applied stays before everything written after it.
    src.sql("INSERT INTO acc VALUES (2, 'small', 2, 'x', NULL)");
    let before = src.sql("SELECT pg_current_wal_lsn()").trim().to_string();
    src.sql(
        "INSERT INTO acc SELECT g, repeat('w', 200), g, 'b', NULL FROM generate_series(3, 20001) g",
    );
    let wrote: u64 = src
        .sql(&format!("SELECT pg_current_wal_lsn() - '{before}'::pg_lsn"))
        .trim()
        .parse()
        .unwrap();
    assert!(wrote > 1_000_000, "{wrote}");
    let mut held = 0;
    while held < wrote {
        held = stream_of(&rig, &id)
            .await
            .and_then(|s| s.behind_bytes)
            .unwrap_or(0);
        assert!(
            !holder.is_finished(),
            "the distance stayed at {held} bytes while the target was held ({wrote} written)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = rig.broker.jobs().get(&id).await.unwrap().unwrap();
    assert!(
        status.progress.line().contains("behind"),
        "{}",
        status.progress.line()
    );
    let metrics = rig.metrics().await;
    assert!(
        metrics.contains(&format!("ferry_stream_behind_bytes{{job=\"{id}\"}}")),
        "{metrics}"
    );
    holder.join().unwrap().unwrap();
    // Released: the rows arrive and the distance falls back under what was written.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = dst.sql(&format!("SELECT count(*) FROM {}.acc", dst.name));
        let behind = stream_of(&rig, &id).await.and_then(|s| s.behind_bytes);
        if rows.trim() == "20001" && behind.is_some_and(|b| b < wrote) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} rows, {behind:?} bytes behind ({wrote} written)\n{}",
            rows.trim(),
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(rig.broker.jobs().cancel(&id));
    rig.wait(&id, Duration::from_secs(30)).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_changes_reach_the_target_through_the_tunnel() {
    let Some((repl, dst)) = Replication::with_target("ferry_chg_src") else {
        return;
    };
    let src = &repl.src;
    src.sql(
        "CREATE TABLE acc (id bigint PRIMARY KEY, name text, amount numeric(18,4), \
                           big text NOT NULL, ts timestamptz);
         ALTER TABLE acc ALTER big SET STORAGE EXTERNAL;
         INSERT INTO acc VALUES (1, 'before the stream', 1, 'x', now());",
    );
    let rig = repl.rig("").await;
    let vars = ferry_engine::config::default_vars();
    let job = stream_job(&rig.datasource("shop"), &src.name, &dst.name, "");
    let id = rig.broker.submit(&job, vars.clone(), None).await.unwrap();
    repl.wait_active().await;
    // The stream starts at the slot's creation: rows from before it are a snapshot's.
    src.sql("DELETE FROM acc WHERE id = 1");
    src.sql(
        "INSERT INTO acc SELECT g, 'name ' || g, g * 1.5, 'small', \
                timestamptz '2024-06-20 00:00:00+00' + g * interval '1 minute' \
           FROM generate_series(1, 1000) g",
    );
    src.sql("UPDATE acc SET name = NULL WHERE id % 10 = 0");
    src.sql("UPDATE acc SET big = repeat('toasted ', 12000) WHERE id IN (5, 6)");
    // The TOASTed value is left unchanged by this update: not sent, and kept.
    src.sql("UPDATE acc SET amount = amount + 1 WHERE id IN (5, 6)");
    // A key change that leaves the TOASTed value unsent.
    src.sql("UPDATE acc SET id = 100005 WHERE id = 5");
    src.sql("DELETE FROM acc WHERE id BETWEEN 900 AND 950");
    src.sql(
        "BEGIN;
         INSERT INTO acc VALUES (2000, 'in a transaction', 1, 'b', NULL);
         UPDATE acc SET name = 'moved' , id = 2001 WHERE id = 2000;
         DELETE FROM acc WHERE id = 7;
         INSERT INTO acc VALUES (7, 'again', 7, 'c', now());
         COMMIT;
         BEGIN;
         INSERT INTO acc VALUES (3000, 'rolled back', 1, 'r', NULL);
         DELETE FROM acc WHERE id = 8;
         ROLLBACK;",
    );
    // One transaction of 100,000 rows: it crosses in bounded batches, applied as they come,
    // and commits in one target transaction.
    src.sql(
        "INSERT INTO acc SELECT g, 'bulk', g, 'b', NULL FROM generate_series(200000, 299999) g",
    );
    // ADD COLUMN mid-stream: the target gets the column, and the stream goes on.
    src.sql(
        "BEGIN;
         UPDATE acc SET name = 'before the new column' WHERE id = 3;
         ALTER TABLE acc ADD COLUMN note varchar(20);
         UPDATE acc SET note = 'added' WHERE id BETWEEN 1 AND 20;
         COMMIT;
         INSERT INTO acc VALUES (5000, 'after', 1, 'a', NULL, 'with note');",
    );
    let last = src.sql("SELECT pg_current_wal_lsn()").trim().to_string();
    let rows: usize = src.sql("SELECT count(*) FROM acc").trim().parse().unwrap();
    wait_equal(src, &dst, rows).await;
    assert_eq!(
        dst.sql(&format!(
            "SELECT length(big) FROM {}.acc WHERE id = 100005",
            dst.name
        ))
        .trim(),
        "96000",
        "the TOASTed value survived the updates that did not send it"
    );
    // The slot moves past what the target committed (the agent acknowledges it).
    repl.wait_flushed(&last).await;
    // A quiet table, a busy database: writes to tables the stream does not carry still
    // let the slot move, so the server does not keep their WAL.
    src.sql(
        "CREATE TABLE busy (id int PRIMARY KEY, pad text);
         INSERT INTO busy SELECT g, repeat('p', 200) FROM generate_series(1, 20000) g;",
    );
    let busy = src.sql("SELECT pg_current_wal_lsn()").trim().to_string();
    repl.wait_flushed(&busy).await;
    let status = rig.broker.jobs().get(&id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Running, "{status:?}");
    assert!(status.progress.records_written >= 101_000, "{status:?}");
    // Status shows where the stream is and how far behind the source it was.
    let st = status.progress.stream.clone().expect("a stream's progress");
    assert!(st.transactions >= 10, "{st:?}");
    assert!((0.0..60.0).contains(&st.lag_secs), "{st:?}");
    assert!(st.position.parse::<u64>().is_ok(), "{st:?}");
    assert!(
        status.progress.line().contains("changes/s, lag"),
        "{}",
        status.progress.line()
    );
    let metrics = rig.metrics().await;
    assert!(
        metrics.contains(&format!("ferry_stream_lag_seconds{{job=\"{id}\"}}")),
        "{metrics}"
    );

    // Stopped, the job leaves the slot where the target is; changes made meanwhile wait in
    // the slot and reach the target when a stream starts again.
    assert!(rig.broker.jobs().cancel(&id));
    let status = rig.wait(&id, Duration::from_secs(30)).await;
    assert_eq!(status.state, JobState::Cancelled, "{status:?}");
    src.sql("INSERT INTO acc VALUES (4000, 'while stopped', 4, 's', NULL)");
    src.sql("UPDATE acc SET name = 'changed while stopped' WHERE id = 2");
    let job = stream_job(
        &rig.datasource("shop"),
        &src.name,
        &dst.name,
        "    existing: append\n",
    );
    let id = rig.broker.submit(&job, vars, None).await.unwrap();
    wait_equal(src, &dst, rows + 1).await;
    assert!(rig.broker.jobs().cancel(&id));
    rig.wait(&id, Duration::from_secs(30)).await;

    // `ferry job resume` of the stopped job: it goes on from the position its target holds.
    src.sql("DELETE FROM acc WHERE id = 4000");
    src.sql("UPDATE acc SET note = 'after the resume' WHERE id = 2");
    let code = rig.resume(&id).await;
    assert!((200..300).contains(&code), "resume answered {code}");
    wait_equal(src, &dst, rows).await;
    let status = rig.broker.jobs().get(&id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Running, "{status:?}");
    assert!(rig.broker.jobs().cancel(&id));
    rig.wait(&id, Duration::from_secs(30)).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_without_changes_config_refuses_a_stream() {
    let Some(src) = PgSchema::new("ferry_chg_ref") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_chg_refd") else {
        return;
    };
    src.sql("CREATE TABLE acc (id bigint PRIMARY KEY, name text)");
    let rig = Rig::start(&[RigSource {
        name: "shop",
        kind: "postgres",
        url: &pg_url(),
        extra: "",
    }])
    .await;
    let status = rig
        .run(&stream_job(
            &rig.datasource("shop"),
            &src.name,
            &dst.name,
            "",
        ))
        .await;
    assert_eq!(status.state, JobState::Failed, "{status:?}");
    let error = status.error.unwrap_or_default();
    assert!(
        error.contains("does not allow change streams") && error.contains("[sources.shop.changes]"),
        "{error}"
    );
    // Nothing was made in the source.
    let slots =
        src.sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'ferry_shop%'");
    assert_eq!(slots.trim(), "0");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_change_stops_the_stream_and_names_it() {
    let Some((repl, dst)) = Replication::with_target("ferry_chg_ddl") else {
        return;
    };
    let src = &repl.src;
    src.sql("CREATE TABLE acc (id bigint PRIMARY KEY, qty int)");
    let rig = repl.rig("").await;
    let vars = ferry_engine::config::default_vars();
    let job = stream_job(&rig.datasource("shop"), &src.name, &dst.name, "");
    let id = rig.broker.submit(&job, vars, None).await.unwrap();
    repl.wait_active().await;
    src.sql("INSERT INTO acc VALUES (1, 10), (2, 20)");
    wait_equal(src, &dst, 2).await;
    src.sql("ALTER TABLE acc ALTER COLUMN qty TYPE bigint");
    src.sql("INSERT INTO acc VALUES (3, 30000000000)");
    let status = rig.wait(&id, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Failed, "{status:?}");
    let error = status.error.unwrap_or_default();
    assert!(
        error.contains("columns changed from (id Int64, qty Int32) to (id Int64, qty Int64)")
            && error.contains("only ADD COLUMN is applied"),
        "{error}"
    );
    // Nothing of the new shape was applied, and the slot still holds the change.
    assert_eq!(
        dst.sql(&format!("SELECT count(*) FROM {}.acc", dst.name))
            .trim(),
        "2"
    );
    let pending = src.sql(&format!(
        "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('{}', NULL, NULL, \
         'proto_version', '1', 'publication_names', '{}')",
        repl.slot(),
        repl.slot()
    ));
    assert_ne!(
        pending.trim(),
        "0",
        "the insert after the DDL waits in the slot"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_a_primary_key_is_not_streamed() {
    let Some((repl, dst)) = Replication::with_target("ferry_chg_nokey") else {
        return;
    };
    let src = &repl.src;
    src.sql("CREATE TABLE acc (id bigint, qty int)");
    let rig = repl.rig("").await;
    let status = rig
        .run(&stream_job(
            &rig.datasource("shop"),
            &src.name,
            &dst.name,
            "",
        ))
        .await;
    assert_eq!(status.state, JobState::Failed, "{status:?}");
    let error = status.error.unwrap_or_default();
    assert!(error.contains("has no primary key"), "{error}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_a_table_the_policy_does_not_list_is_refused() {
    let Some((repl, dst)) = Replication::with_target("ferry_chg_pol") else {
        return;
    };
    let src = &repl.src;
    src.sql("CREATE TABLE acc (id bigint PRIMARY KEY); CREATE TABLE open (id bigint PRIMARY KEY)");
    let rig = repl.rig(&format!("tables = [\"{}.open\"]", src.name)).await;
    let status = rig
        .run(&stream_job(
            &rig.datasource("shop"),
            &src.name,
            &dst.name,
            "",
        ))
        .await;
    assert_eq!(status.state, JobState::Failed, "{status:?}");
    let error = status.error.unwrap_or_default();
    assert!(error.contains("acc") && error.contains("not"), "{error}");
    // Nothing was made in the source: no publication, no slot.
    let made = src.sql(&format!(
        "SELECT (SELECT count(*) FROM pg_publication WHERE pubname = '{0}') \
              + (SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{0}')",
        repl.slot()
    ));
    assert_eq!(made.trim(), "0");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_database_stream_keeps_transactions_across_tables() {
    let Some((repl, dst)) = Replication::with_target("ferry_chg_db") else {
        return;
    };
    let src = &repl.src;
    src.sql(
        "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
         CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL REFERENCES customers, amount numeric(12,2));
         CREATE TABLE notes (id int PRIMARY KEY, body text);",
    );
    let rig = repl.rig("").await;
    let job = format!(
        "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: {ds}\n    tables: [\"{s}.customers\", \"{s}.orders\", \"{s}.late_*\"]\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {url}\n    schema: {d}\n    createTable: true\n\
         setting:\n  mode: stream\n",
        ds = rig.datasource("shop"),
        s = src.name,
        d = dst.name,
        url = pg_url()
    );
    let vars = ferry_engine::config::default_vars();
    let id = rig.broker.submit(&job, vars, None).await.unwrap();
    repl.wait_active().await;
    // One transaction across both tables, a row referring to one written just before it.
    for i in 0..50 {
        src.sql(&format!(
            "BEGIN;
             INSERT INTO customers VALUES ({i}, 'c{i}');
             INSERT INTO orders VALUES ({i}00, {i}, {i}.5), ({i}01, {i}, 1);
             UPDATE customers SET name = name || '!' WHERE id = {i};
             DELETE FROM orders WHERE id = {i}01;
             INSERT INTO notes VALUES ({i}, 'not selected');
             COMMIT;"
        ));
    }
    src.sql(
        "BEGIN; DELETE FROM orders WHERE customer = 3; DELETE FROM customers WHERE id = 3; COMMIT;",
    );
    let same = |t: &str| {
        dst.sql(&format!(
            "SELECT count(*) FROM ((SELECT * FROM {s}.{t} EXCEPT ALL SELECT * FROM {d}.{t})
              UNION ALL (SELECT * FROM {d}.{t} EXCEPT ALL SELECT * FROM {s}.{t})) x",
            s = src.name,
            d = dst.name
        ))
        .trim()
            == "0"
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = dst.sql(&format!(
            "SELECT (SELECT count(*) FROM {d}.customers) || '/' || (SELECT count(*) FROM {d}.orders)",
            d = dst.name
        ));
        if counts.trim() == "49/49" && same("customers") && same("orders") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the target did not catch up: {counts}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A table the job did not select never reached the target.
    let notes = dst.sql(&format!("SELECT to_regclass('{}.notes') IS NULL", dst.name));
    assert_eq!(notes.trim(), "t");

    // A table the selection takes (`late_*`) made while the stream runs: copied, then
    // streamed, with writes to it and to another table before, during and after it joins
    // (a TOASTed value left unsent by updates among them).
    src.sql(
        "CREATE TABLE late_orders (id int PRIMARY KEY, note text, big text);
         ALTER TABLE late_orders ALTER big SET STORAGE EXTERNAL;
         INSERT INTO late_orders SELECT g, 'n' || g, CASE WHEN g % 500 = 0 THEN repeat('t', 9000) END
           FROM generate_series(1, 3000) g;",
    );
    let exists = format!("SELECT to_regclass('{}.late_orders') IS NOT NULL", dst.name);
    rig.write_then_wait(
        &id,
        Duration::from_secs(20),
        |k| {
            src.sql(&format!(
                "UPDATE late_orders SET note = 'u{k}' WHERE id % 50 = {m};
                 INSERT INTO late_orders VALUES ({n}, 'new {k}', NULL);
                 DELETE FROM late_orders WHERE id = {k};
                 INSERT INTO customers VALUES ({c}, 'late {k}');",
                m = k % 50,
                n = 10_000 + k,
                c = 1_000 + k
            ));
        },
        || dst.sql(&exists).trim() == "t" && same("late_orders") && same("customers"),
    )
    .await;
    assert!(log_text().contains("tables join the stream"));
    let status = rig.broker.jobs().get(&id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Running, "{status:?}");
    assert!(rig.broker.jobs().cancel(&id));
    rig.wait(&id, Duration::from_secs(30)).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mapped_type_arrives_as_it_left() {
    let Some((repl, dst)) = Replication::with_target("ferry_chg_ty") else {
        return;
    };
    let src = &repl.src;
    src.sql(
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE TABLE acc (id bigint PRIMARY KEY, i2 smallint, i4 int, n numeric(20,4),
           nu numeric, f4 real, f8 double precision, t text, vc varchar(10), ch char(3),
           js json, jb jsonb, u uuid, b bytea, bo boolean, d date, ts timestamp,
           tz timestamptz, tm time, iv interval, e mood, big text);",
    );
    let rig = repl.rig("").await;
    let job = stream_job(&rig.datasource("shop"), &src.name, &dst.name, "");
    let vars = ferry_engine::config::default_vars();
    let id = rig.broker.submit(&job, vars, None).await.unwrap();
    repl.wait_active().await;
    src.sql(
        "INSERT INTO acc VALUES
          (1, -32768, -2147483648, -9999999999999999.9999, 123456789012345678901234567890.000000001,
           -0.0, 1.7976931348623157e308, '', 'ten chars!', 'ab ', '{\"b\": [1, 2.50]}', '{\"a\": null}',
           'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff00'::bytea, false, '0001-01-01',
           '1999-12-31 23:59:59.999999', '2024-02-29 12:00:00+08', '00:00:00',
           '-1 year 2 days 00:00:00.000001', 'sad', repeat('x', 50000)),
          (2, 32767, 2147483647, 0, 'NaN', 'Infinity', 'NaN', 'été 急 🚀 \t\\ \"q\"', NULL, NULL, '[]',
           '[1, \"x\"]', NULL, '', true, '9999-12-31', '2000-01-01 00:00:00',
           '1970-01-01 00:00:00+00', '23:59:59.999999', '0', 'happy', NULL),
          (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL);
         UPDATE acc SET f4 = '-Infinity', e = 'ok', t = 'changed' WHERE id = 1;
         UPDATE acc SET id = 20 WHERE id = 2;",
    );
    // Row by row, as text: every value, including the unchanged 50,000-byte one (json has
    // no equality, so rows are compared by their text).
    let rows = |s: &PgSchema| {
        s.sql(&format!(
            "SELECT count(*) || E'\\n' || coalesce(string_agg(a::text, E'\\n' ORDER BY id), '') FROM {}.acc a",
            s.name
        ))
    };
    let want = rows(src);
    assert!(want.starts_with("3\n"), "{want}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while rows(&dst) != want {
        assert!(
            Instant::now() < deadline,
            "the target differs:\n{}\nthe source:\n{want}",
            rows(&dst)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The target's types are the copy's (json as jsonb, the enum as an enum of its own).
    let types = dst.sql(&format!(
        "SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) FROM pg_attribute \
         WHERE attrelid = '{}.acc'::regclass AND attnum > 0",
        dst.name
    ));
    assert!(types.contains("numeric(20,4)"), "{types}");
    assert!(rig.broker.jobs().cancel(&id));
    rig.wait(&id, Duration::from_secs(30)).await;
    rig.stop().await;
}

/// The same stream into a MariaDB target: upserts and deletes by key, an update that left a
/// TOASTed value unsent (an `UPDATE` of what it sent), a key change that left it unsent too,
/// transactions whole or not at all, ADD COLUMN; the target ends equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_changes_apply_to_a_mariadb_target() {
    let Some(repl) = Replication::new("ferry_chg_tomy") else {
        return;
    };
    let Some(my) = MyDb::new("ferry_chg_tomy") else {
        return;
    };
    let src = &repl.src;
    src.sql(
        "CREATE TABLE acc (id bigint PRIMARY KEY, name text, amount numeric(18,4),
                           big text NOT NULL, ts timestamptz);
         ALTER TABLE acc ALTER big SET STORAGE EXTERNAL;",
    );
    let rig = repl.rig("").await;
    let job = format!(
        "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: {ds}\n    table: {s}.acc\n\
         writer:\n  name: mysqlwriter\n  parameter:\n    url: {url}\n    table: acc\n    createTable: true\n\
         setting:\n  mode: stream\n",
        ds = rig.datasource("shop"),
        s = src.name,
        url = my.url()
    );
    let vars = ferry_engine::config::default_vars();
    let id = rig.broker.submit(&job, vars, None).await.unwrap();
    repl.wait_active().await;
    src.sql(
        "INSERT INTO acc SELECT g, 'name ' || g, g * 1.5, 'small',
                timestamptz '2024-06-20 00:00:00+00' + g * interval '1 minute'
           FROM generate_series(1, 1000) g;
         UPDATE acc SET name = NULL WHERE id % 10 = 0;
         UPDATE acc SET big = repeat('toasted ', 12000) WHERE id IN (5, 6);
         UPDATE acc SET amount = amount + 1 WHERE id IN (5, 6);
         UPDATE acc SET id = 100005 WHERE id = 5;
         DELETE FROM acc WHERE id BETWEEN 900 AND 950;
         BEGIN;
         INSERT INTO acc VALUES (2000, 'in a transaction', 1, 'b', NULL);
         UPDATE acc SET name = 'moved', id = 2001 WHERE id = 2000;
         DELETE FROM acc WHERE id = 7;
         INSERT INTO acc VALUES (7, 'again', 7, 'c', now());
         COMMIT;
         BEGIN;
         INSERT INTO acc VALUES (3000, 'rolled back', 1, 'r', NULL);
         DELETE FROM acc WHERE id = 8;
         ROLLBACK;
         INSERT INTO acc SELECT g, 'bulk', g, 'b', NULL FROM generate_series(200000, 219999) g;",
    );
    src.sql(
        "BEGIN;
         UPDATE acc SET name = 'before the new column' WHERE id = 3;
         ALTER TABLE acc ADD COLUMN note varchar(20);
         UPDATE acc SET note = 'added' WHERE id BETWEEN 1 AND 20;
         COMMIT;
         INSERT INTO acc VALUES (5000, 'after', 1, 'a', NULL, 'with note');",
    );
    wait_same_in_mariadb(src, &my).await;
    // Cancelled, then resumed: the position the MariaDB target committed is where the stream
    // goes on, and what was written meanwhile arrives once.
    assert!(rig.broker.jobs().cancel(&id));
    rig.wait(&id, Duration::from_secs(30)).await;
    src.sql(
        "INSERT INTO acc VALUES (4000, 'while stopped', 4, 's', NULL, NULL);
         UPDATE acc SET note = 'while stopped', amount = amount * 2 WHERE id BETWEEN 10 AND 30;
         DELETE FROM acc WHERE id = 11;",
    );
    let code = rig.resume(&id).await;
    assert!((200..300).contains(&code), "resume answered {code}");
    wait_same_in_mariadb(src, &my).await;
    let status = rig.broker.jobs().get(&id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Running, "{status:?}");
    assert!(rig.broker.jobs().cancel(&id));
    rig.wait(&id, Duration::from_secs(30)).await;
    rig.stop().await;
}

/// Waits until MariaDB's `acc` (with the added `note`) holds the PostgreSQL source's rows.
async fn wait_same_in_mariadb(src: &PgSchema, my: &MyDb) {
    let want = src.sql(&format!(
        "SELECT concat_ws('|', id, coalesce(name, '<null>'), amount, md5(big), length(big),
                coalesce(to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), '<null>'),
                coalesce(note, '<null>'))
           FROM {}.acc ORDER BY id",
        src.name
    ));
    let got = || {
        ferry_tests::db::mariadb_cli(Some(&my.name))
            .args([
                "-e",
                "SET time_zone = '+00:00';
                 SELECT CONCAT_WS('|', id, IFNULL(name, '<null>'), amount, MD5(big), CHAR_LENGTH(big),
                        IFNULL(DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f'), '<null>'), IFNULL(note, '<null>'))
                   FROM acc ORDER BY id",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        // Before the new column exists, the query fails and reads as nothing.
        let now = got();
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the MariaDB target did not catch up ({} rows of {}); the log:\n{}",
            now.lines().count(),
            want.lines().count(),
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
