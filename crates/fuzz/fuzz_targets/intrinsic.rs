//! Intrinsic functions (`States.Format`, `States.JsonToString`, `States.MathRandom`, ...): parse
//! arbitrary text and evaluate it, its path arguments resolved against a small document.
#![no_main]

use expressway_asl::intrinsic::{Intrinsic, IntrinsicEnv, IntrinsicError};
use expressway_asl::jsonpath::JsonPath;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::sync::OnceLock;

fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        json!({
            "a": {"b": [1, 2.5, "three", null, true, {"c": "d"}]},
            "s": "a,b,,c", "json": "{\"k\":[1,2]}", "b64": "aGVsbG8=", "n": 42, "f": 1.5,
            "neg": -7, "big": 9007199254740993u64, "t": true, "z": null,
            "list": [1, 2, 3, 2, 1], "empty": [], "obj": {"x": {"y": 1}}
        })
    })
}

struct Env;

impl IntrinsicEnv for Env {
    fn resolve(&self, path: &JsonPath) -> Result<Value, IntrinsicError> {
        path.query(document()).map_err(|_| IntrinsicError {
            message: format!("no match for {path}"),
        })
    }
    fn random_int(&self, start: i64, end: i64, seed: Option<i64>) -> i64 {
        // Deterministic, inside the bounds the caller asked for.
        let span = (end as i128 - start as i128 + 1).max(1);
        let pick = (seed.unwrap_or(7) as i128).rem_euclid(span);
        (start as i128 + pick) as i64
    }
    fn uuid(&self) -> String {
        "00000000-0000-4000-8000-000000000000".into()
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(call) = Intrinsic::parse(text) else {
        return;
    };
    let _ = call.func();
    for p in call.paths() {
        let _ = p.query(document());
    }
    let _ = call.eval(&Env);
});
