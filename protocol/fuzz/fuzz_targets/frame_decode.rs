#![no_main]
//! Arbitrary bytes through the frame codec (small limit), then each frame to the decoder
//! matching its kind.

use bytes::BytesMut;
use ferry_protocol::control::ControlMessage;
use ferry_protocol::data::{Ack, End, StreamHeader};
use ferry_protocol::frame::{FrameCodec, FrameKind};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut codec = FrameCodec::new(4096);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        assert!(frame.payload.len() <= 4096);
        match frame.kind {
            FrameKind::Control => drop(ControlMessage::from_frame(&frame)),
            FrameKind::StreamHeader => drop(StreamHeader::from_frame(&frame, &ferry_protocol_fuzz::LIMITS)),
            FrameKind::End => drop(End::from_frame(&frame)),
            FrameKind::Ack => drop(Ack::from_frame(&frame)),
            FrameKind::Table => drop(ferry_protocol::changes::TableDecl::from_frame(
                &frame,
                &ferry_protocol_fuzz::LIMITS,
            )),
            FrameKind::Commit => drop(ferry_protocol::changes::Commit::from_frame(&frame)),
            FrameKind::Changes => {
                if let Ok((_, batch)) = ferry_protocol::changes::split_changes(&frame) {
                    let mut d = ferry_protocol::data::BatchDecoder::new(
                        ferry_protocol_fuzz::schema(),
                        ferry_protocol_fuzz::LIMITS,
                    );
                    drop(d.decode(&batch));
                }
            }
            FrameKind::Batch => {
                let mut d = ferry_protocol::data::BatchDecoder::new(
                    ferry_protocol_fuzz::schema(),
                    ferry_protocol_fuzz::LIMITS,
                );
                drop(d.decode(&frame));
            }
        }
    }
});
