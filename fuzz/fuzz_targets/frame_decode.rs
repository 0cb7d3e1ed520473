//! Arbitrary bytes as a WebSocket text frame: decoding, validation and typed decoding must not
//! panic, and decoded payloads must round-trip (see `ocpp_agent_fuzz::frame`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 (the shell's WebSocket library rejects anything else).
    if let Ok(text) = std::str::from_utf8(data) {
        ocpp_agent_fuzz::frame::check_frame(text);
    }
});
