//! Nested executions: the Task resources `arn:aws:states:::states:startExecution` (fire and
//! forget), `...startExecution.sync:2` and `...startExecution.sync` (run the child and return
//! its result).
//!
//! * **Fire and forget** writes a start event (the project's JSON start-event format) to the
//!   pod's start topic and waits for the brokers' acknowledgement; the child runs wherever its
//!   partition is owned, as any execution, and the task returns StartExecution's response with
//!   the ARN the child runs under: derived from the record's partition and offset, which the
//!   delivery report gives ([`expressway_wire::execution_identity`]). A re-run of the parent
//!   writes a second start event (at-least-once), so the child runs again under another ARN.
//! * **`.sync:2` / `.sync`** run the child here, inside the parent's task, with the same task
//!   resources, bounded by its own time limit and by what is left of the parent's (and of the
//!   task's `TimeoutSeconds`). Its log and result records are published like any execution's
//!   before the task returns DescribeExecution's shape; a child that fails or times out fails
//!   the task with `States.TaskFailed` (cause: that description as JSON text), as AWS does, so
//!   Retry and Catch apply. The child's ARN is derived from the parent's ARN, the state, the
//!   attempt and the state's place among Map items and Parallel branches ([`expressway_wire::nested_identity`]), so a re-run of
//!   the parent gives it the same ARN.
//! * Nesting is bounded by [`MAX_NESTING_DEPTH`]: each `.sync` level runs inside its parent's
//!   future (stack) and holds its own execution budget (memory), and a machine that starts
//!   itself would otherwise recurse until its time limit.
//!
//! The pod layers [`NestedDispatcher`] over its task dispatcher (the engine needs no change) and
//! binds it to itself ([`PodLink`]) once its producer exists.

mod output;
mod params;

pub use output::{described, started};
pub use params::{parse, StartParams};

use crate::config::ExecutorConfig;
use crate::registry::{LookupError, MachineEntry, Registry};
use crate::telemetry::names;
use expressway_asl::StateMachine;
use expressway_engine::{
    execute, Callbacks, Clock, Entropy, ExecutionRequest, Outcome, Runtime, TaskDispatcher,
    TaskError, TaskRequest,
};
use futures::future::BoxFuture;
use serde_json::Value;
use std::future::Future;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Fire and forget.
pub const START_EXECUTION: &str = "arn:aws:states:::states:startExecution";
/// Run the child; its input and output as JSON text.
pub const START_EXECUTION_SYNC: &str = "arn:aws:states:::states:startExecution.sync";
/// Run the child; its input and output as JSON values.
pub const START_EXECUTION_SYNC2: &str = "arn:aws:states:::states:startExecution.sync:2";

/// How many `.sync` levels may run below a top-level execution. Each level runs inside its
/// parent's task in the same pod: its future is polled from its parent's (stack depth grows
/// with every level) and it has its own memory budget (`--execution-memory-bytes`, 64 MiB by
/// default), so a top-level execution may hold up to 9 budgets. 8 covers real compositions
/// (AWS's own examples nest 2-3 deep) and stops a machine that starts itself at once.
pub const MAX_NESTING_DEPTH: u32 = 8;

/// How much earlier than its parent (or the task's `TimeoutSeconds`) a `.sync` child times out:
/// the clock reads whole milliseconds and the child's timer starts a little after the parent's,
/// so without it the parent's timer could fire first and drop the child before it ends (and
/// publishes its TIMED_OUT result).
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(10);

/// The error of a `.sync` task that would start a child deeper than [`MAX_NESTING_DEPTH`].
pub const NESTING_DEPTH_EXCEEDED: &str = "Expressway.NestingDepthExceeded";

/// Which integration pattern a Task uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `startExecution`.
    Start,
    /// `startExecution.sync`.
    Sync,
    /// `startExecution.sync:2`.
    Sync2,
}

impl Mode {
    /// The pattern of a Task `Resource`, if it is one of the three (any partition).
    pub fn of(resource: &str) -> Option<Mode> {
        let rest = [
            "arn:aws:states:::",
            "arn:aws-cn:states:::",
            "arn:aws-us-gov:states:::",
        ]
        .iter()
        .find_map(|p| resource.strip_prefix(p))?;
        match rest {
            "states:startExecution" => Some(Mode::Start),
            "states:startExecution.sync" => Some(Mode::Sync),
            "states:startExecution.sync:2" => Some(Mode::Sync2),
            _ => None,
        }
    }

