//! The `pgoutput` decoder against what a real PostgreSQL server sends: a publication and a
//! logical slot over a test's own tables, changes made, then the slot's binary changes
//! (`pg_logical_slot_get_binary_changes`, the same messages the streaming replication
//! protocol carries) decoded.
//!
//! Needs `wal_level = logical` (`.ci/cdc-servers.sh` turns it on). URL from `FERRY_TEST_PG`
//! (default `postgres://postgres@127.0.0.1:5432/test`). The schema, publication and slot are
//! dropped at the end, also when the test fails: a slot left behind would hold WAL forever.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use ferry_change::Op;
use ferry_connectors::postgres::pgoutput::{decode, Cell, Message, Old};
use ferry_connectors::postgres::{
    ChangeDecoder, ChangeTable, PgChangeStream, PostgresSink, PostgresSource, StreamEvent,
};
use ferry_connectors::{Checkpoint, KeyValue, Position, ReadSpec, Sink, Source, WriteSpec};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool, Row};
use tokio::sync::mpsc;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn url() -> String {
    std::env::var("FERRY_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// A test's schema, publication and slot; dropped on drop.
struct Stream {
    pool: PgPool,
    name: String,
}

impl Stream {
    async fn new() -> Option<Stream> {
        let pool = match PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url())
            .await
        {
            Ok(p) => p,
            Err(e) if ci() => panic!("PostgreSQL at FERRY_TEST_PG is unreachable (CI=true): {e}"),
            Err(e) => {
                eprintln!("SKIPPED: PostgreSQL unreachable: {e}");
                return None;
            }
        };
        let wal: String = sqlx::query_scalar("SHOW wal_level")
            .fetch_one(&pool)
            .await
            .unwrap();
        if wal != "logical" {
            let why = format!(
                "PostgreSQL's wal_level is {wal}, change data capture needs logical \
                 (.ci/cdc-servers.sh turns it on)"
            );
            assert!(!ci(), "{why} (CI=true)");
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let name = format!(
            "ferry_cdc_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let s = Stream { pool, name };
        s.exec(&format!("CREATE SCHEMA {n}", n = s.name)).await;
        Some(s)
    }

    async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The slot's changes so far, consumed, as (LSN, message bytes).
    async fn changes(&self) -> Vec<(String, Vec<u8>)> {
        sqlx::query(&format!(
            "SELECT lsn::text, data FROM pg_logical_slot_get_binary_changes('{n}', NULL, NULL, \
             'proto_version', '1', 'publication_names', '{n}', 'binary', 'true', 'messages', 'true')",
            n = self.name
        ))
        .fetch_all(&self.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = sqlx::PgConnection::connect(&url()).await {
                    let _ = sqlx::raw_sql(&format!(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                         WHERE slot_name = '{name}'; DROP PUBLICATION IF EXISTS {name}; \
                         DROP SCHEMA IF EXISTS {name} CASCADE"
                    ))
                    .execute(&mut c)
                    .await;
                    let _ = c.close().await;
                }
            });
        })
        .join();
    }
}

fn int4(c: &Cell) -> i32 {
    match c {
        Cell::Binary(b) => i32::from_be_bytes((*b).try_into().expect("int4 is 4 bytes")),
        other => panic!("expected a binary int4, got {other:?}"),
    }
}

fn text(c: &Cell) -> String {
    match c {
        Cell::Binary(b) | Cell::Text(b) => String::from_utf8(b.to_vec()).unwrap(),
        other => panic!("expected a text value, got {other:?}"),
    }
}

