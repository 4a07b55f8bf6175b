//! Property tests: everything encoded decodes back to exactly the same value.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, IntervalUnit, Schema, TimeUnit};
use bytes::BytesMut;
use ferry_protocol::control::{ControlMessage, ErrorCode, RejectCode};
use ferry_protocol::data::{Ack, BatchDecoder, BatchEncoder, Compression, End, StreamHeader};
use ferry_protocol::frame::{Frame, FrameCodec, FrameKind};
use ferry_protocol::version::VersionRange;
use ferry_protocol::Limits;
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

fn short() -> impl Strategy<Value = String> {
    prop_oneof![common::text(), "[a-z0-9_-]{0,32}"].prop_filter("<= 256 bytes", |s| s.len() <= 256)
}

fn control_message() -> impl Strategy<Value = ControlMessage> {
    let reject = prop_oneof![
        Just(RejectCode::UnsupportedVersion),
        Just(RejectCode::IdentityMismatch),
        Just(RejectCode::Revoked),
        Just(RejectCode::NotFirstMessage),
        Just(RejectCode::Malformed),
        Just(RejectCode::ShuttingDown),
    ];
    let error = prop_oneof![
        Just(ErrorCode::Malformed),
        Just(ErrorCode::LimitExceeded),
        Just(ErrorCode::SchemaMismatch),
        Just(ErrorCode::Internal),
        Just(ErrorCode::Unsupported),
    ];
    prop_oneof![
        (
            any::<u16>(),
            any::<u16>(),
            short(),
            short(),
            prop::collection::vec(short(), 0..64)
        )
            .prop_map(|(min, max, agent_id, software, capabilities)| {
                ControlMessage::Hello {
                    versions: VersionRange { min, max },
                    agent_id,
                    software,
                    capabilities,
                }
            }),
        (
            any::<u16>(),
            any::<u64>(),
            short(),
            short(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(
                |(version, session_id, agent_id, group, heartbeat_secs, reconnect_spread_ms)| {
                    ControlMessage::Welcome {
                        version,
                        session_id,
                        agent_id,
                        group,
                        heartbeat_secs,
                        reconnect_spread_ms,
                    }
                }
            ),
        (reject, common::text())
            .prop_map(|(code, message)| ControlMessage::Reject { code, message }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(seq, sent_unix_ms)| ControlMessage::Heartbeat { seq, sent_unix_ms }),
        (any::<u64>(), any::<u64>(), any::<u32>()).prop_map(
            |(seq, sent_unix_ms, reconnect_spread_ms)| ControlMessage::HeartbeatAck {
                seq,
                sent_unix_ms,
                reconnect_spread_ms
            }
        ),
        (error, common::text()).prop_map(|(code, message)| ControlMessage::Error { code, message }),
        common::text().prop_map(|reason| ControlMessage::Goodbye { reason }),
    ]
}

fn data_type() -> impl Strategy<Value = DataType> {
    let leaf = prop_oneof![
        Just(DataType::Null),
        Just(DataType::Boolean),
        Just(DataType::Int8),
        Just(DataType::Int16),
        Just(DataType::Int32),
        Just(DataType::Int64),
        Just(DataType::UInt8),
        Just(DataType::UInt32),
        Just(DataType::UInt64),
        Just(DataType::Float32),
        Just(DataType::Float64),
        Just(DataType::Utf8),
        Just(DataType::LargeUtf8),
        Just(DataType::Binary),
        Just(DataType::Utf8View),
        Just(DataType::BinaryView),
        Just(DataType::LargeBinary),
        Just(DataType::Float16),
        Just(DataType::Time32(TimeUnit::Second)),
        Just(DataType::Interval(IntervalUnit::YearMonth)),
        Just(DataType::Interval(IntervalUnit::DayTime)),
        (1u8..=9).prop_map(|p| DataType::Decimal32(p, 0)),
        (1u8..=18).prop_map(|p| DataType::Decimal64(p, 2.min(p as i8))),
        Just(DataType::Date32),
        Just(DataType::Date64),
        Just(DataType::Time32(TimeUnit::Millisecond)),
        Just(DataType::Time64(TimeUnit::Microsecond)),
        Just(DataType::Interval(IntervalUnit::MonthDayNano)),
        Just(DataType::Duration(TimeUnit::Nanosecond)),
        Just(DataType::FixedSizeBinary(16)),
        (1u8..=38, -10i8..=10)
            .prop_map(|(p, s)| DataType::Decimal128(p, s.clamp(-(p as i8), p as i8))),
        (1u8..=76, 0i8..=10).prop_map(|(p, s)| DataType::Decimal256(p, s.min(p as i8))),
        prop_oneof![
            Just(None),
            Just(Some("UTC".into())),
            Just(Some("+02:00".into()))
        ]
        .prop_map(|tz| DataType::Timestamp(TimeUnit::Microsecond, tz)),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            inner
                .clone()
                .prop_map(|t| DataType::List(Arc::new(Field::new("item", t, true)))),
            inner
                .clone()
                .prop_map(|t| DataType::LargeList(Arc::new(Field::new("item", t, true)))),
            prop::collection::vec(inner, 1..3).prop_map(|ts| DataType::Struct(Fields::from(
                ts.into_iter()
                    .enumerate()
                    .map(|(i, t)| Field::new(format!("f{i}"), t, true))
                    .collect::<Vec<_>>()
            ))),
        ]
    })
}

