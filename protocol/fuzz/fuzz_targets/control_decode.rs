#![no_main]
//! Arbitrary bytes as a control message payload; whatever decodes must re-encode and decode
//! to the same message.

use ferry_protocol::control::ControlMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ControlMessage::decode(data) {
        let again = m.encode().unwrap_or_else(|e| panic!("decoded message does not encode: {e}"));
        assert_eq!(ControlMessage::decode(&again).ok(), Some(m));
    }
});
