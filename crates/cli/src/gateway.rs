//! `expressway gateway`: the Step Functions API.

use crate::serve::{engine_runtime, init_tracing, shutdown_signal};
use anyhow::Context as _;
use expressway_engine::{DEFAULT_ACCOUNT, DEFAULT_REGION};
use expressway_executor::config::parse_key_value;
use expressway_executor::{telemetry, ExecutorConfig, Registry};
use expressway_gateway::{Credentials, ServerConfig, Topics};
use expressway_wire::topics;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Flags of `expressway gateway`; each also reads `EXPRESSWAY_<FLAG>`.
#[derive(clap::Args, Debug, Clone)]
pub struct GatewayArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "EXPRESSWAY_BROKERS")]
    pub brokers: String,
    /// Address of the Step Functions API.
    #[arg(long, env = "EXPRESSWAY_LISTEN", default_value = "0.0.0.0:8083")]
    pub listen: SocketAddr,
    /// Accept unsigned requests (no SigV4 verification); for development only.
    #[arg(long, env = "EXPRESSWAY_NO_AUTH")]
    pub no_auth: bool,
    /// Access key id accepted for SigV4 (with EXPRESSWAY_SECRET_ACCESS_KEY).
    #[arg(long, env = "EXPRESSWAY_ACCESS_KEY_ID", hide_env_values = true)]
    pub access_key_id: Option<String>,
    /// Secret access key of `--access-key-id` (prefer the environment variable).
    #[arg(long, env = "EXPRESSWAY_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: Option<String>,
    /// File of `ACCESS_KEY_ID:SECRET_ACCESS_KEY` lines (e.g. a mounted Kubernetes Secret).
    #[arg(long, env = "EXPRESSWAY_CREDENTIALS_FILE")]
    pub credentials_file: Option<PathBuf>,
    /// Largest request body in bytes.
    #[arg(long, env = "EXPRESSWAY_MAX_BODY_BYTES", default_value_t = expressway_gateway::server::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Open API connections at most; one more is answered 503 and closed.
    #[arg(long, env = "EXPRESSWAY_MAX_CONNECTIONS", default_value_t = expressway_executor::http_server::HttpLimits::GATEWAY.max_connections)]
    pub max_connections: usize,
    /// Seconds allowed for a complete request head (from the accept or the head's first byte).
    #[arg(long, env = "EXPRESSWAY_HEADER_TIMEOUT_SECONDS", default_value_t = expressway_executor::http_server::HttpLimits::GATEWAY.header_timeout.as_secs_f64())]
    pub header_timeout_seconds: f64,
    /// Seconds allowed for reading a request body (then 408 and close).
    #[arg(long, env = "EXPRESSWAY_BODY_TIMEOUT_SECONDS", default_value_t = expressway_executor::http_server::HttpLimits::GATEWAY.body_timeout.as_secs_f64())]
    pub body_timeout_seconds: f64,
    /// Seconds a keep-alive connection may wait for its next request.
    #[arg(long, env = "EXPRESSWAY_IDLE_TIMEOUT_SECONDS", default_value_t = expressway_executor::http_server::HttpLimits::GATEWAY.idle_timeout.as_secs_f64())]
    pub idle_timeout_seconds: f64,
    /// Start-event topic.
    #[arg(long, env = "EXPRESSWAY_START_TOPIC", default_value = topics::START)]
    pub start_topic: String,
    /// Log records topic (StartSyncExecution).
    #[arg(long, env = "EXPRESSWAY_LOGS_TOPIC", default_value = topics::LOGS)]
    pub logs_topic: String,
    /// Result records topic (StartSyncExecution).
    #[arg(long, env = "EXPRESSWAY_RESULTS_TOPIC", default_value = topics::RESULTS)]
    pub results_topic: String,
    /// Compacted definitions topic.
    #[arg(long, env = "EXPRESSWAY_DEFINITIONS_TOPIC", default_value = topics::DEFINITIONS)]
    pub definitions_topic: String,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(
        long,
        env = "EXPRESSWAY_METRICS_LISTEN",
        default_value = "0.0.0.0:9464"
    )]
    pub metrics_listen: SocketAddr,
    /// Task configuration (JSON; expressway-tasks) for StartSyncExecution and TestState.
    #[arg(long, env = "EXPRESSWAY_TASKS_CONFIG")]
    pub tasks_config: Option<PathBuf>,
    /// Extra librdkafka setting `KEY=VALUE` (repeatable; `;`-separated in the environment
    /// variable).
    #[arg(long = "kafka", env = "EXPRESSWAY_KAFKA", value_delimiter = ';', value_parser = parse_key_value)]
    pub kafka: Vec<(String, String)>,
    /// Follow the definitions topic with `isolation.level=read_committed` (records of aborted
    /// transactions are skipped). The gateway reads no other topic: StartSyncExecution runs
    /// in-process.
    #[arg(long, env = "EXPRESSWAY_READ_COMMITTED")]
    pub read_committed: bool,
    /// Directory of `NAME.asl.json` definitions: the same directory the executor pods get
    /// (`serve --definitions`), so its machines are listed, described and started here too.
    #[arg(long, env = "EXPRESSWAY_DEFINITIONS")]
    pub definitions: Option<PathBuf>,
    /// The region this endpoint answers for (ARNs, SigV4 credential scope).
    #[arg(long, env = "EXPRESSWAY_REGION", default_value = DEFAULT_REGION, value_parser = crate::serve::parse_region)]
    pub region: String,
    /// The account id in ARNs (12 digits).
    #[arg(long, env = "EXPRESSWAY_ACCOUNT", default_value = DEFAULT_ACCOUNT, value_parser = crate::serve::parse_account)]
    pub account: String,
    /// Serve the browser console at `/console/` on the API's port. It asks for HTTP basic
    /// credentials: an access key id (user) and its secret access key (password) of the
    /// gateway's credentials; not available with `--no-auth`.
    #[arg(long, env = "EXPRESSWAY_CONSOLE")]
    pub console: bool,
    /// Executions the console keeps per state machine (the most recent ones).
    #[arg(long, env = "EXPRESSWAY_CONSOLE_EXECUTIONS", default_value_t = 100)]
    pub console_executions: usize,
    /// Callback topic: SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat produce to it.
    #[arg(long, env = "EXPRESSWAY_CALLBACKS_TOPIC", default_value = topics::CALLBACKS)]
    pub callbacks_topic: String,
    #[command(flatten)]
    pub task_tokens: crate::task_tokens::TaskTokenArgs,
}

