//! The executor pod: the consumer loop, per-partition offset tracking, execution tasks,
//! result/log/dead-letter production, rebalance and shutdown.
//!
//! Threads and ownership:
//! * One **consumer thread** owns the group consumer. It polls, starts one tokio task per record,
//!   and applies completions (sent back over a channel) to the partition's [`OffsetTracker`],
//!   storing the contiguous completed prefix with `store_offsets`; librdkafka's auto-commit
//!   commits what was stored. Rebalance callbacks run on this thread inside `poll`, so a revoke
//!   can block there: it drains the revoked partitions' in-flight executions (bounded by the
//!   drain timeout), stores, and commits synchronously before the partitions are released.
//! * Execution tasks run on the tokio runtime: decode, execute, produce the log and result
//!   records (or the dead letter), await both acknowledgements, then report completion.
//!   A record's offset is stored only after its output is acknowledged.
//! * Backpressure: records wait in a per-partition backlog until the partition
//!   (`max_in_flight_per_partition`) and the pod (`max_in_flight`) have a free execution slot;
//!   a partition is paused when its backlog is full (records or bytes, see `BacklogLimits`) and
//!   resumed at half (pausing on every full slot costs a fetch round trip per resume: 360/s
//!   instead of thousands/s on the mock cluster). Backlog records are started in the tracker,
//!   so the stored offset never passes them; on revoke/shutdown they are dropped (not stored) and
//!   redelivered to the next owner.
//! * Each assignment of a partition gets a fresh epoch; completions from an earlier epoch
//!   (executions that outlived a revoke's drain budget) are ignored.

use crate::callbacks::CallbackTransport;
use crate::config::{ExecutorConfig, Guarantee, LogFormat};
use crate::exactly_once::{PartitionTxn, SendError, Ticket, Transactions};
use crate::map_children::ClusterChildren;
use crate::offsets::OffsetTracker;
use crate::ordering::OrderingMode;
use crate::ordering::{Lane, Sequencer};
use crate::registry::{LookupError, MachineEntry, Registry};
use crate::telemetry::{names, Health};
use expressway_asl::StateMachine;
use expressway_engine::{execute, ExecutionRequest, Limits, Runtime, Status};
use expressway_wire::{start::decode_raw_input, MapChild, StartError, StartEvent};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Why the executor could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// A Kafka client could not be created or subscribed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// A thread could not be spawned.
    #[error("cannot spawn a thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A running executor. Call [`Executor::shutdown`] to drain and stop it.
pub struct Executor {
    shutdown: Arc<AtomicBool>,
    consumer_thread: Option<std::thread::JoinHandle<()>>,
    follower_thread: Option<std::thread::JoinHandle<()>>,
    group_lag_thread: Option<std::thread::JoinHandle<()>>,
    health: Arc<Health>,
    callbacks: Option<Arc<CallbackTransport>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("assigned", &self.health.is_assigned())
            .finish()
    }
}

/// A finished record (output acknowledged).
struct Completion {
    topic: String,
    partition: i32,
    epoch: u64,
    offset: i64,
    /// The ordering lane the record kept busy (see [`crate::ordering`]).
    lane: Option<Lane>,
    /// Exactly-once: the transaction the execution wrote into.
    generation: Option<u64>,
}

/// Where execution outputs go (`--guarantee`).
enum Output {
    /// The pod's idempotent producer; offsets are stored once outputs are acknowledged.
    AtLeastOnce(FutureProducer),
    /// The pod's transactional producer ([`crate::exactly_once`]).
    ExactlyOnce(Arc<Transactions>),
}

/// What execution tasks share.
struct Deps {
    output: Output,
    registry: Arc<Registry>,
    engine: Runtime,
    config: ExecutorConfig,
    bindings: HashMap<String, String>,
    /// Set when the drain budget of a shutdown is spent: stop retrying deliveries and abandon
    /// running executions (they are counted as aborted and redelivered to the next owner).
    abort: AtomicBool,
    /// Wakes running executions when `abort` is set.
    abort_notify: tokio::sync::Notify,
    /// Task tokens and the callback topic (`None`: no task token key; waiting Tasks fail).
    callbacks: Option<Arc<CallbackTransport>>,
}

impl Deps {
    /// Sets `abort` and wakes every running execution.
    fn abort_all(&self) {
        self.abort.store(true, Ordering::Release);
        self.abort_notify.notify_waiters();
    }
}

pub(crate) struct PartitionState {
    pub(crate) epoch: u64,
    /// Every record taken from the consumer (running or waiting in `backlog`) is started here.
    pub(crate) tracker: OffsetTracker,
    pub(crate) paused: bool,
    /// Executions running (spawned, not completed).
    pub(crate) running: usize,
    /// Records received but not started: waiting for a free slot of the partition or pod, or
    /// for an earlier record of their key (`--ordering`).
    pub(crate) backlog: Sequencer,
    /// Exactly-once: committed state and records to skip (unused at-least-once).
    pub(crate) eos: PartitionTxn,
    /// Highest offset started on this assignment (see [`LoopState::settle`]).
    pub(crate) dispatched_max: Option<i64>,
    /// Fired when the partition is revoked: its executions that wait for a callback stop
    /// (the next owner re-runs them and reads their callbacks again).
    pub(crate) revoked: Arc<Revocation>,
}

