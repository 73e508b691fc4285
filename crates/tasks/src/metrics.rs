//! Task metrics (through the `metrics` facade; the executor installs the exporter).
//!
//! Every Task attempt is measured, whatever answers it: this crate's resources, native handlers,
//! the engine's built-in test resource and resources without a handler ([`metered_registry`]).

use expressway_engine::tasks::{self, Handler, Registry, TEST_RESOURCE};
use expressway_engine::{Clock, TaskRequest};
use std::sync::Arc;
use std::time::Instant;

/// Histogram of task attempt durations, label `resource`.
pub const TASK_DURATION: &str = "expressway_task_duration_seconds";
/// Counter of failed task attempts, label `resource`.
pub const TASK_FAILURES: &str = "expressway_task_failures_total";

/// Registers help texts and units; call once at startup, after installing the recorder.
pub fn describe_metrics() {
    metrics::describe_histogram!(
        TASK_DURATION,
        metrics::Unit::Seconds,
        "Duration of one Task attempt, by resource"
    );
    metrics::describe_counter!(
        TASK_FAILURES,
        metrics::Unit::Count,
        "Failed Task attempts, by resource"
    );
}

/// Computes the `resource` label of a request (low cardinality: no per-execution parts).
pub(crate) type LabelFn = Arc<dyn Fn(&TaskRequest) -> String + Send + Sync>;

/// Wraps `handler` under the one label `label`, and exports its failure counter at zero right
/// away (when a recorder is installed), so the first failures show as an increase.
pub fn instrument_as(label: impl Into<String>, handler: Handler) -> Handler {
    let label = label.into();
    metrics::counter!(TASK_FAILURES, "resource" => label.clone()).increment(0);
    instrument(Arc::new(move |_| label.clone()), handler)
}

/// The engine's task registry with its built-ins metered: [`TEST_RESOURCE`] (label: its ARN)
/// and every resource nothing is registered for (label: the `Resource` as the definition
/// wrote it, so bounded by the definitions; the attempt fails with `States.TaskFailed`).
/// [`crate::TaskConfig::build_registry`] starts from it; register further handlers on it.
pub fn metered_registry(clock: Arc<dyn Clock>) -> Registry {
    let mut registry = Registry::new(clock.clone());
    registry.register(
        TEST_RESOURCE,
        instrument_as(
            TEST_RESOURCE,
            Arc::new(move |req| tasks::test_resource(req, clock.clone())),
        ),
    );
    registry.set_fallback(instrument(
        Arc::new(|req: &TaskRequest| req.resource.clone()),
        Arc::new(tasks::unregistered),
    ));
    registry
}

/// Wraps `handler` so each attempt records its duration, and failures are counted and logged.
pub(crate) fn instrument(label: LabelFn, handler: Handler) -> Handler {
    Arc::new(move |req: TaskRequest| {
        let resource = label(&req);
        let state = req.state_name.clone();
        let execution = req.execution_arn.clone();
        let attempt = req.attempt;
        let fut = handler(req);
        Box::pin(async move {
            let started = Instant::now();
            let result = fut.await;
            let elapsed = started.elapsed().as_secs_f64();
            metrics::histogram!(TASK_DURATION, "resource" => resource.clone()).record(elapsed);
            if let Err(e) = &result {
                metrics::counter!(TASK_FAILURES, "resource" => resource.clone()).increment(1);
                // The cause is ours or the remote's text; it never contains configured secrets.
                tracing::warn!(
                    message = "Task attempt failed.",
                    resource = %resource,
                    state = %state,
                    execution_arn = %execution,
                    attempt,
                    error = %e.error,
                    cause = e.cause.as_deref().unwrap_or(""),
                );
            }
            result
        })
    })
}
