//! `--guarantee exactly-once`: Kafka transactions around executions (KIP-447, as Kafka Streams'
//! `exactly_once_v2`).
//!
//! One transactional producer per pod writes every output of every execution: log, result and
//! dead-letter records and the records of `kafka:publish` tasks (the publisher finds the running
//! execution's [`Ticket`] in a task-local, see [`current`]). The consumed start offsets go into
//! the same transaction with `send_offsets_to_transaction(offsets, group_metadata)`, so a pod
//! that lost its partitions (a zombie) cannot commit them: the coordinator refuses the stale
//! generation and the transaction is aborted.
//!
//! **Writers and the gate.** An execution becomes a *writer* of the open transaction at its first
//! send and stays one until its completion is applied on the consumer thread. A transaction may
//! only be committed together with the offsets of every execution that wrote into it, so the
//! commit (on the consumer thread, every `interval` or `max_executions` writers) closes the
//! gate (executions that are not writers yet wait before their first send; writers go on),
//! applies completions until the writers are done, sends the offsets, commits, begins the next
//! transaction and reopens the gate. If the writers do not finish within [`WRITER_WAIT`], the
//! gate reopens and the commit is tried again later; a transaction older than
//! [`max_transaction_age`] (an execution that published and then sits in a long `Wait`) is
//! aborted and rewound.
//!
//! **Offsets with holes.** Executions of a partition complete out of order, so when a
//! transaction commits, records above the first unfinished offset may already be part of it.
//! The committed offset is that first unfinished offset and its commit *metadata* lists the
//! finished offsets above it (runs relative to the offset: `xw1:2-5,9`, as Confluent's Parallel
//! Consumer encodes its incomplete offsets). A new owner (or this pod after a rewind) reads the
//! metadata and skips those records instead of running them again.
//!
//! **Abort and rewind.** On a send or commit error, an abandoned commit, a lost assignment or a
//! revoke whose writers did not finish: abort the transaction, give every partition a new epoch
//! (older completions are ignored), clear trackers and backlogs, and seek each partition back
//! to its committed offset so the records run again here; the aborted records are invisible to
//! `read_committed` readers. A writer remembers the transaction it joined; once that one was
//! aborted (or its partition's epoch changed) its sends are refused and the execution is
//! abandoned without a completion. A fatal producer error (fenced by a newer producer with the
//! same `transactional.id`) recreates the producer (`init_transactions`) and rewinds.
//!
//! All transactional calls block; they run on the consumer thread, never on a tokio worker.

use crate::config::ExecutorConfig;
use crate::pod::{LoopState, PodConsumer};
use crate::telemetry::names;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a commit waits, gate closed, for the writers of the transaction to finish before it
/// reopens the gate and tries again later.
pub const WRITER_WAIT: Duration = Duration::from_secs(2);

/// `transaction.timeout.ms` unless `--kafka` sets it: the broker aborts the open transaction of
/// a pod that died this long ago (when no successor with the same `transactional.id` did it
/// at once).
pub const DEFAULT_TRANSACTION_TIMEOUT_MS: u64 = 30_000;

/// Prefix of the commit metadata that lists the finished offsets above the committed one.
const METADATA_PREFIX: &str = "xw1:";

/// Commit metadata longer than this is not sent (brokers refuse more than
/// `offset.metadata.max.bytes`, 4096 by default).
const METADATA_MAX: usize = 4000;

/// Timeout of each blocking transactional call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The default `transactional.id`: `<group>-<hostname>-<pid>`. In a container the pid is 1, so a
/// pod keeps its id across restarts when its hostname is stable (StatefulSet), and a restarted
/// pod fences its predecessor at once; two pods on one host never share an id (they would fence
/// each other in turn).
pub fn default_transactional_id(group: &str) -> String {
    format!("{group}-{}-{}", hostname(), std::process::id())
}

/// The host name (`HOSTNAME`, then `/etc/hostname`, else `localhost`).
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".into())
}