/// The end of one assignment of a partition, for the executions it started.
#[derive(Default)]
pub(crate) struct Revocation {
    fired: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Revocation {
    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    async fn wait(&self) {
        let notified = self.notify.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if self.fired.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

/// Backlog size at which a partition is paused (it is resumed at half). Pausing drops
/// librdkafka's prefetched records and each resume costs a fetch round trip (~500 ms measured
/// on the mock cluster), so the backlog must be deep enough to hide it.
#[derive(Debug, Clone, Copy)]
struct BacklogLimits {
    partition_records: usize,
    partition_bytes: usize,
    pod_records: usize,
    pod_bytes: usize,
}

impl BacklogLimits {
    fn new(per_partition: usize, total: usize, records: Option<usize>) -> BacklogLimits {
        BacklogLimits {
            partition_records: records
                .unwrap_or_else(|| per_partition.saturating_mul(16).max(1024))
                .max(1),
            partition_bytes: 16 << 20,
            pod_records: total.saturating_mul(16).max(4096),
            pod_bytes: 256 << 20,
        }
    }
}

/// Starts execution tasks.
#[derive(Clone)]
struct Spawner {
    deps: Arc<Deps>,
    tx: mpsc::Sender<Completion>,
    runtime: tokio::runtime::Handle,
}

impl Spawner {
    fn spawn(&self, msg: OwnedMessage, epoch: u64, lane: Option<Lane>, revoked: Arc<Revocation>) {
        let deps = self.deps.clone();
        let tx = self.tx.clone();
        self.runtime.spawn(async move {
            let (done, generation) = match &deps.output {
                Output::AtLeastOnce(_) => (process_guarded(&deps, &msg, &revoked).await, None),
                Output::ExactlyOnce(txns) => {
                    let ticket = Arc::new(Ticket::new(
                        txns.clone(),
                        msg.topic(),
                        msg.partition(),
                        epoch,
                    ));
                    let done = ticket
                        .clone()
                        .scope(process_guarded(&deps, &msg, &revoked))
                        .await;
                    (done, ticket.generation())
                }
            };
            if done {
                let _ = tx.send(Completion {
                    topic: msg.topic().to_string(),
                    partition: msg.partition(),
                    epoch,
                    offset: msg.offset(),
                    lane,
                    generation,
                });
            }
        });
    }
}

pub(crate) struct LoopState {
    pub(crate) partitions: HashMap<(String, i32), PartitionState>,
    pub(crate) next_epoch: u64,
    rx: mpsc::Receiver<Completion>,
    pub(crate) ordering: OrderingMode,
    /// `--guarantee exactly-once`.
    eos: Option<Arc<Transactions>>,
    /// Set by the consumer loop: a revoke or shutdown still starts the records held behind busy
    /// keys ([`LoopState::settle`]).
    spawner: Option<(Spawner, usize, usize)>,
}

pub(crate) struct PodContext {
    state: Mutex<LoopState>,
    health: Arc<Health>,
    drain_timeout: Duration,
    ordering: OrderingMode,
    /// Set once the shutdown drain is over: the final revoke (on close) must not wait again.
    closing: AtomicBool,
    /// This pod's owner id in [`crate::lag`].
    lag_owner: u64,
    /// Told which start partitions the pod owns.
    callbacks: Option<Arc<CallbackTransport>>,
}

pub(crate) type PodConsumer = BaseConsumer<PodContext>;

impl PodContext {
    fn lock(&self) -> MutexGuard<'_, LoopState> {
        // Only the consumer thread locks; a poisoned lock means a panic there already.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_assign(&self, consumer: &PodConsumer, tpl: &TopicPartitionList) {
        let mut st = self.lock();
        let mut resume = TopicPartitionList::new();
        // Exactly-once: what the previous owner committed (offsets and finished records above
        // them), waiting for its pending transaction to end.
        let mut committed = match &st.eos {
            Some(txns) => txns.fetch_committed(consumer, tpl),
            None => HashMap::new(),
        };
        for e in tpl.elements() {
            st.next_epoch += 1;
            let epoch = st.next_epoch;
            let key = (e.topic().to_string(), e.partition());
            let mut eos = PartitionTxn::default();
            if let Some(c) = committed.remove(&key) {
                if !c.done.is_empty() {
                    tracing::info!(topic = e.topic(), partition = e.partition(), offset = ?c.base, done = c.done.len(), "records above the committed offset are already done; skipping them");
                }
                eos.inherited = c.done.clone();
                eos.committed = c;
            }
            if let Some(txns) = &st.eos {
                txns.set_epoch(e.topic(), e.partition(), epoch);
            }
            st.partitions.insert(
                key,
                PartitionState {
                    epoch,
                    tracker: OffsetTracker::new(),
                    paused: false,
                    running: 0,
                    backlog: Sequencer::new(self.ordering),
                    eos,
                    dispatched_max: None,
                    revoked: Arc::new(Revocation::default()),
                },
            );
            if let Some(cb) = &self.callbacks {
                cb.assigned(e.topic(), e.partition());
            }
            resume.add_partition(e.topic(), e.partition());
            crate::lag::assigned(self.lag_owner, e.topic(), e.partition());
        }
        if resume.count() > 0 {
            if let Err(e) = consumer.resume(&resume) {
                tracing::debug!(error = %e, "resume after assign");
            }
            // Incremental (cooperative) rebalances call back with empty lists too: not counted.
            metrics::counter!(names::REBALANCES, "kind" => "assign").increment(1);
        }
        tracing::info!(
            partitions = %describe(tpl),
            total = st.partitions.len(),
            "partitions assigned"
        );
        self.health.set_assigned();
    }

    /// Revoke: pause, drain in-flight executions (bounded), store, commit synchronously.
    fn on_revoke(&self, consumer: &PodConsumer, tpl: &TopicPartitionList) {
        if tpl.count() > 0 {
            metrics::counter!(names::REBALANCES, "kind" => "revoke").increment(1);
        }
        let keys: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        for (topic, partition) in &keys {
            crate::lag::revoked(self.lag_owner, topic, *partition);
            if let Some(cb) = &self.callbacks {
                cb.revoked(topic, *partition);
            }
        }
        let _ = consumer.pause(tpl);
        let mut st = self.lock();
        let budget = if self.closing.load(Ordering::Acquire) {
            Duration::ZERO
        } else {
            self.drain_timeout
        };
        let deadline = Instant::now() + budget;
        // Records not started yet are left to the next owner (their offsets are not stored),
        // except those behind a busy key below started ones (see `settle`).
        let pending = st.settle(consumer, Some(&keys), deadline);
        // Executions still waiting for a callback stop now; the next owner re-runs them.
        for k in &keys {
            if let Some(p) = st.partitions.get(k) {
                p.revoked.fire();
            }
        }
        if let Some(txns) = st.eos.clone() {
            // Commit the transaction with the revoked partitions' offsets before releasing them
            // (or abort it when one of its writers is still running).
            txns.on_revoke(consumer, &mut st, &keys, deadline);
            for k in &keys {
                st.partitions.remove(k);
                txns.forget(&k.0, k.1);
            }
            drop(st);
            tracing::info!(
                partitions = %describe(tpl),
                abandoned_in_flight = pending,
                "partitions revoked"
            );
            return;
        }
        let mut commit = TopicPartitionList::new();
        for k in &keys {
            if let Some(p) = st.partitions.remove(k) {
                if let Some(next) = p.tracker.next_to_store() {
                    let _ = commit.add_partition_offset(&k.0, k.1, Offset::Offset(next));
                }
            }
        }
        drop(st);
        if commit.count() > 0 {
            match consumer.commit(&commit, CommitMode::Sync) {
                Ok(()) => {
                    tracing::info!(offsets = %describe_offsets(&commit), "committed revoked partitions")
                }
                Err(e) => crate::commit_errors::log_commit_failure("revoked partitions", &e),
            }
        }
        tracing::info!(
            partitions = %describe(tpl),
            abandoned_in_flight = pending,
            "partitions revoked"
        );
    }
}

impl LoopState {
    /// Executions running in the pod.
    pub(crate) fn running(&self) -> usize {
        self.partitions.values().map(|p| p.running).sum()
    }

    /// Records waiting for a free slot in the pod.
    fn backlog(&self) -> usize {
        self.partitions.values().map(|p| p.backlog.len()).sum()
    }

    /// Starts waiting records while the partition and pod bounds allow.
    fn dispatch(&mut self, spawner: &Spawner, per_partition: usize, total: usize) {
        let mut running = self.running();
        for p in self.partitions.values_mut() {
            while running < total && p.running < per_partition {
                let Some((msg, lane)) = p.backlog.pop_ready() else {
                    break;
                };
                p.dispatched_max = p.dispatched_max.max(Some(msg.offset()));
                spawner.spawn(msg, p.epoch, lane, p.revoked.clone());
                p.running += 1;
                running += 1;
            }
        }
    }

    /// Applies one completion: advance the tracker and store the new prefix end.
    fn apply(&mut self, consumer: &PodConsumer, c: Completion) {
        if let Some(txns) = &self.eos {
            txns.finished(c.generation);
        }
        let eos = self.eos.is_some();
        let Some(p) = self.partitions.get_mut(&(c.topic.clone(), c.partition)) else {
            return;
        };
        if p.epoch != c.epoch {
            return;
        }
        p.running = p.running.saturating_sub(1);
        p.backlog.finished(c.lane);
        match p.tracker.complete(c.offset) {
            // Exactly-once: offsets go into the transaction instead.
            Ok(Some(_)) if eos => {}
            Ok(Some(next)) => {
                let mut tpl = TopicPartitionList::new();
                if tpl
                    .add_partition_offset(&c.topic, c.partition, Offset::Offset(next))
                    .is_ok()
                {
                    if let Err(e) = consumer.store_offsets(&tpl) {
                        tracing::warn!(topic = %c.topic, partition = c.partition, error = %e, "store_offsets failed");
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(topic = %c.topic, partition = c.partition, error = %e, "offset tracker")
            }
        }
    }

    /// Applies completions until `remaining(self)` is zero or the deadline passes; returns what
    /// remained.
    pub(crate) fn drain(
        &mut self,
        consumer: &PodConsumer,
        deadline: Instant,
        remaining: impl Fn(&LoopState) -> usize,
    ) -> usize {
        loop {
            let left = remaining(self);
            let now = Instant::now();
            if left == 0 || now >= deadline {
                return left;
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            match self.rx.recv_timeout(wait) {
                Ok(c) => self.apply(consumer, c),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return remaining(self),
            }
        }
    }

    /// Before partitions are released (revoke, or `None`: shutdown): at-least-once, the
    /// records held behind a busy key below the highest started offset still run, within the
    /// drain deadline, so the committed offset covers everything that finished after them
    /// (dropping them re-ran all of it on the next owner: 33 re-runs in a rolling restart with
    /// `--ordering key` and a slow task); the records above are dropped (redelivered). Then
    /// drains the running executions. Exactly-once keeps its own accounting (the finished
    /// offsets above the committed one travel in the commit metadata): everything held is
    /// dropped. Returns the executions still running at the deadline.
    fn settle(
        &mut self,
        consumer: &PodConsumer,
        keys: Option<&[(String, i32)]>,
        deadline: Instant,
    ) -> usize {
        let selected = |k: &(String, i32)| keys.is_none_or(|ks| ks.contains(k));
        let keep = self.eos.is_none() && self.spawner.is_some();
        for (k, p) in self.partitions.iter_mut() {
            if !selected(k) {
                continue;
            }
            match p.dispatched_max {
                Some(max) if keep => p.backlog.retain_below(max),
                _ => p.backlog.clear(),
            }
        }
        loop {
            if let Some((spawner, per_partition, total)) = &self.spawner {
                let mut running = self.partitions.values().map(|p| p.running).sum::<usize>();
                for (k, p) in self.partitions.iter_mut() {
                    if !selected(k) {
                        continue;
                    }
                    while running < *total && p.running < *per_partition {
                        let Some((msg, lane)) = p.backlog.pop_ready() else {
                            break;
                        };
                        spawner.spawn(msg, p.epoch, lane, p.revoked.clone());
                        p.running += 1;
                        running += 1;
                    }
                }
            }
            // Executions parked on a callback are not waited for: they wait for someone else
            // (seconds to minutes) and are re-run by the next owner, which reads their
            // callbacks again.
            let callbacks = self
                .spawner
                .as_ref()
                .and_then(|s| s.0.deps.callbacks.clone());
            let parked =
                |k: &(String, i32)| callbacks.as_ref().map_or(0, |cb| cb.parked(&k.0, k.1));
            let left: usize = self
                .partitions
                .iter()
                .filter(|(k, _)| selected(k))
                .map(|(k, p)| p.running.saturating_sub(parked(k)) + p.backlog.len())
                .sum();
            let now = Instant::now();
            if left == 0 || now >= deadline {
                if left > 0 {
                    for (k, p) in self.partitions.iter_mut() {
                        if selected(k) {
                            p.backlog.clear();
                        }
                    }
                }
                return self
                    .partitions
                    .iter()
                    .filter(|(k, _)| selected(k))
                    .map(|(_, p)| p.running)
                    .sum();
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            match self.rx.recv_timeout(wait) {
                Ok(c) => self.apply(consumer, c),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return left,
            }
        }
    }

    /// Backpressure with hysteresis: a partition whose backlog reaches its limit (or every
    /// partition, when the pod's backlog reaches the pod limit) is paused, and resumed once the
    /// backlog is down to half. Running executions are bounded by [`LoopState::dispatch`].
    fn apply_backpressure(&mut self, consumer: &PodConsumer, limits: BacklogLimits) {
        let pod_records = self.backlog();
        let pod_bytes: usize = self.partitions.values().map(|p| p.backlog.bytes()).sum();
        let mut pause = TopicPartitionList::new();
        let mut resume = TopicPartitionList::new();
        for ((topic, partition), p) in self.partitions.iter_mut() {
            let want = if p.paused {
                p.backlog.len() > limits.partition_records / 2
                    || p.backlog.bytes() > limits.partition_bytes / 2
                    || pod_records > limits.pod_records / 2
                    || pod_bytes > limits.pod_bytes / 2
            } else {
                p.backlog.len() >= limits.partition_records
                    || p.backlog.bytes() >= limits.partition_bytes
                    || pod_records >= limits.pod_records
                    || pod_bytes >= limits.pod_bytes
            };
            if want != p.paused {
                p.paused = want;
                if want {
                    pause.add_partition(topic, *partition);
                } else {
                    resume.add_partition(topic, *partition);
                }
            }
        }
        if pause.count() > 0 {
            tracing::debug!(partitions = %describe(&pause), "backlog full: pausing");
            if let Err(e) = consumer.pause(&pause) {
                tracing::warn!(error = %e, "pause failed");
            }
        }
        if resume.count() > 0 {
            if let Err(e) = consumer.resume(&resume) {
                tracing::warn!(error = %e, "resume failed");
            }
        }
    }
}

impl ClientContext for PodContext {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    crate::lag::set_lag(self.lag_owner, topic, *partition, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for PodContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => self.on_revoke(consumer, tpl),
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.on_assign(consumer, tpl);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                metrics::counter!(names::OFFSET_COMMITS, "result" => "ok").increment(1);
                tracing::debug!(offsets = %describe_offsets(offsets), "offsets committed");
            }
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                metrics::counter!(names::OFFSET_COMMITS, "result" => "error").increment(1);
                crate::commit_errors::log_commit_failure("stored offsets", &e);
            }
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn describe_offsets(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}@{:?}", e.topic(), e.partition(), e.offset()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Base librdkafka settings plus the user's, then the ones delivery depends on.
pub(crate) fn client_config(
    config: &ExecutorConfig,
    defaults: &[(&str, &str)],
    forced: &[(&str, &str)],
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in &config.kafka {
        c.set(k, v);
    }
    for (k, v) in forced {
        c.set(*k, *v);
    }
    c
}

/// The engine runtime used by executors: real clock, OS entropy, the engine's built-in test
/// resource, with task metrics ([`expressway_tasks::metered_registry`]).
pub fn default_engine_runtime() -> Runtime {
    let clock: Arc<dyn expressway_engine::Clock> =
        Arc::new(expressway_engine::runtime::TokioClock::new());
    let tasks = expressway_tasks::metered_registry(clock.clone());
    engine_runtime_with_tasks(clock, tasks)
}

/// The engine runtime with a task registry built from `expressway-tasks` configuration (HTTP,
/// functions, `kafka:publish`, native handlers). Task metrics come from the registry's handlers:
/// build it with `TaskConfig::build_registry` or `expressway_tasks::metered_registry`.
pub fn engine_runtime_with_tasks(
    clock: Arc<dyn expressway_engine::Clock>,
    tasks: expressway_engine::tasks::Registry,
) -> Runtime {
    Runtime {
        map_children: None,
        clock,
        entropy: Arc::new(expressway_engine::runtime::OsEntropy),
        tasks: Arc::new(tasks),
        callbacks: None,
    }
}

impl Executor {
    /// Starts the pod: creates the producer and the group consumer, subscribes, and starts the
    /// consumer thread (and the definitions follower). Executions run on `runtime`.
    pub fn start(
        config: ExecutorConfig,
        registry: Arc<Registry>,
        engine: Runtime,
        runtime: tokio::runtime::Handle,
    ) -> Result<Executor, ExecutorError> {
        let shutdown = Arc::new(AtomicBool::new(false));
        let health = Arc::new(Health::default());
        for name in registry.names() {
            crate::telemetry::touch_machine(&name);
        }
        crate::telemetry::touch_pod();

        let output = match config.guarantee {
            Guarantee::AtLeastOnce => Output::AtLeastOnce(
                client_config(
                    &config,
                    // lz4: log records are JSON with their data escaped inside strings (~8 KB
                    // for the bench machine at level ALL) and compress several-fold; fewer
                    // bytes cost less CRC32C and copying here and on the broker than
                    // compressing does (+20-25 % executions/s on Tansu).
                    // `--kafka compression.type=none` turns it off.
                    &[
                        ("linger.ms", "5"),
                        ("acks", "all"),
                        ("compression.type", "lz4"),
                    ],
                    &[("enable.idempotence", "true")],
                )
                .create()?,
            ),
            Guarantee::ExactlyOnce => {
                crate::exactly_once::touch();
                Output::ExactlyOnce(Transactions::new(&config, shutdown.clone())?)
            }
        };
        let eos = match &output {
            Output::ExactlyOnce(t) => Some(t.clone()),
            Output::AtLeastOnce(_) => None,
        };

        let callbacks = CallbackTransport::start(&config, engine.clock.clone(), runtime.clone())?;
        match &callbacks {
            Some(_) => tracing::info!(topic = %config.callbacks.topic, max_execution = ?config.max_execution, "task tokens enabled: reading callbacks"),
            None => tracing::warn!("no task token key (--task-token-key-file or EXPRESSWAY_TASK_TOKEN_KEY): .waitForTaskToken tasks fail with States.Runtime, and the callback topic is not read"),
        }

        let (tx, rx) = mpsc::channel();
        let context = PodContext {
            state: Mutex::new(LoopState {
                partitions: HashMap::new(),
                next_epoch: 0,
                rx,
                ordering: config.ordering,
                eos: eos.clone(),
                spawner: None,
            }),
            health: health.clone(),
            drain_timeout: config.drain_timeout,
            ordering: config.ordering,
            closing: AtomicBool::new(false),
            lag_owner: crate::lag::new_owner(),
            callbacks: callbacks.clone(),
        };
        // Exactly-once: offsets are committed only inside transactions, and start events
        // written transactionally upstream are read once committed.
        let (auto_commit, isolation) = match config.guarantee {
            Guarantee::AtLeastOnce => ("true", "read_uncommitted"),
            Guarantee::ExactlyOnce => ("false", "read_committed"),
        };
        let mut forced = vec![
            ("group.id", config.group.as_str()),
            ("enable.auto.commit", auto_commit),
            ("enable.auto.offset.store", "false"),
            ("partition.assignment.strategy", "cooperative-sticky"),
        ];
        if config.guarantee == Guarantee::ExactlyOnce {
            forced.push(("isolation.level", isolation));
        }
        // Group timeouts (librdkafka's defaults are 45 s and 300 s): a killed pod's partitions
        // move after 10 s, and since `max.poll.interval.ms` is also the rebalance timeout, a pod
        // killed while the group rebalances holds the group for the drain timeout + 15 s rather
        // than 5 minutes (the chaos harness saw a group of repeatedly killed pods stall in
        // PreparingRebalance on the defaults). It must exceed the drain timeout: a revoke blocks
        // the consumer thread for up to that long.
        let max_poll_ms = (config.drain_timeout + Duration::from_secs(15))
            .as_millis()
            .max(45_000)
            .to_string();
        let consumer: PodConsumer = client_config(
            &config,
            &[
                ("auto.offset.reset", "earliest"),
                ("enable.partition.eof", "false"),
                ("statistics.interval.ms", "5000"),
                ("auto.commit.interval.ms", "1000"),
                ("session.timeout.ms", "10000"),
                ("max.poll.interval.ms", &max_poll_ms),
            ],
            &forced,
        )
        .create_with_context(context)?;
        let mut topics: Vec<&str> = vec![config.start_topic.as_str()];
        for (t, _) in &config.bindings {
            if !topics.contains(&t.as_str()) {
                topics.push(t);
            }
        }
        consumer.subscribe(&topics)?;
        tracing::info!(group = %config.group, topics = ?topics, "subscribed");
        crate::lag::subscribed(&topics);
        let group_lag_thread = crate::lag::spawn_group_lag(
            &config,
            topics.iter().map(|t| t.to_string()).collect(),
            shutdown.clone(),
        )?;

        let follower_thread = match &config.definitions_topic {
            Some(topic) => Some(crate::definitions::spawn_follower(
                &config,
                topic.clone(),
                registry.clone(),
                shutdown.clone(),
            )?),
            None => {
                registry.set_loaded();
                None
            }
        };

        // `states:startExecution[.sync|.sync:2]` in front of the pod's task resources.
        let (engine, nested) = crate::nested::NestedDispatcher::install(engine);
        let deps = Arc::new(Deps {
            output,
            registry,
            engine,
            bindings: config.bindings.iter().cloned().collect(),
            config,
            abort: AtomicBool::new(false),
            abort_notify: tokio::sync::Notify::new(),
            callbacks: callbacks.clone(),
        });
        let link: std::sync::Weak<Deps> = Arc::downgrade(&deps);
        nested.bind(link);
        let stop = shutdown.clone();
        let consumer_thread = std::thread::Builder::new()
            .name("expressway-consumer".into())
            .spawn(move || consumer_loop(consumer, deps, tx, runtime, stop))?;
        Ok(Executor {
            shutdown,
            consumer_thread: Some(consumer_thread),
            follower_thread,
            group_lag_thread: Some(group_lag_thread),
            health,
            callbacks,
        })
    }

    /// The pod's callback transport (`None` without a task token key): its hub, and the
    /// callbacks an execution of a start partition gets.
    pub fn callbacks(&self) -> Option<Arc<CallbackTransport>> {
        self.callbacks.clone()
    }

    /// Readiness state (for the HTTP endpoint).
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Asks the pod to stop without waiting.
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
    }

    /// Drains in-flight executions (bounded by the drain timeout), flushes the producer,
    /// commits synchronously and leaves the group. Blocking; call it from a blocking context
    /// (e.g. `tokio::task::spawn_blocking`).
    pub fn shutdown_blocking(mut self) {
        self.request_shutdown();
        if let Some(t) = self.consumer_thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.follower_thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.group_lag_thread.take() {
            let _ = t.join();
        }
        if let Some(cb) = &self.callbacks {
            cb.shutdown();
        }
    }

    /// Async form of [`Executor::shutdown_blocking`].
    pub async fn shutdown(self) {
        let _ = tokio::task::spawn_blocking(move || self.shutdown_blocking()).await;
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // Dropping without `shutdown` still stops the threads (they drain on their own).
        self.shutdown.store(true, Ordering::Release);
    }
}

fn consumer_loop(
    consumer: PodConsumer,
    deps: Arc<Deps>,
    tx: mpsc::Sender<Completion>,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) {
    let per_partition = deps.config.max_in_flight_per_partition.max(1);
    let total = deps.config.max_in_flight.max(1);
    let limits = BacklogLimits::new(per_partition, total, deps.config.backlog_per_partition);
    let spawner = Spawner {
        deps: deps.clone(),
        tx,
        runtime,
    };
    consumer.context().lock().spawner = Some((spawner.clone(), per_partition, total));
    // Completions arrive on a channel, not through librdkafka, so poll briefly while executions
    // run (a freed slot is refilled within a few ms) and longer when idle.
    let mut poll_timeout = Duration::from_millis(50);
    let eos = consumer.context().lock().eos.clone();
    if let Some(txns) = &eos {
        // Blocking: before the first poll, so no rebalance callback runs before it.
        txns.init();
    }
    while !stop.load(Ordering::Acquire) {
        let polled = consumer.poll(poll_timeout);
        let mut st = consumer.context().lock();
        match polled {
            None => {}
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            Some(Ok(msg)) => {
                let key = (msg.topic().to_string(), msg.partition());
                if let Some(p) = st.partitions.get_mut(&key) {
                    if p.eos.drops() {
                        // Exactly-once rewind whose seek is pending.
                    } else {
                        match p.tracker.start(msg.offset()) {
                            Ok(()) if p.eos.take_inherited(msg.offset()) => {
                                // Exactly-once: committed as done by an earlier transaction.
                                let _ = p.tracker.complete(msg.offset());
                            }
                            Ok(()) => {
                                if let Some(cb) = &deps.callbacks {
                                    cb.seen(
                                        msg.topic(),
                                        msg.partition(),
                                        msg.timestamp().to_millis(),
                                    );
                                }
                                p.backlog.push(msg.detach());
                            }
                            Err(e) => tracing::debug!(error = %e, "skipping redelivered record"),
                        }
                    }
                }
            }
        }
        while let Ok(c) = st.rx.try_recv() {
            st.apply(&consumer, c);
        }
        if let Some(txns) = &eos {
            txns.tick(&consumer, &mut st);
        }
        st.dispatch(&spawner, per_partition, total);
        st.apply_backpressure(&consumer, limits);
        poll_timeout = if st.running() > 0 {
            Duration::from_millis(2)
        } else {
            Duration::from_millis(50)
        };
    }

    // Shutdown: stop fetching, drain, flush, commit, leave.
    tracing::info!("shutting down: draining in-flight executions");
    let ctx = consumer.context();
    {
        let mut st = ctx.lock();
        let mut all = TopicPartitionList::new();
        for (t, p) in st.partitions.keys() {
            all.add_partition(t, *p);
        }
        let _ = consumer.pause(&all);
        let deadline = Instant::now() + ctx.drain_timeout;
        let left = st.settle(&consumer, None, deadline);
        if left > 0 {
            tracing::warn!(
                abandoned = left,
                "drain timeout: unfinished executions will be redelivered"
            );
        }
        if let Some(txns) = &eos {
            txns.shutdown(&consumer, &mut st, deadline);
        }
    }
    ctx.closing.store(true, Ordering::Release);
    deps.abort_all();
    match &deps.output {
        Output::AtLeastOnce(producer) => {
            if let Err(e) = producer.flush(Duration::from_secs(10)) {
                tracing::warn!(error = %e, "producer flush failed");
            }
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => tracing::info!("final offsets committed"),
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => crate::commit_errors::log_commit_failure("final offsets", &e),
            }
        }
        Output::ExactlyOnce(_) => {}
    }
    let lag_owner = consumer.context().lag_owner;
    // Dropping the consumer closes it: it leaves the group (the revoke callback finds nothing
    // in flight).
    drop(consumer);
    crate::lag::release_all(lag_owner);
    tracing::info!("consumer closed");
}

enum Decoded {
    Start {
        entry: Arc<MachineEntry>,
        name: Option<String>,
        input: Value,
        /// The start event's `traceHeader` (X-Ray style), carried to the result record.
        trace_header: Option<String>,
    },
}

async fn decode(deps: &Deps, msg: &OwnedMessage) -> Result<Decoded, StartError> {
    if let Some(machine) = deps.bindings.get(msg.topic()) {
        let input = decode_raw_input(msg.payload())?;
        let entry = deps
            .registry
            .get(machine)
            .ok_or_else(|| StartError::UnknownStateMachine(machine.clone()))?;
        return Ok(Decoded::Start {
            entry,
            name: None,
            input,
            trace_header: None,
        });
    }
    let content_type = msg.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key.eq_ignore_ascii_case("content-type"))
            .and_then(|h| h.value)
    });
    let event = StartEvent::decode(msg.payload(), content_type)?;
    let entry = match deps.registry.lookup(&event.state_machine) {
        Ok(entry) => entry,
        // Never runs a machine of that name here, however long one waits.
        Err(e @ LookupError::Foreign { .. }) => {
            return Err(StartError::ForeignStateMachineArn(e.to_string()))
        }
        // A machine of the definitions directory has no versions or aliases.
        Err(LookupError::FileQualifier {
            name, qualifier, ..
        }) => {
            return Err(StartError::UnknownVersionOrAlias {
                machine: name,
                qualifier,
            })
        }
        Err(LookupError::NotFound(_)) => {
            match wait_for_machine(deps, msg, &event.state_machine).await {
                Some(entry) => entry,
                None => return Err(unknown_machine(deps, &event.state_machine)),
            }
        }
    };
    Ok(Decoded::Start {
        entry,
        name: event.name,
        input: event.input,
        trace_header: event.trace_header,
    })
}

/// `UnknownStateMachine`, saying whether the machine or only its version/alias is unknown.
fn unknown_machine(deps: &Deps, r: &expressway_wire::MachineRef) -> StartError {
    match &r.qualifier {
        Some(q) if deps.registry.get(&r.name).is_some() => StartError::UnknownVersionOrAlias {
            machine: r.name.clone(),
            qualifier: q.clone(),
        },
        Some(q) => StartError::UnknownStateMachine(format!("{}:{q}", r.name)),
        None => StartError::UnknownStateMachine(r.name.clone()),
    }
}

/// How long a fresh start event naming an unknown machine waits for the definitions follower:
/// a machine created through the gateway may reach the start topic before this pod's follower
/// has read its definition record.
const UNKNOWN_MACHINE_GRACE: Duration = Duration::from_secs(3);

/// How long a record created at `created_ms` (its Kafka timestamp, if any) may still wait for
/// its machine when the pod sees it at `now_ms` (wall clock): up to [`UNKNOWN_MACHINE_GRACE`]
/// after the timestamp, and never more than the grace itself from now, whatever the
/// timestamp says (a producer's clock a year ahead must not hold a partition for a year).
fn unknown_machine_wait(created_ms: Option<i64>, now_ms: i64) -> Duration {
    let grace_ms = UNKNOWN_MACHINE_GRACE.as_millis() as i64;
    let created = created_ms.unwrap_or(now_ms);
    let left = created.saturating_add(grace_ms).saturating_sub(now_ms);
    Duration::from_millis(left.clamp(0, grace_ms) as u64)
}

/// Waits (see [`unknown_machine_wait`]; measured on the pod's monotonic clock) for `r` to
/// appear in the registry, when the pod follows the definitions topic. Ends early when the
/// shutdown drain budget is spent.
async fn wait_for_machine(
    deps: &Deps,
    msg: &OwnedMessage,
    r: &expressway_wire::MachineRef,
) -> Option<Arc<MachineEntry>> {
    deps.config.definitions_topic.as_ref()?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let wait = unknown_machine_wait(msg.timestamp().to_millis(), now_ms);
    let deadline = tokio::time::Instant::now() + wait;
    let poll = async {
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep_until(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(50)),
            )
            .await;
            if let Some(e) = deps.registry.resolve(r) {
                return Some(e);
            }
        }
        None
    };
    tokio::select! {
        found = poll => found,
        () = aborted(deps) => None,
    }
}

