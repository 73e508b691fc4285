//! Runaway definitions (issue #11, "Wedges"): loops that never await anything must give control
//! back to the runtime, time out, be cancellable and stay inside their event and memory budgets.
//!
//! Each scenario runs on its own current-thread runtime with tokio's clock paused. A busy
//! runtime never auto-advances a paused clock, so a *ticker* task advances virtual time by a
//! fixed step each time it is scheduled: the CPU work of the loops "takes" virtual time, and
//! only executions that yield let the ticker (and the timers) run. A scenario that wedges its
//! runtime is reported by the watchdog below instead of hanging the test binary.

use super::{request, T0};
use expressway_engine::runtime::{SplitMix64, TokioClock};
use expressway_engine::tasks::{Registry, TEST_RESOURCE};
use expressway_engine::{execute, Budget, Limits, LogConfig, LogLevel, Outcome, Runtime, Status};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The loop of the issue: Pass -> Choice -> Pass ... while `$.stop` is absent.
fn pass_choice_loop(timeout_seconds: Option<u64>) -> Value {
    let mut def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "C"},
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.stop", "IsPresent": true, "Next": "Done"}], "Default": "A"},
        "Done": {"Type": "Succeed"}}});
    if let Some(t) = timeout_seconds {
        def["TimeoutSeconds"] = json!(t);
    }
    def
}

fn runtime() -> Runtime {
    let clock = Arc::new(TokioClock::starting_at(T0));
    Runtime {
        map_children: None,
        clock: clock.clone(),
        entropy: Arc::new(SplitMix64::new(1)),
        tasks: Arc::new(Registry::new(clock)),
        callbacks: None,
    }
}

async fn run_limited(definition: Value, input: Value, log: LogConfig, limits: Limits) -> Outcome {
    let machine = expressway_asl::load(&definition).expect("definition loads");
    let mut req = request(input, log);
    req.limits = limits;
    execute(&machine, &req, &runtime()).await
}

async fn run(definition: Value, input: Value) -> Outcome {
    run_limited(definition, input, LogConfig::default(), Limits::default()).await
}

fn all_events() -> LogConfig {
    LogConfig {
        level: LogLevel::All,
        include_execution_data: true,
    }
}

fn elapsed(o: &Outcome) -> i64 {
    o.stop_millis - o.start_millis
}

/// Runs `scenario` on a fresh current-thread runtime with a paused clock, on its own thread;
/// fails the test when the runtime wedges (the scenario never completes).
fn on_paused_runtime<F, Fut>(scenario: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        rt.block_on(scenario());
        let _ = done.send(());
    });
    match wait.recv_timeout(Duration::from_secs(180)) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the runtime wedged: an execution never gave control back")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            panic!("the scenario panicked (message above)")
        }
    }
}

/// Advances virtual time by `step` every time it is scheduled.
fn spawn_ticker(step: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::advance(step).await;
        }
    })
}

#[test]
fn a_pass_choice_loop_times_out_at_timeout_seconds() {
    on_paused_runtime(|| async {
        let ticker = spawn_ticker(Duration::from_millis(1));
        let o = run(pass_choice_loop(Some(5)), json!({})).await;
        ticker.abort();
        assert_eq!(o.status, Status::TimedOut, "{:?}", o.error);
        let ms = elapsed(&o);
        assert!((5_000..5_100).contains(&ms), "timed out after {ms} ms");
        assert!(o.state_transitions > 1_000, "the loop ran meanwhile");
    });
}

#[test]
fn a_pass_choice_loop_stops_at_the_five_minute_cap() {
    on_paused_runtime(|| async {
        let ticker = spawn_ticker(Duration::from_millis(100));
        let o = run(pass_choice_loop(None), json!({})).await;
        ticker.abort();
        assert_eq!(o.status, Status::TimedOut);
        let ms = elapsed(&o);
        assert!((300_000..305_000).contains(&ms), "timed out after {ms} ms");
    });
}

#[test]
fn loops_inside_parallel_branches_and_map_iterations_time_out() {
    on_paused_runtime(|| async {
        let ticker = spawn_ticker(Duration::from_millis(1));
        let lp = pass_choice_loop(None);
        let branch = json!({"StartAt": "A", "States": lp["States"].clone()});
        let parallel = json!({"TimeoutSeconds": 2, "StartAt": "P", "States": {"P": {
            "Type": "Parallel", "Branches": [branch.clone(), branch.clone()], "End": true}}});
        let o = run(parallel, json!({})).await;
        assert_eq!(o.status, Status::TimedOut);
        assert!((2_000..2_100).contains(&elapsed(&o)), "{}", elapsed(&o));

        let map = json!({"TimeoutSeconds": 2, "StartAt": "M", "States": {"M": {
            "Type": "Map", "ItemProcessor": branch, "End": true}}});
        let o = run(map, json!([1, 2, 3])).await;
        assert_eq!(o.status, Status::TimedOut);
        assert!((2_000..2_100).contains(&elapsed(&o)), "{}", elapsed(&o));
        ticker.abort();
    });
}

#[test]
fn instant_task_failures_retried_without_delay_time_out() {
    on_paused_runtime(|| async {
        let ticker = spawn_ticker(Duration::from_millis(1));
        let def = json!({"TimeoutSeconds": 3, "StartAt": "T", "States": {"T": {
            "Type": "Task", "Resource": TEST_RESOURCE,
            "Parameters": {"Error": "Flaky", "FailAttempts": 1_000_000_000u64},
            "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 0, "MaxAttempts": 99_999_999}],
            "End": true}}});
        let o = run(def, json!({})).await;
        ticker.abort();
        assert_eq!(o.status, Status::TimedOut, "{:?} {:?}", o.error, o.cause);
        assert!((3_000..3_100).contains(&elapsed(&o)), "{}", elapsed(&o));
    });
}

