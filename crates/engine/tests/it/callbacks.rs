//! `.waitForTaskToken` in virtual time, against a scripted callback transport: each listen answers
//! with the signals its script gives (at virtual times), so outcomes, timeouts, heartbeats,
//! per-attempt tokens and the end of a wait are exercised without a broker.

#![allow(clippy::unwrap_used)] // test assertions

use super::{request, T0};
use expressway_engine::runtime::{SplitMix64, TokioClock};
use expressway_engine::tasks::{Registry, TEST_RESOURCE};
use expressway_engine::{
    execute, CallbackKey, CallbackListener, CallbackSignal, Callbacks, Limits, LogConfig, LogLevel,
    Outcome, Runtime, Status, TaskError,
};
use futures::channel::mpsc;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a scripted transport sends for one key: (delay after listen, signal).
type Script = Vec<(f64, CallbackSignal)>;
type ScriptFn = Box<dyn Fn(&CallbackKey) -> Script + Send + Sync>;

#[derive(Default)]
struct Scripted {
    /// Picks the script of each listen (by key).
    script: Option<ScriptFn>,
    /// Every key listened for, in order, with the token handed out.
    listened: Mutex<Vec<(CallbackKey, String)>>,
    /// Keys whose listener was dropped (the wait ended).
    dropped: Arc<Mutex<Vec<String>>>,
}

/// Records when the engine drops its listener.
struct DropGuard(String, Arc<Mutex<Vec<String>>>);
impl Drop for DropGuard {
    fn drop(&mut self) {
        self.1.lock().unwrap().push(self.0.clone());
    }
}

impl Callbacks for Scripted {
    fn listen(&self, key: CallbackKey) -> Result<CallbackListener, TaskError> {
        let token = format!("tok:{}:{}:{}", key.state_name, key.scope, key.attempt);
        self.listened
            .lock()
            .unwrap()
            .push((key.clone(), token.clone()));
        let (tx, rx) = mpsc::unbounded();
        let script = self.script.as_ref().map(|s| s(&key)).unwrap_or_default();
        tokio::spawn(async move {
            for (delay, signal) in script {
                tokio::time::sleep(Duration::from_secs_f64(delay)).await;
                if tx.unbounded_send(signal).is_err() {
                    return;
                }
            }
            // keep the stream open: the wait ends by a signal or a timer, not by the stream
            std::future::pending::<()>().await;
        });
        let guard = DropGuard(token.clone(), self.dropped.clone());
        let signals = futures::StreamExt::map(rx, move |s| {
            let _ = &guard;
            s
        });
        Ok(CallbackListener {
            token,
            signals: Box::pin(signals),
        })
    }
}

async fn run_cb(
    definition: Value,
    input: Value,
    callbacks: Option<Arc<Scripted>>,
    limits: Limits,
) -> Outcome {
    let machine = expressway_asl::load(&definition).expect("definition loads");
    let clock = Arc::new(TokioClock::starting_at(T0));
    let runtime = Runtime {
        map_children: None,
        clock: clock.clone(),
        entropy: Arc::new(SplitMix64::new(1)),
        tasks: Arc::new(Registry::new(clock)),
        callbacks: callbacks.map(|c| c as Arc<dyn Callbacks>),
    };
    let log = LogConfig {
        level: LogLevel::All,
        include_execution_data: true,
    };
    let mut req = request(input, log);
    req.limits = limits;
    execute(&machine, &req, &runtime).await
}

fn scripted(f: impl Fn(&CallbackKey) -> Script + Send + Sync + 'static) -> Arc<Scripted> {
    Arc::new(Scripted {
        script: Some(Box::new(f)),
        ..Scripted::default()
    })
}

fn wft() -> String {
    format!("{TEST_RESOURCE}.waitForTaskToken")
}

fn types(o: &Outcome) -> Vec<&'static str> {
    o.events.iter().map(|e| e.event_type).collect()
}

fn event<'a>(o: &'a Outcome, ty: &str) -> &'a Value {
    &o.events
        .iter()
        .find(|e| e.event_type == ty)
        .unwrap_or_else(|| panic!("no {ty} in {:?}", types(o)))
        .details
}

fn charge(extra: Value) -> Value {
    let mut task = json!({"Type": "Task", "Resource": wft(),
        "Parameters": {"taskToken.$": "$$.Task.Token", "input.$": "$"}, "End": true});
    for (k, v) in extra.as_object().unwrap() {
        task[k] = v.clone();
    }
    json!({"StartAt": "Charge", "States": {"Charge": task}})
}

