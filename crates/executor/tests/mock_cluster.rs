//! End-to-end tests of the executor pod on librdkafka's in-process mock cluster.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

#[test]
fn n_start_events_produce_n_results_and_logs_and_commit_n() {
    let env = Env::new(3);
    let mut cfg = env.config();
    cfg.group = "g-basic".into();
    let exec = env.start(cfg, env.registry(&[("choose", CHOOSE)]));
    let n = 30;
    for i in 0..n {
        env.start_event(
            &format!("k{i}"),
            &json!({"stateMachine": "choose", "name": format!("e{i}"), "input": {"i": i, "fail": i % 5 == 0}}),
        );
    }
    let mut results = env.reader("expressway.results");
    let results = results.at_least(n).to_vec();
    assert_eq!(results.len(), n);
    let mut arns = HashSet::new();
    for r in &results {
        let v = r.json();
        let name = v["name"].as_str().unwrap();
        assert_eq!(r.key.as_deref(), Some(name), "result key = execution name");
        let i: usize = name[1..].parse().unwrap();
        if i.is_multiple_of(5) {
            assert_eq!(v["status"], "FAILED", "{v}");
            assert_eq!(v["error"], "Boom");
            assert!(v.get("output").is_none());
        } else {
            assert_eq!(v["status"], "SUCCEEDED", "{v}");
            assert_eq!(v["output"], json!({"i": i, "fail": false}));
        }
        let arn = v["executionArn"].as_str().unwrap();
        assert!(arn.starts_with(&format!(
            "arn:aws:states:us-east-1:123456789012:express:choose:{name}:"
        )));
        assert_eq!(
            v["stateMachineArn"],
            "arn:aws:states:us-east-1:123456789012:stateMachine:choose"
        );
        arns.insert(arn.to_string());
    }
    assert_eq!(arns.len(), n);

    let mut logs = env.reader("expressway.logs");
    let logs = logs.at_least(n).to_vec();
    assert_eq!(logs.len(), n);
    for l in &logs {
        let v = l.json();
        let arn = v["executionArn"].as_str().unwrap();
        assert_eq!(l.key.as_deref(), Some(arn), "log key = execution ARN");
        assert!(arns.contains(arn));
        let events = v["events"].as_array().unwrap();
        assert_eq!(events[0]["type"], "ExecutionStarted");
        let last = events.last().unwrap()["type"].as_str().unwrap().to_string();
        assert!(
            last == "ExecutionSucceeded" || last == "ExecutionFailed",
            "{last}"
        );
    }

    // Every start offset is committed: the sum of committed offsets is N.
    let mut start = env.reader("expressway.start");
    let per_partition = start.at_least(n).iter().fold(vec![0i64; 3], |mut acc, r| {
        acc[r.partition as usize] += 1;
        acc
    });
    env.wait_committed("g-basic", &per_partition);
    exec.shutdown_blocking();
}

#[test]
fn a_slow_head_holds_the_committed_offset() {
    let env = Env::new(1);
    let mut cfg = env.config();
    cfg.group = "g-order".into();
    let exec = env.start(cfg, env.registry(&[("sleepy", SLEEPY), ("echo", ECHO)]));
    env.start_event(
        "k",
        &json!({"stateMachine": "sleepy", "name": "slow", "input": {"sleep": 3}}),
    );
    // Other keys than the slow head's, so `--ordering key` lets them run meanwhile.
    for i in 1..6 {
        env.start_event(
            &format!("k{i}"),
            &json!({"stateMachine": "echo", "name": format!("fast{i}"), "input": {"i": i}}),
        );
    }
    let mut results = env.reader("expressway.results");
    results.until("the five fast executions", |r| {
        r.iter()
            .filter(|r| r.key.as_deref().is_some_and(|k| k.starts_with("fast")))
            .count()
            == 5
    });
    // While "slow" (offset 0) runs, the committed offset must not pass 0, even though 1..=5
    // finished (and auto-commit runs every 200 ms). Rigorous ordering: read the committed
    // offset, then the results topic's high watermark, then every result below it; if "slow" is
    // not among them, its result was not acknowledged when the offset was read.
    let mut checks_while_running = 0;
    loop {
        let committed = env.committed("g-order", 1)[0];
        let high = env.high_watermark("expressway.results", 0);
        results.until("results up to the high watermark", |r| {
            r.len() as i64 >= high
        });
        let slow_done = results
            .records
            .iter()
            .any(|r| r.key.as_deref() == Some("slow"));
        if slow_done {
            break;
        }
        assert!(
            committed <= 0,
            "committed {committed} while offset 0 is still running"
        );
        checks_while_running += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        checks_while_running > 0,
        "the slow execution finished before any check"
    );
    let slow = results
        .records
        .iter()
        .find(|r| r.key.as_deref() == Some("slow"))
        .unwrap()
        .json();
    assert_eq!(slow["status"], "SUCCEEDED");
    assert_eq!(slow["output"], json!({"sleep": 3}));
    env.wait_committed("g-order", &[6]);
    exec.shutdown_blocking();
}

