//! Distributed Map children across the cluster, on librdkafka's mock cluster: each child (item
//! or batch) is a start event that any pod runs, its outcome comes back to the parent through
//! the callback topic, failures count against the tolerance, and a child whose Map state is
//! gone is reported to its parent instead of running the whole machine.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use expressway_wire::TaskTokenKey;
use serde_json::{json, Value};
use std::collections::HashSet;

const CALLBACKS: &str = "expressway.callbacks";

fn env(partitions: i32) -> Env {
    let env = Env::new(partitions);
    env.cluster.create_topic(CALLBACKS, partitions, 1).unwrap();
    env
}

fn config(env: &Env, group: &str) -> expressway_executor::ExecutorConfig {
    let mut c = env.config();
    c.group = group.into();
    c.callbacks.key = Some(TaskTokenKey::new(*b"map-children-test-key-0123456789ab").unwrap());
    c
}

/// A Distributed Map over `$.items` in batches of `batch`, each child summing its batch (and
/// failing on a batch holding a negative number), tolerating `tolerated` failed children.
fn machine(batch: u64, tolerated: u64) -> String {
    json!({"StartAt": "Items", "States": {"Items": {
        "Type": "Map",
        "ItemsPath": "$.items",
        "ItemBatcher": {"MaxItemsPerBatch": batch},
        "ToleratedFailureCount": tolerated,
        "MaxConcurrency": 3,
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
            "StartAt": "Check",
            "States": {
                "Check": {"Type": "Choice",
                    "Choices": [{"Variable": "$.Items[0]", "NumericLessThan": 0, "Next": "Negative"}],
                    "Default": "Sum"},
                "Negative": {"Type": "Fail", "Error": "Negative", "Cause": "a negative item"},
                "Sum": {"Type": "Pass",
                    "Parameters": {"sum.$": "States.MathAdd(States.ArrayLength($.Items), 0)", "first.$": "$.Items[0]"},
                    "End": true}}},
        "End": true}}})
    .to_string()
}

fn results_by_arn(records: &[Rec]) -> Vec<Value> {
    records.iter().map(Rec::json).collect()
}

#[test]
fn children_run_as_start_events_on_every_pod_and_report_back() {
    let env = env(4);
    let registry = env.registry(&[("fan", &machine(5, 0))]);
    let a = env.start(config(&env, "g-map-children"), registry.clone());
    let b = env.start(config(&env, "g-map-children"), registry);
    wait_until("both pods assigned", || {
        a.health().is_assigned() && b.health().is_assigned()
    });
    let items: Vec<i64> = (1..=40).collect();
    env.start_event(
        "p",
        &json!({"stateMachine": "fan", "name": "parent-1", "input": {"items": items}}),
    );
    let mut results = env.reader("expressway.results");
    let records = results
        .until("the parent's result", |r| {
            r.iter().any(|r| r.json()["name"] == "parent-1")
        })
        .to_vec();
    let all = results_by_arn(&records);
    let parent = all.iter().find(|r| r["name"] == "parent-1").unwrap();
    assert_eq!(parent["status"], "SUCCEEDED", "{parent}");
    let expected: Vec<Value> = (0..8)
        .map(|i| json!({"sum": 5, "first": i * 5 + 1}))
        .collect();
    assert_eq!(parent["output"], Value::Array(expected), "{parent}");

    // Eight children, each a result record of its own under the Map Run's child ARN.
    let children: Vec<&Value> = all.iter().filter(|r| r["name"] != "parent-1").collect();
    assert_eq!(children.len(), 8, "{children:?}");
    let arns: HashSet<&str> = children
        .iter()
        .map(|c| c["executionArn"].as_str().unwrap())
        .collect();
    assert_eq!(arns.len(), 8, "each child once");
    for arn in &arns {
        assert!(
            arn.starts_with("arn:aws:states:us-east-1:123456789012:express:fan/"),
            "{arn}"
        );
    }
    // Their result records name the Map Run and the parent.
    let parent_arn = parent["executionArn"].as_str().unwrap();
    for r in records.iter().filter(|r| r.json()["name"] != "parent-1") {
        assert_eq!(
            r.header("expressway-parent-execution-arn").as_deref(),
            Some(parent_arn)
        );
        let run = r.header("expressway-map-run-arn").unwrap();
        assert!(
            run.starts_with("arn:aws:states:us-east-1:123456789012:mapRun:fan/"),
            "{run}"
        );
    }
    // Children are keyed start events: they land on several partitions (and so pods).
    let mut start = env.reader("expressway.start");
    let starts = start.at_least(9).to_vec();
    let partitions: HashSet<i32> = starts
        .iter()
        .filter(|r| r.header(expressway_wire::MAP_CHILD_HEADER).is_some())
        .map(|r| r.partition)
        .collect();
    assert!(
        partitions.len() >= 2,
        "children on one partition only: {partitions:?}"
    );
    drop((a, b));
}

