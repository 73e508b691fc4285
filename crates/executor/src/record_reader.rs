//! `arn:aws:states:::kafka:getRecords` (ours): the records of a topic between two offsets or two
//! timestamps, read with a group-less consumer (assigned partitions, nothing committed,
//! `read_committed`). A Distributed Map's `ItemReader` uses it to map over a topic; a Task state
//! may use it too.
//!
//! Parameters: `Topic` (required); `Partitions` (array of partition numbers; default every
//! partition); `StartOffset` / `EndOffset` (per partition, start inclusive, end exclusive; default
//! the earliest offset and the end of the log when the read starts) or `StartTimestamp` /
//! `EndTimestamp` (ISO-8601 or epoch milliseconds; the first offset at or after each); `MaxRecords`.
//! Result: `{"Records": [{"Topic", "Partition", "Offset", "Timestamp" (epoch ms), "Key",
//! "Value", "Headers"}]}` ordered by partition, then offset. `Value` is the parsed JSON when the
//! value is JSON, else its text, else base64 with `"ValueEncoding": "base64"`; `Key` likewise
//! text or base64 (`KeyEncoding`).
//!
//! Errors: `Kafka.UnknownTopic`, `Kafka.UnknownPartition`, `Kafka.Timeout` (the log's end was
//! not reached within the task's timeout), `Kafka.RecordsTooLarge` (more than
//! [`MAX_READ_BYTES`] of values: narrow the range or set `MaxItems`), `Kafka.ReadFailed`;
//! parameters of the wrong type are `States.Runtime`.

use crate::config::ExecutorConfig;
use crate::pod::client_config;
use base64::Engine as _;
use expressway_asl::timestamp::parse_timestamp;
use expressway_engine::tasks::Handler;
use expressway_engine::{TaskError, TaskRequest};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The resource.
pub const KAFKA_GET_RECORDS: &str = "arn:aws:states:::kafka:getRecords";

/// Bytes of keys and values one read may return (the items live in the execution's memory).
pub const MAX_READ_BYTES: usize = 64 << 20;

/// Without a task timeout, how long a read may take.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

fn runtime(cause: impl Into<String>) -> TaskError {
    TaskError::new("States.Runtime", cause.into())
}

fn kafka_error(name: &str, cause: impl Into<String>) -> TaskError {
    TaskError::new(format!("Kafka.{name}"), cause.into())
}

/// Where a partition's range begins or ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Bound {
    Offset(i64),
    /// Epoch milliseconds.
    Time(i64),
}

#[derive(Debug)]
struct Params {
    topic: String,
    partitions: Option<Vec<i32>>,
    start: Option<Bound>,
    end: Option<Bound>,
    max_records: usize,
}

fn parse(input: &Value) -> Result<Params, TaskError> {
    let p = input
        .as_object()
        .ok_or_else(|| runtime("kafka:getRecords: the parameters must be a JSON object"))?;
    for k in p.keys() {
        if !matches!(
            k.as_str(),
            "Topic"
                | "Partitions"
                | "StartOffset"
                | "EndOffset"
                | "StartTimestamp"
                | "EndTimestamp"
                | "MaxRecords"
        ) {
            return Err(runtime(format!(
                "kafka:getRecords: unknown parameter '{k}' (Topic, Partitions, StartOffset, EndOffset, StartTimestamp, EndTimestamp, MaxRecords)"
            )));
        }
    }
    let topic = match p.get("Topic") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        _ => return Err(runtime("kafka:getRecords: Topic (a string) is required")),
    };
    let partitions = match p.get("Partitions") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| {
                    v.as_i64()
                        .and_then(|n| i32::try_from(n).ok())
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| {
                            runtime("kafka:getRecords: Partitions must hold partition numbers")
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(runtime("kafka:getRecords: Partitions must be an array")),
    };
    let offset = |name: &str| -> Result<Option<Bound>, TaskError> {
        match p.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .filter(|n| *n >= 0)
                .map(|n| Some(Bound::Offset(n)))
                .ok_or_else(|| {
                    runtime(format!(
                        "kafka:getRecords: {name} must be a non-negative integer"
                    ))
                }),
        }
    };
    let time = |name: &str| -> Result<Option<Bound>, TaskError> {
        match p.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_timestamp(s)
                .map(|t| Some(Bound::Time(t.timestamp_millis())))
                .ok_or_else(|| {
                    runtime(format!(
                        "kafka:getRecords: {name} '{s}' is not an ISO-8601 timestamp"
                    ))
                }),
            Some(v) => v
                .as_i64()
                .filter(|n| *n >= 0)
                .map(|n| Some(Bound::Time(n)))
                .ok_or_else(|| {
                    runtime(format!(
                        "kafka:getRecords: {name} must be an ISO-8601 string or epoch milliseconds"
                    ))
                }),
        }
    };
    let pick = |o: Option<Bound>, t: Option<Bound>, what: &str| match (o, t) {
        (Some(_), Some(_)) => Err(runtime(format!(
            "kafka:getRecords: give {what}Offset or {what}Timestamp, not both"
        ))),
        (o, t) => Ok(o.or(t)),
    };
    let start = pick(offset("StartOffset")?, time("StartTimestamp")?, "Start")?;
    let end = pick(offset("EndOffset")?, time("EndTimestamp")?, "End")?;
    let max_records = match p.get("MaxRecords") {
        None | Some(Value::Null) => usize::MAX,
        Some(v) => v
            .as_u64()
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .ok_or_else(|| {
                runtime("kafka:getRecords: MaxRecords must be a non-negative integer")
            })?,
    };
    Ok(Params {
        topic,
        partitions,
        start,
        end,
        max_records,
    })
}

