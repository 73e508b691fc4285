//! The console's background reader: one group-less consumer (assign, never commits) on the
//! results and logs topics, from the recent tail of each partition, feeding the [`Store`].

use super::store::{Applied, Store};
use expressway_executor::telemetry::names;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where and how the reader reads.
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Extra librdkafka settings (`--kafka`), applied before the reader's own.
    pub kafka: Vec<(String, String)>,
    /// The results topic.
    pub results_topic: String,
    /// The logs topic.
    pub logs_topic: String,
    /// Records read back per partition at start (the ring's history).
    pub history_per_partition: i64,
}

/// Why the reader could not start.
#[derive(Debug, thiserror::Error)]
#[error("console reader: {0}")]
pub struct ReaderError(String);

/// The consumer settings of the reader, in one place (an `isolation.level` for exactly-once
/// pods belongs here, or comes through `kafka`).
pub fn consumer_config(cfg: &ReaderConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in &cfg.kafka {
        c.set(k, v);
    }
    // `assign` needs a group id; nothing is ever committed, so the group never exists on
    // the brokers.
    c.set("group.id", "expressway-console");
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    c.set("enable.partition.eof", "false");
    c
}

/// Starts the reader thread; it stops when `stop` is set.
pub fn spawn(
    cfg: ReaderConfig,
    store: Arc<Store>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, ReaderError> {
    let consumer: BaseConsumer = consumer_config(&cfg)
        .create()
        .map_err(|e| ReaderError(e.to_string()))?;
    for kind in ["results", "logs"] {
        for outcome in ["applied", "invalid", "dropped"] {
            metrics::counter!(names::CONSOLE_RECORDS, "topic" => kind, "outcome" => outcome)
                .increment(0);
        }
    }
    std::thread::Builder::new()
        .name("console-reader".into())
        .spawn(move || run(&consumer, &cfg, &store, &stop))
        .map_err(|e| ReaderError(e.to_string()))
}

fn partitions(consumer: &BaseConsumer, topic: &str) -> Vec<i32> {
    match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
        Ok(md) => md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect(),
        Err(e) => {
            tracing::debug!(topic, error = %e, "console reader: metadata");
            Vec::new()
        }
    }
}

fn run(consumer: &BaseConsumer, cfg: &ReaderConfig, store: &Store, stop: &AtomicBool) {
    // Wait for both topics (a gateway may start before the executor created them).
    let mut warned = false;
    let assignment = loop {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let results = partitions(consumer, &cfg.results_topic);
        let logs = partitions(consumer, &cfg.logs_topic);
        if !results.is_empty() && !logs.is_empty() {
            break (results, logs);
        }
        if !warned {
            tracing::info!(results = %cfg.results_topic, logs = %cfg.logs_topic, "console reader: waiting for the topics");
            warned = true;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let mut tpl = TopicPartitionList::new();
    let tail = Offset::OffsetTail(cfg.history_per_partition.max(1));
    for (topic, parts) in [
        (&cfg.results_topic, &assignment.0),
        (&cfg.logs_topic, &assignment.1),
    ] {
        for p in parts {
            if let Err(e) = tpl.add_partition_offset(topic, *p, tail) {
                tracing::warn!(topic = %topic, partition = p, error = %e, "console reader: cannot assign");
            }
        }
    }
    if let Err(e) = consumer.assign(&tpl) {
        tracing::error!(error = %e, "console reader: assign failed; the console shows no executions");
        return;
    }
    tracing::info!(
        results = %cfg.results_topic,
        logs = %cfg.logs_topic,
        partitions = assignment.0.len() + assignment.1.len(),
        history_per_partition = cfg.history_per_partition,
        "console reader: reading executions"
    );
    while !stop.load(Ordering::Acquire) {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => tracing::debug!(error = %e, "console reader: poll"),
            Some(Ok(m)) => {
                let value = m.payload().unwrap_or_default();
                let (kind, outcome) = if m.topic() == cfg.results_topic {
                    ("results", store.apply_result(value))
                } else {
                    ("logs", store.apply_log(value))
                };
                if outcome == Applied::Dropped {
                    tracing::debug!(
                        topic = m.topic(),
                        "console reader: record dropped (machine bound)"
                    );
                }
                metrics::counter!(names::CONSOLE_RECORDS, "topic" => kind, "outcome" => outcome.as_str())
                    .increment(1);
            }
        }
    }
}
