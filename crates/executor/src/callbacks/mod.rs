//! The callback transport of `.waitForTaskToken` Tasks: task tokens bound to start
//! partitions, and the reader of the callback topic that feeds the pod's
//! [`CallbackHub`].
//!
//! * Each execution's engine runtime gets a [`PartitionCallbacks`] for its start partition
//!   ([`CallbackTransport::bind`]): tokens carry the partition, so a callback reaches the
//!   callback partition of the same number and, through it, the pod that owns the start
//!   partition.
//! * The pod tells the transport which start partitions it owns (`assigned` / `revoked`)
//!   and the timestamps of the start records it receives (`seen`); the [`reader`] reads the
//!   matching callback partitions from the earliest of those times minus the clock-skew
//!   margin, so a callback produced before its execution waits (a fast service, or a
//!   rebalance or restart in between) is read again and waits in the hub's early buffer.
//! * Invalid records (not a callback, a token that does not verify) go to the dead-letter
//!   topic with a stable code; a record on a partition other than its token's is forwarded
//!   there.

mod binding;
pub mod reader;

pub use binding::{PartitionCallbacks, Unavailable};

use crate::config::ExecutorConfig;
use crate::telemetry::names;
pub(crate) use binding::Shared;
use expressway_engine::callback_hub::{CallbackHub, HubLimits};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// What the pod tells the reader.
pub(crate) enum Command {
    /// The pod owns this start partition; its callbacks are needed from `from_ms`.
    Assigned {
        topic: String,
        partition: i32,
        from_ms: i64,
    },
    /// An earlier time for an owned start partition (a start record older than the last).
    Lower {
        topic: String,
        partition: i32,
        from_ms: i64,
    },
    /// The pod gave the start partition up.
    Revoked { topic: String, partition: i32 },
    /// Answer once the callback partition of this start partition has been read up to the
    /// end it had when the request was handled.
    CaughtUp {
        topic: String,
        partition: i32,
        reply: tokio::sync::oneshot::Sender<()>,
    },
}

