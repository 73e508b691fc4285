//! The interpreter: runs one execution of a loaded state machine.
//!
//! One module per state kind (`pass`, `task`, `choice`, `wait`, `parallel`, `map`); the steps they
//! share live in `dataflow` (paths, results, outputs), `assign` (variables), `retry` (Retry and
//! Catch), `env` (the evaluation environment) and `limits` (payload checks).

mod assign;
mod callback;
mod choice;
mod dataflow;
mod distributed_map;
mod env;
mod failure;
mod limits;
mod map;
mod outcome;
mod parallel;
mod pass;
mod retry;
mod task;
mod wait;

pub use limits::{Limits, DEFAULT_MAX_MEMORY_BYTES};
pub use outcome::{Outcome, Status};
pub(crate) use task::identity_hash;
pub use task::{idempotency_key, idempotency_key_at};

use crate::budget::{Budget, Charge, LiveBytes};
use crate::events::{Details, EventLog, LogConfig};
use crate::pace::Pacer;
use crate::runtime::Runtime;
use dataflow::OutCtx;
use env::Scope;
use expressway_asl::model::*;
use expressway_asl::template::json_size;
use failure::Failure;
use futures::future::{self, BoxFuture, Either};
use futures::FutureExt;
use limits::{fits, fits_depth, needs_size_check, too_deep, Fit};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Everything that identifies and configures one execution.
#[derive(Debug, Clone)]
pub struct ExecutionRequest {
    /// `arn:aws:states:<region>:<account>:express:<machine>:<name>:<uuid>`.
    pub execution_arn: String,
    /// The execution name.
    pub execution_name: String,
    /// The state machine ARN.
    pub state_machine_arn: String,
    /// The state machine name.
    pub state_machine_name: String,
    /// The execution role ARN (reported in the context object and logs).
    pub role_arn: String,
    /// The execution input.
    pub input: Value,
    /// Which events to keep.
    pub log: LogConfig,
    /// Payload and duration limits.
    pub limits: Limits,
    /// Started by StartSyncExecution: the context object has no `RedriveCount`.
    pub synchronous: bool,
}

/// Runs one execution to its end.
pub async fn execute(
    machine: &StateMachine,
    request: &ExecutionRequest,
    runtime: &Runtime,
) -> Outcome {
    let start_millis = runtime.clock.now_millis();
    let exec = Exec {
        req: request,
        rt: runtime,
        log: EventLog::new(request.log),
        transitions: AtomicU64::new(0),
        variable_bytes: AtomicU64::new(0),
        start_millis,
        execution_ctx: OnceLock::new(),
        pacer: Pacer::default(),
        live: LiveBytes::default(),
        exceeded: OnceLock::new(),
    };
    let started_id = exec.log.emit(
        "ExecutionStarted",
        0,
        || start_millis,
        Details::Input {
            name_key: "roleArn",
            name: &request.role_arn,
            input: &request.input,
        },
    );

    let mut limit = request.limits.max_duration;
    if let Some(t) = machine.timeout_seconds {
        limit = limit.min(Duration::from_secs(t));
    }
    let run = async {
        let fit = fits(&request.input, request.limits.max_payload_bytes);
        if fit == Fit::TooDeep {
            return Err(too_deep("input", None));
        }
        if fit == Fit::TooLarge {
            return Err(Failure {
                error: "States.DataLimitExceeded".into(),
                cause: Some("The state/task 'input' returned a result with a size exceeding the maximum number of bytes service limit.".into()),
                fatal: true,
                evaluation: None,
            });
        }
        let root = Scope {
            vars: None,
            parent: None,
            position: None,
        };
        let mut prev = 0u64;
        exec.run_graph(
            &machine.graph,
            request.input.clone(),
            &root,
            &mut prev,
            None,
            None,
        )
        .await
        .map(|v| (v, prev))
    };
    let timer = runtime.clock.sleep(limit);
    let result = match future::select(Box::pin(run), timer).await {
        Either::Left((r, _)) => Some(r),
        Either::Right(((), _)) => None,
    };
    let stop_millis = runtime.clock.now_millis();
    let last = exec.log.peek_next_id().saturating_sub(1).max(started_id);
    let (status, output, error, cause) = match result {
        Some(Ok((output, _))) => {
            exec.log.emit(
                "ExecutionSucceeded",
                last,
                || stop_millis,
                Details::Output {
                    name: None,
                    output: &output,
                },
            );
            (Status::Succeeded, Some(output), None, None)
        }
        Some(Err(f)) => {
            exec.log.emit(
                "ExecutionFailed",
                last,
                || stop_millis,
                Details::Failure {
                    error: Some(f.error.as_str()).filter(|e| !e.is_empty()),
                    cause: f.cause.as_deref(),
                    resource: None,
                },
            );
            (
                Status::Failed,
                None,
                Some(f.error).filter(|e| !e.is_empty()),
                f.cause,
            )
        }
        None => {
            exec.log
                .emit("ExecutionTimedOut", last, || stop_millis, Details::Empty);
            (Status::TimedOut, None, None, None)
        }
    };
    let state_transitions = exec.transitions.load(Ordering::Relaxed);
    let exceeded_budget = exec.exceeded.get().copied();
    Outcome {
        status,
        output,
        error,
        cause,
        start_millis,
        stop_millis,
        events: exec.log.into_events(),
        state_transitions,
        exceeded_budget,
    }
}

