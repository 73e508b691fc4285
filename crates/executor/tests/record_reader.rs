//! `kafka:getRecords` (record_reader.rs) on librdkafka's mock cluster: ranges by offset,
//! partitions, MaxRecords, value decoding and errors.
#![allow(clippy::unwrap_used)] // test assertions

mod common;

use common::Env;
use expressway_engine::{TaskError, TaskRequest};
use expressway_executor::record_reader::{handler, KAFKA_GET_RECORDS};
use rdkafka::producer::{BaseRecord, Producer};
use serde_json::{json, Value};
use std::time::Duration;

fn request(input: Value) -> TaskRequest {
    TaskRequest {
        resource: KAFKA_GET_RECORDS.into(),
        input,
        state_name: "Read".into(),
        execution_arn: "arn:aws:states:us-east-1:123456789012:express:m:e:1".into(),
        attempt: 0,
        scope: String::new(),
        timeout: Some(Duration::from_secs(30)),
        idempotency_key: "k".into(),
    }
}

/// Partition 0: five JSON values at timestamps 1000, 2000, ...; partition 1: a text value and a
/// binary one.
fn env() -> Env {
    let env = Env::new(1);
    env.cluster.create_topic("items", 2, 1).unwrap();
    let p = env.producer();
    for n in 0..5i64 {
        let v = json!({"n": n}).to_string();
        p.send(
            BaseRecord::<str, str>::to("items")
                .partition(0)
                .key("k")
                .payload(&v)
                .timestamp(1000 * (n + 1)),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    }
    for v in [&b"plain text"[..], &[0xff, 0xfe][..]] {
        p.send(BaseRecord::<str, [u8]>::to("items").partition(1).payload(v))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
    env
}

fn read(env: &Env, input: Value) -> Result<Value, TaskError> {
    let h = handler(&env.config());
    env.rt.block_on(h(request(input)))
}

fn values(out: &Value) -> Vec<Value> {
    out["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Value"].clone())
        .collect()
}

#[test]
fn a_topic_is_read_whole_in_partition_then_offset_order() {
    let env = env();
    let out = read(&env, json!({"Topic": "items"})).unwrap();
    let records = out["Records"].as_array().unwrap();
    assert_eq!(records.len(), 7, "{out}");
    assert_eq!(
        records[0],
        json!({"Topic": "items", "Partition": 0, "Offset": 0, "Timestamp": 1000, "Key": "k",
               "Value": {"n": 0}, "Headers": {}})
    );
    assert_eq!(records[5]["Value"], json!("plain text"));
    assert_eq!(records[5]["Key"], Value::Null);
    assert_eq!(records[6]["Value"], json!("//4="));
    assert_eq!(records[6]["ValueEncoding"], json!("base64"));
}

#[test]
fn offsets_partitions_and_max_records_narrow_the_read() {
    let env = env();
    let out = read(
        &env,
        json!({"Topic": "items", "Partitions": [0], "StartOffset": 1, "EndOffset": 3}),
    )
    .unwrap();
    assert_eq!(values(&out), [json!({"n": 1}), json!({"n": 2})]);
    let out = read(&env, json!({"Topic": "items", "MaxRecords": 2})).unwrap();
    assert_eq!(values(&out), [json!({"n": 0}), json!({"n": 1})]);
    let out = read(
        &env,
        json!({"Topic": "items", "Partitions": [1], "StartOffset": 9}),
    )
    .unwrap();
    assert_eq!(values(&out), Vec::<Value>::new(), "past the end: nothing");
}

// Ranges by timestamp: the mock cluster cannot look offsets up by time (its ListOffsets answers
// -1), so crates/cli/tests/broker.rs tests them on Apache Kafka
// (a_distributed_map_reads_its_items_from_a_topic_between_two_timestamps).

#[test]
fn unknown_topics_and_partitions_are_errors() {
    let env = env();
    let e = read(&env, json!({"Topic": "no-such-topic"})).unwrap_err();
    assert_eq!(e.error, "Kafka.UnknownTopic", "{e:?}");
    let e = read(&env, json!({"Topic": "items", "Partitions": [7]})).unwrap_err();
    assert_eq!(e.error, "Kafka.UnknownPartition", "{e:?}");
    let e = read(&env, json!({"Topic": "items", "Offset": 1})).unwrap_err();
    assert_eq!(e.error, "States.Runtime");
}
