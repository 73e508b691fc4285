//! The Task state: dispatching attempts to the runtime, with timeouts and retries.

use super::callback::CALLBACK_SUFFIX;
use super::dataflow::{effective_input, work_input, OutCtx};
use super::env::Env;
use super::failure::{state_failure, value_text, Failure};
use super::retry::Decision;
use super::{Exec, Step};
use crate::events::Details;
use crate::runtime::{TaskError, TaskRequest};
use expressway_asl::model::*;
use expressway_asl::template::{EvalError, ValueExpr};
use futures::future::{self, Either};
use serde_json::Value;
use std::time::Duration;

impl Exec<'_> {
    pub(super) async fn run_task(
        &self,
        state: &State,
        task: &Task,
        input: Value,
        out: &OutCtx<'_>,
        entered_id: u64,
        prev: &mut u64,
    ) -> Result<Step, Failure> {
        let fail = |e: EvalError| state_failure(&state.name, entered_id, e);
        let jsonata = state.query_language == QueryLanguage::Jsonata;
        let outcome = {
            let env_owned = out.env(&input);
            let env = &env_owned;
            let eff = effective_input(state, &input, env).map_err(fail)?;
            let eff_env = env.with_input(&eff);
            // `.waitForTaskToken`: the request goes to the base resource, then the task waits for
            // its token's callback (see `callback.rs`). Its parameters see `$$.Task.Token`, which
            // is new for every attempt, so they are evaluated per attempt below.
            let callback_base = task.resource.strip_suffix(CALLBACK_SUFFIX);
            let params = match callback_base {
                None => work_input(&task.work, jsonata, &eff, &eff_env).map_err(fail)?,
                Some(_) => Value::Null,
            };
            let timeout = self
                .dynamic_seconds(
                    &task.timeout_seconds,
                    "TimeoutSecondsPath",
                    "TimeoutSeconds",
                    &eff_env,
                )
                .map_err(fail)?;
            let heartbeat = self
                .dynamic_seconds(
                    &task.heartbeat_seconds,
                    "HeartbeatSecondsPath",
                    "HeartbeatSeconds",
                    &eff_env,
                )
                .map_err(fail)?;
            let mut counters = vec![0u32; task.work.retry.len()];
            let mut attempt = 0u32;
            let outcome = loop {
                let armed = callback_base.map(|_| self.arm_callback(state, out, attempt));
                let token = match &armed {
                    Some(Ok(listener)) => Some(listener.token.as_str()),
                    _ => None,
                };
                let attempt_params = match token {
                    Some(token) => {
                        let mut tenv = env.with_input(&eff);
                        tenv.task_token = Some(token);
                        Some(work_input(&task.work, jsonata, &eff, &tenv).map_err(fail)?)
                    }
                    None => None,
                };
                let params = attempt_params.as_ref().unwrap_or(&params);
                let id = self.log.emit(
                    "TaskScheduled",
                    *prev,
                    || self.now(),
                    Details::TaskScheduled {
                        resource: &task.resource,
                        parameters: params,
                        timeout,
                        heartbeat,
                    },
                );
                let id = self.log.emit(
                    "TaskStarted",
                    id,
                    || self.now(),
                    Details::TaskResource {
                        resource: &task.resource,
                        output: None,
                    },
                );
                *prev = id;
                let scope_path = out.scope.path();
                let request = TaskRequest {
                    resource: callback_base.unwrap_or(&task.resource).to_string(),
                    input: params.clone(),
                    state_name: state.name.clone(),
                    execution_arn: self.req.execution_arn.clone(),
                    attempt,
                    timeout: timeout.map(Duration::from_secs),
                    idempotency_key: idempotency_key_at(
                        &self.req.execution_arn,
                        &state.name,
                        &scope_path,
                        attempt,
                    ),
                    scope: scope_path.clone(),
                };
                let result = match armed {
                    None => {
                        let call = self.rt.tasks.invoke(request);
                        match timeout {
                            Some(t) => {
                                match future::select(
                                    call,
                                    self.rt.clock.sleep(Duration::from_secs(t)),
                                )
                                .await
                                {
                                    Either::Left((r, _)) => r,
                                    Either::Right(_) => Err(TaskError {
                                        error: "States.Timeout".into(),
                                        cause: None,
                                    }),
                                }
                            }
                            None => call.await,
                        }
                    }
                    Some(Ok(listener)) => {
                        self.submit_and_wait(
                            &task.resource,
                            request,
                            listener,
                            timeout,
                            heartbeat,
                            prev,
                        )
                        .await
                    }
                    Some(Err(e)) => Err(e),
                };
                match result {
                    Ok(v) => {
                        *prev = self.log.emit(
                            "TaskSucceeded",
                            *prev,
                            || self.now(),
                            Details::TaskResource {
                                resource: &task.resource,
                                output: Some(&v),
                            },
                        );
                        break Ok(v);
                    }
                    Err(te) => {
                        let ty = match te.error.as_str() {
                            "States.Timeout" | "States.HeartbeatTimeout" => "TaskTimedOut",
                            _ => "TaskFailed",
                        };
                        *prev = self.log.emit(
                            ty,
                            *prev,
                            || self.now(),
                            Details::Failure {
                                error: Some(te.error.as_str()),
                                cause: te.cause.as_deref(),
                                resource: Some(&task.resource),
                            },
                        );
                        let f = Failure::new(te.error, te.cause);
                        match self.decide(&task.work, &mut counters, &f) {
                            Decision::Retry(d) => {
                                attempt += 1;
                                if !d.is_zero() {
                                    self.rt.clock.sleep(d).await;
                                }
                                // a zero-delay retry of an instant failure must not spin
                                self.pace().await;
                            }
                            Decision::Catch(i) => break Err((f, Some(i))),
                            Decision::Fail => break Err((f, None)),
                        }
                    }
                }
            };
            outcome
        };
        self.finish_work(state, &task.work, input, out, outcome, entered_id)
    }

    fn dynamic_seconds(
        &self,
        d: &Option<Dynamic<u64>>,
        path_field: &str,
        field: &str,
        env: &Env<'_>,
    ) -> Result<Option<u64>, EvalError> {
        match d {
            None => Ok(None),
            Some(Dynamic::Fixed(n)) => Ok(Some(*n)),
            Some(Dynamic::Expr(e)) => {
                let name = if matches!(e, ValueExpr::Jsonata(_)) {
                    field
                } else {
                    path_field
                };
                let v = e.eval(name, env)?;
                match v.as_u64() {
                    Some(n) if n > 0 => Ok(Some(n)),
                    _ => Err(EvalError::runtime(format!("The {name} field refers to value \"{}\" which is not a valid positive integer: {}", value_text(&v), e.text()))),
                }
            }
        }
    }
}

