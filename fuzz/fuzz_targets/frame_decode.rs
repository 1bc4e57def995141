//! The Session Manager frame decoder on arbitrary bytes: it must never panic, and a frame it
//! accepts must re-encode to bytes that decode to the same frame.
#![no_main]

use evoctl_ssm::frame::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::decode(data)
        && let Ok(bytes) = frame.encode()
    {
        assert_eq!(Frame::decode(&bytes).as_ref(), Ok(&frame));
    }
});
