//! MySQL / MariaDB reader and writer against a real server.
//!
//! Server: env `FERRY_TEST_MYSQL` (default `mysql://root@127.0.0.1:3306/test`). Each test
//! works in its own database, dropped at the end (also on failure). Unreachable server:
//! SKIPPED, or a panic when `CI=true`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{
    Array, ArrayRef, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow_buffer::i256;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use ferry_connectors::mysql::{MySqlReadOptions, MySqlSink, MySqlSource, ZeroDate};
use ferry_connectors::{
    Checkpoint, ConnectorError, ReadSpec, Sink, Source, Split, WriteMode, WriteSpec,
};
use sqlx::{Connection, Executor, MySqlConnection, Row};
use tokio::sync::mpsc;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A database of its own, dropped on Drop.
struct TestDb {
    name: String,
    admin_url: String,
    url: String,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = MySqlConnection::connect(&url).await {
                    let _ = c.execute("SET SESSION lock_wait_timeout = 20").await;
                    let _ = c
                        .execute(format!("DROP DATABASE IF EXISTS `{name}`").as_str())
                        .await;
                }
            });
        })
        .join();
    }
}

impl TestDb {
    async fn conn(&self) -> MySqlConnection {
        MySqlConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }
}

async fn setup() -> Option<TestDb> {
    let base = std::env::var("FERRY_TEST_MYSQL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let (no_query, query) = match base.split_once('?') {
        Some((a, q)) => (a.to_string(), format!("?{q}")),
        None => (base.clone(), String::new()),
    };
    let scheme_end = no_query.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match no_query[scheme_end..].find('/') {
        Some(i) => no_query[..scheme_end + i].to_string(),
        None => no_query.clone(),
    };
    let admin_url = format!("{root}/{query}");
    let connected =
        tokio::time::timeout(Duration::from_secs(5), MySqlConnection::connect(&admin_url)).await;
    let mut admin = match connected {
        Ok(Ok(c)) => c,
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timeout".into(),
            };
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("MariaDB/MySQL at {root} is unreachable ({why}); set FERRY_TEST_MYSQL");
            }
            eprintln!("SKIPPED: MariaDB/MySQL at {root} is unreachable ({why})");
            return None;
        }
    };
    let name = format!(
        "ferry_t_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    admin
        .execute(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4").as_str())
        .await
        .unwrap();
    Some(TestDb {
        url: format!("{root}/{name}{query}"),
        admin_url,
        name,
    })
}

fn read_spec(table: &str) -> ReadSpec {
    ReadSpec {
        table: Some(table.into()),
        fetch_size: 3,
        ..Default::default()
    }
}

async fn read_split(
    src: &MySqlSource,
    spec: &ReadSpec,
    schema: SchemaRef,
    split: &Split,
) -> Result<Vec<RecordBatch>, ConnectorError> {
    let (tx, mut rx) = mpsc::channel(1024);
    let n = src.read(spec, schema, split, tx).await?;
    let mut out = Vec::new();
    while let Some(b) = rx.recv().await {
        out.push(b);
    }
    assert_eq!(out.iter().map(|b| b.num_rows() as u64).sum::<u64>(), n);
    Ok(out)
}

async fn read_all(
    src: &MySqlSource,
    spec: &ReadSpec,
) -> Result<(SchemaRef, RecordBatch), ConnectorError> {
    let schema = src.schema(spec).await?;
    let batches = read_split(src, spec, schema.clone(), &Split::all()).await?;
    Ok((schema.clone(), arrow_select_concat(&schema, &batches)))
}

/// Concatenates batches (a tiny stand-in for arrow-select's concat_batches).
fn arrow_select_concat(schema: &SchemaRef, batches: &[RecordBatch]) -> RecordBatch {
    let cols = (0..schema.fields().len())
        .map(|i| {
            let arrays: Vec<ArrayRef> = batches.iter().map(|b| b.column(i).clone()).collect();
            concat(&arrays, schema.field(i).data_type())
        })
        .collect();
    RecordBatch::try_new(schema.clone(), cols).unwrap()
}

fn concat(arrays: &[ArrayRef], dt: &DataType) -> ArrayRef {
    use arrow_array::builder::*;
    macro_rules! prim {
        ($t:ty, $b:ty) => {{
            let mut b = <$b>::new();
            for a in arrays {
                let a = a.as_primitive::<$t>();
                for i in 0..a.len() {
                    if a.is_null(i) {
                        b.append_null()
                    } else {
                        b.append_value(a.value(i))
                    }
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    match dt {
        DataType::Int8 => prim!(Int8Type, Int8Builder),
        DataType::Int16 => prim!(Int16Type, Int16Builder),
        DataType::Int32 => prim!(Int32Type, Int32Builder),
        DataType::Int64 => prim!(Int64Type, Int64Builder),
        DataType::UInt8 => prim!(UInt8Type, UInt8Builder),
        DataType::UInt16 => prim!(UInt16Type, UInt16Builder),
        DataType::UInt32 => prim!(UInt32Type, UInt32Builder),
        DataType::UInt64 => prim!(UInt64Type, UInt64Builder),
        DataType::Float32 => prim!(Float32Type, Float32Builder),
        DataType::Float64 => prim!(Float64Type, Float64Builder),
        DataType::Date32 => prim!(Date32Type, Date32Builder),
        DataType::Duration(_) => prim!(DurationMicrosecondType, DurationMicrosecondBuilder),
        DataType::Decimal128(p, s) => {
            let a = prim!(Decimal128Type, Decimal128Builder);
            Arc::new(
                a.as_primitive::<Decimal128Type>()
                    .clone()
                    .with_precision_and_scale(*p, *s)
                    .unwrap(),
            )
        }
        DataType::Decimal256(p, s) => {
            let a = prim!(Decimal256Type, Decimal256Builder);
            Arc::new(
                a.as_primitive::<Decimal256Type>()
                    .clone()
                    .with_precision_and_scale(*p, *s)
                    .unwrap(),
            )
        }
        DataType::Timestamp(_, tz) => {
            let a = prim!(TimestampMicrosecondType, TimestampMicrosecondBuilder);
            Arc::new(
                a.as_primitive::<TimestampMicrosecondType>()
                    .clone()
                    .with_timezone_opt(tz.clone()),
            )
        }
        DataType::Utf8 => {
            let mut b = StringBuilder::new();
            for a in arrays {
                let a = a.as_string::<i32>();
                for i in 0..a.len() {
                    if a.is_null(i) {
                        b.append_null()
                    } else {
                        b.append_value(a.value(i))
                    }
                }
            }
            Arc::new(b.finish())
        }
        DataType::Binary => {
            let mut b = BinaryBuilder::new();
            for a in arrays {
                let a = a.as_binary::<i32>();
                for i in 0..a.len() {
                    if a.is_null(i) {
                        b.append_null()
                    } else {
                        b.append_value(a.value(i))
                    }
                }
            }
            Arc::new(b.finish())
        }
        other => panic!("concat: {other}"),
    }
}

async fn write_all(
    sink: &MySqlSink,
    spec: &WriteSpec,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> (u64, Vec<ferry_connectors::DirtyRecord>) {
    sink.prepare(spec, schema).await.unwrap();
    let mut w = sink.writer(spec, schema).await.unwrap();
    let (mut n, mut dirty) = (0, Vec::new());
    for b in batches {
        let o = w.write(b).await.unwrap();
        n += o.written;
        dirty.extend(o.dirty);
    }
    w.close().await.unwrap();
    sink.finish(spec).await.unwrap();
    (n, dirty)
}

fn col<'a>(b: &'a RecordBatch, name: &str) -> &'a ArrayRef {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

const ALL_TYPES: &str = "CREATE TABLE src (
    id INT PRIMARY KEY,
    ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
    mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
    d65 DECIMAL(65,30), d18 DECIMAL(18,4), f FLOAT, db DOUBLE,
    vc VARCHAR(100), tx TEXT, ch CHAR(3), vb VARBINARY(300), bl BLOB,
    dt DATE, dtm DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, tm TIME(6), yr YEAR,
    en ENUM('a','b','c'), st SET('x','y','z'), js JSON, b1 BIT(1), b64 BIT(64), bo BOOLEAN, geo GEOMETRY
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

const ALL_COLS: &[&str] = &[
    "id", "ti", "tiu", "si", "siu", "mi", "miu", "i", "iu", "bi", "biu", "d65", "d18", "f", "db",
    "vc", "tx", "ch", "vb", "bl", "dt", "dtm", "ts", "tm", "yr", "en", "st", "js", "b1", "b64",
    "bo", "geo",
];

#[tokio::test]
async fn every_type_round_trips() {
    let Some(db) = setup().await else { return };
    let mut c = db.conn().await;
    c.execute(ALL_TYPES).await.unwrap();
    // Known instants inserted by a +08:00 session.
    c.execute("SET time_zone = '+08:00'").await.unwrap();
    let d65 = format!("{}.{}", "9".repeat(35), "9".repeat(30));
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let text1 = "🚀👍🏽 中文 'q' \"dq\" back\\slash\ttab\nnewline";
    sqlx::query(
        "INSERT INTO src VALUES (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
          ?, -12345678901234.5678, -0.0e0, -0.0e0, ?, '', 'abc', ?, x'000000',
          '1000-01-01', '1000-01-01 00:00:00.000001', '2024-01-01 08:00:00.123456', '-838:59:59', 1901,
          'a', 'x,y,z', '{\"a\": [1, 2]}', b'0', 0, 0, ST_GeomFromText('POINT(1 2)'))",
    )
    .bind(format!("-{d65}"))
    .bind(text1)
    .bind(&all_bytes)
    .execute(&mut c)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO src VALUES (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
          9223372036854775807, 18446744073709551615, ?, 0, 3.4028234663852886e38, 1.7976931348623157e308,
          '', '漢字 🚀', NULL, '', '', '9999-12-31', '9999-12-31 23:59:59.999999', '2038-01-19 11:14:07',
          '838:59:59', 2155, 'c', 'y', '[]', b'1',
          b'1111111111111111111111111111111111111111111111111111111111111111', 5, NULL)",
    )
    .bind(&d65)
    .execute(&mut c)
    .await
    .unwrap();
    c.execute(
        "INSERT INTO src (id, f, db, tm, d18, dtm, bo) VALUES
          (3, NULL, NULL, NULL, NULL, '2024-01-01 08:00:00.123456', NULL),
          (4, 1.17549435e-38, 2.2250738585072014e-308, '25:00:00.5', 0.0001, NULL, 1)",
    )
    .await
    .unwrap();

    let src = MySqlSource::connect(&db.url).await.unwrap();
    let spec = read_spec("src");
    let (schema, b) = read_all(&src, &spec).await.unwrap();
    assert_eq!(b.num_rows(), 4);
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ALL_COLS);

    // Schema: types and metadata.
    let f = |n: &str| schema.field_with_name(n).unwrap().clone();
    let md = |n: &str, k: &str| f(n).metadata().get(k).cloned();
    assert_eq!(f("ti").data_type(), &DataType::Int8);
    assert_eq!(f("tiu").data_type(), &DataType::UInt8);
    assert_eq!(f("mi").data_type(), &DataType::Int32);
    assert_eq!(f("miu").data_type(), &DataType::UInt32);
    assert_eq!(f("biu").data_type(), &DataType::UInt64);
    assert_eq!(f("d65").data_type(), &DataType::Decimal256(65, 30));
    assert_eq!(f("d18").data_type(), &DataType::Decimal128(18, 4));
    assert_eq!(f("f").data_type(), &DataType::Float32);
    assert_eq!(
        f("dtm").data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, None)
    );
    assert_eq!(
        f("ts").data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(
        f("tm").data_type(),
        &DataType::Duration(TimeUnit::Microsecond)
    );
    assert_eq!(f("vb").data_type(), &DataType::Binary);
    assert_eq!(md("vc", "ferry.max_length").as_deref(), Some("100"));
    assert_eq!(md("ch", "ferry.max_length").as_deref(), Some("3"));
    assert_eq!(md("bo", "ferry.type").as_deref(), Some("tinyint(1)"));
    assert_eq!(md("ti", "ferry.type"), None);
    assert_eq!(md("yr", "ferry.type").as_deref(), Some("year"));
    assert_eq!(md("en", "ferry.enum_values").as_deref(), Some("a,b,c"));
    assert_eq!(md("st", "ferry.type").as_deref(), Some("set"));
    assert_eq!(md("js", "ferry.type").as_deref(), Some("json"));
    assert_eq!(md("b64", "ferry.bit_width").as_deref(), Some("64"));
    assert_eq!(md("geo", "ferry.type").as_deref(), Some("geometry"));

    // Integers.
    assert_eq!(
        col(&b, "ti").as_primitive::<Int8Type>().values()[..2],
        [-128, 127]
    );
    assert_eq!(
        col(&b, "tiu").as_primitive::<UInt8Type>().values()[..2],
        [0, 255]
    );
    assert_eq!(
        col(&b, "si").as_primitive::<Int16Type>().values()[..2],
        [-32768, 32767]
    );
    assert_eq!(col(&b, "siu").as_primitive::<UInt16Type>().value(1), 65535);
    assert_eq!(
        col(&b, "mi").as_primitive::<Int32Type>().values()[..2],
        [-8388608, 8388607]
    );
    assert_eq!(
        col(&b, "miu").as_primitive::<UInt32Type>().value(1),
        16777215
    );
    assert_eq!(
        col(&b, "i").as_primitive::<Int32Type>().values()[..2],
        [i32::MIN, i32::MAX]
    );
    assert_eq!(
        col(&b, "iu").as_primitive::<UInt32Type>().value(1),
        u32::MAX
    );
    assert_eq!(
        col(&b, "bi").as_primitive::<Int64Type>().values()[..2],
        [i64::MIN, i64::MAX]
    );
    assert_eq!(
        col(&b, "biu").as_primitive::<UInt64Type>().value(1),
        u64::MAX
    );
    assert!(col(&b, "bi").is_null(2));
    // Decimals, exact.
    let d = col(&b, "d65").as_primitive::<Decimal256Type>();
    let max = i256::from_string(&"9".repeat(65)).unwrap();
    assert_eq!(d.value(1), max);
    assert_eq!(d.value(0), max.wrapping_neg());
    assert_eq!(d.value_as_string(1), d65);
    let d = col(&b, "d18").as_primitive::<Decimal128Type>();
    assert_eq!(d.value(0), -123456789012345678);
    assert_eq!(d.value(1), 0);
    assert!(d.is_null(2));
    assert_eq!(d.value(3), 1);
    // Floats.
    let fl = col(&b, "f").as_primitive::<Float32Type>();
    assert_eq!(fl.value(0), 0.0);
    assert_eq!(fl.value(1), f32::MAX);
    assert_eq!(fl.value(3), f32::MIN_POSITIVE);
    let dl = col(&b, "db").as_primitive::<Float64Type>();
    assert_eq!(dl.value(0), 0.0);
    assert_eq!(dl.value(1), f64::MAX);
    assert_eq!(dl.value(3), f64::MIN_POSITIVE);
    // Strings: '' and NULL distinct.
    let vc = col(&b, "vc").as_string::<i32>();
    assert_eq!(vc.value(0), text1);
    assert_eq!(vc.value(1), "");
    assert!(vc.is_valid(1) && vc.is_null(2));
    let tx = col(&b, "tx").as_string::<i32>();
    assert_eq!((tx.value(0), tx.value(1)), ("", "漢字 🚀"));
    assert!(col(&b, "ch").is_null(1));
    let vb = col(&b, "vb").as_binary::<i32>();
    assert_eq!(vb.value(0), &all_bytes[..]);
    assert_eq!(vb.value(1), b"");
    assert_eq!(col(&b, "bl").as_binary::<i32>().value(0), &[0u8, 0, 0]);
    // Dates and times.
    let dt = col(&b, "dt").as_primitive::<Date32Type>();
    assert_eq!((dt.value(0), dt.value(1)), (-354285, 2932896));
    let dtm = col(&b, "dtm").as_primitive::<TimestampMicrosecondType>();
    assert_eq!(dtm.value(0), -30610224000000000 + 1);
    assert_eq!(dtm.value(1), 253402300799999999);
    // DATETIME keeps the wall clock whatever the inserting session's zone.
    assert_eq!(dtm.value(2), 1704096000123456);
    let ts = col(&b, "ts").as_primitive::<TimestampMicrosecondType>();
    // 2024-01-01 08:00:00.123456 +08:00 = 2024-01-01 00:00:00.123456 UTC.
    assert_eq!(ts.value(0), 1704067200123456);
    assert_eq!(ts.value(1), 2147483647000000);
    assert!(ts.is_null(2));
    let tm = col(&b, "tm").as_primitive::<DurationMicrosecondType>();
    let lim = (838 * 3600 + 59 * 60 + 59) * 1_000_000i64;
    assert_eq!(
        (tm.value(0), tm.value(1), tm.value(3)),
        (-lim, lim, 90_000_500_000)
    );
    let yr = col(&b, "yr").as_primitive::<Int16Type>();
    assert_eq!((yr.value(0), yr.value(1)), (1901, 2155));
    let s = |n: &str, r: usize| col(&b, n).as_string::<i32>().value(r).to_string();
    assert_eq!((s("en", 0), s("en", 1)), ("a".into(), "c".into()));
    assert_eq!(s("st", 0), "x,y,z");
    assert_eq!(s("js", 0), "{\"a\": [1, 2]}");
    let b1 = col(&b, "b1").as_primitive::<UInt64Type>();
    assert_eq!((b1.value(0), b1.value(1)), (0, 1));
    assert_eq!(
        col(&b, "b64").as_primitive::<UInt64Type>().value(1),
        u64::MAX
    );
    let bo = col(&b, "bo").as_primitive::<Int8Type>();
    assert_eq!((bo.value(0), bo.value(1), bo.value(3)), (0, 5, 1));
    let geo = col(&b, "geo").as_binary::<i32>();
    let wkb: Vec<u8> = sqlx::query_scalar("SELECT ST_AsBinary(geo) FROM src WHERE id = 1")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(geo.value(0).len(), 25);
    assert_eq!(&geo.value(0)[..4], &[0, 0, 0, 0], "SRID 0");
    assert_eq!(&geo.value(0)[4..], &wkb[..]);

    // Write into a new table (created from the Arrow schema), compare with SQL.
    let sink = MySqlSink::connect(&db.url).await.unwrap();
    let wspec = WriteSpec {
        table: "dst".into(),
        create_table: true,
        ..Default::default()
    };
    let (written, dirty) = write_all(&sink, &wspec, &schema, std::slice::from_ref(&b)).await;
    assert!(dirty.is_empty(), "{dirty:?}");
    assert_eq!(written, 4);
    let on = ALL_COLS
        .iter()
        .map(|c| format!("s.`{c}` <=> d.`{c}`"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let (n_src, n_dst, n_join): (i64, i64, i64) = sqlx::query_as(&format!(
        "SELECT (SELECT COUNT(*) FROM src), (SELECT COUNT(*) FROM dst), \
         (SELECT COUNT(*) FROM src s JOIN dst d ON {on})"
    ))
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!((n_src, n_dst, n_join), (4, 4, 4));
    let types: BTreeMap<String, String> = sqlx::query(
        "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR) FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'dst'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
    .collect();
    assert!(
        types["biu"].starts_with("bigint") && types["biu"].ends_with("unsigned"),
        "{types:?}"
    );
    assert_eq!(types["d65"], "decimal(65,30)");
    assert_eq!(types["ts"], "timestamp(6)");
    assert_eq!(types["tm"], "time(6)");
    assert_eq!(types["b64"], "bit(64)");
    assert_eq!(types["bo"], "tinyint(1)");
    assert_eq!(types["en"], "enum('a','b','c')");
    // Reading the target gives the same Arrow values.
    let (schema2, b2) = read_all(&src, &read_spec("dst")).await.unwrap();
    for (i, f) in schema.fields().iter().enumerate() {
        assert_eq!(schema2.field(i).data_type(), f.data_type(), "{}", f.name());
        assert_eq!(
            b2.column(i).as_ref(),
            b.column(i).as_ref(),
            "column {}",
            f.name()
        );
    }

    // querySql: described and read.
    let q = ReadSpec {
        query_sql: Some("SELECT id, biu, d65 FROM src WHERE id = 2".into()),
        ..Default::default()
    };
    let (qs, qb) = read_all(&src, &q).await.unwrap();
    assert_eq!(qs.field(1).data_type(), &DataType::UInt64);
    assert_eq!(qb.column(1).as_primitive::<UInt64Type>().value(0), u64::MAX);
    assert_eq!(qb.column(2).as_primitive::<Decimal256Type>().value(0), max);

    // Missing column / table name themselves.
    let mut bad = read_spec("src");
    bad.columns = vec!["id".into(), "nope".into()];
    let e = src.schema(&bad).await.unwrap_err().to_string();
    assert!(e.contains("nope"), "{e}");
    let e = src
        .schema(&read_spec("missing_t"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing_t"), "{e}");
}

#[tokio::test]
async fn zero_dates_read_as_null_or_fail() {
    let Some(db) = setup().await else { return };
    let mut c = db.conn().await;
    c.execute("SET SESSION sql_mode = ''").await.unwrap();
    c.execute("CREATE TABLE z (id INT PRIMARY KEY, d DATE, dt DATETIME, nn DATE NOT NULL)")
        .await
        .unwrap();
    c.execute(
        "INSERT INTO z VALUES (1, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00'), \
         (2, '2020-02-29', '2020-02-29 12:00:00', '2020-02-29'), (3, NULL, NULL, '2020-03-01')",
    )
    .await
    .unwrap();
    let src = MySqlSource::connect(&db.url).await.unwrap();
    let (_, b) = read_all(&src, &read_spec("z")).await.unwrap();
    assert!(b.column(1).is_null(0) && b.column(2).is_null(0) && b.column(3).is_null(0));
    assert!(b.column(1).is_null(2) && b.column(3).is_valid(2));
    assert_eq!(
        b.column(0).as_primitive::<Int32Type>().values()[..],
        [1, 2, 3]
    );
    assert_eq!(b.column(1).as_primitive::<Date32Type>().value(1), 18321);
    assert_eq!(
        b.column(2)
            .as_primitive::<TimestampMicrosecondType>()
            .value(1),
        1582977600000000
    );
    // The same through a querySql (its flags test the derived table's columns).
    let mut q = read_spec("z");
    q.table = None;
    q.query_sql = Some("SELECT id, d, dt, nn FROM z ORDER BY id".into());
    let (_, b) = read_all(&src, &q).await.unwrap();
    assert!(b.column(1).is_null(0) && b.column(2).is_null(0) && b.column(3).is_null(0));
    assert!(b.column(1).is_null(2) && b.column(2).is_null(2) && b.column(3).is_valid(2));
    assert_eq!(b.column(1).as_primitive::<Date32Type>().value(1), 18321);
    let strict = MySqlSource::connect_with(
        &db.url,
        MySqlReadOptions {
            zero_date: ZeroDate::Error,
        },
    )
    .await
    .unwrap();
    let mut spec = read_spec("z");
    spec.split_pk = Some("id".into());
    let e = read_all(&strict, &spec).await.unwrap_err().to_string();
    assert!(e.contains("`d`") && e.contains("key 1"), "{e}");
}

async fn keys_over_splits(src: &MySqlSource, spec: &ReadSpec, splits: usize) -> Vec<i64> {
    let schema = src.schema(spec).await.unwrap();
    let plan = src.plan(spec, splits).await.unwrap();
    assert!(plan.len() > 2, "{plan:?}");
    let mut seen = Vec::new();
    for s in &plan {
        for b in read_split(src, spec, schema.clone(), s).await.unwrap() {
            let v = b.column_by_name("v").unwrap().as_primitive::<Int64Type>();
            seen.extend(v.values().iter().copied());
        }
    }
    seen.sort();
    seen
}

#[tokio::test]
async fn splits_read_every_row_once() {
    let Some(db) = setup().await else { return };
    let mut c = db.conn().await;
    let _ = c
        .execute("SET SESSION max_recursive_iterations = 100000")
        .await;
    let _ = c
        .execute("SET SESSION cte_max_recursion_depth = 100000")
        .await;
    c.execute("CREATE TABLE s (k BIGINT NULL, v BIGINT NOT NULL)")
        .await
        .unwrap();
    c.execute(
        "INSERT INTO s WITH RECURSIVE q(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM q WHERE n < 10000) \
         SELECT IF(n % 997 = 0, NULL, n - 5000), n FROM q",
    )
    .await
    .unwrap();
    c.execute("CREATE TABLE u (k BIGINT UNSIGNED NULL, v BIGINT NOT NULL)")
        .await
        .unwrap();
    c.execute(
        "INSERT INTO u VALUES (18446744073709551615, 1), (18446744073709551614, 2), (18446744073709551000, 3), \
         (9223372036854775808, 4), (0, 5), (NULL, 6), (1, 7)",
    )
    .await
    .unwrap();
    let src = MySqlSource::connect(&db.url).await.unwrap();
    let mut spec = read_spec("s");
    spec.split_pk = Some("k".into());
    spec.fetch_size = 1000;
    assert_eq!(
        keys_over_splits(&src, &spec, 7).await,
        (1..=10000).collect::<Vec<i64>>()
    );
    let mut spec = read_spec("u");
    spec.split_pk = Some("k".into());
    assert_eq!(
        keys_over_splits(&src, &spec, 4).await,
        (1..=7).collect::<Vec<i64>>()
    );
    // max_splits 1 and a non-integer key read in one split.
    spec.split_pk = Some("v".into());
    let one = src.plan(&spec, 1).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].bounds, ferry_connectors::SplitBounds::All);
    c.execute("CREATE TABLE w (name VARCHAR(10))")
        .await
        .unwrap();
    let mut w = read_spec("w");
    w.split_pk = Some("name".into());
    assert_eq!(src.plan(&w, 4).await.unwrap(), vec![Split::all()]);
    // A consumer that went away cancels the read.
    let spec = read_spec("s");
    let schema = src.schema(&spec).await.unwrap();
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let e = src
        .read(&spec, schema, &Split::all(), tx)
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::Cancelled), "{e}");
    // Connection errors name the server, never the password.
    let bad = db.url.replacen("root@", "root:s3cr3t-pw@", 1);
    let e = MySqlSource::connect(&bad)
        .await
        .err()
        .expect("wrong password")
        .to_string();
    assert!(
        e.contains("127.0.0.1") || e.contains("localhost") || e.contains(&db.name),
        "{e}"
    );
    assert!(!e.contains("s3cr3t-pw"), "{e}");
}

#[tokio::test]
async fn dirty_rows_are_left_out_with_reasons() {
    let Some(db) = setup().await else { return };
    let mut c = db.conn().await;
    c.execute(
        "CREATE TABLE d (id INT PRIMARY KEY, v VARCHAR(5), dc DECIMAL(5,2), u INT UNSIGNED, \
         m VARCHAR(10) CHARACTER SET utf8mb3, j JSON, e ENUM('a','b'), \
         ts TIMESTAMP(6) NULL DEFAULT NULL, x DOUBLE) DEFAULT CHARSET=utf8mb4",
    )
    .await
    .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("v", DataType::Utf8, true),
        Field::new("dc", DataType::Decimal128(10, 2), true),
        Field::new("u", DataType::Int64, true),
        Field::new("m", DataType::Utf8, true),
        Field::new("j", DataType::Utf8, true),
        Field::new("e", DataType::Utf8, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("x", DataType::Float64, true),
    ]));
    const N: usize = 10;
    // Row r gets `bad` in its column; rows 0 and 7 hold only good values.
    fn col_of<T: Clone>(good0: T, good7: T, bad: Option<(usize, T)>) -> Vec<Option<T>> {
        (0..N)
            .map(|r| match (r, &bad) {
                (0, _) => Some(good0.clone()),
                (7, _) => Some(good7.clone()),
                (r, Some((b, v))) if r == *b => Some(v.clone()),
                _ => None,
            })
            .collect()
    }
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int32Array::from((1..=N as i32).collect::<Vec<i32>>())),
            Arc::new(StringArray::from(col_of(
                "ok",
                "12345",
                Some((1, "toolong")),
            ))),
            Arc::new(
                Decimal128Array::from(col_of(12345i128, -99999, Some((2, 100000))))
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
            Arc::new(Int64Array::from(col_of(1i64, 4294967295, Some((3, -1))))),
            Arc::new(StringArray::from(col_of("é", "中", Some((4, "🚀"))))),
            Arc::new(StringArray::from(col_of("{}", "[1]", Some((5, "{bad"))))),
            // Refused by the server (not checked up front): row-by-row fallback.
            Arc::new(StringArray::from(col_of("a", "b", Some((6, "zz"))))),
            // 2040-01-01: past the TIMESTAMP range.
            Arc::new(
                arrow_array::TimestampMicrosecondArray::from(col_of(
                    1_700_000_000_000_000i64,
                    0,
                    Some((8, 2_208_988_800_000_000)),
                ))
                .with_timezone("UTC"),
            ),
            Arc::new(arrow_array::Float64Array::from(col_of(
                1.5f64,
                -0.25,
                Some((9, f64::NAN)),
            ))),
        ],
    )
    .unwrap();
    // Row 7's timestamp 0 (1970-01-01 00:00:00) is outside TIMESTAMP too: make it valid.
    let batch = {
        let mut cols = batch.columns().to_vec();
        cols[7] = Arc::new(
            arrow_array::TimestampMicrosecondArray::from(col_of(
                1_700_000_000_000_000i64,
                1_000_000,
                Some((8, 2_208_988_800_000_000)),
            ))
            .with_timezone("UTC"),
        );
        RecordBatch::try_new(schema.clone(), cols).unwrap()
    };
    let sink = MySqlSink::connect(&db.url).await.unwrap();
    let spec = WriteSpec {
        table: "d".into(),
        ..Default::default()
    };
    let (written, dirty) = write_all(&sink, &spec, &schema, &[batch]).await;
    assert_eq!(written, 2);
    let got: Vec<(usize, Option<&str>)> =
        dirty.iter().map(|d| (d.row, d.column.as_deref())).collect();
    assert_eq!(
        got,
        vec![
            (1, Some("v")),
            (2, Some("dc")),
            (3, Some("u")),
            (4, Some("m")),
            (5, Some("j")),
            (6, Some("e")),
            (8, Some("ts")),
            (9, Some("x")),
        ]
    );
    for d in &dirty {
        assert!(d.reason.contains(d.column.as_deref().unwrap()), "{d:?}");
        assert_eq!(d.record["id"], serde_json::json!(d.row + 1));
    }
    assert_eq!(dirty[0].record["v"], serde_json::json!("toolong"));
    let ids: Vec<i32> = sqlx::query_scalar("SELECT id FROM d ORDER BY id")
        .fetch_all(&mut c)
        .await
        .unwrap();
    assert_eq!(ids, vec![1, 8]);
    let (dc, u, ts): (String, u32, String) =
        sqlx::query_as("SELECT CAST(dc AS CHAR), u, CAST(ts AS CHAR) FROM d WHERE id = 8")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(
        (dc.as_str(), u, ts.as_str()),
        ("-999.99", u32::MAX, "1970-01-01 00:00:01.000000")
    );
}

