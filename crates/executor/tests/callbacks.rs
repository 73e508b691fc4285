//! The callback transport on librdkafka's mock cluster: callbacks produced to the callback
//! topic reach the execution that waits for their token (listen directly on the pod's
//! transport, as the engine's `.waitForTaskToken` Task does), early callbacks wait in the
//! buffer, misrouted ones are forwarded, invalid ones are dead-lettered, and the callback
//! partition follows its start partition across a rebalance and a restart.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use expressway_engine::{CallbackKey, CallbackListener, CallbackSignal, Callbacks};
use expressway_executor::callbacks::CallbackTransport;
use expressway_executor::{Executor, ExecutorConfig};
use expressway_wire::{CallbackOutcome, CallbackRecord, TaskTokenKey};
use futures::StreamExt as _;
use rdkafka::producer::{BaseRecord, Producer};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const START: &str = "expressway.start";
const CALLBACKS: &str = "expressway.callbacks";

fn key() -> TaskTokenKey {
    TaskTokenKey::new(*b"callback-test-key-0123456789abcdef").unwrap()
}

fn env(partitions: i32) -> Env {
    let env = Env::new(partitions);
    env.cluster.create_topic(CALLBACKS, partitions, 1).unwrap();
    env
}

fn config(env: &Env, group: &str) -> ExecutorConfig {
    let mut c = env.config();
    c.group = group.into();
    c.callbacks.key = Some(key());
    c
}

