//! Arbitrary bytes as an HTTP/1.x response head from a firmware or log server (the server is
//! named by the CSMS, so it is untrusted): httparse's reading and the client's use of the
//! headers must not panic; a status it accepts is 100-599 (RFC 9110 15); every line as a chunk-size
//! line too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(head) = ocpp_agent::shell::http::parse_head(data) {
        assert!((100..=599).contains(&head.status), "{head:?}");
    }
    for line in data.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let _ = ocpp_agent::shell::http::parse_chunk_size(line.trim_end_matches('\r'));
    }
});
