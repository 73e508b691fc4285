//! Every class of bad input on the start topic (issue #13): each gets its stable dead-letter
//! code, keeps its original key, value (a tombstone stays a tombstone) and headers, is counted
//! in `expressway_dead_letters_total{reason}`, and the partition keeps moving (a good event
//! after them runs; every offset is committed). Its own test binary, because it installs the
//! process-wide metrics recorder. (A log record too large for `message.max.bytes` runs and
//! gets a stub log record: `mock_cluster.rs`, `a_log_record_too_large_for_kafka_becomes_a_stub`.)
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use std::collections::HashMap;

struct Case {
    class: &'static str,
    code: &'static str,
    value: Option<Vec<u8>>,
    headers: Vec<(&'static str, &'static [u8])>,
}

fn case(class: &'static str, code: &'static str, value: &[u8]) -> Case {
    Case {
        class,
        code,
        value: Some(value.to_vec()),
        headers: vec![],
    }
}

fn cases() -> Vec<Case> {
    let deep = format!(
        r#"{{"stateMachine":"echo","input":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let big = json!({"stateMachine": "echo", "input": "x".repeat(262_144)}).to_string();
    vec![
        case("non-JSON", "InvalidJson", b"{not json"),
        case("invalid UTF-8", "InvalidUtf8", b"\xff\xfe\x00"),
        case("empty value", "EmptyRecord", b""),
        Case {
            class: "null value (tombstone)",
            code: "EmptyRecord",
            value: None,
            headers: vec![],
        },
        case("JSON array", "InvalidStartEvent", br#"[{"stateMachine":"echo"}]"#),
        case("JSON number", "InvalidStartEvent", b"42"),
        case("JSON string", "InvalidStartEvent", br#""echo""#),
        case("missing stateMachine", "InvalidStartEvent", br#"{"input":{}}"#),
        case("non-string stateMachine", "InvalidStartEvent", br#"{"stateMachine":5}"#),
        case("unknown machine", "UnknownStateMachine", br#"{"stateMachine":"nope"}"#),
        case(
            "unknown version",
            "UnknownVersionOrAlias",
            br#"{"stateMachine":"arn:aws:states:us-east-1:123456789012:stateMachine:versioned:7"}"#,
        ),
        case(
            "unknown alias",
            "UnknownVersionOrAlias",
            br#"{"stateMachine":"arn:aws:states:us-east-1:123456789012:stateMachine:versioned:nope"}"#,
        ),
        case("input over 262,144 bytes", "InputTooLarge", big.as_bytes()),
        case("input nested 100,000 deep", "InvalidJson", deep.as_bytes()),
        case(
            "number 1e400",
            "NumberOutOfRange",
            br#"{"stateMachine":"echo","input":{"x":1e400}}"#,
        ),
        case(
            "integer beyond 64 bits",
            "NumberOutOfRange",
            br#"{"stateMachine":"echo","input":{"n":18446744073709551617123}}"#,
        ),
        case(
            "duplicate keys",
            "InvalidStartEvent",
            br#"{"stateMachine":"nope","stateMachine":"echo"}"#,
        ),
        Case {
            class: "protobuf content type with garbage",
            code: "InvalidProtobuf",
            value: Some(b"\xff\xff\xff\xff".to_vec()),
            headers: vec![("content-type", b"application/x-protobuf")],
        },
    ]
}

#[test]
fn every_bad_input_class_is_dead_lettered_counted_and_the_partition_moves_on() {
    let env = Env::new(1);
    let prometheus = expressway_executor::telemetry::install_recorder().unwrap();
    let mut cfg = env.config();
    cfg.group = "g-bad-input".into();
    // `versioned` comes from the definitions topic (machines of the directory have no versions).
    let registry = env.registry(&[("echo", ECHO)]);
    let version = json!({"definition": ECHO}).to_string();
    registry
        .apply_record(b"versioned", Some(version.as_bytes()))
        .unwrap();
    registry
        .apply_record(b"versioned:1", Some(version.as_bytes()))
        .unwrap();
    let exec = env.start(cfg, registry);
    let cases = cases();
    for (i, c) in cases.iter().enumerate() {
        let mut h = c.headers.clone();
        h.push(("x-origin", b"test"));
        env.produce(
            "expressway.start",
            Some(&format!("key{i}")),
            c.value.as_deref(),
            &h,
        );
    }
    env.start_event(
        "ok",
        &json!({"stateMachine": "arn:aws:states:us-east-1:123456789012:stateMachine:versioned:1", "name": "after-bad", "input": {"ok": true}}),
    );

    let mut dlq = env.reader("expressway.dlq");
    let dead = dlq.at_least(cases.len()).to_vec();
    let sources: Vec<_> = dead
        .iter()
        .map(|r| (r.header("expressway-source"), r.header("expressway-error")))
        .collect();
    assert_eq!(dead.len(), cases.len(), "{sources:?}");
    let by_source: HashMap<String, &Rec> = dead
        .iter()
        .map(|r| (r.header("expressway-source").unwrap(), r))
        .collect();
    let mut per_code: HashMap<&str, usize> = HashMap::new();
    for (i, c) in cases.iter().enumerate() {
        let r = by_source
            .get(&format!("expressway.start/0/{i}"))
            .unwrap_or_else(|| panic!("{}: no dead letter", c.class));
        assert_eq!(
            r.header("expressway-error").as_deref(),
            Some(c.code),
            "{}: cause {:?}",
            c.class,
            r.header("expressway-cause")
        );
        assert!(
            !r.header("expressway-cause").unwrap().is_empty(),
            "{}",
            c.class
        );
        assert_eq!(
            r.key.as_deref(),
            Some(format!("key{i}").as_str()),
            "{}",
            c.class
        );
        assert_eq!(r.value, c.value, "{}: original value kept", c.class);
        assert_eq!(
            r.header("x-origin").as_deref(),
            Some("test"),
            "{}: original headers kept",
            c.class
        );
        *per_code.entry(c.code).or_default() += 1;
    }
    let mut results = env.reader("expressway.results");
    let ok = results.at_least(1)[0].json();
    assert_eq!(ok["name"], "after-bad");
    assert_eq!(ok["status"], "SUCCEEDED");
    env.wait_committed("g-bad-input", &[cases.len() as i64 + 1]);

    prometheus.run_upkeep();
    let text = prometheus.render();
    for (code, n) in per_code {
        let line = format!("expressway_dead_letters_total{{reason=\"{code}\"}} {n}");
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
    exec.shutdown_blocking();
}
