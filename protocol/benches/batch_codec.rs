//! Encode/decode throughput of one realistic 8192-row mixed-type batch, uncompressed and with
//! zstd 1 and 3. Throughput is in raw Arrow IPC bytes, i.e. what the pipeline moves.

use std::hint::black_box;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferry_protocol::data::{BatchDecoder, BatchEncoder, Compression};
use ferry_protocol::Limits;

const ROWS: usize = 8192;

/// splitmix64: deterministic, fast, and not compressible like constants would be.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn null(&mut self) -> bool {
        self.below(10) == 0
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const FIRST: &[&str] = &[
    "José", "Zoë", "Åsa", "Łukasz", "Ngozi", "Mía", "Søren", "Anaïs", "Dmitri", "Yūki", "Chloé",
    "Björn", "Олег", "明", "Aarav", "Fatima", "Grace", "Hiro", "Ines", "Kwame",
];
const LAST: &[&str] = &[
    "García",
    "Müller",
    "Nowak",
    "O'Brien",
    "Øster",
    "Dubois",
    "Иванов",
    "田中",
    "Kowalczyk",
    "Smith",
    "Nguyễn",
    "Rossi",
    "Silva",
    "Žukauskas",
    "Andersson",
    "Kim",
];
const WORDS: &[&str] = &[
    "order",
    "shipped",
    "delayed",
    "customer",
    "requested",
    "refund",
    "warehouse",
    "invoice",
    "pending",
    "approved",
    "the",
    "a",
    "to",
    "of",
    "and",
    "for",
    "with",
    "priority",
    "express",
    "return",
    "damaged",
    "package",
    "address",
    "updated",
    "confirmed",
    "payment",
    "card",
    "café",
    "naïve",
    "résumé",
    "déjà",
    "vu",
    "über",
    "straße",
];
const TAGS: &[&str] = &[
    "vip",
    "new",
    "churn-risk",
    "b2b",
    "promo",
    "eu",
    "apac",
    "beta",
];

fn realistic_batch() -> RecordBatch {
    let mut r = Rng(42);
    let mut id = Int64Builder::with_capacity(ROWS);
    let mut qty = Int32Builder::with_capacity(ROWS);
    let mut name = StringBuilder::new();
    let mut notes = StringBuilder::new();
    let mut amount = Decimal128Builder::with_capacity(ROWS)
        .with_precision_and_scale(18, 4)
        .unwrap();
    let mut score = Float64Builder::with_capacity(ROWS);
    let mut created = TimestampMicrosecondBuilder::with_capacity(ROWS).with_timezone("UTC");
    let mut day = Date32Builder::with_capacity(ROWS);
    let mut active = BooleanBuilder::with_capacity(ROWS);
    let mut attrs = StringBuilder::new();
    let base_ts = 1_700_000_000_000_000i64;
    for i in 0..ROWS {
        id.append_value(10_000_000 + i as i64);
        if r.null() {
            qty.append_null()
        } else {
            qty.append_value(r.below(500) as i32 - 20)
        }
        if r.null() {
            name.append_null()
        } else {
            name.append_value(format!("{} {}", r.pick(FIRST), r.pick(LAST)))
        }
        if r.null() {
            notes.append_null()
        } else {
            let mut s = String::with_capacity(220);
            while s.len() < 190 + r.below(20) as usize {
                if !s.is_empty() {
                    s.push(' ');
                }
                s.push_str(r.pick(WORDS));
            }
            notes.append_value(s);
        }
        if r.null() {
            amount.append_null()
        } else {
            amount.append_value(r.below(100_000_000_000) as i128 - 1_000_000_000)
        }
        if r.null() {
            score.append_null()
        } else {
            score.append_value((r.next() >> 11) as f64 / (1u64 << 53) as f64 * 100.0)
        }
        if r.null() {
            created.append_null()
        } else {
            created.append_value(base_ts + i as i64 * 1_000_000 + r.below(1_000_000) as i64)
        }
        if r.null() {
            day.append_null()
        } else {
            day.append_value(19_000 + r.below(700) as i32)
        }
        if r.null() {
            active.append_null()
        } else {
            active.append_value(r.below(3) != 0)
        }
        if r.null() {
            attrs.append_null()
        } else {
            attrs.append_value(format!(
                r#"{{"tier":{},"tags":["{}","{}"],"ref":"{:016x}","ok":{}}}"#,
                r.below(5),
                r.pick(TAGS),
                r.pick(TAGS),
                r.next(),
                r.below(2) == 0
            ))
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("qty", DataType::Int32, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("notes", DataType::Utf8, true),
        Field::new("amount", DataType::Decimal128(18, 4), true),
        Field::new("score", DataType::Float64, true),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("day", DataType::Date32, true),
        Field::new("active", DataType::Boolean, true),
        Field::new("attrs", DataType::Utf8, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(qty.finish()),
        Arc::new(name.finish()),
        Arc::new(notes.finish()),
        Arc::new(amount.finish()),
        Arc::new(score.finish()),
        Arc::new(created.finish()),
        Arc::new(day.finish()),
        Arc::new(active.finish()),
        Arc::new(attrs.finish()),
    ];
    RecordBatch::try_new(schema, cols).unwrap()
}

fn bench(c: &mut Criterion) {
    let batch = realistic_batch();
    let schema = batch.schema();
    for (label, compression) in [
        ("none", Compression::None),
        ("zstd-1", Compression::Zstd { level: 1 }),
        ("zstd-3", Compression::Zstd { level: 3 }),
    ] {
        let mut enc = BatchEncoder::new(schema.clone(), compression);
        let encoded = enc.encode(0, &batch).unwrap();
        let wire = encoded.frame.wire_len();
        println!(
            "batch_codec/{label}: raw IPC {} bytes, frame {} bytes, ratio {:.2}x",
            encoded.raw_len,
            wire,
            encoded.raw_len as f64 / wire as f64
        );
        let mut group = c.benchmark_group(format!("batch_codec/{label}"));
        group.throughput(Throughput::Bytes(encoded.raw_len as u64));
        group.bench_function("encode", |b| {
            let mut seq = 0;
            b.iter(|| {
                seq += 1;
                black_box(enc.encode(seq, black_box(&batch)).unwrap())
            })
        });
        let mut dec = BatchDecoder::new(schema.clone(), Limits::default());
        assert_eq!(dec.decode(&encoded.frame).unwrap().batch, batch);
        group.bench_function("decode", |b| {
            b.iter(|| black_box(dec.decode(black_box(&encoded.frame)).unwrap()))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
