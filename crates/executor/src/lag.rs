//! Partition ownership and lag: `expressway_consumer_lag`, `expressway_consumer_group_lag` and
//! `expressway_partitions_assigned`, rendered into `/metrics` from this module's table.
//!
//! Why not gauges of the `metrics` facade: a gauge there lives forever, so a pod kept exporting
//! the last lag of partitions another pod had taken, and nothing showed a partition that no pod
//! owned (its lag froze at the last value, or 0, while its records waited). Here:
//! * the owner's lag (librdkafka statistics) is kept only while the pod owns the partition:
//!   revoking it removes the series;
//! * the group's lag (high watermark minus the group's committed offset) is queried for every
//!   partition of the consumed topics, owned or not, by a thread of every pod
//!   ([`spawn_group_lag`]), so an unowned partition's lag is visible and grows;
//! * `expressway_partitions_assigned{topic}` counts what this pod owns (the dashboard compares
//!   the group's partitions with the sum over pods to show unowned ones).

use crate::config::ExecutorConfig;
use crate::telemetry::names;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often the group's committed offsets and high watermarks are queried.
pub const GROUP_LAG_INTERVAL: Duration = Duration::from_secs(5);
/// Timeout of each of those queries.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

type Key = (String, i32);

struct Owned {
    /// The [`Executor`](crate::Executor) that owns the partition (several can share a process
    /// in tests; one's revoke must not remove another's assignment).
    owner: u64,
    /// From the last statistics, once there were any.
    lag: Option<i64>,
}

struct Table {
    topics: BTreeSet<String>,
    owned: BTreeMap<Key, Owned>,
    group: BTreeMap<Key, i64>,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    topics: BTreeSet::new(),
    owned: BTreeMap::new(),
    group: BTreeMap::new(),
});

fn table() -> MutexGuard<'static, Table> {
    TABLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fresh owner id for one executor.
pub(crate) fn new_owner() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The executor consumes `topics` (their assigned-partition count is exported, 0 included).
pub(crate) fn subscribed(topics: &[&str]) {
    let mut t = table();
    t.topics.extend(topics.iter().map(|s| s.to_string()));
}

/// `owner` was assigned the partition.
pub(crate) fn assigned(owner: u64, topic: &str, partition: i32) {
    table()
        .owned
        .insert((topic.to_string(), partition), Owned { owner, lag: None });
}

/// `owner` released the partition: its lag series goes away.
pub(crate) fn revoked(owner: u64, topic: &str, partition: i32) {
    let mut t = table();
    let key = (topic.to_string(), partition);
    if t.owned.get(&key).is_some_and(|o| o.owner == owner) {
        t.owned.remove(&key);
    }
}

/// `owner` released everything (shutdown).
pub(crate) fn release_all(owner: u64) {
    table().owned.retain(|_, o| o.owner != owner);
}

/// The owner's lag from librdkafka statistics; ignored for partitions `owner` does not own
/// (statistics can arrive after a revoke, and they list unassigned partitions too).
pub(crate) fn set_lag(owner: u64, topic: &str, partition: i32, lag: i64) {
    let mut t = table();
    if let Some(o) = t.owned.get_mut(&(topic.to_string(), partition)) {
        if o.owner == owner {
            o.lag = Some(lag);
        }
    }
}

