//! Arbitrary text as a line on the control socket (`ocpp-agent ctl`): parsing must not panic,
//! and a request that parses serialises and parses again to the same request.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((station, request)) = ocpp_agent::shell::control::parse_line(line) {
        let mut value = serde_json::to_value(&request).expect("a request serialises");
        if let (Some(id), Some(map)) = (&station, value.as_object_mut()) {
            map.insert("station".into(), serde_json::Value::String(id.clone()));
        }
        let (station2, request2) = ocpp_agent::shell::control::parse_line(&value.to_string())
            .expect("a serialised request parses");
        assert_eq!(station, station2);
        assert_eq!(request2, request);
    }
});