    /// The `mode` label of [`names::NESTED_EXECUTIONS`].
    pub fn label(self) -> &'static str {
        match self {
            Mode::Start => "start",
            Mode::Sync => "sync",
            Mode::Sync2 => "sync2",
        }
    }

    /// Every mode.
    pub const ALL: [Mode; 3] = [Mode::Start, Mode::Sync, Mode::Sync2];

    /// The `status` labels of [`names::NESTED_EXECUTIONS`] for this mode: fire and forget
    /// `started` (the start event was acknowledged), `.sync` the child's status; both `refused`
    /// (nothing was started: invalid parameters, unknown machine, nesting too deep, start event
    /// not written).
    pub fn statuses(self) -> &'static [&'static str] {
        match self {
            Mode::Start => &["started", "refused"],
            Mode::Sync | Mode::Sync2 => &["succeeded", "failed", "timed_out", "refused"],
        }
    }
}

/// Why a start event was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProduceError {
    /// Larger than the producer or the topic accepts.
    TooLarge,
    /// The pod is shutting down (its drain budget is spent) or the transaction was aborted.
    Aborted,
}

/// What the nested resources need from the pod they run in.
pub(crate) trait PodLink: Send + Sync {
    /// The pod's machines.
    fn registry(&self) -> &Registry;
    /// The pod's configuration (region, account, start topic, limits).
    fn config(&self) -> &ExecutorConfig;
    /// Writes a start event to the start topic; its partition and offset once acknowledged
    /// (exactly-once: in the running execution's transaction).
    fn produce_start<'a>(
        &'a self,
        key: Option<&'a [u8]>,
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<(i32, i64), ProduceError>>;
    /// Counts a finished execution and publishes its log and result records like the pod's
    /// own; true once both are acknowledged.
    fn publish<'a>(
        &'a self,
        request: &'a ExecutionRequest,
        outcome: &'a Outcome,
        elapsed: Duration,
    ) -> BoxFuture<'a, bool>;
}

/// Where the running execution stands: its nesting depth (0: started by a start event), when
/// it times out (the clock's epoch milliseconds), and the callbacks of its top-level execution
/// (tokens bound to its start partition: a `.sync` child runs in the same pod, so a child's
/// `.waitForTaskToken` callbacks reach it the same way).
#[derive(Clone)]
struct Scope {
    depth: u32,
    deadline_millis: i64,
    callbacks: Option<Arc<dyn Callbacks>>,
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// Runs a top-level execution's future (`execute`) with its deadline visible to the nested
/// resources, so a `.sync` child never outlives it.
pub(crate) async fn top_level<F: Future>(
    runtime: &Runtime,
    machine: &StateMachine,
    request: &ExecutionRequest,
    f: F,
) -> F::Output {
    let scope = Scope {
        depth: 0,
        deadline_millis: runtime
            .clock
            .now_millis()
            .saturating_add(limit_millis(machine, request)),
        callbacks: runtime.callbacks.clone(),
    };
    SCOPE.scope(scope, f).await
}

/// The execution's time limit as the engine applies it (the request's, or the machine's
/// `TimeoutSeconds` when shorter).
fn limit_millis(machine: &StateMachine, request: &ExecutionRequest) -> i64 {
    let mut limit = request.limits.max_duration;
    if let Some(t) = machine.timeout_seconds {
        limit = limit.min(Duration::from_secs(t));
    }
    i64::try_from(limit.as_millis()).unwrap_or(i64::MAX)
}

/// The pod's task dispatcher with the three nested resources in front: every other resource
/// goes to the dispatcher it wraps.
pub struct NestedDispatcher {
    inner: Arc<dyn TaskDispatcher>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    callbacks: Option<Arc<dyn Callbacks>>,
    me: Weak<NestedDispatcher>,
    pod: OnceLock<Weak<dyn PodLink>>,
}

impl NestedDispatcher {
    /// `engine` with its tasks wrapped; bind the dispatcher to the pod before executions run.
    pub(crate) fn install(engine: Runtime) -> (Runtime, Arc<NestedDispatcher>) {
        let nested = Arc::new_cyclic(|me| NestedDispatcher {
            inner: engine.tasks.clone(),
            clock: engine.clock.clone(),
            entropy: engine.entropy.clone(),
            callbacks: engine.callbacks.clone(),
            me: me.clone(),
            pod: OnceLock::new(),
        });
        for mode in Mode::ALL {
            for status in mode.statuses() {
                metrics::counter!(names::NESTED_EXECUTIONS, "mode" => mode.label(), "status" => *status)
                    .increment(0);
            }
        }
        let runtime = Runtime {
            map_children: None,
            tasks: nested.clone(),
            ..engine
        };
        (runtime, nested)
    }

