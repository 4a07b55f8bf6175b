//! Shared pieces of the fuzz targets: the fixed schema batches are decoded against, and a
//! sample batch for seeding the corpus.

use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder};
use arrow_array::*;
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use ferry_protocol::Limits;

/// Small limits, so lying lengths hit them rather than the machine's memory.
pub const LIMITS: Limits = Limits {
    max_control_frame: 1 << 16,
    max_data_frame: 1 << 20,
    max_decompressed_batch: 4 << 20,
    max_batch_rows: 10_000,
};

fn struct_fields() -> Fields {
    Fields::from(vec![
        Field::new("a", DataType::Int32, true),
        Field::new("b", DataType::Utf8, true),
    ])
}

/// One column of most supported layouts: fixed width, bit-packed, variable width, views,
/// fixed-size binary, list and struct.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("i8", DataType::Int8, true),
        Field::new("u64", DataType::UInt64, true),
        Field::new("f64", DataType::Float64, true),
        Field::new("dec", DataType::Decimal128(38, 10), true),
        Field::new("text", DataType::Utf8, true),
        Field::new("bin", DataType::Binary, true),
        Field::new("flag", DataType::Boolean, true),
        Field::new("day", DataType::Date32, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        Field::new("tod", DataType::Time64(TimeUnit::Microsecond), true),
        Field::new("view", DataType::Utf8View, true),
        Field::new("uuid", DataType::FixedSizeBinary(16), true),
        Field::new(
            "ints",
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            true,
        ),
        Field::new("pair", DataType::Struct(struct_fields()), true),
    ]))
}

/// A deterministic batch of [`schema`] with some nulls in every nullable column.
pub fn sample_batch(rows: usize) -> RecordBatch {
    let n = |i: usize| i % 3 != 1;
    let r = 0..rows;
    let mut list = ListBuilder::new(Int32Builder::new());
    for i in r.clone() {
        if n(i) {
            list.values().append_slice(&vec![i as i32; i % 4]);
            list.append(true);
        } else {
            list.append(false);
        }
    }
    let pair = StructArray::new(
        struct_fields(),
        vec![
            Arc::new(r.clone().map(|i| n(i).then_some(i as i32)).collect::<Int32Array>()),
            Arc::new(r.clone().map(|i| n(i).then(|| format!("p{i}"))).collect::<StringArray>()),
        ],
        Some(NullBuffer::from(r.clone().map(n).collect::<Vec<_>>())),
    );
    let cols: Vec<ArrayRef> = vec![
        Arc::new(r.clone().map(|i| i as i64).collect::<Int64Array>()),
        Arc::new(r.clone().map(|i| n(i).then_some(i as i8)).collect::<Int8Array>()),
        Arc::new(r.clone().map(|i| n(i).then_some(u64::MAX - i as u64)).collect::<UInt64Array>()),
        Arc::new(r.clone().map(|i| n(i).then_some(i as f64 / 3.0)).collect::<Float64Array>()),
        Arc::new(
            r.clone()
                .map(|i| n(i).then_some(i as i128 * 12_345_678_901))
                .collect::<Decimal128Array>()
                .with_precision_and_scale(38, 10)
                .unwrap_or_else(|e| panic!("{e}")),
        ),
        Arc::new(r.clone().map(|i| n(i).then(|| format!("é🚀{i}\0"))).collect::<StringArray>()),
        Arc::new(BinaryArray::from_iter(r.clone().map(|i| n(i).then(|| vec![0u8, i as u8])))),
        Arc::new(r.clone().map(|i| n(i).then_some(i % 2 == 0)).collect::<BooleanArray>()),
        Arc::new(r.clone().map(|i| n(i).then_some(i as i32)).collect::<Date32Array>()),
        Arc::new(
            r.clone()
                .map(|i| n(i).then_some(i as i64 * 1_000_000))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        ),
        Arc::new(r.clone().map(|i| n(i).then_some(i as i64)).collect::<Time64MicrosecondArray>()),
        Arc::new(
            r.clone()
                .map(|i| n(i).then(|| format!("a longer view string number {i}")))
                .collect::<StringViewArray>(),
        ),
        Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                r.clone().map(|i| n(i).then_some([i as u8; 16])),
                16,
            )
            .unwrap_or_else(|e| panic!("{e}")),
        ),
        Arc::new(list.finish()),
        Arc::new(pair),
    ];
    RecordBatch::try_new(schema(), cols).unwrap_or_else(|e| panic!("{e}"))
}
