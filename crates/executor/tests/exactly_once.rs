//! `--guarantee exactly-once` on librdkafka's mock cluster: executions run through the
//! transactional producer (init, begin, send_offsets_to_transaction, commit, batching by count
//! and time) and each execution's result, log and published record appears once.
//!
//! What the mock cluster cannot do (librdkafka 2.x `rdkafka_mock_handlers.c`): its
//! TxnOffsetCommit handler acknowledges the offsets without storing them (the group's committed
//! offsets stay unset), and it writes no transaction markers, so read_committed readers also
//! see aborted records. Committed offsets, restarts that re-run nothing, records finished above
//! a hole, SIGKILL and a zombie are therefore tested on Apache Kafka
//! (`crates/cli/tests/broker.rs`, `deploy/kafka-it.sh`).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use expressway_executor::publisher::RdKafkaPublisher;
use expressway_executor::{ExecutorConfig, Guarantee};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Sleeps `$.sleep` seconds, publishes one record to `eos.out`, ends with the publish ack.
const PUBLISH_AFTER_SLEEP: &str = r#"{"StartAt":"S","States":{
  "S":{"Type":"Task","Resource":"arn:aws:states:::expressway:test","Parameters":{"SleepSeconds.$":"$.sleep","Result.$":"$"},"Next":"P"},
  "P":{"Type":"Task","Resource":"arn:aws:states:::kafka:publish",
       "Parameters":{"Topic":"eos.out","Key.$":"$.id","Value.$":"$"},"End":true}}}"#;

fn eos_config(env: &Env, group: &str, id: &str) -> ExecutorConfig {
    let mut cfg = env.config();
    cfg.group = group.into();
    cfg.guarantee = Guarantee::ExactlyOnce;
    cfg.transactions.transactional_id = Some(id.into());
    cfg.transactions.interval = Duration::from_millis(50);
    cfg.transactions.max_executions = 7;
    cfg
}

fn start_pod(env: &Env, cfg: ExecutorConfig) -> expressway_executor::Executor {
    let clock: Arc<dyn expressway_engine::Clock> =
        Arc::new(expressway_engine::runtime::TokioClock::new());
    let publisher = RdKafkaPublisher::new(&cfg).expect("producer");
    let tasks = expressway_tasks::TaskConfig::default()
        .build_registry(clock.clone(), Some(Arc::new(publisher)))
        .expect("registry");
    expressway_executor::Executor::start(
        cfg,
        env.registry(&[("pub", PUBLISH_AFTER_SLEEP)]),
        expressway_executor::engine_runtime_with_tasks(clock, tasks),
        env.rt.handle().clone(),
    )
    .expect("executor starts")
}

/// Counts of each key among `recs`.
fn counts(recs: &[Rec]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in recs {
        *m.entry(r.key.clone().unwrap_or_default()).or_default() += 1;
    }
    m
}

fn env() -> Env {
    let env = Env::new(3);
    env.cluster.create_topic("eos.out", 2, 1).unwrap();
    env
}

#[test]
fn results_logs_and_published_records_appear_once() {
    let env = env();
    let exec = start_pod(&env, eos_config(&env, "g-eos", "eos-a"));
    let n = 40;
    for i in 0..n {
        // Different lengths: executions finish out of order within their partitions.
        let sleep = [0.0, 0.3, 0.05, 0.15][i % 4];
        env.start_event(
            &format!("k{i}"),
            &json!({"stateMachine": "pub", "name": format!("e{i}"), "input": {"id": format!("o{i}"), "sleep": sleep}}),
        );
    }
    let mut reader = env.committed_reader("expressway.results");
    let results = reader.at_least(n).to_vec();
    for r in &results {
        assert_eq!(r.json()["status"], "SUCCEEDED", "{}", r.json());
    }
    let logs = env.committed_reader("expressway.logs").at_least(n).to_vec();
    let published = env.committed_reader("eos.out").at_least(n).to_vec();
    // Nothing more arrives (no execution ran twice).
    reader.poll_for(Duration::from_secs(2));
    exec.shutdown_blocking();
    let results = counts(&reader.records);
    assert_eq!(results.len(), n, "distinct results");
    assert!(results.values().all(|c| *c == 1), "duplicate results");
    assert_eq!(counts(&logs).len(), n, "distinct logs");
    let published = counts(&published);
    assert_eq!(published.len(), n);
    assert!(published.values().all(|c| *c == 1), "{published:?}");
}

/// Nested executions through the transactional producer: a `.sync:2` child's records and a
/// fire-and-forget child's start event go into the parent's transaction; each child runs once,
/// the fire-and-forget one under the ARN the parent got.
#[test]
fn nested_children_write_through_the_parents_transaction() {
    let env = env();
    let double = r#"{"StartAt":"P","States":{"P":{"Type":"Pass","Parameters":{"doubled.$":"States.MathAdd($.n, $.n)"},"End":true}}}"#;
    let arn = "arn:aws:states:us-east-1:123456789012:stateMachine:double";
    let parent = json!({"StartAt": "Sync", "States": {
        "Sync": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
            "Parameters": {"StateMachineArn": arn, "Input": {"n": 2}},
            "ResultSelector": {"arn.$": "$.ExecutionArn", "out.$": "$.Output"}, "ResultPath": "$.sync",
            "Next": "Start"},
        "Start": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution",
            "Parameters": {"StateMachineArn": arn, "Input": {"n": 3}},
            "ResultSelector": {"arn.$": "$.ExecutionArn"}, "ResultPath": "$.start", "End": true}}})
    .to_string();
    let exec = expressway_executor::Executor::start(
        eos_config(&env, "g-eos-nested", "eos-nested"),
        env.registry(&[("parent", &parent), ("double", double)]),
        expressway_executor::default_engine_runtime(),
        env.rt.handle().clone(),
    )
    .expect("executor starts");
    env.start_event("k", &json!({"stateMachine": "parent", "name": "p"}));
    let mut reader = env.committed_reader("expressway.results");
    let results: Vec<serde_json::Value> = reader.at_least(3).iter().map(Rec::json).collect();
    let p = results.iter().find(|v| v["name"] == "p").unwrap();
    assert_eq!(p["status"], "SUCCEEDED", "{p}");
    assert_eq!(p["output"]["sync"]["out"], json!({"doubled": 4}));
    let by_arn = |a: &serde_json::Value| results.iter().find(|v| v["executionArn"] == *a).cloned();
    let sync_child = by_arn(&p["output"]["sync"]["arn"]).expect("the .sync:2 child's result");
    assert_eq!(sync_child["output"], json!({"doubled": 4}));
    let started = by_arn(&p["output"]["start"]["arn"]).expect("the started child's result");
    assert_eq!(started["output"], json!({"doubled": 6}));
    reader.poll_for(Duration::from_secs(2));
    exec.shutdown_blocking();
    assert_eq!(reader.records.len(), 3, "each execution once");
}
