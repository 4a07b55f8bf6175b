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

use ferry_connectors::postgres::pgoutput::{decode, Cell, Message, Old};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool, Row};

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