/// Dead-letter code of a record whose processing panicked (an engine bug): the record goes to
/// the dead-letter topic instead of stalling its partition forever.
pub const PANIC_CODE: &str = "InternalError";

/// [`process`], turning a panic into a dead letter.
async fn process_guarded(deps: &Deps, msg: &OwnedMessage, revoked: &Revocation) -> bool {
    use futures::FutureExt as _;
    match std::panic::AssertUnwindSafe(process(deps, msg, revoked))
        .catch_unwind()
        .await
    {
        Ok(done) => done,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            tracing::error!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), panic = %what, "execution panicked");
            dead_letter(
                deps,
                msg,
                PANIC_CODE,
                &format!("the executor panicked: {what}"),
            )
            .await
        }
    }
}

/// Handles one record; returns whether its output was acknowledged (the offset may be stored).
async fn process(deps: &Deps, msg: &OwnedMessage, revoked: &Revocation) -> bool {
    match decode(deps, msg).await {
        Ok(Decoded::Start {
            entry,
            name,
            input,
            trace_header,
        }) => {
            let child = match map_child(deps, msg) {
                None => None,
                Some(Ok(header)) => {
                    match expressway_engine::map_runs::processor_machine(
                        &entry.machine,
                        &header.state_name,
                    ) {
                        Some(processor) => Some(ChildRun { header, processor }),
                        None => return orphaned_child(deps, &entry, &header).await,
                    }
                }
                Some(Err(cause)) => {
                    metrics::counter!(names::MAP_CHILDREN, "event" => "refused").increment(1);
                    return dead_letter(
                        deps,
                        msg,
                        expressway_wire::map_child::INVALID_MAP_CHILD_CODE,
                        &cause,
                    )
                    .await;
                }
            };
            let launch = Launch {
                entry: &entry,
                name,
                input,
                trace_header,
                child,
            };
            run_execution(deps, msg, launch, revoked).await
        }
        Err(err) => {
            let dead = dead_letter(deps, msg, err.code(), &err.to_string()).await;
            // A child that cannot run (its input too large, its machine gone) fails its
            // parent's child instead of leaving the parent waiting until its time limit.
            let reported = match map_child(deps, msg) {
                Some(Ok(header)) => {
                    let record = crate::map_children::failure_callback(
                        &header.task_token,
                        "States.Runtime",
                        &format!(
                            "The Map child's start event was dead-lettered ({}): {err}",
                            err.code()
                        ),
                    );
                    send_callback(deps, &record).await
                }
                _ => true,
            };
            dead && reported
        }
    }
}