fn kv_batch(schema: &SchemaRef, rows: &[(i32, &str, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int32Array::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn resumed_split_reads_after_its_key_and_checkpoints_commit_with_rows() {
    let Some(db) = setup().await else { return };
    let mut c = db.conn().await;
    c.execute("CREATE TABLE src (id INT PRIMARY KEY, v VARCHAR(10), n BIGINT)")
        .await
        .unwrap();
    c.execute(
        "INSERT INTO src VALUES (5, 'e', 5), (1, 'a', 1), (3, 'c', 3), (2, 'b', 2), (4, 'd', 4)",
    )
    .await
    .unwrap();
    c.execute("CREATE TABLE dst (id INT, v VARCHAR(1), n BIGINT)")
        .await
        .unwrap();
    let src = MySqlSource::connect(&db.url).await.unwrap();
    let mut spec = read_spec("src");
    spec.split_pk = Some("id".into());
    let plan = ferry_connectors::spec::int_splits(
        "id",
        1,
        5,
        1,
        Some(ferry_connectors::SplitOrder {
            columns: vec!["id".into()],
            unique: false,
        }),
    );
    let schema = src.schema(&spec).await.unwrap();
    let ids = |bs: &[RecordBatch]| -> Vec<i32> {
        bs.iter()
            .flat_map(|b| b.column(0).as_primitive::<Int32Type>().values().to_vec())
            .collect()
    };
    let all = read_split(&src, &spec, schema.clone(), &plan[0])
        .await
        .unwrap();
    assert_eq!(ids(&all), [1, 2, 3, 4, 5], "key order");
    let rest = read_split(
        &src,
        &spec,
        schema.clone(),
        &plan[0].resumed_after(ferry_connectors::Position::int(2)),
    )
    .await
    .unwrap();
    assert_eq!(ids(&rest), [3, 4, 5]);

    let sink = MySqlSink::connect(&db.url).await.unwrap();
    let wspec = WriteSpec {
        table: "dst".into(),
        ..Default::default()
    };
    sink.prepare(&wspec, &schema).await.unwrap();
    assert!(sink.records_checkpoints(&wspec));
    let mut w = sink.task_writer(&wspec, &schema, "job-x", 0).await.unwrap();
    // One row too long for VARCHAR(1): dirty, but consumed.
    let batch = kv_batch(&schema, &[(1, "a", 1), (2, "bb", 2)]);
    let cp = Checkpoint {
        seq: 1,
        rows: 2,
        written: 0,
        // A composite position, longer than the VARCHAR(40) checkpoints once held.
        position: Some(
            ferry_connectors::Position::new(vec![
                ferry_connectors::KeyValue::Int(2),
                ferry_connectors::KeyValue::text("O'Brien \\ 北京 and then some more text")
                    .unwrap(),
            ])
            .unwrap(),
        ),
    };
    let o = w.write_at(&batch, &cp).await.unwrap();
    assert_eq!((o.written, o.dirty.len()), (1, 1));
    drop(w);
    assert_eq!(
        sink.checkpoint(&wspec, "job-x", 0).await.unwrap(),
        Some(Checkpoint { written: 1, ..cp })
    );
    assert_eq!(sink.checkpoint(&wspec, "job-x", 1).await.unwrap(), None);
    sink.forget(&wspec, "job-x").await.unwrap();
    assert_eq!(sink.checkpoint(&wspec, "job-x", 0).await.unwrap(), None);
}

#[tokio::test]
async fn update_and_replace_modes() {
    let Some(db) = setup().await else { return };
    let mut c = db.conn().await;
    c.execute("CREATE TABLE kv (id INT PRIMARY KEY, v VARCHAR(10), n BIGINT)")
        .await
        .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("v", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
    ]));
    let sink = MySqlSink::connect(&db.url).await.unwrap();
    let mut spec = WriteSpec {
        table: "kv".into(),
        write_mode: WriteMode::Update,
        pre_sql: vec!["INSERT INTO kv VALUES (9, 'pre', 0)".into()],
        post_sql: vec!["UPDATE kv SET v = 'post' WHERE id = 9".into()],
        ..Default::default()
    };
    write_all(
        &sink,
        &spec,
        &schema,
        &[kv_batch(&schema, &[(1, "a", 1), (2, "b", 2)])],
    )
    .await;
    spec.pre_sql.clear();
    let (n, _) = write_all(
        &sink,
        &spec,
        &schema,
        &[kv_batch(
            &schema,
            &[(1, "A", 10), (2, "B", 20), (3, "c", 3)],
        )],
    )
    .await;
    assert_eq!(n, 3);
    let rows: Vec<(i32, String, i64)> = sqlx::query_as("SELECT id, v, n FROM kv ORDER BY id")
        .fetch_all(&mut c)
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            (1, "A".into(), 10),
            (2, "B".into(), 20),
            (3, "c".into(), 3),
            (9, "post".into(), 0)
        ]
    );
    spec.write_mode = WriteMode::Replace;
    write_all(
        &sink,
        &spec,
        &schema,
        &[kv_batch(&schema, &[(1, "r", 100)])],
    )
    .await;
    let rows: Vec<(i32, String, i64)> = sqlx::query_as("SELECT id, v, n FROM kv WHERE id = 1")
        .fetch_all(&mut c)
        .await
        .unwrap();
    assert_eq!(rows, vec![(1, "r".into(), 100)]);
    // Plain insert of an existing key: refused row by row, reported dirty.
    spec.write_mode = WriteMode::Insert;
    spec.existing = Some(ferry_connectors::Existing::Append);
    let (n, dirty) = write_all(
        &sink,
        &spec,
        &schema,
        &[kv_batch(&schema, &[(1, "dup", 0), (4, "new", 4)])],
    )
    .await;
    assert_eq!(n, 1);
    assert_eq!(dirty.len(), 1);
    assert!(dirty[0].reason.contains("Duplicate"), "{:?}", dirty[0]);
}