struct Exec<'a> {
    req: &'a ExecutionRequest,
    rt: &'a Runtime,
    log: EventLog,
    transitions: AtomicU64,
    /// Serialized size of every variable currently assigned (AWS caps it at 10 MiB).
    variable_bytes: AtomicU64,
    start_millis: i64,
    execution_ctx: OnceLock<(Value, Value)>,
    /// When to give control back to the runtime.
    pacer: Pacer,
    /// Estimated live bytes besides the kept events (see [`crate::budget`]).
    live: LiveBytes,
    /// Set when a budget failed the execution.
    exceeded: OnceLock<Budget>,
}

impl<'a> Exec<'a> {
    fn now(&self) -> i64 {
        self.rt.clock.now_millis()
    }

    /// Counts one unit of work and yields to the runtime every [`crate::pace::YIELD_EVERY`].
    async fn pace(&self) {
        if let Some(y) = self.pacer.tick() {
            y.await;
        }
    }

    fn memory_limit(&self) -> u64 {
        self.req.limits.max_memory_bytes as u64
    }

    /// Fails the execution once it keeps too many events or holds too many bytes.
    fn check_budgets(&self, state: &str) -> Result<(), Failure> {
        let kept = self.log.kept_count();
        if kept > self.req.limits.max_events as u64 {
            return Err(self.over_budget(Budget::Events, state, kept));
        }
        let bytes = self.live.get() + self.log.kept_bytes();
        if bytes > self.memory_limit() {
            return Err(self.over_budget(Budget::Memory, state, bytes));
        }
        Ok(())
    }