/// A start event of a Distributed Map child: its header and the item processor it runs.
struct ChildRun {
    header: MapChild,
    processor: StateMachine,
}

/// What [`run_execution`] runs.
struct Launch<'a> {
    entry: &'a MachineEntry,
    name: Option<String>,
    input: Value,
    trace_header: Option<String>,
    /// A Distributed Map child ([`crate::map_children`]).
    child: Option<ChildRun>,
}

/// The record's `expressway-map-child` header, if it has one, checked.
fn map_child(deps: &Deps, msg: &OwnedMessage) -> Option<Result<MapChild, String>> {
    crate::map_children::read_header(msg.headers(), deps.callbacks.as_deref())
}

/// A child whose Map state the machine does not have (its definition changed since the parent
/// started): the parent learns it failed; nothing runs.
async fn orphaned_child(deps: &Deps, entry: &MachineEntry, header: &MapChild) -> bool {
    metrics::counter!(names::MAP_CHILDREN, "event" => "orphaned").increment(1);
    tracing::warn!(execution_arn = %header.execution_arn, state_machine = %entry.name, state = %header.state_name, "map child of a state the machine does not have: reported to its parent as failed");
    let cause = format!(
        "The state machine '{}' has no Distributed Map state named '{}'",
        entry.name, header.state_name
    );
    let record =
        crate::map_children::failure_callback(&header.task_token, "States.Runtime", &cause);
    send_callback(deps, &record).await
}

