//! The gateway on librdkafka's in-process mock cluster with an executor pod: writes reach the
//! definitions topic and a second replica and the pod (each with its own registry) follow it; a
//! machine created through the API runs on the pod right away; StartExecution's record lands on
//! the start topic at the position its ARN encodes, and the pod's result carries that ARN;
//! StartSyncExecution publishes log and result records.

use expressway_executor::Registry;
use expressway_gateway::{Options, ServerConfig, Topics};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::Message;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn post(addr: std::net::SocketAddr, op: &str, body: Value) -> (u16, Value) {
    let body = body.to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nX-Amz-Target: AWSStepFunctions.{op}\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Reads every record of `topic` (partition 0..partitions) from the beginning.
/// GET `path`; the JSON body, or `Null` when it is not JSON or not 200.
async fn get(addr: std::net::SocketAddr, path: &str) -> Value {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    if !text.starts_with("HTTP/1.1 200") {
        return Value::Null;
    }
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or(Value::Null)
}

fn read_all(brokers: &str, topic: &str, partitions: i32, want: usize) -> Vec<(i32, i64, Vec<u8>)> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "gateway-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push((
                m.partition(),
                m.offset(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

#[test]
fn gateway_on_the_mock_cluster() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    cluster
        .create_topic("expressway.start", 3, 1)
        .expect("topic");
    for t in [
        "expressway.logs",
        "expressway.results",
        "expressway.definitions",
    ] {
        cluster.create_topic(t, 1, 1).expect("topic");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let start = |registry: Arc<Registry>, console: bool| {
            expressway_gateway::start(
                Options {
                    brokers: brokers.clone(),
                    kafka: Vec::new(),
                    topics: Topics::default(),
                    follow_definitions: true,
                    listen: "127.0.0.1:0".parse().expect("addr"),
                    server: ServerConfig::default(),
                    console: console.then(|| expressway_gateway::ConsoleSettings {
                        auth: expressway_gateway::console::ConsoleAuth::Open,
                        limits: expressway_gateway::console::Limits::default(),
                    }),
                    task_token_key: None,
                },
                registry,
                expressway_executor::default_engine_runtime(),
            )
        };
        // The executor pod, with an empty registry of its own (it learns from the topic).
        let mut pod_config = expressway_executor::ExecutorConfig::new(brokers.clone());
        pod_config.kafka = vec![
            ("session.timeout.ms".into(), "6000".into()),
            ("heartbeat.interval.ms".into(), "500".into()),
            ("topic.metadata.refresh.interval.ms".into(), "1000".into()),
        ];
        let pod = expressway_executor::Executor::start(
            pod_config,
            Arc::new(Registry::new("us-east-1", "123456789012")),
            expressway_executor::default_engine_runtime(),
            tokio::runtime::Handle::current(),
        )
        .expect("pod");
        let a_registry = Arc::new(Registry::new("us-east-1", "123456789012"));
        let b_registry = Arc::new(Registry::new("us-east-1", "123456789012"));
        // Replica a serves the console (its reader follows the results and logs topics).
        let a = start(a_registry.clone(), true).await.expect("replica a");
        let b = start(b_registry.clone(), false).await.expect("replica b");

        let def = r#"{"StartAt":"P","States":{"P":{"Type":"Pass","Result":"ok","End":true}}}"#;
        let (st, r) = post(
            a.addr,
            "CreateStateMachine",
            json!({"name": "m", "definition": def, "type": "EXPRESS", "publish": true}),
        )
        .await;
        assert_eq!(st, 200, "{r}");
        // Replica b learns the machine and its version from the definitions topic.
        let deadline = Instant::now() + Duration::from_secs(20);
        while (b_registry.get("m").is_none() || b_registry.version("m", 1).is_none())
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (st, d) = post(
            b.addr,
            "DescribeStateMachine",
            json!({"stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:m:1"}),
        )
        .await;
        assert_eq!((st, d["definition"].as_str()), (200, Some(def)), "{d}");

        let mut arns = Vec::new();
        for i in 0..3 {
            let (st, r) = post(
                b.addr,
                "StartExecution",
                json!({"stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:m", "input": format!("{{\"i\":{i}}}")}),
            )
            .await;
            assert_eq!(st, 200, "{r}");
            arns.push(r["executionArn"].as_str().expect("arn").to_string());
        }
        let (st, s) = post(
            a.addr,
            "StartSyncExecution",
            json!({"stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:m:1", "name": "sync-1"}),
        )
        .await;
        assert_eq!((st, s["output"].as_str()), (200, Some("\"ok\"")), "{s}");

        let brokers2 = brokers.clone();
        let (starts, results) = tokio::task::spawn_blocking(move || {
            (
                read_all(&brokers2, "expressway.start", 3, 3),
                read_all(&brokers2, "expressway.results", 1, 4),
            )
        })
        .await
        .expect("reader");
        assert_eq!(starts.len(), 3);
        for (partition, offset, _) in &starts {
            let id = expressway_wire::execution_identity(
                "us-east-1",
                "123456789012",
                "m",
                None,
                "expressway.start",
                *partition,
                *offset,
            );
            assert!(arns.contains(&id.arn), "{} not in {arns:?}", id.arn);
        }
        let results: Vec<Value> = results
            .iter()
            .map(|r| serde_json::from_slice(&r.2).expect("json"))
            .collect();
        assert_eq!(results.len(), 4, "{results:?}");
        let sync = results
            .iter()
            .find(|r| r["name"] == json!("sync-1"))
            .expect("the sync execution's result");
        assert_eq!(sync["output"], json!("ok"));
        // The pod ran the three started executions with the ARNs the gateway returned.
        for arn in &arns {
            let r = results
                .iter()
                .find(|r| r["executionArn"] == json!(arn))
                .unwrap_or_else(|| panic!("no result for {arn}: {results:?}"));
            assert_eq!(r["status"], json!("SUCCEEDED"));
        }
        // Replica a's console read every execution, whichever replica started it.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut listed = Value::Null;
        while Instant::now() < deadline {
            listed = get(a.addr, "/console/api/machines/m/executions?status=SUCCEEDED").await;
            if listed["executions"].as_array().map_or(0, Vec::len) == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let held: Vec<&str> = listed["executions"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["executionArn"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(held.len(), 4, "{listed}");
        for arn in &arns {
            assert!(held.contains(&arn.as_str()), "{arn} not in the console: {listed}");
        }
        let q = format!("/console/api/execution?arn={}", arns[0].replace(':', "%3A"));
        let one = get(a.addr, &q).await;
        assert_eq!(one["hasLogRecord"], json!(true), "{one}");
        assert_eq!(
            get(b.addr, "/console/api/machines").await,
            Value::Null,
            "replica b serves no console"
        );
        pod.shutdown().await;

        a.shutdown().await;
        b.shutdown().await;
    });
}

/// SendTaskSuccess over HTTP: the gateway verifies the token, produces the callback to the
/// callback partition of the token's start partition, and the pod's waiting execution ends
/// with the callback's output.
#[test]
fn send_task_success_completes_an_execution_waiting_on_the_pod() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    for (t, n) in [("expressway.start", 3), ("expressway.callbacks", 3)] {
        cluster.create_topic(t, n, 1).expect("topic");
    }
    for t in [
        "expressway.logs",
        "expressway.results",
        "expressway.definitions",
        "expressway.dlq",
        "gw.payments",
    ] {
        cluster.create_topic(t, 1, 1).expect("topic");
    }
    let key =
        expressway_wire::TaskTokenKey::new(*b"gateway-mock-key-0123456789abcdef").expect("key");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut pod_config = expressway_executor::ExecutorConfig::new(brokers.clone());
        pod_config.kafka = vec![
            ("session.timeout.ms".into(), "6000".into()),
            ("heartbeat.interval.ms".into(), "500".into()),
            ("topic.metadata.refresh.interval.ms".into(), "1000".into()),
        ];
        pod_config.callbacks.key = Some(key.clone());
        let clock: Arc<dyn expressway_engine::Clock> =
            Arc::new(expressway_engine::runtime::TokioClock::new());
        let publisher =
            expressway_executor::publisher::RdKafkaPublisher::new(&pod_config).expect("publisher");
        let tasks = expressway_tasks::TaskConfig::default()
            .build_registry(clock.clone(), Some(Arc::new(publisher)))
            .expect("tasks");
        let pod = expressway_executor::Executor::start(
            pod_config,
            Arc::new(Registry::new("us-east-1", "123456789012")),
            expressway_executor::engine_runtime_with_tasks(clock, tasks),
            tokio::runtime::Handle::current(),
        )
        .expect("pod");
        let gw = expressway_gateway::start(
            Options {
                brokers: brokers.clone(),
                kafka: Vec::new(),
                topics: Topics::default(),
                follow_definitions: true,
                listen: "127.0.0.1:0".parse().expect("addr"),
                server: ServerConfig::default(),
                console: None,
                task_token_key: Some(key.clone()),
            },
            Arc::new(Registry::new("us-east-1", "123456789012")),
            expressway_executor::default_engine_runtime(),
        )
        .await
        .expect("gateway");
        let def = json!({"StartAt": "Charge", "States": {"Charge": {"Type": "Task",
            "Resource": "arn:aws:states:::kafka:publish.waitForTaskToken",
            "Parameters": {"Topic": "gw.payments", "Value": {"taskToken.$": "$$.Task.Token"}},
            "End": true}}})
        .to_string();
        let (st, r) = post(
            gw.addr,
            "CreateStateMachine",
            json!({"name": "pay", "definition": def, "type": "EXPRESS"}),
        )
        .await;
        assert_eq!(st, 200, "{r}");
        let (st, started) = post(
            gw.addr,
            "StartExecution",
            json!({"stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:pay", "input": "{}"}),
        )
        .await;
        assert_eq!(st, 200, "{started}");
        let b = brokers.clone();
        let request = tokio::task::spawn_blocking(move || read_all(&b, "gw.payments", 1, 1))
            .await
            .expect("reader");
        assert_eq!(request.len(), 1, "the task published its request");
        let token = serde_json::from_slice::<Value>(&request[0].2).expect("json")["taskToken"]
            .as_str()
            .expect("token")
            .to_string();
        let fields = key.verify(&token).expect("the pod minted a token under the key");
        assert_eq!(fields.execution_arn, started["executionArn"].as_str().expect("arn"));

        let forged = format!("{}AAAA", &token[..token.len() - 4]);
        let (st, e) = post(
            gw.addr,
            "SendTaskSuccess",
            json!({"taskToken": forged, "output": "{}"}),
        )
        .await;
        assert_eq!((st, e["__type"].as_str()), (400, Some("InvalidToken")), "{e}");
        let (st, ok) = post(
            gw.addr,
            "SendTaskSuccess",
            json!({"taskToken": token, "output": "{\"paid\":true}"}),
        )
        .await;
        assert_eq!((st, ok), (200, json!({})));

        let b = brokers.clone();
        let (callbacks, results) = tokio::task::spawn_blocking(move || {
            (
                read_all(&b, "expressway.callbacks", 3, 1),
                read_all(&b, "expressway.results", 1, 1),
            )
        })
        .await
        .expect("reader");
        assert_eq!(callbacks.len(), 1);
        assert_eq!(callbacks[0].0, fields.partition, "on the token's partition");
        let result: Value = serde_json::from_slice(&results[0].2).expect("result");
        assert_eq!(result["status"], "SUCCEEDED", "{result}");
        assert_eq!(result["output"], json!({"paid": true}));
        gw.shutdown().await;
        pod.shutdown().await;
    });
}
