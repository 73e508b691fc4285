//! Engine behaviour in virtual time: every Wait, backoff and timeout below completes instantly
//! because tokio's clock is paused and auto-advances when the runtime is idle.

use expressway_engine::runtime::{SplitMix64, TokioClock};
use expressway_engine::tasks::{Registry, TEST_RESOURCE};
use expressway_engine::{
    execute, ExecutionRequest, Limits, LogConfig, LogLevel, Outcome, Runtime, Status,
};
mod callbacks;
mod deep_values;
mod distributed_map;
mod runaway;

use serde_json::{json, Value};
use std::sync::Arc;

pub(crate) const T0: i64 = 1_767_225_600_000;

pub(crate) fn request(input: Value, log: LogConfig) -> ExecutionRequest {
    ExecutionRequest {
        execution_arn:
            "arn:aws:states:us-east-1:123456789012:express:m:e:00000000-0000-4000-8000-000000000000"
                .into(),
        execution_name: "e".into(),
        state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:m".into(),
        state_machine_name: "m".into(),
        role_arn: "arn:aws:iam::123456789012:role/r".into(),
        input,
        log,
        limits: Limits::default(),
        synchronous: false,
    }
}

async fn run_with(definition: Value, input: Value, log: LogConfig) -> Outcome {
    let machine = expressway_asl::load(&definition).expect("definition loads");
    let clock = Arc::new(TokioClock::starting_at(T0));
    let runtime = Runtime {
        map_children: None,
        clock: clock.clone(),
        entropy: Arc::new(SplitMix64::new(1)),
        tasks: Arc::new(Registry::new(clock)),
        callbacks: None,
    };
    execute(&machine, &request(input, log), &runtime).await
}

async fn run(definition: Value, input: Value) -> Outcome {
    run_with(definition, input, LogConfig::default()).await
}

fn elapsed(o: &Outcome) -> i64 {
    o.stop_millis - o.start_millis
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially_in_virtual_time() {
    let def = json!({"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": TEST_RESOURCE,
        "Parameters": {"Error": "Flaky", "FailAttempts": 2, "Result": {"ok": true}},
        "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 2, "BackoffRate": 3, "MaxAttempts": 3}],
        "End": true}}});
    let o = run(def, json!({})).await;
    assert_eq!(o.status, Status::Succeeded, "{o:?}");
    assert_eq!(o.output, Some(json!({"ok": true})));
    assert_eq!(elapsed(&o), 2_000 + 6_000, "2 s then 2*3 s of backoff");
}

#[tokio::test(start_paused = true)]
async fn max_delay_caps_backoff_and_max_attempts_zero_never_retries() {
    let def = json!({"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": TEST_RESOURCE,
        "Parameters": {"Error": "Flaky", "FailAttempts": 3},
        "Retry": [{"ErrorEquals": ["Nope"], "MaxAttempts": 0}, {"ErrorEquals": ["Flaky"], "IntervalSeconds": 10, "BackoffRate": 10, "MaxDelaySeconds": 15}],
        "End": true}}});
    let o = run(def, json!({})).await;
    assert_eq!(o.status, Status::Succeeded, "{o:?}");
    assert_eq!(elapsed(&o), 10_000 + 15_000 + 15_000);

    let def = json!({"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": TEST_RESOURCE, "Parameters": {"Error": "Flaky"},
        "Retry": [{"ErrorEquals": ["Flaky"], "MaxAttempts": 0}], "End": true}}});
    let o = run(def, json!({})).await;
    assert_eq!(
        (o.status, o.error.as_deref(), elapsed(&o)),
        (Status::Failed, Some("Flaky"), 0)
    );
}

#[tokio::test(start_paused = true)]
async fn full_jitter_draws_delays_below_the_capped_interval() {
    let def = |jitter: &str| {
        json!({"StartAt": "T", "States": {"T": {
            "Type": "Task", "Resource": TEST_RESOURCE, "Parameters": {"Error": "Flaky", "FailAttempts": 5},
            "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 4, "MaxAttempts": 5, "JitterStrategy": jitter, "MaxDelaySeconds": 8}],
            "End": true}}})
    };
    let none = run(def("NONE"), json!({})).await;
    assert_eq!(
        elapsed(&none),
        4_000 + 8_000 * 4,
        "without jitter: 4 s, then capped at 8 s"
    );
    let full = run(def("FULL"), json!({})).await;
    assert_eq!(full.status, Status::Succeeded);
    assert!(
        elapsed(&full) < elapsed(&none),
        "FULL jitter draws each delay in [0, capped interval): {}",
        elapsed(&full)
    );
}

