//! Shared proptest strategies: random record batches of the mixed-type test schema.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder};
use arrow_array::*;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use ferry_protocol::data::Compression;
use proptest::prelude::*;

/// The schema every random batch uses: one column per type the sync path must carry.
pub fn mixed_schema() -> SchemaRef {
    let mut md = HashMap::new();
    md.insert("origin".to_string(), "ferry-test".to_string());
    Arc::new(Schema::new_with_metadata(
        vec![
            Field::new("id", DataType::Int64, false),
            Field::new("i8", DataType::Int8, true),
            Field::new("i16", DataType::Int16, true),
            Field::new("i32", DataType::Int32, true),
            Field::new("i64", DataType::Int64, true),
            Field::new("u64", DataType::UInt64, true),
            Field::new("f64", DataType::Float64, true),
            Field::new("dec38_0", DataType::Decimal128(38, 0), true),
            Field::new("dec38_10", DataType::Decimal128(38, 10), true),
            Field::new("dec18_4", DataType::Decimal128(18, 4), true),
            Field::new("text", DataType::Utf8, true),
            Field::new("bin", DataType::Binary, true),
            Field::new("flag", DataType::Boolean, true),
            Field::new("day", DataType::Date32, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new(
                "ts_utc",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("tod", DataType::Time64(TimeUnit::Microsecond), true),
            Field::new(
                "ints",
                DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
                true,
            ),
            Field::new(
                "pair",
                DataType::Struct(Fields::from(vec![
                    Field::new("a", DataType::Int32, true),
                    Field::new("b", DataType::Utf8, true),
                ])),
                true,
            ),
            Field::new("view", DataType::Utf8View, true),
            Field::new("uuid", DataType::FixedSizeBinary(16), true),
        ],
        md,
    ))
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop::option::weighted(0.8, s).boxed()
}

fn col<T: std::fmt::Debug + Clone + 'static>(
    n: usize,
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Vec<Option<T>>> {
    prop::collection::vec(opt(s), n).boxed()
}

pub fn text() -> BoxedStrategy<String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(
            prop_oneof![
                Just('\0'),
                Just('🚀'),
                Just('é'),
                Just('漢'),
                prop::char::range('a', 'z'),
                any::<char>()
            ],
            0..16
        )
        .prop_map(String::from_iter),
        Just("emoji 🦀 and a NUL \0 inside".to_string()),
        Just(String::new()),
    ]
    .boxed()
}

fn bytes() -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..24).boxed()
}

fn f64s() -> BoxedStrategy<f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(-0.0),
        Just(0.0),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MIN_POSITIVE),
        any::<f64>(),
    ]
    .boxed()
}

fn dec(precision: u32) -> BoxedStrategy<i128> {
    let max = 10i128.pow(precision) - 1;
    prop_oneof![Just(max), Just(-max), Just(0), -max..=max].boxed()
}

