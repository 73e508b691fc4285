//! Inputs the fuzzers (`crates/fuzz`) found, replayed under stable `cargo test`.
//!
//! `fuzz_regressions/<target>/<file>` holds one input of fuzz target `<target>` (the raw bytes the
//! target received); each test runs the same checks the target makes. A file named `timeout-*`
//! in `jsonata/` is an expression that evaluated forever: it must fail with JSONata's `U1001`; a
//! file named `union-non-quote-*` in `jsonpath/` is a path the parser must refuse; one named
//! `timeout-*` there is a path whose chained recursive descents ran for minutes: it must end, within
//! `MAX_QUERY_VISITS`, with a result or `TooManyVisits`. One named `redos-*` in `jsonata/` holds a
//! regex that backtracks exponentially on a JavaScript engine (`/([...]+)*SD/`): it must evaluate.

use expressway_asl::intrinsic::{Intrinsic, IntrinsicEnv, IntrinsicError};
use expressway_asl::jsonata::JsonataExpr;
use expressway_asl::jsonpath::{JsonPath, QueryFailure};
use expressway_asl::template::{EvalEnv, EvalErrorKind};
use expressway_asl::validate::{validate, MachineType};
use serde_json::{json, Value};
use std::path::PathBuf;

/// The files of one target's directory, with their names.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(target);
    if !dir.exists() {
        // No input of this target has failed yet.
        return Vec::new();
    }
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("directory entry").path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (
                name,
                std::fs::read(&path).expect("readable regression input"),
            )
        })
        .filter(|(name, _)| !name.starts_with('.'))
        .collect();
    out.sort();
    out
}

fn document() -> Value {
    json!({
        "a": {"b": [1, 2.5, "three", null, true, {"c": "d"}], "e": {"f": {"g": []}}},
        "items": [{"id": 1, "price": 10}, {"id": 2, "price": 20.5}],
        "s": "a,b,,c", "json": "{\"k\":[1,2]}", "n": 42, "t": true, "z": null,
        "list": [1, 2, 3, 2, 1], "empty": []
    })
}

#[test]
fn definitions() {
    for (name, data) in inputs("asl_definition") {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        for machine_type in [MachineType::Express, MachineType::Standard] {
            let report = validate(text, machine_type);
            let loaded = expressway_asl::load_str(text);
            if report.is_ok() && serde_json::from_str::<Value>(text).is_ok() {
                assert!(
                    loaded.is_ok(),
                    "{name}: validation accepted what the loader refuses: {loaded:?}"
                );
            }
        }
    }
}

#[test]
fn jsonpaths() {
    let doc = document();
    for (name, data) in inputs("jsonpath") {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        let parsed = JsonPath::parse(text);
        if name.starts_with("union-non-quote") {
            // `$['a', X...]`: a union member that is not quoted is a syntax error.
            assert!(parsed.is_err(), "{name}: {parsed:?}");
        }
        let Ok(path) = parsed else {
            continue;
        };
        let result = path.query(&doc);
        if name.starts_with("timeout") {
            assert_eq!(result, Err(QueryFailure::TooManyVisits), "{name}");
        }
        let again = JsonPath::parse(path.as_str()).expect("the text of a parsed path parses");
        assert_eq!(again.query(&doc), result, "{name}");
        if path.is_reference_path() {
            let marker = json!({"written": true});
            let mut target = doc.clone();
            if path.assign(&mut target, marker.clone()).is_ok() {
                assert_eq!(path.query_ref(&target), Some(&marker), "{name}");
            }
        }
    }
}

struct Env(Value);

impl IntrinsicEnv for Env {
    fn resolve(&self, path: &JsonPath) -> Result<Value, IntrinsicError> {
        path.query(&self.0).map_err(|_| IntrinsicError {
            message: format!("no match for {path}"),
        })
    }
    fn random_int(&self, start: i64, _end: i64, _seed: Option<i64>) -> i64 {
        start
    }
    fn uuid(&self) -> String {
        "00000000-0000-4000-8000-000000000000".into()
    }
}