#[tokio::test(start_paused = true)]
async fn task_timeout_is_caught_as_states_timeout() {
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": TEST_RESOURCE, "Parameters": {"SleepSeconds": 60}, "TimeoutSeconds": 3,
              "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "Wrong"}, {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.err", "Next": "Caught"}], "End": true},
        "Wrong": {"Type": "Fail", "Error": "Wrong"},
        "Caught": {"Type": "Succeed"}}});
    let o = run(def, json!({"a": 1})).await;
    assert_eq!(o.status, Status::Succeeded, "{o:?}");
    assert_eq!(
        o.output,
        Some(json!({"a": 1, "err": {"Error": "States.Timeout"}}))
    );
    assert_eq!(elapsed(&o), 3_000);
}

#[tokio::test(start_paused = true)]
async fn executions_time_out_at_timeout_seconds_and_at_five_minutes() {
    let def = json!({"TimeoutSeconds": 5, "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": true}}});
    let o = run(def, json!({})).await;
    assert_eq!((o.status, elapsed(&o)), (Status::TimedOut, 5_000));

    let def =
        json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": true}}});
    let o = run(def, json!({})).await;
    assert_eq!(
        (o.status, elapsed(&o)),
        (Status::TimedOut, 300_000),
        "Express executions last at most 5 minutes"
    );
}

#[tokio::test(start_paused = true)]
async fn parallel_results_keep_branch_order_whatever_finishes_first() {
    let slow = json!({"StartAt": "S", "States": {"S": {"Type": "Task", "Resource": TEST_RESOURCE, "Parameters": {"SleepSeconds": 5, "Result": "slow"}, "End": true}}});
    let fast = json!({"StartAt": "F", "States": {"F": {"Type": "Task", "Resource": TEST_RESOURCE, "Parameters": {"SleepSeconds": 1, "Result": "fast"}, "End": true}}});
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": [slow, fast], "End": true}}});
    let o = run(def, json!({})).await;
    assert_eq!(o.output, Some(json!(["slow", "fast"])));
    assert_eq!(elapsed(&o), 5_000, "branches run concurrently");
}

#[tokio::test(start_paused = true)]
async fn a_failing_branch_fails_the_parallel_state() {
    let ok = json!({"StartAt": "S", "States": {"S": {"Type": "Task", "Resource": TEST_RESOURCE, "Parameters": {"SleepSeconds": 50}, "End": true}}});
    let bad = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom", "Cause": "branch 2"}}});
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": [ok, bad], "End": true}}});
    let o = run(def, json!({})).await;
    assert_eq!(
        (o.status, o.error.as_deref(), o.cause.as_deref()),
        (Status::Failed, Some("Boom"), Some("branch 2"))
    );
    assert_eq!(elapsed(&o), 0, "the other branch is abandoned");
}

#[tokio::test(start_paused = true)]
async fn map_max_concurrency_bounds_parallel_iterations() {
    let def = |mc: u64| {
        json!({"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": mc,
            "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": TEST_RESOURCE, "Parameters": {"SleepSeconds": 1, "Result.$": "$"}, "End": true}}},
            "ItemSelector": {"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"},
            "End": true}}})
    };
    let o = run(def(2), json!([10, 20, 30, 40])).await;
    assert_eq!(
        o.output,
        Some(json!([{"v": 10, "i": 0}, {"v": 20, "i": 1}, {"v": 30, "i": 2}, {"v": 40, "i": 3}]))
    );
    assert_eq!(elapsed(&o), 2_000);
    let o = run(def(0), json!([1, 2, 3, 4])).await;
    assert_eq!(elapsed(&o), 1_000, "0 means unlimited");
}

#[tokio::test(start_paused = true)]
async fn map_tolerates_failures_up_to_the_threshold() {
    let def = |count: u64| {
        json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ToleratedFailureCount": count,
            "ItemProcessor": {"StartAt": "C", "States": {
                "C": {"Type": "Choice", "Choices": [{"Variable": "$", "NumericGreaterThan": 1, "Next": "Bad"}], "Default": "Ok"},
                "Bad": {"Type": "Fail", "Error": "Big"}, "Ok": {"Type": "Succeed"}}},
            "End": true}}})
    };
    let o = run(def(2), json!([1, 2, 3])).await;
    assert_eq!(o.status, Status::Succeeded, "{o:?}");
    assert_eq!(
        o.output,
        Some(json!([1, {"Error": "Big"}, {"Error": "Big"}]))
    );
    let o = run(def(1), json!([1, 2, 3])).await;
    assert_eq!(
        o.error.as_deref(),
        Some("States.ExceedToleratedFailureThreshold")
    );
}