/// Produces a callback record on the partition its token names (when the callback topic's
/// partition count is known here; otherwise the reader of the partition it lands on forwards
/// it). Whether it was acknowledged.
async fn send_callback(deps: &Deps, record: &expressway_wire::CallbackRecord) -> bool {
    let partition = deps.callbacks.as_ref().and_then(|cb| {
        let n = cb.callback_partitions()?;
        let fields = expressway_wire::task_token::peek_unverified(&record.task_token).ok()?;
        Some(expressway_wire::task_token::callback_partition(
            fields.partition,
            n,
        ))
    });
    let value = record.to_json();
    match deliver_to(
        deps,
        &deps.config.callbacks.topic,
        partition,
        Some(record.task_token.as_bytes()),
        Some(&value),
        None,
    )
    .await
    {
        Ok(_) => true,
        Err(Undelivered::Aborted) => false,
        Err(Undelivered::TooLarge) => {
            tracing::error!(
                bytes = value.len(),
                "callback record too large for the callback topic; dropped"
            );
            true
        }
    }
}

/// Counts an execution as aborted (and leaves the in-flight gauge) unless it is disarmed: an
/// execution this pod started and abandoned without publishing its result, because the drain
/// budget of a shutdown ran out (or the runtime stopped). Its start event is not stored, so the
/// next owner re-runs it under the same ARN.
struct AbortGuard {
    machine: Option<String>,
}

