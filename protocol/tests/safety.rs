//! Decoder safety on crafted inputs: bombs, lying lengths, limits, mismatches.
//!
//! A counting global allocator records the largest single allocation made by the current
//! thread, so "no big allocation" is asserted, not assumed.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use arrow_array::{Int32Array, RecordBatch, UnionArray};
use arrow_schema::{DataType, Field, Schema, UnionFields, UnionMode};
use bytes::Bytes;
use ferry_protocol::data::{
    BatchDecoder, BatchEncoder, Compression, StreamHeader, BATCH_HEADER_LEN, CODEC_NONE, CODEC_ZSTD,
};
use ferry_protocol::frame::{Frame, FrameKind};
use ferry_protocol::{Limits, ProtocolError};

struct PeakAlloc;

thread_local! {
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = PEAK.try_with(|p| p.set(p.get().max(size)));
}

// SAFETY: forwards to the system allocator; only records sizes.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note(l.size());
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note(new);
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// Runs `f` and returns its result with the largest allocation it made.
fn peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
    PEAK.with(|p| p.set(0));
    let r = f();
    (r, PEAK.with(|p| p.get()))
}

fn batch_payload(seq: u64, rows: u32, codec: u8, raw_len: u32, body: &[u8]) -> Bytes {
    let mut p = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&rows.to_be_bytes());
    p.push(codec);
    p.extend_from_slice(&raw_len.to_be_bytes());
    p.extend_from_slice(body);
    Bytes::from(p)
}

fn decode(
    limits: Limits,
    payload: Bytes,
) -> Result<ferry_protocol::data::DecodedBatch, ProtocolError> {
    BatchDecoder::new(common::mixed_schema(), limits).decode(&Frame::new(FrameKind::Batch, payload))
}

