//! `expressway serve`: the executor pod.

use anyhow::Context as _;
use expressway_engine::{DEFAULT_ACCOUNT, DEFAULT_REGION};
use expressway_executor::config::parse_key_value;
use expressway_executor::{telemetry, Executor, ExecutorConfig, Registry};
use expressway_wire::topics;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Flags of `expressway serve`; each also reads `EXPRESSWAY_<FLAG>`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "EXPRESSWAY_BROKERS")]
    pub brokers: String,
    /// Directory of `NAME.asl.json` (+ optional `NAME.config.json`) definitions.
    #[arg(long, env = "EXPRESSWAY_DEFINITIONS")]
    pub definitions: Option<PathBuf>,
    /// Consumer group.
    #[arg(long, env = "EXPRESSWAY_GROUP", default_value = "expressway")]
    pub group: String,
    /// Start-event topic.
    #[arg(long, env = "EXPRESSWAY_START_TOPIC", default_value = topics::START)]
    pub start_topic: String,
    /// Log records topic.
    #[arg(long, env = "EXPRESSWAY_LOGS_TOPIC", default_value = topics::LOGS)]
    pub logs_topic: String,
    /// Result records topic.
    #[arg(long, env = "EXPRESSWAY_RESULTS_TOPIC", default_value = topics::RESULTS)]
    pub results_topic: String,
    /// Dead-letter topic.
    #[arg(long, env = "EXPRESSWAY_DLQ_TOPIC", default_value = topics::DLQ)]
    pub dlq_topic: String,
    /// Compacted definitions topic to follow (empty: don't follow).
    #[arg(long, env = "EXPRESSWAY_DEFINITIONS_TOPIC", default_value = topics::DEFINITIONS)]
    pub definitions_topic: String,
    /// `TOPIC=MACHINE`: every raw record of TOPIC is the input of MACHINE (repeatable;
    /// comma-separated in the environment variable).
    #[arg(long = "bind", env = "EXPRESSWAY_BIND", value_delimiter = ',', value_parser = parse_key_value)]
    pub bind: Vec<(String, String)>,
    /// Running executions per partition before the partition is paused.
    #[arg(
        long,
        env = "EXPRESSWAY_MAX_IN_FLIGHT_PER_PARTITION",
        default_value_t = 64
    )]
    pub max_in_flight_per_partition: usize,
    /// Running executions per pod before every partition is paused.
    #[arg(long, env = "EXPRESSWAY_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,
    /// How long a revoke or shutdown waits for in-flight executions (`30s`, `500ms`, `2m`).
    #[arg(long, env = "EXPRESSWAY_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Memory budget of each execution: estimated bytes of its live state (kept log events,
    /// Map items and results, iterations and branches in flight). An execution that needs more
    /// fails with `States.DataLimitExceeded` (`64MiB`, `512KiB`, `1GiB`, `100MB` or bytes).
    #[arg(long, env = "EXPRESSWAY_EXECUTION_MEMORY_BUDGET", default_value = "64MiB", value_parser = parse_bytes)]
    pub execution_memory_budget: usize,
    /// Which records of a partition may run concurrently: `key` (a record waits for every
    /// earlier record with the same Kafka key; keyless records run concurrently), `partition`
    /// (one execution at a time per partition, in offset order) or `none`.
    #[arg(long, env = "EXPRESSWAY_ORDERING", default_value = "key")]
    pub ordering: expressway_executor::OrderingMode,
    /// Delivery guarantee: `at-least-once` (outputs acknowledged before the start offset is
    /// committed; a crash or rebalance can repeat an execution's records) or `exactly-once`
    /// (log, result, dead-letter and `kafka:publish` records and the start offsets commit in
    /// Kafka transactions; readers must use `isolation.level=read_committed`).
    #[arg(long, env = "EXPRESSWAY_GUARANTEE", default_value = "at-least-once")]
    pub guarantee: expressway_executor::Guarantee,
    /// `transactional.id` of the exactly-once producer. Default `<group>-<hostname>-<port of
    /// --metrics-listen>`: stable across restarts of a pod with a stable hostname (StatefulSet),
    /// so a restarted pod aborts its predecessor's open transaction at once; distinct for pods
    /// sharing a host.
    #[arg(long, env = "EXPRESSWAY_TRANSACTIONAL_ID")]
    pub transactional_id: Option<String>,
    /// Exactly-once: commit the open transaction this long after its first execution joined it
    /// (`100ms`, `1s`).
    #[arg(long, env = "EXPRESSWAY_TRANSACTION_INTERVAL", default_value = "100ms", value_parser = parse_duration)]
    pub transaction_interval: Duration,
    /// Exactly-once: commit the open transaction once this many executions wrote into it.
    #[arg(
        long,
        env = "EXPRESSWAY_TRANSACTION_MAX_EXECUTIONS",
        default_value_t = 1000
    )]
    pub transaction_max_executions: usize,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(
        long,
        env = "EXPRESSWAY_METRICS_LISTEN",
        default_value = "0.0.0.0:9464"
    )]
    pub metrics_listen: SocketAddr,
    /// Task configuration (JSON; expressway-tasks): connections, functions, egress allowlist.
    /// `kafka:publish` works with or without it.
    #[arg(long, env = "EXPRESSWAY_TASKS_CONFIG")]
    pub tasks_config: Option<PathBuf>,
    /// Encoding of log records: `json` or `protobuf` (`expressway.v1.ExecutionLogBatch`).
    #[arg(long, env = "EXPRESSWAY_LOG_FORMAT", default_value = "json")]
    pub log_format: expressway_executor::config::LogFormat,
    /// Extra librdkafka setting `KEY=VALUE` (repeatable; `;`-separated in the environment
    /// variable).
    #[arg(long = "kafka", env = "EXPRESSWAY_KAFKA", value_delimiter = ';', value_parser = parse_key_value)]
    pub kafka: Vec<(String, String)>,
    /// The region of this deployment (execution and state machine ARNs); a start event naming
    /// an ARN of another region is dead-lettered (`ForeignStateMachineArn`).
    #[arg(long, env = "EXPRESSWAY_REGION", default_value = DEFAULT_REGION, value_parser = parse_region)]
    pub region: String,
    /// The account id of this deployment (12 digits; ARNs of another account are dead-lettered).
    #[arg(long, env = "EXPRESSWAY_ACCOUNT", default_value = DEFAULT_ACCOUNT, value_parser = parse_account)]
    pub account: String,
    /// Longest execution, in seconds (AWS Express: 300). A longer limit lets executions wait
    /// longer for callbacks, but an execution holds its start offset uncommitted while it
    /// runs: the partition's committed offset (and the lag) stays behind it, and after a crash
    /// the next owner re-runs everything from there.
    #[arg(long, env = "EXPRESSWAY_MAX_EXECUTION_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_execution_seconds: u64,
    /// Callback topic of `.waitForTaskToken` tasks (partitioned like the start topic; a pod
    /// reads the callback partitions of the start partitions it owns).
    #[arg(long, env = "EXPRESSWAY_CALLBACKS_TOPIC", default_value = topics::CALLBACKS)]
    pub callbacks_topic: String,
    /// Producers' clock difference allowed for: a callback partition is read from the oldest
    /// uncommitted start event's timestamp minus this.
    #[arg(long, env = "EXPRESSWAY_CALLBACK_CLOCK_SKEW", default_value = "60s", value_parser = parse_duration)]
    pub callback_clock_skew: Duration,
    /// Callbacks kept for executions that do not wait yet (all together; the oldest make room).
    #[arg(
        long,
        env = "EXPRESSWAY_CALLBACK_EARLY_BUFFER",
        default_value_t = 10_000
    )]
    pub callback_early_buffer: usize,
    #[command(flatten)]
    pub task_tokens: crate::task_tokens::TaskTokenArgs,
}