impl GatewayArgs {
    /// The connection limit and timeouts these flags describe.
    pub fn http_limits(&self) -> anyhow::Result<expressway_executor::http_server::HttpLimits> {
        let secs = |name: &str, v: f64| {
            std::time::Duration::try_from_secs_f64(v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    anyhow::anyhow!("--{name} must be a positive number of seconds, not {v}")
                })
        };
        anyhow::ensure!(
            self.max_connections > 0,
            "--max-connections must be at least 1"
        );
        Ok(expressway_executor::http_server::HttpLimits {
            max_connections: self.max_connections,
            header_timeout: secs("header-timeout-seconds", self.header_timeout_seconds)?,
            body_timeout: secs("body-timeout-seconds", self.body_timeout_seconds)?,
            idle_timeout: secs("idle-timeout-seconds", self.idle_timeout_seconds)?,
        })
    }

    /// The console's settings (`None` without `--console`); the console requires credentials.
    pub fn console(
        &self,
        auth: Option<&Credentials>,
    ) -> anyhow::Result<Option<expressway_gateway::ConsoleSettings>> {
        if !self.console {
            return Ok(None);
        }
        let Some(creds) = auth else {
            anyhow::bail!(
                "--console requires credentials (it asks for an access key id and secret): drop --no-auth, or use `expressway dev` for an open console"
            );
        };
        Ok(Some(expressway_gateway::ConsoleSettings {
            auth: expressway_gateway::console::ConsoleAuth::Basic(creds.clone()),
            limits: expressway_gateway::console::Limits {
                per_machine: self.console_executions.max(1),
                ..Default::default()
            },
        }))
    }

    /// The SigV4 credentials these flags describe (`None` with `--no-auth`).
    pub fn credentials(&self) -> anyhow::Result<Option<Credentials>> {
        if self.no_auth {
            return Ok(None);
        }
        let mut creds = match &self.credentials_file {
            Some(path) => Credentials::from_file(path)?,
            None => Credentials::default(),
        };
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(k), Some(s)) => creds.add(k, s),
            (None, None) => {}
            _ => anyhow::bail!(
                "EXPRESSWAY_ACCESS_KEY_ID and EXPRESSWAY_SECRET_ACCESS_KEY must be set together"
            ),
        }
        if creds.is_empty() {
            anyhow::bail!(
                "no credentials for SigV4: set EXPRESSWAY_ACCESS_KEY_ID and EXPRESSWAY_SECRET_ACCESS_KEY, pass --credentials-file, or --no-auth for development"
            );
        }
        Ok(Some(creds.with_region(&self.region)))
    }
}

/// `expressway gateway`.
impl GatewayArgs {
    /// `--kafka` settings plus `isolation.level` for `--read-committed` (a consumer setting:
    /// the producer ignores it).
    fn kafka_settings(&self) -> Vec<(String, String)> {
        let mut kafka = self.kafka.clone();
        if self.read_committed {
            kafka.push(("isolation.level".into(), "read_committed".into()));
        }
        kafka
    }
}