#[test]
fn zstd_bomb_declaring_too_much_is_refused_before_inflating() {
    let bomb = zstd::bulk::compress(&vec![0u8; 8 << 20], 3).unwrap();
    assert!(bomb.len() < 4096, "a real bomb: {} bytes", bomb.len());
    let payload = batch_payload(1, 10, CODEC_ZSTD, u32::MAX, &bomb);
    let (r, max) = peak(|| decode(Limits::default(), payload));
    match r {
        Err(e @ ProtocolError::DecompressedTooLarge { declared, limit }) => {
            assert_eq!(declared, u64::from(u32::MAX));
            assert_eq!(limit, 256 << 20);
            assert_eq!(
                e.to_string(),
                "batch declares 4294967295 uncompressed bytes, the limit is 268435456"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(max < 64 * 1024, "allocated {max} bytes");
}

#[test]
fn zstd_bomb_declaring_little_cannot_write_more() {
    // Frame with content size in its header: rejected from the header alone.
    let sized = zstd::bulk::compress(&vec![0u8; 8 << 20], 3).unwrap();
    let (r, max) = peak(|| {
        decode(
            Limits::default(),
            batch_payload(1, 10, CODEC_ZSTD, 1000, &sized),
        )
    });
    assert!(
        matches!(r, Err(ProtocolError::DecompressedLengthMismatch { declared: 1000, actual }) if actual == 8 << 20),
        "{r:?}"
    );
    assert!(max < 64 * 1024, "allocated {max} bytes");

    // Streamed frame without content size: zstd stops at the 1000-byte buffer.
    let unsized_ = zstd::stream::encode_all(&vec![0u8; 8 << 20][..], 3).unwrap();
    assert_eq!(
        zstd::zstd_safe::get_frame_content_size(&unsized_).unwrap(),
        None
    );
    let (r, max) = peak(|| {
        decode(
            Limits::default(),
            batch_payload(1, 10, CODEC_ZSTD, 1000, &unsized_),
        )
    });
    match r {
        Err(e @ ProtocolError::Zstd(_)) => assert!(e.to_string().contains("too small"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(max < 64 * 1024, "allocated {max} bytes");
}

#[test]
fn zstd_short_output_is_a_mismatch() {
    let batch = common::sample_batch(5);
    let mut enc = BatchEncoder::new(common::mixed_schema(), Compression::None);
    let raw = enc
        .encode(0, &batch)
        .unwrap()
        .frame
        .payload
        .slice(BATCH_HEADER_LEN..);
    let unsized_ = zstd::stream::encode_all(&raw[..], 1).unwrap();
    let claimed = raw.len() as u32 + 100;
    let r = decode(
        Limits::default(),
        batch_payload(0, 5, CODEC_ZSTD, claimed, &unsized_),
    );
    assert!(
        matches!(r, Err(ProtocolError::DecompressedLengthMismatch { actual, .. }) if actual == raw.len()),
        "{r:?}"
    );
    // The honest length decodes, also for a streamed (unsized) zstd frame.
    let ok = decode(
        Limits::default(),
        batch_payload(0, 5, CODEC_ZSTD, raw.len() as u32, &unsized_),
    );
    assert_eq!(ok.unwrap().batch, batch);
}

#[test]
fn ipc_lengths_are_checked_before_arrow_allocates() {
    // A metadata length of ~2 GiB in the IPC prefix: arrow's reader would `vec![0; len]`.
    let mut body = vec![0xFF, 0xFF, 0xFF, 0xFF];
    body.extend_from_slice(&0x7FFF_FFF0i32.to_le_bytes());
    body.extend_from_slice(&[0u8; 64]);
    let (r, max) = peak(|| {
        decode(
            Limits::default(),
            batch_payload(0, 1, CODEC_NONE, body.len() as u32, &body),
        )
    });
    assert!(matches!(r, Err(ProtocolError::Truncated { .. })), "{r:?}");
    assert!(max < 64 * 1024);

    // Legacy (no continuation marker) form is refused.
    let mut legacy = 16i32.to_le_bytes().to_vec();
    legacy.extend_from_slice(&[0u8; 20]);
    let r = decode(
        Limits::default(),
        batch_payload(0, 1, CODEC_NONE, legacy.len() as u32, &legacy),
    );
    assert!(matches!(r, Err(ProtocolError::IpcFraming(m)) if m.contains("continuation")));
}

#[test]
fn frame_level_limits() {
    let limits = Limits {
        max_data_frame: 100,
        ..Limits::default()
    };
    let r = decode(limits, Bytes::from(vec![0u8; 101]));
    assert!(matches!(
        r,
        Err(ProtocolError::FrameTooLarge {
            len: 101,
            limit: 100
        })
    ));

    let r = decode(Limits::default(), Bytes::from_static(&[0; 16]));
    assert!(matches!(
        r,
        Err(ProtocolError::Truncated {
            need: 17,
            have: 16,
            ..
        })
    ));

    let r = decode(
        Limits::default(),
        batch_payload(0, 2_000_000, CODEC_NONE, 0, &[]),
    );
    assert!(matches!(
        r,
        Err(ProtocolError::TooManyRows {
            rows: 2_000_000,
            limit: 1_048_576
        })
    ));

    let r = decode(Limits::default(), batch_payload(0, 0, 7, 0, &[]));
    assert!(matches!(r, Err(ProtocolError::InvalidCompression(m)) if m.contains('7')));

    let r = decode(
        Limits::default(),
        batch_payload(0, 0, CODEC_NONE, 5, &[1, 2, 3]),
    );
    assert!(matches!(
        r,
        Err(ProtocolError::DecompressedLengthMismatch {
            declared: 5,
            actual: 3
        })
    ));

    let wrong = Frame::new(FrameKind::End, Bytes::new());
    let r = BatchDecoder::new(common::mixed_schema(), Limits::default()).decode(&wrong);
    assert!(matches!(
        r,
        Err(ProtocolError::UnexpectedFrame {
            expected: "batch",
            got: FrameKind::End
        })
    ));
}

#[test]
fn declared_rows_mismatch() {
    let batch = common::sample_batch(4);
    let mut enc = BatchEncoder::new(common::mixed_schema(), Compression::Zstd { level: 1 });
    let mut p = enc.encode(5, &batch).unwrap().frame.payload.to_vec();
    p[8..12].copy_from_slice(&3u32.to_be_bytes());
    let r = decode(Limits::default(), Bytes::from(p));
    assert!(
        matches!(
            r,
            Err(ProtocolError::RowCountMismatch {
                declared: 3,
                actual: 4
            })
        ),
        "{r:?}"
    );
}

#[test]
fn rows_limit_is_enforced_on_both_sides() {
    let batch = common::sample_batch(20);
    let limits = Limits {
        max_batch_rows: 10,
        ..Limits::default()
    };
    let mut enc = BatchEncoder::new(common::mixed_schema(), Compression::None).with_limits(limits);
    assert!(matches!(
        enc.encode(0, &batch),
        Err(ProtocolError::TooManyRows {
            rows: 20,
            limit: 10
        })
    ));
    let mut enc = BatchEncoder::new(common::mixed_schema(), Compression::None);
    let f = enc.encode(0, &batch).unwrap().frame;
    assert!(matches!(
        BatchDecoder::new(common::mixed_schema(), limits).decode(&f),
        Err(ProtocolError::TooManyRows {
            rows: 20,
            limit: 10
        })
    ));
}

#[test]
fn schema_mismatch() {
    let other = Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, false)]));
    let batch =
        RecordBatch::try_new(other.clone(), vec![Arc::new(Int32Array::from(vec![1, 2]))]).unwrap();
    let mut enc = BatchEncoder::new(common::mixed_schema(), Compression::None);
    let e = enc.encode(0, &batch).unwrap_err();
    assert!(matches!(e, ProtocolError::SchemaMismatch(_)));
    assert_eq!(
        e.to_string(),
        "schema mismatch: batch has 1 columns, the stream schema has 21"
    );

    // Same column count, different type / nullability.
    let s1 = Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, true)]));
    let b1 = RecordBatch::try_new(s1, vec![Arc::new(Int32Array::from(vec![1]))]).unwrap();
    let e = BatchEncoder::new(other.clone(), Compression::None)
        .encode(0, &b1)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "schema mismatch: column 0: batch has \"id\" Int32 (nullable), the stream schema has \"id\" Int32"
    );

    // A decoder with another schema refuses the batch instead of misreading it.
    let f = BatchEncoder::new(other, Compression::None)
        .encode(0, &batch)
        .unwrap()
        .frame;
    let r = BatchDecoder::new(common::mixed_schema(), Limits::default()).decode(&f);
    assert!(r.is_err());
}