#[tokio::test(start_paused = true)]
async fn states_all_cannot_catch_runtime_errors_and_causes_name_the_entered_event() {
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "P"},
        "P": {"Type": "Parallel", "Branches": [{"StartAt": "X", "States": {"X": {"Type": "Pass", "InputPath": "$.missing", "End": true}}}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": true},
        "Caught": {"Type": "Succeed"}}});
    let o = run(def, json!({})).await;
    assert_eq!(o.status, Status::Failed);
    assert_eq!(o.error.as_deref(), Some("States.Runtime"));
    assert_eq!(
        o.cause.as_deref(),
        Some("An error occurred while executing the state 'X' (entered at the event id #6). Invalid path '$.missing' : No results for path: $['missing']")
    );
}

#[tokio::test(start_paused = true)]
async fn oversized_state_output_fails_with_data_limit_exceeded() {
    let big = "x".repeat(300_000);
    let def = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": {"big": big}, "End": true}}});
    let o = run(def, json!({})).await;
    assert_eq!(o.error.as_deref(), Some("States.DataLimitExceeded"));
    assert_eq!(o.cause.as_deref(), Some("The state/task 'A' returned a result with a size exceeding the maximum number of bytes service limit."));
}

#[tokio::test(start_paused = true)]
async fn variables_are_capped_at_256_kib_each_and_per_assign() {
    // one variable over 256 KiB, built by JSONata so the definition itself stays small
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "A", "States": {
        "A": {"Type": "Pass", "Assign": {"big": "{% $join($map([1..30000], function($i) { 'xxxxxxxxx' })) %}"},
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": true},
        "Caught": {"Type": "Succeed"}}});
    let o = run(def, json!({})).await;
    assert_eq!(o.status, Status::Failed, "States.ALL does not catch it");
    assert_eq!(o.error.as_deref(), Some("States.DataLimitExceeded"));
    assert!(
        o.cause
            .as_deref()
            .unwrap_or_default()
            .contains("variable 'big'"),
        "{:?}",
        o.cause
    );
    // two variables under the cap each, over it together
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "A", "States": {
        "A": {"Type": "Pass", "Assign": {
            "a": "{% $join($map([1..15000], function($i) { 'xxxxxxxxx' })) %}",
            "b": "{% $join($map([1..15000], function($i) { 'xxxxxxxxx' })) %}"}, "End": true}}});
    let o = run(def, json!({})).await;
    assert_eq!(o.error.as_deref(), Some("States.DataLimitExceeded"));
    // under the caps: fine, and the next state reads it
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "A", "States": {
        "A": {"Type": "Pass", "Assign": {"a": "{% $join($map([1..1000], function($i) { 'x' })) %}"}, "Next": "B"},
        "B": {"Type": "Pass", "Output": "{% $length($a) %}", "End": true}}});
    let o = run(def, json!({})).await;
    assert_eq!(o.status, Status::Succeeded);
    assert_eq!(o.output, Some(json!(1000)));
}

#[tokio::test(start_paused = true)]
async fn waits_sleep_on_the_injected_clock() {
    let def = json!({"StartAt": "W", "States": {
        "W": {"Type": "Wait", "SecondsPath": "$.s", "Next": "U"},
        "U": {"Type": "Wait", "Timestamp": "2026-01-01T00:01:00Z", "End": true}}});
    let o = run(def, json!({"s": 10})).await;
    assert_eq!(o.status, Status::Succeeded);
    assert_eq!(
        o.stop_millis,
        T0 + 60_000,
        "the Timestamp wait ends at 00:01:00 whatever came before"
    );
}

