//! Distributed Map children across the cluster: the engine's
//! [`ChildExecutions`](expressway_engine::map_runs::ChildExecutions) for `serve` (at-least-once,
//! with a task token key).
//!
//! * **The parent's side** ([`ClusterChildren`]): each child (item or batch) becomes a start
//!   event on the start topic, keyed by the child's execution name (so children spread over
//!   the partitions and run on every pod), with the [`MAP_CHILD_HEADER`] naming the Map state,
//!   the child's ARN and a task token of the parent's start partition. The parent then waits
//!   for that token like a `.waitForTaskToken` Task: the child's pod sends a heartbeat when the
//!   child starts and a success or failure callback when it ends, and the callback topic
//!   routes both to the pod that owns the parent's partition. The engine keeps at most
//!   `MaxConcurrency` children outstanding, so the bound holds across the cluster: only the
//!   parent starts children of its Map Run.
//! * **A re-run parent** (its pod died, or its partition moved) names the same children and
//!   the same tokens (both derive from the parent's ARN, the state, its scope and attempt, and
//!   the child's index). Before its first child it waits until the callback reader has read
//!   its callback partition to the end (`CallbackTransport::caught_up`), so what the earlier
//!   run's children reported is in the hub's early buffer. A child whose outcome is there is
//!   not started again (`reused`); one that had started (its heartbeat is there) is waited for,
//!   not started again (`resumed`): its start event is in Kafka, and at-least-once delivery
//!   runs it to its end or redelivers it. Only children whose start event the earlier run
//!   wrote but that no pod had begun yet run twice, under the same ARN.
//! * **The child's side** (`pod.rs`): a start event with the header runs the Map state's item
//!   processor under the header's ARN, publishes its log and result records like any
//!   execution, and sends its outcome with [`outcome_callback`] before its offset is stored.
//!
//! `expressway run`, `dev` without a key and `--guarantee exactly-once` run children in the
//! parent's process (the engine's default): an exactly-once parent's start events would sit in
//! its own open transaction, invisible to the pods that should run them, until it commits.

use crate::callbacks::{CallbackTransport, PartitionCallbacks};
use crate::telemetry::names;
use expressway_engine::map_runs::{ChildExecution, ChildExecutions};
use expressway_engine::{CallbackKey, CallbackSignal, Callbacks, Outcome, Status, TaskError};
use expressway_wire::callback::{MAX_CAUSE_CHARS, MAX_ERROR_CHARS, MAX_OUTPUT_BYTES};
use expressway_wire::{CallbackOutcome, CallbackRecord, MapChild, MAP_CHILD_HEADER};
use futures::future::BoxFuture;
use futures::{FutureExt as _, StreamExt as _};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Every `event` label of [`names::MAP_CHILDREN`].
pub const EVENTS: &[&str] = &[
    "emitted",
    "resumed",
    "reused",
    "succeeded",
    "failed",
    "ran",
    "orphaned",
    "refused",
];

/// How long a parent waits for the callback reader to catch up before its first child; past
/// it, children are started without knowing what an earlier run left (at worst they run again).
const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);

/// The cluster's children of one parent execution (see the module documentation).
#[derive(Clone)]
pub struct ClusterChildren {
    inner: Arc<Inner>,
}

struct Inner {
    producer: FutureProducer,
    start_topic: String,
    /// The parent's callbacks (tokens of its start partition).
    callbacks: Arc<PartitionCallbacks>,
    transport: Arc<CallbackTransport>,
    /// The parent's start partition.
    topic: String,
    partition: i32,
    caught_up: tokio::sync::OnceCell<()>,
    /// Partitions of the start topic (`None`: unknown, the partitioner picks by key).
    start_partitions: tokio::sync::OnceCell<Option<i32>>,
}

impl ClusterChildren {
    /// The children of an execution of start partition `partition` of `topic`, whose
    /// callbacks are `callbacks`; start events go through `producer` (not transactional).
    pub fn new(
        producer: FutureProducer,
        start_topic: &str,
        callbacks: Arc<PartitionCallbacks>,
        transport: Arc<CallbackTransport>,
        topic: &str,
        partition: i32,
    ) -> ClusterChildren {
        ClusterChildren {
            inner: Arc::new(Inner {
                producer,
                start_topic: start_topic.to_string(),
                callbacks,
                transport,
                topic: topic.to_string(),
                partition,
                caught_up: tokio::sync::OnceCell::new(),
                start_partitions: tokio::sync::OnceCell::new(),
            }),
        }
    }
}

