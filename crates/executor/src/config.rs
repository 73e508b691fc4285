//! Executor configuration (the `serve` flags, already parsed).

use expressway_wire::topics;
use std::time::Duration;

/// Encoding of log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `{"executionArn","events":[...]}` (default).
    #[default]
    Json,
    /// protobuf `expressway.v1.ExecutionLogBatch`, header `content-type: application/x-protobuf`.
    Protobuf,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "protobuf" => Ok(LogFormat::Protobuf),
            _ => Err(format!("unknown log format '{s}' (json, protobuf)")),
        }
    }
}

/// Delivery guarantee of a pod's Kafka outputs (`--guarantee`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Guarantee {
    /// Outputs are acknowledged before the start offset is committed; a crash or rebalance may
    /// re-run an execution (same ARN), so its records can appear twice (default).
    #[default]
    AtLeastOnce,
    /// Log, result, dead-letter and `kafka:publish` records and the consumed start offsets are
    /// committed in Kafka transactions ([`crate::exactly_once`]): a `read_committed` reader sees
    /// each execution's records once.
    ExactlyOnce,
}

impl std::str::FromStr for Guarantee {
    type Err = String;
    fn from_str(s: &str) -> Result<Guarantee, String> {
        match s.to_ascii_lowercase().as_str() {
            "at-least-once" => Ok(Guarantee::AtLeastOnce),
            "exactly-once" => Ok(Guarantee::ExactlyOnce),
            _ => Err(format!(
                "unknown guarantee '{s}' (at-least-once, exactly-once)"
            )),
        }
    }
}

/// Settings of `--guarantee exactly-once` (ignored otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionConfig {
    /// `transactional.id` of the pod's producer (`None`: `<group>-<hostname>-<pid>`, see
    /// [`crate::exactly_once::default_transactional_id`]).
    pub transactional_id: Option<String>,
    /// A transaction is committed this long after its first execution joined it...
    pub interval: Duration,
    /// ... or once this many executions wrote into it, whichever comes first.
    pub max_executions: usize,
}

impl Default for TransactionConfig {
    fn default() -> TransactionConfig {
        TransactionConfig {
            transactional_id: None,
            interval: Duration::from_millis(100),
            max_executions: 1000,
        }
    }
}

/// The callback transport of `.waitForTaskToken` Tasks ([`crate::callbacks`]).
#[derive(Debug, Clone)]
pub struct CallbackConfig {
    /// The callback topic (`--callbacks-topic`), partitioned like the start topic.
    pub topic: String,
    /// The key that authenticates task tokens (`--task-token-key-file`,
    /// `EXPRESSWAY_TASK_TOKEN_KEY`). Without one the pod cannot wait: such Tasks fail with a
    /// `States.Runtime` error that says so, and the callback topic is not read.
    pub key: Option<expressway_wire::TaskTokenKey>,
    /// Callback partitions are read from the time of the oldest uncommitted start event of
    /// the matching start partition minus this margin (producers' clocks differ).
    pub clock_skew: Duration,
    /// Signals kept for executions that do not wait yet (all tokens together).
    pub early_buffer: usize,
}

impl Default for CallbackConfig {
    fn default() -> CallbackConfig {
        CallbackConfig {
            topic: topics::CALLBACKS.into(),
            key: None,
            clock_skew: Duration::from_secs(60),
            early_buffer: 10_000,
        }
    }
}

/// Everything the executor pod needs to know.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Consumer group.
    pub group: String,
    /// Start-event topic.
    pub start_topic: String,
    /// Log records topic.
    pub logs_topic: String,
    /// Result records topic.
    pub results_topic: String,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Compacted definitions topic to follow (`None`: don't follow).
    pub definitions_topic: Option<String>,
    /// Topic bindings: every raw record of the topic is the input of the machine.
    pub bindings: Vec<(String, String)>,
    /// Bound on running executions per partition. Further records wait in a per-partition
    /// backlog; the partition is paused when its backlog is full (16x this many records, at
    /// least 1024, or 16 MiB) and resumed at half.
    pub max_in_flight_per_partition: usize,
    /// Bound on running executions in the pod; every partition is paused when the pod's backlog
    /// is full (16x this many records, at least 4096, or 256 MiB) and resumed at half.
    pub max_in_flight: usize,
    /// Override of the per-partition backlog depth (records) at which a partition is paused
    /// (`None`: 16x `max_in_flight_per_partition`, at least 1024).
    pub backlog_per_partition: Option<usize>,
    /// How long a revoke or shutdown waits for in-flight executions.
    pub drain_timeout: Duration,
    /// Which records of a partition may run at the same time (`--ordering`, default `key`).
    pub ordering: crate::ordering::OrderingMode,
    /// Extra librdkafka settings (applied to the consumers and the producer; the delivery
    /// settings the executor relies on are forced after them).
    pub kafka: Vec<(String, String)>,
    /// Encoding of log records.
    pub log_format: LogFormat,
    /// Region in ARNs.
    pub region: String,
    /// Account in ARNs.
    pub account: String,
    /// Memory budget of each execution (estimated bytes of live state; see
    /// `expressway_engine::Limits::max_memory_bytes`).
    pub execution_memory_bytes: usize,
    /// Delivery guarantee (`--guarantee`, default at-least-once).
    pub guarantee: Guarantee,
    /// Transactions of `Guarantee::ExactlyOnce`.
    pub transactions: TransactionConfig,
    /// Longest execution (`--max-execution-seconds`; `Limits::max_duration`, default 5
    /// minutes as on AWS Express). An execution holds its start offset uncommitted while it
    /// runs, waiting for a callback included.
    pub max_execution: Duration,
    /// Task tokens and the callback topic.
    pub callbacks: CallbackConfig,
}

impl ExecutorConfig {
    /// Defaults from BLUEPRINT for the given brokers.
    pub fn new(brokers: impl Into<String>) -> ExecutorConfig {
        ExecutorConfig {
            brokers: brokers.into(),
            group: "expressway".into(),
            start_topic: topics::START.into(),
            logs_topic: topics::LOGS.into(),
            results_topic: topics::RESULTS.into(),
            dlq_topic: topics::DLQ.into(),
            definitions_topic: Some(topics::DEFINITIONS.into()),
            bindings: Vec::new(),
            max_in_flight_per_partition: 64,
            max_in_flight: 1024,
            backlog_per_partition: None,
            drain_timeout: Duration::from_secs(30),
            ordering: crate::ordering::OrderingMode::Key,
            kafka: Vec::new(),
            log_format: LogFormat::Json,
            region: expressway_engine::DEFAULT_REGION.into(),
            account: expressway_engine::DEFAULT_ACCOUNT.into(),
            execution_memory_bytes: expressway_engine::DEFAULT_MAX_MEMORY_BYTES,
            guarantee: Guarantee::AtLeastOnce,
            transactions: TransactionConfig::default(),
            max_execution: expressway_engine::Limits::default().max_duration,
            callbacks: CallbackConfig::default(),
        }
    }
}

/// Parses `KEY=VALUE`.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}