#[test]
fn unsupported_types_are_refused() {
    let fields =
        UnionFields::try_new(vec![0], vec![Field::new("a", DataType::Int32, true)]).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "u",
        DataType::Union(fields.clone(), UnionMode::Sparse),
        false,
    )]));
    let header = StreamHeader {
        task_id: "t".into(),
        split: 0,
        resume_after_seq: None,
        compression: Compression::None,
        schema: schema.clone(),
    };
    assert!(
        matches!(header.to_frame(), Err(ProtocolError::SchemaMismatch(m)) if m.contains("Union"))
    );
    let arr = UnionArray::try_new(
        fields,
        vec![0i8].into(),
        None,
        vec![Arc::new(Int32Array::from(vec![1]))],
    )
    .unwrap();
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(arr)]).unwrap();
    let mut enc = BatchEncoder::new(schema.clone(), Compression::None);
    assert!(matches!(
        enc.encode(0, &batch),
        Err(ProtocolError::SchemaMismatch(_))
    ));
    let r = BatchDecoder::new(schema, Limits::default())
        .decode(&Frame::new(FrameKind::Batch, Bytes::new()));
    assert!(matches!(r, Err(ProtocolError::SchemaMismatch(_))));

    let dict = Schema::new(vec![Field::new(
        "d",
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        true,
    )]);
    let header = StreamHeader {
        schema: Arc::new(dict),
        ..header
    };
    assert!(matches!(
        header.to_frame(),
        Err(ProtocolError::SchemaMismatch(_))
    ));
}

