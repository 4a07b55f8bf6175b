//! SQLite reader and writer against temporary database files (no server needed).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use ferry_connectors::sqlite::{SqliteSink, SqliteSource};
use ferry_connectors::{
    Checkpoint, ConnectorError, ReadSpec, Sink, Source, Split, SplitBounds, WriteMode, WriteSpec,
};
use tokio::sync::mpsc;

fn url(p: &Path) -> String {
    format!("sqlite://{}", p.display())
}

async fn exec(path: &Path, sql: &str) {
    let sink = SqliteSink::connect(&url(path)).await.unwrap();
    let spec = WriteSpec {
        table: "unused".into(),
        ..Default::default()
    };
    // preSql-like: run through finish() with post_sql.
    let spec = WriteSpec {
        post_sql: vec![sql.to_string()],
        ..spec
    };
    sink.finish(&spec).await.unwrap();
}

fn table_spec(table: &str) -> ReadSpec {
    ReadSpec {
        table: Some(table.into()),
        fetch_size: 1000,
        ..Default::default()
    }
}

async fn read_split(
    src: &SqliteSource,
    spec: &ReadSpec,
    schema: SchemaRef,
    split: &Split,
) -> Result<Vec<RecordBatch>, ConnectorError> {
    let (tx, mut rx) = mpsc::channel(64);
    let n = src.read(spec, schema, split, tx).await?;
    let mut out = Vec::new();
    while let Some(b) = rx.recv().await {
        out.push(b);
    }
    assert_eq!(
        out.iter().map(|b| b.num_rows() as u64).sum::<u64>(),
        n,
        "row count"
    );
    Ok(out)
}

async fn read_all(
    src: &SqliteSource,
    spec: &ReadSpec,
) -> Result<(SchemaRef, RecordBatch), ConnectorError> {
    let schema = src.schema(spec).await?;
    let mut batches = read_split(src, spec, schema.clone(), &Split::all()).await?;
    assert!(batches.len() <= 1, "fetch_size 1000 gives one batch");
    let b = batches
        .pop()
        .unwrap_or_else(|| RecordBatch::new_empty(schema.clone()));
    Ok((schema, b))
}

const SOURCE_DDL: &str = r#"
CREATE TABLE src (
  id INTEGER PRIMARY KEY, i BIGINT, r REAL, t TEXT, v VARCHAR(10), b BLOB, bo BOOLEAN,
  d DATE, ts DATETIME, dx DECIMAL TEXT(38,9), dn NUMERIC(10,2), j JSON, u
);
INSERT INTO src VALUES
 (1, -9223372036854775808, -1.5e300, 'héllo 🦀', 'short', x'00ff00', 1, '1970-01-01',
  '1969-12-31 23:59:59.999999', '-12345678901234567890123456789.123456789', 12.5, '{"a":[1,2]}', 'x'),
 (2, 9223372036854775807, 0.1, '', '', x'', 0, '2038-01-19', '2024-02-29 12:34:56.000001',
  '0.000000001', 3, '123', ''),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 0, 5, 'a''b"c', 'tenchars!!', x'0000', 1, '9999-12-31', '0001-01-01 00:00:00',
  '99999999999999999999999999999', '-0.01', 'null', 'z');
"#;

