//! Waiting for a callback: what a `.waitForTaskToken` Task needs from the outside world.
//!
//! The engine asks [`Callbacks::listen`] for a token before it evaluates the task's parameters
//! (`$$.Task.Token`), sends the request, then reads [`CallbackListener::signals`] until the
//! outcome, a timeout or the end of the execution. Who mints tokens and how callbacks travel
//! (a Kafka topic, the gateway's `SendTask*`) is the runtime's business; the engine sees only
//! signals. Dropping the listener ends the wait (the runtime forgets the key).

use crate::runtime::TaskError;
use futures::stream::BoxStream;
use serde_json::Value;

/// Names one waiting task attempt: unique within its execution and the same when a redelivered
/// start event runs the execution again (so a callback for the earlier run reaches the re-run).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallbackKey {
    /// The execution ARN.
    pub execution_arn: String,
    /// The Task state's name.
    pub state_name: String,
    /// Where the state runs: the Parallel branch and Map item indices from the top-level graph,
    /// `/`-separated (`""` at the top level, `"1/17"` for item 17 of a Map inside branch 1).
    pub scope: String,
    /// 0 for the first attempt, then 1, 2, ... for retries.
    pub attempt: u32,
}

/// What arrives for a waiting task.
#[derive(Debug, Clone, PartialEq)]
pub enum CallbackSignal {
    /// `SendTaskHeartbeat`: restarts the `HeartbeatSeconds` timer.
    Heartbeat,
    /// `SendTaskSuccess` with its output.
    Success(Value),
    /// `SendTaskFailure` with its error and cause.
    Failure(TaskError),
}

/// An armed wait: the token to hand out and the signals sent with it.
pub struct CallbackListener {
    /// The task token (`$$.Task.Token`).
    pub token: String,
    /// Signals for this token, oldest first; signals that arrived before the wait began come first.
    pub signals: BoxStream<'static, CallbackSignal>,
}

impl std::fmt::Debug for CallbackListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackListener")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// Task tokens and their callbacks.
pub trait Callbacks: Send + Sync {
    /// Mints the token for `key` and starts listening for it. A runtime that cannot wait (no
    /// callback transport) answers with the error the task fails with.
    fn listen(&self, key: CallbackKey) -> Result<CallbackListener, TaskError>;
}
