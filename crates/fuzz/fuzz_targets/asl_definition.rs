//! The definition validator and loader (`ValidateStateMachineDefinition`, `CreateStateMachine`,
//! `expressway validate`): arbitrary text must give diagnostics, never a panic or an abort, and
//! whatever validation accepts must load.
#![no_main]

use expressway_asl::validate::{validate, MachineType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for machine_type in [MachineType::Express, MachineType::Standard] {
        let report = validate(text, machine_type);
        let loaded = expressway_asl::load_str(text);
        // The validator reads the first JSON value and ignores what follows (as AWS's Jackson
        // does), the loader reads the whole text: compare them on single-value texts only.
        if report.is_ok() && serde_json::from_str::<serde_json::Value>(text).is_ok() {
            if let Err(e) = &loaded {
                panic!("validation accepted a definition the loader refuses: {e}");
            }
        }
        let validated = expressway_asl::load_validated(text, machine_type);
        assert_eq!(
            validated.is_ok(),
            report.is_ok() && loaded.is_ok(),
            "load_validated disagrees with validate + load_str"
        );
    }
});