fn start(env: &Env, group: &str) -> (Executor, Arc<CallbackTransport>) {
    let exec = env.start(config(env, group), env.registry(&[("echo", ECHO)]));
    let transport = exec.callbacks().expect("a pod with a key has a transport");
    wait_until("assigned", || exec.health().is_assigned());
    (exec, transport)
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn task(attempt: u32) -> CallbackKey {
    CallbackKey {
        execution_arn: "arn:aws:states:us-east-1:123456789012:express:order:expressway.start-1-7:9d0c8a8e-1d0b-5c1e-8a52-6d1f5e0c2a11".into(),
        state_name: "Charge".into(),
        scope: "0".into(),
        attempt,
    }
}

/// The token a pod mints for `task(attempt)` on start partition `partition`.
fn token(partition: i32, attempt: u32) -> String {
    let k = task(attempt);
    key()
        .mint(&expressway_wire::TokenFields {
            partition,
            execution_arn: k.execution_arn,
            state_name: k.state_name,
            scope: k.scope,
            attempt,
        })
        .unwrap()
}

fn produce_callback(env: &Env, partition: i32, value: &[u8]) {
    let p = env.producer();
    let rec = BaseRecord::<str, [u8]>::to(CALLBACKS)
        .partition(partition)
        .payload(value);
    p.send(rec).map_err(|(e, _)| e).unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
}

fn success(token: &str, output: serde_json::Value) -> Vec<u8> {
    CallbackRecord {
        task_token: token.into(),
        outcome: CallbackOutcome::Success(output),
    }
    .to_json()
}

/// The next signal within the deadline.
fn next(env: &Env, listener: &mut CallbackListener) -> CallbackSignal {
    env.rt
        .block_on(async { tokio::time::timeout(DEADLINE, listener.signals.next()).await })
        .expect("a signal within the deadline")
        .expect("the stream stays open")
}

/// Whether a signal arrives within `wait`.
fn quiet(env: &Env, listener: &mut CallbackListener, wait: Duration) -> bool {
    env.rt
        .block_on(async { tokio::time::timeout(wait, listener.signals.next()).await })
        .is_err()
}

#[test]
fn a_waiting_task_gets_success_failure_and_heartbeats_from_the_topic() {
    let env = env(2);
    let (exec, transport) = start(&env, "cb-basic");
    let binding = transport.bind(START, 1);
    let mut l = binding.listen(task(0)).unwrap();
    assert_eq!(
        l.token,
        token(1, 0),
        "tokens are minted for the start partition"
    );
    assert!(binding.waiting());
    produce_callback(&env, 1, &success(&l.token, json!({"paid": true})));
    assert_eq!(
        next(&env, &mut l),
        CallbackSignal::Success(json!({"paid": true}))
    );

    let mut retry = binding.listen(task(1)).unwrap();
    let hb = CallbackRecord {
        task_token: retry.token.clone(),
        outcome: CallbackOutcome::Heartbeat,
    };
    let failure = CallbackRecord {
        task_token: retry.token.clone(),
        outcome: CallbackOutcome::Failure {
            error: Some("Declined".into()),
            cause: Some("insufficient funds".into()),
        },
    };
    produce_callback(&env, 1, &hb.to_json());
    produce_callback(&env, 1, &failure.to_json());
    assert_eq!(next(&env, &mut retry), CallbackSignal::Heartbeat);
    assert_eq!(
        next(&env, &mut retry),
        CallbackSignal::Failure(expressway_engine::TaskError::new(
            "Declined",
            "insufficient funds"
        ))
    );
    drop((l, retry));
    assert!(!binding.waiting());
    env.rt.block_on(exec.shutdown());
}

#[test]
fn an_early_callback_waits_in_the_buffer_until_the_task_listens() {
    let env = env(2);
    let (exec, transport) = start(&env, "cb-early");
    produce_callback(&env, 0, &success(&token(0, 0), json!("early")));
    wait_until("the callback is buffered", || {
        transport.hub().buffered() == 1
    });
    let mut l = transport.bind(START, 0).listen(task(0)).unwrap();
    assert_eq!(next(&env, &mut l), CallbackSignal::Success(json!("early")));
    assert_eq!(transport.hub().buffered(), 0);
    env.rt.block_on(exec.shutdown());
}

#[test]
fn a_callback_on_another_partition_is_forwarded_to_its_tokens() {
    let env = env(2);
    let (exec, transport) = start(&env, "cb-forward");
    let mut l = transport.bind(START, 1).listen(task(0)).unwrap();
    // A producer that did not pick the partition.
    produce_callback(&env, 0, &success(&l.token, json!(1)));
    assert_eq!(next(&env, &mut l), CallbackSignal::Success(json!(1)));
    let mut topic = env.reader(CALLBACKS);
    let recs = topic.at_least(2);
    let copy = recs
        .iter()
        .find(|r| r.partition == 1)
        .expect("a copy on partition 1");
    assert_eq!(
        copy.header(expressway_executor::callbacks::reader::FORWARDED_HEADER)
            .as_deref(),
        Some("0")
    );
    env.rt.block_on(exec.shutdown());
}

#[test]
fn invalid_callbacks_are_dead_lettered_and_the_reader_goes_on() {
    let env = env(2);
    let (exec, transport) = start(&env, "cb-invalid");
    let mut l = transport.bind(START, 0).listen(task(0)).unwrap();
    let other_key = TaskTokenKey::new(*b"another-key-0123456789abcdef012345").unwrap();
    let k = task(0);
    let forged = other_key
        .mint(&expressway_wire::TokenFields {
            partition: 0,
            execution_arn: k.execution_arn,
            state_name: k.state_name,
            scope: k.scope,
            attempt: 0,
        })
        .unwrap();
    produce_callback(&env, 0, b"{not json");
    produce_callback(&env, 0, &success(&forged, json!("forged")));
    produce_callback(&env, 0, br#"{"taskToken":"x"}"#);
    produce_callback(&env, 0, &success(&l.token, json!("real")));
    assert_eq!(next(&env, &mut l), CallbackSignal::Success(json!("real")));
    let mut dlq = env.reader("expressway.dlq");
    let recs = dlq.at_least(3);
    let codes: Vec<String> = recs
        .iter()
        .map(|r| r.header("expressway-error").unwrap())
        .collect();
    assert_eq!(
        codes,
        ["InvalidJson", "InvalidTaskToken", "InvalidCallback"]
    );
    assert!(recs[0]
        .header("expressway-source")
        .unwrap()
        .starts_with("expressway.callbacks/0/"));
    assert_eq!(
        recs[1].value.as_deref(),
        Some(&success(&forged, json!("forged"))[..])
    );
    env.rt.block_on(exec.shutdown());
}

#[test]
fn a_callback_sent_while_no_pod_ran_is_read_by_the_next_one() {
    let env = env(2);
    // The callback of an execution whose pod died: sent before any pod reads the topic.
    produce_callback(&env, 1, &success(&token(1, 0), json!("while down")));
    let (exec, transport) = start(&env, "cb-restart");
    let mut l = transport.bind(START, 1).listen(task(0)).unwrap();
    assert_eq!(
        next(&env, &mut l),
        CallbackSignal::Success(json!("while down"))
    );
    env.rt.block_on(exec.shutdown());
}

#[test]
fn the_callback_partition_follows_its_start_partition_across_a_rebalance() {
    let env = env(2);
    let (a, ta) = start(&env, "cb-rebalance");
    wait_until("a owns both", || ta.owned().len() == 2);
    let (b, tb) = start(&env, "cb-rebalance");
    wait_until("one partition each", || {
        ta.owned().len() == 1 && tb.owned().len() == 1
    });
    let moved = tb.owned()[0].1;
    let kept = ta.owned()[0].1;
    assert_ne!(moved, kept);
    // Sent before anyone listens: the new owner's reader finds it.
    produce_callback(&env, moved, &success(&token(moved, 0), json!("to b")));
    let mut on_b = tb.bind(START, moved).listen(task(0)).unwrap();
    assert_eq!(
        next(&env, &mut on_b),
        CallbackSignal::Success(json!("to b"))
    );
    let mut on_a = ta.bind(START, moved).listen(task(0)).unwrap();
    assert!(
        quiet(&env, &mut on_a, Duration::from_secs(2)),
        "the pod that gave the partition up no longer reads its callbacks"
    );
    drop(on_a);
    // b leaves: a owns both again and reads the moved partition's callbacks from before.
    produce_callback(&env, moved, &success(&token(moved, 1), json!("after b")));
    env.rt.block_on(b.shutdown());
    wait_until("a owns both again", || ta.owned().len() == 2);
    let mut again = ta.bind(START, moved).listen(task(1)).unwrap();
    assert_eq!(
        next(&env, &mut again),
        CallbackSignal::Success(json!("after b"))
    );
    env.rt.block_on(a.shutdown());
}

#[test]
fn a_pod_without_a_key_fails_waits_with_a_clear_error() {
    let env = env(1);
    let mut cfg = env.config();
    cfg.group = "cb-nokey".into();
    let exec = env.start(cfg, env.registry(&[("echo", ECHO)]));
    assert!(exec.callbacks().is_none());
    let e = CallbackTransport::unavailable()
        .listen(task(0))
        .unwrap_err();
    assert_eq!(e.error, "States.Runtime");
    assert!(e.cause.unwrap().contains("EXPRESSWAY_TASK_TOKEN_KEY"));
    env.rt.block_on(exec.shutdown());
}

// ---- end to end: `.waitForTaskToken` executions on the pod ---------------------------------

/// Publishes a payment request carrying the token to `payments`, then waits for its callback.
const PAY: &str = r#"{"StartAt":"Charge","States":{"Charge":{"Type":"Task",
  "Resource":"arn:aws:states:::kafka:publish.waitForTaskToken",
  "Parameters":{"Topic":"payments","Value":{"taskToken.$":"$$.Task.Token","order.$":"$.order"}},
  "HeartbeatSeconds":3,"End":true}}}"#;