/// Replaces the group's lag of `topic` (None: unknown, e.g. the brokers did not answer).
fn set_group_lag(topic: &str, lags: Option<Vec<(i32, i64)>>) {
    let mut t = table();
    t.group.retain(|(tp, _), _| tp != topic);
    for (partition, lag) in lags.into_iter().flatten() {
        t.group.insert((topic.to_string(), partition), lag);
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends the three gauges in the Prometheus text format.
pub fn render(out: &mut String) {
    let t = table();
    let _ = writeln!(
        out,
        "# HELP {} Records of an owned partition not yet fetched by this pod (librdkafka statistics)\n# TYPE {} gauge",
        names::CONSUMER_LAG,
        names::CONSUMER_LAG
    );
    for ((topic, partition), o) in &t.owned {
        if let Some(lag) = o.lag {
            let _ = writeln!(
                out,
                "{}{{topic=\"{}\",partition=\"{partition}\"}} {lag}",
                names::CONSUMER_LAG,
                escape(topic)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP {} Records after the group's committed offset, every partition (owned or not)\n# TYPE {} gauge",
        names::GROUP_LAG,
        names::GROUP_LAG
    );
    for ((topic, partition), lag) in &t.group {
        let _ = writeln!(
            out,
            "{}{{topic=\"{}\",partition=\"{partition}\"}} {lag}",
            names::GROUP_LAG,
            escape(topic)
        );
    }
    let _ = writeln!(
        out,
        "# HELP {} Partitions this pod owns\n# TYPE {} gauge",
        names::PARTITIONS_ASSIGNED,
        names::PARTITIONS_ASSIGNED
    );
    for topic in &t.topics {
        let n = t.owned.keys().filter(|(tp, _)| tp == topic).count();
        let _ = writeln!(
            out,
            "{}{{topic=\"{}\"}} {n}",
            names::PARTITIONS_ASSIGNED,
            escape(topic)
        );
    }
}

/// Starts the thread that queries the group's lag of `topics` every [`GROUP_LAG_INTERVAL`]
/// until `shutdown` is set. It has its own consumer with the group's id that never joins the
/// group (no subscription): it only reads committed offsets and watermarks.
pub(crate) fn spawn_group_lag(
    config: &ExecutorConfig,
    topics: Vec<String>,
    shutdown: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, crate::ExecutorError> {
    let consumer: BaseConsumer = crate::pod::client_config(
        config,
        &[],
        &[("group.id", &config.group), ("enable.auto.commit", "false")],
    )
    .create()?;
    Ok(std::thread::Builder::new()
        .name("expressway-group-lag".into())
        .spawn(move || {
            let mut failing = false;
            while !shutdown.load(Ordering::Acquire) {
                for topic in &topics {
                    match group_lag(&consumer, topic, &shutdown) {
                        Ok(lags) => {
                            if failing {
                                tracing::info!(topic = %topic, "group lag queries answer again");
                                failing = false;
                            }
                            set_group_lag(topic, Some(lags));
                        }
                        Err(e) => {
                            if !failing {
                                tracing::warn!(topic = %topic, error = %e, "group lag query failed; expressway_consumer_group_lag is not exported until it answers");
                                failing = true;
                            }
                            set_group_lag(topic, None);
                        }
                    }
                }
                let next = Instant::now() + GROUP_LAG_INTERVAL;
                while !shutdown.load(Ordering::Acquire) && Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })?)
}

/// High watermark minus the committed offset of every partition of `topic` (minus the low
/// watermark where the group committed nothing yet: it would start there).
fn group_lag(
    consumer: &BaseConsumer,
    topic: &str,
    shutdown: &AtomicBool,
) -> Result<Vec<(i32, i64)>, rdkafka::error::KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), QUERY_TIMEOUT)?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    let committed = consumer.committed_offsets(tpl, QUERY_TIMEOUT)?;
    let mut lags = Vec::new();
    for e in committed.elements() {
        if shutdown.load(Ordering::Acquire) {
            break;
        }
        let (low, high) = consumer.fetch_watermarks(topic, e.partition(), QUERY_TIMEOUT)?;
        let from = match e.offset() {
            Offset::Offset(n) => n,
            _ => low,
        };
        lags.push((e.partition(), (high - from).max(0)));
    }
    Ok(lags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered() -> String {
        let mut s = String::new();
        render(&mut s);
        s
    }

    #[test]
    fn owner_lag_lives_only_while_owned() {
        let (a, b) = (new_owner(), new_owner());
        subscribed(&["lag-test"]);
        assigned(a, "lag-test", 0);
        set_lag(a, "lag-test", 0, 7);
        set_lag(b, "lag-test", 0, 99); // not b's: ignored
        set_lag(a, "lag-test", 1, 5); // not assigned: ignored
        let s = rendered();
        assert!(s.contains("expressway_consumer_lag{topic=\"lag-test\",partition=\"0\"} 7\n"));
        assert!(!s.contains("partition=\"1\"} 5"));
        assert!(s.contains("expressway_partitions_assigned{topic=\"lag-test\"} 1\n"));

        // Taken over by b: a's late revoke must not remove b's partition.
        assigned(b, "lag-test", 0);
        revoked(a, "lag-test", 0);
        assert!(!rendered().contains("partition=\"0\"} 7"));
        set_lag(b, "lag-test", 0, 3);
        assert!(
            rendered().contains("expressway_consumer_lag{topic=\"lag-test\",partition=\"0\"} 3\n")
        );

        revoked(b, "lag-test", 0);
        let s = rendered();
        assert!(!s.contains("expressway_consumer_lag{topic=\"lag-test\""));
        assert!(s.contains("expressway_partitions_assigned{topic=\"lag-test\"} 0\n"));
    }

    #[test]
    fn group_lag_is_replaced_per_topic() {
        set_group_lag("group-lag-test", Some(vec![(0, 4), (1, 0)]));
        let s = rendered();
        assert!(s.contains(
            "expressway_consumer_group_lag{topic=\"group-lag-test\",partition=\"0\"} 4\n"
        ));
        assert!(s.contains(
            "expressway_consumer_group_lag{topic=\"group-lag-test\",partition=\"1\"} 0\n"
        ));
        set_group_lag("group-lag-test", None);
        assert!(!rendered().contains("group-lag-test"));
    }
}
