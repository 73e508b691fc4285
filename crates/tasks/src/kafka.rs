//! `arn:aws:states:::kafka:publish`: publish one record and wait for the brokers' acknowledgement.
//!
//! Parameters: `Topic` (required string), `Key` (optional; a string is sent as its UTF-8 bytes,
//! any other JSON value as its JSON text), `Value` (any JSON; strings raw, other values as JSON;
//! absent means `null`), `Headers` (optional object; string values raw, others as JSON). Every record
//! also carries the header `Idempotency-Key` (from execution ARN, state name and attempt), so
//! consumers can drop the duplicates that at-least-once execution may produce.
//!
//! Result: `{"Topic", "Partition", "Offset"}`. Errors: `Kafka.UnknownTopic`,
//! `Kafka.MessageTooLarge`, `Kafka.PublishFailed` (retryable), and `States.Runtime` for invalid
//! parameters.
//!
//! The executor supplies a librdkafka-backed [`KafkaPublisher`]; [`InMemoryPublisher`] is for tests
//! and local runs.

use crate::http_task::runtime_error;
use expressway_engine::{TaskError, TaskRequest};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The resource ARN.
pub const KAFKA_PUBLISH: &str = "arn:aws:states:::kafka:publish";

/// One record to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    /// Destination topic.
    pub topic: String,
    /// Partitioning key.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Vec<u8>,
    /// Record headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Where the brokers stored a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishAck {
    /// Partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

/// Why a record was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The topic does not exist (and is not auto-created).
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    /// The record exceeds the broker's or producer's size limit.
    #[error("the record is too large: {0}")]
    MessageTooLarge(String),
    /// Anything else (timeouts, broker errors); usually worth retrying.
    #[error("{0}")]
    Failed(String),
}

impl PublishError {
    /// The Step Functions error name.
    pub fn error_name(&self) -> &'static str {
        match self {
            PublishError::UnknownTopic(_) => "Kafka.UnknownTopic",
            PublishError::MessageTooLarge(_) => "Kafka.MessageTooLarge",
            PublishError::Failed(_) => "Kafka.PublishFailed",
        }
    }
}

/// Publishes records; the future completes when the brokers acknowledge (e.g. `acks=all`).
pub trait KafkaPublisher: Send + Sync {
    /// Publishes one record.
    fn publish(&self, record: KafkaRecord) -> BoxFuture<'static, Result<PublishAck, PublishError>>;
}

/// An in-memory "cluster": topics with a fixed number of partitions, keyed records partitioned
/// by a hash of the key, unkeyed records on partition 0.
#[derive(Debug)]
pub struct InMemoryPublisher {
    partitions: u32,
    state: Mutex<MemState>,
}

#[derive(Debug, Default)]
struct MemState {
    topics: HashMap<String, Vec<Vec<KafkaRecord>>>,
    fail_next: Vec<PublishError>,
    strict_topics: bool,
}

impl InMemoryPublisher {
    /// Topics are created on first use with `partitions` partitions.
    pub fn new(partitions: u32) -> InMemoryPublisher {
        InMemoryPublisher {
            partitions: partitions.max(1),
            state: Mutex::new(MemState::default()),
        }
    }

    /// Only these topics exist; others fail with [`PublishError::UnknownTopic`].
    pub fn with_topics(partitions: u32, topics: &[&str]) -> InMemoryPublisher {
        let p = InMemoryPublisher::new(partitions);
        {
            let mut s = p.lock();
            s.strict_topics = true;
            for t in topics {
                s.topics
                    .insert(t.to_string(), vec![Vec::new(); p.partitions as usize]);
            }
        }
        p
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next publish calls fail with these errors, in order.
    pub fn fail_next(&self, errors: Vec<PublishError>) {
        self.lock().fail_next.extend(errors);
    }

    /// Every record of `topic`, partition by partition.
    pub fn records(&self, topic: &str) -> Vec<(PublishAck, KafkaRecord)> {
        let s = self.lock();
        let mut out = Vec::new();
        if let Some(parts) = s.topics.get(topic) {
            for (p, records) in parts.iter().enumerate() {
                for (o, r) in records.iter().enumerate() {
                    out.push((
                        PublishAck {
                            partition: p as i32,
                            offset: o as i64,
                        },
                        r.clone(),
                    ));
                }
            }
        }
        out
    }
}

impl KafkaPublisher for InMemoryPublisher {
    fn publish(&self, record: KafkaRecord) -> BoxFuture<'static, Result<PublishAck, PublishError>> {
        let result = (|| {
            let mut s = self.lock();
            if !s.fail_next.is_empty() {
                return Err(s.fail_next.remove(0));
            }
            if s.strict_topics && !s.topics.contains_key(&record.topic) {
                return Err(PublishError::UnknownTopic(record.topic.clone()));
            }
            let partition = match &record.key {
                // FNV-1a, so placement is stable across runs.
                Some(k) => {
                    let h = k.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
                    });
                    (h % u64::from(self.partitions)) as usize
                }
                None => 0,
            };
            let n = self.partitions as usize;
            let parts = s
                .topics
                .entry(record.topic.clone())
                .or_insert_with(|| vec![Vec::new(); n]);
            let offset = parts[partition].len() as i64;
            parts[partition].push(record);
            Ok(PublishAck {
                partition: partition as i32,
                offset,
            })
        })();
        Box::pin(async move { result })
    }
}

fn bytes_of(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// Builds the record for a `kafka:publish` task.
pub fn record_from_parameters(req: &TaskRequest) -> Result<KafkaRecord, TaskError> {
    let p = req
        .input
        .as_object()
        .ok_or_else(|| runtime_error("kafka:publish parameters must be a JSON object"))?;
    let topic = p
        .get("Topic")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| runtime_error("kafka:publish needs a non-empty string Topic"))?;
    let key = match p.get("Key") {
        None | Some(Value::Null) => None,
        Some(k) => Some(bytes_of(k)),
    };
    let value = bytes_of(p.get("Value").unwrap_or(&Value::Null));
    let mut headers = Vec::new();
    match p.get("Headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                if !k.eq_ignore_ascii_case("idempotency-key") {
                    headers.push((k.clone(), bytes_of(v)));
                }
            }
        }
        Some(_) => return Err(runtime_error("kafka:publish Headers must be a JSON object")),
    }
    headers.push((
        "Idempotency-Key".to_string(),
        req.idempotency_key.as_bytes().to_vec(),
    ));
    Ok(KafkaRecord {
        topic: topic.to_string(),
        key,
        value,
        headers,
    })
}

/// The `kafka:publish` handler.
pub(crate) async fn invoke(
    publisher: Arc<dyn KafkaPublisher>,
    req: TaskRequest,
) -> Result<Value, TaskError> {
    let record = record_from_parameters(&req)?;
    let topic = record.topic.clone();
    match publisher.publish(record).await {
        Ok(ack) => Ok(json!({"Topic": topic, "Partition": ack.partition, "Offset": ack.offset})),
        Err(e) => Err(TaskError::new(e.error_name(), e.to_string())),
    }
}
