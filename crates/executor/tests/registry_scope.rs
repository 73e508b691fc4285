//! One registry, one account, on the real pod (mock cluster): start events naming a state
//! machine ARN of another region or account are dead-lettered (`ForeignStateMachineArn`,
//! counted in `expressway_dead_letters_total`) instead of running the local machine of that
//! name; a file machine has no versions or aliases; a definitions-topic record of a file
//! machine's name does not replace the file's definition. Its own test binary, because it
//! installs the process-wide metrics recorder.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use std::collections::HashMap;

const LOCAL: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:echo";

#[test]
fn foreign_arns_are_dead_lettered_and_files_shadow_the_topic() {
    let env = Env::new(1);
    let prometheus = expressway_executor::telemetry::install_recorder().unwrap();
    let mut cfg = env.config();
    cfg.group = "g-scope".into();
    let registry = env.registry(&[("echo", ECHO)]);
    let exec = env.start(cfg, registry.clone());
    wait_until("registry loaded", || registry.is_loaded());

    // A topic record of the file machine's name (e.g. created before the file was added):
    // stored, shadowed, and the file's definition keeps running.
    let other =
        r#"{"StartAt":"P","States":{"P":{"Type":"Pass","Result":"from the topic","End":true}}}"#;
    let record = json!({ "definition": other }).to_string();
    env.produce(
        "expressway.definitions",
        Some("echo"),
        Some(record.as_bytes()),
        &[],
    );
    wait_until("the topic record is stored (shadowed)", || {
        registry.is_shadowed("echo")
    });

    let cases = [
        (
            "arn:aws:states:eu-west-1:123456789012:stateMachine:echo",
            "ForeignStateMachineArn",
            "region 'eu-west-1'",
        ),
        (
            "arn:aws:states:us-east-1:999999999999:stateMachine:echo",
            "ForeignStateMachineArn",
            "account '999999999999'",
        ),
        (
            "arn:aws:states:us-east-1:123456789012:stateMachine:echo:live",
            "UnknownVersionOrAlias",
            "no version or alias 'live'",
        ),
    ];
    for (i, (arn, _, _)) in cases.iter().enumerate() {
        env.start_event(
            &format!("bad{i}"),
            &json!({"stateMachine": arn, "name": format!("bad{i}"), "input": {}}),
        );
    }
    env.start_event(
        "ok",
        &json!({"stateMachine": LOCAL, "name": "local", "input": {"x": 1}}),
    );

    let mut dlq = env.reader("expressway.dlq");
    let dead = dlq.at_least(cases.len()).to_vec();
    let by_source: HashMap<String, &Rec> = dead
        .iter()
        .map(|r| (r.header("expressway-source").unwrap(), r))
        .collect();
    for (i, (arn, code, says)) in cases.iter().enumerate() {
        let r = by_source
            .get(&format!("expressway.start/0/{i}"))
            .unwrap_or_else(|| panic!("no dead letter for {arn}"));
        assert_eq!(
            r.header("expressway-error").as_deref(),
            Some(*code),
            "{arn}"
        );
        let cause = r.header("expressway-cause").unwrap();
        assert!(cause.contains(says), "{arn}: {cause}");
    }
    let foreign_cause = by_source["expressway.start/0/0"]
        .header("expressway-cause")
        .unwrap();
    assert_eq!(
        foreign_cause,
        "state machine ARN 'arn:aws:states:eu-west-1:123456789012:stateMachine:echo' names region 'eu-west-1', but this deployment runs the machines of partition 'aws', region 'us-east-1', account '123456789012'"
    );

    let mut results = env.reader("expressway.results");
    let ok = results.at_least(1)[0].json();
    assert_eq!(ok["name"], "local", "only the local ARN ran: {ok}");
    assert_eq!(ok["status"], "SUCCEEDED");
    assert_eq!(
        ok["output"],
        json!({"x": 1}),
        "the file's definition ran, not the shadowed topic record"
    );
    env.wait_committed("g-scope", &[cases.len() as i64 + 1]);
    assert_eq!(
        env.high_watermark("expressway.results", 0),
        1,
        "nothing ran for the dead-lettered events"
    );

    prometheus.run_upkeep();
    let text = prometheus.render();
    assert!(
        text.contains(r#"expressway_dead_letters_total{reason="ForeignStateMachineArn"} 2"#),
        "{text}"
    );
    assert!(text.contains("expressway_definitions_shadowed 1"), "{text}");
    exec.shutdown_blocking();
}
