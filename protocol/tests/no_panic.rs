//! "Hostile bytes never panic": arbitrary and mutated inputs to every decoder must come back
//! as `Ok` or `Err`. (Fuzz targets in `fuzz/` do the same with coverage guidance.)

mod common;

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use ferry_protocol::control::ControlMessage;
use ferry_protocol::data::{BatchDecoder, BatchEncoder, Compression, StreamHeader};
use ferry_protocol::frame::{Frame, FrameCodec, FrameKind};
use ferry_protocol::version::VersionRange;
use ferry_protocol::Limits;
use proptest::prelude::*;
use tokio_util::codec::Decoder;

/// Small limits so mutated lengths hit them, not memory.
const LIMITS: Limits = Limits {
    max_control_frame: 1 << 16,
    max_data_frame: 1 << 20,
    max_decompressed_batch: 4 << 20,
    max_batch_rows: 10_000,
};

fn decode_all(bytes: &[u8]) {
    let mut codec = FrameCodec::new(1 << 16);
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(f)) = codec.decode(&mut buf) {
        let _ = ControlMessage::from_frame(&f);
    }
}

fn decode_batch(payload: Bytes) {
    let mut dec = BatchDecoder::new(common::mixed_schema(), LIMITS);
    let frame = Frame::new(FrameKind::Batch, payload);
    if let Ok(d) = dec.decode(&frame) {
        // Whatever decodes must be internally consistent.
        assert_eq!(d.batch.schema(), common::mixed_schema());
        for c in d.batch.columns() {
            c.to_data().validate_full().unwrap();
        }
    }
}

fn decode_header(payload: Bytes) {
    let _ = StreamHeader::from_frame(&Frame::new(FrameKind::StreamHeader, payload), &LIMITS);
}

/// Valid encodings to mutate: few rows, so the IPC metadata is a large share of the bytes.
fn seeds() -> &'static [Bytes] {
    static SEEDS: OnceLock<Vec<Bytes>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let batch = common::sample_batch(3);
        let mut out = Vec::new();
        for c in [Compression::None, Compression::Zstd { level: 1 }] {
            let mut enc = BatchEncoder::new(common::mixed_schema(), c);
            out.push(enc.encode(1, &batch).unwrap().frame.payload);
            out.push(enc.encode(2, &batch.slice(1, 0)).unwrap().frame.payload);
        }
        out
    })
}

fn header_seed() -> Bytes {
    StreamHeader {
        task_id: "task-1".into(),
        split: 3,
        resume_after_seq: Some(9),
        compression: Compression::Zstd { level: 3 },
        schema: common::mixed_schema(),
    }
    .to_frame()
    .unwrap()
    .payload
}

fn control_seed() -> Bytes {
    ControlMessage::Hello {
        versions: VersionRange::ours(),
        agent_id: "agent-7".into(),
        software: "ferry/0.1".into(),
        capabilities: vec!["zstd".into()],
    }
    .encode()
    .unwrap()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    /// Overwrite 4 or 8 bytes with a value likely to be a bad length or offset.
    Put(usize, i64, bool),
    Truncate(usize),
    Extend(Vec<u8>),
    Remove(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        Just(-1i64),
        Just(0),
        Just(1),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(i32::MAX as i64),
        Just(i32::MIN as i64),
        Just(u32::MAX as i64),
        Just(1 << 20),
        -64i64..4096,
    ];
    prop_oneof![
        4 => (any::<usize>(), 1u8..=255).prop_map(|(p, x)| Mutation::Flip(p, x)),
        3 => (any::<usize>(), interesting, any::<bool>()).prop_map(|(p, v, w)| Mutation::Put(p, v, w)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Extend),
        1 => (any::<usize>(), 1usize..16).prop_map(|(p, n)| Mutation::Remove(p, n)),
    ]
}