#[tokio::test]
async fn round_trip_every_type() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.db");
    let b = dir.path().join("sub_b.db");
    exec(&a, SOURCE_DDL).await;

    let src = SqliteSource::connect(&url(&a)).await.unwrap();
    let spec = table_spec("src");
    let (schema, batch) = read_all(&src, &spec).await.unwrap();
    let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
    assert_eq!(
        types,
        vec![
            &DataType::Int64,
            &DataType::Int64,
            &DataType::Float64,
            &DataType::Utf8,
            &DataType::Utf8,
            &DataType::Binary,
            &DataType::Boolean,
            &DataType::Date32,
            &DataType::Timestamp(TimeUnit::Microsecond, None),
            &DataType::Decimal128(38, 9),
            &DataType::Decimal128(10, 2),
            &DataType::Utf8,
            &DataType::Utf8,
        ]
    );
    assert_eq!(
        schema.field(4).metadata().get("ferry.max_length"),
        Some(&"10".to_string())
    );
    assert_eq!(
        schema.field(11).metadata().get("ferry.type"),
        Some(&"json".to_string())
    );
    assert_eq!(batch.num_rows(), 4);

    // Spot checks against independent expectations.
    let i = batch.column(1).as_primitive::<Int64Type>();
    assert_eq!(i.value(0), i64::MIN);
    assert_eq!(i.value(1), i64::MAX);
    let t = batch.column(3).as_string::<i32>();
    assert_eq!(t.value(0), "héllo 🦀");
    assert_eq!(t.value(1), "");
    assert!(t.is_valid(1) && t.is_null(2));
    let bl = batch.column(5).as_binary::<i32>();
    assert_eq!(bl.value(0), &[0, 255, 0]);
    assert_eq!(bl.value(1), b"");
    assert!(bl.is_valid(1));
    let d = batch
        .column(7)
        .as_primitive::<arrow_array::types::Date32Type>();
    let epoch = time::Date::from_calendar_date(1970, time::Month::January, 1).unwrap();
    let d2038 = time::Date::from_calendar_date(2038, time::Month::January, 19).unwrap();
    assert_eq!(d.value(0), 0);
    assert_eq!(d.value(1) as i64, (d2038 - epoch).whole_days());
    let ts = batch
        .column(8)
        .as_primitive::<arrow_array::types::TimestampMicrosecondType>();
    assert_eq!(ts.value(0), -1);
    let leap = time::PrimitiveDateTime::new(
        time::Date::from_calendar_date(2024, time::Month::February, 29).unwrap(),
        time::Time::from_hms_micro(12, 34, 56, 1).unwrap(),
    )
    .assume_utc();
    assert_eq!(
        ts.value(1) as i128,
        leap.unix_timestamp_nanos() / 1000,
        "micros kept"
    );
    let dx = batch
        .column(9)
        .as_primitive::<arrow_array::types::Decimal128Type>();
    assert_eq!(dx.value(0), -12345678901234567890123456789123456789i128);
    assert_eq!(dx.value(1), 1);
    let dn = batch
        .column(10)
        .as_primitive::<arrow_array::types::Decimal128Type>();
    assert_eq!(
        (dn.value(0), dn.value(1), dn.value(3)),
        (1250, 300, -1),
        "REAL / INTEGER storage parsed exactly"
    );
    let j = batch.column(11).as_string::<i32>();
    assert_eq!(j.value(1), "123");
    let bo = batch.column(6).as_boolean();
    assert!(bo.value(0) && !bo.value(1) && bo.is_null(2));

    // Arrow → SQLite (created table) → Arrow again, cell by cell.
    let sink = SqliteSink::connect(&url(&b)).await.unwrap();
    let wspec = WriteSpec {
        table: "dst".into(),
        create_table: true,
        ..Default::default()
    };
    sink.prepare(&wspec, &schema).await.unwrap();
    let mut w = sink.writer(&wspec, &schema).await.unwrap();
    let o = w.write(&batch).await.unwrap();
    assert_eq!((o.written, o.dirty.len()), (4, 0), "{:?}", o.dirty);
    w.close().await.unwrap();
    sink.finish(&wspec).await.unwrap();

    let dst = SqliteSource::connect(&url(&b)).await.unwrap();
    let (schema2, batch2) = read_all(&dst, &table_spec("dst")).await.unwrap();
    for (f1, f2) in schema.fields().iter().zip(schema2.fields()) {
        assert_eq!(f1.data_type(), f2.data_type(), "{}", f1.name());
        assert_eq!(f1.metadata(), f2.metadata(), "{}", f1.name());
    }
    for c in 0..batch.num_columns() {
        let (x, y): (&ArrayRef, &ArrayRef) = (batch.column(c), batch2.column(c));
        for r in 0..batch.num_rows() {
            assert_eq!(
                x.slice(r, 1).to_data(),
                y.slice(r, 1).to_data(),
                "column {} row {r}",
                schema.field(c).name()
            );
        }
    }
}

#[tokio::test]
async fn misfit_values_fail_the_read() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.db");
    exec(
        &a,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER); \
         INSERT INTO t VALUES (1, 5), (7, 'abc'); \
         CREATE TABLE d (x DECIMAL(5,1)); INSERT INTO d VALUES (1.25); \
         CREATE TABLE u (x); INSERT INTO u VALUES ('a'), (3);",
    )
    .await;
    let src = SqliteSource::connect(&url(&a)).await.unwrap();
    let e = read_all(&src, &table_spec("t")).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ConnectorError::Value { .. }), "{msg}");
    assert!(msg.contains("`n`") && msg.contains("rowid 7"), "{msg}");

    let e = read_all(&src, &table_spec("d")).await.unwrap_err();
    assert!(e.to_string().contains("`x`"), "{e}");

    let e = read_all(&src, &table_spec("u")).await.unwrap_err();
    assert!(
        matches!(&e, ConnectorError::UnsupportedType { column, .. } if column == "x"),
        "{e}"
    );

    let missing = dir.path().join("nope.db");
    let e = SqliteSource::connect(&url(&missing)).await.err().unwrap();
    assert!(e.to_string().contains("nope.db"), "{e}");
    assert!(!missing.exists());
}

