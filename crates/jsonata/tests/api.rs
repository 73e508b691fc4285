//! The public API: parse once, evaluate many times, host variables, limits, AWS additions.

use expressway_jsonata::{Expression, Host, HostObject, HostValue, Limits, NoHost};
use serde_json::{json, Value};

struct Vars {
    vars: Value,
    states: States,
}

struct States {
    input: Value,
}

impl HostObject for States {
    fn field(&self, name: &str) -> Option<&Value> {
        (name == "input").then_some(&self.input)
    }
    fn keys(&self) -> Vec<&str> {
        vec!["input"]
    }
}

impl Host for Vars {
    fn variable(&self, name: &str) -> Option<HostValue<'_>> {
        if name == "states" {
            return Some(HostValue::Object(&self.states));
        }
        self.vars.get(name).map(HostValue::Json)
    }
}

fn eval(expr: &str, input: Value) -> Option<Value> {
    Expression::parse(expr)
        .expect("parses")
        .evaluate(Some(&input), &NoHost)
        .expect("evaluates")
}

#[test]
fn one_parse_many_evaluations() {
    let e = Expression::parse("$sum(items.(price * qty))").expect("parses");
    for n in 1..50 {
        let input = json!({"items": [{"price": n, "qty": 2}, {"price": 1, "qty": 1}]});
        assert_eq!(
            e.evaluate(Some(&input), &NoHost).expect("ok"),
            Some(json!(2 * n + 1))
        );
    }
}

#[test]
fn host_variables_and_lazy_states() {
    let host = Vars {
        vars: json!({"greeting": "hello", "n": 3}),
        states: States {
            input: json!({"order": {"id": "o-1", "items": [1, 2, 3]}}),
        },
    };
    let e = |s: &str| {
        Expression::parse(s)
            .expect("parses")
            .evaluate(None, &host)
            .expect("ok")
    };
    assert_eq!(
        e("$greeting & ' ' & $states.input.order.id"),
        Some(json!("hello o-1"))
    );
    assert_eq!(
        e("$count($states.input.order.items) = $n"),
        Some(json!(true))
    );
    assert_eq!(e("$states.input.order.missing"), None);
    assert_eq!(e("$keys($states)"), Some(json!("input")));
}

#[test]
fn simple_paths_agree_with_the_general_evaluator() {
    // `$x.a.b` takes a direct walk; wrapping it in a block forces the general path.
    let host = Vars {
        vars: json!({"x": {"a": {"b": [1, {"c": 2}], "s": "t", "n": null}, "arr": [{"a": 1}, {"a": 2}]}}),
        states: States {
            input: json!({"k": {"v": 1}}),
        },
    };
    for path in [
        "$x.a",
        "$x.a.b",
        "$x.a.b.c",
        "$x.a.s",
        "$x.a.s.t",
        "$x.a.n",
        "$x.a.n.m",
        "$x.arr.a",
        "$x.missing.a",
        "$states.input.k.v",
        "$states.input.k.w",
        "$nothing.a",
    ] {
        let direct = Expression::parse(path)
            .expect("parses")
            .evaluate(None, &host)
            .expect("ok");
        let general = Expression::parse(&format!("({path})"))
            .expect("parses")
            .evaluate(None, &host)
            .expect("ok");
        assert_eq!(direct, general, "{path}");
    }
}

#[test]
fn runaway_recursion_is_an_error_not_a_crash() {
    let e = Expression::parse("($f := function($n) { $n + $f($n + 1) }; $f(0))").expect("parses");
    let err = e
        .evaluate_with(
            None,
            &[],
            &NoHost,
            Limits {
                max_depth: 5_000,
                timeout: None,
                ..Limits::default()
            },
        )
        .expect_err("must stop");
    assert_eq!(err.code, "U1001");
}

#[test]
fn tail_calls_do_not_grow_the_depth() {
    let e = Expression::parse("($loop := function($n, $acc) { $n = 0 ? $acc : $loop($n - 1, $acc + 1) }; $loop(20000, 0))")
        .expect("parses");
    let r = e
        .evaluate_with(
            None,
            &[],
            &NoHost,
            Limits {
                max_depth: 500,
                timeout: None,
                ..Limits::default()
            },
        )
        .expect("ok");
    assert_eq!(r, Some(json!(20000)));
}

#[test]
fn a_step_budget_stops_a_tail_call_loop() {
    // Constant depth, so the depth bound never fires: only the step budget ends it.
    let forever = Expression::parse("($f := function($x) { $f($x) }; $f(1))").expect("parses");
    let limits = Limits {
        max_steps: Some(100_000),
        ..Limits::default()
    };
    let err = forever
        .evaluate_with(None, &[], &NoHost, limits)
        .expect_err("must stop");
    assert_eq!(err.code, "U1001");
    assert!(err.message.contains("100000 steps"), "{}", err.message);
    // The same budget lets a finite loop of the same shape finish.
    let finite = Expression::parse(
        "($loop := function($n, $acc) { $n = 0 ? $acc : $loop($n - 1, $acc + 1) }; $loop(2000, 0))",
    )
    .expect("parses");
    let r = finite
        .evaluate_with(None, &[], &NoHost, limits)
        .expect("within budget");
    assert_eq!(r, Some(json!(2000)));
}

#[test]
fn syntax_errors_carry_code_and_position() {
    let err = Expression::parse("(1 + 2").expect_err("invalid");
    assert_eq!(err.code, "S0203");
    assert_eq!(err.position, Some(6));
    let err = Expression::parse("1 + ").expect_err("invalid");
    assert_eq!(err.code, "S0207");
}

#[test]
fn step_functions_additions() {
    assert_eq!(
        eval("$partition([1,2,3,4,5], 2)", json!(null)),
        Some(json!([[1, 2], [3, 4], [5]]))
    );
    assert_eq!(
        eval("$range(0, 10, 5)", json!(null)),
        Some(json!([0, 5, 10]))
    );
    assert_eq!(
        eval("$hash('abc', 'SHA-256')", json!(null)),
        Some(json!(
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        ))
    );
    assert_eq!(
        eval("$parse('{\"a\": [1, 2]}').a[1]", json!(null)),
        Some(json!(2))
    );
    let r1 = eval("$random(42)", json!(null));
    assert_eq!(
        r1,
        eval("$random(42)", json!(null)),
        "seeded $random is deterministic"
    );
    let uuid = eval("$uuid()", json!(null)).expect("uuid");
    assert_eq!(uuid.as_str().map(str::len), Some(36));
    // AWS removed $eval
    let err = Expression::parse("$eval('1')")
        .expect("parses")
        .evaluate(None, &NoHost)
        .expect_err("no $eval");
    assert_eq!(err.code, "T1006");
}

#[test]
fn functions_are_not_json_results() {
    let err = Expression::parse("function($x) { $x }")
        .expect("parses")
        .evaluate(None, &NoHost)
        .expect_err("function");
    assert_eq!(err.code, expressway_jsonata::FUNCTION_RESULT);
}

#[test]
fn integers_stay_integers_in_json() {
    assert_eq!(
        eval("a + 1", json!({"a": 1})).map(|v| v.to_string()),
        Some("2".into())
    );
    assert_eq!(
        eval("a / 4", json!({"a": 1})).map(|v| v.to_string()),
        Some("0.25".into())
    );
}
