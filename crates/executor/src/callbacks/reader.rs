//! The callback reader: one thread, one group-less consumer (`assign`, never commits) on the
//! callback topic, reading the partitions that match the start partitions the pod owns.
//!
//! Positions: a callback partition is read from the earliest time any of its start
//! partitions asks for (the assignment time, lowered to each start record's timestamp as the
//! pod receives them, minus the clock-skew margin), located with `offsets_for_times`. When a
//! start partition asks for an earlier time than its callback partition was positioned at,
//! the partition is re-positioned there (callbacks read twice are harmless: the second copy
//! finds nobody waiting and ages out of the early buffer). librdkafka's mock cluster cannot
//! look offsets up by time; the reader notices (a lookup of time 0 on a non-empty partition
//! finds nothing) and reads such partitions from their start.

use super::{Command, Shared};
use crate::config::ExecutorConfig;
use crate::dead_letter_headers::{copy_headers, dead_letter_headers};
use crate::telemetry::names;
use expressway_engine::callback_hub::Delivery;
use expressway_engine::{CallbackSignal, TaskError};
use expressway_wire::callback::INVALID_TASK_TOKEN_CODE;
use expressway_wire::task_token::callback_partition;
use expressway_wire::{CallbackOutcome, CallbackRecord};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Header on a record the reader moved to the partition its token names.
pub const FORWARDED_HEADER: &str = "expressway-forwarded-from";

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the partition count is read again (and, while the topic is missing, retried).
const METADATA_REFRESH: Duration = Duration::from_secs(30);
const MISSING_TOPIC_RETRY: Duration = Duration::from_secs(2);

pub(super) struct Reader {
    consumer: BaseConsumer,
    /// Watermarks, offsets by time and metadata: a client of their own. On the consumer's
    /// connections they would queue behind its pending fetch, which the broker holds for up to
    /// `fetch.wait.max.ms` when a partition has nothing new (measured on Apache Kafka 4.4.0: each
    /// partition took ~1 s to position, so 4 partitions of a fresh pod took 3-4 s).
    lookups: BaseConsumer,
    producer: FutureProducer,
    runtime: tokio::runtime::Handle,
    shared: Arc<Shared>,
    topic: String,
    dlq_topic: String,
    commands: mpsc::Receiver<Command>,
    stop: Arc<AtomicBool>,
    /// Partitions of the callback topic (`None`: not known yet, e.g. the topic is missing).
    partitions: Option<i32>,
    metadata_at: Option<Instant>,
    missing_logged: bool,
    /// Owned start partitions and the time from which their callbacks are needed (ms).
    owned: HashMap<(String, i32), i64>,
    /// Assigned callback partitions: the time they were positioned for, and the next offset.
    assigned: HashMap<i32, (i64, Offset)>,
    /// `CaughtUp` requests: the start partition, the callback partition's end offset once
    /// known, and whom to tell.
    barriers: Vec<Barrier>,
}

struct Barrier {
    start: (String, i32),
    end: Option<(i32, i64)>,
    reply: tokio::sync::oneshot::Sender<()>,
}

impl Reader {
    pub(super) fn new(
        config: &ExecutorConfig,
        shared: Arc<Shared>,
        runtime: tokio::runtime::Handle,
        commands: mpsc::Receiver<Command>,
        stop: Arc<AtomicBool>,
    ) -> Result<Reader, rdkafka::error::KafkaError> {
        let group = format!("{}-callbacks", config.group);
        let consumer: BaseConsumer = crate::pod::client_config(
            config,
            &[("auto.offset.reset", "earliest")],
            &[
                // `assign` needs a group id; nothing is ever committed.
                ("group.id", group.as_str()),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", "false"),
            ],
        )
        .create()?;
        let lookups: BaseConsumer = crate::pod::client_config(
            config,
            &[],
            &[
                ("group.id", group.as_str()),
                ("enable.auto.commit", "false"),
            ],
        )
        .create()?;
        let producer: FutureProducer = crate::pod::client_config(
            config,
            &[("linger.ms", "1"), ("acks", "all")],
            &[("enable.idempotence", "true")],
        )
        .create()?;
        Ok(Reader {
            consumer,
            lookups,
            producer,
            runtime,
            shared,
            topic: config.callbacks.topic.clone(),
            dlq_topic: config.dlq_topic.clone(),
            commands,
            stop,
            partitions: None,
            metadata_at: None,
            missing_logged: false,
            owned: HashMap::new(),
            assigned: HashMap::new(),
            barriers: Vec::new(),
        })
    }

