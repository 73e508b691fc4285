//! Values built deeper at run time than any static bound (issue #11): a loop that wraps its input
//! one level deeper on every iteration, or a JSONata `$reduce` that wraps its accumulator, must
//! fail the execution with `States.DataLimitExceeded` at `MAX_VALUE_DEPTH` instead of overflowing
//! the stack (which aborts the whole pod). Every scenario runs on a thread with the executor
//! runtime's worker stack (`WORKER_STACK_BYTES`), so a value at the bound must also be safe to
//! build, clone, serialize and drop there (in this debug build, the worst case).

use super::request;
use expressway_asl::depth::MAX_VALUE_DEPTH;
use expressway_engine::runtime::{SplitMix64, TokioClock};
use expressway_engine::tasks::Registry;
use expressway_engine::{execute, LogConfig, LogLevel, Outcome, Runtime, Status};
use serde_json::{json, Value};
use std::sync::Arc;

/// The executor runtime's worker stack.
const WORKER_STACK: usize = expressway_engine::WORKER_STACK_BYTES;

fn run_on_worker_stack(definition: Value, input: Value, log: LogConfig) -> Outcome {
    std::thread::Builder::new()
        .stack_size(WORKER_STACK)
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let machine = expressway_asl::load(&definition).expect("definition loads");
                let clock = Arc::new(TokioClock::starting_at(super::T0));
                let runtime = Runtime {
                    map_children: None,
                    clock: clock.clone(),
                    entropy: Arc::new(SplitMix64::new(1)),
                    tasks: Arc::new(Registry::new(clock)),
                    callbacks: None,
                };
                let outcome = execute(&machine, &request(input, log), &runtime).await;
                // What the executor does next with it: serialize the result and the log.
                let req = request(json!({}), log);
                let _ = outcome.result_json(&req, None);
                let _ = outcome.log_record_json(&req);
                outcome
            })
        })
        .expect("thread")
        .join()
        .expect("the execution overflowed its stack or panicked")
}

/// A Pass state wrapping `$` one level deeper per iteration, `levels` times.
fn nesting_loop(levels: usize) -> Value {
    json!({"StartAt": "Init", "States": {
        "Init": {"Type": "Pass", "Result": {"n": 0}, "Next": "Nest"},
        "Nest": {"Type": "Pass", "Parameters": {"a.$": "$", "n.$": "States.MathAdd($.n, 1)"}, "Next": "Check"},
        "Check": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericLessThan": levels, "Next": "Nest"}], "Default": "Done"},
        "Done": {"Type": "Pass", "Parameters": {"n.$": "$.n"}, "End": true}}})
}

fn all_events() -> LogConfig {
    LogConfig {
        level: LogLevel::All,
        include_execution_data: true,
    }
}

#[test]
fn a_loop_nesting_its_input_fails_at_the_depth_bound() {
    let o = run_on_worker_stack(
        nesting_loop(5 * MAX_VALUE_DEPTH),
        json!({}),
        LogConfig::default(),
    );
    assert_eq!(o.status, Status::Failed, "{o:?}");
    assert_eq!(o.error.as_deref(), Some("States.DataLimitExceeded"));
    let cause = o.cause.as_deref().unwrap_or_default();
    assert!(
        cause.contains("'Nest'") && cause.contains("nested deeper than"),
        "{cause}"
    );
}

#[test]
fn a_value_at_the_bound_is_safe_on_a_worker_stack_at_log_level_all() {
    // Each iteration adds one object level; the input object is level 1.
    let o = run_on_worker_stack(nesting_loop(MAX_VALUE_DEPTH - 1), json!({}), all_events());
    assert_eq!(o.status, Status::Succeeded, "{:?} {:?}", o.error, o.cause);
    assert_eq!(o.output, Some(json!({"n": MAX_VALUE_DEPTH - 1})));
}

#[test]
fn a_jsonata_reduce_wrapping_its_accumulator_fails_instead_of_overflowing() {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "Deep", "States": {"Deep": {
        "Type": "Pass",
        "Output": "{% $reduce([1..200000], function($a, $v) { {'x': $a} }, {}) %}",
        "End": true}}});
    let o = run_on_worker_stack(def, json!({}), LogConfig::default());
    assert_eq!(o.status, Status::Failed, "{o:?}");
    assert!(
        matches!(
            o.error.as_deref(),
            Some("States.DataLimitExceeded" | "States.QueryEvaluationError")
        ),
        "{:?} {:?}",
        o.error,
        o.cause
    );
}

#[test]
fn a_variable_nesting_itself_fails_at_the_depth_bound() {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "Init", "States": {
        "Init": {"Type": "Pass", "Assign": {"v": {}, "n": 0}, "Next": "Nest"},
        "Nest": {"Type": "Pass", "Assign": {"v": "{% {'a': $v} %}", "n": "{% $n + 1 %}"}, "Next": "Check"},
        "Check": {"Type": "Choice", "Choices": [{"Condition": "{% $n < 100000 %}", "Next": "Nest"}], "Default": "Done"},
        "Done": {"Type": "Succeed"}}});
    let o = run_on_worker_stack(def, json!({}), LogConfig::default());
    assert_eq!(o.status, Status::Failed, "{o:?}");
    assert_eq!(
        o.error.as_deref(),
        Some("States.DataLimitExceeded"),
        "{:?}",
        o.cause
    );
    assert!(
        o.cause
            .as_deref()
            .unwrap_or_default()
            .contains("variable 'v'"),
        "{:?}",
        o.cause
    );
}
