use crate::support::*;
use expressway_engine::runtime::TokioClock;
use expressway_engine::{Status, TaskDispatcher};
use expressway_tasks::{
    InMemoryPublisher, KafkaPublisher, PublishError, TaskConfig, KAFKA_PUBLISH,
};
use serde_json::json;
use std::sync::Arc;

fn registry_with(publisher: Arc<InMemoryPublisher>) -> expressway_tasks::Registry {
    TaskConfig::default()
        .build_registry(
            Arc::new(TokioClock::new()),
            Some(publisher as Arc<dyn KafkaPublisher>),
        )
        .expect("registry")
}

#[tokio::test]
async fn publishes_strings_raw_and_other_values_as_json() {
    let publisher = Arc::new(InMemoryPublisher::new(4));
    let reg = registry_with(publisher.clone());
    let out = reg
        .invoke(request(
            KAFKA_PUBLISH,
            json!({"Topic": "orders", "Key": "order-1", "Value": {"id": 1},
                   "Headers": {"source": "expressway", "n": 2}}),
        ))
        .await
        .expect("published");
    assert_eq!(out["Topic"], "orders");
    let out2 = reg
        .invoke(request(
            KAFKA_PUBLISH,
            json!({"Topic": "orders", "Key": "order-1", "Value": "plain text"}),
        ))
        .await
        .expect("published");
    assert_eq!(
        out2["Partition"], out["Partition"],
        "same key, same partition"
    );
    assert_eq!(
        out2["Offset"].as_i64(),
        out["Offset"].as_i64().map(|o| o + 1)
    );
    let records = publisher.records("orders");
    assert_eq!(records.len(), 2);
    let first = &records[0].1;
    assert_eq!(first.key.as_deref(), Some(&b"order-1"[..]));
    assert_eq!(first.value, br#"{"id":1}"#.to_vec());
    assert_eq!(
        first.headers[..2],
        [
            ("source".to_string(), b"expressway".to_vec()),
            ("n".to_string(), b"2".to_vec())
        ]
    );
    assert_eq!(first.headers[2].0, "Idempotency-Key");
    assert_eq!(records[1].1.value, b"plain text".to_vec());
}

#[tokio::test]
async fn publish_errors_and_invalid_parameters() {
    let publisher = Arc::new(InMemoryPublisher::with_topics(1, &["known"]));
    let reg = registry_with(publisher.clone());
    let e = reg
        .invoke(request(
            KAFKA_PUBLISH,
            json!({"Topic": "unknown", "Value": 1}),
        ))
        .await
        .expect_err("unknown topic");
    assert_eq!(e.error, "Kafka.UnknownTopic");
    let e = reg
        .invoke(request(KAFKA_PUBLISH, json!({"Value": 1})))
        .await
        .expect_err("no topic");
    assert_eq!(e.error, "States.Runtime");
    publisher.fail_next(vec![PublishError::Failed("broker down".into())]);
    let e = reg
        .invoke(request(
            KAFKA_PUBLISH,
            json!({"Topic": "known", "Value": 1}),
        ))
        .await
        .expect_err("fails once");
    assert_eq!(e.error, "Kafka.PublishFailed");
}

#[tokio::test(start_paused = true)]
async fn publish_failures_are_retried_by_the_engine() {
    let publisher = Arc::new(InMemoryPublisher::new(1));
    publisher.fail_next(vec![
        PublishError::Failed("leader not available".into()),
        PublishError::Failed("leader not available".into()),
    ]);
    let definition = json!({
        "StartAt": "Publish",
        "States": {"Publish": {
            "Type": "Task", "Resource": "arn:aws:states:::kafka:publish",
            "Parameters": {"Topic": "events", "Value.$": "$"},
            "Retry": [{"ErrorEquals": ["Kafka.PublishFailed"], "IntervalSeconds": 2, "MaxAttempts": 3}],
            "End": true
        }}
    });
    let started = tokio::time::Instant::now();
    let out = run(
        &definition,
        json!({"e": 1}),
        registry_with(publisher.clone()),
    )
    .await;
    assert_eq!(out.status, Status::Succeeded, "{out:?}");
    assert_eq!(out.output.expect("output")["Offset"], 0);
    // Virtual time: 2 s + 4 s of backoff.
    assert!(started.elapsed() >= std::time::Duration::from_secs(6));
    let keys: Vec<Vec<u8>> = publisher.records("events")[0]
        .1
        .headers
        .iter()
        .filter(|(k, _)| k == "Idempotency-Key")
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(keys.len(), 1);
}
