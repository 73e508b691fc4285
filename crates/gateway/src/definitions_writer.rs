//! One writer at a time for the definitions topic's read-modify-write operations (version
//! numbers), across every gateway replica, chosen through Kafka itself.
//!
//! Every replica opens a transactional producer with the *same* `transactional.id` (derived from
//! the definitions topic). `init_transactions` of one replica fences every other one (the
//! broker bumps the producer epoch and aborts the fenced producer's open transaction), so at any
//! moment at most one replica can commit. A replica that has just taken the lease first waits
//! until its definitions follower has read up to the high watermarks it saw after fencing the
//! others ([`Lease::Fresh`]): every write committed before is then in its registry, and no other
//! replica can commit after it without fencing it in turn, which makes its next commit fail
//! ([`ExclusiveError::Fenced`]); the operation then takes the lease again, catches up and
//! recomputes. So two replicas publishing a version of one machine at the same moment get two
//! different numbers, in order.
//!
//! Readers see only committed records: librdkafka's default `isolation.level` is
//! `read_committed`, which the followers keep.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long the transactional calls may take (`init_transactions`, `commit_transaction`).
const TXN_TIMEOUT: Duration = Duration::from_secs(10);

/// What taking the writer lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This replica already held the lease: its registry has every committed write.
    Held,
    /// The lease was just taken: catch up with these high watermarks (partition -> offset)
    /// before reading the registry.
    Fresh(HashMap<i32, i64>),
}

/// Why an exclusive write did not commit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExclusiveError {
    /// Another replica took the lease (or the transaction was aborted): nothing was written;
    /// take the lease again, catch up and recompute.
    #[error("fenced by another writer: {0}")]
    Fenced(String),
    /// The brokers could not be reached or refused the write.
    #[error("kafka: {0}")]
    Failed(String),
}

/// The transactional producer of one replica (created lazily, recreated after fencing).
pub struct DefinitionsWriter {
    config: rdkafka::ClientConfig,
    topic: String,
    producer: tokio::sync::Mutex<Option<FutureProducer>>,
}

impl std::fmt::Debug for DefinitionsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefinitionsWriter")
            .field("topic", &self.topic)
            .finish()
    }
}

/// The `transactional.id` every replica writing `topic` shares.
pub fn transactional_id(topic: &str) -> String {
    format!("expressway-definitions-writer.{topic}")
}

impl DefinitionsWriter {
    /// A writer for `topic` with the gateway's client settings (`bootstrap.servers` and extras).
    pub fn new(mut config: rdkafka::ClientConfig, topic: String) -> DefinitionsWriter {
        config.set("transactional.id", transactional_id(&topic));
        config.set("enable.idempotence", "true");
        config.set("acks", "all");
        config.set("transaction.timeout.ms", "30000");
        DefinitionsWriter {
            config,
            topic,
            producer: tokio::sync::Mutex::new(None),
        }
    }

    /// Takes the lease if this replica does not hold it (fencing every other replica).
    pub async fn acquire(&self) -> Result<Lease, ExclusiveError> {
        let mut slot = self.producer.lock().await;
        if slot.is_some() {
            return Ok(Lease::Held);
        }
        let config = self.config.clone();
        let topic = self.topic.clone();
        let (producer, marks) = tokio::task::spawn_blocking(move || {
            let producer: FutureProducer = config.create().map_err(failed)?;
            producer.init_transactions(TXN_TIMEOUT).map_err(failed)?;
            let marks = high_watermarks(&config, &topic)?;
            Ok::<_, ExclusiveError>((producer, marks))
        })
        .await
        .map_err(|e| ExclusiveError::Failed(e.to_string()))??;
        tracing::info!(topic = %self.topic, "definitions writer lease taken (other gateway replicas fenced)");
        metrics::counter!(expressway_executor::telemetry::names::DEFINITIONS_WRITER_LEASES)
            .increment(1);
        *slot = Some(producer);
        Ok(Lease::Fresh(marks))
    }

    /// Writes `records` (key, value; `None` = tombstone) in one transaction. Any failure
    /// drops the producer: the next [`DefinitionsWriter::acquire`] takes the lease afresh.
    pub async fn write(
        &self,
        records: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<(), ExclusiveError> {
        let mut slot = self.producer.lock().await;
        let Some(producer) = slot.clone() else {
            return Err(ExclusiveError::Fenced("the lease is not held".into()));
        };
        let result = self.transaction(producer, records).await;
        if let Err(e) = &result {
            tracing::info!(topic = %self.topic, error = %e, "definitions write not committed; the lease is dropped");
            *slot = None;
        }
        result
    }

    async fn transaction(
        &self,
        producer: FutureProducer,
        records: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<(), ExclusiveError> {
        let p = producer.clone();
        tokio::task::spawn_blocking(move || p.begin_transaction())
            .await
            .map_err(|e| ExclusiveError::Failed(e.to_string()))?
            .map_err(classify)?;
        let sends = records.iter().map(|(k, v)| {
            let mut r = FutureRecord::<[u8], [u8]>::to(&self.topic).key(k.as_bytes());
            if let Some(v) = v {
                r = r.payload(v);
            }
            producer.send(r, TXN_TIMEOUT)
        });
        let mut first_error = None;
        for r in futures::future::join_all(sends).await {
            if let Err((e, _)) = r {
                first_error.get_or_insert(e);
            }
        }
        let p = producer.clone();
        let outcome = tokio::task::spawn_blocking(move || match first_error {
            Some(e) => {
                let _ = p.abort_transaction(TXN_TIMEOUT);
                Err(e)
            }
            None => p.commit_transaction(TXN_TIMEOUT),
        })
        .await
        .map_err(|e| ExclusiveError::Failed(e.to_string()))?;
        outcome.map_err(classify)
    }
}

fn failed(e: KafkaError) -> ExclusiveError {
    ExclusiveError::Failed(e.to_string())
}

/// Fencing and aborts mean "retry with the lease taken again"; the rest is a failure.
fn classify(e: KafkaError) -> ExclusiveError {
    let retriable = match &e {
        KafkaError::Transaction(t) => t.txn_requires_abort() || t.is_retriable() || t.is_fatal(),
        _ => matches!(
            e.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::Fenced
                    | RDKafkaErrorCode::InvalidProducerIdMapping
                    | RDKafkaErrorCode::InvalidTransactionalState
                    | RDKafkaErrorCode::ConcurrentTransactions
                    // a fenced producer purges what it still had queued or in flight
                    | RDKafkaErrorCode::PurgeQueue
                    | RDKafkaErrorCode::PurgeInflight
                    | RDKafkaErrorCode::Fatal
            )
        ),
    };
    if retriable {
        ExclusiveError::Fenced(e.to_string())
    } else {
        ExclusiveError::Failed(e.to_string())
    }
}

/// High watermarks of every non-empty partition of `topic` (none when it does not exist yet).
fn high_watermarks(
    config: &rdkafka::ClientConfig,
    topic: &str,
) -> Result<HashMap<i32, i64>, ExclusiveError> {
    let mut c = config.clone();
    c.remove("transactional.id");
    c.set("group.id", "expressway-definitions-writer");
    let consumer: BaseConsumer = c.create().map_err(failed)?;
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .map_err(failed)?;
    let mut marks = HashMap::new();
    let partitions = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>());
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(5))
            .map_err(failed)?;
        // An empty partition has nothing to catch up with (and its follower no position).
        if high > low {
            marks.insert(p, high);
        }
    }
    Ok(marks)
}

/// Shared form for [`crate::backend::KafkaBackend`].
pub type SharedWriter = Arc<DefinitionsWriter>;