impl AbortGuard {
    fn disarm(mut self) {
        self.machine = None;
    }
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if let Some(machine) = self.machine.take() {
            metrics::counter!(names::ABORTED, "state_machine" => machine).increment(1);
        }
    }
}

/// Resolves once the shutdown drain budget is spent.
async fn aborted(deps: &Deps) {
    let notified = deps.abort_notify.notified();
    let mut notified = std::pin::pin!(notified);
    notified.as_mut().enable();
    if deps.abort.load(Ordering::Acquire) {
        return;
    }
    notified.await;
}

/// Header carrying the start event's `traceHeader` on the result and log records.
pub const TRACE_HEADER: &str = "x-amzn-trace-id";
/// Header naming the Map Run on a Distributed Map child's result and log records.
pub const MAP_RUN_HEADER: &str = "expressway-map-run-arn";
/// Header naming the parent execution on a Distributed Map child's result and log records.
pub const PARENT_EXECUTION_HEADER: &str = "expressway-parent-execution-arn";

async fn run_execution(
    deps: &Deps,
    msg: &OwnedMessage,
    launch: Launch<'_>,
    revoked: &Revocation,
) -> bool {
    let Launch {
        entry,
        name,
        input,
        trace_header,
        child,
    } = launch;
    let cfg = &deps.config;
    let mut id = expressway_wire::execution_identity(
        &cfg.region,
        &cfg.account,
        &entry.name,
        name.as_deref(),
        msg.topic(),
        msg.partition(),
        msg.offset(),
    );
    if let Some(c) = &child {
        id.arn = c.header.execution_arn.clone();
    }
    let machine = child.as_ref().map_or(&entry.machine, |c| &c.processor);
    let req = ExecutionRequest {
        execution_arn: id.arn,
        execution_name: id.name,
        state_machine_arn: entry.arn.clone(),
        state_machine_name: entry.name.clone(),
        role_arn: role_arn(cfg),
        input,
        log: entry.log,
        limits: execution_limits(cfg),
        synchronous: false,
    };
    // Tokens minted by this execution name its start partition.
    let mut engine = deps.engine.clone();
    let mut binding = None;
    if engine.callbacks.is_none() {
        engine.callbacks = Some(match &deps.callbacks {
            Some(cb) => {
                let b = Arc::new(cb.bind(msg.topic(), msg.partition()));
                binding = Some(b.clone());
                b
            }
            None => Arc::new(CallbackTransport::unavailable()),
        });
    }
    // Distributed Map children run across the cluster (see `crate::map_children`).
    if engine.map_children.is_none() {
        if let (Some(b), Some(cb), Output::AtLeastOnce(producer)) =
            (&binding, &deps.callbacks, &deps.output)
        {
            engine.map_children = Some(Arc::new(ClusterChildren::new(
                producer.clone(),
                &cfg.start_topic,
                b.clone(),
                cb.clone(),
                msg.topic(),
                msg.partition(),
            )));
        }
    }
    if let Some(c) = &child {
        // The parent learns the child started (a re-run of the parent then waits for it
        // instead of starting it again).
        metrics::counter!(names::MAP_CHILDREN, "event" => "ran").increment(1);
        if !send_callback(
            deps,
            &crate::map_children::started_callback(&c.header.task_token),
        )
        .await
        {
            return false;
        }
    }
    let machine_label = entry.name.clone();
    metrics::counter!(names::STARTED, "state_machine" => machine_label.clone()).increment(1);
    let guard = AbortGuard {
        machine: Some(machine_label.clone()),
    };
    let in_flight = InFlight::enter();
    let t0 = Instant::now();
    let run = crate::nested::top_level(&engine, machine, &req, execute(machine, &req, &engine));
    let mut run = std::pin::pin!(run);
    // After its partition is revoked, an execution stops when it waits for a callback (now or
    // later): this pod no longer reads the callback partition, and the next owner re-runs it.
    let mut revoked_seen = false;
    let waits = async {
        match &binding {
            Some(b) => b.until_waiting().await,
            None => std::future::pending().await,
        }
    };
    let mut waits = std::pin::pin!(waits);
    let outcome = loop {
        tokio::select! {
            biased;
            outcome = &mut run => break outcome,
            () = aborted(deps) => {
                tracing::warn!(execution_arn = %req.execution_arn, "drain budget spent: execution abandoned (it will be redelivered)");
                return false;
            }
            () = revoked.wait(), if binding.is_some() && !revoked_seen => revoked_seen = true,
            () = &mut waits, if revoked_seen => {
                tracing::info!(execution_arn = %req.execution_arn, "partition revoked while the execution waits for a callback: abandoned (the next owner re-runs it and reads its callback)");
                return false;
            }
        }
    };
    let elapsed = t0.elapsed();
    drop(in_flight);
    let (log_ok, result_ok) = publish_outcome(
        deps,
        &req,
        &outcome,
        elapsed,
        trace_header.as_deref(),
        child.as_ref(),
    )
    .await;
    let reported = match &child {
        Some(c) => {
            send_callback(
                deps,
                &crate::map_children::outcome_callback(&c.header.task_token, &outcome),
            )
            .await
        }
        None => true,
    };
    if result_ok && reported {
        guard.disarm();
    }
    log_ok && result_ok && reported
}