/// The transaction's age at which a commit that cannot gather its writers gives up and aborts:
/// two thirds of `transaction.timeout.ms`, so this pod aborts before the broker does.
pub fn max_transaction_age(config: &ExecutorConfig) -> Duration {
    Duration::from_millis(transaction_timeout_ms(config) * 2 / 3)
}

fn transaction_timeout_ms(config: &ExecutorConfig) -> u64 {
    config
        .kafka
        .iter()
        .rev()
        .find(|(k, _)| k == "transaction.timeout.ms")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(DEFAULT_TRANSACTION_TIMEOUT_MS)
}

/// Encodes the finished offsets above `base` as commit metadata (`None` when too long).
pub(crate) fn encode_done(base: i64, done: impl IntoIterator<Item = i64>) -> Option<String> {
    let mut out = String::from(METADATA_PREFIX);
    let mut run: Option<(i64, i64)> = None;
    let mut first = true;
    let mut flush = |out: &mut String, (a, b): (i64, i64)| {
        if !first {
            out.push(',');
        }
        first = false;
        if a == b {
            out.push_str(&a.to_string());
        } else {
            out.push_str(&format!("{a}-{b}"));
        }
    };
    for o in done {
        let d = o - base;
        if d <= 0 {
            continue;
        }
        run = match run {
            Some((a, b)) if d == b + 1 => Some((a, d)),
            Some((a, b)) if d <= b => Some((a, b)),
            Some(r) => {
                flush(&mut out, r);
                Some((d, d))
            }
            None => Some((d, d)),
        };
    }
    if let Some(r) = run {
        flush(&mut out, r);
    }
    (out.len() <= METADATA_MAX).then_some(out)
}

/// Decodes [`encode_done`]'s metadata into absolute offsets. Metadata that is not ours (another
/// tool committed for this group) or malformed yields nothing.
pub(crate) fn decode_done(base: i64, metadata: &str) -> BTreeSet<i64> {
    let mut done = BTreeSet::new();
    let Some(body) = metadata.strip_prefix(METADATA_PREFIX) else {
        return done;
    };
    for part in body.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i64>(), b.parse::<i64>()),
            None => (part.parse::<i64>(), part.parse::<i64>()),
        };
        let (Ok(a), Ok(b)) = (a, b) else {
            tracing::warn!(metadata, "malformed offset metadata ignored");
            return BTreeSet::new();
        };
        // Bounded: a run can never be longer than the metadata could describe records for.
        if a <= 0 || b < a || b - a > 10_000_000 {
            tracing::warn!(metadata, "malformed offset metadata ignored");
            return BTreeSet::new();
        }
        for d in a..=b {
            done.insert(base.saturating_add(d));
        }
    }
    done
}

/// What the committed state of a partition says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Committed {
    /// The committed offset (`None`: the group never committed one).
    pub(crate) base: Option<i64>,
    /// Finished offsets above it (from the commit metadata).
    pub(crate) done: BTreeSet<i64>,
}

/// The exactly-once part of a partition's state.
#[derive(Debug, Default)]
pub(crate) struct PartitionTxn {
    /// What the last commit (ours, or read at assignment) left.
    pub(crate) committed: Committed,
    /// Offsets above the committed one that are already committed as done and not reached by
    /// the consumer yet: skipped when they arrive.
    pub(crate) inherited: BTreeSet<i64>,
    /// A rewind whose seek failed: records are dropped until the seek succeeds.
    pub(crate) seek_to: Option<Offset>,
}

impl PartitionTxn {
    /// Whether a record just received must be dropped (a rewind's seek is still pending).
    pub(crate) fn drops(&self) -> bool {
        self.seek_to.is_some()
    }

    /// Whether the record at `offset` was already committed as done (skip it).
    pub(crate) fn take_inherited(&mut self, offset: i64) -> bool {
        self.inherited.remove(&offset)
    }
}