#[tokio::test]
async fn decodes_what_the_server_sends() {
    let Some(s) = Stream::new().await else { return };
    let n = s.name.clone();
    s.exec(&format!(
        "CREATE TABLE {n}.t (id int PRIMARY KEY, v text, big text);
         CREATE TABLE {n}.f (a int, b text); ALTER TABLE {n}.f REPLICA IDENTITY FULL;
         CREATE TABLE {n}.other (id int PRIMARY KEY);
         CREATE PUBLICATION {n} FOR TABLE {n}.t, {n}.f;"
    ))
    .await;
    // In a transaction of its own: a slot cannot be made by one that has written.
    s.exec(&format!(
        "SELECT pg_create_logical_replication_slot('{n}', 'pgoutput')"
    ))
    .await;
    // About 96 kB that does not compress below TOAST's 2 kB: stored out of line.
    let big = "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 3000) g)";
    // Each statement its own transaction, but for the explicit one.
    for sql in [
        format!("INSERT INTO {n}.t VALUES (1, 'a', {big})"),
        format!("UPDATE {n}.t SET v = 'b' WHERE id = 1"),
        format!("UPDATE {n}.t SET id = 2 WHERE id = 1"),
        format!("DELETE FROM {n}.t WHERE id = 2"),
        format!("INSERT INTO {n}.other VALUES (1)"),
        format!("INSERT INTO {n}.f VALUES (7, 'x')"),
        format!("UPDATE {n}.f SET b = 'y'"),
    ] {
        s.exec(&sql).await;
    }
    let mut tx = s.pool.begin().await.unwrap();
    for sql in [
        format!("INSERT INTO {n}.t VALUES (4, 'four', NULL)"),
        format!("INSERT INTO {n}.t VALUES (5, 'five', NULL)"),
        format!("UPDATE {n}.t SET v = 'FOUR' WHERE id = 4"),
    ] {
        sqlx::raw_sql(&sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    // Not transactional: in the stream where it was written (the truncate's commit flushes
    // it to the WAL the slot reads).
    s.exec("SELECT pg_logical_emit_message(false, 'ferry', 'heartbeat')")
        .await;
    s.exec(&format!("TRUNCATE {n}.t")).await;
    // A rolled-back transaction is never sent.
    let mut tx = s.pool.begin().await.unwrap();
    sqlx::raw_sql(&format!("INSERT INTO {n}.t VALUES (3, 'never', NULL)"))
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    let raw = s.changes().await;
    let messages: Vec<Message> = raw
        .iter()
        .map(|(lsn, b)| decode(b).unwrap_or_else(|e| panic!("at {lsn}: {e}")))
        .collect();

    let mut relations = std::collections::HashMap::new();
    let mut transactions = 0;
    let mut changes = Vec::new();
    for m in &messages {
        match m {
            Message::Relation(r) => {
                assert_eq!(r.namespace, n);
                relations.insert(r.oid, r.clone());
            }
            Message::Begin { .. } => transactions += 1,
            Message::Commit { lsn, end_lsn, .. } => assert!(end_lsn >= lsn),
            Message::Insert { .. }
            | Message::Update { .. }
            | Message::Delete { .. }
            | Message::Truncate { .. }
            | Message::Message { .. } => changes.push(m.clone()),
            other => panic!("unexpected {other:?}"),
        }
    }
    // One transaction per statement outside the explicit one, without the table not
    // published (its insert commits an empty transaction) and without the rolled-back one.
    assert!(transactions >= 8, "{transactions} transactions");
    let t = relations
        .values()
        .find(|r| r.name == "t")
        .expect("t described");
    assert_eq!(t.replica_identity, b'd');
    assert_eq!(
        t.columns
            .iter()
            .map(|c| (c.name.as_str(), c.key))
            .collect::<Vec<_>>(),
        [("id", true), ("v", false), ("big", false)]
    );
    assert_eq!(t.columns[0].type_oid, 23);
    let f = relations
        .values()
        .find(|r| r.name == "f")
        .expect("f described");
    assert_eq!(f.replica_identity, b'f');
    assert!(relations.values().all(|r| r.name != "other"));

    let mut c = changes.iter();
    match c.next() {
        Some(Message::Insert { relation, new }) if *relation == t.oid => {
            assert_eq!((int4(&new[0]), text(&new[1])), (1, "a".into()));
            assert_eq!(text(&new[2]).len(), 96_000);
        }
        other => panic!("expected the insert, got {other:?}"),
    }
    match c.next() {
        // The key is unchanged: no old tuple. The TOASTed column is not resent.
        Some(Message::Update { old: None, new, .. }) => {
            assert_eq!((int4(&new[0]), text(&new[1])), (1, "b".into()));
            assert_eq!(new[2], Cell::Unchanged);
        }
        other => panic!("expected the update, got {other:?}"),
    }
    match c.next() {
        // A key change carries the old key.
        Some(Message::Update {
            old: Some(Old::Key(old)),
            new,
            ..
        }) => {
            assert_eq!(int4(&old[0]), 1);
            assert_eq!((old[1], old[2]), (Cell::Null, Cell::Null));
            assert_eq!(int4(&new[0]), 2);
        }
        other => panic!("expected the key change, got {other:?}"),
    }
    match c.next() {
        Some(Message::Delete {
            old: Old::Key(old), ..
        }) => assert_eq!(int4(&old[0]), 2),
        other => panic!("expected the delete, got {other:?}"),
    }
    match c.next() {
        Some(Message::Insert { relation, .. }) if *relation == f.oid => {}
        other => panic!("expected the insert into f, got {other:?}"),
    }
    match c.next() {
        // REPLICA IDENTITY FULL: the whole old row.
        Some(Message::Update {
            old: Some(Old::Full(old)),
            new,
            ..
        }) => {
            assert_eq!((int4(&old[0]), text(&old[1])), (7, "x".into()));
            assert_eq!(text(&new[1]), "y");
        }
        other => panic!("expected the update of f, got {other:?}"),
    }
    let ids: Vec<i32> = c
        .by_ref()
        .take(3)
        .map(|m| match m {
            Message::Insert { new, .. } | Message::Update { new, .. } => int4(&new[0]),
            other => panic!("expected the transaction's changes, got {other:?}"),
        })
        .collect();
    assert_eq!(ids, [4, 5, 4]);
    match c.next() {
        Some(Message::Message {
            transactional: false,
            prefix: "ferry",
            content,
            ..
        }) => assert_eq!(*content, b"heartbeat"),
        other => panic!("expected the emitted message, got {other:?}"),
    }
    match c.next() {
        Some(Message::Truncate { relations, .. }) => assert_eq!(relations, &[t.oid]),
        other => panic!("expected the truncate, got {other:?}"),
    }
    assert_eq!(
        c.next(),
        None,
        "nothing else, and never the rolled-back row"
    );
}

/// Every row of `batches` keyed by its first column (an int8 key), as one-row slices.
fn by_id(batches: &[RecordBatch], columns: usize) -> BTreeMap<i64, Vec<ArrayRef>> {
    let mut out = BTreeMap::new();
    for b in batches {
        let ids = b.column(0).as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            let row = (0..columns).map(|c| b.column(c).slice(r, 1)).collect();
            out.insert(ids.value(r), row);
        }
    }
    out
}

/// The slot's changes so far as change batches of `table` (the relation `name`), the
/// decoder that made them and the relation's id.
async fn change_batches(
    s: &Stream,
    name: &str,
    table: &ChangeTable,
    batch_rows: usize,
) -> (ChangeDecoder, Vec<(u32, RecordBatch)>, u32) {
    let mut decoder = ChangeDecoder::new(batch_rows);
    let mut batches = Vec::new();
    let mut oid = None;
    for (lsn, raw) in s.changes().await {
        let m = decode(&raw).unwrap_or_else(|e| panic!("at {lsn}: {e}"));
        match &m {
            Message::Relation(r) if r.name == name => {
                oid = Some(r.oid);
                assert!(decoder.bind(r, table.clone()).unwrap().is_none());
            }
            Message::Commit { .. } => batches.extend(decoder.flush().unwrap()),
            _ => batches.extend(decoder.change(&m).unwrap()),
        }
    }
    (decoder, batches, oid.expect("the table was described"))
}

#[tokio::test]
async fn streamed_rows_hold_the_snapshot_readers_values() {
    let Some(s) = Stream::new().await else { return };
    let n = s.name.clone();
    s.exec(&format!(
        "CREATE TABLE {n}.ty (id bigint PRIMARY KEY, i2 smallint, i4 int, n numeric(20,4),
           nu numeric, f4 real, f8 double precision, t text, vc varchar(10), js json, jb jsonb,
           u uuid, b bytea, bo boolean, d date, ts timestamp, tz timestamptz, tm time,
           iv interval);
         CREATE PUBLICATION {n} FOR TABLE {n}.ty;"
    ))
    .await;
    s.exec(&format!(
        "SELECT pg_create_logical_replication_slot('{n}', 'pgoutput')"
    ))
    .await;
    s.exec(&format!(
        "INSERT INTO {n}.ty VALUES
          (1, -32768, -2147483648, -9999999999999999.9999, 123456789012345678901234567890.000000001,
           -0.0, 1.7976931348623157e308, '', 'ten chars!', '{{\"b\": [1, 2.50]}}', '{{\"a\": null}}',
           'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff00'::bytea, false, '0001-01-01',
           '1999-12-31 23:59:59.999999', '2024-02-29 12:00:00+08', '00:00:00', '-1 year 2 days 00:00:00.000001'),
          (2, 32767, 2147483647, 0, 'NaN', 'Infinity', 'NaN', 'été 急 🚀', NULL, '[]', '[1, \"x\"]',
           NULL, '', true, '9999-12-31', '2000-01-01 00:00:00', '1970-01-01 00:00:00+00', '23:59:59.999999', '0'),
          (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
    ))
    .await;

    // The snapshot reader's rows.
    let src = PostgresSource::connect(&url()).await.unwrap();
    let spec = ReadSpec {
        table: Some(format!("{n}.ty")),
        fetch_size: 100,
        ..Default::default()
    };
    let schema = src.schema(&spec).await.unwrap();
    let mut snapshot = Vec::new();
    for split in src.plan(&spec, 1).await.unwrap() {
        let (tx, mut rx) = mpsc::channel(8);
        let (r, batches) = tokio::join!(src.read(&spec, schema.clone(), &split, tx), async {
            let mut v = Vec::new();
            while let Some(b) = rx.recv().await {
                v.push(b);
            }
            v
        });
        r.unwrap();
        snapshot.extend(batches);
    }

    // Then changes: an update leaving the key, a key change, a delete.
    for sql in [
        format!("UPDATE {n}.ty SET t = 'changed' WHERE id = 1"),
        format!("UPDATE {n}.ty SET id = 20 WHERE id = 2"),
        format!("DELETE FROM {n}.ty WHERE id = 3"),
    ] {
        s.exec(&sql).await;
    }

    let table = src.change_table(&spec).await.unwrap();
    assert_eq!(table.key(), [0]);
    let (decoder, batches, oid) = change_batches(&s, "ty", &table, 2).await;
    assert!(batches.iter().all(|(o, _)| *o == oid));
    let layout = decoder.layout(oid).unwrap().clone();
    let batches: Vec<RecordBatch> = batches.into_iter().map(|(_, b)| b).collect();
    // The batch size (2) splits the three-row insert.
    assert_eq!(
        batches
            .iter()
            .map(RecordBatch::num_rows)
            .collect::<Vec<_>>(),
        [2, 1, 1, 1, 1]
    );

    // The three inserted rows hold exactly the snapshot's values, type for type.
    let ncols = schema.fields().len();
    let inserts = by_id(&batches[..2], ncols);
    let snap = by_id(&snapshot, ncols);
    assert_eq!((inserts.len(), snap.len()), (3, 3));
    for (id, row) in &snap {
        let streamed = &inserts[id];
        for (c, (a, b)) in row.iter().zip(streamed).enumerate() {
            assert_eq!(
                a.to_data(),
                b.to_data(),
                "id {id}, column {}",
                schema.field(c).name()
            );
        }
    }
    for b in &batches[..2] {
        let rows = layout.rows(b).unwrap();
        assert!((0..rows.len()).all(|r| rows.op(r) == Op::Insert && !rows.key_changed(r)));
    }

    let update = layout.rows(&batches[2]).unwrap();
    assert_eq!(update.op(0), Op::Update);
    assert!(!update.key_changed(0));
    assert_eq!(update.column(7).as_string::<i32>().value(0), "changed");
    let moved = layout.rows(&batches[3]).unwrap();
    assert!(moved.key_changed(0));
    assert_eq!(moved.column(0).as_primitive::<Int64Type>().value(0), 20);
    assert_eq!(moved.old_key(0).as_primitive::<Int64Type>().value(0), 2);
    let delete = layout.rows(&batches[4]).unwrap();
    assert_eq!(delete.op(0), Op::Delete);
    assert_eq!(delete.column(0).as_primitive::<Int64Type>().value(0), 3);
    assert!((1..ncols).all(|c| delete.column(c).is_null(0)));
}

#[tokio::test]
async fn unchanged_toast_is_marked_not_nulled() {
    let Some(s) = Stream::new().await else { return };
    let n = s.name.clone();
    s.exec(&format!(
        "CREATE TABLE {n}.doc (id bigint PRIMARY KEY, title text, body text);
         CREATE PUBLICATION {n} FOR TABLE {n}.doc;"
    ))
    .await;
    s.exec(&format!(
        "SELECT pg_create_logical_replication_slot('{n}', 'pgoutput')"
    ))
    .await;
    let big = "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 3000) g)";
    s.exec(&format!("INSERT INTO {n}.doc VALUES (1, 'a', {big})"))
        .await;
    s.exec(&format!("UPDATE {n}.doc SET title = 'b' WHERE id = 1"))
        .await;
    let src = PostgresSource::connect(&url()).await.unwrap();
    let spec = ReadSpec {
        table: Some(format!("{n}.doc")),
        fetch_size: 100,
        ..Default::default()
    };
    let table = src.change_table(&spec).await.unwrap();
    let (decoder, batches, _) = change_batches(&s, "doc", &table, 100).await;
    let (oid, update) = &batches[1];
    let rows = decoder.layout(*oid).unwrap().rows(update).unwrap();
    assert_eq!(rows.op(0), Op::Update);
    assert!(rows.unchanged(0, 2), "the body was not sent: unchanged");
    assert!(!rows.unchanged(0, 1));
    assert!(rows.column(2).is_null(0), "its slot holds nothing to write");
}

/// The events of `stream` until `commits` commits, or a timeout.
async fn events(stream: &mut PgChangeStream, commits: usize) -> Vec<StreamEvent> {
    let mut out = Vec::new();
    let mut seen = 0;
    while seen < commits {
        let e = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("the stream went quiet")
            .unwrap()
            .expect("the stream ended");
        match e {
            StreamEvent::Idle { .. } => continue,
            StreamEvent::Commit { .. } => seen += 1,
            StreamEvent::Changes { .. } => {}
        }
        out.push(e);
    }
    out
}

/// Each transaction's changes of the streamed table as (op, id) pairs, one Vec per commit.
fn transactions(events: &[StreamEvent]) -> Vec<Vec<(Op, i64)>> {
    let mut out = vec![Vec::new()];
    for e in events {
        match e {
            StreamEvent::Changes { table, batch, .. } => {
                assert!(table.ends_with(".acc"), "{table}");
                let ops = batch
                    .column_by_name(ferry_change::OP)
                    .unwrap()
                    .as_primitive::<arrow_array::types::UInt8Type>();
                let ids = batch.column(0).as_primitive::<Int64Type>();
                for r in 0..batch.num_rows() {
                    let op = match ops.value(r) {
                        b'I' => Op::Insert,
                        b'U' => Op::Update,
                        _ => Op::Delete,
                    };
                    out.last_mut().unwrap().push((op, ids.value(r)));
                }
            }
            StreamEvent::Commit { .. } => out.push(Vec::new()),
            StreamEvent::Idle { .. } => {}
        }
    }
    out.pop();
    out
}

fn commit_end(events: &[StreamEvent], n: usize) -> u64 {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Commit { end_lsn, .. } => Some(*end_lsn),
            _ => None,
        })
        .nth(n)
        .unwrap()
}