#[tokio::test(start_paused = true)]
async fn the_task_sends_its_token_and_its_output_is_the_callbacks() {
    let cb = scripted(|_| vec![(2.5, CallbackSignal::Success(json!({"charged": 42})))]);
    let o = run_cb(
        charge(json!({})),
        json!({"order": "A-9001"}),
        Some(cb.clone()),
        Limits::default(),
    )
    .await;
    assert_eq!(o.status, Status::Succeeded, "{o:?}");
    assert_eq!(o.output, Some(json!({"charged": 42})));
    assert_eq!(
        o.stop_millis - o.start_millis,
        2_500,
        "waited for the callback"
    );
    let listened = cb.listened.lock().unwrap().clone();
    assert_eq!(listened.len(), 1);
    let (key, token) = &listened[0];
    assert_eq!(
        (key.state_name.as_str(), key.scope.as_str(), key.attempt),
        ("Charge", "", 0)
    );
    assert_eq!(
        key.execution_arn,
        request(json!({}), LogConfig::default()).execution_arn
    );
    // The request carried the token ($$.Task.Token) and its response is TaskSubmitted's output.
    let submitted = event(&o, "TaskSubmitted");
    let response: Value = serde_json::from_str(submitted["output"].as_str().unwrap()).unwrap();
    assert_eq!(
        response,
        json!({"taskToken": token, "input": {"order": "A-9001"}})
    );
    assert_eq!(
        types(&o)
            .into_iter()
            .filter(|t| t.starts_with("Task"))
            .collect::<Vec<_>>(),
        [
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskSubmitted",
            "TaskSucceeded",
            "TaskStateExited"
        ]
    );
    assert_eq!(
        cb.dropped.lock().unwrap().as_slice(),
        std::slice::from_ref(token),
        "the wait ended"
    );
}

