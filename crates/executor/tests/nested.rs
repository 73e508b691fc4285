//! Nested executions (`states:startExecution`, `.sync`, `.sync:2`) on the mock cluster: the
//! child's records, the ARN the parent sees, Catch of a failed child, re-runs and the depth bound.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const ARN: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:";

const DOUBLE: &str = r#"{"StartAt":"P","States":{"P":{"Type":"Pass",
  "Parameters":{"doubled.$":"States.MathAdd($.n, $.n)"},"End":true}}}"#;
const BOOM: &str = r#"{"StartAt":"F","States":{"F":{"Type":"Fail","Error":"ChildBoom","Cause":"the child failed"}}}"#;

/// `.sync:2` of `double`, then `.sync:2` of `boom` caught by `States.TaskFailed`.
fn parent() -> String {
    json!({"StartAt": "Run", "States": {
        "Run": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
            "Parameters": {"StateMachineArn": format!("{ARN}double"), "Input": {"n.$": "$.n"}},
            "ResultSelector": {"out.$": "$.Output", "arn.$": "$.ExecutionArn", "status.$": "$.Status"},
            "Next": "Fail"},
        "Fail": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
            "Parameters": {"StateMachineArn": format!("{ARN}boom")},
            "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.caught", "Next": "Done"}],
            "Next": "Done"},
        "Done": {"Type": "Succeed"}}})
    .to_string()
}

fn result_of(records: &[Rec], name_or_arn: &str) -> Option<Value> {
    records
        .iter()
        .map(Rec::json)
        .find(|v| v["name"] == name_or_arn || v["executionArn"] == name_or_arn)
}

#[test]
fn sync2_child_result_and_a_caught_child_failure() {
    let env = Env::new(2);
    let mut cfg = env.config();
    cfg.group = "g-nested-sync".into();
    let registry = env.registry(&[("parent", &parent()), ("double", DOUBLE), ("boom", BOOM)]);
    let exec = env.start(cfg, registry.clone());
    env.start_event(
        "k",
        &json!({"stateMachine": "parent", "name": "p1", "input": {"n": 21}}),
    );
    let mut results = env.reader("expressway.results");
    let records = results.at_least(3).to_vec();
    assert_eq!(records.len(), 3, "the parent and its two children");
    let p = result_of(&records, "p1").unwrap();
    assert_eq!(p["status"], "SUCCEEDED", "{p}");
    let out = &p["output"];
    assert_eq!(out["out"], json!({"doubled": 42}), "{out}");
    assert_eq!(out["status"], "SUCCEEDED");
    let child_arn = out["arn"].as_str().unwrap();
    assert!(
        child_arn.starts_with("arn:aws:states:us-east-1:123456789012:express:double:"),
        "{child_arn}"
    );
    // The child's own result record, under the ARN the parent saw.
    let child = result_of(&records, child_arn).unwrap();
    assert_eq!(child["status"], "SUCCEEDED");
    assert_eq!(child["output"], json!({"doubled": 42}));
    assert_eq!(child["stateMachineArn"], format!("{ARN}double"));

    // The failed child: caught as States.TaskFailed, its description as the cause.
    assert_eq!(out["caught"]["Error"], "States.TaskFailed", "{out}");
    let cause: Value = serde_json::from_str(out["caught"]["Cause"].as_str().unwrap()).unwrap();
    assert_eq!(cause["Status"], "FAILED");
    assert_eq!(cause["Error"], "ChildBoom");
    assert_eq!(cause["Cause"], "the child failed");
    assert_eq!(cause["Input"], json!({}));
    let boom = result_of(&records, cause["ExecutionArn"].as_str().unwrap()).unwrap();
    assert_eq!(boom["status"], "FAILED");
    assert_eq!(boom["error"], "ChildBoom");

    // Each child also has its log record (key = its ARN), like any execution.
    let mut logs = env.reader("expressway.logs");
    let logs = logs.at_least(3).to_vec();
    let child_log = logs
        .iter()
        .find(|l| l.key.as_deref() == Some(child_arn))
        .expect("the child's log record");
    let events: Vec<String> = child_log.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events.first().map(String::as_str), Some("ExecutionStarted"));
    assert_eq!(
        events.last().map(String::as_str),
        Some("ExecutionSucceeded")
    );
    // The parent's log shows the task as the engine logs every task.
    let parent_log = logs
        .iter()
        .find(|l| l.key.as_deref() == p["executionArn"].as_str())
        .unwrap()
        .json();
    let types: Vec<&str> = parent_log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        types
            .windows(3)
            .any(|w| w == ["TaskScheduled", "TaskStarted", "TaskSucceeded"]),
        "{types:?}"
    );
    assert!(types.contains(&"TaskFailed"), "{types:?}");

    // A re-run of the same start event (a second group reads the same record, as a
    // redelivery would) gives the children the same ARNs.
    let mut again = env.config();
    again.group = "g-nested-sync-rerun".into();
    let rerun = env.start(again, registry);
    let records = results.at_least(6).to_vec();
    let parents: Vec<Value> = records
        .iter()
        .map(Rec::json)
        .filter(|v| v["name"] == "p1")
        .collect();
    assert_eq!(parents.len(), 2);
    assert_eq!(
        parents[0]["executionArn"], parents[1]["executionArn"],
        "a re-run"
    );
    assert_eq!(parents[1]["output"]["arn"], child_arn);
    let children: Vec<String> = records
        .iter()
        .map(Rec::json)
        .filter(|v| v["stateMachineArn"] == format!("{ARN}double"))
        .map(|v| v["executionArn"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(children, vec![child_arn.to_string(); 2]);
    rerun.shutdown_blocking();
    exec.shutdown_blocking();
}

#[test]
fn fire_and_forget_child_runs_under_the_returned_arn() {
    let env = Env::new(2);
    let mut cfg = env.config();
    cfg.group = "g-nested-start".into();
    let spawner = json!({"StartAt": "Start", "States": {
        "Start": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution",
            "Parameters": {"StateMachineArn": format!("{ARN}double"), "Input": "{\"n\": 5}"},
            "Next": "Unknown"},
        "Unknown": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution",
            "Parameters": {"StateMachineArn": format!("{ARN}nope")},
            "Catch": [{"ErrorEquals": ["StepFunctions.StateMachineDoesNotExistException"],
                "ResultPath": "$.missing", "Next": "Done"}],
            "ResultPath": null, "Next": "Done"},
        "Done": {"Type": "Succeed"}}})
    .to_string();
    let exec = env.start(
        cfg,
        env.registry(&[("spawner", &spawner), ("double", DOUBLE)]),
    );
    env.start_event("k", &json!({"stateMachine": "spawner", "name": "s1"}));
    let mut results = env.reader("expressway.results");
    let records = results.at_least(2).to_vec();
    let parent = result_of(&records, "s1").unwrap();
    assert_eq!(parent["status"], "SUCCEEDED", "{parent}");
    let out = &parent["output"];
    let arn = out["ExecutionArn"].as_str().unwrap();
    assert!(out["StartDate"].is_i64(), "epoch milliseconds: {out}");
    assert_eq!(out["SdkHttpMetadata"]["HttpStatusCode"], 200);
    let child = result_of(&records, arn).expect("the child's result under the returned ARN");
    assert_eq!(child["status"], "SUCCEEDED");
    assert_eq!(child["output"], json!({"doubled": 10}));
    // The unknown machine failed the task at once, with AWS's error.
    assert_eq!(
        out["missing"]["Error"],
        "StepFunctions.StateMachineDoesNotExistException"
    );
    assert!(out["missing"]["Cause"]
        .as_str()
        .unwrap()
        .starts_with(&format!("State Machine Does Not Exist: '{ARN}nope'")));
    // Two start events: the parent's and the one child's (none for the unknown machine), and
    // nothing was dead-lettered.
    let mut start = env.reader("expressway.start");
    start.poll_for(Duration::from_secs(2));
    assert_eq!(start.records.len(), 2);
    let mut dlq = env.reader("expressway.dlq");
    dlq.poll_for(Duration::from_secs(1));
    assert!(dlq.records.is_empty());
    exec.shutdown_blocking();
}