#[tokio::test]
async fn large_batches_are_split_under_max_allowed_packet() {
    let Some(db) = setup().await else { return };
    let mut c = db.conn().await;
    let packet: i64 = sqlx::query_scalar("SELECT CAST(@@max_allowed_packet AS SIGNED)")
        .fetch_one(&mut c)
        .await
        .unwrap();
    // 1.5 times the packet in total: one statement cannot carry it.
    let row_len = (packet as usize / 8).min(4 << 20);
    let rows = (packet as usize * 3 / 2).div_ceil(row_len).max(3);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("t", DataType::Utf8, false),
    ]));
    let big: Vec<String> = (0..rows)
        .map(|i| {
            char::from(b'a' + (i % 26) as u8)
                .to_string()
                .repeat(row_len)
        })
        .collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int32Array::from((0..rows as i32).collect::<Vec<_>>())),
            Arc::new(StringArray::from(
                big.iter().map(String::as_str).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    let sink = MySqlSink::connect(&db.url).await.unwrap();
    let spec = WriteSpec {
        table: "big".into(),
        create_table: true,
        ..Default::default()
    };
    let (n, dirty) = write_all(&sink, &spec, &schema, &[batch]).await;
    assert!(
        dirty.is_empty(),
        "{:?}",
        dirty.iter().map(|d| &d.reason).collect::<Vec<_>>()
    );
    assert_eq!(n, rows as u64);
    let (cnt, total): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), CAST(SUM(LENGTH(t)) AS SIGNED) FROM big")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!((cnt as usize, total as usize), (rows, rows * row_len));
}

