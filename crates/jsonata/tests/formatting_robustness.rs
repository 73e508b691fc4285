//! Robustness of the picture-string functions (the reference suite's cases themselves run in
//! `crates/conformance`, `jsonata_floors`).

use expressway_jsonata::{datetime, numfmt};
use serde_json::{Map, Value};

/// Arbitrary pictures and values must give a result or an error, never a panic.
#[test]
fn arbitrary_inputs_do_not_panic() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet: Vec<char> = "[]],;:.-+#0129aAiIwWnNoct%‰eE YMDdFWwXxHhmsfPZzCE*١０α'\"\\"
        .chars()
        .collect();
    let numbers = [
        0.0,
        -0.0,
        1.0,
        -1.5,
        0.5,
        1e21,
        -1e21,
        1e300,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        8.64e15,
        -8.64e15,
        1_521_801_216_617.0,
        123.456,
    ];
    let mut options = Map::new();
    options.insert("zero-digit".into(), Value::from(""));
    options.insert("decimal-separator".into(), Value::from(""));
    options.insert("grouping-separator".into(), Value::from("ab"));
    for i in 0..10_000 {
        let len = (next() % 12) as usize;
        let picture: String = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let n = numbers[(next() % numbers.len() as u64) as usize];
        let _ = numfmt::format_integer(n, &picture);
        let _ = numfmt::parse_integer(&picture, &picture);
        let _ = numfmt::format_number(n, &picture, None);
        let _ = numfmt::format_number(n, &picture, Some(&options));
        let _ = numfmt::format_base(n, Some(n));
        let tz = ["+0100", "-0530", "x", ""][i % 4];
        if let Ok(text) = datetime::format_datetime(n, Some(&picture), Some(tz)) {
            let _ = datetime::parse_datetime_at(&text, Some(&picture), n);
        }
        let _ = datetime::parse_datetime_at(&picture, Some(&picture), 0.0);
        let _ = datetime::parse_datetime_at(&picture, None, 0.0);
    }
}
