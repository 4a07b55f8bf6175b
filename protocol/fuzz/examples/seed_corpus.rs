//! Writes valid encodings into `corpus/<target>/` so fuzzing starts from real frames:
//! `cargo run --example seed_corpus` (from protocol/fuzz).

use std::fs;

use ferry_protocol::control::{ControlMessage, ErrorCode};
use ferry_protocol::data::{Ack, BatchEncoder, Compression, End, StreamHeader};
use ferry_protocol::frame::{encode_header, Frame};
use ferry_protocol::version::VersionRange;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = format!("corpus/{target}");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
    fs::write(format!("{dir}/{name}"), bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
}

fn wire(f: &Frame) -> Vec<u8> {
    let mut v = encode_header(f.kind, f.payload.len() as u32).to_vec();
    v.extend_from_slice(&f.payload);
    v
}

fn main() {
    let schema = ferry_protocol_fuzz::schema();
    let header = StreamHeader {
        task_id: "task-1".into(),
        split: 2,
        resume_after_seq: Some(41),
        compression: Compression::Zstd { level: 1 },
        schema: schema.clone(),
    }
    .to_frame()
    .unwrap_or_else(|e| panic!("{e}"));
    write("batch_decode", "header", &header.payload);
    let mut stream = wire(&header);
    for (c, tag) in [(Compression::None, "raw"), (Compression::Zstd { level: 1 }, "zstd")] {
        let mut enc = BatchEncoder::new(schema.clone(), c);
        for rows in [0usize, 1, 5] {
            let f = enc
                .encode(rows as u64, &ferry_protocol_fuzz::sample_batch(rows))
                .unwrap_or_else(|e| panic!("{e}"))
                .frame;
            write("batch_decode", &format!("{tag}-{rows}"), &f.payload);
            if c == Compression::None {
                // The target's second pass adds its own header: seed it with the bare IPC.
                let mut bare = vec![rows as u8];
                bare.extend_from_slice(&f.payload[17..]);
                write("batch_decode", &format!("ipc-{rows}"), &bare);
            }
            stream.extend_from_slice(&wire(&f));
        }
    }
    let msgs = [
        ControlMessage::Hello {
            versions: VersionRange::ours(),
            agent_id: "agent-1".into(),
            software: "ferry-agent/0.1".into(),
            capabilities: vec!["zstd".into(), "resume".into()],
        },
        ControlMessage::Heartbeat { seq: 3, sent_unix_ms: 1_700_000_000_000 },
        ControlMessage::error(ErrorCode::LimitExceeded, "too big"),
        ControlMessage::goodbye("superseded"),
    ];
    for (i, m) in msgs.iter().enumerate() {
        let f = m.to_frame().unwrap_or_else(|e| panic!("{e}"));
        write("control_decode", &format!("msg-{i}"), &f.payload);
        stream.extend_from_slice(&wire(&f));
    }
    stream.extend_from_slice(&wire(&End { batches: 6, rows: 12, changed: Default::default() }.to_frame().unwrap_or_else(|e| panic!("{e}"))));
    stream.extend_from_slice(&wire(&Ack { seq: 5, rows: 12 }.to_frame().unwrap_or_else(|e| panic!("{e}"))));
    write("frame_decode", "stream", &stream);
    println!("corpus written");
}