/// A region name: lower-case letters, digits and dashes (`us-east-1`).
pub fn parse_region(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ok.then(|| s.to_string())
        .ok_or_else(|| format!("invalid region '{s}' (e.g. us-east-1)"))
}

/// An AWS account id: 12 digits.
pub fn parse_account(s: &str) -> Result<String, String> {
    (s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.to_string())
        .ok_or_else(|| format!("invalid account id '{s}' (12 digits)"))
}

/// Parses `30s`, `500ms`, `2m` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration '{s}' (e.g. 30s, 500ms, 2m)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("invalid duration '{s}'"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

/// Parses a byte size: `64MiB`, `512KiB`, `1GiB`, `100MB`, `2KB`, `100B` or plain bytes (more
/// than zero).
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        _ => {
            return Err(format!(
                "invalid size '{s}' (e.g. 64MiB, 512KiB, 1GiB, 100MB)"
            ))
        }
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid size '{s}' (e.g. 64MiB, 512KiB, 1GiB, 100MB)"))?;
    let bytes = (v * mult).round();
    if !(bytes >= 1.0 && bytes <= usize::MAX as f64) {
        return Err(format!("invalid size '{s}': must be at least one byte"));
    }
    Ok(bytes as usize)
}

impl ServeArgs {
    /// The executor configuration these flags describe.
    pub fn config(&self) -> ExecutorConfig {
        let mut c = ExecutorConfig::new(self.brokers.clone());
        c.group = self.group.clone();
        c.start_topic = self.start_topic.clone();
        c.logs_topic = self.logs_topic.clone();
        c.results_topic = self.results_topic.clone();
        c.dlq_topic = self.dlq_topic.clone();
        c.definitions_topic =
            (!self.definitions_topic.is_empty()).then(|| self.definitions_topic.clone());
        c.bindings = self.bind.clone();
        c.max_in_flight_per_partition = self.max_in_flight_per_partition;
        c.max_in_flight = self.max_in_flight;
        c.drain_timeout = self.drain_timeout;
        c.execution_memory_bytes = self.execution_memory_budget;
        c.ordering = self.ordering;
        c.kafka = self.kafka.clone();
        c.log_format = self.log_format;
        c.region = self.region.clone();
        c.account = self.account.clone();
        c.guarantee = self.guarantee;
        c.transactions = expressway_executor::TransactionConfig {
            transactional_id: Some(self.transactional_id.clone().unwrap_or_else(|| {
                // Port 0 (tests) is not stable; the pid keeps such pods apart.
                match self.metrics_listen.port() {
                    0 => expressway_executor::exactly_once::default_transactional_id(&self.group),
                    port => format!(
                        "{}-{}-{port}",
                        self.group,
                        expressway_executor::exactly_once::hostname()
                    ),
                }
            })),
            interval: self.transaction_interval,
            max_executions: self.transaction_max_executions,
        };
        c.max_execution = Duration::from_secs(self.max_execution_seconds);
        c.callbacks.topic = self.callbacks_topic.clone();
        c.callbacks.clock_skew = self.callback_clock_skew;
        c.callbacks.early_buffer = self.callback_early_buffer;
        c
    }