#[test]
fn failed_children_count_against_the_tolerance() {
    let env = env(2);
    let registry = env.registry(&[("tolerant", &machine(2, 1)), ("strict", &machine(2, 0))]);
    let _pod = env.start(config(&env, "g-map-tolerance"), registry);
    let items = json!([1, 2, -3, 4, 5, 6]);
    env.start_event(
        "t",
        &json!({"stateMachine": "tolerant", "name": "tolerant-1", "input": {"items": items}}),
    );
    env.start_event(
        "s",
        &json!({"stateMachine": "strict", "name": "strict-1", "input": {"items": items}}),
    );
    let mut results = env.reader("expressway.results");
    let records = results
        .until("both parents", |r| {
            let names: Vec<Value> = r.iter().map(|r| r.json()["name"].clone()).collect();
            names.contains(&json!("tolerant-1")) && names.contains(&json!("strict-1"))
        })
        .to_vec();
    let all = results_by_arn(&records);
    let tolerant = all.iter().find(|r| r["name"] == "tolerant-1").unwrap();
    assert_eq!(tolerant["status"], "SUCCEEDED", "{tolerant}");
    let out = tolerant["output"].as_array().unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[1]["Error"], "Negative",
        "a failed child's entry: {tolerant}"
    );
    let strict = all.iter().find(|r| r["name"] == "strict-1").unwrap();
    assert_eq!(strict["status"], "FAILED", "{strict}");
    assert_eq!(
        strict["error"], "States.ExceedToleratedFailureThreshold",
        "{strict}"
    );
}

#[test]
fn a_child_of_a_state_the_machine_lacks_fails_its_parent_instead_of_running() {
    let env = env(1);
    let registry = env.registry(&[("fan", &machine(5, 0))]);
    let _pod = env.start(config(&env, "g-map-orphan"), registry);
    // A child start event as a parent writes it, for a Map state `Gone` that `fan` lacks,
    // with a token nobody waits for: the pod reports it and runs nothing.
    let key = TaskTokenKey::new(*b"map-children-test-key-0123456789ab").unwrap();
    let token = key
        .mint(&expressway_wire::TokenFields {
            partition: 0,
            execution_arn: "arn:aws:states:us-east-1:123456789012:express:fan:p:u".into(),
            state_name: "Gone".into(),
            scope: "@0".into(),
            attempt: 0,
        })
        .unwrap();
    let header = expressway_wire::MapChild {
        task_token: token.clone(),
        execution_arn: "arn:aws:states:us-east-1:123456789012:express:fan/x:c:r".into(),
        map_run_arn: "arn:aws:states:us-east-1:123456789012:mapRun:fan/x:id".into(),
        parent_execution_arn: "arn:aws:states:us-east-1:123456789012:express:fan:p:u".into(),
        state_name: "Gone".into(),
    };
    env.produce(
        "expressway.start",
        Some("c"),
        Some(
            json!({"stateMachine": "fan", "name": "c", "input": {"items": [1]}})
                .to_string()
                .as_bytes(),
        ),
        &[(expressway_wire::MAP_CHILD_HEADER, &header.to_json())],
    );
    // A header whose token another key signed: refused too, and it reports to nobody.
    let mut forged = header.clone();
    forged.task_token = TaskTokenKey::new(*b"some-other-key-0123456789abcdefghij")
        .unwrap()
        .mint(&expressway_wire::TokenFields {
            partition: 0,
            execution_arn: header.parent_execution_arn.clone(),
            state_name: "Gone".into(),
            scope: "@0".into(),
            attempt: 0,
        })
        .unwrap();
    env.produce(
        "expressway.start",
        Some("f"),
        Some(
            json!({"stateMachine": "fan", "name": "f", "input": {"items": [1]}})
                .to_string()
                .as_bytes(),
        ),
        &[(expressway_wire::MAP_CHILD_HEADER, &forged.to_json())],
    );
    // A header that is not a map child description goes to the dead-letter topic.
    env.produce(
        "expressway.start",
        Some("d"),
        Some(
            json!({"stateMachine": "fan", "name": "d", "input": {}})
                .to_string()
                .as_bytes(),
        ),
        &[(expressway_wire::MAP_CHILD_HEADER, b"{\"nope\":1}")],
    );
    let mut callbacks = env.reader(CALLBACKS);
    let cb = callbacks.at_least(1)[0].json();
    assert_eq!(cb["taskToken"], token.as_str(), "{cb}");
    assert_eq!(cb["error"], "States.Runtime", "{cb}");
    assert!(cb["cause"].as_str().unwrap().contains("'Gone'"), "{cb}");
    let mut dlq = env.reader("expressway.dlq");
    let dead = dlq.at_least(2).to_vec();
    assert_eq!(dead.len(), 2);
    for d in &dead {
        assert_eq!(
            d.header("expressway-error").as_deref(),
            Some("InvalidMapChild"),
            "{:?}",
            d.header("expressway-cause")
        );
    }
    // The pod runs the two records concurrently: their dead letters come in either order.
    let verify_failures = dead
        .iter()
        .filter(|d| {
            d.header("expressway-cause")
                .unwrap()
                .contains("does not verify")
        })
        .count();
    assert_eq!(verify_failures, 1, "the forged token's dead letter");
    callbacks.poll_for(std::time::Duration::from_secs(1));
    assert_eq!(
        callbacks.records.len(),
        1,
        "the forged child reported somewhere"
    );
    // Nothing ran: no result records.
    let mut results = env.reader("expressway.results");
    results.poll_for(std::time::Duration::from_secs(2));
    assert!(results.records.is_empty(), "{:?}", results.records);
}

