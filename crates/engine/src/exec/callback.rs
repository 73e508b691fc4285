//! The callback pattern (`.waitForTaskToken`): the Task sends its request with a task token in
//! `$$.Task.Token`, then waits for the token's outcome from [`crate::Callbacks`].
//!
//! Events as AWS writes them: `TaskScheduled`, `TaskStarted`, `TaskSubmitted` (with the request's
//! response) once the request succeeded, then `TaskSucceeded` (the callback's output),
//! `TaskFailed` (`SendTaskFailure`'s error and cause) or `TaskTimedOut` (`States.Timeout` after
//! `TimeoutSeconds` from the start, `States.HeartbeatTimeout` when no heartbeat came for
//! `HeartbeatSeconds`). A request that fails is `TaskSubmitFailed`. The execution's own time limit
//! bounds the wait in any case; dropping the wait drops the listener, which ends it.

use super::dataflow::OutCtx;
use super::Exec;
use crate::callbacks::{CallbackKey, CallbackListener, CallbackSignal};
use crate::events::Details;
use crate::runtime::{TaskError, TaskRequest};
use expressway_asl::model::State;
use futures::future::{self, BoxFuture, Either, FutureExt};
use futures::StreamExt;
use serde_json::Value;
use std::time::Duration;

/// The Resource suffix of the callback pattern.
pub(super) const CALLBACK_SUFFIX: &str = ".waitForTaskToken";

impl Exec<'_> {
    /// Mints the token for this attempt and starts listening for it.
    pub(super) fn arm_callback(
        &self,
        state: &State,
        out: &OutCtx<'_>,
        attempt: u32,
    ) -> Result<CallbackListener, TaskError> {
        let Some(callbacks) = &self.rt.callbacks else {
            return Err(TaskError::new(
                "States.Runtime",
                format!(
                    "The state '{}' waits for a task token ('{CALLBACK_SUFFIX}'), but this runtime has no callback transport (run it with `expressway serve` or `expressway dev`).",
                    state.name
                ),
            ));
        };
        callbacks.listen(CallbackKey {
            execution_arn: self.req.execution_arn.clone(),
            state_name: state.name.clone(),
            scope: out.scope.path(),
            attempt,
        })
    }

    /// Sends the request to the base resource, then waits for the token's outcome.
    pub(super) async fn submit_and_wait(
        &self,
        resource: &str,
        request: TaskRequest,
        listener: CallbackListener,
        timeout: Option<u64>,
        heartbeat: Option<u64>,
        prev: &mut u64,
    ) -> Result<Value, TaskError> {
        let sleep_or_never = |secs: Option<u64>| -> BoxFuture<'static, ()> {
            match secs {
                Some(s) => self.rt.clock.sleep(Duration::from_secs(s)),
                None => future::pending().boxed(),
            }
        };
        let mut overall = sleep_or_never(timeout);
        let submitted = match future::select(self.rt.tasks.invoke(request), &mut overall).await {
            Either::Left((Ok(response), _)) => response,
            Either::Left((Err(e), _)) => {
                *prev = self.log.emit(
                    "TaskSubmitFailed",
                    *prev,
                    || self.now(),
                    Details::Failure {
                        error: Some(e.error.as_str()),
                        cause: e.cause.as_deref(),
                        resource: Some(resource),
                    },
                );
                return Err(e);
            }
            Either::Right(_) => return Err(timed_out("States.Timeout")),
        };
        *prev = self.log.emit(
            "TaskSubmitted",
            *prev,
            || self.now(),
            Details::TaskResource {
                resource,
                output: Some(&submitted),
            },
        );
        drop(submitted);
        let mut signals = listener.signals;
        let mut beat = sleep_or_never(heartbeat);
        loop {
            let timers = future::select(&mut beat, &mut overall);
            match future::select(signals.next(), timers).await {
                Either::Left((Some(CallbackSignal::Heartbeat), _)) => {
                    beat = sleep_or_never(heartbeat);
                }
                Either::Left((Some(CallbackSignal::Success(output)), _)) => return Ok(output),
                Either::Left((Some(CallbackSignal::Failure(e)), _)) => return Err(e),
                Either::Left((None, _)) => {
                    return Err(TaskError::new(
                        "States.Runtime",
                        "The callback transport stopped while the task waited for its token.",
                    ))
                }
                Either::Right((Either::Left(_), _)) => {
                    return Err(timed_out("States.HeartbeatTimeout"))
                }
                Either::Right((Either::Right(_), _)) => return Err(timed_out("States.Timeout")),
            }
        }
    }
}

fn timed_out(error: &str) -> TaskError {
    TaskError {
        error: error.to_string(),
        cause: None,
    }
}