fn schema() -> impl Strategy<Value = Schema> {
    (
        prop::collection::vec((short(), data_type(), any::<bool>()), 1..8),
        prop::collection::hash_map("[a-z]{1,8}", short(), 0..3),
    )
        .prop_map(|(fields, md)| {
            Schema::new_with_metadata(
                fields
                    .into_iter()
                    .map(|(n, t, null)| {
                        let null = null || t == DataType::Null;
                        Field::new(n, t, null)
                    })
                    .collect::<Vec<_>>(),
                md.into_iter().collect::<HashMap<_, _>>(),
            )
        })
}

/// Encode through the codec and decode again, so framing is part of every round trip.
fn through_codec(f: &Frame) -> Frame {
    let mut codec = FrameCodec::new(Limits::default().max_data_frame);
    let mut buf = BytesMut::new();
    codec.encode(f, &mut buf).unwrap();
    let out = codec.decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty());
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn control_roundtrip(m in control_message()) {
        let f = through_codec(&m.to_frame().unwrap());
        prop_assert_eq!(f.kind, FrameKind::Control);
        prop_assert_eq!(ControlMessage::from_frame(&f).unwrap(), m);
    }

    #[test]
    fn end_ack_roundtrip(a in any::<u64>(), b in any::<u64>()) {
        let mut end = End { batches: a, rows: b, changed: Default::default() };
        end.changed.add("d", "zero date read as NULL", b);
        prop_assert_eq!(End::from_frame(&through_codec(&end.to_frame().unwrap())).unwrap(), end.clone());
        let ack = Ack { seq: a, rows: b };
        prop_assert_eq!(Ack::from_frame(&through_codec(&ack.to_frame().unwrap())).unwrap(), ack);
        prop_assert!(Ack::from_frame(&end.to_frame().unwrap()).is_err());
    }

    #[test]
    fn stream_header_roundtrip(
        schema in schema(),
        task_id in short(),
        split in any::<u32>(),
        resume_after_seq in any::<Option<u64>>(),
        compression in prop_oneof![Just(Compression::None), (1i32..=22).prop_map(|level| Compression::Zstd { level })],
    ) {
        let h = StreamHeader { task_id, split, resume_after_seq, compression, schema: Arc::new(schema) };
        let f = through_codec(&h.to_frame().unwrap());
        prop_assert_eq!(StreamHeader::from_frame(&f, &Limits::default()).unwrap(), h);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Every supported type, nested too, gets through the layout checks: all-null and empty
    /// columns of random schemas (values are covered by `batch_roundtrip`).
    #[test]
    fn any_supported_schema_roundtrip(schema in schema(), rows in 0usize..5, compression in common::compression()) {
        let schema = Arc::new(Schema::new(
            schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>(),
        ));
        let cols = schema.fields().iter().map(|f| arrow_array::new_null_array(f.data_type(), rows)).collect();
        let batch = arrow_array::RecordBatch::try_new(schema.clone(), cols).unwrap();
        let header = StreamHeader { task_id: "t".into(), split: 0, resume_after_seq: None, compression, schema: schema.clone() };
        let header = StreamHeader::from_frame(&header.to_frame().unwrap(), &Limits::default()).unwrap();
        let mut enc = BatchEncoder::new(schema, compression);
        let mut dec = BatchDecoder::new(header.schema, Limits::default());
        for b in [batch.clone(), batch.slice(0, 0)] {
            let f = enc.encode(9, &b).unwrap().frame;
            prop_assert_eq!(dec.decode(&f).unwrap().batch, b);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn batch_roundtrip(
        batches in prop::collection::vec(common::mixed_batch(40), 1..4),
        compression in common::compression(),
        first_seq in any::<u64>(),
    ) {
        let schema = common::mixed_schema();
        let mut enc = BatchEncoder::new(schema.clone(), compression);
        let mut dec = BatchDecoder::new(schema.clone(), Limits::default());
        for (i, batch) in batches.iter().enumerate() {
            let seq = first_seq.wrapping_add(i as u64);
            let e = enc.encode(seq, batch).unwrap();
            prop_assert_eq!(e.rows as usize, batch.num_rows());
            let f = through_codec(&e.frame);
            let d = dec.decode(&f).unwrap();
            prop_assert_eq!(d.seq, seq);
            prop_assert_eq!(d.raw_len, e.raw_len);
            prop_assert_eq!(d.wire_len, e.frame.wire_len());
            prop_assert_eq!(&d.batch, batch);
        }
    }
}