/// The execution's limits on this pod (the nested `.sync` children run with them too).
pub(crate) fn execution_limits(cfg: &ExecutorConfig) -> Limits {
    Limits {
        max_memory_bytes: cfg.execution_memory_bytes,
        max_duration: cfg.max_execution,
        ..Limits::default()
    }
}

/// The role ARN executions report.
pub(crate) fn role_arn(cfg: &ExecutorConfig) -> String {
    format!("arn:aws:iam::{}:role/expressway", cfg.account)
}

/// Counts a finished execution (status, transitions, budgets, duration) and publishes its log
/// and result records; whether each was acknowledged (a result too large for the topic is
/// logged and counts as delivered, so the partition moves on).
async fn publish_outcome(
    deps: &Deps,
    req: &ExecutionRequest,
    outcome: &expressway_engine::Outcome,
    elapsed: Duration,
    trace_header: Option<&str>,
    child: Option<&ChildRun>,
) -> (bool, bool) {
    let cfg = &deps.config;
    let machine_label = req.state_machine_name.clone();
    let status_metric = match outcome.status {
        Status::Succeeded => names::SUCCEEDED,
        Status::TimedOut => names::TIMED_OUT,
        Status::Failed => names::FAILED,
    };
    metrics::counter!(status_metric, "state_machine" => machine_label.clone()).increment(1);
    metrics::counter!(names::TRANSITIONS, "state_machine" => machine_label.clone())
        .increment(outcome.state_transitions);
    crate::telemetry::record_budget_exceeded(&machine_label, &req.execution_arn, outcome);
    metrics::histogram!(names::DURATION, "state_machine" => machine_label, "status" => outcome.status.as_str())
        .record(elapsed.as_secs_f64());

    // StartSyncExecution's response carries the trace header too.
    let result = outcome.result_json(req, trace_header);
    let mut trace = trace_header.map(|t| {
        OwnedHeaders::new().insert(Header {
            key: TRACE_HEADER,
            value: Some(t),
        })
    });
    // A Distributed Map child's records name its Map Run and parent.
    if let Some(c) = child {
        let h = trace
            .take()
            .unwrap_or_default()
            .insert(Header {
                key: MAP_RUN_HEADER,
                value: Some(&c.header.map_run_arn),
            })
            .insert(Header {
                key: PARENT_EXECUTION_HEADER,
                value: Some(&c.header.parent_execution_arn),
            });
        trace = Some(h);
    }
    let (log, log_headers) = match cfg.log_format {
        LogFormat::Json => (outcome.log_record_json(req), trace.clone()),
        LogFormat::Protobuf => (
            expressway_wire::convert::encode_log_batch(&outcome.log_record(req)),
            Some(trace.clone().unwrap_or_default().insert(Header {
                key: "content-type",
                value: Some(expressway_wire::PROTOBUF_CONTENT_TYPE),
            })),
        ),
    };
    let (log_ok, result_ok) = futures::join!(
        deliver_log(deps, &req.execution_arn, &log, log_headers),
        deliver(
            deps,
            &cfg.results_topic,
            Some(req.execution_name.as_bytes()),
            Some(&result),
            trace
        ),
    );
    let result_ok = match result_ok {
        Ok(_) => true,
        Err(Undelivered::Aborted) => false,
        Err(Undelivered::TooLarge) => {
            // Results are bounded by the 256 KiB payload limit, so this means the topic's
            // max.message.bytes is tiny: report it and keep the partition moving.
            tracing::error!(execution_arn = %req.execution_arn, bytes = result.len(), "result record too large for the results topic; dropped");
            true
        }
    };
    if log_ok {
        metrics::counter!(names::LOG_RECORDS).increment(1);
        metrics::histogram!(names::LOG_BATCH_BYTES).record(log.len() as f64);
    }
    (log_ok, result_ok)
}

