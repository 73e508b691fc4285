//! Metric names (BLUEPRINT "Metrics"), the Prometheus recorder, and the HTTP endpoint serving
//! `/metrics`, `/healthz` and `/readyz` on one port.

use crate::registry::Registry;
use axum::http::StatusCode;
use axum::routing::get;
use expressway_engine::{Budget, Outcome};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Metric names.
pub mod names {
    /// Counter, label `state_machine`.
    pub const STARTED: &str = "expressway_executions_started_total";
    /// Counter, label `state_machine`.
    pub const SUCCEEDED: &str = "expressway_executions_succeeded_total";
    /// Counter, label `state_machine`.
    pub const FAILED: &str = "expressway_executions_failed_total";
    /// Counter, label `state_machine`.
    pub const TIMED_OUT: &str = "expressway_executions_timed_out_total";
    /// Counter, label `state_machine` (Express executions are never aborted by the executor;
    /// exported at zero for dashboard parity).
    pub const ABORTED: &str = "expressway_executions_aborted_total";
    /// Histogram, labels `state_machine`, `status`.
    pub const DURATION: &str = "expressway_execution_duration_seconds";
    /// Counter, label `state_machine`.
    pub const TRANSITIONS: &str = "expressway_state_transitions_total";
    /// Counter, labels `state_machine`, `budget` (`events`/`memory`): executions failed with
    /// `States.DataLimitExceeded` because they exceeded a per-execution budget.
    pub const BUDGET_EXCEEDED: &str = "expressway_execution_budget_exceeded_total";
    /// Histogram, label `resource`.
    pub const TASK_DURATION: &str = "expressway_task_duration_seconds";
    /// Counter, label `resource`.
    pub const TASK_FAILURES: &str = "expressway_task_failures_total";
    /// Gauge.
    pub const IN_FLIGHT: &str = "expressway_executions_in_flight";
    /// Counter, labels `mode` (`start`, `sync`, `sync2`), `status` (`started`, `succeeded`,
    /// `failed`, `timed_out`, `refused`): Task states of `states:startExecution[.sync|.sync:2]`
    /// (see [`crate::nested`]).
    pub const NESTED_EXECUTIONS: &str = "expressway_nested_executions_total";
    /// Gauge, labels `topic`, `partition`: the owning pod's lag (high watermark minus its fetch
    /// position, from librdkafka statistics). Exported only while the pod owns the partition
    /// (see [`crate::lag`]).
    pub const CONSUMER_LAG: &str = "expressway_consumer_lag";
    /// Gauge, labels `topic`, `partition`: the group's lag (high watermark minus the group's
    /// committed offset), for every partition of the consumed topics, owned or not; every pod
    /// exports the same view (aggregate with `max by (topic, partition)`).
    pub const GROUP_LAG: &str = "expressway_consumer_group_lag";
    /// Gauge, label `topic`: partitions this pod owns.
    pub const PARTITIONS_ASSIGNED: &str = "expressway_partitions_assigned";
    /// Counter, label `reason`.
    pub const DEAD_LETTERS: &str = "expressway_dead_letters_total";
    /// Counter.
    pub const LOG_RECORDS: &str = "expressway_log_records_total";
    /// Histogram of log record sizes.
    pub const LOG_BATCH_BYTES: &str = "expressway_log_batch_bytes";
    /// Counter, label `result` (`ok`/`error`).
    pub const OFFSET_COMMITS: &str = "expressway_offset_commits_total";
    /// Counter, label `result` (`committed`/`aborted`): Kafka transactions of
    /// `--guarantee exactly-once`.
    pub const TRANSACTIONS: &str = "expressway_transactions_total";
    /// Histogram: executions per committed transaction.
    pub const TRANSACTION_EXECUTIONS: &str = "expressway_transaction_executions";
    /// Histogram: seconds of `send_offsets_to_transaction` + `commit_transaction`.
    pub const TRANSACTION_COMMIT_SECONDS: &str = "expressway_transaction_commit_seconds";
    /// Counter, label `kind` (`assign`/`revoke`).
    pub const REBALANCES: &str = "expressway_rebalances_total";
    /// Gauge: definitions-topic machines hidden by a definitions-directory file of the same
    /// name (the file's definition runs; see ARCHITECTURE.md, "One registry").
    pub const DEFINITIONS_SHADOWED: &str = "expressway_definitions_shadowed";
    /// Gateway: counter: times this replica took the definitions writer lease (fencing the
    /// other replicas; see the gateway's `definitions_writer.rs`).
    pub const DEFINITIONS_WRITER_LEASES: &str = "expressway_definitions_writer_leases_total";
    /// Gateway: counter: version publications recomputed because another replica wrote first.
    pub const DEFINITIONS_WRITER_CONFLICTS: &str = "expressway_definitions_writer_conflicts_total";
    /// Gateway: counter, labels `operation`, `code` (HTTP status).
    pub const GATEWAY_REQUESTS: &str = "expressway_gateway_requests_total";
    /// Gateway: histogram, label `operation`.
    pub const GATEWAY_REQUEST_DURATION: &str = "expressway_gateway_request_duration_seconds";
    /// Gateway: counter, label `reason` (the AWS error type of a refused signature).
    pub const GATEWAY_AUTH_FAILURES: &str = "expressway_gateway_auth_failures_total";
    /// Console: gauge, executions held in the console's ring (all machines).
    pub const CONSOLE_EXECUTIONS_HELD: &str = "expressway_console_executions_held";
    /// Console: gauge, open server-sent event streams (browsers following executions).
    pub const CONSOLE_SSE_CLIENTS: &str = "expressway_console_sse_clients";
    /// Console: counter, labels `topic` (`results`, `logs`), `outcome` (`applied`, `invalid`,
    /// `dropped`): records its reader consumed.
    pub const CONSOLE_RECORDS: &str = "expressway_console_records_total";
    /// HTTP servers: counter, label `server` (`gateway`, `metrics`): connections refused at
    /// the connection limit.
    pub const HTTP_CONNECTIONS_REFUSED: &str = "expressway_http_connections_refused_total";
    /// HTTP servers: counter, labels `server`, `phase` (`header`, `body`, `idle`): connections
    /// closed (or requests answered 408) by a timeout.
    pub const HTTP_TIMEOUTS: &str = "expressway_http_timeouts_total";
    /// Counter, label `outcome`: callbacks of `.waitForTaskToken` Tasks. `success`, `failure`,
    /// `heartbeat`: handed to a waiting execution (also when replayed from the early buffer);
    /// `buffered`: nobody waited yet (kept in the early buffer); `expired`: left the buffer
    /// unclaimed after the execution time limit; `dropped`: pushed out of a full buffer;
    /// `forwarded`: moved to the partition its token names; `invalid`: dead-lettered.
    pub const CALLBACKS: &str = "expressway_callbacks_total";
    /// Gauge: executions waiting for a callback.
    pub const EXECUTIONS_WAITING: &str = "expressway_executions_waiting";
    /// Histogram, label `outcome` (`success`/`failure`): seconds from the start of a wait to
    /// its outcome.
    pub const CALLBACK_LATENCY: &str = "expressway_callback_latency_seconds";
    /// Gauge: callbacks held for executions that do not wait yet.
    pub const CALLBACK_EARLY_BUFFER: &str = "expressway_callback_early_buffer";
    /// Counter, label `event`: Distributed Map children run across the cluster. Parent side:
    /// `emitted` (a start event written for a child), `resumed` (a re-run parent found the
    /// child already started by its earlier run and waits for it), `reused` (a re-run parent
    /// found the child's outcome), `succeeded` / `failed` (the outcome reached the parent).
    /// Child side: `ran` (a pod ran a child), `orphaned` (a child whose Map state the
    /// machine no longer has: reported to its parent as failed), `refused` (a header that
    /// cannot be read or whose token does not verify: dead-lettered).
    pub const MAP_CHILDREN: &str = "expressway_map_children_total";
    /// Counter: records `kafka:getRecords` read (Distributed Map items from a topic).
    pub const KAFKA_RECORDS_READ: &str = "expressway_kafka_records_read_total";
    /// HTTP servers: gauge, label `server`: open connections.
    pub const HTTP_CONNECTIONS_OPEN: &str = "expressway_http_connections_open";
}

