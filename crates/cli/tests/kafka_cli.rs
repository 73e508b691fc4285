//! `expressway serve`, `start` and `tail` as processes, against librdkafka's mock cluster
//! running in the test process.
#![allow(clippy::unwrap_used)]

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_expressway"))
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn cluster() -> (MockCluster<'static, DefaultProducerContext>, String) {
    let c = MockCluster::new(1).unwrap();
    for t in [
        "expressway.start",
        "expressway.logs",
        "expressway.results",
        "expressway.dlq",
        "expressway.definitions",
    ] {
        c.create_topic(t, 1, 1).unwrap();
    }
    let b = c.bootstrap_servers();
    (c, b)
}

/// Reads records of a one-partition topic from the beginning until `n` arrived.
fn read(brokers: &str, topic: &str, n: usize) -> Vec<(Option<String>, Vec<u8>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "kafka-cli-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(Instant::now() < deadline, "timed out reading {topic}");
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push((
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

#[test]
fn start_produces_a_start_event() {
    let (_c, brokers) = cluster();
    let out = bin()
        .args([
            "start",
            "--brokers",
            &brokers,
            "hello",
            "--json",
            "--key",
            "k1",
        ])
        .args(["--input", r#"{"name":"Ada","amount":1}"#])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["topic"], "expressway.start");
    assert_eq!(line["offset"], 0);
    assert_eq!(line["name"], "expressway.start-0-0");
    let recs = read(&brokers, "expressway.start", 1);
    assert_eq!(recs[0].0.as_deref(), Some("k1"));
    let ev = expressway_wire::StartEvent::from_json(&recs[0].1).unwrap();
    assert_eq!(ev.state_machine.name, "hello");
    assert_eq!(ev.input, json!({"name": "Ada", "amount": 1}));

    let bad = bin()
        .args(["start", "--brokers", &brokers, "hello", "--input", "{nope"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn serve_runs_start_events_and_exits_0_on_sigterm() {
    let (c, brokers) = cluster();
    let mut serve = spawn_serve(&brokers, &repo("examples"));
    let out = bin()
        .args(["start", "--brokers", &brokers, "hello", "--name", "via-cli"])
        .args(["--input", r#"{"name":"Ada","amount":250}"#])
        .output()
        .unwrap();
    assert!(out.status.success());
    let results = read(&brokers, "expressway.results", 1);
    assert_eq!(results[0].0.as_deref(), Some("via-cli"));
    let v: Value = serde_json::from_slice(&results[0].1).unwrap();
    assert_eq!(v["status"], "SUCCEEDED");
    assert_eq!(v["output"]["tier"], "gold");

    // `tail` prints the result, human-readable and as JSON.
    for (flag, check) in [
        ("--from-beginning", "SUCCEEDED via-cli"),
        ("--json", "\"name\":\"via-cli\""),
    ] {
        let mut args = vec!["tail", "--brokers", brokers.as_str(), "--from-beginning"];
        if flag == "--json" {
            args.push("--json");
        }
        let mut tail = bin()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(tail.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let _ = tail.kill();
        let _ = tail.wait();
        assert!(line.contains(check), "{flag}: {line}");
    }

    let status = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + DEADLINE;
    let code = loop {
        if let Some(s) = serve.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "serve did not exit");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, Some(0));
    drop(c);
}

fn spawn_serve(brokers: &str, definitions: &std::path::Path) -> std::process::Child {
    bin()
        .arg("serve")
        .env("EXPRESSWAY_BROKERS", brokers)
        .env("EXPRESSWAY_DEFINITIONS", definitions)
        .env("EXPRESSWAY_METRICS_LISTEN", "127.0.0.1:0")
        .env("EXPRESSWAY_DRAIN_TIMEOUT", "5s")
        .env(
            "EXPRESSWAY_KAFKA",
            "session.timeout.ms=6000;heartbeat.interval.ms=500",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A pod killed with SIGKILL mid-run loses nothing: its replacement re-runs the uncommitted tail,
/// and a re-run execution has the same ARN (duplicates are recognisable).
#[test]
fn a_pod_killed_with_sigkill_is_replaced_without_losing_start_events() {
    let (c, brokers) = cluster();
    let defs = std::env::temp_dir().join(format!("expressway-sigkill-{}", std::process::id()));
    std::fs::create_dir_all(&defs).unwrap();
    std::fs::write(
        defs.join("slow.asl.json"),
        r#"{"StartAt":"Work","States":{"Work":{"Type":"Task","Resource":"arn:aws:states:::expressway:test",
            "Parameters":{"SleepSeconds.$":"$.sleep","Result.$":"$.i"},"End":true}}}"#,
    )
    .unwrap();
    let n = 20usize;
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for i in 0..n {
        let v = json!({"stateMachine": "slow", "name": format!("e{i}"), "input": {"i": i, "sleep": 0.25 * i as f64}}).to_string();
        producer
            .send(
                rdkafka::producer::BaseRecord::<str, str>::to("expressway.start")
                    .key("k")
                    .payload(&v),
            )
            .unwrap();
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();

    let mut first = spawn_serve(&brokers, &defs);
    // Kill the pod as soon as the first executions have finished, while the rest are running.
    let _ = read(&brokers, "expressway.results", 1);
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let mut second = spawn_serve(&brokers, &defs);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "sigkill-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("expressway.results", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut arns: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut duplicates = 0usize;
    while arns.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} executions finished: {:?}",
            arns.len(),
            arns.keys()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let v: Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
            assert_eq!(v["status"], "SUCCEEDED", "{v}");
            let name = v["name"].as_str().unwrap().to_string();
            let arn = v["executionArn"].as_str().unwrap().to_string();
            if let Some(previous) = arns.insert(name.clone(), arn.clone()) {
                duplicates += 1;
                assert_eq!(
                    previous, arn,
                    "a re-run of {name} has the same execution ARN"
                );
            }
        }
    }
    println!(
        "{n} start events, {} distinct results, {duplicates} duplicates",
        arns.len()
    );
    let _ = second.kill();
    let _ = second.wait();
    let _ = std::fs::remove_dir_all(&defs);
    drop(c);
}

/// Reads `n` records of one partition of `topic` from the beginning.
fn read_partition(brokers: &str, topic: &str, partition: i32, n: usize) -> Vec<Vec<u8>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "kafka-cli-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "timed out reading {topic}/{partition}"
        );
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(m.payload().unwrap_or_default().to_vec());
        }
    }
    out
}

#[test]
fn send_task_commands_produce_callbacks_to_the_tokens_partition() {
    let (c, brokers) = cluster();
    c.create_topic("expressway.callbacks", 3, 1).unwrap();
    let key = expressway_wire::TaskTokenKey::new(*b"cli-test-key-0123456789abcdef0123").unwrap();
    let token = key
        .mint(&expressway_wire::TokenFields {
            partition: 2,
            execution_arn: "arn:aws:states:us-east-1:123456789012:express:order:e:u".into(),
            state_name: "Charge".into(),
            scope: "0".into(),
            attempt: 0,
        })
        .unwrap();
    let run = |args: &[&str]| {
        bin()
            .args(args)
            .args(["--brokers", &brokers, "--task-token", &token])
            .env_remove("EXPRESSWAY_TASK_TOKEN_KEY")
            .env_remove("EXPRESSWAY_TASK_TOKEN_KEY_FILE")
            .output()
            .unwrap()
    };
    let out = run(&[
        "send-task-success",
        "--task-output",
        r#"{"paid":true}"#,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["partition"], json!(2));
    let out = run(&[
        "send-task-failure",
        "--error",
        "Declined",
        "--cause",
        "card",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sent failure for state 'Charge'"));
    let out = run(&["send-task-heartbeat"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcomes: Vec<_> = read_partition(&brokers, "expressway.callbacks", 2, 3)
        .iter()
        .map(|v| {
            expressway_wire::CallbackRecord::decode(Some(v))
                .unwrap()
                .outcome
        })
        .collect();
    use expressway_wire::CallbackOutcome as O;
    assert_eq!(
        outcomes,
        [
            O::Success(json!({"paid": true})),
            O::Failure {
                error: Some("Declined".into()),
                cause: Some("card".into())
            },
            O::Heartbeat
        ]
    );

    // Refused before anything is produced: bad output, not a token, a key that disagrees.
    let out = run(&["send-task-success", "--task-output", "{oops"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--task-output"));
    let out = bin()
        .args([
            "send-task-heartbeat",
            "--brokers",
            &brokers,
            "--task-token",
            "nope",
        ])
        .env_remove("EXPRESSWAY_TASK_TOKEN_KEY")
        .env_remove("EXPRESSWAY_TASK_TOKEN_KEY_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an Expressway task token"));
    let out = bin()
        .args([
            "send-task-heartbeat",
            "--brokers",
            &brokers,
            "--task-token",
            &token,
        ])
        .env(
            "EXPRESSWAY_TASK_TOKEN_KEY",
            "a-different-key-0123456789abcdef0123",
        )
        .env_remove("EXPRESSWAY_TASK_TOKEN_KEY_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not verify"));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let (_, high) = consumer
        .fetch_watermarks("expressway.callbacks", 2, Duration::from_secs(10))
        .unwrap();
    assert_eq!(high, 3, "refused commands produce nothing");
}

/// A pod killed with SIGKILL while an execution waits for its callback: the next pod re-runs
/// the execution (same token) and reads the callback that was sent in between.
#[test]
fn a_pod_killed_while_an_execution_waits_is_replaced_and_the_execution_gets_its_callback() {
    let (c, brokers) = cluster();
    c.create_topic("expressway.callbacks", 1, 1).unwrap();
    c.create_topic("payments", 1, 1).unwrap();
    let defs = std::env::temp_dir().join(format!("expressway-cb-kill-{}", std::process::id()));
    std::fs::create_dir_all(&defs).unwrap();
    std::fs::write(
        defs.join("pay.asl.json"),
        r#"{"StartAt":"Charge","States":{"Charge":{"Type":"Task",
            "Resource":"arn:aws:states:::kafka:publish.waitForTaskToken",
            "Parameters":{"Topic":"payments","Value":{"taskToken.$":"$$.Task.Token"}},"End":true}}}"#,
    )
    .unwrap();
    let key = "kill-test-key-0123456789abcdef0123";
    let serve = || {
        bin()
            .arg("serve")
            .env("EXPRESSWAY_BROKERS", &brokers)
            .env("EXPRESSWAY_DEFINITIONS", &defs)
            .env("EXPRESSWAY_METRICS_LISTEN", "127.0.0.1:0")
            .env("EXPRESSWAY_DRAIN_TIMEOUT", "5s")
            .env("EXPRESSWAY_TASK_TOKEN_KEY", key)
            .env_remove("EXPRESSWAY_TASK_TOKEN_KEY_FILE")
            .env(
                "EXPRESSWAY_KAFKA",
                "session.timeout.ms=6000;heartbeat.interval.ms=500",
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = serve();
    let out = bin()
        .args(["start", "--brokers", &brokers, "pay", "--name", "survivor"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let request = &read(&brokers, "payments", 1)[0].1;
    let token = serde_json::from_slice::<Value>(request).unwrap()["taskToken"]
        .as_str()
        .unwrap()
        .to_string();
    first.kill().unwrap(); // SIGKILL while the execution waits
    first.wait().unwrap();
    let out = bin()
        .args([
            "send-task-success",
            "--brokers",
            &brokers,
            "--task-token",
            &token,
        ])
        .args(["--task-output", r#"{"charged":true}"#])
        .env("EXPRESSWAY_TASK_TOKEN_KEY", key)
        .env_remove("EXPRESSWAY_TASK_TOKEN_KEY_FILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut second = serve();
    let results = read(&brokers, "expressway.results", 1);
    let r: Value = serde_json::from_slice(&results[0].1).unwrap();
    assert_eq!(r["name"], "survivor");
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert_eq!(r["output"], json!({"charged": true}));
    let requests = read(&brokers, "payments", 2);
    assert_eq!(
        requests[1].1, *request,
        "the re-run sent the same request and token"
    );
    let _ = second.kill();
    let _ = second.wait();
    let _ = std::fs::remove_dir_all(&defs);
    drop(c);
}