pub fn run(args: GatewayArgs) -> anyhow::Result<()> {
    init_tracing();
    let auth = args.credentials()?;
    let http = args.http_limits()?;
    let console = args.console(auth.as_ref())?;
    let task_token_key = args.task_tokens.load()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(expressway_engine::WORKER_STACK_BYTES)
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let prometheus = telemetry::install_recorder();
        let mut config = ExecutorConfig::new(args.brokers.clone());
        config.kafka = args.kafka_settings();
        let engine = engine_runtime(&config, args.tasks_config.as_deref())?;
        let registry = Arc::new(Registry::new(&args.region, &args.account));
        if let Some(dir) = &args.definitions {
            let names = registry
                .load_dir(dir)
                .with_context(|| format!("loading definitions from {}", dir.display()))?;
            tracing::info!(dir = %dir.display(), machines = ?names, "definitions loaded (read-only through the API)");
        }
        let gateway = expressway_gateway::start(
            expressway_gateway::Options {
                brokers: args.brokers.clone(),
                kafka: args.kafka_settings(),
                topics: Topics {
                    start: args.start_topic.clone(),
                    logs: args.logs_topic.clone(),
                    results: args.results_topic.clone(),
                    definitions: args.definitions_topic.clone(),
                    callbacks: args.callbacks_topic.clone(),
                },
                follow_definitions: true,
                listen: args.listen,
                server: ServerConfig {
                    auth,
                    max_body_bytes: args.max_body_bytes,
                    http,
                },
                console,
                task_token_key,
            },
            registry.clone(),
            engine,
        )
        .await?;
        let health = Arc::new(telemetry::Health::default());
        health.set_assigned();
        let (http_stop, rx) = tokio::sync::oneshot::channel::<()>();
        let metrics_addr = telemetry::serve_http(
            args.metrics_listen,
            prometheus,
            health,
            registry,
            async move {
                let _ = rx.await;
            },
        )
        .await
        .with_context(|| format!("listening on {}", args.metrics_listen))?;
        println!("expressway gateway: http://{}", gateway.addr);
        if args.console {
            println!("  console: http://{}/console/  (HTTP basic: access key id / secret access key)", gateway.addr);
        }
        tracing::info!(addr = %metrics_addr, "serving /metrics /healthz /readyz");
        shutdown_signal().await;
        tracing::info!("signal received: stopping");
        gateway.shutdown().await;
        let _ = http_stop.send(());
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        gateway: GatewayArgs,
    }

    #[test]
    fn flags_defaults_and_credentials() {
        let w = Wrapper::try_parse_from(["gateway", "--brokers", "b:9092", "--no-auth"])
            .expect("parses");
        assert_eq!(w.gateway.listen.port(), 8083);
        assert_eq!(w.gateway.definitions_topic, "expressway.definitions");
        assert_eq!(
            (w.gateway.region.as_str(), w.gateway.account.as_str()),
            ("us-east-1", "123456789012")
        );
        assert!(Wrapper::try_parse_from(["gateway", "--brokers", "b", "--account", "12"]).is_err());
        assert!(
            Wrapper::try_parse_from(["gateway", "--brokers", "b", "--region", "EU West"]).is_err()
        );
        assert!(w.gateway.credentials().expect("no auth").is_none());
        assert_eq!(
            w.gateway.http_limits().expect("defaults"),
            expressway_executor::http_server::HttpLimits::GATEWAY
        );
        let w = Wrapper::try_parse_from([
            "gateway",
            "--brokers",
            "b",
            "--no-auth",
            "--header-timeout-seconds",
            "0",
        ])
        .expect("parses");
        assert!(
            w.gateway.http_limits().is_err(),
            "a zero timeout is refused"
        );

        let w = Wrapper::try_parse_from([
            "gateway",
            "--brokers",
            "b",
            "--access-key-id",
            "AKID",
            "--secret-access-key",
            "s",
            "--listen",
            "127.0.0.1:9000",
        ])
        .expect("parses");
        let creds = w.gateway.credentials().expect("creds");
        assert!(creds.is_some());
        assert_eq!(w.gateway.listen.port(), 9000);
        assert!(
            w.gateway
                .console(creds.as_ref())
                .expect("no console")
                .is_none(),
            "the console is off by default"
        );

        let w = Wrapper::try_parse_from(["gateway", "--brokers", "b", "--no-auth", "--console"])
            .expect("parses");
        assert!(
            w.gateway.console(None).is_err(),
            "--console without credentials is refused"
        );
        let creds = Credentials::single("AKID", "s");
        let c = w
            .gateway
            .console(Some(&creds))
            .expect("console")
            .expect("on");
        assert!(matches!(
            c.auth,
            expressway_gateway::console::ConsoleAuth::Basic(_)
        ));

        // Without credentials (and without --no-auth) the gateway refuses to start, unless the
        // environment provides them.
        if std::env::var_os("EXPRESSWAY_ACCESS_KEY_ID").is_none()
            && std::env::var_os("EXPRESSWAY_CREDENTIALS_FILE").is_none()
        {
            let w = Wrapper::try_parse_from(["gateway", "--brokers", "b"]).expect("parses");
            assert!(w.gateway.credentials().is_err());
            let w = Wrapper::try_parse_from(["gateway", "--brokers", "b", "--access-key-id", "A"])
                .expect("parses");
            assert!(w.gateway.credentials().is_err());
        }
    }
}