    /// Connects the resources to the pod (weakly: the pod owns the dispatcher).
    pub(crate) fn bind(&self, pod: Weak<dyn PodLink>) {
        let _ = self.pod.set(pod);
    }

    /// The runtime a child runs with: this dispatcher's (same tasks, clock and callbacks).
    fn runtime(&self) -> Option<Runtime> {
        let tasks: Arc<dyn TaskDispatcher> = self.me.upgrade()?;
        Some(Runtime {
            map_children: None,
            clock: self.clock.clone(),
            entropy: self.entropy.clone(),
            tasks,
            callbacks: self.callbacks.clone(),
        })
    }
}

impl TaskDispatcher for NestedDispatcher {
    fn invoke(&self, request: TaskRequest) -> BoxFuture<'static, Result<Value, TaskError>> {
        let Some(mode) = Mode::of(&request.resource) else {
            return self.inner.invoke(request);
        };
        let pod = self.pod.get().and_then(Weak::upgrade);
        let scope = SCOPE.try_with(Scope::clone).ok();
        let runtime = self.runtime().map(|mut r| {
            if let Some(cb) = scope.as_ref().and_then(|s| s.callbacks.clone()) {
                r.callbacks = Some(cb);
            }
            r
        });
        // Read before the engine starts the task's TimeoutSeconds timer (right after this
        // returns), so a child bounded by it ends no later than the timer fires.
        let now = self.clock.now_millis();
        Box::pin(async move {
            let started = Instant::now();
            let result = match (pod, runtime) {
                (Some(pod), Some(runtime)) => match mode {
                    Mode::Start => start(&pod, &runtime, &request).await.map(Ok),
                    Mode::Sync | Mode::Sync2 => {
                        run(pod, &runtime, scope, now, mode, &request).await
                    }
                },
                _ => Err(Refusal(TaskError::new(
                    "States.TaskFailed",
                    "nested executions run only in an executor pod",
                ))),
            };
            let result = match result {
                Ok(child) => child,
                Err(Refusal(e)) => {
                    metrics::counter!(names::NESTED_EXECUTIONS, "mode" => mode.label(), "status" => "refused")
                        .increment(1);
                    tracing::warn!(
                        message = "Nested execution refused.",
                        resource = %request.resource,
                        state = %request.state_name,
                        execution_arn = %request.execution_arn,
                        attempt = request.attempt,
                        error = %e.error,
                        cause = e.cause.as_deref().unwrap_or(""),
                    );
                    Err(e)
                }
            };
            let resource = request.resource.clone();
            metrics::histogram!(names::TASK_DURATION, "resource" => resource.clone())
                .record(started.elapsed().as_secs_f64());
            if result.is_err() {
                metrics::counter!(names::TASK_FAILURES, "resource" => resource).increment(1);
            }
            result
        })
    }
}

/// A task failure before any child started (counted as `refused`); a finished child's failure
/// is the inner `Err` of [`run`] ([`output::result`]).
struct Refusal(TaskError);

impl From<TaskError> for Refusal {
    fn from(e: TaskError) -> Refusal {
        Refusal(e)
    }
}

/// The child machine, or AWS's `StateMachineDoesNotExist` (the start event would be
/// dead-lettered by the pod that reads it: better fail the task now, where Catch sees it).
fn lookup(registry: &Registry, p: &StartParams) -> Result<Arc<MachineEntry>, TaskError> {
    registry.lookup(&p.machine).map_err(|e| {
        let message = match e {
            LookupError::NotFound(_) => {
                format!("State Machine Does Not Exist: '{}'", p.machine_text)
            }
            other => format!(
                "State Machine Does Not Exist: '{}': {other}",
                p.machine_text
            ),
        };
        params::api_error("StateMachineDoesNotExist", &message)
    })
}