const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];
/// Callback waits: milliseconds to hours (`--max-execution-seconds` can exceed 5 minutes).
const WAIT_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    3600.0,
];
/// Executions per transaction: 1 to 10,000.
const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];
/// Log record sizes: a 1-1.5-2-3-5-7 series (each bucket at most 1.67x the one before), from
/// 256 bytes (a log record at level OFF or ERROR) to 4 MiB, so p50/p99 of typical records
/// (hundreds of bytes to a few hundred KiB) are resolved instead of interpolated across 4x.
const BYTES_BUCKETS: &[f64] = &[
    256.0, 384.0, 512.0, 768.0, 1024.0, 1536.0, 2048.0, 3072.0, 4096.0, 6144.0, 8192.0, 12288.0,
    16384.0, 24576.0, 32768.0, 49152.0, 65536.0, 98304.0, 131072.0, 196608.0, 262144.0, 393216.0,
    524288.0, 786432.0, 1048576.0, 2097152.0, 4194304.0,
];

/// Every `reason` of [`names::DEAD_LETTERS`]: the start-event codes of
/// `expressway_wire::StartError::code` and the executor's own `InternalError` (a panicking
/// execution). All are exported at zero from the start, so the first dead letters of a reason
/// are an increase (a series that appears at 5 has `increase(...) == 0`).
pub const DEAD_LETTER_REASONS: &[&str] = &[
    "InvalidUtf8",
    "InvalidJson",
    "InvalidProtobuf",
    "InvalidStartEvent",
    "UnknownStateMachine",
    "InputTooLarge",
    crate::pod::PANIC_CODE,
    // Callback records (`crate::callbacks`): `expressway_wire::CallbackError::code` and a
    // token that does not verify (the others share the start-event codes above).
    "InvalidCallback",
    "InvalidOutput",
    "OutputTooLarge",
    expressway_wire::callback::INVALID_TASK_TOKEN_CODE,
    // A start event whose `expressway-map-child` header cannot be read.
    expressway_wire::map_child::INVALID_MAP_CHILD_CODE,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
/// Returns `None` when another recorder was installed first.
pub fn install_recorder() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(names::DURATION.into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(names::TASK_DURATION.into()),
                        SECONDS_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(names::GATEWAY_REQUEST_DURATION.into()),
                        SECONDS_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(names::LOG_BATCH_BYTES.into()),
                        BYTES_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(names::TRANSACTION_COMMIT_SECONDS.into()),
                        SECONDS_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(names::TRANSACTION_EXECUTIONS.into()),
                        COUNT_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(names::CALLBACK_LATENCY.into()),
                        WAIT_BUCKETS,
                    )
                })
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(names::STARTED, "Executions started");
    describe_counter!(names::SUCCEEDED, "Executions that succeeded");
    describe_counter!(names::FAILED, "Executions that failed");
    describe_counter!(names::TIMED_OUT, "Executions that timed out");
    describe_counter!(
        names::ABORTED,
        "Executions abandoned without a result because the shutdown drain budget ran out (redelivered to the next owner)"
    );
    describe_histogram!(names::DURATION, Unit::Seconds, "Execution duration");
    describe_counter!(names::TRANSITIONS, "State transitions");
    describe_counter!(
        names::BUDGET_EXCEEDED,
        "Executions failed because they kept too many log events or held too much live state"
    );
    describe_histogram!(names::TASK_DURATION, Unit::Seconds, "Task duration");
    describe_counter!(names::TASK_FAILURES, "Task failures");
    describe_gauge!(names::IN_FLIGHT, "Executions running in this pod");
    describe_counter!(
        names::NESTED_EXECUTIONS,
        "Nested executions (states:startExecution tasks) by mode and outcome"
    );
    describe_counter!(
        names::MAP_CHILDREN,
        "Distributed Map children run across the cluster, by event"
    );
    describe_counter!(
        names::KAFKA_RECORDS_READ,
        "Records read by kafka:getRecords (Distributed Map item readers)"
    );
    // CONSUMER_LAG, GROUP_LAG and PARTITIONS_ASSIGNED are rendered by `crate::lag`.
    describe_counter!(
        names::DEAD_LETTERS,
        "Records routed to the dead-letter topic"
    );
    describe_counter!(names::LOG_RECORDS, "Log records produced");
    describe_histogram!(names::LOG_BATCH_BYTES, Unit::Bytes, "Size of log records");
    describe_counter!(names::OFFSET_COMMITS, "Offset commits");
    describe_counter!(names::REBALANCES, "Consumer group rebalance events");
    describe_counter!(
        names::TRANSACTIONS,
        "Kafka transactions of --guarantee exactly-once, committed or aborted"
    );
    describe_histogram!(
        names::TRANSACTION_EXECUTIONS,
        "Executions whose records a committed transaction carried"
    );
    describe_histogram!(
        names::TRANSACTION_COMMIT_SECONDS,
        Unit::Seconds,
        "Time to send the offsets and commit a transaction"
    );
    describe_gauge!(
        names::DEFINITIONS_SHADOWED,
        "Definitions-topic machines hidden by a definitions-directory file of the same name"
    );
    describe_counter!(
        names::DEFINITIONS_WRITER_LEASES,
        "Times this gateway took the definitions writer lease (fencing other replicas)"
    );
    describe_counter!(
        names::DEFINITIONS_WRITER_CONFLICTS,
        "Version publications retried because another gateway replica wrote first"
    );
    describe_counter!(names::GATEWAY_REQUESTS, "Step Functions API requests");
    describe_histogram!(
        names::GATEWAY_REQUEST_DURATION,
        Unit::Seconds,
        "Step Functions API request duration"
    );
    describe_counter!(
        names::GATEWAY_AUTH_FAILURES,
        "Step Functions API requests refused by SigV4 verification"
    );
    describe_counter!(
        names::HTTP_CONNECTIONS_REFUSED,
        "HTTP connections refused because the server was at its connection limit"
    );
    describe_counter!(
        names::HTTP_TIMEOUTS,
        "HTTP connections closed (or requests answered 408) by the header, body or idle timeout"
    );
    describe_gauge!(names::HTTP_CONNECTIONS_OPEN, "Open HTTP connections");
    describe_counter!(
        names::CALLBACKS,
        "Callbacks of .waitForTaskToken Tasks by what became of them"
    );
    describe_gauge!(
        names::EXECUTIONS_WAITING,
        "Executions waiting for a callback (task token)"
    );
    describe_histogram!(
        names::CALLBACK_LATENCY,
        Unit::Seconds,
        "Time from the start of a callback wait to its success or failure"
    );
    describe_gauge!(
        names::CALLBACK_EARLY_BUFFER,
        "Callbacks held for executions that do not wait yet"
    );
    describe_gauge!(
        names::CONSOLE_EXECUTIONS_HELD,
        "Executions held by the console (bounded ring per state machine)"
    );
    describe_gauge!(
        names::CONSOLE_SSE_CLIENTS,
        "Console live-update streams open (server-sent events)"
    );
    describe_counter!(
        names::CONSOLE_RECORDS,
        "Results and logs records read by the console"
    );
}