struct TxnState {
    producer: FutureProducer,
    /// Increases at every commit and abort; a writer's sends are accepted only in its own.
    generation: u64,
    /// New writers may join (see the module docs).
    open: bool,
    /// After the final commit: every send is refused.
    closed: bool,
    /// Producer initialised (`init_transactions` + `begin_transaction` succeeded).
    ready: bool,
    /// Executions that joined this transaction and whose completion is not applied yet.
    writers: usize,
    /// Executions that joined this transaction.
    joined: usize,
    first_join: Option<Instant>,
    /// A send of this transaction failed: it must be aborted.
    doomed: Option<String>,
    /// Current epoch of every partition the pod owns.
    epochs: HashMap<(String, i32), u64>,
}

/// The pod's transactional producer and the state of its open transaction.
pub(crate) struct Transactions {
    state: Mutex<TxnState>,
    gate: tokio::sync::Notify,
    client: ClientConfig,
    transactional_id: String,
    interval: Duration,
    max_executions: usize,
    max_age: Duration,
    stop: Arc<AtomicBool>,
}

/// Why a send of an execution was not accepted.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The execution's transaction was aborted, its partition moved on, or the pod is closing:
    /// abandon the execution (it re-runs from the committed offset).
    Refused,
    /// The record is larger than the producer accepts (refused before it joined the
    /// transaction; retrying cannot help).
    TooLarge,
    /// The send failed; the transaction will be aborted and the execution re-run.
    Failed(KafkaError),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Refused => f.write_str("the transaction was aborted"),
            SendError::TooLarge => f.write_str("record too large"),
            SendError::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// One execution's membership in the pod's transactions.
pub(crate) struct Ticket {
    txns: Arc<Transactions>,
    topic: String,
    partition: i32,
    epoch: u64,
    /// The generation joined (0: not a writer yet).
    generation: AtomicU64,
}

tokio::task_local! {
    static CURRENT: Arc<Ticket>;
}

/// The running execution's ticket (inside [`Ticket::scope`]).
pub(crate) fn current() -> Option<Arc<Ticket>> {
    CURRENT.try_with(Arc::clone).ok()
}

impl Ticket {
    pub(crate) fn new(txns: Arc<Transactions>, topic: &str, partition: i32, epoch: u64) -> Ticket {
        Ticket {
            txns,
            topic: topic.to_string(),
            partition,
            epoch,
            generation: AtomicU64::new(0),
        }
    }

    /// Runs `f` with this ticket visible to [`current`] (the `kafka:publish` publisher).
    pub(crate) async fn scope<F: std::future::Future>(self: Arc<Self>, f: F) -> F::Output {
        CURRENT.scope(self, f).await
    }

    /// The transaction this execution wrote into, if any.
    pub(crate) fn generation(&self) -> Option<u64> {
        match self.generation.load(Ordering::Acquire) {
            0 => None,
            g => Some(g),
        }
    }