#[tokio::test]
async fn splits_with_null_keys_read_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.db");
    exec(
        &a,
        "CREATE TABLE t (k INTEGER, n INTEGER NOT NULL); \
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200) \
         INSERT INTO t SELECT CASE WHEN x % 7 = 0 THEN NULL ELSE x * 3 - 100 END, x FROM c;",
    )
    .await;
    let src = SqliteSource::connect(&url(&a)).await.unwrap();
    let spec = ReadSpec {
        split_pk: Some("k".into()),
        fetch_size: 16,
        ..table_spec("t")
    };
    let schema = src.schema(&spec).await.unwrap();
    let splits = src.plan(&spec, 4).await.unwrap();
    assert_eq!(splits.len(), 5);
    assert!(matches!(
        splits.last().unwrap().bounds,
        SplitBounds::NullKey { .. }
    ));
    let mut seen: Vec<i64> = Vec::new();
    for s in &splits {
        for b in read_split(&src, &spec, schema.clone(), s).await.unwrap() {
            assert!(b.num_rows() <= 16);
            seen.extend(b.column(1).as_primitive::<Int64Type>().values().iter());
        }
    }
    seen.sort();
    assert_eq!(seen, (1..=200).collect::<Vec<i64>>());

    // querySql: declared types of its columns.
    let qspec = ReadSpec {
        query_sql: Some("SELECT n, k FROM t WHERE k IS NOT NULL ORDER BY n".into()),
        fetch_size: 1000,
        ..Default::default()
    };
    let (qs, qb) = read_all(&src, &qspec).await.unwrap();
    assert_eq!(qs.field(0).data_type(), &DataType::Int64);
    assert_eq!(qs.field(0).name(), "n");
    assert_eq!(qb.num_rows(), 200 - 28);
}

fn kv_batch(schema: &SchemaRef, ids: &[i64], vals: &[&str]) -> RecordBatch {
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(vals.to_vec())),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn checkpoints_commit_with_the_rows_and_are_kept_per_job_and_split() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("cp.db");
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Utf8, true),
    ]));
    let sink = SqliteSink::connect(&url(&b)).await.unwrap();
    let spec = WriteSpec {
        table: "kv".into(),
        create_table: true,
        checkpoint_table: Some("my_checkpoints".into()),
        ..Default::default()
    };
    sink.prepare(&spec, &schema).await.unwrap();
    assert!(sink.records_checkpoints(&spec));
    let cp = |seq, rows, written, key: i128| Checkpoint {
        seq,
        rows,
        written,
        position: Some(ferry_connectors::Position::int(key)),
    };
    let mut w = sink.task_writer(&spec, &schema, "j1", 3).await.unwrap();
    w.write_at(&kv_batch(&schema, &[1, 2], &["a", "b"]), &cp(1, 2, 0, 2))
        .await
        .unwrap();
    // An empty write still moves the checkpoint (rows that were all dirty).
    let empty = kv_batch(&schema, &[], &[]);
    w.write_at(&empty, &cp(2, 5, 2, 9)).await.unwrap();
    drop(w);
    assert_eq!(
        sink.checkpoint(&spec, "j1", 3).await.unwrap(),
        Some(cp(2, 5, 2, 9))
    );
    assert_eq!(sink.checkpoint(&spec, "j1", 4).await.unwrap(), None);
    assert_eq!(sink.checkpoint(&spec, "j2", 3).await.unwrap(), None);
    // A plain writer records nothing.
    let mut w = sink.writer(&spec, &schema).await.unwrap();
    w.write_at(&kv_batch(&schema, &[7], &["x"]), &cp(9, 9, 9, 9))
        .await
        .unwrap();
    w.close().await.unwrap();
    assert_eq!(
        sink.checkpoint(&spec, "j1", 3).await.unwrap(),
        Some(cp(2, 5, 2, 9))
    );
    sink.forget(&spec, "j1").await.unwrap();
    assert_eq!(sink.checkpoint(&spec, "j1", 3).await.unwrap(), None);
}