// ---- A hostile broker: reads stay read-only, single-statement, object-free, and errors for
// ---- the broker carry no source values. Job text goes straight to the source (no screening).

/// Every table and view of the test database.
async fn tables(db: &TestDb) -> Vec<String> {
    let mut c = db.conn().await;
    sqlx::query(
        "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = ? ORDER BY 1",
    )
    .bind(&db.name)
    .fetch_all(&mut c)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect()
}

async fn expect_read_error(src: &MySqlSource, spec: &ReadSpec) -> ConnectorError {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, true)]));
    let spec = ReadSpec {
        columns: vec!["id".into()],
        ..spec.clone()
    };
    match read_split(src, &spec, schema, &Split::all()).await {
        Ok(b) => panic!("read of {spec:?} succeeded: {b:?}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn where_and_sessions_cannot_write() {
    let Some(db) = setup().await else { return };
    let mut c = db.conn().await;
    c.execute(
        "CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');
         CREATE SEQUENCE s",
    )
    .await
    .unwrap();
    let src = MySqlSource::connect(&db.url).await.unwrap();
    for w in ["setval(s, 100) > 0", "nextval(s) > 0"] {
        let spec = ReadSpec {
            where_clause: Some(w.into()),
            split_pk: Some("id".into()),
            ..read_spec("t")
        };
        let e = src.plan(&spec, 4).await.unwrap_err();
        assert!(e.to_string().contains("READ ONLY"), "plan, {w}: {e}");
        let e = expect_read_error(&src, &spec).await;
        assert!(e.to_string().contains("READ ONLY"), "read, {w}: {e}");
    }
    let next: i64 = sqlx::query("SELECT nextval(s)")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    assert_eq!(next, 1, "the sequence moved");

    // Autocommit statements through the source's own sessions cannot write either.
    for sql in ["INSERT INTO t VALUES (9, 'w')", "CREATE TABLE w (id INT)"] {
        let e = sqlx::query(sql).execute(src.pool()).await.unwrap_err();
        assert!(e.to_string().contains("READ ONLY"), "{sql}: {e}");
    }
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM t")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    assert_eq!(tables(&db).await, vec!["s", "t"]);
}

#[tokio::test]
async fn query_sql_is_one_statement_and_creates_nothing() {
    let Some(db) = setup().await else { return };
    let mut c = db.conn().await;
    c.execute(
        "CREATE TABLE t (id INT PRIMARY KEY, d DECIMAL(12,3), d0 DECIMAL(5,5) UNSIGNED,
           vc VARCHAR(7), vb VARBINARY(4), tb TEXT COLLATE utf8mb4_bin, bl BLOB, b BIT(5),
           e ENUM('x','y'));
         INSERT INTO t VALUES (1, -123456789.125, 0.12345, 'abc', 0x0102, 'txt', 0xff, 5, 'y')",
    )
    .await
    .unwrap();
    let src = MySqlSource::connect(&db.url).await.unwrap();
    let before = tables(&db).await;
    for qs in [
        "select 1 as id; DROP TABLE t; COMMIT",
        "select 1 as id) AS ferry_q; DROP TABLE t; SELECT * FROM (select 1 as id",
    ] {
        let spec = ReadSpec {
            query_sql: Some(qs.into()),
            table: None,
            split_pk: Some("id".into()),
            ..read_spec("")
        };
        assert!(src.schema(&spec).await.is_err(), "schema of {qs}");
        // A query is read as one split: plan does not touch the database.
        assert_eq!(src.plan(&spec, 4).await.unwrap(), vec![Split::all()]);
        expect_read_error(&src, &spec).await;
        assert_eq!(tables(&db).await, before, "{qs}");
    }
    // A `where` that tries to add statements is one (broken) prepared statement.
    let spec = ReadSpec {
        where_clause: Some("1=1; DROP TABLE t".into()),
        split_pk: Some("id".into()),
        ..read_spec("t")
    };
    assert!(src.plan(&spec, 4).await.is_err());
    expect_read_error(&src, &spec).await;
    assert_eq!(tables(&db).await, before);

    // A good query: described from prepared metadata, nothing created.
    let spec = ReadSpec {
        query_sql: Some("SELECT id, d, d0, vc, vb, tb, bl, b, e, d * 2 AS d2 FROM t;".into()),
        table: None,
        ..read_spec("")
    };
    let (schema, batch) = read_all(&src, &spec).await.unwrap();
    let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
    assert_eq!(
        types,
        vec![
            &DataType::Int32,
            &DataType::Decimal128(12, 3),
            &DataType::Decimal128(5, 5),
            &DataType::Utf8,
            &DataType::Binary,
            &DataType::Utf8,
            &DataType::Binary,
            &DataType::UInt64,
            &DataType::Utf8,
            &DataType::Decimal128(13, 3),
        ]
    );
    let meta = |i: usize, k: &str| schema.field(i).metadata().get(k).cloned();
    assert_eq!(meta(3, "ferry.max_length").as_deref(), Some("7"));
    assert_eq!(meta(7, "ferry.bit_width").as_deref(), Some("5"));
    assert_eq!(batch.num_rows(), 1);
    assert_eq!(
        batch.column(1).as_primitive::<Decimal128Type>().value(0),
        -123456789125
    );
    assert_eq!(batch.column(5).as_string::<i32>().value(0), "txt");
    assert_eq!(batch.column(8).as_string::<i32>().value(0), "y");
    assert_eq!(tables(&db).await, before);
}