    /// Produces one record into the execution's transaction (joining it at the first send) and
    /// waits for its acknowledgement; returns its partition and offset.
    pub(crate) async fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) -> Result<(i32, i64), SendError> {
        loop {
            let gate = self.txns.gate.notified();
            let mut gate = std::pin::pin!(gate);
            gate.as_mut().enable();
            let delivery = match self.enqueue(topic, partition, key, payload, headers.as_ref()) {
                Step::Sent(d) => d,
                Step::WaitForGate => {
                    gate.await;
                    continue;
                }
                Step::QueueFull => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                Step::Refused(e) => return Err(e),
            };
            return match delivery.await {
                Ok(Ok(d)) => Ok((d.partition, d.offset)),
                Ok(Err((e, _))) => {
                    let mut st = self.txns.lock();
                    if self.generation() == Some(st.generation) {
                        st.doomed.get_or_insert_with(|| e.to_string());
                    }
                    Err(SendError::Failed(e))
                }
                Err(_) => Err(SendError::Refused),
            };
        }
    }

    /// Checks the execution may send now and enqueues the record (never blocks).
    fn enqueue(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: Option<&OwnedHeaders>,
    ) -> Step {
        let mut st = self.txns.lock();
        let current_epoch = st.epochs.get(&(self.topic.clone(), self.partition));
        if st.closed || current_epoch != Some(&self.epoch) {
            return Step::Refused(SendError::Refused);
        }
        match self.generation() {
            Some(g) if g != st.generation || st.doomed.is_some() => {
                return Step::Refused(SendError::Refused)
            }
            Some(_) => {}
            None if !st.open || !st.ready || st.doomed.is_some() => return Step::WaitForGate,
            None => {}
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(topic);
        if let Some(p) = payload {
            record = record.payload(p);
        }
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(h) = headers {
            record = record.headers(h.clone());
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        match st.producer.send_result(record) {
            Ok(delivery) => {
                if self.generation().is_none() {
                    st.writers += 1;
                    st.joined += 1;
                    st.first_join.get_or_insert_with(Instant::now);
                    self.generation.store(st.generation, Ordering::Release);
                }
                Step::Sent(delivery)
            }
            Err((e, _)) => match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::QueueFull) => Step::QueueFull,
                Some(
                    RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize,
                ) => Step::Refused(SendError::TooLarge),
                _ => {
                    if self.generation().is_some() {
                        st.doomed.get_or_insert_with(|| e.to_string());
                    }
                    Step::Refused(SendError::Failed(e))
                }
            },
        }
    }
}

/// What [`Ticket::enqueue`] did.
enum Step {
    Sent(rdkafka::producer::DeliveryFuture),
    WaitForGate,
    QueueFull,
    Refused(SendError),
}

/// What a commit attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// Committed (records and offsets).
    Committed,
    /// Writers did not finish in time; the transaction stays open, the gate is open again.
    NotReady,
    /// Aborted and rewound (or closed, at shutdown).
    Aborted,
}