    /// [`ServeArgs::config`] with the task token key loaded.
    pub fn config_with_key(&self) -> anyhow::Result<ExecutorConfig> {
        let mut c = self.config();
        c.callbacks.key = self.task_tokens.load()?;
        Ok(c)
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default `info`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A running pod: the executor plus its HTTP endpoint.
pub struct Pod {
    executor: Executor,
    http_stop: tokio::sync::oneshot::Sender<()>,
    /// Where `/metrics` is served.
    pub metrics_addr: SocketAddr,
    /// The state machine registry the pod runs from (shared with an in-process gateway).
    pub registry: Arc<Registry>,
    /// The engine runtime (task resources) of the pod.
    pub engine: expressway_engine::Runtime,
}

/// The engine runtime of a pod or gateway: real clock, OS entropy, the task resources of
/// `tasks_config` (HTTP, functions, native handlers) and `kafka:publish` through rdkafka.
pub fn engine_runtime(
    config: &ExecutorConfig,
    tasks_config: Option<&std::path::Path>,
) -> anyhow::Result<expressway_engine::Runtime> {
    expressway_tasks::metrics::describe_metrics();
    let tasks = match tasks_config {
        Some(path) => expressway_tasks::TaskConfig::from_file(path)
            .with_context(|| format!("loading the task configuration {}", path.display()))?,
        None => expressway_tasks::TaskConfig::default(),
    };
    let clock: Arc<dyn expressway_engine::Clock> =
        Arc::new(expressway_engine::runtime::TokioClock::new());
    let publisher = expressway_executor::publisher::RdKafkaPublisher::new(config)
        .context("creating the kafka:publish producer")?;
    let mut task_registry = tasks
        .build_registry(clock.clone(), Some(Arc::new(publisher)))
        .context("building the task resources")?;
    use expressway_executor::record_reader::{self, KAFKA_GET_RECORDS};
    task_registry.register(
        KAFKA_GET_RECORDS,
        expressway_tasks::metrics::instrument_as(KAFKA_GET_RECORDS, record_reader::handler(config)),
    );
    Ok(expressway_executor::engine_runtime_with_tasks(
        clock,
        task_registry,
    ))
}

impl Pod {
    /// Loads definitions, starts the executor and the HTTP endpoint (on the current runtime).
    pub async fn start(
        config: ExecutorConfig,
        definitions: Option<&std::path::Path>,
        metrics_listen: SocketAddr,
        tasks_config: Option<&std::path::Path>,
    ) -> anyhow::Result<Pod> {
        let prometheus = telemetry::install_recorder();
        let runtime = engine_runtime(&config, tasks_config)?;
        let registry = Arc::new(Registry::new(&config.region, &config.account));
        if let Some(dir) = definitions {
            let names = registry
                .load_dir(dir)
                .with_context(|| format!("loading definitions from {}", dir.display()))?;
            tracing::info!(dir = %dir.display(), machines = ?names, "definitions loaded");
        }
        let executor = Executor::start(
            config,
            registry.clone(),
            runtime.clone(),
            tokio::runtime::Handle::current(),
        )
        .context("starting the executor")?;
        let (http_stop, rx) = tokio::sync::oneshot::channel::<()>();
        let metrics_addr = telemetry::serve_http(
            metrics_listen,
            prometheus,
            executor.health(),
            registry.clone(),
            async move {
                let _ = rx.await;
            },
        )
        .await
        .with_context(|| format!("listening on {metrics_listen}"))?;
        tracing::info!(addr = %metrics_addr, "serving /metrics /healthz /readyz");
        Ok(Pod {
            executor,
            http_stop,
            metrics_addr,
            registry,
            engine: runtime,
        })
    }

    /// Drains, flushes, commits, leaves the group, stops the endpoint.
    pub async fn shutdown(self) {
        self.executor.shutdown().await;
        let _ = self.http_stop.send(());
        tracing::info!("shutdown complete");
    }
}

/// `expressway serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(expressway_engine::WORKER_STACK_BYTES)
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let pod = Pod::start(
            args.config_with_key()?,
            args.definitions.as_deref(),
            args.metrics_listen,
            args.tasks_config.as_deref(),
        )
        .await?;
        shutdown_signal().await;
        tracing::info!("signal received: draining");
        pod.shutdown().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn flags_and_defaults() {
        let w = Wrapper::try_parse_from([
            "serve",
            "--brokers",
            "b:9092",
            "--bind",
            "orders=process-order",
            "--kafka",
            "security.protocol=SSL",
            "--drain-timeout",
            "10s",
        ])
        .expect("parses");
        let c = w.serve.config();
        assert_eq!(c.brokers, "b:9092");
        assert_eq!(c.group, "expressway");
        assert_eq!(c.start_topic, "expressway.start");
        assert_eq!(
            c.definitions_topic.as_deref(),
            Some("expressway.definitions")
        );
        assert_eq!(c.bindings, vec![("orders".into(), "process-order".into())]);
        assert_eq!(c.kafka, vec![("security.protocol".into(), "SSL".into())]);
        assert_eq!(c.drain_timeout, Duration::from_secs(10));
        assert_eq!(c.max_in_flight_per_partition, 64);
        assert_eq!(
            c.execution_memory_bytes,
            expressway_engine::DEFAULT_MAX_MEMORY_BYTES
        );
        assert_eq!(
            (c.region.as_str(), c.account.as_str()),
            ("us-east-1", "123456789012")
        );
        let eu = Wrapper::try_parse_from([
            "serve",
            "--brokers",
            "b",
            "--region",
            "eu-west-1",
            "--account",
            "999999999999",
        ])
        .expect("parses")
        .serve
        .config();
        assert_eq!(
            (eu.region.as_str(), eu.account.as_str()),
            ("eu-west-1", "999999999999")
        );
        assert!(Wrapper::try_parse_from(["serve", "--brokers", "b", "--account", "x"]).is_err());
        assert_eq!(c.ordering, expressway_executor::OrderingMode::Key);
        assert_eq!(w.serve.metrics_listen.port(), 9464);
        let w = Wrapper::try_parse_from(["serve", "--brokers", "b", "--ordering", "partition"])
            .expect("parses");
        assert_eq!(
            w.serve.config().ordering,
            expressway_executor::OrderingMode::Partition
        );
        assert!(
            Wrapper::try_parse_from(["serve", "--brokers", "b", "--ordering", "fifo"]).is_err()
        );
        assert!(Wrapper::try_parse_from(["serve", "--brokers", "b", "--bind", "nope"]).is_err());
        assert_eq!(c.guarantee, expressway_executor::Guarantee::AtLeastOnce);
        assert_eq!(c.max_execution, Duration::from_secs(300));
        assert_eq!(c.callbacks.topic, "expressway.callbacks");
        assert_eq!(c.callbacks.clock_skew, Duration::from_secs(60));
        let long = Wrapper::try_parse_from([
            "serve",
            "--brokers",
            "b",
            "--max-execution-seconds",
            "3600",
            "--callbacks-topic",
            "cb",
        ])
        .expect("parses")
        .serve
        .config();
        assert_eq!(long.max_execution, Duration::from_secs(3600));
        assert_eq!(long.callbacks.topic, "cb");
        assert!(Wrapper::try_parse_from([
            "serve",
            "--brokers",
            "b",
            "--max-execution-seconds",
            "0"
        ])
        .is_err());
        let eos = Wrapper::try_parse_from([
            "serve",
            "--brokers",
            "b",
            "--group",
            "g",
            "--guarantee",
            "exactly-once",
            "--transaction-interval",
            "250ms",
            "--transaction-max-executions",
            "7",
            "--metrics-listen",
            "127.0.0.1:9555",
        ])
        .expect("parses")
        .serve
        .config();
        assert_eq!(eos.guarantee, expressway_executor::Guarantee::ExactlyOnce);
        assert_eq!(eos.transactions.interval, Duration::from_millis(250));
        assert_eq!(eos.transactions.max_executions, 7);
        let id = eos.transactions.transactional_id.expect("default id");
        assert!(id.starts_with("g-") && id.ends_with("-9555"), "{id}");
        let fixed = Wrapper::try_parse_from([
            "serve",
            "--brokers",
            "b",
            "--guarantee",
            "exactly-once",
            "--transactional-id",
            "pod-0",
        ])
        .expect("parses")
        .serve
        .config();
        assert_eq!(
            fixed.transactions.transactional_id.as_deref(),
            Some("pod-0")
        );
        assert!(
            Wrapper::try_parse_from(["serve", "--brokers", "b", "--guarantee", "maybe"]).is_err()
        );
    }

    #[test]
    fn execution_memory_budget_flag() {
        let w = Wrapper::try_parse_from([
            "serve",
            "--brokers",
            "b",
            "--execution-memory-budget",
            "16MiB",
        ])
        .expect("parses");
        assert_eq!(w.serve.config().execution_memory_bytes, 16 * 1024 * 1024);
        assert!(Wrapper::try_parse_from([
            "serve",
            "--brokers",
            "b",
            "--execution-memory-budget",
            "lots"
        ])
        .is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 * 1024 * 1024));
        assert_eq!(parse_bytes("512 KiB"), Ok(512 * 1024));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("100MB"), Ok(100_000_000));
        assert_eq!(parse_bytes("1.5kb"), Ok(1500));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("-1MiB").is_err());
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