#[tokio::test]
async fn errors_for_the_broker_carry_no_source_values() {
    let Some(db) = setup().await else { return };
    let mut c = db.conn().await;
    c.execute(
        "CREATE TABLE secret (id INT, pw TEXT); INSERT INTO secret VALUES (1, 'hunter2-do-not-leak')",
    )
    .await
    .unwrap();
    let src = MySqlSource::connect(&db.url).await.unwrap();
    for w in [
        // Error-based extraction: the XPATH error quotes its argument (1105).
        "EXTRACTVALUE(1, CONCAT(0x7e, (SELECT pw FROM secret LIMIT 1))) IS NOT NULL",
        // A value into JSON that does not parse (MariaDB warns, MySQL fails): then a cast.
        "CAST(JSON_EXTRACT((SELECT pw FROM secret LIMIT 1), '$') AS SIGNED) > 0",
    ] {
        let spec = ReadSpec {
            where_clause: Some(w.into()),
            split_pk: Some("id".into()),
            ..read_spec("secret")
        };
        let Err(e) = src.plan(&spec, 4).await else {
            continue;
        };
        let p = e.peer_message();
        assert!(!p.contains("hunter2"), "{w}: {p}");
        if e.to_string().contains("hunter2") {
            assert!(p.contains("MySQL error") && p.contains("withheld"), "{p}");
        }
    }
    // A value that cannot be read as the schema asked (a broker's schema need not fit): the
    // reader's own message quotes it.
    let spec = ReadSpec {
        columns: vec!["pw".into()],
        ..read_spec("secret")
    };
    let schema = Arc::new(Schema::new(vec![Field::new("pw", DataType::Int32, true)]));
    let e = read_split(&src, &spec, schema, &Split::all())
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::Value { .. }), "{e}");
    assert!(e.to_string().contains("hunter2-do-not-leak"), "{e}");
    let p = e.peer_message();
    assert!(!p.contains("hunter2") && p.contains("`pw`"), "{p}");
}