impl crate::nested::PodLink for Deps {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn config(&self) -> &ExecutorConfig {
        &self.config
    }

    fn produce_start<'a>(
        &'a self,
        key: Option<&'a [u8]>,
        value: &'a [u8],
    ) -> futures::future::BoxFuture<'a, Result<(i32, i64), crate::nested::ProduceError>> {
        Box::pin(async move {
            deliver(self, &self.config.start_topic, key, Some(value), None)
                .await
                .map_err(|e| match e {
                    Undelivered::TooLarge => crate::nested::ProduceError::TooLarge,
                    Undelivered::Aborted => crate::nested::ProduceError::Aborted,
                })
        })
    }

    fn publish<'a>(
        &'a self,
        request: &'a ExecutionRequest,
        outcome: &'a expressway_engine::Outcome,
        elapsed: Duration,
    ) -> futures::future::BoxFuture<'a, bool> {
        Box::pin(async move {
            let (log_ok, result_ok) =
                publish_outcome(self, request, outcome, elapsed, None, None).await;
            log_ok && result_ok
        })
    }
}

/// `expressway_executions_in_flight` for the lifetime of the value (also when the execution is
/// abandoned).
pub(crate) struct InFlight;

impl InFlight {
    pub(crate) fn enter() -> InFlight {
        metrics::gauge!(names::IN_FLIGHT).increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(names::IN_FLIGHT).decrement(1.0);
    }
}

async fn dead_letter(deps: &Deps, msg: &OwnedMessage, code: &str, cause: &str) -> bool {
    let source = format!("{}/{}/{}", msg.topic(), msg.partition(), msg.offset());
    tracing::warn!(source = %source, code, cause, "routing record to the dead-letter topic");
    let headers = crate::dead_letter_headers::dead_letter_headers(msg, code, cause, &source);
    let ok = match deliver(
        deps,
        &deps.config.dlq_topic,
        msg.key(),
        // A tombstone's copy is a tombstone too (null value, not an empty one).
        msg.payload(),
        Some(headers.clone()),
    )
    .await
    {
        Ok(_) => true,
        Err(Undelivered::Aborted) => false,
        Err(Undelivered::TooLarge) => {
            // Keep the partition moving: the dead letter without the original value.
            tracing::error!(source = %source, "dead letter too large; publishing it without its value");
            let headers = headers.insert(Header {
                key: "expressway-value-dropped",
                value: Some("true"),
            });
            deliver(deps, &deps.config.dlq_topic, msg.key(), None, Some(headers))
                .await
                .is_ok()
        }
    };
    if ok {
        metrics::counter!(names::DEAD_LETTERS, "reason" => code.to_string()).increment(1);
    }
    ok
}

/// Why a delivery gave up.
#[derive(Debug)]
enum Undelivered {
    /// The record is larger than the producer or broker accepts (retrying cannot help).
    TooLarge,
    /// The shutdown drain budget is spent.
    Aborted,
}

/// Produces one record and waits for its acknowledgement (its partition and offset), retrying
/// transient failures until it is acknowledged or the shutdown drain budget is spent. Exactly-once: through the execution's
/// transaction, never retried (a failed send aborts the transaction; the record re-runs).
async fn deliver(
    deps: &Deps,
    topic: &str,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    headers: Option<OwnedHeaders>,
) -> Result<(i32, i64), Undelivered> {
    deliver_to(deps, topic, None, key, payload, headers).await
}

/// [`deliver`] to a chosen partition (`None`: the partitioner's choice by key).
async fn deliver_to(
    deps: &Deps,
    topic: &str,
    partition: Option<i32>,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    headers: Option<OwnedHeaders>,
) -> Result<(i32, i64), Undelivered> {
    let producer = match &deps.output {
        Output::AtLeastOnce(p) => p,
        Output::ExactlyOnce(_) => {
            let Some(ticket) = crate::exactly_once::current() else {
                tracing::error!(topic, "exactly-once send outside an execution; dropped");
                return Err(Undelivered::Aborted);
            };
            return match ticket.send(topic, partition, key, payload, headers).await {
                Ok(at) => Ok(at),
                Err(SendError::TooLarge) => Err(Undelivered::TooLarge),
                // The abort is logged once (with its reason) by `exactly_once`.
                Err(SendError::Refused) => {
                    tracing::debug!(topic, "execution abandoned: its transaction was aborted (it re-runs from the committed offset)");
                    Err(Undelivered::Aborted)
                }
                Err(SendError::Failed(e)) => {
                    tracing::warn!(topic, error = %e, "send failed: the transaction will be aborted and the execution re-run");
                    Err(Undelivered::Aborted)
                }
            };
        }
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic);
        if let Some(p) = payload {
            record = record.payload(p);
        }
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(h) = &headers {
            record = record.headers(h.clone());
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        match producer.send(record, Duration::from_secs(5)).await {
            Ok(d) => return Ok((d.partition, d.offset)),
            Err((e, _)) => {
                if matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::MessageSizeTooLarge)
                ) {
                    return Err(Undelivered::TooLarge);
                }
                if deps.abort.load(Ordering::Acquire) {
                    return Err(Undelivered::Aborted);
                }
                tracing::warn!(topic, error = %e, "delivery failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Delivers a log record; one too large for Kafka is replaced by a stub
/// (`{"executionArn","events":[],"truncated":true,"originalBytes":N}`) so the partition never
/// stalls on it.
async fn deliver_log(deps: &Deps, arn: &str, log: &[u8], headers: Option<OwnedHeaders>) -> bool {
    match deliver(
        deps,
        &deps.config.logs_topic,
        Some(arn.as_bytes()),
        Some(log),
        headers,
    )
    .await
    {
        Ok(_) => true,
        Err(Undelivered::Aborted) => false,
        Err(Undelivered::TooLarge) => {
            tracing::warn!(
                execution_arn = arn,
                bytes = log.len(),
                "log record too large; publishing a truncated stub"
            );
            let stub = serde_json::json!({
                "executionArn": arn,
                "events": [],
                "truncated": true,
                "originalBytes": log.len(),
            })
            .to_string();
            deliver(
                deps,
                &deps.config.logs_topic,
                Some(arn.as_bytes()),
                Some(stub.as_bytes()),
                None,
            )
            .await
            .is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unknown_machine_wait_is_bounded_by_the_pods_clock() {
        let now = 1_000_000_000_000;
        let year = 365 * 24 * 3600 * 1000;
        assert_eq!(
            unknown_machine_wait(Some(now + year), now),
            UNKNOWN_MACHINE_GRACE
        );
        assert_eq!(unknown_machine_wait(Some(now), now), UNKNOWN_MACHINE_GRACE);
        assert_eq!(
            unknown_machine_wait(Some(now - 1_000), now),
            Duration::from_secs(2)
        );
        assert_eq!(unknown_machine_wait(Some(now - year), now), Duration::ZERO);
        assert_eq!(unknown_machine_wait(None, now), UNKNOWN_MACHINE_GRACE);
        assert_eq!(
            unknown_machine_wait(Some(i64::MAX), now),
            UNKNOWN_MACHINE_GRACE
        );
        assert_eq!(unknown_machine_wait(Some(i64::MIN), now), Duration::ZERO);
    }
}