#[tokio::test(start_paused = true)]
async fn send_task_failure_fails_the_task_and_catch_routes_it() {
    let failure = || {
        CallbackSignal::Failure(TaskError {
            error: "PaymentDeclined".into(),
            cause: Some("card expired".into()),
        })
    };
    let cb = scripted(move |_| vec![(1.0, failure())]);
    let o = run_cb(charge(json!({})), json!({}), Some(cb), Limits::default()).await;
    assert_eq!(o.status, Status::Failed);
    assert_eq!(o.error.as_deref(), Some("PaymentDeclined"));
    assert_eq!(o.cause.as_deref(), Some("card expired"));
    assert_eq!(event(&o, "TaskFailed")["error"], "PaymentDeclined");

    let cb = scripted(move |_| vec![(1.0, failure())]);
    let mut def =
        charge(json!({"Catch": [{"ErrorEquals": ["PaymentDeclined"], "Next": "Declined"}]}));
    def["States"]["Charge"]
        .as_object_mut()
        .unwrap()
        .remove("End");
    def["States"]["Charge"]["Next"] = json!("Declined");
    def["States"]["Declined"] = json!({"Type": "Pass", "End": true});
    let o = run_cb(def, json!({}), Some(cb), Limits::default()).await;
    assert_eq!(o.status, Status::Succeeded, "{o:?}");
    assert_eq!(
        o.output,
        Some(json!({"Error": "PaymentDeclined", "Cause": "card expired"}))
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_a_task_alive_until_they_stop() {
    // Heartbeats at 3 s and 6 s (each restarts the 5 s timer), then none: timed out at 11 s.
    let cb = scripted(|_| {
        vec![
            (3.0, CallbackSignal::Heartbeat),
            (3.0, CallbackSignal::Heartbeat),
        ]
    });
    let o = run_cb(
        charge(json!({"HeartbeatSeconds": 5})),
        json!({}),
        Some(cb),
        Limits::default(),
    )
    .await;
    assert_eq!(o.status, Status::Failed);
    assert_eq!(o.error.as_deref(), Some("States.HeartbeatTimeout"));
    assert_eq!(o.stop_millis - o.start_millis, 11_000);
    assert_eq!(
        event(&o, "TaskTimedOut")["error"],
        "States.HeartbeatTimeout"
    );
    assert_eq!(event(&o, "TaskScheduled")["heartbeatInSeconds"], "5");
}

#[tokio::test(start_paused = true)]
async fn timeout_seconds_bounds_the_wait_even_with_heartbeats() {
    let cb = scripted(|_| (0..100).map(|_| (2.0, CallbackSignal::Heartbeat)).collect());
    let o = run_cb(
        charge(json!({"HeartbeatSeconds": 5, "TimeoutSeconds": 10})),
        json!({}),
        Some(cb),
        Limits::default(),
    )
    .await;
    assert_eq!(o.error.as_deref(), Some("States.Timeout"));
    assert_eq!(o.stop_millis - o.start_millis, 10_000);
    assert_eq!(event(&o, "TaskTimedOut")["error"], "States.Timeout");
}

#[tokio::test(start_paused = true)]
async fn a_callback_already_there_when_the_task_listens_completes_it_at_once() {
    let cb = scripted(|_| vec![(0.0, CallbackSignal::Success(json!("early")))]);
    let o = run_cb(charge(json!({})), json!({}), Some(cb), Limits::default()).await;
    assert_eq!(o.output, Some(json!("early")));
    assert_eq!(o.stop_millis, o.start_millis);
}

#[tokio::test(start_paused = true)]
async fn every_attempt_and_every_map_item_gets_its_own_token() {
    // Attempt 0 of each item fails with Flaky, attempt 1 succeeds with the item's token.
    let cb = scripted(|key| {
        let signal = if key.attempt == 0 {
            CallbackSignal::Failure(TaskError {
                error: "Flaky".into(),
                cause: None,
            })
        } else {
            CallbackSignal::Success(json!({"scope": key.scope, "attempt": key.attempt}))
        };
        vec![(1.0, signal)]
    });
    let def = json!({"StartAt": "Each", "States": {"Each": {"Type": "Map", "End": true,
        "ItemProcessor": {"StartAt": "Charge", "States": {"Charge": {"Type": "Task", "Resource": wft(),
            "Parameters": {"token.$": "$$.Task.Token"},
            "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 1, "MaxAttempts": 1}],
            "End": true}}}}}});
    let o = run_cb(def, json!([1, 2, 3]), Some(cb.clone()), Limits::default()).await;
    assert_eq!(o.status, Status::Succeeded, "{o:?}");
    assert_eq!(
        o.output,
        Some(json!([
            {"scope": "0", "attempt": 1},
            {"scope": "1", "attempt": 1},
            {"scope": "2", "attempt": 1}
        ]))
    );
    let mut tokens: Vec<String> = cb
        .listened
        .lock()
        .unwrap()
        .iter()
        .map(|(_, t)| t.clone())
        .collect();
    assert_eq!(tokens.len(), 6);
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 6, "six distinct tokens: {tokens:?}");
}

#[tokio::test(start_paused = true)]
async fn the_execution_time_limit_ends_a_wait_without_timeouts() {
    let cb = scripted(|_| Vec::new());
    let limits = Limits {
        max_duration: Duration::from_secs(60),
        ..Limits::default()
    };
    let o = run_cb(charge(json!({})), json!({}), Some(cb.clone()), limits).await;
    assert_eq!(o.status, Status::TimedOut, "{o:?}");
    assert_eq!(o.stop_millis - o.start_millis, 60_000);
    assert_eq!(
        cb.dropped.lock().unwrap().len(),
        1,
        "the listener was dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_callback_transport_the_task_fails_with_states_runtime() {
    let o = run_cb(charge(json!({})), json!({}), None, Limits::default()).await;
    assert_eq!(o.status, Status::Failed);
    assert_eq!(o.error.as_deref(), Some("States.Runtime"));
    assert!(
        o.cause
            .as_deref()
            .unwrap_or("")
            .contains("no callback transport"),
        "{o:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn jsonata_tasks_read_the_token_from_states_context() {
    let cb = scripted(|_| vec![(1.0, CallbackSignal::Success(json!({"ok": true})))]);
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "Charge", "States": {"Charge": {
        "Type": "Task", "Resource": wft(),
        "Arguments": {"token": "{% $states.context.Task.Token %}"},
        "Output": "{% $states.result %}", "End": true}}});
    let o = run_cb(def, json!({}), Some(cb.clone()), Limits::default()).await;
    assert_eq!(o.output, Some(json!({"ok": true})), "{o:?}");
    let submitted = event(&o, "TaskSubmitted");
    let response: Value = serde_json::from_str(submitted["output"].as_str().unwrap()).unwrap();
    assert_eq!(response["token"], cb.listened.lock().unwrap()[0].1.as_str());
}

#[test]
fn idempotency_keys_differ_per_map_item_and_keep_their_top_level_value() {
    use expressway_engine::{idempotency_key, idempotency_key_at};
    let arn = "arn:aws:states:us-east-1:123456789012:express:m:e:u";
    assert_eq!(
        idempotency_key_at(arn, "T", "", 2),
        idempotency_key(arn, "T", 2)
    );
    let items: std::collections::BTreeSet<String> = (0..3)
        .map(|i| idempotency_key_at(arn, "T", &i.to_string(), 0))
        .collect();
    assert_eq!(items.len(), 3);
    assert!(!items.contains(&idempotency_key(arn, "T", 0)));
}