    /// Holds `bytes` of live state until the guard drops, or fails the execution when they do
    /// not fit in its memory budget.
    fn charge(&self, bytes: u64, state: &str) -> Result<Charge<'_>, Failure> {
        self.live
            .charge(bytes, self.log.kept_bytes(), self.memory_limit())
            .map_err(|used| self.over_budget(Budget::Memory, state, used))
    }

    /// Adds `bytes` to a charge, failing the execution when they do not fit.
    fn grow(&self, charge: &mut Charge<'_>, bytes: u64, state: &str) -> Result<(), Failure> {
        charge
            .grow(bytes, self.log.kept_bytes(), self.memory_limit())
            .map_err(|used| self.over_budget(Budget::Memory, state, used))
    }

    fn over_budget(&self, budget: Budget, state: &str, used: u64) -> Failure {
        let _ = self.exceeded.set(budget);
        let limits = &self.req.limits;
        let cause = match budget {
            Budget::Events => format!(
                "The execution exceeded its budget of {} log events in the state '{state}' ({used} events kept at its log level).",
                limits.max_events
            ),
            Budget::Memory => format!(
                "The execution exceeded its memory budget of {} bytes in the state '{state}' (about {used} bytes of live state: log events, Map items and results, iterations and branches in flight).",
                limits.max_memory_bytes
            ),
        };
        Failure {
            error: "States.DataLimitExceeded".into(),
            cause: Some(cause),
            fatal: true,
            evaluation: None,
        }
    }

    fn run_graph<'s>(
        &'s self,
        graph: &'s Graph,
        input: Value,
        parent: &'s Scope<'s>,
        prev: &'s mut u64,
        map_vars: Option<HashMap<String, Value>>,
        position: Option<usize>,
    ) -> BoxFuture<'s, Result<Value, Failure>> {
        async move {
            let mut vars: HashMap<String, Value> = map_vars.unwrap_or_default();
            let mut index = graph.start;
            let mut input = input;
            loop {
                let state = &graph.states[index];
                let step = {
                    let scope = Scope {
                        vars: Some(&vars),
                        parent: Some(parent),
                        position,
                    };
                    self.run_state(state, input, &scope, prev).await?
                };
                for (k, v) in step.assign {
                    let new = json_size(&v) as u64;
                    let old = vars.get(&k).map(|o| json_size(o) as u64).unwrap_or(0);
                    self.variable_bytes.fetch_add(new, Ordering::Relaxed);
                    self.variable_bytes.fetch_sub(old, Ordering::Relaxed);
                    vars.insert(k, v);
                }
                self.check_budgets(&state.name)?;
                self.pace().await;
                match step.next {
                    Some(n) => {
                        index = n;
                        input = step.output;
                    }
                    None => return Ok(step.output),
                }
            }
        }
        .boxed()
    }

    async fn run_state(
        &self,
        state: &State,
        input: Value,
        scope: &Scope<'_>,
        prev: &mut u64,
    ) -> Result<Step, Failure> {
        let result = self.run_state_body(state, input, scope, prev).await;
        result.map_err(|mut f| {
            if let Some((state_name, location)) = f.evaluation.take() {
                let mut details = Map::new();
                if let Some(c) = &f.cause {
                    details.insert("cause".into(), Value::String(c.clone()));
                }
                details.insert("error".into(), Value::String(f.error.clone()));
                details.insert("location".into(), Value::String(location));
                details.insert("state".into(), Value::String(state_name));
                *prev = self.log.emit(
                    "EvaluationFailed",
                    0,
                    || self.now(),
                    Details::Raw(Value::Object(details)),
                );
                let failed = match &state.kind {
                    Kind::Map(_) => Some("MapStateFailed"),
                    Kind::Parallel(_) => Some("ParallelStateFailed"),
                    _ => None,
                };
                if let Some(t) = failed {
                    *prev = self.log.emit(t, *prev, || self.now(), Details::Empty);
                }
            }
            f
        })
    }

    async fn run_state_body(
        &self,
        state: &State,
        input: Value,
        scope: &Scope<'_>,
        prev: &mut u64,
    ) -> Result<Step, Failure> {
        self.transitions.fetch_add(1, Ordering::Relaxed);
        let entered_millis = self.now();
        let entered_type = entered_event(&state.kind);
        let entered_id = self.log.emit(
            entered_type,
            *prev,
            || entered_millis,
            Details::Input {
                name_key: "name",
                name: &state.name,
                input: &input,
            },
        );
        *prev = entered_id;
        let out_ctx = OutCtx {
            exec: self,
            scope,
            state_name: &state.name,
            entered_millis,
        };

        let step = match &state.kind {
            Kind::Pass(pass) => self.run_pass(state, pass, input, &out_ctx, entered_id)?,
            Kind::Succeed => self.run_succeed(state, input, &out_ctx, entered_id)?,
            Kind::Fail(f) => self.run_fail(state, f, input, &out_ctx, entered_id)?,
            Kind::Choice(choice) => self.run_choice(state, choice, input, &out_ctx, entered_id)?,
            Kind::Wait(wait) => {
                self.run_wait(state, wait, input, &out_ctx, entered_id)
                    .await?
            }
            Kind::Task(task) => {
                self.run_task(state, task, input, &out_ctx, entered_id, prev)
                    .await?
            }
            Kind::Parallel(par) => {
                self.run_parallel(state, par, input, &out_ctx, entered_id, prev)
                    .await?
            }
            Kind::Map(map) => {
                self.run_map(state, map, input, &out_ctx, entered_id, prev)
                    .await?
            }
        };
        if needs_size_check(state) {
            let fit = fits(&step.output, self.req.limits.max_payload_bytes);
            if fit == Fit::TooDeep {
                return Err(too_deep(&state.name, None));
            }
            if fit == Fit::TooLarge {
                return Err(Failure {
                    error: "States.DataLimitExceeded".into(),
                    cause: Some(format!("The state/task '{}' returned a result with a size exceeding the maximum number of bytes service limit.", state.name)),
                    fatal: true,
                    evaluation: None,
                });
            }
        }
        if let Some((name, _)) = step.assign.iter().find(|(_, v)| !fits_depth(v)) {
            return Err(too_deep(&state.name, Some(name)));
        }
        if let Some(exited) = exited_event(&state.kind) {
            let id = self.log.emit(
                exited,
                *prev,
                || self.now(),
                Details::Output {
                    name: Some(&state.name),
                    output: &step.output,
                },
            );
            *prev = id;
        }
        Ok(step)
    }
}

struct Step {
    next: Option<usize>,
    output: Value,
    assign: Vec<(String, Value)>,
}

fn next_of(t: Transition) -> Option<usize> {
    match t {
        Transition::Next(n) => Some(n),
        Transition::End => None,
    }
}

fn entered_event(kind: &Kind) -> &'static str {
    match kind {
        Kind::Pass(_) => "PassStateEntered",
        Kind::Task(_) => "TaskStateEntered",
        Kind::Choice(_) => "ChoiceStateEntered",
        Kind::Wait(_) => "WaitStateEntered",
        Kind::Succeed => "SucceedStateEntered",
        Kind::Fail(_) => "FailStateEntered",
        Kind::Parallel(_) => "ParallelStateEntered",
        Kind::Map(_) => "MapStateEntered",
    }
}

fn exited_event(kind: &Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Pass(_) => "PassStateExited",
        Kind::Task(_) => "TaskStateExited",
        Kind::Choice(_) => "ChoiceStateExited",
        Kind::Wait(_) => "WaitStateExited",
        Kind::Succeed => "SucceedStateExited",
        Kind::Fail(_) => return None,
        Kind::Parallel(_) => "ParallelStateExited",
        Kind::Map(_) => "MapStateExited",
    })
}
