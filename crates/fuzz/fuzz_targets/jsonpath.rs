//! JSONPath (`InputPath`, `Parameters` `.$` fields, Choice `Variable`, ...): parse arbitrary text and
//! evaluate it against a small document. A reference path that can be assigned (ResultPath) must
//! then read back the value it wrote.
#![no_main]

use expressway_asl::jsonpath::{JsonPath, QueryFailure};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::sync::OnceLock;

fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        json!({
            "a": {"b": [1, 2.5, "three", null, true, {"c": "d"}], "e": {"f": {"g": []}}},
            "items": [
                {"id": 1, "price": 10, "tags": ["x", "y"], "in": true},
                {"id": 2, "price": 20.5, "tags": [], "in": false},
                {"id": 3, "name": "n", "price": -3, "nested": {"price": 7}}
            ],
            "s": "text", "n": 42, "neg": -1, "big": 9007199254740993u64, "t": true, "z": null,
            "weird key": {"with.dot": 1, "with'quote": 2, "": 3},
            "arr": [[1, 2], [3, [4, [5]]], []]
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = JsonPath::parse(text) else {
        return;
    };
    let doc = document();
    let result = path.query(doc);
    if path.is_definite() {
        assert_eq!(result.as_ref().ok(), path.query_ref(doc));
    } else {
        assert!(
            matches!(result, Ok(Value::Array(_)) | Err(QueryFailure::TooManyVisits)),
            "an indefinite path gives an array (or stops at the visit bound)"
        );
    }
    let _ = path.bracket_notation();
    let _ = path.first_name();
    let _ = path.query_tail(doc);
    // The text of a parsed path parses again to the same path.
    let again = JsonPath::parse(path.as_str()).expect("the text of a parsed path parses");
    assert_eq!(again.query(doc), result);
    if path.is_reference_path() {
        let marker = json!({"written": "by the fuzzer"});
        let mut target = doc.clone();
        if path.assign(&mut target, marker.clone()).is_ok() {
            assert_eq!(
                path.query_ref(&target),
                Some(&marker),
                "a ResultPath that was assigned reads back what it wrote"
            );
        }
    }
});