/// The pod's callback transport (see the module documentation).
pub struct CallbackTransport {
    shared: Arc<Shared>,
    commands: Mutex<mpsc::Sender<Command>>,
    /// The time each owned start partition's callbacks are read from (what the reader was
    /// told), so `seen` sends a command only when it lowers it.
    from: Mutex<HashMap<String, HashMap<i32, i64>>>,
    skew_ms: i64,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for CallbackTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackTransport")
            .field("hub", &self.shared.hub)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Exports the callback series at zero.
pub fn touch() {
    for outcome in [
        "success",
        "failure",
        "heartbeat",
        "buffered",
        "expired",
        "dropped",
        "forwarded",
        "invalid",
    ] {
        metrics::counter!(names::CALLBACKS, "outcome" => outcome).increment(0);
    }
    metrics::gauge!(names::EXECUTIONS_WAITING).increment(0.0);
    metrics::gauge!(names::CALLBACK_EARLY_BUFFER).set(0.0);
}

impl CallbackTransport {
    /// Starts the reader thread. `None` when the configuration has no task token key (the
    /// pod then cannot wait for callbacks; see [`CallbackTransport::unavailable`]).
    pub fn start(
        config: &ExecutorConfig,
        clock: Arc<dyn expressway_engine::Clock>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Option<Arc<CallbackTransport>>, crate::ExecutorError> {
        let Some(key) = config.callbacks.key.clone() else {
            return Ok(None);
        };
        touch();
        let hub = CallbackHub::new(
            clock,
            HubLimits {
                max_buffered: config.callbacks.early_buffer,
                max_age: config.max_execution,
            },
        );
        let shared = Arc::new(Shared::new(hub, key));
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = reader::Reader::new(config, shared.clone(), runtime, rx, stop.clone())?;
        let thread = std::thread::Builder::new()
            .name("expressway-callbacks".into())
            .spawn(move || reader.run())?;
        Ok(Some(Arc::new(CallbackTransport {
            shared,
            commands: Mutex::new(tx),
            from: Mutex::new(HashMap::new()),
            skew_ms: i64::try_from(config.callbacks.clock_skew.as_millis()).unwrap_or(i64::MAX),
            stop,
            thread: Mutex::new(Some(thread)),
        })))
    }

    /// The callbacks of a pod without a task token key.
    pub fn unavailable() -> Unavailable {
        Unavailable {
            reason: "This pod cannot wait for task tokens: it has no task token key (--task-token-key-file or EXPRESSWAY_TASK_TOKEN_KEY)".into(),
        }
    }

    /// The hub (tests and embedders deliver to it directly).
    pub fn hub(&self) -> &Arc<CallbackHub> {
        &self.shared.hub
    }

    /// Verifies a task token with the pod's key.
    pub fn verify(
        &self,
        token: &str,
    ) -> Result<expressway_wire::TokenFields, expressway_wire::TokenError> {
        self.shared.key.verify(token)
    }

    /// The callbacks of an execution of start partition `partition` of `topic`.
    pub fn bind(&self, topic: &str, partition: i32) -> PartitionCallbacks {
        PartitionCallbacks::new(self.shared.clone(), topic, partition)
    }

    /// Executions of the start partition waiting for a callback now.
    pub fn parked(&self, topic: &str, partition: i32) -> usize {
        self.shared.parked(topic, partition)
    }

    fn send(&self, c: Command) {
        let tx = self.commands.lock().unwrap_or_else(|p| p.into_inner());
        // The reader only stops at shutdown.
        let _ = tx.send(c);
    }

    fn read_from(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<i32, i64>>> {
        self.from.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pod owns the start partition from now on.
    pub fn assigned(&self, topic: &str, partition: i32) {
        let from_ms = now_ms().saturating_sub(self.skew_ms);
        self.read_from()
            .entry(topic.to_string())
            .or_default()
            .insert(partition, from_ms);
        self.send(Command::Assigned {
            topic: topic.to_string(),
            partition,
            from_ms,
        });
    }

    /// The pod gave the start partition up.
    pub fn revoked(&self, topic: &str, partition: i32) {
        if let Some(m) = self.read_from().get_mut(topic) {
            m.remove(&partition);
        }
        self.send(Command::Revoked {
            topic: topic.to_string(),
            partition,
        });
    }

    /// The pod received a start record of the partition with this timestamp (ms; `None`:
    /// the record has none, use now): its callbacks may have been produced since then.
    pub fn seen(&self, topic: &str, partition: i32, timestamp_ms: Option<i64>) {
        let from_ms = timestamp_ms
            .unwrap_or_else(now_ms)
            .saturating_sub(self.skew_ms);
        let mut from = self.read_from();
        let Some(current) = from.get_mut(topic).and_then(|m| m.get_mut(&partition)) else {
            return;
        };
        if from_ms >= *current {
            return;
        }
        *current = from_ms;
        drop(from);
        self.send(Command::Lower {
            topic: topic.to_string(),
            partition,
            from_ms,
        });
    }

    /// Resolves once every callback produced for the start partition before the call has been
    /// read into the hub (a callback of an earlier run of an execution, e.g. a Distributed Map
    /// child that finished before its parent's pod died, then waits in the early buffer).
    /// Ends early, with `false`, when the reader cannot tell within `limit` (the topic is
    /// missing, the partition is not owned).
    pub async fn caught_up(&self, topic: &str, partition: i32, limit: std::time::Duration) -> bool {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.send(Command::CaughtUp {
            topic: topic.to_string(),
            partition,
            reply,
        });
        matches!(tokio::time::timeout(limit, done).await, Ok(Ok(())))
    }

    /// Partitions of the callback topic, once the reader has seen the topic.
    pub fn callback_partitions(&self) -> Option<i32> {
        self.shared.callback_partitions()
    }

    /// The start partitions the pod owns (topic, partition), sorted.
    pub fn owned(&self) -> Vec<(String, i32)> {
        let mut v: Vec<(String, i32)> = self
            .read_from()
            .iter()
            .flat_map(|(t, m)| m.keys().map(move |p| (t.clone(), *p)))
            .collect();
        v.sort();
        v
    }

    /// Stops the reader (after the pod's executions ended).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for CallbackTransport {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