/// Exports the pod-level series at zero before any traffic, with the label values they are
/// counted with, so `rate`/`increase` see their first events.
pub fn touch_pod() {
    metrics::counter!(names::LOG_RECORDS).increment(0);
    for kind in ["assign", "revoke"] {
        metrics::counter!(names::REBALANCES, "kind" => kind).increment(0);
    }
    for result in ["ok", "error"] {
        metrics::counter!(names::OFFSET_COMMITS, "result" => result).increment(0);
    }
    for reason in DEAD_LETTER_REASONS {
        metrics::counter!(names::DEAD_LETTERS, "reason" => *reason).increment(0);
    }
    metrics::gauge!(names::IN_FLIGHT).increment(0.0);
    for event in crate::map_children::EVENTS {
        metrics::counter!(names::MAP_CHILDREN, "event" => *event).increment(0);
    }
    metrics::counter!(names::KAFKA_RECORDS_READ).increment(0);
}

/// Exports every per-machine counter at zero so dashboards see the series before traffic.
pub fn touch_machine(machine: &str) {
    for name in [
        names::STARTED,
        names::SUCCEEDED,
        names::FAILED,
        names::TIMED_OUT,
        names::ABORTED,
        names::TRANSITIONS,
    ] {
        metrics::counter!(name, "state_machine" => machine.to_string()).increment(0);
    }
    for budget in [Budget::Events, Budget::Memory] {
        metrics::counter!(names::BUDGET_EXCEEDED, "state_machine" => machine.to_string(), "budget" => budget.as_str())
            .increment(0);
    }
}