#[tokio::test(start_paused = true)]
async fn log_levels_filter_events_and_execution_data() {
    let def = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "F"}, "F": {"Type": "Fail", "Error": "E", "Cause": "C"}}});
    let all = run_with(
        def.clone(),
        json!({"k": 1}),
        LogConfig {
            level: LogLevel::All,
            include_execution_data: true,
        },
    )
    .await;
    let types: Vec<&str> = all.events.iter().map(|e| e.event_type).collect();
    assert_eq!(
        types,
        [
            "ExecutionStarted",
            "PassStateEntered",
            "PassStateExited",
            "FailStateEntered",
            "ExecutionFailed"
        ]
    );
    assert_eq!(
        all.events[1].details,
        json!({"input": "{\"k\":1}", "inputDetails": {"truncated": false}, "name": "A"})
    );
    let ids: Vec<(u64, u64)> = all
        .events
        .iter()
        .map(|e| (e.id, e.previous_event_id))
        .collect();
    assert_eq!(ids, [(1, 0), (2, 0), (3, 2), (4, 3), (5, 4)]);
    let req = request(
        json!({"k": 1}),
        LogConfig {
            level: LogLevel::All,
            include_execution_data: true,
        },
    );
    assert_eq!(
        String::from_utf8(all.log_record_json(&req)).expect("UTF-8"),
        all.log_record(&req).to_string(),
        "the direct serializer writes exactly the Value form"
    );
    assert_eq!(
        String::from_utf8(all.result_json(&req, None)).expect("UTF-8"),
        all.result_object(&req).to_string(),
        "result_json writes exactly the Value form"
    );
    let mut traced = all.result_object(&req);
    if let Some(o) = traced.as_object_mut() {
        o.insert("traceHeader".into(), json!("Root=1-\"x\""));
    }
    assert_eq!(
        String::from_utf8(all.result_json(&req, Some("Root=1-\"x\""))).expect("UTF-8"),
        traced.to_string()
    );

    let err = run_with(
        def.clone(),
        json!({"k": 1}),
        LogConfig {
            level: LogLevel::Error,
            include_execution_data: false,
        },
    )
    .await;
    let types: Vec<&str> = err.events.iter().map(|e| e.event_type).collect();
    assert_eq!(types, ["FailStateEntered", "ExecutionFailed"]);
    assert_eq!(
        err.events[0].details,
        json!({"name": "F"}),
        "no input without includeExecutionData"
    );

    let fatal = run_with(
        def.clone(),
        json!({}),
        LogConfig {
            level: LogLevel::Fatal,
            include_execution_data: true,
        },
    )
    .await;
    assert_eq!(fatal.events.len(), 1);
    let off = run_with(
        def,
        json!({}),
        LogConfig {
            level: LogLevel::Off,
            include_execution_data: true,
        },
    )
    .await;
    assert!(off.events.is_empty());
}

#[tokio::test(start_paused = true)]
async fn variables_are_scoped_and_assigned_after_the_state() {
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Assign": {"x": 1, "items": [1, 2]}, "Next": "M"},
        "M": {"Type": "Map", "ItemsPath": "$items", "ItemProcessor": {"StartAt": "I", "States": {
            "I": {"Type": "Pass", "Parameters": {"outer.$": "$x", "item.$": "$"}, "Assign": {"inner": 5}, "End": true}}},
            "Next": "B"},
        "B": {"Type": "Pass", "Parameters": {"x.$": "$x", "prev.$": "$"}, "Assign": {"x": 2}, "Next": "C"},
        "C": {"Type": "Pass", "Parameters": {"x.$": "$x"}, "End": true}}});
    let o = run(def, json!({})).await;
    assert_eq!(o.output, Some(json!({"x": 2})));
    assert_eq!(o.status, Status::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn unknown_resources_fail_with_task_failed() {
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:nope", "End": true}}});
    let o = run(def, json!({})).await;
    assert_eq!(o.error.as_deref(), Some("States.TaskFailed"));
}

/// Issue #17: what AWS runs, run the same way here: a filter comparing with an unquoted word
/// (Jayway keeps it as the string it spells), Jayway's script index `[(@.length-1)]`, and a
/// custom `States.`-prefixed error raised by a Fail state and caught by name.
#[tokio::test(start_paused = true)]
async fn jayway_filters_script_indexes_and_custom_states_errors_run() {
    let def = json!({"StartAt": "Pick", "States": {
        "Pick": {"Type": "Pass",
            "InputPath": "$.translations[?(@.TargetLanguageCode==es)].TranslatedText",
            "ResultPath": "$.spanish", "Next": "Last"},
        "Last": {"Type": "Pass", "Parameters": {"last.$": "$.spanish[(@.length-1)]"}, "Next": "Vote"},
        "Vote": {"Type": "Parallel", "Branches": [{"StartAt": "Q", "States": {
                "Q": {"Type": "Fail", "Error": "States.QuorumMet", "Cause": "3 of 5"}}}],
            "Catch": [{"ErrorEquals": ["States.QuorumMet"], "ResultPath": "$.vote", "Next": "Done"}],
            "End": true},
        "Done": {"Type": "Succeed"}}});
    let input = json!({"translations": [
        {"TargetLanguageCode": "es", "TranslatedText": "hola"},
        {"TargetLanguageCode": "fr", "TranslatedText": "salut"},
        {"TargetLanguageCode": "es", "TranslatedText": "buenas"}]});
    let o = run(def, input).await;
    assert_eq!(o.status, Status::Succeeded, "{o:?}");
    assert_eq!(
        o.output,
        Some(json!({"last": "buenas", "vote": {"Error": "States.QuorumMet", "Cause": "3 of 5"}}))
    );
}