impl ChildExecutions for ClusterChildren {
    fn run(&self, child: ChildExecution) -> BoxFuture<'static, Result<Value, TaskError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.run(child).await })
    }
}

/// The callback key of a child: the parent's, with the child's index in the scope.
fn child_key(child: &ChildExecution) -> CallbackKey {
    CallbackKey {
        execution_arn: child.parent_execution_arn.clone(),
        state_name: child.state_name.clone(),
        scope: format!("{}@{}", child.scope, child.index),
        attempt: child.attempt,
    }
}

/// The outcome a signal carries, if it is one.
fn terminal(signal: CallbackSignal) -> Option<Result<Value, TaskError>> {
    match signal {
        CallbackSignal::Heartbeat => None,
        CallbackSignal::Success(v) => Some(Ok(v)),
        CallbackSignal::Failure(e) => Some(Err(e)),
    }
}

fn count(event: &'static str) {
    metrics::counter!(names::MAP_CHILDREN, "event" => event).increment(1);
}

impl Inner {
    async fn run(&self, child: ChildExecution) -> Result<Value, TaskError> {
        self.caught_up
            .get_or_init(|| async {
                if !self
                    .transport
                    .caught_up(&self.topic, self.partition, CATCH_UP_LIMIT)
                    .await
                {
                    tracing::warn!(topic = %self.topic, partition = self.partition, "the callback reader did not catch up in time: Map children are started without knowing what an earlier run left");
                }
            })
            .await;
        let mut listener = self.callbacks.listen(child_key(&child))?;
        // What an earlier run of the parent left: replayed from the early buffer at once.
        let mut started = false;
        while let Some(Some(signal)) = listener.signals.next().now_or_never() {
            match terminal(signal) {
                None => started = true,
                Some(outcome) => {
                    count("reused");
                    return outcome;
                }
            }
        }
        if started {
            count("resumed");
            tracing::debug!(execution_arn = %child.execution_arn, "map child already started by an earlier run of its parent: waiting for it");
        } else {
            self.emit(&child, &listener.token).await?;
            count("emitted");
        }
        while let Some(signal) = listener.signals.next().await {
            if let Some(outcome) = terminal(signal) {
                count(if outcome.is_ok() {
                    "succeeded"
                } else {
                    "failed"
                });
                return outcome;
            }
        }
        Err(TaskError::new(
            "States.Runtime",
            "The callbacks of the Map child ended before its outcome",
        ))
    }