/// Counts and logs an execution that a budget failed (`Outcome::exceeded_budget`).
pub fn record_budget_exceeded(machine: &str, execution_arn: &str, outcome: &Outcome) {
    if let Some(budget) = outcome.exceeded_budget {
        metrics::counter!(names::BUDGET_EXCEEDED, "state_machine" => machine.to_string(), "budget" => budget.as_str())
            .increment(1);
        tracing::warn!(
            execution_arn,
            budget = budget.as_str(),
            cause = outcome.cause.as_deref().unwrap_or_default(),
            "execution failed: budget exceeded"
        );
    }
}

/// Readiness inputs shared between the pod and the HTTP endpoint.
#[derive(Debug, Default)]
pub struct Health {
    assigned: AtomicBool,
}

impl Health {
    /// Records that the consumer completed a group assignment.
    pub fn set_assigned(&self) {
        self.assigned.store(true, Ordering::Release);
    }
    /// Whether the consumer completed a group assignment.
    pub fn is_assigned(&self) -> bool {
        self.assigned.load(Ordering::Acquire)
    }
}

/// Binds the metrics/health endpoint and serves it until `shutdown` resolves, with the
/// connection limit and timeouts of [`HttpLimits::METRICS`](crate::http_server::HttpLimits).
/// Returns the bound address (useful with port 0).
pub async fn serve_http(
    listen: SocketAddr,
    prometheus: Option<PrometheusHandle>,
    health: Arc<Health>,
    registry: Arc<Registry>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let p = prometheus.clone();
                async move {
                    match p {
                        Some(p) => {
                            p.run_upkeep();
                            let mut body = p.render();
                            crate::lag::render(&mut body);
                            (StatusCode::OK, body)
                        }
                        None => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "metrics recorder not installed\n".to_string(),
                        ),
                    }
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = health.is_assigned() && registry.is_loaded();
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        );
    tokio::spawn(crate::http_server::serve(
        listener,
        app,
        crate::http_server::HttpLimits::METRICS,
        "metrics",
        shutdown,
    ));
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expressway_wire::StartError;

    #[test]
    fn every_dead_letter_code_is_a_known_reason() {
        let codes = [
            StartError::InvalidUtf8(String::new()),
            StartError::InvalidJson(String::new()),
            StartError::InvalidProtobuf(String::new()),
            StartError::InvalidStartEvent(String::new()),
            StartError::UnknownStateMachine(String::new()),
            StartError::InputTooLarge { size: 0, limit: 0 },
        ]
        .map(|e| e.code());
        for code in codes {
            assert!(
                DEAD_LETTER_REASONS.contains(&code),
                "{code} is not exported at zero"
            );
        }
        assert!(DEAD_LETTER_REASONS.contains(&crate::pod::PANIC_CODE));
    }

    /// Neighbouring bounds at most 1.5x apart up to 1 MiB (typical log records: hundreds of
    /// bytes to a few hundred KiB), so a quantile is off by less than that; 2x beyond.
    #[test]
    fn log_size_buckets_resolve_typical_sizes() {
        assert_eq!(BYTES_BUCKETS.first(), Some(&256.0));
        assert_eq!(BYTES_BUCKETS.last(), Some(&4194304.0));
        for w in BYTES_BUCKETS.windows(2) {
            let limit = if w[1] <= 1048576.0 { 1.5 } else { 2.0 };
            assert!(w[1] > w[0] && w[1] / w[0] <= limit, "{} -> {}", w[0], w[1]);
        }
    }
}