#[test]
fn stream_header_checks() {
    let h = StreamHeader {
        task_id: "x".repeat(257),
        split: 1,
        resume_after_seq: None,
        compression: Compression::None,
        schema: common::mixed_schema(),
    };
    assert!(matches!(
        h.to_frame(),
        Err(ProtocolError::FieldTooLong {
            field: "task_id",
            ..
        })
    ));
    let h = StreamHeader {
        task_id: "t".into(),
        ..h
    };
    let f = h.to_frame().unwrap();
    let small = Limits {
        max_control_frame: 64,
        ..Limits::default()
    };
    assert!(matches!(
        StreamHeader::from_frame(&f, &small),
        Err(ProtocolError::FrameTooLarge { limit: 64, .. })
    ));
    // JSON length pointing past the payload.
    let mut p = f.payload.to_vec();
    p[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    let r = StreamHeader::from_frame(
        &Frame::new(FrameKind::StreamHeader, Bytes::from(p)),
        &Limits::default(),
    );
    assert!(matches!(
        r,
        Err(ProtocolError::Truncated {
            what: "stream header JSON",
            ..
        })
    ));
    // Invalid level in otherwise valid JSON.
    let json = br#"{"task_id":"t","split":0,"compression":{"codec":"zstd","level":-5}}"#;
    let mut p = (json.len() as u32).to_be_bytes().to_vec();
    p.extend_from_slice(json);
    p.extend_from_slice(
        &f.payload[4 + u32::from_be_bytes(f.payload[..4].try_into().unwrap()) as usize..],
    );
    let r = StreamHeader::from_frame(
        &Frame::new(FrameKind::StreamHeader, Bytes::from(p)),
        &Limits::default(),
    );
    assert!(
        matches!(r, Err(ProtocolError::InvalidCompression(_))),
        "{r:?}"
    );
}

#[test]
fn compression_parse() {
    use Compression::*;
    assert_eq!(Compression::parse("off").unwrap(), None);
    assert_eq!(Compression::parse("none").unwrap(), None);
    assert_eq!(Compression::parse(" NONE ").unwrap(), None);
    assert_eq!(Compression::parse("zstd").unwrap(), Zstd { level: 3 });
    assert_eq!(Compression::parse("zstd:1").unwrap(), Zstd { level: 1 });
    assert_eq!(Compression::parse("zstd-19").unwrap(), Zstd { level: 19 });
    assert_eq!(Compression::parse("zstd:22").unwrap(), Zstd { level: 22 });
    for bad in [
        "", "gzip", "zstd:0", "zstd:23", "zstd:-1", "zstd--1", "zstd:", "zstd:x", "zstd3", "lz4",
    ] {
        assert!(
            matches!(
                Compression::parse(bad),
                Err(ProtocolError::InvalidCompression(_))
            ),
            "{bad:?} should be rejected"
        );
    }
    assert_eq!(
        "zstd:7".parse::<Compression>().unwrap().to_string(),
        "zstd:7"
    );
    assert_eq!(None.to_string(), "none");
    assert!(Zstd { level: 0 }.validate().is_err());
}

#[test]
fn incompressible_batches_go_out_raw() {
    use arrow_array::BinaryArray;
    let schema = Arc::new(Schema::new(vec![Field::new("b", DataType::Binary, false)]));
    // xorshift noise: zstd cannot shrink it.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let vals: Vec<Vec<u8>> = (0..64)
        .map(|_| {
            (0..256)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect();
    let arr = BinaryArray::from_iter_values(vals.iter());
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(arr)]).unwrap();
    let e = BatchEncoder::new(schema.clone(), Compression::Zstd { level: 3 })
        .encode(0, &batch)
        .unwrap();
    assert_eq!(e.frame.payload[12], CODEC_NONE);
    let d = BatchDecoder::new(schema, Limits::default())
        .decode(&e.frame)
        .unwrap();
    assert_eq!(d.batch, batch);
}

/// Builds a batch payload around a hand-made IPC RecordBatch message, to hit one check exactly.
fn crafted(
    rows: i64,
    nodes: &[(i64, i64)],
    buffers: &[(i64, i64)],
    variadic: &[i64],
    body_len: usize,
) -> Bytes {
    use arrow_ipc::{MessageBuilder, MessageHeader, MetadataVersion, RecordBatchBuilder};
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let nodes: Vec<_> = nodes
        .iter()
        .map(|(l, n)| arrow_ipc::FieldNode::new(*l, *n))
        .collect();
    let nodes = fbb.create_vector(&nodes);
    let buffers: Vec<_> = buffers
        .iter()
        .map(|(o, l)| arrow_ipc::Buffer::new(*o, *l))
        .collect();
    let buffers = fbb.create_vector(&buffers);
    let variadic = fbb.create_vector(variadic);
    let mut rb = RecordBatchBuilder::new(&mut fbb);
    rb.add_length(rows);
    rb.add_nodes(nodes);
    rb.add_buffers(buffers);
    rb.add_variadicBufferCounts(variadic);
    let rb = rb.finish();
    let mut m = MessageBuilder::new(&mut fbb);
    m.add_version(MetadataVersion::V5);
    m.add_header_type(MessageHeader::RecordBatch);
    m.add_header(rb.as_union_value());
    m.add_bodyLength(body_len as i64);
    let m = m.finish();
    fbb.finish(m, None);
    let mut meta = fbb.finished_data().to_vec();
    meta.resize(meta.len().next_multiple_of(8), 0);
    let mut ipc = vec![0xFF; 4];
    ipc.extend_from_slice(&(meta.len() as i32).to_le_bytes());
    ipc.extend_from_slice(&meta);
    ipc.extend(std::iter::repeat_n(0u8, body_len));
    batch_payload(0, rows as u32, CODEC_NONE, ipc.len() as u32, &ipc)
}

#[test]
fn view_buffer_of_partial_views_is_refused() {
    // Found by cargo-fuzz: arrow 60 validates a Utf8View column by viewing the whole views
    // buffer as `[u128]`, which asserts its length is a multiple of 16. Our layout walk
    // refuses such a buffer before arrow sees it.
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Utf8View, true)]));
    let mut dec = BatchDecoder::new(schema.clone(), Limits::default());
    let bad = crafted(1, &[(1, 0)], &[(0, 0), (0, 24)], &[0], 24);
    let r = dec.decode(&Frame::new(FrameKind::Batch, bad));
    assert!(
        matches!(&r, Err(ProtocolError::IpcFraming(m)) if m.contains("16-byte units")),
        "{r:?}"
    );
    // The same message with a well-formed views buffer gets through to arrow (zeroed views
    // are empty inline strings).
    let good = crafted(1, &[(1, 0)], &[(0, 0), (0, 16)], &[0], 16);
    let d = dec.decode(&Frame::new(FrameKind::Batch, good)).unwrap();
    assert_eq!(d.batch.num_rows(), 1);
}

