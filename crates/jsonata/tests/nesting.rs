//! Expressions nested beyond `MAX_PARSE_DEPTH` are a `U1001` syntax error, not a stack overflow,
//! and expressions just under the bound parse and evaluate. Each test runs on a thread with a
//! small stack, so an unbounded recursion would abort the test binary.

use expressway_jsonata::{Expression, NoHost, MAX_PARSE_DEPTH};
use serde_json::json;

fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    on_stack(256 * 1024, f)
}

fn on_stack<T: Send + 'static>(size: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(size)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no panic")
}

fn too_deep(src: &str) {
    let e = Expression::parse(src).expect_err("nested too deep");
    assert_eq!(e.code, "U1001", "{}", e.message);
    assert!(
        e.message.contains("nested deeper than 1000 levels"),
        "{}",
        e.message
    );
}

#[test]
fn deep_nesting_is_a_syntax_error() {
    on_small_stack(|| {
        for n in [1_000, 5_000, 100_000] {
            too_deep(&format!("{}1{}", "(".repeat(n), ")".repeat(n)));
        }
        let n = 100_000;
        too_deep(&format!("{}1{}", "[".repeat(n), "]".repeat(n)));
        too_deep(&format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)));
        too_deep(&format!("{}1{}", "$string(".repeat(n), ")".repeat(n)));
        too_deep(&format!("{}1", "-".repeat(n)));
        too_deep(&format!("{}1{}", "1 ? (".repeat(n), ")".repeat(n)));
        too_deep(&format!("{}1{}", "function($x){".repeat(n), "}".repeat(n)));
        // Operator chains build the tree without recursing in the parser; they count too.
        too_deep(&format!("1{}", " + 1".repeat(n)));
        too_deep(&format!("a{}", ".a".repeat(n)));
        too_deep(&format!("a{}", "[0]".repeat(n)));
        too_deep(&format!("$x{}", " ~> $f".repeat(n)));
    });
}

#[test]
fn nesting_just_under_the_bound_parses_and_evaluates() {
    // Half of a tokio worker's stack: dropping the 1000-level tree recurses (small frames).
    on_stack(1024 * 1024, || {
        // the outermost expression is one level, each parenthesis one more
        let n = MAX_PARSE_DEPTH - 1;
        let e = Expression::parse(&format!("{}1{}", "(".repeat(n), ")".repeat(n))).expect("parses");
        assert_eq!(
            e.evaluate(None, &NoHost).expect("evaluates"),
            Some(json!(1))
        );
        // a link of an operator chain is two levels: the link and its right operand
        let links = n / 2;
        let e = Expression::parse(&format!("1{}", " + 1".repeat(links))).expect("parses");
        assert_eq!(
            e.evaluate(None, &NoHost).expect("evaluates"),
            Some(json!(links + 1))
        );
        // (a result nested this deep is parsed here but not evaluated: converting and dropping
        // deep results is recursive, see README's limits)
        Expression::parse(&format!("{}1{}", "[".repeat(n), "]".repeat(n))).expect("parses");
    });
}
