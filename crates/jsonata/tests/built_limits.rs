//! What an evaluation may build (issue #11): a few bytes of expression must not be able to
//! overflow the stack, take the memory or run forever. Each bound has its own error code.

use expressway_jsonata::{Expression, Limits, NoHost};
use serde_json::json;
use std::time::Duration;

fn eval(expr: &str, limits: Limits) -> Result<Option<serde_json::Value>, String> {
    let e = Expression::parse(expr).expect("parses");
    std::thread::Builder::new()
        // tokio's default worker stack: the bounds must hold there.
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            e.evaluate_with(None, &[], &NoHost, limits)
                .map_err(|e| e.code.to_string())
        })
        .expect("thread")
        .join()
        .expect("the evaluation overflowed its stack or panicked")
}

fn code(expr: &str, limits: Limits) -> String {
    match eval(expr, limits) {
        Ok(v) => panic!("{expr}: expected an error, got {v:?}"),
        Err(c) => c,
    }
}

#[test]
fn a_reduce_wrapping_its_accumulator_stops_at_the_value_depth() {
    let expr = "$reduce([1..200000], function($a, $v) { {'x': $a} }, {})";
    assert_eq!(code(expr, Limits::default()), "U1002");
    let arrays = "$reduce([1..200000], function($a, $v) { [[$a]] }, [])";
    assert_eq!(code(arrays, Limits::default()), "U1002");
    // Up to the bound it works: 999 wraps of {} nest 1000 objects.
    let ok = "$reduce([1..999], function($a, $v) { {'x': $a} }, {})";
    let v = eval(ok, Limits::default())
        .expect("within the bound")
        .expect("defined");
    let mut depth = 0;
    let mut cur = &v;
    while let Some(next) = cur.get("x") {
        depth += 1;
        cur = next;
    }
    assert_eq!(depth, 999);
}

#[test]
fn a_shared_value_doubled_forty_times_is_refused_at_conversion() {
    // 40 objects, each holding the previous one twice: 2^40 values when written out.
    let expr = "$reduce([1..40], function($a, $v) { {'l': $a, 'r': $a} }, {})";
    let limits = Limits {
        max_result_values: 262_144,
        ..Limits::default()
    };
    assert_eq!(code(expr, limits), "U1003");
    assert_eq!(code(&format!("$string({expr})"), limits), "U1003");
    // The same shape, small enough, converts.
    let small = "$reduce([1..3], function($a, $v) { {'l': $a, 'r': $a} }, {})";
    assert_eq!(
        eval(small, limits).expect("small"),
        Some(
            json!({"l": {"l": {"l": {}, "r": {}}, "r": {"l": {}, "r": {}}}, "r": {"l": {"l": {}, "r": {}}, "r": {"l": {}, "r": {}}}})
        )
    );
}

#[test]
fn arrays_and_strings_are_bounded_before_memory_runs_out() {
    let limits = Limits {
        max_array_items: 1_000_000,
        max_string_bytes: 16 << 20,
        ..Limits::default()
    };
    let append = "$count($reduce([1..40], function($a, $v) { $append($a, $a) }, [1]))";
    assert_eq!(code(append, limits), "U1004");
    assert_eq!(code("$count([1..5000000])", limits), "U1004");
    let concat = "$length($reduce([1..40], function($a, $v) { $a & $a }, 'xy'))";
    assert_eq!(code(concat, limits), "U1005");
    assert_eq!(code("$length($pad('', 1000000000000))", limits), "U1005");
    // Within the bounds nothing changes.
    assert_eq!(
        eval("$count([1..1000000])", limits),
        Ok(Some(json!(1000000)))
    );
    assert_eq!(
        eval("$length($pad('', 1000))", limits),
        Ok(Some(json!(1000)))
    );
}

#[test]
fn a_tail_recursive_loop_that_never_ends_stops_at_the_timeout() {
    let limits = Limits {
        timeout: Some(Duration::from_millis(200)),
        ..Limits::default()
    };
    let expr = "($f := function($n) { $f($n + 1) }; $f(0))";
    assert_eq!(code(expr, limits), "U1001");
}

/// Found by the `jsonata` fuzz target: a recursive function doubling its array argument took 2.6
/// GB within a few dozen steps (each step allocated twice the last). Copying members into an
/// array constructor now costs steps (one per 16), so whichever comes first, the array bound or
/// the step budget, stops it within bounded memory.
#[test]
fn a_recursion_doubling_its_argument_stops_at_the_array_bound_or_the_step_budget() {
    let limits = Limits {
        max_steps: Some(1_000_000),
        max_array_items: 1_000_000,
        max_result_values: 1 << 20,
        max_string_bytes: 16 << 20,
        ..Limits::default()
    };
    let expr = "($f := function($s, $x)<an:s> { $x > 0 ? $f([$s, $s], $x-0) : $s }; $f('a', 2))";
    // 2^20 members copied cost 131,072 steps: the array bound answers first.
    assert_eq!(code(expr, limits), "U1004");
    // With a smaller step budget, the budget answers first.
    let few_steps = Limits {
        max_steps: Some(10_000),
        ..limits
    };
    assert_eq!(code(expr, few_steps), "U1001");
}

/// Found by the `jsonata` fuzz target: a recursion that passes on its argument with one member
/// more each call kept every copy alive (frames binding arrays were kept for cycle clearing):
/// quadratic memory, 23 GB before the step budget ended it. Frames that bind plain data are now
/// freed with their scope, and a kept frame costs a step per member it keeps.
#[test]
fn a_recursion_growing_its_argument_ends_in_bounded_memory() {
    let limits = Limits {
        max_steps: Some(1_000_000),
        max_array_items: 1_000_000,
        max_result_values: 1 << 20,
        max_string_bytes: 16 << 20,
        ..Limits::default()
    };
    let expr = "($f := function($s, $x)<an:s> { $x > 0 ? $f([$s, 1], $x-0) : $s }; $f('a', 2))";
    assert_eq!(code(expr, limits), "U1001");
    // The same with a function in the array: its frames are kept, and pay for what they keep.
    let expr = "($f := function($s, $x)<an:s> { $x > 0 ? $f([$s, $f], $x-0) : $s }; $f('a', 2))";
    assert_eq!(code(expr, limits), "U1001");
}
