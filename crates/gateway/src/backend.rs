//! Where the gateway writes: the definitions topic, the start topic, and the log/result topics
//! of synchronous executions. [`KafkaBackend`] is rdkafka; [`MemoryBackend`] records writes for
//! tests.

use crate::definitions_writer::{DefinitionsWriter, ExclusiveError, Lease};
use futures::future::BoxFuture;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A write that was not acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("kafka: {0}")]
pub struct BackendError(pub String);

/// Where a start event landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// The gateway's writes; each future resolves once the brokers acknowledged.
pub trait Backend: Send + Sync + 'static {
    /// Writes a definitions-topic record (`None` = tombstone).
    fn put_definition(
        &self,
        key: String,
        value: Option<Vec<u8>>,
    ) -> BoxFuture<'static, Result<(), BackendError>>;
    /// Takes the definitions writer lease, fencing other replicas (see
    /// [`crate::definitions_writer`]).
    fn acquire_writer(&self) -> BoxFuture<'static, Result<Lease, ExclusiveError>>;
    /// Writes definitions records (key, value; `None` = tombstone) in one transaction as the
    /// lease holder; [`ExclusiveError::Fenced`] when another replica took the lease.
    fn write_exclusive(
        &self,
        records: Vec<(String, Option<Vec<u8>>)>,
    ) -> BoxFuture<'static, Result<(), ExclusiveError>>;
    /// Publishes a JSON start event.
    fn publish_start(&self, value: Vec<u8>) -> BoxFuture<'static, Result<Position, BackendError>>;
    /// Publishes a synchronous execution's log record (key = execution ARN) and result record
    /// (key = execution name).
    fn publish_outputs(
        &self,
        execution_arn: String,
        log: Vec<u8>,
        execution_name: String,
        result: Vec<u8>,
    ) -> BoxFuture<'static, Result<(), BackendError>>;
    /// Publishes a callback record (SendTask*) to the callback topic's partition for the
    /// token's start partition (`expressway_wire::task_token::callback_partition`).
    fn publish_callback(
        &self,
        token_partition: i32,
        value: Vec<u8>,
    ) -> BoxFuture<'static, Result<Position, BackendError>>;
}

/// Topic names the Kafka backend writes to.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Start events.
    pub start: String,
    /// Log records.
    pub logs: String,
    /// Result records.
    pub results: String,
    /// Compacted definitions.
    pub definitions: String,
    /// Callbacks of `.waitForTaskToken` Tasks.
    pub callbacks: String,
}

impl Default for Topics {
    fn default() -> Topics {
        use expressway_wire::topics;
        Topics {
            start: topics::START.into(),
            logs: topics::LOGS.into(),
            results: topics::RESULTS.into(),
            definitions: topics::DEFINITIONS.into(),
            callbacks: topics::CALLBACKS.into(),
        }
    }
}

/// The rdkafka backend: one idempotent producer (`acks=all`).
pub struct KafkaBackend {
    producer: FutureProducer,
    topics: Topics,
    writer: Arc<DefinitionsWriter>,
    /// Partitions of the callback topic, and when they were read.
    callback_partitions: Arc<Mutex<Option<(i32, std::time::Instant)>>>,
}

impl std::fmt::Debug for KafkaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBackend")
            .field("topics", &self.topics)
            .finish()
    }
}

const SEND_TIMEOUT: Duration = Duration::from_secs(10);

impl KafkaBackend {
    /// Creates the producer from `bootstrap.servers` plus extra librdkafka settings.
    pub fn new(
        brokers: &str,
        kafka: &[(String, String)],
        topics: Topics,
    ) -> Result<KafkaBackend, BackendError> {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", brokers);
        c.set("linger.ms", "1");
        c.set("acks", "all");
        for (k, v) in kafka {
            c.set(k, v);
        }
        let writer = Arc::new(DefinitionsWriter::new(
            c.clone(),
            topics.definitions.clone(),
        ));
        c.set("enable.idempotence", "true");
        let producer = c.create().map_err(|e| BackendError(e.to_string()))?;
        Ok(KafkaBackend {
            producer,
            topics,
            writer,
            callback_partitions: Arc::new(Mutex::new(None)),
        })
    }

