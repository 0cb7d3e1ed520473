//! Shared code of the fuzz targets (`fuzz_targets/`).
//!
//! * [`frame`]: the checks of `frame_decode` (RPC frame decoding, payload validation, typed
//!   decoding and its round trip).
//! * [`script`]: the text format `station_frames` reads its operations from.
//! * [`property`]: the property test `tests/property.rs` of the main crate, compiled as a module:
//!   its `Driver` runs the operations against the test kit's `Harness` and checks the invariants,
//!   so the fuzzer and the property test check exactly the same things.

pub mod frame;
pub mod script;

#[path = "../../tests/property.rs"]
pub mod property;