#[tokio::test]
async fn privilege_warnings_flag_root_not_a_reader() {
    let Some(db) = setup().await else { return };
    let root = MySqlSource::connect(&db.url).await.unwrap();
    let w = root.privilege_warnings().await;
    assert!(
        w.len() == 1 && w[0].contains("ALL PRIVILEGES") && w[0].contains("read-only user"),
        "{w:?}"
    );

    let user = format!("{}_ro", db.name);
    let mut c = db.conn().await;
    c.execute("CREATE TABLE t (id INT)").await.unwrap();
    for host in ["%", "localhost"] {
        c.execute(
            format!(
                "CREATE USER '{user}'@'{host}'; GRANT SELECT ON `{}`.* TO '{user}'@'{host}'",
                db.name
            )
            .as_str(),
        )
        .await
        .unwrap();
    }
    let ro_url = db.url.replacen("root@", &format!("{user}@"), 1);
    let result = async {
        let ro = MySqlSource::connect(&ro_url).await?;
        let clean = ro.privilege_warnings().await;
        for host in ["%", "localhost"] {
            sqlx::query(&format!("GRANT FILE, INSERT ON *.* TO '{user}'@'{host}'"))
                .execute(&mut c)
                .await
                .map_err(|e| ConnectorError::query("grant", e))?;
        }
        // A fresh session sees the new grants.
        let ro = MySqlSource::connect(&ro_url).await?;
        let risky = ro.privilege_warnings().await;
        Ok::<_, ConnectorError>((clean, risky))
    }
    .await;
    for host in ["%", "localhost"] {
        let _ = c
            .execute(format!("DROP USER IF EXISTS '{user}'@'{host}'").as_str())
            .await;
    }
    let (clean, risky) = result.unwrap();
    assert!(clean.is_empty(), "{clean:?}");
    assert!(
        risky.len() == 1 && risky[0].contains("FILE") && risky[0].contains("INSERT"),
        "{risky:?}"
    );
}