#[test]
fn a_parent_run_again_reuses_the_children_its_earlier_run_finished() {
    let env = env(4);
    let registry = env.registry(&[("fan", &machine(5, 0))]);
    let first = env.start(config(&env, "g-map-rerun-1"), registry.clone());
    wait_until("assigned", || first.health().is_assigned());
    let items: Vec<i64> = (1..=20).collect();
    env.start_event(
        "p",
        &json!({"stateMachine": "fan", "name": "again", "input": {"items": items}}),
    );
    let mut results = env.reader("expressway.results");
    results.until("the first run", |r| {
        r.iter().any(|r| r.json()["name"] == "again")
    });
    let first_output = results
        .records
        .iter()
        .map(Rec::json)
        .find(|r| r["name"] == "again")
        .unwrap();
    drop(first);
    // A second group reads the same start record (the same offset, so the same execution ARN):
    // the parent runs again, as after a crash before its offset was committed.
    let second = env.start(
        config(&env, "g-map-rerun-2"),
        env.registry(&[("fan", &machine(5, 0))]),
    );
    wait_until("assigned", || second.health().is_assigned());
    results.until("the second run", |r| {
        r.iter().filter(|r| r.json()["name"] == "again").count() == 2
    });
    let runs: Vec<Value> = results
        .records
        .iter()
        .map(Rec::json)
        .filter(|r| r["name"] == "again")
        .collect();
    assert_eq!(runs[1]["executionArn"], runs[0]["executionArn"]);
    assert_eq!(runs[1]["status"], "SUCCEEDED", "{}", runs[1]);
    assert_eq!(runs[1]["output"], first_output["output"]);
    // The re-run wrote no child start events: its children's outcomes were on the callback
    // topic, and it took them from there.
    let mut start = env.reader("expressway.start");
    start.poll_for(std::time::Duration::from_secs(2));
    let children = start
        .records
        .iter()
        .filter(|r| r.header(expressway_wire::MAP_CHILD_HEADER).is_some())
        .count();
    assert_eq!(children, 4, "the re-run started children again");
}

#[test]
fn a_child_whose_start_event_is_dead_lettered_fails_its_parent_instead_of_leaving_it_waiting() {
    let env = env(1);
    let registry = env.registry(&[("fan", &machine(5, 0))]);
    let _pod = env.start(config(&env, "g-map-dead-child"), registry);
    // A child start event as a parent writes it, naming a machine this pod does not have (its
    // definition was deleted since the parent started, say): dead-lettered, and its parent
    // hears that the child failed.
    let parent = "arn:aws:states:us-east-1:123456789012:express:gone:p:u";
    let token = TaskTokenKey::new(*b"map-children-test-key-0123456789ab")
        .unwrap()
        .mint(&expressway_wire::TokenFields {
            partition: 0,
            execution_arn: parent.into(),
            state_name: "Items".into(),
            scope: "@3".into(),
            attempt: 0,
        })
        .unwrap();
    let header = expressway_wire::MapChild {
        task_token: token.clone(),
        execution_arn: "arn:aws:states:us-east-1:123456789012:express:gone/x:c:r".into(),
        map_run_arn: "arn:aws:states:us-east-1:123456789012:mapRun:gone/x:id".into(),
        parent_execution_arn: parent.into(),
        state_name: "Items".into(),
    };
    env.produce(
        "expressway.start",
        Some("c"),
        Some(
            json!({"stateMachine": "gone", "name": "c", "input": {}})
                .to_string()
                .as_bytes(),
        ),
        &[(expressway_wire::MAP_CHILD_HEADER, &header.to_json())],
    );
    let mut dlq = env.reader("expressway.dlq");
    let dead = dlq.at_least(1)[0].clone();
    assert_eq!(
        dead.header("expressway-error").as_deref(),
        Some("UnknownStateMachine")
    );
    let mut callbacks = env.reader(CALLBACKS);
    let cb = callbacks.at_least(1)[0].json();
    assert_eq!(cb["taskToken"], token.as_str(), "{cb}");
    assert_eq!(cb["error"], "States.Runtime", "{cb}");
    let cause = cb["cause"].as_str().unwrap();
    assert!(
        cause.contains("dead-lettered (UnknownStateMachine)"),
        "{cause}"
    );
}