/// [`PAY`] without a heartbeat timeout (waits up to the execution time limit).
const PAY_PATIENTLY: &str = r#"{"StartAt":"Charge","States":{"Charge":{"Type":"Task",
  "Resource":"arn:aws:states:::kafka:publish.waitForTaskToken",
  "Parameters":{"Topic":"payments","Value":{"taskToken.$":"$$.Task.Token","order.$":"$.order"}},
  "End":true}}}"#;

fn e2e_env() -> Env {
    let env = env(2);
    env.cluster.create_topic("payments", 1, 1).unwrap();
    env
}

/// A pod running `pay` with a real `kafka:publish`.
fn start_payer(env: &Env, group: &str) -> Executor {
    start_payer_draining(env, group, Duration::from_secs(20))
}

fn start_payer_draining(env: &Env, group: &str, drain: Duration) -> Executor {
    let mut cfg = config(env, group);
    cfg.drain_timeout = drain;
    let clock: Arc<dyn expressway_engine::Clock> =
        Arc::new(expressway_engine::runtime::TokioClock::new());
    let publisher = expressway_executor::publisher::RdKafkaPublisher::new(&cfg).unwrap();
    let tasks = expressway_tasks::TaskConfig::default()
        .build_registry(clock.clone(), Some(Arc::new(publisher)))
        .unwrap();
    let exec = Executor::start(
        cfg,
        env.registry(&[("pay", PAY), ("pay_patiently", PAY_PATIENTLY)]),
        expressway_executor::engine_runtime_with_tasks(clock, tasks),
        env.rt.handle().clone(),
    )
    .unwrap();
    wait_until("assigned", || exec.health().is_assigned());
    exec
}