/// The `kafka:getRecords` handler for a pod's brokers and client settings.
pub fn handler(config: &ExecutorConfig) -> Handler {
    let config = Arc::new(config.clone());
    Arc::new(move |req: TaskRequest| {
        let config = config.clone();
        Box::pin(async move {
            let params = parse(&req.input)?;
            let timeout = req.timeout.unwrap_or(DEFAULT_TIMEOUT);
            let started = Instant::now();
            let out = tokio::task::spawn_blocking(move || read(&config, &params, timeout))
                .await
                .map_err(|e| kafka_error("ReadFailed", e.to_string()))?;
            if let Ok(v) = &out {
                let n = v["Records"].as_array().map_or(0, Vec::len);
                tracing::debug!(
                    execution = %req.execution_arn,
                    records = n,
                    ms = started.elapsed().as_millis() as u64,
                    "kafka:getRecords read"
                );
                metrics::counter!(crate::telemetry::names::KAFKA_RECORDS_READ).increment(n as u64);
            }
            out
        })
    })
}

fn read(config: &ExecutorConfig, p: &Params, timeout: Duration) -> Result<Value, TaskError> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let failed = |e: KafkaError| kafka_error("ReadFailed", e.to_string());
    let consumer: BaseConsumer = client_config(
        config,
        &[],
        &[
            ("group.id", "expressway-kafka-get-records"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "true"),
            ("isolation.level", "read_committed"),
        ],
    )
    .create()
    .map_err(failed)?;
    let metadata = consumer
        .fetch_metadata(Some(&p.topic), left())
        .map_err(failed)?;
    let known: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == p.topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if known.is_empty() {
        return Err(kafka_error(
            "UnknownTopic",
            format!("The topic '{}' does not exist", p.topic),
        ));
    }
    let partitions = match &p.partitions {
        Some(list) => {
            if let Some(bad) = list.iter().find(|n| !known.contains(n)) {
                return Err(kafka_error(
                    "UnknownPartition",
                    format!("The topic '{}' has no partition {bad}", p.topic),
                ));
            }
            list.clone()
        }
        None => known,
    };
    // Each partition's [start, end) as offsets.
    let mut ranges: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for &partition in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(&p.topic, partition, left())
            .map_err(failed)?;
        let resolve = |b: Option<Bound>, default: i64| -> Result<i64, TaskError> {
            match b {
                None => Ok(default),
                Some(Bound::Offset(o)) => Ok(o.clamp(low, high)),
                Some(Bound::Time(t)) => {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition_offset(&p.topic, partition, Offset::Offset(t))
                        .map_err(failed)?;
                    let found = consumer.offsets_for_times(tpl, left()).map_err(failed)?;
                    Ok(match found.elements().first().map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o.clamp(low, high),
                        _ => high,
                    })
                }
            }
        };
        let start = resolve(p.start, low)?;
        let end = resolve(p.end, high)?;
        if start < end {
            ranges.insert(partition, (start, end));
        }
    }
    let mut records: BTreeMap<(i32, i64), Value> = BTreeMap::new();
    if !ranges.is_empty() && p.max_records > 0 {
        let mut tpl = TopicPartitionList::new();
        for (partition, (start, _)) in &ranges {
            tpl.add_partition_offset(&p.topic, *partition, Offset::Offset(*start))
                .map_err(failed)?;
        }
        consumer.assign(&tpl).map_err(failed)?;
        let mut open: BTreeMap<i32, i64> = ranges.iter().map(|(p, (_, e))| (*p, *e)).collect();
        let mut bytes = 0usize;
        while !open.is_empty() {
            // Enough records for MaxRecords from the lowest partitions: stop early.
            if records.len() >= p.max_records && enough(&records, &open, p.max_records) {
                break;
            }
            if left().is_zero() {
                return Err(kafka_error(
                    "Timeout",
                    format!(
                        "The end of '{}' was not reached within {:.3} s ({} records read)",
                        p.topic,
                        timeout.as_secs_f64(),
                        records.len()
                    ),
                ));
            }
            match consumer.poll(left().min(Duration::from_millis(500))) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    open.remove(&partition);
                }
                Some(Err(e)) => return Err(failed(e)),
                Some(Ok(m)) => {
                    let partition = m.partition();
                    let Some(&end) = open.get(&partition) else {
                        continue;
                    };
                    if m.offset() >= end {
                        open.remove(&partition);
                        continue;
                    }
                    bytes += m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len);
                    if bytes > MAX_READ_BYTES {
                        return Err(kafka_error(
                            "RecordsTooLarge",
                            format!("The records read exceed {MAX_READ_BYTES} bytes: narrow the range or set MaxItems"),
                        ));
                    }
                    records.insert((partition, m.offset()), record_json(&m));
                    if m.offset() + 1 >= end {
                        open.remove(&partition);
                    }
                }
            }
        }
    }
    Ok(serde_json::json!({
        "Records": records.into_values().take(p.max_records).collect::<Vec<_>>()
    }))
}