impl Transactions {
    /// The producer (not initialised yet: [`Transactions::init`] runs on the consumer thread).
    pub(crate) fn new(
        config: &ExecutorConfig,
        stop: Arc<AtomicBool>,
    ) -> Result<Arc<Transactions>, KafkaError> {
        let transactional_id = config
            .transactions
            .transactional_id
            .clone()
            .unwrap_or_else(|| default_transactional_id(&config.group));
        let timeout = DEFAULT_TRANSACTION_TIMEOUT_MS.to_string();
        let client = crate::pod::client_config(
            config,
            &[
                ("linger.ms", "5"),
                ("compression.type", "lz4"),
                ("transaction.timeout.ms", &timeout),
            ],
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("transactional.id", &transactional_id),
            ],
        );
        let producer: FutureProducer = client.create()?;
        Ok(Arc::new(Transactions {
            state: Mutex::new(TxnState {
                producer,
                generation: 1,
                open: false,
                closed: false,
                ready: false,
                writers: 0,
                joined: 0,
                first_join: None,
                doomed: None,
                epochs: HashMap::new(),
            }),
            gate: tokio::sync::Notify::new(),
            client,
            transactional_id,
            interval: config.transactions.interval,
            max_executions: config.transactions.max_executions.max(1),
            max_age: max_transaction_age(config),
            stop,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, TxnState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn producer(&self) -> FutureProducer {
        self.lock().producer.clone()
    }

    /// Initialised and not closed.
    fn active(&self) -> bool {
        let s = self.lock();
        s.ready && !s.closed
    }

    fn open_gate(&self) {
        self.lock().open = true;
        self.gate.notify_waiters();
    }

    /// `init_transactions` (fencing an earlier producer with the same id and aborting its open
    /// transaction) and `begin_transaction`, retried until they succeed or the pod stops.
    pub(crate) fn init(&self) {
        let mut producer = self.producer();
        let mut attempt = 0u32;
        loop {
            let result = producer
                .init_transactions(CALL_TIMEOUT)
                .and_then(|()| producer.begin_transaction());
            match result {
                Ok(()) => break,
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(transactional_id = %self.transactional_id, error = %e, attempt, "init_transactions failed; retrying");
                    if self.stop.load(Ordering::Acquire) {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                    if is_fatal(&e) || attempt.is_multiple_of(3) {
                        match self.client.create::<FutureProducer>() {
                            Ok(p) => {
                                producer = p.clone();
                                self.lock().producer = p;
                            }
                            Err(e) => tracing::error!(error = %e, "cannot create the producer"),
                        }
                    }
                }
            }
        }
        tracing::info!(transactional_id = %self.transactional_id, "transactional producer ready");
        let mut st = self.lock();
        st.ready = true;
        st.open = true;
        drop(st);
        self.gate.notify_waiters();
    }

    /// Registers the current epoch of an owned partition.
    pub(crate) fn set_epoch(&self, topic: &str, partition: i32, epoch: u64) {
        self.lock()
            .epochs
            .insert((topic.to_string(), partition), epoch);
    }

    /// Forgets a released partition: its running executions can no longer send.
    pub(crate) fn forget(&self, topic: &str, partition: i32) {
        self.lock().epochs.remove(&(topic.to_string(), partition));
    }

    /// A completion was applied: its execution is no longer a writer.
    pub(crate) fn finished(&self, generation: Option<u64>) {
        if let Some(g) = generation {
            let mut st = self.lock();
            if st.generation == g {
                st.writers = st.writers.saturating_sub(1);
            }
        }
    }

    /// Writers left to wait for (0 when the transaction is doomed anyway).
    fn writers_left(&self) -> usize {
        let st = self.lock();
        if st.doomed.is_some() {
            0
        } else {
            st.writers
        }
    }

    /// The committed offsets of `tpl` with their metadata (blocking; retried until the pod stops,
    /// since running records without knowing what is done would duplicate them). Waits while the
    /// previous owner's transaction is pending (read_committed offset fetches are stable).
    pub(crate) fn fetch_committed(
        &self,
        consumer: &PodConsumer,
        tpl: &TopicPartitionList,
    ) -> HashMap<(String, i32), Committed> {
        let mut out = HashMap::new();
        if tpl.count() == 0 {
            return out;
        }
        let mut attempt = 0u32;
        loop {
            match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
                Ok(list) => {
                    for e in list.elements() {
                        let base = match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        };
                        let done =
                            base.map_or_else(BTreeSet::new, |b| decode_done(b, e.metadata()));
                        out.insert(
                            (e.topic().to_string(), e.partition()),
                            Committed { base, done },
                        );
                    }
                    return out;
                }
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "fetching committed offsets failed (a previous owner's transaction may be pending); retrying");
                    if self.stop.load(Ordering::Acquire) && attempt > 1 {
                        return out;
                    }
                }
            }
        }
    }

    /// Called on the consumer thread after completions were applied: aborts a doomed
    /// transaction, commits a due one, retries pending seeks.
    pub(crate) fn tick(&self, consumer: &PodConsumer, st: &mut LoopState) {
        retry_seeks(consumer, st);
        let (doomed, due, age) = {
            let s = self.lock();
            let age = s.first_join.map(|t| t.elapsed());
            let due = s.ready
                && !s.closed
                && s.joined > 0
                && (s.joined >= self.max_executions || age.is_some_and(|a| a >= self.interval));
            (s.doomed.clone(), due, age)
        };
        if let Some(why) = doomed {
            self.abort_and_rewind(consumer, st, &format!("a send failed: {why}"), &[]);
            return;
        }
        if due && self.commit(consumer, st, Instant::now() + WRITER_WAIT, true) == Commit::NotReady
        {
            if let Some(age) = age.filter(|a| *a >= self.max_age) {
                self.abort_and_rewind(
                    consumer,
                    st,
                    &format!(
                        "writers still running {:.1}s after the transaction began",
                        age.as_secs_f64()
                    ),
                    &[],
                );
            }
        }
    }

    /// Revoke: commit the open transaction with the offsets of every partition (the revoked ones
    /// included) before they are released, or abort and rewind when a writer is still running.
    pub(crate) fn on_revoke(
        &self,
        consumer: &PodConsumer,
        st: &mut LoopState,
        revoked: &[(String, i32)],
        deadline: Instant,
    ) {
        if !self.active() {
            return;
        }
        if consumer.assignment_lost() {
            self.abort_and_rewind(
                consumer,
                st,
                "assignment lost (this pod was removed from the group)",
                revoked,
            );
            return;
        }
        let deadline = deadline.max(Instant::now() + Duration::from_millis(500));
        // An abort inside `commit` (a failed commit) already rewound.
        if self.commit(consumer, st, deadline, true) == Commit::NotReady {
            self.abort_and_rewind(
                consumer,
                st,
                "revoke: writers did not finish within the drain budget",
                revoked,
            );
        }
    }

    /// Shutdown: commit the final transaction (or abort it when writers are still running).
    pub(crate) fn shutdown(&self, consumer: &PodConsumer, st: &mut LoopState, deadline: Instant) {
        if !self.active() {
            return;
        }
        match self.commit(consumer, st, deadline, false) {
            Commit::Committed => tracing::info!("final transaction committed"),
            _ => {
                let producer = self.producer();
                if let Err(e) = producer.abort_transaction(CALL_TIMEOUT) {
                    tracing::warn!(error = %e, "abort of the final transaction failed");
                }
                count(false, 0, None);
                tracing::warn!("final transaction aborted: unfinished executions will re-run");
            }
        }
        let mut s = self.lock();
        s.closed = true;
        s.open = false;
        drop(s);
        self.gate.notify_waiters();
    }

    /// One commit attempt (see the module docs).
    fn commit(
        &self,
        consumer: &PodConsumer,
        st: &mut LoopState,
        wait_until: Instant,
        begin_next: bool,
    ) -> Commit {
        let joined = {
            let mut s = self.lock();
            if s.doomed.is_some() {
                return Commit::NotReady;
            }
            s.open = false;
            s.joined
        };
        st.drain(consumer, wait_until, |_| self.writers_left());
        {
            let s = self.lock();
            if s.doomed.is_some() || s.writers > 0 {
                let doomed = s.doomed.is_some();
                drop(s);
                if !doomed {
                    self.open_gate();
                    tracing::debug!("commit postponed: writers still running");
                }
                return Commit::NotReady;
            }
        }
        let Some((offsets, committed)) = offsets_of(st) else {
            tracing::error!("offset metadata too long to commit; postponing");
            self.open_gate();
            return Commit::NotReady;
        };
        let Some(cgm) = consumer.group_metadata() else {
            if begin_next {
                self.abort_and_rewind(consumer, st, "no consumer group metadata", &[]);
            }
            return Commit::Aborted;
        };
        let t0 = Instant::now();
        let producer = self.producer();
        let result = (|| {
            if offsets.count() > 0 {
                producer.send_offsets_to_transaction(&offsets, &cgm, CALL_TIMEOUT)?;
            }
            producer.commit_transaction(CALL_TIMEOUT)
        })();
        match result {
            Ok(()) => {
                let took = t0.elapsed();
                count(true, joined, Some(took));
                tracing::debug!(executions = joined, offsets = %crate::pod::describe_offsets(&offsets), ms = took.as_millis() as u64, "transaction committed");
                for (key, c) in committed {
                    if let Some(p) = st.partitions.get_mut(&key) {
                        p.eos.inherited.retain(|o| c.base.is_some_and(|b| *o >= b));
                        p.eos.committed = c;
                    }
                }
                let begun = !begin_next || producer.begin_transaction().is_ok();
                let mut s = self.lock();
                s.generation += 1;
                s.writers = 0;
                s.joined = 0;
                s.first_join = None;
                s.open = begin_next && begun;
                drop(s);
                if !begun {
                    drop(producer);
                    self.recreate();
                }
                self.gate.notify_waiters();
                Commit::Committed
            }
            Err(e) => {
                let why = format!("commit failed: {e}");
                if begin_next {
                    self.abort_and_rewind(consumer, st, &why, &[]);
                } else {
                    tracing::warn!(error = %e, "final commit failed");
                }
                Commit::Aborted
            }
        }
    }

    /// Replaces the producer and runs `init_transactions` + `begin_transaction` again.
    fn recreate(&self) {
        tracing::warn!(transactional_id = %self.transactional_id, "recreating the transactional producer");
        match self.client.create::<FutureProducer>() {
            Ok(p) => {
                let mut s = self.lock();
                s.producer = p;
                s.ready = false;
            }
            Err(e) => tracing::error!(error = %e, "cannot create the producer"),
        }
        self.init();
    }

    /// Aborts the open transaction and rewinds every owned partition but `skip` (see the module
    /// docs).
    pub(crate) fn abort_and_rewind(
        &self,
        consumer: &PodConsumer,
        st: &mut LoopState,
        why: &str,
        skip: &[(String, i32)],
    ) {
        let joined = {
            let mut s = self.lock();
            s.generation += 1;
            s.writers = 0;
            s.open = false;
            s.doomed = None;
            s.first_join = None;
            std::mem::take(&mut s.joined)
        };
        count(false, joined, None);
        tracing::warn!(
            reason = why,
            executions = joined,
            "aborting the transaction and rewinding to the committed offsets"
        );
        let producer = self.producer();
        match producer.abort_transaction(CALL_TIMEOUT) {
            Ok(()) => match producer.begin_transaction() {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "begin_transaction after abort failed");
                    drop(producer);
                    self.recreate();
                }
            },
            Err(e) => {
                if is_fatal(&e) {
                    tracing::warn!(error = %e, "the producer is fenced (a newer producer with this transactional.id exists)");
                } else {
                    tracing::warn!(error = %e, "abort_transaction failed");
                }
                drop(producer);
                self.recreate();
            }
        }
        rewind(consumer, st, skip, self);
        self.open_gate();
    }
}