#[tokio::test]
async fn upsert_and_replace() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b.db");
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Utf8, true),
    ]));
    let sink = SqliteSink::connect(&url(&b)).await.unwrap();
    let spec = WriteSpec {
        table: "kv".into(),
        create_table: true,
        keys: vec!["id".into()],
        write_mode: WriteMode::Update,
        ..Default::default()
    };
    sink.prepare(&spec, &schema).await.unwrap();
    let mut w = sink.writer(&spec, &schema).await.unwrap();
    w.write(&kv_batch(&schema, &[1, 2], &["a", "b"]))
        .await
        .unwrap();
    let o = w
        .write(&kv_batch(&schema, &[2, 3, 3], &["B", "c", "C"]))
        .await
        .unwrap();
    assert_eq!(o.written, 3);
    w.close().await.unwrap();
    let rspec = WriteSpec {
        write_mode: WriteMode::Replace,
        keys: vec![],
        ..spec.clone()
    };
    let mut w = sink.writer(&rspec, &schema).await.unwrap();
    w.write(&kv_batch(&schema, &[1], &["A"])).await.unwrap();
    w.close().await.unwrap();

    let src = SqliteSource::connect(&url(&b)).await.unwrap();
    let (_, got) = read_all(
        &src,
        &ReadSpec {
            query_sql: Some("SELECT id, v FROM kv ORDER BY id".into()),
            fetch_size: 1000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let m: HashMap<i64, String> = (0..got.num_rows())
        .map(|r| {
            (
                got.column(0).as_primitive::<Int64Type>().value(r),
                got.column(1).as_string::<i32>().value(r).to_string(),
            )
        })
        .collect();
    assert_eq!(m.len(), 3);
    assert_eq!((&m[&1][..], &m[&2][..], &m[&3][..]), ("A", "B", "C"));
}

#[tokio::test]
async fn dirty_rows_are_reported_and_the_rest_written() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b.db");
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("u", DataType::UInt64, true),
        Field::new("s", DataType::Utf8, false).with_metadata(HashMap::from([(
            "ferry.max_length".to_string(),
            "3".to_string(),
        )])),
    ]));
    let sink = SqliteSink::connect(&url(&b)).await.unwrap();
    let spec = WriteSpec {
        table: "d".into(),
        create_table: true,
        ..Default::default()
    };
    sink.prepare(&spec, &schema).await.unwrap();
    // A NOT NULL violation needs a nullable source column: reuse the table with a
    // nullable schema for the writer.
    let wschema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("u", DataType::UInt64, true),
        Field::new("s", DataType::Utf8, true),
    ]));
    let mut w = sink.writer(&spec, &wschema).await.unwrap();
    let batch = RecordBatch::try_new(
        wschema.clone(),
        vec![
            Arc::new(UInt64Array::from(vec![
                Some(1),
                Some(u64::MAX),
                Some(i64::MAX as u64),
                None,
                Some(5),
            ])),
            Arc::new(StringArray::from(vec![
                Some("ok"),
                Some("x"),
                Some("longer than three"),
                Some("n"),
                None,
            ])),
        ],
    )
    .unwrap();
    let o = w.write(&batch).await.unwrap();
    w.close().await.unwrap();
    assert_eq!(o.written, 3);
    assert_eq!(o.dirty.len(), 2);
    assert_eq!(o.dirty[0].row, 1);
    assert_eq!(o.dirty[0].column.as_deref(), Some("u"));
    assert_eq!(o.dirty[0].record["u"], serde_json::json!(u64::MAX));
    assert_eq!(o.dirty[1].row, 4);
    assert_eq!(o.dirty[1].column.as_deref(), Some("s"));

    let src = SqliteSource::connect(&url(&b)).await.unwrap();
    let (_, got) = read_all(&src, &table_spec("d")).await.unwrap();
    let u = got.column(0).as_primitive::<Int64Type>();
    assert_eq!(u.value(1), i64::MAX);
    assert!(u.is_null(2));
    // SQLite does not enforce VARCHAR(n): the long value is kept whole.
    assert_eq!(
        got.column(1).as_string::<i32>().value(1),
        "longer than three"
    );
}

#[tokio::test]
async fn a_source_cannot_write_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.db");
    exec(
        &a,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a')",
    )
    .await;
    let src = SqliteSource::connect(&url(&a)).await.unwrap();
    for sql in [
        "INSERT INTO t VALUES (2, 'b')",
        "CREATE TABLE w (id INTEGER)",
        "DROP TABLE t",
    ] {
        let e = sqlx::query(sql).execute(src.pool()).await.unwrap_err();
        assert!(e.to_string().contains("readonly"), "{sql}: {e}");
    }
    let other = dir.path().join("other.db");
    for qs in [
        "select 1 as id; DROP TABLE t".to_string(),
        format!(
            "select 1 as id; ATTACH DATABASE '{}' AS x; CREATE TABLE x.w (id INTEGER)",
            other.display()
        ),
    ] {
        let spec = ReadSpec {
            query_sql: Some(qs.clone()),
            ..Default::default()
        };
        assert!(src.schema(&spec).await.is_err(), "{qs}");
    }
    assert!(!other.exists(), "ATTACH created a file");
    let (_, batch) = read_all(&src, &table_spec("t")).await.unwrap();
    assert_eq!(batch.num_rows(), 1);
}