#[test]
fn layout_walk_rejects_inconsistent_metadata() {
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
    let mut dec = BatchDecoder::new(schema, Limits::default());
    let mut check = |payload: Bytes, needle: &str| {
        let r = dec.decode(&Frame::new(FrameKind::Batch, payload));
        assert!(
            matches!(&r, Err(ProtocolError::IpcFraming(m)) if m.contains(needle)),
            "{needle}: {r:?}"
        );
    };
    check(
        crafted(2, &[(2, 0)], &[(0, 0), (-8, 16)], &[], 16),
        "offset -8",
    );
    check(
        crafted(2, &[(2, 0)], &[(0, 0), (8, 16)], &[], 16),
        "does not fit",
    );
    check(
        crafted(2, &[(2, 0)], &[(0, 0), (0, 12)], &[], 16),
        "8-byte units",
    );
    check(
        crafted(2, &[(3, 0)], &[(0, 0), (0, 16)], &[], 16),
        "invalid length 3",
    );
    check(
        crafted(2, &[(2, 3)], &[(0, 0), (0, 16)], &[], 16),
        "invalid null count 3",
    );
    check(
        crafted(2, &[(2, -1)], &[(0, 0), (0, 16)], &[], 16),
        "invalid null count -1",
    );
    check(
        crafted(2, &[], &[(0, 0), (0, 16)], &[], 16),
        "missing field node",
    );
    check(crafted(2, &[(2, 0)], &[(0, 0)], &[], 16), "missing buffer");
    check(
        crafted(2, &[(2, 0)], &[(0, 0), (0, 16), (0, 0)], &[], 16),
        "more field nodes or buffers",
    );
    // And the consistent version decodes.
    let ok = dec.decode(&Frame::new(
        FrameKind::Batch,
        crafted(2, &[(2, 0)], &[(0, 0), (0, 16)], &[], 16),
    ));
    assert_eq!(ok.unwrap().batch.num_rows(), 2);
}