/// Fire and forget: the start event, then StartExecution's response.
async fn start(
    pod: &Arc<dyn PodLink>,
    runtime: &Runtime,
    request: &TaskRequest,
) -> Result<Value, Refusal> {
    let p = params::parse(&request.input)?;
    let entry = lookup(pod.registry(), &p)?;
    let event = expressway_wire::StartEvent {
        state_machine: p.machine.clone(),
        name: p.name.clone(),
        input: p.input,
        trace_header: None,
    };
    let value = expressway_engine::jsonw::to_string(&event.to_json());
    let cfg = pod.config();
    let (partition, offset) = pod
        .produce_start(p.name.as_deref().map(str::as_bytes), value.as_bytes())
        .await
        .map_err(|e| {
            let (error, why) = match e {
                ProduceError::TooLarge => (
                    "Kafka.MessageTooLarge",
                    "it is larger than the topic accepts",
                ),
                ProduceError::Aborted => (
                    "Kafka.PublishFailed",
                    "the pod is shutting down or the transaction was aborted",
                ),
            };
            TaskError::new(
                error,
                format!(
                    "the start event of '{}' was not written to {}: {why}",
                    p.machine_text, cfg.start_topic
                ),
            )
        })?;
    let id = expressway_wire::execution_identity(
        &cfg.region,
        &cfg.account,
        &entry.name,
        p.name.as_deref(),
        &cfg.start_topic,
        partition,
        offset,
    );
    metrics::counter!(names::NESTED_EXECUTIONS, "mode" => Mode::Start.label(), "status" => "started")
        .increment(1);
    tracing::debug!(
        parent = %request.execution_arn,
        state = %request.state_name,
        child = %id.arn,
        partition,
        offset,
        "nested execution started (fire and forget)"
    );
    let request_id = expressway_engine::runtime::uuid_v4(runtime.entropy.as_ref());
    Ok(output::started(
        &id.arn,
        runtime.clock.now_millis(),
        &request_id,
    ))
}