/// Whether the first `max` records in (partition, offset) order are all read: every partition
/// still open sorts after them.
fn enough(records: &BTreeMap<(i32, i64), Value>, open: &BTreeMap<i32, i64>, max: usize) -> bool {
    match records.keys().nth(max - 1) {
        Some((last_partition, _)) => open.keys().all(|p| p > last_partition),
        None => false,
    }
}

fn bytes_field(out: &mut Map<String, Value>, name: &str, bytes: Option<&[u8]>, json: bool) {
    let value = match bytes {
        None => Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(text) => match json
                .then(|| serde_json::from_str::<Value>(text).ok())
                .flatten()
            {
                Some(v) => v,
                None => Value::String(text.to_string()),
            },
            Err(_) => {
                out.insert(format!("{name}Encoding"), Value::from("base64"));
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
        },
    };
    out.insert(name.into(), value);
}

fn record_json(m: &rdkafka::message::BorrowedMessage<'_>) -> Value {
    let mut out = Map::new();
    out.insert("Topic".into(), Value::from(m.topic()));
    out.insert("Partition".into(), Value::from(m.partition()));
    out.insert("Offset".into(), Value::from(m.offset()));
    if let Some(ts) = m.timestamp().to_millis() {
        out.insert("Timestamp".into(), Value::from(ts));
    }
    bytes_field(&mut out, "Key", m.key(), false);
    bytes_field(&mut out, "Value", m.payload(), true);
    let mut headers = Map::new();
    if let Some(h) = m.headers() {
        for header in h.iter() {
            let v = header
                .value
                .map(|b| Value::String(String::from_utf8_lossy(b).into_owned()))
                .unwrap_or(Value::Null);
            headers.insert(header.key.to_string(), v);
        }
    }
    out.insert("Headers".into(), Value::Object(headers));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameters_are_checked() {
        let p = parse(
            &json!({"Topic": "t", "Partitions": [0, 2], "StartOffset": 3,
            "EndTimestamp": "2026-01-01T00:00:00Z", "MaxRecords": 5}),
        )
        .expect("valid");
        assert_eq!(p.partitions, Some(vec![0, 2]));
        assert_eq!(p.start, Some(Bound::Offset(3)));
        assert_eq!(p.end, Some(Bound::Time(1_767_225_600_000)));
        assert_eq!(p.max_records, 5);
        for (bad, says) in [
            (json!({}), "Topic"),
            (
                json!({"Topic": "t", "Offset": 1}),
                "unknown parameter 'Offset'",
            ),
            (
                json!({"Topic": "t", "StartOffset": 1, "StartTimestamp": 5}),
                "not both",
            ),
            (json!({"Topic": "t", "StartOffset": -1}), "StartOffset"),
            (
                json!({"Topic": "t", "EndTimestamp": "yesterday"}),
                "ISO-8601",
            ),
            (json!({"Topic": "t", "Partitions": [-1]}), "Partitions"),
        ] {
            let e = parse(&bad).expect_err("invalid");
            assert_eq!(e.error, "States.Runtime");
            assert!(
                e.cause.as_deref().unwrap_or("").contains(says),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn max_records_waits_only_for_the_partitions_that_sort_first() {
        let mut records = BTreeMap::new();
        records.insert((0, 0), Value::Null);
        records.insert((0, 1), Value::Null);
        let open: BTreeMap<i32, i64> = [(1, 10)].into_iter().collect();
        assert!(enough(&records, &open, 2));
        let open: BTreeMap<i32, i64> = [(0, 10), (1, 10)].into_iter().collect();
        assert!(!enough(&records, &open, 2));
        assert!(!enough(&records, &open, 3));
    }
}