/// The payment service: the tokens of the requests it has seen, oldest first.
fn requests(reader: &mut Reader, n: usize) -> Vec<String> {
    reader
        .at_least(n)
        .iter()
        .map(|r| r.json()["taskToken"].as_str().unwrap().to_string())
        .collect()
}

/// Produces a callback where a producer that reads the token would (its partition).
fn callback(env: &Env, outcome: CallbackOutcome, token: &str) {
    let partition = expressway_wire::task_token::peek_unverified(token)
        .unwrap()
        .partition;
    let record = CallbackRecord {
        task_token: token.into(),
        outcome,
    };
    produce_callback(env, partition, &record.to_json());
}

fn start_pay(env: &Env, name: &str) {
    env.start_event(
        name,
        &json!({"stateMachine": "pay", "name": name, "input": {"order": name}}),
    );
}

#[test]
fn a_wait_for_task_token_execution_succeeds_fails_and_times_out_by_its_callbacks() {
    let env = e2e_env();
    let exec = start_payer(&env, "cb-e2e");
    let mut payments = env.reader("payments");
    let mut results = env.reader("expressway.results");
    start_pay(&env, "ok");
    let tokens = requests(&mut payments, 1);
    callback(&env, CallbackOutcome::Heartbeat, &tokens[0]);
    callback(
        &env,
        CallbackOutcome::Success(json!({"charged": 42})),
        &tokens[0],
    );
    let r = results.at_least(1)[0].json();
    assert_eq!(
        (r["name"].as_str(), r["status"].as_str()),
        (Some("ok"), Some("SUCCEEDED")),
        "{r}"
    );
    assert_eq!(r["output"], json!({"charged": 42}));

    start_pay(&env, "declined");
    let tokens = requests(&mut payments, 2);
    callback(
        &env,
        CallbackOutcome::Failure {
            error: Some("Card.Declined".into()),
            cause: Some("insufficient funds".into()),
        },
        &tokens[1],
    );
    let r = results.at_least(2)[1].json();
    assert_eq!(r["status"], "FAILED", "{r}");
    assert_eq!(r["error"], "Card.Declined");
    assert_eq!(r["cause"], "insufficient funds");

    // No heartbeat within HeartbeatSeconds.
    start_pay(&env, "silent");
    requests(&mut payments, 3);
    let r = results.at_least(3)[2].json();
    assert_eq!(r["status"], "FAILED", "{r}");
    assert_eq!(r["error"], "States.HeartbeatTimeout");
    env.rt.block_on(exec.shutdown());
}

#[test]
fn a_callback_that_arrives_before_the_execution_waits_completes_it() {
    let env = e2e_env();
    let exec = start_payer(&env, "cb-e2e-early");
    // The token is deterministic: the callback can be sent before the start event exists.
    let partition = 1;
    let offset = env.high_watermark(START, partition);
    let arn = expressway_wire::execution_identity(
        "us-east-1",
        "123456789012",
        "pay",
        Some("early"),
        START,
        partition,
        offset,
    )
    .arn;
    let token = key()
        .mint(&expressway_wire::TokenFields {
            partition,
            execution_arn: arn,
            state_name: "Charge".into(),
            scope: String::new(),
            attempt: 0,
        })
        .unwrap();
    callback(&env, CallbackOutcome::Success(json!("paid ahead")), &token);
    let transport = exec.callbacks().unwrap();
    wait_until("the callback is buffered", || {
        transport.hub().buffered() == 1
    });
    let p = env.producer();
    let v = json!({"stateMachine": "pay", "name": "early", "input": {"order": "x"}}).to_string();
    p.send(
        BaseRecord::<str, str>::to(START)
            .partition(partition)
            .payload(&v),
    )
    .map_err(|(e, _)| e)
    .unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
    let mut payments = env.reader("payments");
    assert_eq!(
        requests(&mut payments, 1),
        [token],
        "the execution minted the same token"
    );
    let r = env.reader("expressway.results").at_least(1)[0].json();
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert_eq!(r["output"], json!("paid ahead"));
    env.rt.block_on(exec.shutdown());
}