impl EvalEnv for Env {
    fn input(&self) -> &Value {
        &self.0
    }
    fn context(&self) -> &Value {
        &Value::Null
    }
    fn variable(&self, _name: &str) -> Option<&Value> {
        None
    }
    fn random_int(&self, start: i64, _end: i64, _seed: Option<i64>) -> i64 {
        start
    }
    fn uuid(&self) -> String {
        "00000000-0000-4000-8000-000000000000".into()
    }
    fn states_member(&self, name: &str) -> Option<&Value> {
        (name == "input").then_some(&self.0)
    }
}

#[test]
fn intrinsics() {
    let env = Env(document());
    for (_name, data) in inputs("intrinsic") {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        // What the target checks: parsing and evaluating return (an error is fine), no panic.
        if let Ok(call) = Intrinsic::parse(text) {
            let _ = call.eval(&env);
        }
    }
}

/// Expressions are evaluated the way a state evaluates them (`{% ... %}` through
/// [`JsonataExpr`]), with the budget of [`expressway_asl::jsonata::MAX_EVAL_STEPS`].
#[test]
fn jsonata_expressions_end() {
    for (name, data) in inputs("jsonata") {
        let text = String::from_utf8_lossy(&data);
        let (source, input) = match text.split_once('\0') {
            Some((e, i)) => (e, serde_json::from_str(i).unwrap_or_else(|_| document())),
            None => (&*text, document()),
        };
        let Ok(expr) = JsonataExpr::parse(&format!("{{%{source}%}}")) else {
            continue;
        };
        let r = expr.eval_required("Output", &Env(input));
        if name.starts_with("timeout-") {
            let e = r.as_ref().expect_err(&name);
            assert_eq!(e.kind, EvalErrorKind::QueryEvaluation, "{name}");
            assert!(
                e.detail.contains("U1001") && e.detail.contains("steps"),
                "{name}: {}",
                e.detail
            );
        }
        if name.starts_with("redos-") {
            assert!(r.is_ok(), "{name}: {r:?}");
        }
    }
}

#[test]
fn nested_quantifiers_match_like_javascript_without_backtracking() {
    // 2^60 ways to split the a's before the match fails: only a linear-time engine returns.
    let text = "a".repeat(60);
    let expr = JsonataExpr::parse(&format!(
        r#"{{% [$replace("{text}!", /([a-z]+)*SD/, "x"), $replace("{text}SD", /([a-z]+)*SD/, "<$1>")] %}}"#
    ))
    .expect("parses");
    let r = expr
        .eval_required("Output", &Env(document()))
        .expect("evaluates");
    assert_eq!(r, json!([format!("{text}!"), format!("<{text}>")]));
}

#[test]
fn chained_recursive_descents_stop_at_the_visit_bound() {
    // A binary tree 12 levels deep (8,191 values): `$..v` visits each value once; every further
    // `..*` multiplies the visits (26,640 results at depth 8, more than 10^6 visits at depth 12).
    fn tree(depth: u32) -> Value {
        if depth == 0 {
            json!({"v": 1})
        } else {
            json!([tree(depth - 1), tree(depth - 1)])
        }
    }
    let doc = tree(12);
    let one = JsonPath::parse("$..v").expect("parses");
    assert_eq!(
        one.query(&doc).map(|v| v.as_array().map(Vec::len)),
        Ok(Some(4096))
    );
    let many = JsonPath::parse("$..*..*..*..*").expect("parses");
    assert_eq!(
        many.query(&tree(8)).map(|v| v.as_array().map(Vec::len)),
        Ok(Some(26_640))
    );
    assert_eq!(many.query(&doc), Err(QueryFailure::TooManyVisits));
    // Inside a filter too: the items' filters share the query's bound.
    let filtered = JsonPath::parse("$[?(@..*..*..*..*..*)]").expect("parses");
    assert_eq!(filtered.query(&doc), Err(QueryFailure::TooManyVisits));
}
