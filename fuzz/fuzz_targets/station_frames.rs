//! Arbitrary sequences of CSMS frames, time advances, plug events, idTokens, CSMS outages and
//! power cycles against a connected, accepted station in the test kit, with the property test's
//! invariants checked after every operation and at the end (see `ocpp_agent_fuzz::script` for
//! the input format).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ocpp_agent_fuzz::script::run(data);
});
