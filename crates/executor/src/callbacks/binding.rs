//! The engine's [`Callbacks`] for one execution: tokens minted for its start partition, the
//! hub's listener metered (`expressway_executions_waiting`, `expressway_callback_latency_seconds`,
//! replayed signals in `expressway_callbacks_total`).

use crate::telemetry::names;
use expressway_engine::callback_hub::{signal_kind, CallbackHub, TokenMinter};
use expressway_engine::{CallbackKey, CallbackListener, CallbackSignal, Callbacks, TaskError};
use expressway_wire::task_token::{MintError, TokenFields};
use expressway_wire::TaskTokenKey;
use futures::Stream;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

/// What every binding of a pod shares.
pub(crate) struct Shared {
    pub(crate) hub: Arc<CallbackHub>,
    pub(crate) key: TaskTokenKey,
    /// Listeners per start partition (topic, partition): executions parked on a callback,
    /// which a revoke's drain does not wait for.
    parked: Mutex<HashMap<(String, i32), usize>>,
    /// Partitions of the callback topic as the reader last saw them (0: not known yet).
    callback_partitions: std::sync::atomic::AtomicI32,
}

impl Shared {
    pub(crate) fn new(hub: Arc<CallbackHub>, key: TaskTokenKey) -> Shared {
        Shared {
            hub,
            key,
            parked: Mutex::new(HashMap::new()),
            callback_partitions: std::sync::atomic::AtomicI32::new(0),
        }
    }

    pub(crate) fn callback_partitions(&self) -> Option<i32> {
        Some(self.callback_partitions.load(Ordering::Acquire)).filter(|n| *n > 0)
    }

    pub(crate) fn set_callback_partitions(&self, n: i32) {
        self.callback_partitions.store(n, Ordering::Release);
    }

    fn parked_lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i32), usize>> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Listeners of executions of this start partition.
    pub(crate) fn parked(&self, topic: &str, partition: i32) -> usize {
        self.parked_lock()
            .get(&(topic.to_string(), partition))
            .copied()
            .unwrap_or(0)
    }

    fn park(&self, topic: &str, partition: i32, delta: isize) {
        let mut p = self.parked_lock();
        let n = p.entry((topic.to_string(), partition)).or_insert(0);
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            p.remove(&(topic.to_string(), partition));
        }
    }
}

/// Mints tokens for one start partition.
struct PartitionMinter<'a> {
    key: &'a TaskTokenKey,
    partition: i32,
}

impl TokenMinter for PartitionMinter<'_> {
    fn mint(&self, k: &CallbackKey) -> Result<String, TaskError> {
        self.key
            .mint(&TokenFields {
                partition: self.partition,
                execution_arn: k.execution_arn.clone(),
                state_name: k.state_name.clone(),
                scope: k.scope.clone(),
                attempt: k.attempt,
            })
            .map_err(|e| match e {
                MintError::TooLong { .. } => TaskError::new(
                    "States.Runtime",
                    format!(
                        "Cannot issue a task token for state '{}': {e}",
                        k.state_name
                    ),
                ),
                MintError::Encode(_) => TaskError::new("States.Runtime", e.to_string()),
            })
    }
}

/// The callbacks of one execution (see the module documentation).
pub struct PartitionCallbacks {
    shared: Arc<Shared>,
    topic: String,
    partition: i32,
    /// Listeners of this execution alive now.
    live: Arc<AtomicUsize>,
    /// Notified when the execution starts waiting.
    listened: tokio::sync::Notify,
}

impl std::fmt::Debug for PartitionCallbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionCallbacks")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl PartitionCallbacks {
    pub(crate) fn new(shared: Arc<Shared>, topic: &str, partition: i32) -> PartitionCallbacks {
        PartitionCallbacks {
            shared,
            topic: topic.to_string(),
            partition,
            live: Arc::new(AtomicUsize::new(0)),
            listened: tokio::sync::Notify::new(),
        }
    }

    /// Whether this execution waits for a callback now.
    pub fn waiting(&self) -> bool {
        self.live.load(Ordering::Acquire) > 0
    }

    /// Resolves once the execution waits for a callback.
    pub async fn until_waiting(&self) {
        loop {
            let notified = self.listened.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.waiting() {
                return;
            }
            notified.await;
        }
    }
}

impl Callbacks for PartitionCallbacks {
    fn listen(&self, key: CallbackKey) -> Result<CallbackListener, TaskError> {
        let armed = self.shared.hub.listen(
            &key,
            &PartitionMinter {
                key: &self.shared.key,
                partition: self.partition,
            },
        )?;
        for kind in &armed.replayed {
            metrics::counter!(names::CALLBACKS, "outcome" => *kind).increment(1);
        }
        tracing::debug!(
            execution_arn = %key.execution_arn,
            state = %key.state_name,
            attempt = key.attempt,
            partition = self.partition,
            replayed = armed.replayed.len(),
            "waiting for a callback"
        );
        metrics::gauge!(names::EXECUTIONS_WAITING).increment(1.0);
        self.live.fetch_add(1, Ordering::AcqRel);
        self.listened.notify_waiters();
        self.shared.park(&self.topic, self.partition, 1);
        let CallbackListener { token, signals } = armed.listener;
        let metered = Metered {
            inner: signals,
            started: Instant::now(),
            finished: false,
            shared: self.shared.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            live: self.live.clone(),
        };
        Ok(CallbackListener {
            token,
            signals: Box::pin(metered),
        })
    }
}

/// The hub's stream, counting the wait.
struct Metered {
    inner: futures::stream::BoxStream<'static, CallbackSignal>,
    started: Instant,
    finished: bool,
    shared: Arc<Shared>,
    topic: String,
    partition: i32,
    live: Arc<AtomicUsize>,
}

impl Stream for Metered {
    type Item = CallbackSignal;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<CallbackSignal>> {
        let next = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(signal)) = &next {
            if !self.finished && !matches!(signal, CallbackSignal::Heartbeat) {
                self.finished = true;
                metrics::histogram!(names::CALLBACK_LATENCY, "outcome" => signal_kind(signal))
                    .record(self.started.elapsed().as_secs_f64());
            }
        }
        next
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        metrics::gauge!(names::EXECUTIONS_WAITING).decrement(1.0);
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.shared.park(&self.topic, self.partition, -1);
    }
}

/// The callbacks of a pod that cannot wait (no task token key): every listen fails with
/// `States.Runtime` and the reason.
#[derive(Debug, Clone)]
pub struct Unavailable {
    /// Why (the task's cause).
    pub reason: String,
}

impl Callbacks for Unavailable {
    fn listen(&self, key: CallbackKey) -> Result<CallbackListener, TaskError> {
        tracing::warn!(execution_arn = %key.execution_arn, state = %key.state_name, "a task waits for a callback, but this pod has no task token key");
        Err(TaskError::new("States.Runtime", self.reason.clone()))
    }
}