#[test]
fn an_unknown_machine_with_a_timestamp_a_year_ahead_is_dead_lettered_within_the_grace() {
    // The wait for the definitions follower is bounded by the pod's clock (3 s from when it
    // sees the record), not by the producer's timestamp: before, this record held its
    // partition for a year. Nothing else is running, so the shutdown drain would wait its
    // whole budget (600 s, beyond DEADLINE) for a record that waits for its timestamp.
    let env = Env::new(1);
    let mut cfg = env.config();
    cfg.group = "g-future".into();
    cfg.drain_timeout = Duration::from_secs(600);
    let exec = env.start(cfg, env.registry(&[("echo", ECHO)]));
    let year_ms = 365 * 24 * 3600 * 1000_i64;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    env.produce_at(
        "expressway.start",
        Some("k"),
        Some(br#"{"stateMachine":"nope"}"#),
        &[],
        Some(now_ms + year_ms),
    );
    env.start_event(
        "k",
        &json!({"stateMachine": "echo", "name": "after-future", "input": {}}),
    );
    let mut dlq = env.reader("expressway.dlq");
    let dead = dlq.at_least(1)[0].clone();
    assert_eq!(
        dead.header("expressway-error").as_deref(),
        Some("UnknownStateMachine")
    );
    env.reader("expressway.results").at_least(1);
    env.wait_committed("g-future", &[2]);

    // A second one in flight when the pod stops: the drain ends with its dead letter (within
    // the 3 s grace), not after the drain budget; its offset is committed, nothing aborted.
    env.produce_at(
        "expressway.start",
        Some("k"),
        Some(br#"{"stateMachine":"nope-either"}"#),
        &[],
        Some(now_ms + year_ms),
    );
    // Another key runs concurrently: once its result is there, the pod holds the record above.
    env.start_event(
        "other",
        &json!({"stateMachine": "echo", "name": "marker", "input": {}}),
    );
    let mut results = env.reader("expressway.results");
    results.until("the marker", |r| {
        r.iter().any(|r| r.key.as_deref() == Some("marker"))
    });
    let stopper = std::thread::spawn(move || exec.shutdown_blocking());
    wait_until("the shutdown drain to end", || stopper.is_finished());
    let dead = dlq.until("the second dead letter", |r| r.len() >= 2);
    assert_eq!(
        dead[1].header("expressway-source").as_deref(),
        Some("expressway.start/0/2")
    );
    env.wait_committed("g-future", &[4]);
}

#[test]
fn executors_hand_partitions_over_on_stop_and_join_without_loss() {
    let env = Env::new(4);
    let group = "g-handoff";
    let registry = env.registry(&[("echo", ECHO)]);
    let mut cfg = env.config();
    cfg.group = group.into();
    let a = env.start(cfg.clone(), registry.clone());
    wait_until("A assigned", || a.health().is_assigned());
    let b = env.start(cfg.clone(), registry.clone());
    wait_until("B assigned", || b.health().is_assigned());

    let first = 40;
    for i in 0..first {
        env.start_event(
            &format!("k{i}"),
            &json!({"stateMachine": "echo", "name": format!("e{i}"), "input": {"i": i}}),
        );
    }
    let mut results = env.reader("expressway.results");
    results.at_least(10);
    let mut third = None;
    a.shutdown_blocking();
    let total = 120;
    let joined_at = 80;
    for i in first..total {
        if i == joined_at {
            // A third executor joins mid-stream: another rebalance, still nothing lost.
            let c = env.start(cfg.clone(), registry.clone());
            third = Some(c);
        }
        env.start_event(
            &format!("k{i}"),
            &json!({"stateMachine": "echo", "name": format!("e{i}"), "input": {"i": i}}),
        );
    }
    let names = |r: &[Rec]| -> HashSet<String> { r.iter().filter_map(|r| r.key.clone()).collect() };
    results.until("every execution name", |r| names(r).len() == total);
    let got = names(&results.records);
    for i in 0..total {
        assert!(got.contains(&format!("e{i}")), "e{i} lost");
    }
    let duplicates = results.records.len() - total;
    eprintln!("handoff: {total} executions, {duplicates} duplicates");
    // A redelivered start event yields the same execution ARN.
    let mut arn_by_name: HashMap<String, String> = HashMap::new();
    for r in &results.records {
        let v = r.json();
        let arn = v["executionArn"].as_str().unwrap().to_string();
        let prev = arn_by_name.insert(r.key.clone().unwrap(), arn.clone());
        assert!(
            prev.is_none_or(|p| p == arn),
            "duplicate with a different ARN"
        );
    }

    let mut start = env.reader("expressway.start");
    let per_partition = start
        .at_least(total)
        .iter()
        .fold(vec![0i64; 4], |mut acc, r| {
            acc[r.partition as usize] += 1;
            acc
        });
    env.wait_committed(group, &per_partition);
    b.shutdown_blocking();
    if let Some(c) = third {
        c.shutdown_blocking();
    }
}

/// A start event's `traceHeader` reaches the result record (field and header) and the log
/// record (header), as StartSyncExecution returns it.
#[test]
fn the_trace_header_is_carried_to_the_result_and_log_records() {
    let env = Env::new(1);
    let mut cfg = env.config();
    cfg.group = "g-trace".into();
    let exec = env.start(cfg, env.registry(&[("echo", ECHO)]));
    env.start_event(
        "k",
        &json!({"stateMachine": "echo", "name": "traced", "traceHeader": "Root=1-5759e988-bd862e3fe1be46a994272793"}),
    );
    env.start_event("k", &json!({"stateMachine": "echo", "name": "untraced"}));
    let mut results = env.reader("expressway.results");
    let results = results.at_least(2).to_vec();
    let traced = results
        .iter()
        .find(|r| r.key.as_deref() == Some("traced"))
        .unwrap();
    assert_eq!(
        traced.json()["traceHeader"],
        "Root=1-5759e988-bd862e3fe1be46a994272793"
    );
    assert_eq!(
        traced.header("x-amzn-trace-id").as_deref(),
        Some("Root=1-5759e988-bd862e3fe1be46a994272793")
    );
    let untraced = results
        .iter()
        .find(|r| r.key.as_deref() == Some("untraced"))
        .unwrap();
    assert!(untraced.json().get("traceHeader").is_none());
    assert!(untraced.header("x-amzn-trace-id").is_none());
    let mut logs = env.reader("expressway.logs");
    let logs = logs.at_least(2).to_vec();
    let with_header: Vec<_> = logs
        .iter()
        .filter_map(|l| l.header("x-amzn-trace-id"))
        .collect();
    assert_eq!(
        with_header,
        vec!["Root=1-5759e988-bd862e3fe1be46a994272793".to_string()]
    );
    exec.shutdown_blocking();
}

#[test]
fn a_definition_published_to_the_topic_becomes_runnable() {
    let env = Env::new(1);
    let mut cfg = env.config();
    cfg.group = "g-defs".into();
    let registry = env.registry(&[]);
    let exec = env.start(cfg, registry.clone());
    wait_until("registry loaded", || registry.is_loaded());
    let record = json!({
        "definition": r#"{"StartAt":"P","States":{"P":{"Type":"Pass","Result":"late!","End":true}}}"#,
        "loggingConfiguration": {"level": "ERROR", "includeExecutionData": false}
    });
    env.produce(
        "expressway.definitions",
        Some("late"),
        Some(record.to_string().as_bytes()),
        &[],
    );
    wait_until("definition registered", || registry.get("late").is_some());
    env.start_event("k", &json!({"stateMachine": "late", "name": "late-1"}));
    let mut results = env.reader("expressway.results");
    let v = results.at_least(1)[0].json();
    assert_eq!(v["status"], "SUCCEEDED");
    assert_eq!(v["output"], "late!");

    env.produce("expressway.definitions", Some("late"), None, &[]);
    wait_until("definition removed", || registry.get("late").is_none());
    exec.shutdown_blocking();
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn metrics_and_readiness_are_served_on_one_port() {
    let env = Env::new(2);
    let prometheus = expressway_executor::telemetry::install_recorder();
    assert!(prometheus.is_some(), "recorder installed");
    let mut cfg = env.config();
    cfg.group = "g-metrics".into();
    let registry = env.registry(&[("choose", CHOOSE), ("flaky", FLAKY)]);
    let exec = env.start(cfg, registry.clone());
    let health = exec.health();
    let addr = env
        .rt
        .block_on(expressway_executor::telemetry::serve_http(
            "127.0.0.1:0".parse().unwrap(),
            prometheus,
            health,
            registry,
            std::future::pending(),
        ))
        .unwrap();
    assert_eq!(http_get(addr, "/healthz").0, 200);
    wait_until("/readyz 200", || http_get(addr, "/readyz").0 == 200);

    env.start_sample_events(b"nope");
    let mut results = env.reader("expressway.results");
    results.at_least(3);

    let expected = [
        "expressway_executions_started_total",
        "expressway_executions_succeeded_total",
        "expressway_executions_failed_total",
        "expressway_executions_timed_out_total",
        "expressway_executions_aborted_total",
        "expressway_execution_duration_seconds_bucket",
        "expressway_state_transitions_total",
        "expressway_task_duration_seconds_bucket",
        "expressway_task_failures_total",
        "expressway_executions_in_flight",
        "expressway_consumer_lag",
        "expressway_dead_letters_total",
        "expressway_log_records_total",
        "expressway_log_batch_bytes_bucket",
        "expressway_offset_commits_total",
        "expressway_rebalances_total",
    ];
    let mut last = String::new();
    wait_until("every metric name", || {
        let (status, body) = http_get(addr, "/metrics");
        last = body;
        status == 200 && expected.iter().all(|m| last.contains(m))
    });
    assert!(
        last.contains(r#"expressway_dead_letters_total{reason="InvalidJson"}"#),
        "{last}"
    );
    assert!(!last.contains("quantile="), "histograms, not summaries");
    exec.shutdown_blocking();
}

#[test]
fn a_bound_topic_feeds_raw_records_to_its_machine() {
    let env = Env::new(1);
    env.cluster.create_topic("orders", 1, 1).unwrap();
    let mut cfg = env.config();
    cfg.group = "g-bind".into();
    cfg.bindings = vec![("orders".into(), "echo".into())];
    let exec = env.start(cfg, env.registry(&[("echo", ECHO)]));
    env.produce("orders", Some("o1"), Some(br#"{"order": 1}"#), &[]);
    env.produce("orders", Some("o2"), Some(b"not json"), &[]);
    env.produce("orders", Some("o3"), Some(br#"[3]"#), &[]);
    let mut results = env.reader("expressway.results");
    let got = results.at_least(2).to_vec();
    let by_name: HashMap<String, serde_json::Value> = got
        .iter()
        .map(|r| (r.key.clone().unwrap(), r.json()))
        .collect();
    assert_eq!(by_name["orders-0-0"]["output"], json!({"order": 1}));
    assert_eq!(by_name["orders-0-2"]["output"], json!([3]));
    let mut dlq = env.reader("expressway.dlq");
    let dead = dlq.at_least(1)[0].clone();
    assert_eq!(
        dead.header("expressway-error").as_deref(),
        Some("InvalidJson")
    );
    assert_eq!(
        dead.header("expressway-source").as_deref(),
        Some("orders/0/1")
    );
    exec.shutdown_blocking();
}

#[test]
fn tight_in_flight_bounds_pause_and_resume_without_losing_work() {
    let env = Env::new(2);
    let mut cfg = env.config();
    cfg.group = "g-bounds".into();
    cfg.max_in_flight_per_partition = 1;
    cfg.max_in_flight = 1;
    // A backlog of 2 records pauses a partition almost at once: exercise pause/resume.
    cfg.backlog_per_partition = Some(2);
    let exec = env.start(cfg, env.registry(&[("sleepy", SLEEPY)]));
    let n = 24;
    for i in 0..n {
        env.start_event(
            &format!("k{i}"),
            &json!({"stateMachine": "sleepy", "name": format!("s{i}"), "input": {"sleep": 0.05}}),
        );
    }
    let mut results = env.reader("expressway.results");
    results.until("every execution", |r| {
        r.iter()
            .filter_map(|r| r.key.clone())
            .collect::<HashSet<_>>()
            .len()
            == n
    });
    let mut start = env.reader("expressway.start");
    let per_partition = start.at_least(n).iter().fold(vec![0i64; 2], |mut acc, r| {
        acc[r.partition as usize] += 1;
        acc
    });
    env.wait_committed("g-bounds", &per_partition);
    exec.shutdown_blocking();
}

#[test]
fn a_log_record_too_large_for_kafka_becomes_a_stub() {
    let env = Env::new(1);
    let mut cfg = env.config();
    cfg.group = "g-big-log".into();
    cfg.kafka.push(("message.max.bytes".into(), "20000".into()));
    let small_output =
        r#"{"StartAt":"P","States":{"P":{"Type":"Pass","Result":"small","End":true}}}"#;
    let exec = env.start(cfg, env.registry(&[("small", small_output)]));
    env.start_event(
        "k",
        &json!({"stateMachine": "small", "name": "big-log", "input": {"blob": "x".repeat(50_000)}}),
    );
    let mut results = env.reader("expressway.results");
    assert_eq!(results.at_least(1)[0].json()["output"], "small");
    let mut logs = env.reader("expressway.logs");
    let log = logs.at_least(1)[0].json();
    assert_eq!(log["truncated"], true);
    assert_eq!(log["events"], json!([]));
    assert!(log["originalBytes"].as_u64().unwrap() > 50_000);
    env.wait_committed("g-big-log", &[1]);
    exec.shutdown_blocking();
}

#[test]
fn protobuf_log_format_and_protobuf_start_events() {
    use prost::Message as _;
    let env = Env::new(1);
    let mut cfg = env.config();
    cfg.group = "g-proto".into();
    cfg.log_format = expressway_executor::config::LogFormat::Protobuf;
    let exec = env.start(cfg, env.registry(&[("echo", ECHO)]));
    let event = expressway_wire::StartEvent {
        state_machine: expressway_wire::parse_state_machine_ref("echo").unwrap(),
        name: Some("pb-1".into()),
        input: json!({"p": 1}),
        trace_header: None,
    };
    env.produce(
        "expressway.start",
        Some("k"),
        Some(&event.to_protobuf()),
        &[("content-type", b"application/x-protobuf")],
    );
    let mut results = env.reader("expressway.results");
    let r = results.at_least(1)[0].json();
    assert_eq!(r["name"], "pb-1");
    assert_eq!(r["output"], json!({"p": 1}));
    let mut logs = env.reader("expressway.logs");
    let rec = logs.at_least(1)[0].clone();
    assert_eq!(
        rec.header("content-type").as_deref(),
        Some("application/x-protobuf")
    );
    let batch =
        expressway_wire::pb::ExecutionLogBatch::decode(rec.value.unwrap().as_slice()).unwrap();
    assert_eq!(batch.execution_arn, r["executionArn"].as_str().unwrap());
    assert_eq!(batch.events[0].r#type, "ExecutionStarted");
    exec.shutdown_blocking();
}

/// Throughput on the mock cluster (not a benchmark of Kafka; run with
/// `cargo test --release -p expressway-executor --test mock_cluster -- --ignored --nocapture`).
/// `kafka:publish` on a pod completes when the brokers acknowledge, and the record carries the
/// key, value, headers and the task's Idempotency-Key.
#[test]
fn kafka_publish_task_writes_to_the_cluster() {
    use expressway_executor::publisher::RdKafkaPublisher;
    use std::sync::Arc;
    let env = Env::new(1);
    env.cluster.create_topic("orders.out", 1, 1).unwrap();
    let mut cfg = env.config();
    cfg.group = "g-publish".into();
    let clock: Arc<dyn expressway_engine::Clock> =
        Arc::new(expressway_engine::runtime::TokioClock::new());
    let publisher = RdKafkaPublisher::new(&cfg).expect("producer");
    let tasks = expressway_tasks::TaskConfig::default()
        .build_registry(clock.clone(), Some(Arc::new(publisher)))
        .expect("registry");
    let def = r#"{"StartAt":"P","States":{"P":{"Type":"Task","Resource":"arn:aws:states:::kafka:publish",
        "Parameters":{"Topic":"orders.out","Key.$":"$.id","Value.$":"$","Headers":{"source":"expressway"}},"End":true}}}"#;
    let exec = expressway_executor::Executor::start(
        cfg,
        env.registry(&[("publish", def)]),
        expressway_executor::engine_runtime_with_tasks(clock, tasks),
        env.rt.handle().clone(),
    )
    .expect("executor starts");
    env.start_event(
        "k",
        &json!({"stateMachine": "publish", "name": "p1", "input": {"id": "o-1", "total": 3}}),
    );
    let mut results = env.reader("expressway.results");
    let r = results.at_least(1)[0].json();
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert_eq!(r["output"]["Topic"], "orders.out");
    assert_eq!(r["output"]["Offset"], 0);
    let mut out = env.reader("orders.out");
    let rec = out.at_least(1)[0].clone();
    assert_eq!(rec.key.as_deref(), Some("o-1"));
    assert_eq!(rec.json(), json!({"id": "o-1", "total": 3}));
    assert_eq!(rec.header("source").as_deref(), Some("expressway"));
    assert!(
        rec.header("Idempotency-Key")
            .or_else(|| rec.header("idempotency-key"))
            .is_some(),
        "headers: {:?}",
        rec.headers
    );
    exec.shutdown_blocking();
}