#[tokio::test]
async fn a_stream_resumes_after_the_last_acknowledged_commit() {
    let Some(s) = Stream::new().await else { return };
    let n = s.name.clone();
    s.exec(&format!(
        "CREATE TABLE {n}.acc (id bigint PRIMARY KEY, v text);
         CREATE TABLE {n}.skip (id int PRIMARY KEY);
         CREATE PUBLICATION {n} FOR TABLE {n}.acc, {n}.skip;"
    ))
    .await;
    s.exec(&format!(
        "SELECT pg_create_logical_replication_slot('{n}', 'pgoutput')"
    ))
    .await;
    s.exec(&format!("INSERT INTO {n}.acc VALUES (1, 'one')"))
        .await;
    let mut tx = s.pool.begin().await.unwrap();
    for sql in [
        format!("INSERT INTO {n}.acc VALUES (2, 'two')"),
        format!("UPDATE {n}.acc SET v = 'uno' WHERE id = 1"),
    ] {
        sqlx::raw_sql(&sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    s.exec(&format!("INSERT INTO {n}.skip VALUES (1)")).await;
    s.exec(&format!("DELETE FROM {n}.acc WHERE id = 2")).await;

    let src = PostgresSource::connect(&url()).await.unwrap();
    let spec = ReadSpec {
        table: Some(format!("{n}.acc")),
        ..Default::default()
    };
    let start = |src: PostgresSource, spec: ReadSpec| {
        let n = n.clone();
        async move {
            PgChangeStream::start(&src, &url(), &n, &n, 0, vec![spec], 1000)
                .await
                .unwrap()
        }
    };
    let mut stream = start(src.clone(), spec.clone()).await;
    let first = events(&mut stream, 4).await;
    // The table not asked for commits an empty transaction here.
    assert_eq!(
        transactions(&first),
        [
            vec![(Op::Insert, 1)],
            vec![(Op::Insert, 2), (Op::Update, 1)],
            vec![],
            vec![(Op::Delete, 2)]
        ]
    );
    // Only the first two are applied: the slot may move past them, not further.
    let acked = commit_end(&first, 1);
    stream.ack(acked);
    stream.stop().await.unwrap();
    let confirmed: String = sqlx::query_scalar(&format!(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '{n}'"
    ))
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(
        pgwire_lsn(&confirmed),
        acked,
        "the slot stands at the acknowledged commit"
    );

    // A new stream (another process, after a crash) goes on from there: nothing twice.
    let mut again = start(src, spec).await;
    let rest = events(&mut again, 2).await;
    assert_eq!(transactions(&rest), [vec![], vec![(Op::Delete, 2)]]);
    again.stop().await.unwrap();
}

fn pgwire_lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

#[tokio::test]
async fn applied_changes_make_the_target_equal_the_source() {
    let Some(s) = Stream::new().await else { return };
    let n = s.name.clone();
    let ddl = |t: &str| {
        format!(
            "CREATE TABLE {n}.{t} (id bigint PRIMARY KEY, v text, big text NOT NULL, \
             amount numeric(10,2), at timestamptz);"
        )
    };
    s.exec(&format!(
        "{}{} CREATE PUBLICATION {n} FOR TABLE {n}.src;",
        ddl("src"),
        ddl("dst")
    ))
    .await;
    s.exec(&format!(
        "SELECT pg_create_logical_replication_slot('{n}', 'pgoutput')"
    ))
    .await;
    let big = "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 3000) g)";
    let mut commits = 0;
    for sql in [
        format!(
            "INSERT INTO {n}.src SELECT g, 'v' || g, {big}, g * 1.25, now() FROM generate_series(1, 5) g"
        ),
        format!("UPDATE {n}.src SET v = 'changed', amount = NULL WHERE id = 1"),
        // The TOASTed column is not sent: it must stay as it is in the target.
        format!("UPDATE {n}.src SET v = 'toast kept' WHERE id = 2"),
        format!("UPDATE {n}.src SET id = 30 WHERE id = 3"),
        format!("DELETE FROM {n}.src WHERE id = 4"),
    ] {
        s.exec(&sql).await;
        commits += 1;
    }
    let mut tx = s.pool.begin().await.unwrap();
    for sql in [
        format!("INSERT INTO {n}.src VALUES (6, 'six', 'x', 6, NULL)"),
        format!("UPDATE {n}.src SET v = 'SIX' WHERE id = 6"),
        format!("UPDATE {n}.src SET id = 7 WHERE id = 6"),
        format!("DELETE FROM {n}.src WHERE id = 5"),
        format!("INSERT INTO {n}.src VALUES (5, 'five again', 'y', 5, now())"),
    ] {
        sqlx::raw_sql(&sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    commits += 1;
    let mut rolled = s.pool.begin().await.unwrap();
    sqlx::raw_sql(&format!("DELETE FROM {n}.src"))
        .execute(&mut *rolled)
        .await
        .unwrap();
    rolled.rollback().await.unwrap();

    let src = PostgresSource::connect(&url()).await.unwrap();
    let sink = PostgresSink::connect(&url()).await.unwrap();
    let rspec = ReadSpec {
        table: Some(format!("{n}.src")),
        ..Default::default()
    };
    let wspec = WriteSpec {
        table: format!("{n}.dst"),
        checkpoint_table: Some(format!("{n}.ferry_checkpoints")),
        ..Default::default()
    };
    let layout =
        ferry_change::Layout::new(src.change_table(&rspec).await.unwrap().schema(), vec![0])
            .unwrap();
    let mut applier = sink
        .change_target(&[(wspec.clone(), layout)], "job", 0)
        .await
        .unwrap();
    let mut stream = PgChangeStream::start(&src, &url(), &n, &n, 0, vec![rspec], 2)
        .await
        .unwrap();
    let (mut seen, mut rows) = (0, 0u64);
    while seen < commits {
        let e = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("the stream went quiet")
            .unwrap()
            .expect("the stream ended");
        match e {
            StreamEvent::Changes { batch, .. } => {
                rows += batch.num_rows() as u64;
                applier.apply(0, &batch).await.unwrap();
            }
            StreamEvent::Commit { end_lsn, .. } => {
                seen += 1;
                let cp = Checkpoint {
                    seq: seen as u64,
                    rows,
                    written: rows,
                    position: Some(Position::int(end_lsn.into())),
                };
                applier.commit(&cp).await.unwrap();
                stream.ack(end_lsn);
            }
            StreamEvent::Idle { .. } => {}
        }
    }
    stream.stop().await.unwrap();

    let table = |t: &str| {
        format!("SELECT coalesce(string_agg(x::text, E'\\n' ORDER BY id), '') FROM {n}.{t} x")
    };
    let want: String = sqlx::query_scalar(&table("src"))
        .fetch_one(&s.pool)
        .await
        .unwrap();
    let got: String = sqlx::query_scalar(&table("dst"))
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(got, want);
    let ids: Vec<i64> = sqlx::query_scalar(&format!("SELECT id FROM {n}.dst ORDER BY id"))
        .fetch_all(&s.pool)
        .await
        .unwrap();
    assert_eq!(ids, [1, 2, 5, 7, 30]);
    let kept: i32 = sqlx::query_scalar(&format!("SELECT length(big) FROM {n}.dst WHERE id = 2"))
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(kept, 96_000, "the unchanged TOASTed value is still there");
    // The stream's position is in the target, written with the last transaction.
    let cp = sink.checkpoint(&wspec, "job", 0).await.unwrap().unwrap();
    assert_eq!(cp.seq, commits as u64);
    assert!(matches!(
        cp.position.as_ref().map(|p| p.values()),
        Some([KeyValue::Int(_)])
    ));
}