fn apply(seed: &[u8], muts: &[Mutation]) -> Bytes {
    let mut v = seed.to_vec();
    for m in muts {
        let len = v.len().max(1);
        match m {
            Mutation::Flip(p, x) => {
                if let Some(b) = v.get_mut(p % len) {
                    *b ^= x;
                }
            }
            Mutation::Put(p, val, wide) => {
                let bytes = val.to_le_bytes();
                let n = if *wide { 8 } else { 4 };
                let start = p % len;
                for (i, b) in bytes.iter().take(n).enumerate() {
                    if let Some(slot) = v.get_mut(start + i) {
                        *slot = *b;
                    }
                }
            }
            Mutation::Truncate(p) => v.truncate(p % len),
            Mutation::Extend(extra) => v.extend_from_slice(extra),
            Mutation::Remove(p, n) => {
                let start = (p % len).min(v.len());
                let end = (start + n).min(v.len());
                v.drain(start..end);
            }
        }
    }
    Bytes::from(v)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_frame_codec(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_all(&bytes);
    }

    #[test]
    fn arbitrary_bytes_control(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = ControlMessage::decode(&bytes);
    }

    #[test]
    fn arbitrary_bytes_header_and_batch(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let b = Bytes::from(bytes);
        decode_header(b.clone());
        decode_batch(b);
    }

    #[test]
    fn arbitrary_bytes_after_valid_batch_header(
        mut bytes in prop::collection::vec(any::<u8>(), 0..512),
        rows in 0u32..8,
        zstd in any::<bool>(),
    ) {
        // Get past the fixed header so the IPC walker sees the random bytes.
        let mut p = Vec::new();
        p.extend_from_slice(&1u64.to_be_bytes());
        p.extend_from_slice(&rows.to_be_bytes());
        if zstd {
            let raw_len = bytes.len() as u32;
            bytes = zstd::bulk::compress(&bytes, 1).unwrap();
            p.push(1);
            p.extend_from_slice(&raw_len.to_be_bytes());
        } else {
            p.push(0);
            p.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        }
        p.extend_from_slice(&bytes);
        decode_batch(Bytes::from(p));
    }

    #[test]
    fn arbitrary_json_shapes_control(
        ty in prop_oneof![Just("hello"), Just("welcome"), Just("reject"), Just("error"), Just("goodbye"), Just("heartbeat")],
        body in "[{}\\[\\]\",:0-9a-z_ -]{0,64}",
    ) {
        let _ = ControlMessage::decode(format!("{{\"type\":\"{ty}\",{body}").as_bytes());
        let _ = ControlMessage::decode(format!("{{\"type\":\"{ty}\",{body}}}").as_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_batch_frames(seed in 0usize..4, muts in prop::collection::vec(mutation(), 1..4)) {
        let s = &seeds()[seed];
        decode_batch(apply(s, &muts));
        // Same mutation applied to the IPC message only, re-wrapped with a consistent header,
        // so the damage reaches arrow instead of stopping at the length checks.
        if s.get(12) == Some(&0) {
            let ipc = apply(s.get(17..).unwrap_or_default(), &muts);
            let mut p = s.get(..17).unwrap_or_default().to_vec();
            p.splice(13..17, (ipc.len() as u32).to_be_bytes());
            p.extend_from_slice(&ipc);
            decode_batch(Bytes::from(p));
        }
    }

    #[test]
    fn mutated_header_and_control(muts in prop::collection::vec(mutation(), 1..4)) {
        decode_header(apply(&header_seed(), &muts));
        let c = apply(&control_seed(), &muts);
        let _ = ControlMessage::decode(&c);
        let mut wire = ferry_protocol::frame::encode_header(FrameKind::Control, c.len() as u32).to_vec();
        wire.extend_from_slice(&c);
        decode_all(&apply(&wire, &muts));
    }
}

#[test]
fn seeds_are_valid() {
    for s in seeds() {
        let mut dec = BatchDecoder::new(common::mixed_schema(), LIMITS);
        dec.decode(&Frame::new(FrameKind::Batch, s.clone()))
            .unwrap();
    }
    StreamHeader::from_frame(&Frame::new(FrameKind::StreamHeader, header_seed()), &LIMITS).unwrap();
    ControlMessage::decode(&control_seed()).unwrap();
    let _ = Arc::new(());
}