fn build(schema: SchemaRef, n: usize, cols: Cols) -> RecordBatch {
    let Cols(ids, i8s, i16s, i32s, i64s, u64s, f64s, d0, d10, d4, texts, bins, bools, more) = cols;
    let Cols2(days, ts, ts_utc, tod, lists, pairs, views, uuids) = more;
    let list = {
        let mut b = ListBuilder::new(Int32Builder::new());
        for l in lists {
            match l {
                Some(v) => {
                    b.values().extend(v);
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        b.finish()
    };
    let pair = {
        let a: Int32Array = pairs.iter().map(|p| p.as_ref().and_then(|p| p.0)).collect();
        let b: StringArray = pairs
            .iter()
            .map(|p| p.as_ref().and_then(|p| p.1.clone()))
            .collect();
        let nulls =
            arrow_buffer::NullBuffer::from(pairs.iter().map(Option::is_some).collect::<Vec<_>>());
        let DataType::Struct(fields) = schema.field(18).data_type().clone() else {
            unreachable!()
        };
        StructArray::new(fields, vec![Arc::new(a), Arc::new(b)], Some(nulls))
    };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(Int8Array::from(i8s)),
        Arc::new(Int16Array::from(i16s)),
        Arc::new(Int32Array::from(i32s)),
        Arc::new(Int64Array::from(i64s)),
        Arc::new(UInt64Array::from(u64s)),
        Arc::new(Float64Array::from(f64s)),
        Arc::new(
            Decimal128Array::from(d0)
                .with_precision_and_scale(38, 0)
                .unwrap(),
        ),
        Arc::new(
            Decimal128Array::from(d10)
                .with_precision_and_scale(38, 10)
                .unwrap(),
        ),
        Arc::new(
            Decimal128Array::from(d4)
                .with_precision_and_scale(18, 4)
                .unwrap(),
        ),
        Arc::new(StringArray::from(texts)),
        Arc::new(BinaryArray::from_iter(bins)),
        Arc::new(BooleanArray::from(bools)),
        Arc::new(Date32Array::from(days)),
        Arc::new(TimestampMicrosecondArray::from(ts)),
        Arc::new(TimestampMicrosecondArray::from(ts_utc).with_timezone("UTC")),
        Arc::new(Time64MicrosecondArray::from(tod)),
        Arc::new(list),
        Arc::new(pair),
        Arc::new(StringViewArray::from_iter(views)),
        Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(uuids.into_iter(), 16).unwrap(),
        ),
    ];
    assert!(cols.iter().all(|c| c.len() == n));
    RecordBatch::try_new(schema, cols).unwrap()
}

#[derive(Debug, Clone)]
struct Cols(
    Vec<i64>,
    Vec<Option<i8>>,
    Vec<Option<i16>>,
    Vec<Option<i32>>,
    Vec<Option<i64>>,
    Vec<Option<u64>>,
    Vec<Option<f64>>,
    Vec<Option<i128>>,
    Vec<Option<i128>>,
    Vec<Option<i128>>,
    Vec<Option<String>>,
    Vec<Option<Vec<u8>>>,
    Vec<Option<bool>>,
    Cols2,
);

#[derive(Debug, Clone)]
#[allow(clippy::type_complexity)]
struct Cols2(
    Vec<Option<i32>>,
    Vec<Option<i64>>,
    Vec<Option<i64>>,
    Vec<Option<i64>>,
    Vec<Option<Vec<Option<i32>>>>,
    Vec<Option<(Option<i32>, Option<String>)>>,
    Vec<Option<String>>,
    Vec<Option<[u8; 16]>>,
);

fn cols(n: usize) -> impl Strategy<Value = Cols> {
    let more = (
        col(n, any::<i32>()),
        col(n, any::<i64>()),
        col(n, any::<i64>()),
        col(n, 0i64..86_400_000_000),
        col(
            n,
            prop::collection::vec(prop::option::of(any::<i32>()), 0..5),
        ),
        col(
            n,
            (prop::option::of(any::<i32>()), prop::option::of(text())),
        ),
        col(n, text()),
        col(n, any::<[u8; 16]>()),
    )
        .prop_map(|(a, b, c, d, e, f, g, h)| Cols2(a, b, c, d, e, f, g, h));
    (
        (
            prop::collection::vec(any::<i64>(), n),
            col(n, any::<i8>()),
            col(n, any::<i16>()),
            col(n, any::<i32>()),
            col(n, any::<i64>()),
            col(n, prop_oneof![Just(u64::MAX), Just(0u64), any::<u64>()]),
            col(n, f64s()),
        ),
        (
            col(n, dec(38)),
            col(n, dec(38)),
            col(n, dec(18)),
            col(n, text()),
            col(n, bytes()),
            col(n, any::<bool>()),
            more,
        ),
    )
        .prop_map(|((a, b, c, d, e, f, g), (h, i, j, k, l, m, more))| {
            Cols(a, b, c, d, e, f, g, h, i, j, k, l, m, more)
        })
}

/// A random batch of [`mixed_schema`] with up to `max_rows` rows; sometimes a slice of a
/// bigger batch, so encoding of arrays with offsets is covered too.
pub fn mixed_batch(max_rows: usize) -> impl Strategy<Value = RecordBatch> {
    (0..=max_rows)
        .prop_flat_map(|n| (Just(n), cols(n), 0..=n, 0..=n))
        .prop_map(|(n, c, a, b)| {
            let batch = build(mixed_schema(), n, c);
            if a % 3 == 0 {
                // Unsliced most of the time.
                batch
            } else {
                let (lo, hi) = (a.min(b), a.max(b));
                batch.slice(lo, hi - lo)
            }
        })
}

pub fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Zstd { level: 1 }),
        Just(Compression::Zstd { level: 3 }),
    ]
}

/// A small deterministic batch, for tests that need one valid frame.
pub fn sample_batch(rows: usize) -> RecordBatch {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let c = cols(rows).new_tree(&mut runner).unwrap().current();
    build(mixed_schema(), rows, c)
}
