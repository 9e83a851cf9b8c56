//! Parses arbitrary datagrams as IKE messages; anything that parses must serialize back
//! to the same bytes (the parser keeps every field it reads).
#![no_main]

use ike::wire::{Message, PayloadType, locate_encrypted, parse_chain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::parse(data) {
        let bytes = msg.to_bytes().expect("a parsed message serializes");
        let again = Message::parse(&bytes).expect("a serialized message parses");
        assert_eq!(again, msg);
    }
    let _ = locate_encrypted(data);
    if let Some((&first, rest)) = data.split_first() {
        let _ = parse_chain(PayloadType::from(first), rest, false);
    }
});
