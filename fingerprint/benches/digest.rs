//! `ferry verify`'s hot path: the buckets pass over one 8,192-row batch shaped like the
//! benchmark's `bench_orders` (integers, text, decimals, a double, timestamps, a date, a
//! boolean and a JSON document per row), and the JSON hash alone.
//!
//! `cargo bench -p ferry-fingerprint`

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferry_fingerprint::Digester;
use ferry_model::{VerifyAsk, VerifyPass};

const ROWS: usize = 8192;

fn batch() -> RecordBatch {
    let json = Field::new("attrs", DataType::Utf8, true).with_metadata(HashMap::from([(
        "ferry.type".to_string(),
        "json".to_string(),
    )]));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int32, false),
        Field::new("status_code", DataType::Int32, true),
        Field::new("customer_name", DataType::Utf8, false),
        Field::new("note", DataType::Utf8, true),
        Field::new("amount", DataType::Decimal128(18, 4), false),
        Field::new("discount", DataType::Decimal128(18, 4), true),
        Field::new("weight", DataType::Float64, true),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new(
            "updated_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("ship_date", DataType::Date32, true),
        Field::new("is_paid", DataType::Boolean, false),
        json,
    ]));
    let (mut id, mut cust, mut status) = (
        Int64Builder::new(),
        Int32Builder::new(),
        Int32Builder::new(),
    );
    let (mut name, mut note, mut attrs) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut amount = Decimal128Builder::new();
    let mut discount = Decimal128Builder::new();
    let mut weight = Float64Builder::new();
    let mut created = TimestampMicrosecondBuilder::new();
    let mut updated = TimestampMicrosecondBuilder::new();
    let mut ship = Date32Builder::new();
    let mut paid = BooleanBuilder::new();
    for i in 0..ROWS as i64 {
        id.append_value(i + 1);
        cust.append_value((i * 7919 % 100_000) as i32);
        status.append_option((i % 10 != 0).then_some((i % 7) as i32));
        name.append_value(format!("Łukasz Jónsdóttir {i}"));
        note.append_option((i % 10 != 0).then(|| {
            format!("sku{i} note requested #50 building naïve east sku90 phone #55 sku12 #31 invoice refund sku59 failed sku61 #19 phone courier box sku43 #44 zone sku11 {i}")
        }));
        amount.append_value(i128::from(i) * 1_234_567 % 10_000_000_000);
        discount.append_option((i % 3 == 0).then_some(i128::from(i) * 100));
        weight.append_option((i % 5 != 0).then_some(i as f64 * 0.377_123_456_789));
        created.append_value(1_600_000_000_000_000 + i * 1_000_000);
        updated.append_option((i % 4 != 0).then_some(1_600_000_000_123_456 + i * 999));
        ship.append_option((i % 6 != 0).then_some(18_000 + (i % 2000) as i32));
        paid.append_value(i % 2 == 0);
        attrs.append_option((i % 10 != 0).then(|| {
            format!(
                r#"{{"sku":"SKU-{i:05}","qty":{},"channel":"web","gift":false,"tags":["intl","急"],"score":{}.{}}}"#,
                i % 20,
                i % 100,
                i % 10
            )
        }));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(cust.finish()),
        Arc::new(status.finish()),
        Arc::new(name.finish()),
        Arc::new(note.finish()),
        Arc::new(
            amount
                .finish()
                .with_precision_and_scale(18, 4)
                .expect("decimal"),
        ),
        Arc::new(
            discount
                .finish()
                .with_precision_and_scale(18, 4)
                .expect("decimal"),
        ),
        Arc::new(weight.finish()),
        Arc::new(created.finish()),
        Arc::new(updated.finish().with_timezone("UTC")),
        Arc::new(ship.finish()),
        Arc::new(paid.finish()),
        Arc::new(attrs.finish()),
    ];
    RecordBatch::try_new(schema, columns).expect("batch")
}

fn digest(c: &mut Criterion) {
    let batch = batch();
    let ask = VerifyAsk {
        key: vec!["id".into()],
        buckets: 4096,
        text_as: Vec::new(),
        scheme: ferry_model::Scheme::Canonical,
        pass: VerifyPass::Buckets,
    };
    let mut g = c.benchmark_group("fingerprint");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("buckets_pass_8192_rows", |b| {
        b.iter(|| {
            let mut d = Digester::new(&batch.schema(), &ask).expect("digester");
            d.feed(&batch).expect("feed");
            d.finish().expect("finish")
        })
    });
    // The same pass under the PostgreSQL scheme (the agent's side when the target sums its
    // rows inside PostgreSQL).
    use ferry_model::PgHash::*;
    let pg_ask = VerifyAsk {
        scheme: ferry_model::Scheme::Postgres(vec![
            Int, Int, Int, Text, Text, Numeric, Numeric, Float, Timestamp, Timestamp, Date, Bool,
            Json,
        ]),
        ..ask.clone()
    };
    g.bench_function("pg_buckets_pass_8192_rows", |b| {
        b.iter(|| {
            let mut d = Digester::new(&batch.schema(), &pg_ask).expect("digester");
            d.feed(&batch).expect("feed");
            d.finish().expect("finish")
        })
    });
    let docs: Vec<String> = (0..ROWS)
        .map(|i| {
            format!(
                r#"{{"sku":"SKU-{i:05}","qty":{},"channel":"web","gift":false,"tags":["intl","急"],"score":{}.{}}}"#,
                i % 20,
                i % 100,
                i % 10
            )
        })
        .collect();
    g.bench_function("json_hash_8192_documents", |b| {
        b.iter(|| {
            docs.iter()
                .map(|d| ferry_fingerprint::json_hash(d).unwrap_or(0))
                .fold(0u64, u64::wrapping_add)
        })
    });
    // What PostgreSQL computes in the database for a jsonb column, done here for the other
    // side: the document as jsonb keeps it, then its hash.
    g.bench_function("pg_jsonb_hash_8192_documents", |b| {
        let mut text = ferry_fingerprint::pg::JsonbText::default();
        b.iter(|| {
            docs.iter()
                .map(|d| {
                    text.render(d)
                        .map_or(0, |t| ferry_fingerprint::pg::hash_bytes(t, 13))
                })
                .fold(0u64, u64::wrapping_add)
        })
    });
    g.finish();
}

criterion_group!(benches, digest);
criterion_main!(benches);