    /// The callback topic's partition count (read again every 30 s).
    async fn callback_partition_count(
        producer: FutureProducer,
        topic: String,
        cache: Arc<Mutex<Option<(i32, std::time::Instant)>>>,
    ) -> Result<i32, BackendError> {
        if let Some((n, at)) = *cache.lock().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < Duration::from_secs(30) {
                return Ok(n);
            }
        }
        let t = topic.clone();
        let n = tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer as _;
            producer
                .client()
                .fetch_metadata(Some(&t), SEND_TIMEOUT)
                .map_err(|e| BackendError(e.to_string()))
                .map(|md| {
                    md.topics()
                        .iter()
                        .find(|x| x.name() == t && x.error().is_none())
                        .map_or(0, |x| x.partitions().len() as i32)
                })
        })
        .await
        .map_err(|e| BackendError(e.to_string()))??;
        if n == 0 {
            return Err(BackendError(format!(
                "the callback topic {topic} does not exist"
            )));
        }
        *cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((n, std::time::Instant::now()));
        Ok(n)
    }

    async fn send(
        producer: FutureProducer,
        topic: String,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
    ) -> Result<Position, BackendError> {
        let mut record = FutureRecord::<[u8], [u8]>::to(&topic);
        if let Some(k) = &key {
            record = record.key(k);
        }
        if let Some(v) = &value {
            record = record.payload(v);
        }
        match producer.send(record, SEND_TIMEOUT).await {
            Ok(delivery) => Ok(Position {
                topic: topic.clone(),
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((e, _)) => Err(BackendError(e.to_string())),
        }
    }
}

impl Backend for KafkaBackend {
    fn put_definition(
        &self,
        key: String,
        value: Option<Vec<u8>>,
    ) -> BoxFuture<'static, Result<(), BackendError>> {
        let (p, t) = (self.producer.clone(), self.topics.definitions.clone());
        Box::pin(async move {
            KafkaBackend::send(p, t, Some(key.into_bytes()), value)
                .await
                .map(|_| ())
        })
    }

    fn acquire_writer(&self) -> BoxFuture<'static, Result<Lease, ExclusiveError>> {
        let w = self.writer.clone();
        Box::pin(async move { w.acquire().await })
    }

    fn write_exclusive(
        &self,
        records: Vec<(String, Option<Vec<u8>>)>,
    ) -> BoxFuture<'static, Result<(), ExclusiveError>> {
        let w = self.writer.clone();
        Box::pin(async move { w.write(records).await })
    }

    fn publish_start(&self, value: Vec<u8>) -> BoxFuture<'static, Result<Position, BackendError>> {
        let (p, t) = (self.producer.clone(), self.topics.start.clone());
        Box::pin(KafkaBackend::send(p, t, None, Some(value)))
    }

    fn publish_outputs(
        &self,
        execution_arn: String,
        log: Vec<u8>,
        execution_name: String,
        result: Vec<u8>,
    ) -> BoxFuture<'static, Result<(), BackendError>> {
        let p = self.producer.clone();
        let (logs, results) = (self.topics.logs.clone(), self.topics.results.clone());
        Box::pin(async move {
            let (a, b) = futures::join!(
                KafkaBackend::send(p.clone(), logs, Some(execution_arn.into_bytes()), Some(log)),
                KafkaBackend::send(p, results, Some(execution_name.into_bytes()), Some(result)),
            );
            a.and(b).map(|_| ())
        })
    }

    fn publish_callback(
        &self,
        token_partition: i32,
        value: Vec<u8>,
    ) -> BoxFuture<'static, Result<Position, BackendError>> {
        let (p, t) = (self.producer.clone(), self.topics.callbacks.clone());
        let cache = self.callback_partitions.clone();
        Box::pin(async move {
            let n = KafkaBackend::callback_partition_count(p.clone(), t.clone(), cache).await?;
            let partition = expressway_wire::task_token::callback_partition(token_partition, n);
            let record = FutureRecord::<[u8], [u8]>::to(&t)
                .partition(partition)
                .payload(&value);
            match p.send(record, SEND_TIMEOUT).await {
                Ok(d) => Ok(Position {
                    topic: t.clone(),
                    partition: d.partition,
                    offset: d.offset,
                }),
                Err((e, _)) => Err(BackendError(e.to_string())),
            }
        })
    }
}

