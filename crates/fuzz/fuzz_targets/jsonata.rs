//! The JSONata parser and evaluator: `EXPRESSION` or `EXPRESSION\0INPUT-JSON`. Evaluation runs
//! with the limits states evaluate with (`expressway_asl::jsonata::EVALUATION_LIMITS`: the step
//! budget, built-value depth, result, array and string sizes), so an input that loops ends with
//! `U1001` and one that doubles a value with `U1003`/`U1004`/`U1005`; a
//! libFuzzer timeout is work a single step does without bound.
#![no_main]

use expressway_jsonata::{Expression, Host};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

/// Fixed time and deterministic randomness, so a crash reproduces.
struct FixedHost;

impl Host for FixedHost {
    fn now_millis(&self) -> f64 {
        1_767_225_600_000.0
    }
    fn random(&self, seed: Option<f64>) -> f64 {
        let mut z = seed
            .unwrap_or(0.25)
            .to_bits()
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (source, input) = match text.split_once('\0') {
        Some((e, i)) => (e, serde_json::from_str::<Value>(i).ok()),
        None => (text, None),
    };
    let input = input.unwrap_or_else(
        || json!({"a": 1, "b": [1, 2, 3], "s": "Hello", "o": {"k": [{"v": 1}, {"v": 2}]}}),
    );
    let Ok(expr) = Expression::parse(source) else {
        return;
    };
    let limits = expressway_asl::jsonata::EVALUATION_LIMITS;
    let _ = expr.evaluate_with(Some(&input), &[], &FixedHost, limits);
});
