//! The run-envelope parser on arbitrary terminal output under arbitrary chunking: it must never
//! panic, and feeding the bytes in pieces must give exactly what feeding them at once gives.
#![no_main]

use evoctl::exec::envelope::EnvelopeParser;
use libfuzzer_sys::fuzz_target;

const NONCE: &str = "0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the chunk size; the rest is the output, with some real marker lines
    // mixed in so the fuzzer reaches the decoding paths quickly.
    let Some((&chunk, rest)) = data.split_first() else { return };
    let mut output = Vec::new();
    for (i, part) in rest.split(|b| *b == 0xff).enumerate() {
        if i % 2 == 1 {
            output.extend_from_slice(format!("EVOCTL-{NONCE}:").as_bytes());
        }
        output.extend_from_slice(part);
    }
    let mut whole = EnvelopeParser::new(NONCE);
    let expected = whole.feed(&output);
    let mut pieces = EnvelopeParser::new(NONCE);
    let mut got = Vec::new();
    for piece in output.chunks(usize::from(chunk.max(1))) {
        got.extend(pieces.feed(piece));
    }
    assert_eq!(got, expected);
    assert_eq!(whole.exit_status(), pieces.exit_status());
});
