#![no_main]
//! Arbitrary bytes as a batch frame payload and as a stream header payload, against a fixed
//! schema. A second pass puts a consistent batch header (rows from the first byte, codec none,
//! matching raw_len) in front, so the input reaches the IPC checks and arrow directly.

use bytes::Bytes;
use ferry_protocol::data::{BatchDecoder, StreamHeader, CODEC_NONE};
use ferry_protocol::frame::{Frame, FrameKind};
use ferry_protocol_fuzz::{schema, LIMITS};
use libfuzzer_sys::fuzz_target;

fn check(payload: Bytes) {
    let mut dec = BatchDecoder::new(schema(), LIMITS);
    if let Ok(d) = dec.decode(&Frame::new(FrameKind::Batch, payload)) {
        assert_eq!(d.batch.schema(), schema());
        for c in d.batch.columns() {
            c.to_data()
                .validate_full()
                .unwrap_or_else(|e| panic!("decoded array is invalid: {e}"));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let raw = Bytes::copy_from_slice(data);
    let _ = StreamHeader::from_frame(&Frame::new(FrameKind::StreamHeader, raw.clone()), &LIMITS);
    check(raw);

    if let Some((rows, ipc)) = data.split_first() {
        let mut p = Vec::with_capacity(17 + ipc.len());
        p.extend_from_slice(&0u64.to_be_bytes());
        p.extend_from_slice(&u32::from(*rows % 16).to_be_bytes());
        p.push(CODEC_NONE);
        p.extend_from_slice(&(ipc.len() as u32).to_be_bytes());
        p.extend_from_slice(ipc);
        check(Bytes::from(p));
    }
});