/// A record written to the [`MemoryBackend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Topic (`definitions`, `start`, `logs`, `results`, `callbacks`).
    pub topic: &'static str,
    /// Key.
    pub key: Option<String>,
    /// Value (`None` = tombstone).
    pub value: Option<Vec<u8>>,
}

/// Records every write in memory (tests); start events land on partition 0 at increasing
/// offsets.
#[derive(Debug, Default, Clone)]
pub struct MemoryBackend {
    /// Everything written, in order.
    pub written: Arc<Mutex<Vec<Written>>>,
}

impl MemoryBackend {
    fn push(&self, w: Written) -> usize {
        let mut v = self.written.lock().unwrap_or_else(|p| p.into_inner());
        v.push(w);
        v.iter().filter(|w| w.topic == "start").count()
    }

    /// The records written to `topic`.
    pub fn records(&self, topic: &str) -> Vec<Written> {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|w| w.topic == topic)
            .cloned()
            .collect()
    }
}

impl Backend for MemoryBackend {
    fn put_definition(
        &self,
        key: String,
        value: Option<Vec<u8>>,
    ) -> BoxFuture<'static, Result<(), BackendError>> {
        self.push(Written {
            topic: "definitions",
            key: Some(key),
            value,
        });
        Box::pin(async { Ok(()) })
    }

    fn acquire_writer(&self) -> BoxFuture<'static, Result<Lease, ExclusiveError>> {
        Box::pin(async { Ok(Lease::Held) })
    }

    fn write_exclusive(
        &self,
        records: Vec<(String, Option<Vec<u8>>)>,
    ) -> BoxFuture<'static, Result<(), ExclusiveError>> {
        for (key, value) in records {
            self.push(Written {
                topic: "definitions",
                key: Some(key),
                value,
            });
        }
        Box::pin(async { Ok(()) })
    }

    fn publish_start(&self, value: Vec<u8>) -> BoxFuture<'static, Result<Position, BackendError>> {
        let n = self.push(Written {
            topic: "start",
            key: None,
            value: Some(value),
        });
        Box::pin(async move {
            Ok(Position {
                topic: expressway_wire::topics::START.into(),
                partition: 0,
                offset: n as i64 - 1,
            })
        })
    }

    fn publish_outputs(
        &self,
        execution_arn: String,
        log: Vec<u8>,
        execution_name: String,
        result: Vec<u8>,
    ) -> BoxFuture<'static, Result<(), BackendError>> {
        self.push(Written {
            topic: "logs",
            key: Some(execution_arn),
            value: Some(log),
        });
        self.push(Written {
            topic: "results",
            key: Some(execution_name),
            value: Some(result),
        });
        Box::pin(async { Ok(()) })
    }

    /// Key: the token's partition (as text).
    fn publish_callback(
        &self,
        token_partition: i32,
        value: Vec<u8>,
    ) -> BoxFuture<'static, Result<Position, BackendError>> {
        self.push(Written {
            topic: "callbacks",
            key: Some(token_partition.to_string()),
            value: Some(value),
        });
        let offset = self.records("callbacks").len() as i64 - 1;
        Box::pin(async move {
            Ok(Position {
                topic: expressway_wire::topics::CALLBACKS.into(),
                partition: token_partition,
                offset,
            })
        })
    }
}