    /// Writes the child's start event and waits for the brokers' acknowledgement, retrying
    /// transient failures (the engine drops the future when the parent stops waiting).
    async fn emit(&self, child: &ChildExecution, token: &str) -> Result<(), TaskError> {
        let value = json!({
            "stateMachine": child.state_machine_arn,
            "name": child.execution_name,
            "input": child.input,
        })
        .to_string();
        let header = MapChild {
            task_token: token.to_string(),
            execution_arn: child.execution_arn.clone(),
            map_run_arn: child.map_run_arn.clone(),
            parent_execution_arn: child.parent_execution_arn.clone(),
            state_name: child.state_name.clone(),
        }
        .to_json();
        let headers = OwnedHeaders::new().insert(Header {
            key: MAP_CHILD_HEADER,
            value: Some(&header),
        });
        let partition = self.partition_for(&child.execution_name).await;
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.start_topic)
                .key(child.execution_name.as_bytes())
                .payload(value.as_bytes())
                .headers(headers.clone());
            if let Some(p) = partition {
                record = record.partition(p);
            }
            match self.producer.send(record, Duration::from_secs(5)).await {
                Ok(_) => return Ok(()),
                Err((e, _))
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(RDKafkaErrorCode::MessageSizeTooLarge)
                    ) =>
                {
                    return Err(TaskError::new(
                        "States.Runtime",
                        format!(
                            "The start event of Map child {} ({} bytes) is larger than the start topic accepts",
                            child.execution_name,
                            value.len()
                        ),
                    ));
                }
                Err((e, _)) => {
                    tracing::warn!(topic = %self.start_topic, error = %e, "map child start event not delivered; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

impl Inner {
    /// The start partition of a child: by its name among the partitions other than the
    /// parent's. A child on the parent's partition would finish behind the parent's offset,
    /// which is stored only once the parent ends, so after a crash it would run again.
    async fn partition_for(&self, name: &str) -> Option<i32> {
        let n = *self
            .start_partitions
            .get_or_init(|| async {
                let client = self.producer.clone();
                let topic = self.start_topic.clone();
                tokio::task::spawn_blocking(move || {
                    let md = client
                        .client()
                        .fetch_metadata(Some(&topic), Duration::from_secs(5))
                        .ok()?;
                    let n = md.topics().first()?.partitions().len();
                    i32::try_from(n).ok().filter(|n| *n > 0)
                })
                .await
                .ok()
                .flatten()
            })
            .await;
        other_partition(name, self.partition, n?)
    }
}

/// A partition for `name` other than `parent` among `n` (`None` when `n` is 1 or `parent` is
/// not one of them: the partitioner then picks by key).
fn other_partition(name: &str, parent: i32, n: i32) -> Option<i32> {
    if n < 2 || !(0..n).contains(&parent) {
        return None;
    }
    // FNV-1a: stable across processes and versions.
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let slot = (h % (n as u64 - 1)) as i32;
    Some(if slot >= parent { slot + 1 } else { slot })
}

/// `s` cut to at most `max` characters.
fn at_most(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// The callback that tells a parent how its child ended: the output (an output too large for
/// a callback record fails the child with `States.DataLimitExceeded`), or the error and cause
/// (cut to the callback record's limits), `States.Timeout` for a child that timed out.
pub fn outcome_callback(token: &str, outcome: &Outcome) -> CallbackRecord {
    match outcome.status {
        Status::Succeeded => {
            let output = outcome.output.clone().unwrap_or(Value::Null);
            let bytes = output.to_string().len();
            if bytes > MAX_OUTPUT_BYTES {
                return failure_callback(
                    token,
                    "States.DataLimitExceeded",
                    &format!("The child's output ({bytes} bytes) exceeds the maximum number of bytes service limit ({MAX_OUTPUT_BYTES})"),
                );
            }
            CallbackRecord {
                task_token: token.to_string(),
                outcome: CallbackOutcome::Success(output),
            }
        }
        Status::Failed => failure_callback(
            token,
            outcome.error.as_deref().unwrap_or_default(),
            outcome.cause.as_deref().unwrap_or_default(),
        ),
        Status::TimedOut => {
            failure_callback(token, "States.Timeout", "The child execution timed out")
        }
    }
}

/// The `expressway-map-child` header among a record's headers, if there is one, read and
/// checked ([`check_header`]); `Err`: why it cannot be used (the dead letter's cause).
pub fn read_header(
    headers: Option<&OwnedHeaders>,
    transport: Option<&CallbackTransport>,
) -> Option<Result<MapChild, String>> {
    use rdkafka::message::Headers as _;
    let header = headers?.iter().find(|h| h.key == MAP_CHILD_HEADER)?;
    Some(
        MapChild::decode(header.value.unwrap_or_default())
            .map_err(|e| e.to_string())
            .and_then(|child| {
                check_header(transport, &child)?;
                Ok(child)
            }),
    )
}

/// Whether a child header comes from a parent of this cluster: its token verifies with the
/// pod's key and names the header's parent and Map state, with a child's scope (`...@index`).
/// A header anyone could write would otherwise choose the ARN the child's records carry and
/// where its outcome goes. `Err`: why not (the dead letter's cause).
pub fn check_header(
    transport: Option<&CallbackTransport>,
    header: &MapChild,
) -> Result<(), String> {
    let Some(transport) = transport else {
        return Err("this pod has no task token key, so it cannot verify the Map child's token (Distributed Map parents run their children in-process without one)".into());
    };
    let fields = transport
        .verify(&header.task_token)
        .map_err(|e| format!("the Map child's token does not verify: {e}"))?;
    if fields.execution_arn != header.parent_execution_arn
        || fields.state_name != header.state_name
        || !fields.scope.contains('@')
    {
        return Err("the Map child's token was not issued for this parent and Map state".into());
    }
    Ok(())
}

/// A failure callback (the error and cause cut to the callback record's limits).
pub fn failure_callback(token: &str, error: &str, cause: &str) -> CallbackRecord {
    CallbackRecord {
        task_token: token.to_string(),
        outcome: CallbackOutcome::Failure {
            error: Some(at_most(error, MAX_ERROR_CHARS)),
            cause: Some(at_most(cause, MAX_CAUSE_CHARS)),
        },
    }
}

/// The heartbeat a child's pod sends when the child starts.
pub fn started_callback(token: &str) -> CallbackRecord {
    CallbackRecord {
        task_token: token.to_string(),
        outcome: CallbackOutcome::Heartbeat,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn outcome(status: Status, output: Option<Value>, error: Option<&str>) -> Outcome {
        Outcome {
            status,
            output,
            error: error.map(str::to_string),
            cause: error.map(|_| "x".repeat(40_000)),
            start_millis: 0,
            stop_millis: 0,
            events: Vec::new(),
            state_transitions: 0,
            exceeded_budget: None,
        }
    }

    #[test]
    fn outcomes_become_callbacks_within_the_record_limits() {
        let ok = outcome_callback(
            "t",
            &outcome(Status::Succeeded, Some(json!({"n": 1})), None),
        );
        assert_eq!(ok.outcome, CallbackOutcome::Success(json!({"n": 1})));
        let long_error = "E".repeat(300);
        let failed = outcome_callback("t", &outcome(Status::Failed, None, Some(&long_error)));
        let CallbackOutcome::Failure { error, cause } = &failed.outcome else {
            panic!("{failed:?}")
        };
        assert_eq!(error.as_deref().map(str::len), Some(MAX_ERROR_CHARS));
        assert_eq!(cause.as_deref().map(str::len), Some(MAX_CAUSE_CHARS));
        // what the callback reader accepts
        CallbackRecord::decode(Some(&failed.to_json())).unwrap();
        let big = json!("y".repeat(MAX_OUTPUT_BYTES));
        let too_big = outcome_callback("t", &outcome(Status::Succeeded, Some(big), None));
        assert!(
            matches!(&too_big.outcome, CallbackOutcome::Failure { error: Some(e), .. } if e == "States.DataLimitExceeded"),
            "{too_big:?}"
        );
        let timed_out = outcome_callback("t", &outcome(Status::TimedOut, None, None));
        assert!(
            matches!(&timed_out.outcome, CallbackOutcome::Failure { error: Some(e), .. } if e == "States.Timeout")
        );
    }

    #[test]
    fn children_go_to_every_partition_but_the_parents() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..200 {
            let p = other_partition(&format!("child-{i}"), 3, 8).unwrap();
            assert_ne!(p, 3);
            assert!((0..8).contains(&p));
            seen.insert(p);
        }
        assert_eq!(seen.len(), 7, "{seen:?}");
        assert_eq!(other_partition("c", 0, 1), None);
        assert_eq!(other_partition("c", 9, 8), None);
        assert_eq!(other_partition("c", 0, 2), Some(1));
    }

    #[test]
    fn each_child_has_its_own_key_and_a_rerun_names_the_same_one() {
        let child = |index| ChildExecution {
            map_run_arn: "run".into(),
            parent_execution_arn: "parent".into(),
            state_machine_arn: "m".into(),
            state_name: "Items".into(),
            scope: "1/2".into(),
            attempt: 0,
            index,
            execution_name: format!("c{index}"),
            execution_arn: format!("arn:c{index}"),
            input: json!({}),
            execution_type: expressway_engine::map_runs::ChildExecutionType::Express,
        };
        assert_ne!(child_key(&child(0)), child_key(&child(1)));
        assert_eq!(child_key(&child(7)), child_key(&child(7)));
        assert_eq!(child_key(&child(7)).scope, "1/2@7");
    }
}
