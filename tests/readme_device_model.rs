//! The README's device-model tables list every variable the agent has (issue 12: "the
//! README's device-model table lists all that exist"), under its component.

use ocpp_agent::ocpp::devmodel::VARIABLES;

#[test]
fn the_readme_lists_every_device_model_variable() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("The device model (`src/ocpp/devmodel.rs`")
        .expect("section");
    let end = start
        + readme[start..]
            .find("Check a file without")
            .expect("section end");
    let section = &readme[start..end];
    let mut missing = Vec::new();
    for def in VARIABLES {
        let listed = section.lines().any(|line| {
            let component = line.split('|').nth(1).unwrap_or("");
            component.contains(&format!("`{}`", def.component))
                && (line.contains(&format!("`{}`", def.name))
                    || line.contains(&format!("`{}[", def.name)))
        });
        if !listed {
            missing.push(def.key());
        }
    }
    assert!(
        missing.is_empty(),
        "not in the README's device-model tables: {missing:?}"
    );
}
