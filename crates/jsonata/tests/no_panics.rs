//! Expressions are user input (they come from state machine definitions): arbitrary text must parse
//! to an expression or an error, and evaluating any expression must give a value or an error,
//! never a panic.

use expressway_jsonata::{Expression, Limits, NoHost};
use serde_json::json;

const PIECES: &[&str] = &[
    "a",
    "b",
    "$",
    "$$",
    "$x",
    "$f",
    ".",
    "..",
    "[",
    "]",
    "{",
    "}",
    "(",
    ")",
    ",",
    ";",
    ":",
    "?",
    "@",
    "#",
    "%",
    "*",
    "**",
    "+",
    "-",
    "/",
    "&",
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "and",
    "or",
    "in",
    "~>",
    ":=",
    "^(",
    "|",
    "'s'",
    "\"t\"",
    "`q`",
    "0",
    "1",
    "2.5",
    "-1",
    "1e3",
    "true",
    "false",
    "null",
    "function($v){$v}",
    "λ($a,$b)<n-n:n>{$a+$b}",
    "$sum",
    "$map",
    "$string",
    "$substring",
    "$replace",
    "$match",
    "$split",
    "$sort",
    "$reduce",
    "$keys",
    "$lookup",
    "$merge",
    "$each",
    "$sift",
    "$zip",
    "$pad",
    "$formatNumber",
    "$fromMillis",
    "$toMillis",
    "$formatInteger",
    "$parseInteger",
    "$round",
    "$power",
    "$partition",
    "$range",
    "$hash",
    "$parse",
    "/a+/i",
    "/(x)|y/",
    "?",
    " ",
    "\u{3bb}",
    "é",
    "\\u00e9",
    "/*c*/",
];

#[test]
fn arbitrary_expressions_never_panic() {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let input =
        json!({"a": [1, {"b": "x"}, [2, 3]], "b": {"c": null, "d": "2020-01-01"}, "x": "é"});
    let limits = Limits {
        max_depth: 500,
        timeout: Some(std::time::Duration::from_millis(200)),
        max_steps: None,
    };
    let mut parsed = 0;
    for _ in 0..iterations() {
        let n = 1 + (next() % 9) as usize;
        let text: String = (0..n)
            .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
            .collect();
        if let Ok(e) = Expression::parse(&text) {
            parsed += 1;
            let _ = e.evaluate_with(Some(&input), &[("x", &json!([3, 1, 2]))], &NoHost, limits);
            let _ = e.evaluate_with(None, &[], &NoHost, limits);
        }
    }
    assert!(
        parsed > 1_000,
        "the generator should produce many valid expressions, got {parsed}"
    );
}

#[test]
fn truncated_and_odd_text_never_panics() {
    let samples = [
        "$substring('héllo', 1, 2)",
        "$replace('aéa', /é/, '$0$1$')",
        "'abc' ~> $split('')",
        "\"\\ud83d\\ude00\" & 'x'",
        "\"\\ud83d\"",
        "$match('ééé', /é/)",
        "$pad('é', -5, 'ab')",
        "$formatNumber(1e300, '#,###.00')",
        "$fromMillis(8.64e15 * 10)",
        "[1..10000001]",
        "$power(10, 400)",
    ];
    for s in samples {
        for end in 0..=s.len() {
            if !s.is_char_boundary(end) {
                continue;
            }
            if let Ok(e) = Expression::parse(&s[..end]) {
                let _ = e.evaluate(None, &NoHost);
            }
        }
    }
}

/// `JSONATA_FUZZ_ITERATIONS` runs longer locally; CI runs 20,000.
fn iterations() -> usize {
    std::env::var("JSONATA_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}