#[test]
fn a_normal_execution_completes_while_ten_loops_run_and_the_loops_can_be_cancelled() {
    on_paused_runtime(|| async {
        let ticker = spawn_ticker(Duration::from_millis(1));
        let machine = Arc::new(expressway_asl::load(&pass_choice_loop(None)).expect("loads"));
        let loops: Vec<_> = (0..10)
            .map(|_| {
                let machine = machine.clone();
                tokio::spawn(async move {
                    let req = request(json!({}), LogConfig::default());
                    execute(&machine, &req, &runtime()).await
                })
            })
            .collect();
        // let every loop start spinning first
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        let normal = json!({"StartAt": "A", "States": {
            "A": {"Type": "Pass", "Result": {"n": 1}, "Next": "W"},
            "W": {"Type": "Wait", "Seconds": 1, "Next": "C"},
            "C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "Done"}], "Default": "A"},
            "Done": {"Type": "Succeed"}}});
        let o = run(normal, json!({})).await;
        assert_eq!(o.status, Status::Succeeded);
        assert_eq!(o.output, Some(json!({"n": 1})));
        assert!(
            loops.iter().all(|l| !l.is_finished()),
            "the loops are still running"
        );
        for l in loops {
            l.abort();
            let err = l.await.expect_err("cancelled");
            assert!(err.is_cancelled());
        }
        ticker.abort();
    });
}

#[test]
fn a_loop_at_log_level_all_fails_when_it_keeps_too_many_events() {
    on_paused_runtime(|| async {
        let o = run_limited(
            pass_choice_loop(None),
            json!({"payload": "x".repeat(64)}),
            all_events(),
            Limits::default(),
        )
        .await;
        assert_eq!(o.status, Status::Failed);
        assert_eq!(o.error.as_deref(), Some("States.DataLimitExceeded"));
        assert_eq!(o.exceeded_budget, Some(Budget::Events));
        let cause = o.cause.as_deref().unwrap_or_default();
        assert!(cause.contains("budget of 25000 log events"), "{cause}");
        assert!(o.events.len() > 25_000 && o.events.len() <= 25_004);
        assert_eq!(
            o.events.last().map(|e| e.event_type),
            Some("ExecutionFailed")
        );
        assert_eq!(elapsed(&o), 0, "stopped at once, not at the time-out");
    });
}

#[test]
fn a_loop_logging_large_payloads_fails_at_its_memory_budget() {
    on_paused_runtime(|| async {
        let limits = Limits {
            max_memory_bytes: 4 * 1024 * 1024,
            ..Limits::default()
        };
        let o = run_limited(
            pass_choice_loop(None),
            json!({"payload": "x".repeat(100_000)}),
            all_events(),
            limits,
        )
        .await;
        assert_eq!(o.error.as_deref(), Some("States.DataLimitExceeded"));
        assert_eq!(o.exceeded_budget, Some(Budget::Memory));
        let cause = o.cause.as_deref().unwrap_or_default();
        assert!(cause.contains("memory budget of 4194304 bytes"), "{cause}");
        // each kept Pass/Choice event carries the 100 kB payload: about 40 of them fit in 4 MiB
        assert!(o.events.len() < 60, "{} events kept", o.events.len());
    });
}

#[test]
fn a_map_over_a_million_items_fails_at_the_memory_budget_instead_of_running_them_all() {
    on_paused_runtime(|| async {
        let def = json!({"QueryLanguage": "JSONata", "StartAt": "M", "States": {"M": {
            "Type": "Map", "Items": "{% [1..1000000] %}",
            "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}},
            "End": true}}});
        let o = run(def, json!({})).await;
        assert_eq!(o.error.as_deref(), Some("States.DataLimitExceeded"));
        assert_eq!(o.exceeded_budget, Some(Budget::Memory));
        let cause = o.cause.as_deref().unwrap_or_default();
        assert!(cause.contains("in the state 'M'"), "{cause}");
        assert!(
            o.state_transitions < 10_000,
            "{} transitions before the budget stopped it",
            o.state_transitions
        );
    });
}

#[test]
fn maps_within_the_budget_still_run_every_item() {
    on_paused_runtime(|| async {
        let def = json!({"QueryLanguage": "JSONata", "StartAt": "M", "States": {"M": {
            "Type": "Map", "Items": "{% [1..20000] %}",
            "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}},
            "Output": "{% $count($states.result) %}",
            "End": true}}});
        let o = run(def, json!({})).await;
        assert_eq!(o.status, Status::Succeeded, "{:?}", o.cause);
        assert_eq!(o.output, Some(json!(20000)));
    });
}

/// Parallel nested `depth` levels deep with `width` branches each; the leaves wait a second.
fn nested_parallel(width: usize, depth: usize) -> Value {
    let mut graph =
        json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "End": true}}});
    for _ in 0..depth {
        graph = json!({"StartAt": "P", "States": {"P": {
            "Type": "Parallel", "Branches": vec![graph; width], "End": true}}});
    }
    graph
}

#[test]
fn a_wide_nested_parallel_fails_at_the_memory_budget() {
    on_paused_runtime(|| async {
        // 8^5 = 32,768 leaf branches in flight at once, ~4 KiB each
        let o = run(nested_parallel(8, 5), json!({})).await;
        assert_eq!(o.error.as_deref(), Some("States.DataLimitExceeded"));
        assert_eq!(o.exceeded_budget, Some(Budget::Memory));
        assert_eq!(elapsed(&o), 0, "failed before the leaves' waits ended");

        // 8^3 = 512 leaves fit
        let o = run(nested_parallel(8, 3), json!({})).await;
        assert_eq!(o.status, Status::Succeeded, "{:?}", o.cause);
    });
}
