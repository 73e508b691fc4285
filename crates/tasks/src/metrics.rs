//! Task metrics (through the `metrics` facade; the executor installs the exporter).

use expressway_engine::tasks::Handler;
use expressway_engine::TaskRequest;
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
