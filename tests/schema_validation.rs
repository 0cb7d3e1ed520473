//! Cross-checks the generated OCPP 2.0.1 types and static validation tables against the
//! official JSON schema files in `schemas/ocpp-2.0.1/`, with the checks of
//! `tests/support/schema_files.rs` (shared with OCPP 1.6J).

#[macro_use]
#[path = "support/schema_files.rs"]
mod schema_files;

use std::collections::BTreeSet;

use ocpp_agent::ocpp::v201 as version;
use schema_files::roundtrip;
use serde_json::Value;
use version::validate::Violation;
use version::{Action, RequestPayload, ResponsePayload};

version::for_each_action!(typed_dispatch);

schema_file_tests! {
    dirs: ["schemas/ocpp-2.0.1"],
    split: |stem| match stem.strip_suffix("Request") {
        Some(name) => (name.to_owned(), true),
        None => (
            stem.strip_suffix("Response")
                .expect("Request/Response")
                .to_owned(),
            false,
        ),
    },
    checks: {
        minimal_and_maximal_instances_validate_and_round_trip: 4 * 128,
        every_enum_value_round_trips: 700,
        removing_a_required_property_is_an_occurrence_violation: 800,
        unknown_properties_are_format_violations: 1500,
        invalid_values_are_property_constraint_violations: 1400,
        wrong_types_are_type_constraint_violations: 6000,
        array_bounds_are_occurrence_violations: 120,
    },
}

#[test]
fn every_schema_file_maps_to_an_action() {
    let files = load_all();
    assert_eq!(files.len(), 128);
    let mut seen = BTreeSet::new();
    for f in &files {
        assert!(
            seen.insert((f.action.as_str(), f.is_request)),
            "{} twice",
            f.stem
        );
        assert_eq!(f.root["$schema"], "http://json-schema.org/draft-06/schema#");
    }
    assert_eq!(seen.len(), 2 * Action::ALL.len());
    assert_eq!(check_payload_traits(), 64);
    for a in Action::ALL {
        assert!(seen.contains(&(a.as_str(), true)) && seen.contains(&(a.as_str(), false)));
    }
}
