//! Inputs the `jsonata` fuzz target (`crates/fuzz`) found, replayed under stable `cargo test`.
//!
//! Each file of `fuzz_regressions/` is one input of the target: `EXPRESSION` or
//! `EXPRESSION\0INPUT-JSON`. They are evaluated with the depth bound and a step budget only (no
//! clock), so an evaluation that does not end inside one step (a builtin looping) hangs this
//! test instead of being cut off. Each must end; `replace-*` inputs must end with an error.

use expressway_jsonata::{Expression, Limits, NoHost};
use serde_json::{json, Value};
use std::path::PathBuf;

#[test]
fn fuzz_inputs_end() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    let limits = Limits {
        max_steps: Some(1_000_000),
        ..Limits::default()
    };
    for path in files {
        let data = std::fs::read(&path).expect("readable regression input");
        let text = String::from_utf8_lossy(&data);
        let (source, input) = match text.split_once('\0') {
            Some((e, i)) => (e, serde_json::from_str::<Value>(i).ok()),
            None => (&*text, None),
        };
        let input = input.unwrap_or_else(
            || json!({"a": 1, "b": [1, 2, 3], "s": "Hello", "o": {"k": [{"v": 1}, {"v": 2}]}}),
        );
        let Ok(expr) = Expression::parse(source) else {
            continue;
        };
        let r = expr.evaluate_with(Some(&input), &[], &NoHost, limits);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.as_deref().is_some_and(|n| n.starts_with("replace-")) {
            assert!(r.is_err(), "{name:?}: {r:?}");
        }
    }
}