#[test]
fn nesting_deeper_than_the_bound_fails_with_a_clear_error() {
    let env = Env::new(1);
    let mut cfg = env.config();
    cfg.group = "g-nested-depth".into();
    let recurse = json!({"StartAt": "Again", "States": {
        "Again": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync",
            "Parameters": {"StateMachineArn": format!("{ARN}recurse")}, "End": true}}})
    .to_string();
    let exec = env.start(cfg, env.registry(&[("recurse", &recurse)]));
    env.start_event("k", &json!({"stateMachine": "recurse", "name": "top"}));
    let depth = expressway_executor::nested::MAX_NESTING_DEPTH as usize;
    let mut results = env.reader("expressway.results");
    let records = results.at_least(depth + 1).to_vec();
    assert_eq!(records.len(), depth + 1, "the top level and 8 children");
    let refused: Vec<Value> = records
        .iter()
        .map(Rec::json)
        .filter(|v| v["error"] == "Expressway.NestingDepthExceeded")
        .collect();
    assert_eq!(refused.len(), 1, "only the deepest child is refused");
    assert!(refused[0]["cause"]
        .as_str()
        .unwrap()
        .contains("at most 8 levels"));
    let top = result_of(&records, "top").unwrap();
    assert_eq!(top["status"], "FAILED");
    assert_eq!(top["error"], "States.TaskFailed");
    exec.shutdown_blocking();
}

#[test]
fn a_child_cut_short_by_the_task_timeout_publishes_its_timed_out_result() {
    let env = Env::new(1);
    let mut cfg = env.config();
    cfg.group = "g-nested-timeout".into();
    let slow = r#"{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":30,"End":true}}}"#;
    let parent = json!({"StartAt": "Run", "States": {
        "Run": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
            "TimeoutSeconds": 1,
            "Parameters": {"StateMachineArn": format!("{ARN}slow")},
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.caught", "Next": "Done"}],
            "End": true},
        "Done": {"Type": "Succeed"}}})
    .to_string();
    let exec = env.start(cfg, env.registry(&[("parent", &parent), ("slow", slow)]));
    env.start_event("k", &json!({"stateMachine": "parent", "name": "p"}));
    let mut results = env.reader("expressway.results");
    let records = results.at_least(2).to_vec();
    let p = result_of(&records, "p").unwrap();
    assert_eq!(p["status"], "SUCCEEDED", "{p}");
    let child = records
        .iter()
        .map(Rec::json)
        .find(|v| v["stateMachineArn"] == format!("{ARN}slow"))
        .unwrap();
    assert_eq!(child["status"], "TIMED_OUT", "{child}");
    exec.shutdown_blocking();
}