fn is_fatal(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_fatal(),
        _ => matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::Fatal)
        ),
    }
}

fn count(committed: bool, executions: usize, took: Option<Duration>) {
    let result = if committed { "committed" } else { "aborted" };
    metrics::counter!(names::TRANSACTIONS, "result" => result).increment(1);
    if committed {
        metrics::histogram!(names::TRANSACTION_EXECUTIONS).record(executions as f64);
    }
    if let Some(t) = took {
        metrics::histogram!(names::TRANSACTION_COMMIT_SECONDS).record(t.as_secs_f64());
    }
}

/// Exports the transaction series at zero.
pub(crate) fn touch() {
    for result in ["committed", "aborted"] {
        metrics::counter!(names::TRANSACTIONS, "result" => result).increment(0);
    }
}

/// The offsets to commit for every owned partition with something started, with their
/// metadata, and the committed state each will have.
#[allow(clippy::type_complexity)]
fn offsets_of(st: &LoopState) -> Option<(TopicPartitionList, Vec<((String, i32), Committed)>)> {
    let mut tpl = TopicPartitionList::new();
    let mut committed = Vec::new();
    for ((topic, partition), p) in &st.partitions {
        if p.eos.seek_to.is_some() {
            continue;
        }
        let Some(base) = p.tracker.first_pending().or(p.tracker.next_to_store()) else {
            continue;
        };
        let mut done: BTreeSet<i64> = p.tracker.completed_above_prefix().collect();
        done.extend(p.eos.inherited.range(base + 1..));
        let metadata = encode_done(base, done.iter().copied())?;
        if tpl
            .add_partition_offset(topic, *partition, Offset::Offset(base))
            .is_err()
        {
            continue;
        }
        if let Some(mut e) = tpl.find_partition(topic, *partition) {
            e.set_metadata(metadata);
        }
        committed.push((
            (topic.clone(), *partition),
            Committed {
                base: Some(base),
                done,
            },
        ));
    }
    Some((tpl, committed))
}

