//! Arbitrary text as the TOML configuration: loading and checking must not panic, and a file
//! that loads without problems gives the station its connection URL and variables.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = ocpp_agent::config::Config::from_toml_str(text) {
        if config.check().is_empty() {
            let _ = config.connection_url();
            let _ = config.variable_pairs();
        }
    }
});