/// A change row over `(id, v)`: its operation, id, v, whether v was left unsent, old id.
type Change<'a> = (ferry_change::Op, i64, Option<&'a str>, bool, Option<i64>);

/// A change batch of `rows`.
fn changes(layout: &ferry_change::Layout, rows: &[Change<'_>]) -> RecordBatch {
    let mut meta = ferry_change::Meta::new(layout);
    for r in rows {
        meta.push(r.0, if r.3 { &[1] } else { &[] });
    }
    layout
        .assemble(
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.2))),
            ],
            meta,
            vec![Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.4)))],
        )
        .unwrap()
}

/// A change target applies a transaction's runs in order (inserts, updates, key changes,
/// deletes, an update that did not send a value), commits it with its position, rolls an
/// unfinished one back, and fails on an update of a missing row unless it catches up after a
/// snapshot.
#[tokio::test]
async fn a_change_target_applies_transactions_by_key() {
    use ferry_change::Op::{Delete, Insert, Update};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let sink = SqliteSink::connect(&url(&path)).await.unwrap();
    let read = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Utf8, true),
    ]);
    let spec = WriteSpec {
        table: "t".into(),
        create_table: true,
        ..Default::default()
    };
    sink.prepare(&spec, &Arc::new(read.clone())).await.unwrap();
    exec(&path, "CREATE UNIQUE INDEX t_id ON t (id)").await;
    let layout = ferry_change::Layout::new(&read, vec![0]).unwrap();
    let mut target = sink
        .change_target(&[(spec.clone(), layout.clone())], "job", 0)
        .await
        .unwrap();
    let batch = changes(
        &layout,
        &[
            (Insert, 1, Some("a"), false, None),
            (Insert, 2, Some("b"), false, None),
            (Insert, 3, Some("c"), false, None),
            (Update, 1, Some("a2"), false, None),
            (Update, 2, None, true, None),
            (Update, 20, Some("moved"), false, Some(2)),
            (Update, 30, None, true, Some(3)),
            (Delete, 1, None, false, None),
            (Insert, 1, Some("again"), false, None),
        ],
    );
    target.apply(0, &batch).await.unwrap();
    let cp = Checkpoint {
        seq: 1,
        rows: 9,
        written: 9,
        position: Some(ferry_connectors::Position::int(42)),
    };
    target.commit(&cp).await.unwrap();
    let rows = || async {
        let src = SqliteSource::connect(&url(&path)).await.unwrap();
        let (_, b) = read_all(&src, &table_spec("t")).await.unwrap();
        let ids = b.column(0).as_primitive::<Int64Type>().values().to_vec();
        let vs: Vec<Option<String>> = b
            .column(1)
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect();
        let mut all: Vec<_> = ids.into_iter().zip(vs).collect();
        all.sort();
        all
    };
    let want = vec![
        (1, Some("again".to_string())),
        (20, Some("moved".to_string())),
        (30, Some("c".to_string())),
    ];
    assert_eq!(rows().await, want);
    let recorded = sink.checkpoint(&spec, "job", 0).await.unwrap().unwrap();
    assert_eq!(recorded.position, cp.position);

    // An unfinished transaction leaves nothing.
    let batch = changes(&layout, &[(Insert, 99, Some("never"), false, None)]);
    target.apply(0, &batch).await.unwrap();
    target.rollback().await;
    assert_eq!(rows().await, want);

    // An update that did not send `v` and finds no row: the target cannot know `v`.
    let missing = changes(&layout, &[(Update, 5, None, true, None)]);
    let e = target.apply(0, &missing).await.unwrap_err().to_string();
    assert!(e.contains("needs a new snapshot"), "{e}");
    target.rollback().await;
    // Catching up after a snapshot, it is skipped (the row's delete follows).
    target.tolerate_missing(true);
    target.apply(0, &missing).await.unwrap();
    target
        .commit(&Checkpoint {
            seq: 2,
            ..cp.clone()
        })
        .await
        .unwrap();
    assert_eq!(rows().await, want);
}