/// Every owned partition but `skip` back to its committed offset, with a new epoch.
fn rewind(consumer: &PodConsumer, st: &mut LoopState, skip: &[(String, i32)], txns: &Transactions) {
    let mut resume = TopicPartitionList::new();
    let mut next_epoch = st.next_epoch;
    for (key, p) in st.partitions.iter_mut() {
        if skip.contains(key) {
            continue;
        }
        next_epoch += 1;
        p.epoch = next_epoch;
        p.tracker = crate::offsets::OffsetTracker::new();
        p.backlog = crate::ordering::Sequencer::new(st.ordering);
        p.running = 0;
        p.eos.inherited = p.eos.committed.done.clone();
        p.eos.seek_to = Some(
            p.eos
                .committed
                .base
                .map_or(Offset::Beginning, Offset::Offset),
        );
        if p.paused {
            p.paused = false;
            resume.add_partition(&key.0, key.1);
        }
        txns.set_epoch(&key.0, key.1, next_epoch);
    }
    st.next_epoch = next_epoch;
    retry_seeks(consumer, st);
    if resume.count() > 0 {
        if let Err(e) = consumer.resume(&resume) {
            tracing::warn!(error = %e, "resume after rewind failed");
        }
    }
}

/// Seeks the partitions whose rewind seek is pending.
fn retry_seeks(consumer: &PodConsumer, st: &mut LoopState) {
    for ((topic, partition), p) in st.partitions.iter_mut() {
        let Some(to) = p.eos.seek_to else { continue };
        match consumer.seek(topic, *partition, to, Duration::from_secs(5)) {
            Ok(()) => {
                tracing::info!(topic, partition, offset = ?to, "rewound to the committed offset");
                p.eos.seek_to = None;
            }
            Err(e) => {
                tracing::warn!(topic, partition, error = %e, "seek failed; records are dropped until it succeeds")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_offsets_round_trip_as_runs() {
        let base = 100;
        let done = [102, 103, 104, 105, 109, 111, 112];
        let meta = encode_done(base, done).expect("short");
        assert_eq!(meta, "xw1:2-5,9,11-12");
        assert_eq!(
            decode_done(base, &meta).into_iter().collect::<Vec<_>>(),
            done.to_vec()
        );
        assert_eq!(encode_done(base, []).as_deref(), Some("xw1:"));
        assert!(decode_done(base, "xw1:").is_empty());
        // Offsets at or below the base are committed by the offset itself.
        assert_eq!(encode_done(base, [99, 100, 101]).as_deref(), Some("xw1:1"));
    }

    #[test]
    fn foreign_or_malformed_metadata_means_nothing_done() {
        assert!(decode_done(5, "").is_empty());
        assert!(decode_done(5, "something else").is_empty());
        assert!(decode_done(5, "xw1:3-1").is_empty());
        assert!(decode_done(5, "xw1:0").is_empty());
        assert!(decode_done(5, "xw1:a-b").is_empty());
        assert!(decode_done(5, "xw1:1-99999999999").is_empty());
    }

    #[test]
    fn metadata_too_long_is_refused() {
        // Every other offset: one run per offset.
        let done: Vec<i64> = (0..2000).map(|i| 2 * i + 2).collect();
        assert!(encode_done(0, done).is_none());
    }

    #[test]
    fn transaction_age_bound_follows_the_timeout() {
        let mut c = ExecutorConfig::new("b");
        assert_eq!(max_transaction_age(&c), Duration::from_secs(20));
        c.kafka
            .push(("transaction.timeout.ms".into(), "60000".into()));
        assert_eq!(max_transaction_age(&c), Duration::from_secs(40));
    }
}
