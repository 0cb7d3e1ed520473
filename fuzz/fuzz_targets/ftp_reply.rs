//! Arbitrary bytes as what an FTP server (named by the CSMS, so untrusted) sends on the control
//! connection: the reply reader (multi-line replies, RFC 959 4.2) and the passive-port readers
//! (EPSV, PASV) must not panic; a complete reply has a code 100-599 and a passive port is
//! never 0.
#![no_main]

use ocpp_agent::shell::ftp::{Reply, epsv_port, pasv_port};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut reply = Reply::default();
    for line in data.split_inclusive(|&b| b == b'\n') {
        if let Some(done) = reply.line(line) {
            if let Ok((code, text)) = done {
                assert!((100..=599).contains(&code), "{code}");
                for port in [epsv_port(&text), pasv_port(&text)].into_iter().flatten() {
                    assert_ne!(port, 0);
                }
            }
            reply = Reply::default();
        }
    }
});