/// `.sync` / `.sync:2`: runs the child here and publishes its records.
async fn run(
    pod: Arc<dyn PodLink>,
    runtime: &Runtime,
    scope: Option<Scope>,
    now: i64,
    mode: Mode,
    request: &TaskRequest,
) -> Result<Result<Value, TaskError>, Refusal> {
    let depth = scope.as_ref().map_or(0, |s| s.depth) + 1;
    if depth > MAX_NESTING_DEPTH {
        return Err(Refusal(TaskError::new(
            NESTING_DEPTH_EXCEEDED,
            format!(
                "The execution '{}' is {} levels below its top-level execution; Expressway runs at most {MAX_NESTING_DEPTH} levels of startExecution.sync (each runs inside its parent's task in one pod)",
                request.execution_arn,
                depth - 1
            ),
        )));
    }
    let p = params::parse(&request.input)?;
    let entry = lookup(pod.registry(), &p)?;
    let cfg = pod.config();
    let id = expressway_wire::nested_identity(
        &cfg.region,
        &cfg.account,
        &entry.name,
        p.name.as_deref(),
        expressway_wire::NestedOrigin {
            parent_arn: &request.execution_arn,
            state_name: &request.state_name,
            attempt: request.attempt,
            scope: &request.scope,
        },
    );
    // The child ends before its parent and before the task's own TimeoutSeconds.
    let mut deadline = scope.as_ref().map(|s| s.deadline_millis);
    if let Some(t) = request.timeout {
        let task = now.saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX));
        deadline = Some(deadline.map_or(task, |d| d.min(task)));
    }
    let mut limits = crate::pod::execution_limits(cfg);
    if let Some(d) = deadline {
        let left = Duration::from_millis(u64::try_from(d.saturating_sub(now)).unwrap_or(0));
        limits.max_duration = limits
            .max_duration
            .min(left.saturating_sub(DEADLINE_MARGIN));
    }
    let child = ExecutionRequest {
        execution_arn: id.arn,
        execution_name: id.name,
        state_machine_arn: entry.arn.clone(),
        state_machine_name: entry.name.clone(),
        role_arn: crate::pod::role_arn(cfg),
        input: p.input,
        log: entry.log,
        limits,
        synchronous: false,
    };
    let child_scope = Scope {
        depth,
        deadline_millis: now.saturating_add(limit_millis(&entry.machine, &child)),
        callbacks: runtime.callbacks.clone(),
    };
    tracing::debug!(
        parent = %request.execution_arn,
        state = %request.state_name,
        child = %child.execution_arn,
        depth,
        "nested execution started"
    );
    metrics::counter!(names::STARTED, "state_machine" => entry.name.clone()).increment(1);
    let in_flight = crate::pod::InFlight::enter();
    let t0 = Instant::now();
    let outcome = SCOPE
        .scope(child_scope, execute(&entry.machine, &child, runtime))
        .await;
    let elapsed = t0.elapsed();
    drop(in_flight);
    let status = outcome.status.as_str().to_ascii_lowercase();
    let result = output::result(mode, &child, &outcome);
    // Published on its own task: if the parent's time runs out meanwhile (dropping this
    // future), the finished child's records still go out. Exactly-once: in the parent's
    // transaction.
    let ticket = crate::exactly_once::current();
    let arn = child.execution_arn.clone();
    let publish = async move { pod.publish(&child, &outcome, elapsed).await };
    let published = tokio::spawn(async move {
        match ticket {
            Some(t) => t.scope(publish).await,
            None => publish.await,
        }
    })
    .await
    .unwrap_or(false);
    metrics::counter!(names::NESTED_EXECUTIONS, "mode" => mode.label(), "status" => status.clone())
        .increment(1);
    tracing::debug!(child = %arn, status = %status, published, "nested execution finished");
    if !published {
        // Only when the pod gives up (shutdown drain budget spent, aborted transaction): the
        // parent is abandoned too and re-runs, with this child, on the next owner.
        return Ok(Err(TaskError::new(
            "States.TaskFailed",
            format!("the records of the child execution '{arn}' were not published"),
        )));
    }
    Ok(result)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use expressway_engine::runtime::{NoTasks, SplitMix64, TokioClock};
    use serde_json::json;

    #[test]
    fn the_three_resources_in_every_partition() {
        for (resource, mode) in [
            (START_EXECUTION, Some(Mode::Start)),
            (START_EXECUTION_SYNC, Some(Mode::Sync)),
            (START_EXECUTION_SYNC2, Some(Mode::Sync2)),
            (
                "arn:aws-cn:states:::states:startExecution.sync:2",
                Some(Mode::Sync2),
            ),
            (
                "arn:aws-us-gov:states:::states:startExecution",
                Some(Mode::Start),
            ),
            // The callback pattern is not this module's: it waits for a task token.
            (
                "arn:aws:states:::states:startExecution.waitForTaskToken",
                None,
            ),
            ("arn:aws:states:::states:startExecution.sync:3", None),
            ("arn:aws:states:::lambda:invoke", None),
            ("arn:aws:states:::aws-sdk:sfn:startExecution", None),
        ] {
            assert_eq!(Mode::of(resource), mode, "{resource}");
        }
    }

    fn request(resource: &str) -> TaskRequest {
        TaskRequest {
            resource: resource.into(),
            input: json!({"StateMachineArn": "child", "Result": 7}),
            state_name: "S".into(),
            execution_arn: "arn:aws:states:us-east-1:123456789012:express:p:n:u".into(),
            attempt: 0,
            scope: String::new(),
            timeout: None,
            idempotency_key: "k".into(),
        }
    }

    #[tokio::test]
    async fn other_resources_go_to_the_wrapped_dispatcher() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let engine = Runtime {
            map_children: None,
            clock: clock.clone(),
            entropy: Arc::new(SplitMix64::new(1)),
            tasks: Arc::new(expressway_engine::tasks::Registry::new(clock)),
            callbacks: None,
        };
        let (runtime, _nested) = NestedDispatcher::install(engine);
        let got = runtime
            .tasks
            .invoke(request(expressway_engine::tasks::TEST_RESOURCE))
            .await;
        assert_eq!(got, Ok(json!(7)), "the built-in test resource answered");
        // Without a pod (never bound) the nested resources refuse clearly.
        let e = runtime
            .tasks
            .invoke(request(START_EXECUTION_SYNC2))
            .await
            .unwrap_err();
        assert_eq!(e.error, "States.TaskFailed");
        assert!(e.cause.unwrap().contains("only in an executor pod"));
    }

    #[tokio::test]
    async fn an_unwrapped_resource_keeps_the_wrapped_answer() {
        let engine = Runtime {
            map_children: None,
            clock: Arc::new(TokioClock::new()),
            entropy: Arc::new(SplitMix64::new(1)),
            tasks: Arc::new(NoTasks),
            callbacks: None,
        };
        let (runtime, _nested) = NestedDispatcher::install(engine);
        let e = runtime
            .tasks
            .invoke(request(
                "arn:aws:states:::states:startExecution.waitForTaskToken",
            ))
            .await
            .unwrap_err();
        assert!(e.cause.unwrap().contains("No handler is registered"));
    }
}