#[test]
fn a_pod_stopped_while_its_execution_waits_leaves_it_to_the_next_pod_which_gets_the_callback() {
    let env = e2e_env();
    let first = start_payer_draining(&env, "cb-e2e-restart", Duration::from_secs(600));
    let mut payments = env.reader("payments");
    env.start_event(
        "survivor",
        &json!({"stateMachine": "pay_patiently", "name": "survivor", "input": {"order": 1}}),
    );
    let tokens = requests(&mut payments, 1);
    wait_until("the execution waits", || {
        first.callbacks().unwrap().hub().waiting() == 1
    });
    // The stop does not wait for the parked execution (the drain timeout is 10 minutes here)
    // and commits nothing for it.
    let t0 = Instant::now();
    env.rt.block_on(first.shutdown());
    assert!(
        t0.elapsed() < Duration::from_secs(300),
        "the drain did not wait for the parked execution"
    );
    // The service answers while no pod runs.
    callback(
        &env,
        CallbackOutcome::Success(json!("while down")),
        &tokens[0],
    );
    let second = start_payer(&env, "cb-e2e-restart");
    // The re-run sends the same request again (same token) and gets the earlier callback.
    assert_eq!(requests(&mut payments, 2)[1], tokens[0]);
    let mut results = env.reader("expressway.results");
    let r = results.at_least(1)[0].json();
    assert_eq!(
        (r["name"].as_str(), r["status"].as_str()),
        (Some("survivor"), Some("SUCCEEDED")),
        "{r}"
    );
    assert_eq!(r["output"], json!("while down"));
    results.poll_for(Duration::from_secs(1));
    assert_eq!(
        results.records.len(),
        1,
        "the stopped pod published no result"
    );
    env.rt.block_on(second.shutdown());
}

#[test]
fn a_rebalance_while_executions_wait_moves_them_to_the_new_owner() {
    let env = e2e_env();
    let a = start_payer_draining(&env, "cb-e2e-rebalance", Duration::from_secs(600));
    let p = env.producer();
    for (partition, name) in [(0, "p0"), (1, "p1")] {
        let v = json!({"stateMachine": "pay_patiently", "name": name, "input": {"order": name}})
            .to_string();
        p.send(
            BaseRecord::<str, str>::to(START)
                .partition(partition)
                .payload(&v),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
    let mut payments = env.reader("payments");
    let tokens = requests(&mut payments, 2);
    let ta = a.callbacks().unwrap();
    wait_until("both wait", || ta.hub().waiting() == 2);
    let b = start_payer(&env, "cb-e2e-rebalance");
    let tb = b.callbacks().unwrap();
    wait_until("one partition each", || {
        ta.owned().len() == 1 && tb.owned().len() == 1
    });
    // The moved execution stopped on the old owner and runs again on the new one (same token).
    let again = requests(&mut payments, 3);
    assert!(
        tokens.contains(&again[2]),
        "the re-run sends the same token"
    );
    wait_until("each pod has one waiting", || {
        ta.hub().waiting() == 1 && tb.hub().waiting() == 1
    });
    for t in &tokens {
        callback(&env, CallbackOutcome::Success(json!("paid")), t);
    }
    let mut results = env.reader("expressway.results");
    results.at_least(2);
    results.poll_for(Duration::from_secs(1));
    let mut names: Vec<String> = results
        .records
        .iter()
        .map(|r| {
            let v = r.json();
            assert_eq!(v["status"], "SUCCEEDED", "{v}");
            v["name"].as_str().unwrap().to_string()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["p0", "p1"],
        "one result each: the abandoned run published nothing"
    );
    env.rt.block_on(b.shutdown());
    env.rt.block_on(a.shutdown());
}
