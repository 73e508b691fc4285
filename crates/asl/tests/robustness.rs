//! Untrusted definitions never panic the parsers, the validator or the loader.

use expressway_asl::intrinsic::Intrinsic;
use expressway_asl::jsonpath::JsonPath;
use expressway_asl::validate::{validate, MachineType};
use proptest::prelude::*;

fn path_like() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r"\$\$?[a-zA-Z0-9_.\[\]\*\?\(\)@=<>!&|:,'\x22 -]{0,40}")
        .expect("valid regex")
}

fn intrinsic_like() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r"States\.[A-Za-z]{0,14}\([a-zA-Z0-9_.$,' \\{}()\x22-]{0,40}\)?")
        .expect("valid regex")
}

fn definition_like() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("\"Pass\"".to_string()),
        Just("\"Task\"".to_string()),
        Just("\"Map\"".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just("\"$.a\"".to_string()),
        Just("\"States.Format('{}', $.a)\"".to_string()),
        Just("1".to_string()),
    ];
    let key = prop_oneof![
        Just("Type"),
        Just("Next"),
        Just("End"),
        Just("StartAt"),
        Just("States"),
        Just("Parameters"),
        Just("a.$"),
        Just("Branches"),
        Just("ItemProcessor"),
        Just("Retry"),
        Just("Catch"),
        Just("ErrorEquals"),
        Just("Choices"),
        Just("Variable"),
        Just("Seconds"),
        Just("A"),
        Just("B"),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec((key.clone(), inner), 0..5).prop_map(|kv| {
                let body: Vec<String> = kv
                    .into_iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn jsonpath_parser_never_panics(s in path_like()) {
        if let Ok(p) = JsonPath::parse(&s) {
            let _ = p.query(&serde_json::json!({"a": [1, {"b": 2}], "c": "d"}));
            let _ = p.bracket_notation();
        }
    }

    #[test]
    fn intrinsic_parser_never_panics(s in intrinsic_like()) {
        let _ = Intrinsic::parse(&s);
    }

    #[test]
    fn validator_and_loader_never_panic(s in definition_like()) {
        let report = validate(&s, MachineType::Express);
        let loaded = expressway_asl::load_str(&s);
        // Whatever the loader accepts as a machine, the validator must not call invalid JSON.
        if loaded.is_ok() {
            prop_assert!(report.diagnostics.iter().all(|d| d.code != "INVALID_JSON_DESCRIPTION"));
        }
    }
}
