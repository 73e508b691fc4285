//! Nesting bounds: definitions, paths and expressions nested far beyond the bounds get a
//! diagnostic instead of a stack overflow, and nesting just under the bounds still works.
//!
//! Each test runs on a thread with a small stack (256 KiB), so an unbounded recursion would
//! overflow it and abort the test binary.

use expressway_asl::depth::MAX_JSON_DEPTH;
use expressway_asl::validate::{codes, validate, MachineType, Validation};

const SMALL_STACK: usize = 256 * 1024;

fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no panic")
}

/// A Pass machine whose `Comment` is an array nested `depth` levels (the document then nests
/// `depth + 1`).
fn deep_comment(depth: usize) -> String {
    format!(
        r#"{{"Comment": {}{}, "StartAt": "A", "States": {{"A": {{"Type": "Pass", "End": true}}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// A Pass machine whose `Result` is an array nested `depth` levels (the document then nests
/// `depth + 3`).
fn deep_result(depth: usize) -> String {
    format!(
        r#"{{"StartAt": "A", "States": {{"A": {{"Type": "Pass", "Result": {}{}, "End": true}}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

fn only_code(v: &Validation) -> &'static str {
    assert_eq!(v.diagnostics.len(), 1, "{:?}", v.diagnostics);
    v.diagnostics[0].code
}

#[test]
fn definition_nested_100000_deep_is_invalid_json_not_a_crash() {
    on_small_stack(|| {
        for depth in [10_000, 100_000] {
            let text = deep_comment(depth);
            let v = validate(&text, MachineType::Express);
            assert_eq!(only_code(&v), codes::INVALID_JSON_DESCRIPTION);
            let d = &v.diagnostics[0];
            assert!(
                d.message.starts_with(
                    "Document nesting depth (1001) exceeds the maximum allowed (1000, from `StreamReadConstraints.getMaxNestingDepth()`)\n at [Source: (String)\"{\"Comment\": [[["
                ),
                "{}",
                d.message
            );
            // The 1001st opener is the 1000th '[' at column 13 + 1000.
            assert!(d
                .location
                .as_deref()
                .unwrap_or("")
                .ends_with("line: 1, column: 1013]"));
            let e = expressway_asl::load_str(&text).expect_err("rejected");
            assert!(e.message.contains("Document nesting depth (1001)"), "{e}");
            assert!(expressway_asl::load_validated(&text, MachineType::Express).is_err());
        }
    });
}

#[test]
fn definition_nested_at_the_bound_validates_and_loads() {
    on_small_stack(|| {
        let text = deep_result(MAX_JSON_DEPTH - 3);
        let v = validate(&text, MachineType::Express);
        assert!(v.is_ok(), "{:?}", v.diagnostics);
        let m = expressway_asl::load_validated(&text, MachineType::Express).expect("loads");
        assert_eq!(m.total_states, 1);
        // One more level is over the bound, wherever it is.
        let v = validate(&deep_result(MAX_JSON_DEPTH - 2), MachineType::Express);
        assert_eq!(only_code(&v), codes::INVALID_JSON_DESCRIPTION);
    });
}

#[test]
fn deep_payload_template_at_the_bound_validates_and_loads() {
    on_small_stack(|| {
        // Parameters nested to the bound: the validator and template compiler walk every level.
        let depth = MAX_JSON_DEPTH - 4;
        let text = format!(
            r#"{{"StartAt": "A", "States": {{"A": {{"Type": "Pass", "Parameters": {}{{"x.$": "$.a"}}{}, "End": true}}}}}}"#,
            r#"{"a":"#.repeat(depth - 1),
            "}".repeat(depth - 1)
        );
        let v = validate(&text, MachineType::Express);
        assert!(v.is_ok(), "{:?}", v.diagnostics);
        expressway_asl::load_validated(&text, MachineType::Express).expect("loads");
    });
}

#[test]
fn a_syntax_error_before_the_excess_is_reported_first() {
    on_small_stack(|| {
        let text = format!(r#"{{"Comment": x{}"#, "[".repeat(100_000));
        let v = validate(&text, MachineType::Express);
        assert_eq!(only_code(&v), codes::INVALID_JSON_DESCRIPTION);
        assert!(v.diagnostics[0]
            .message
            .starts_with("Unrecognized token 'x'"));
        // Deep text after the first value is ignored by validation (Jackson's readTree) and is
        // a trailing-characters error for the loader, neither descends into it.
        let text = format!(
            r#"{{"StartAt": "A", "States": {{"A": {{"Type": "Pass", "End": true}}}}}} {}"#,
            "[".repeat(100_000)
        );
        assert!(validate(&text, MachineType::Express).is_ok());
        assert!(expressway_asl::load_str(&text).is_err());
    });
}

/// `$.a[?(@.a[?(@.a[?(...)])])]` with `depth` nested filters.
fn nested_filters(depth: usize) -> String {
    format!("$.a{}{}", "[?(@.a".repeat(depth), ")]".repeat(depth))
}

fn pass_with_path(path: &str) -> String {
    serde_json::json!({"StartAt": "A", "States": {"A": {
        "Type": "Pass", "Parameters": {"x.$": path}, "End": true}}})
    .to_string()
}

#[test]
fn jsonpath_nested_beyond_the_bound_is_a_syntax_error() {
    use expressway_asl::depth::{MAX_PATH_DEPTH, MAX_PATH_SEGMENTS};
    use expressway_asl::jsonpath::JsonPath;
    on_small_stack(|| {
        let parens = |n: usize| format!("$[?({}@.a == 1{})]", "(".repeat(n), ")".repeat(n));
        let nots = |n: usize| format!("$[?({}@.a)]", "!".repeat(n));
        let chain = |n: usize, op: &str| format!("$[?(@.a{})]", format!(" {op} @.a").repeat(n));
        for deep in [
            nested_filters(1_000),
            nested_filters(100_000),
            parens(100_000),
            nots(100_000),
            chain(100_000, "||"),
            chain(100_000, "&&"),
            format!("${}", ".a".repeat(100_000)),
            format!("${}", "[0]".repeat(100_000)),
        ] {
            let e = JsonPath::parse(&deep).expect_err("too deep");
            assert!(e.reason.contains("nested deeper than") || e.reason.contains("more than"));
            let v = validate(&pass_with_path(&deep), MachineType::Express);
            assert_eq!(only_code(&v), codes::SCHEMA_VALIDATION_FAILED);
            assert_eq!(
                v.diagnostics[0].location.as_deref(),
                Some("/States/A/Parameters")
            );
            assert!(expressway_asl::load_str(&pass_with_path(&deep)).is_err());
        }
        // Just under the bounds: parsed, validated, loaded and evaluated.
        let input = serde_json::json!({"a": [{"a": [1]}]});
        for ok in [
            nested_filters(MAX_PATH_DEPTH),
            parens(MAX_PATH_DEPTH - 1),
            nots(MAX_PATH_DEPTH - 1),
            // n operators and n + 1 one-segment operands
            chain((MAX_PATH_SEGMENTS - 1) / 2, "||"),
            format!("${}", ".a".repeat(MAX_PATH_SEGMENTS)),
        ] {
            let p = JsonPath::parse(&ok).unwrap_or_else(|e| panic!("{e}"));
            let _ = p.query(&input);
            assert!(validate(&pass_with_path(&ok), MachineType::Express).is_ok());
            expressway_asl::load_str(&pass_with_path(&ok)).expect("loads");
        }
        assert_eq!(
            JsonPath::parse("$.a[?(@.a[?(@ == 1)])]").map(|p| p.query(&input)),
            Ok(Ok(serde_json::json!([{"a": [1]}])))
        );
    });
}

fn jsonata_pass(parens: usize) -> String {
    serde_json::json!({"QueryLanguage": "JSONata", "StartAt": "A", "States": {"A": {
        "Type": "Pass",
        "Output": format!("{{% {}1{} %}}", "(".repeat(parens), ")".repeat(parens)),
        "End": true}}})
    .to_string()
}

#[test]
fn jsonata_nested_beyond_the_bound_fails_validation_and_loading_alike() {
    on_small_stack(|| {
        for parens in [1_000, 5_000, 100_000] {
            let text = jsonata_pass(parens);
            let v = validate(&text, MachineType::Express);
            assert_eq!(only_code(&v), codes::SCHEMA_VALIDATION_FAILED);
            assert!(v.diagnostics[0]
                .message
                .contains("nested deeper than 1000 levels"));
            assert!(expressway_asl::load_str(&text).is_err());
        }
        let text = jsonata_pass(expressway_jsonata::MAX_PARSE_DEPTH - 1);
        assert!(validate(&text, MachineType::Express).is_ok());
        expressway_asl::load_validated(&text, MachineType::Express).expect("loads");
    });
}