    pub(super) fn run(mut self) {
        tracing::info!(topic = %self.topic, "callback reader started");
        let mut housekeeping = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            let mut dirty = false;
            while let Ok(c) = self.commands.try_recv() {
                self.apply(c);
                dirty = true;
            }
            if self.refresh_metadata() {
                dirty = true;
            }
            if dirty {
                self.reconcile();
            }
            if !self.barriers.is_empty() {
                self.check_barriers();
            }
            if self.assigned.is_empty() {
                // Nothing to read: wait for a command instead of polling an empty assignment.
                match self.commands.recv_timeout(Duration::from_millis(100)) {
                    Ok(c) => {
                        self.apply(c);
                        self.reconcile();
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match self.consumer.poll(Duration::from_millis(100)) {
                    None => {}
                    Some(Err(e)) => {
                        tracing::warn!(topic = %self.topic, error = %e, "callback reader: consumer error")
                    }
                    Some(Ok(msg)) => {
                        let q = msg.partition();
                        let next = Offset::Offset(msg.offset() + 1);
                        self.handle(&msg);
                        if let Some(a) = self.assigned.get_mut(&q) {
                            a.1 = next;
                        }
                    }
                }
            }
            if housekeeping.elapsed() >= Duration::from_secs(1) {
                housekeeping = Instant::now();
                self.housekeeping();
            }
        }
        self.housekeeping();
        tracing::info!(topic = %self.topic, "callback reader stopped");
    }

    fn apply(&mut self, c: Command) {
        match c {
            Command::Assigned {
                topic,
                partition,
                from_ms,
            } => {
                self.owned.insert((topic, partition), from_ms);
            }
            Command::Lower {
                topic,
                partition,
                from_ms,
            } => {
                if let Some(f) = self.owned.get_mut(&(topic, partition)) {
                    *f = (*f).min(from_ms);
                }
            }
            Command::Revoked { topic, partition } => {
                self.owned.remove(&(topic, partition));
            }
            Command::CaughtUp {
                topic,
                partition,
                reply,
            } => self.barriers.push(Barrier {
                start: (topic, partition),
                end: None,
                reply,
            }),
        }
    }

    /// Answers the `CaughtUp` requests whose callback partition has been read to the end it
    /// had when the request was armed (its high watermark then; the consumer's position
    /// counts transaction markers and compacted gaps as read).
    fn check_barriers(&mut self) {
        let positions = self.consumer.position().ok();
        let at = |o: Offset| match o {
            Offset::Offset(o) => o,
            _ => -1,
        };
        for mut b in std::mem::take(&mut self.barriers) {
            if b.reply.is_closed() {
                continue;
            }
            let keep = |this: &mut Self, b: Barrier| this.barriers.push(b);
            let (Some(n), true) = (self.partitions, self.owned.contains_key(&b.start)) else {
                keep(self, b);
                continue;
            };
            let q = callback_partition(b.start.1, n);
            let Some(stored) = self.assigned.get(&q).map(|a| at(a.1)) else {
                keep(self, b);
                continue;
            };
            let end = match b.end {
                Some((_, end)) => end,
                None => match self
                    .lookups
                    .fetch_watermarks(&self.topic, q, METADATA_TIMEOUT)
                {
                    Ok((low, high)) => {
                        // An empty partition has nothing to read (-1: any position will do).
                        let end = if low >= high { -1 } else { high };
                        b.end = Some((q, end));
                        end
                    }
                    Err(e) => {
                        tracing::debug!(topic = %self.topic, partition = q, error = %e, "callback reader: watermarks for a catch-up request");
                        keep(self, b);
                        continue;
                    }
                },
            };
            let position = positions
                .as_ref()
                .and_then(|p| p.find_partition(&self.topic, q))
                .map_or(-1, |e| at(e.offset()))
                .max(stored);
            if position >= end {
                let _ = b.reply.send(());
            } else {
                keep(self, b);
            }
        }
    }

    /// Reads the callback topic's partition count when unknown or due; returns whether it
    /// changed.
    fn refresh_metadata(&mut self) -> bool {
        let due = match (self.partitions, self.metadata_at) {
            (_, None) => true,
            (None, Some(at)) => at.elapsed() >= MISSING_TOPIC_RETRY,
            (Some(_), Some(at)) => at.elapsed() >= METADATA_REFRESH,
        };
        if !due {
            return false;
        }
        self.metadata_at = Some(Instant::now());
        let count = match self
            .lookups
            .fetch_metadata(Some(&self.topic), METADATA_TIMEOUT)
        {
            Ok(md) => md
                .topics()
                .iter()
                .find(|t| t.name() == self.topic && t.error().is_none())
                .map(|t| t.partitions().len() as i32)
                .filter(|n| *n > 0),
            Err(e) => {
                tracing::debug!(topic = %self.topic, error = %e, "callback reader: metadata");
                return false;
            }
        };
        match count {
            None if !self.missing_logged => {
                self.missing_logged = true;
                tracing::warn!(topic = %self.topic, "the callback topic does not exist: callbacks cannot reach this pod until it is created (partitioned like the start topic)");
            }
            Some(n) if self.partitions != Some(n) => {
                tracing::info!(topic = %self.topic, partitions = n, "callback topic found");
                self.missing_logged = false;
            }
            _ => {}
        }
        let changed = count.is_some() && count != self.partitions;
        if count.is_some() {
            self.partitions = count;
            if let Some(n) = count {
                self.shared.set_callback_partitions(n);
            }
        }
        changed
    }

    /// Makes the assignment match the owned start partitions.
    fn reconcile(&mut self) {
        let Some(n) = self.partitions else {
            return;
        };
        let mut want: HashMap<i32, i64> = HashMap::new();
        for ((_, p), from) in &self.owned {
            let q = callback_partition(*p, n);
            let f = want.entry(q).or_insert(*from);
            *f = (*f).min(*from);
        }
        let mut changed = false;
        let before = self.assigned.len();
        self.assigned.retain(|q, _| want.contains_key(q));
        changed |= self.assigned.len() != before;
        for (q, from) in &want {
            let reposition = match self.assigned.get(q) {
                None => true,
                Some((positioned, _)) => from < positioned,
            };
            if reposition {
                let offset = self.start_offset(*q, *from);
                tracing::info!(topic = %self.topic, partition = q, from_ms = from, offset = ?offset, "reading callbacks");
                self.assigned.insert(*q, (*from, offset));
                changed = true;
            }
        }
        if !changed {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (q, (_, offset)) in &self.assigned {
            if let Err(e) = tpl.add_partition_offset(&self.topic, *q, *offset) {
                tracing::warn!(topic = %self.topic, partition = q, error = %e, "callback reader: cannot assign");
            }
        }
        if let Err(e) = self.consumer.assign(&tpl) {
            tracing::error!(topic = %self.topic, error = %e, "callback reader: assign failed");
        }
    }

    /// The first offset of callback partition `q` with a timestamp at or after `from_ms`.
    fn start_offset(&self, q: i32, from_ms: i64) -> Offset {
        let (low, high) = match self
            .lookups
            .fetch_watermarks(&self.topic, q, METADATA_TIMEOUT)
        {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition = q, error = %e, "callback reader: watermarks unknown; reading the partition from its start");
                return Offset::Beginning;
            }
        };
        match self.lookup(q, from_ms.max(0)) {
            Ok(Some(o)) => return Offset::Offset(o),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition = q, error = %e, "callback reader: offset lookup by time failed; reading the partition from its start");
                return Offset::Offset(low);
            }
        }
        if low >= high {
            return Offset::Offset(high);
        }
        // Nothing at or after `from_ms` — or a broker that cannot search by time: then even
        // time 0 finds nothing in a non-empty partition.
        match self.lookup(q, 0) {
            Ok(Some(_)) => Offset::Offset(high),
            _ => {
                tracing::debug!(topic = %self.topic, partition = q, "the broker cannot look offsets up by time: reading the callback partition from its start");
                Offset::Offset(low)
            }
        }
    }

    fn lookup(&self, q: i32, ts_ms: i64) -> rdkafka::error::KafkaResult<Option<i64>> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, q, Offset::Offset(ts_ms))?;
        let r = self.lookups.offsets_for_times(tpl, METADATA_TIMEOUT)?;
        Ok(match r.find_partition(&self.topic, q).map(|e| e.offset()) {
            Some(Offset::Offset(o)) if o >= 0 => Some(o),
            _ => None,
        })
    }

    fn housekeeping(&self) {
        let hub = &self.shared.hub;
        hub.expire();
        let dropped = hub.take_dropped();
        if dropped.expired > 0 {
            metrics::counter!(names::CALLBACKS, "outcome" => "expired").increment(dropped.expired);
            tracing::info!(
                expired = dropped.expired,
                "callbacks nobody waited for left the early buffer (their executions had ended)"
            );
        }
        if dropped.evicted > 0 {
            metrics::counter!(names::CALLBACKS, "outcome" => "dropped").increment(dropped.evicted);
            tracing::warn!(
                dropped = dropped.evicted,
                limit = hub.limits().max_buffered,
                "the early callback buffer is full: the oldest callbacks were dropped"
            );
        }
        metrics::gauge!(names::CALLBACK_EARLY_BUFFER).set(hub.buffered() as f64);
    }

    fn handle(&self, msg: &BorrowedMessage<'_>) {
        let source = format!("{}/{}/{}", msg.topic(), msg.partition(), msg.offset());
        let record = match CallbackRecord::decode(msg.payload()) {
            Ok(r) => r,
            Err(e) => return self.invalid(msg, &source, e.code(), &e.to_string()),
        };
        let fields = match self.shared.key.verify(&record.task_token) {
            Ok(f) => f,
            Err(e) => {
                return self.invalid(
                    msg,
                    &source,
                    INVALID_TASK_TOKEN_CODE,
                    &format!("{e} (code {})", e.code()),
                )
            }
        };
        let n = self.partitions.unwrap_or(1);
        let target = callback_partition(fields.partition, n);
        let forwarded = msg
            .headers()
            .is_some_and(|h| h.iter().any(|h| h.key == FORWARDED_HEADER));
        if target != msg.partition() {
            if !forwarded {
                return self.forward(msg, &source, target);
            }
            tracing::warn!(source = %source, target, "a forwarded callback is still on the wrong partition (partition count changing?); delivering it here");
        }
        let kind = record.outcome.kind();
        let signal = match record.outcome {
            CallbackOutcome::Success(v) => CallbackSignal::Success(v),
            CallbackOutcome::Failure { error, cause } => CallbackSignal::Failure(TaskError {
                error: error.unwrap_or_default(),
                cause,
            }),
            CallbackOutcome::Heartbeat => CallbackSignal::Heartbeat,
        };
        let outcome = match self.shared.hub.deliver(&record.task_token, signal) {
            Delivery::Delivered(_) => kind,
            Delivery::Buffered => "buffered",
            Delivery::Dropped => "dropped",
        };
        metrics::counter!(names::CALLBACKS, "outcome" => outcome).increment(1);
        tracing::debug!(source = %source, execution_arn = %fields.execution_arn, state = %fields.state_name, attempt = fields.attempt, kind, outcome, "callback");
    }

    fn invalid(&self, msg: &BorrowedMessage<'_>, source: &str, code: &str, cause: &str) {
        tracing::warn!(
            source,
            code,
            cause,
            "invalid callback: routing it to the dead-letter topic"
        );
        metrics::counter!(names::CALLBACKS, "outcome" => "invalid").increment(1);
        let headers = dead_letter_headers(msg, code, cause, source);
        if self.produce(&self.dlq_topic, None, msg, headers) {
            metrics::counter!(names::DEAD_LETTERS, "reason" => code.to_string()).increment(1);
        }
    }

    fn forward(&self, msg: &BorrowedMessage<'_>, source: &str, target: i32) {
        let from = msg.partition().to_string();
        let headers = copy_headers(msg).insert(Header {
            key: FORWARDED_HEADER,
            value: Some(&from),
        });
        if self.produce(&self.topic, Some(target), msg, headers) {
            metrics::counter!(names::CALLBACKS, "outcome" => "forwarded").increment(1);
            tracing::debug!(
                source,
                target,
                "callback forwarded to the partition its token names"
            );
        }
    }

    /// Produces a copy of `msg` (key, value) with `headers`, retrying until acknowledged or
    /// the pod stops; returns whether it was acknowledged.
    fn produce(
        &self,
        topic: &str,
        partition: Option<i32>,
        msg: &BorrowedMessage<'_>,
        headers: OwnedHeaders,
    ) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers.clone());
            if let Some(p) = partition {
                record = record.partition(p);
            }
            if let Some(k) = msg.key() {
                record = record.key(k);
            }
            if let Some(v) = msg.payload() {
                record = record.payload(v);
            }
            let sent = self
                .runtime
                .block_on(self.producer.send(record, Duration::from_secs(10)));
            match sent {
                Ok(_) => return true,
                Err((e, _)) => {
                    if self.stop.load(Ordering::Acquire) {
                        tracing::error!(topic, error = %e, "callback reader stopping: a record was not written");
                        return false;
                    }
                    tracing::warn!(topic, error = %e, "callback reader: write failed; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