/// The `Idempotency-Key` for a task attempt: stable across redeliveries of the same start event.
pub fn idempotency_key(execution_arn: &str, state_name: &str, attempt: u32) -> String {
    idempotency_key_at(execution_arn, state_name, "", attempt)
}

/// [`idempotency_key`] of a state inside Parallel branches or Map items: `scope` is the
/// [`CallbackKey::scope`](crate::CallbackKey::scope) path, so every item's task gets its own key
/// (at the top level, `""`, the key is [`idempotency_key`]'s).
pub fn idempotency_key_at(
    execution_arn: &str,
    state_name: &str,
    scope: &str,
    attempt: u32,
) -> String {
    format!(
        "{:032x}",
        identity_hash(execution_arn, state_name, scope, attempt)
    )
}

/// FNV-1a 128-bit over (execution ARN, state name, scope, attempt): the identity behind
/// [`idempotency_key_at`] and the Distributed Map's run and child ids.
pub(crate) fn identity_hash(
    execution_arn: &str,
    state_name: &str,
    scope: &str,
    attempt: u32,
) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    let scope_part: &[u8] = if scope.is_empty() {
        &[]
    } else {
        scope.as_bytes()
    };
    let scope_sep: &[u8] = if scope.is_empty() { &[] } else { &[0u8] };
    for part in [
        execution_arn.as_bytes(),
        &[0u8],
        state_name.as_bytes(),
        &[0u8],
        scope_part,
        scope_sep,
        &attempt.to_be_bytes(),
    ] {
        for b in part {
            h ^= *b as u128;
            h = h.wrapping_mul(0x0000000001000000000000000000013B);
        }
    }
    h
}
