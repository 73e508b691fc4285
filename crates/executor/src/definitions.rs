//! Follows the compacted definitions topic (key = machine name, value = definition record,
//! tombstone = delete) from the beginning, so every pod sees every machine without restart.
//! The registry is marked loaded once the follower has caught up with the high watermarks it
//! saw at start (or found no topic).

use crate::config::ExecutorConfig;
use crate::pod::client_config;
use crate::registry::{Applied, Registry};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Starts a thread that follows the definitions `topic` into `registry` until `shutdown` is
/// set (used by the executor pod and by the gateway).
pub fn spawn_follower(
    config: &ExecutorConfig,
    topic: String,
    registry: Arc<Registry>,
    shutdown: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, crate::pod::ExecutorError> {
    // A plain assignment read from the beginning, never committed and never joining a group
    // (librdkafka still wants a group.id for `assign`).
    let cfg = client_config(
        config,
        &[
            ("enable.partition.eof", "false"),
            ("fetch.wait.max.ms", "50"),
        ],
        &[
            ("group.id", "expressway-definitions-follower"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
        ],
    );
    let consumer: BaseConsumer = cfg.create()?;
    Ok(std::thread::Builder::new()
        .name("expressway-definitions".into())
        .spawn(move || follow(consumer, topic, registry, shutdown))?)
}

fn follow(
    consumer: BaseConsumer,
    topic: String,
    registry: Arc<Registry>,
    shutdown: Arc<AtomicBool>,
) {
    // partition -> high watermark still to reach before the initial load is complete
    let mut targets: Option<HashMap<i32, i64>> = None;
    while !shutdown.load(Ordering::Acquire) {
        if targets.is_none() {
            match assign_all(&consumer, &topic) {
                Ok(Some(t)) => {
                    tracing::info!(topic = %topic, partitions = t.len(), "following definitions");
                    targets = Some(t);
                }
                Ok(None) => {
                    // No topic (yet): nothing to catch up with; keep looking for it.
                    registry.set_loaded();
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
                Err(e) => {
                    tracing::warn!(topic = %topic, error = %e, "definitions topic metadata");
                    registry.set_loaded();
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            }
        }
        if let Some(t) = &targets {
            if t.is_empty() {
                registry.set_loaded();
            }
        }
        let polled = consumer.poll(Duration::from_millis(100));
        // The position passes transaction markers and aborted records, which `poll` never
        // returns: a writer waiting for the follower to reach a high watermark needs it.
        if let Ok(positions) = consumer.position() {
            for e in positions.elements() {
                if let Offset::Offset(o) = e.offset() {
                    registry.note_followed(e.partition(), o);
                }
            }
        }
        match polled {
            None => {}
            Some(Err(e)) => tracing::warn!(error = %e, "definitions consumer"),
            Some(Ok(msg)) => {
                let key = msg.key().unwrap_or_default();
                match registry.apply_record(key, msg.payload()) {
                    Ok(Applied::Upserted(name)) => {
                        crate::telemetry::touch_machine(&name);
                        tracing::info!(machine = %name, "definition registered");
                    }
                    Ok(Applied::Removed(name)) => {
                        tracing::info!(machine = %name, "definition removed")
                    }
                    Ok(Applied::Shadowed(key)) => {
                        tracing::warn!(
                            key = %key,
                            "definition record stored but shadowed: a definitions-directory file defines this machine, and the file's definition keeps running"
                        )
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, offset = msg.offset(), "ignoring definition record")
                    }
                }
                metrics::gauge!(crate::telemetry::names::DEFINITIONS_SHADOWED)
                    .set(registry.shadowed_count() as f64);
                if let Some(t) = targets.as_mut() {
                    if let Some(high) = t.get(&msg.partition()) {
                        if msg.offset() + 1 >= *high {
                            t.remove(&msg.partition());
                        }
                    }
                }
            }
        }
    }
}

/// Assigns every partition of `topic` from the beginning; returns the high watermarks to
/// reach, or `None` when the topic does not exist.
fn assign_all(
    consumer: &BaseConsumer,
    topic: &str,
) -> Result<Option<HashMap<i32, i64>>, rdkafka::error::KafkaError> {
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    if t.error().is_some() || t.partitions().is_empty() {
        return Ok(None);
    }
    let mut tpl = TopicPartitionList::new();
    let mut targets = HashMap::new();
    for p in t.partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(5))?;
        if high > low {
            targets.insert(p.id(), high);
        }
    }
    consumer.assign(&tpl)?;
    Ok(Some(targets))
}
