//! The Step Functions HTTP API (AWS's `awsJson1_0` protocol) over Kafka, so boto3, the AWS CLI
//! and Terraform work unchanged against Expressway.
//!
//! * [`server`]: `POST /` + `X-Amz-Target: AWSStepFunctions.<Operation>`, SigV4 ([`sigv4`]),
//!   the body limit, metrics and tracing.
//! * [`api::Gateway`]: the operations. State machines, versions, aliases and tags are records
//!   of the compacted definitions topic (see `expressway_executor::registry`); the gateway
//!   reads them from the same [`expressway_executor::Registry`] the executor pods follow, and
//!   writes through a [`backend::Backend`]. StartExecution publishes a start event and
//!   returns the ARN the executor derives from its position; StartSyncExecution runs the
//!   execution in-process (at-most-once, like AWS's synchronous Express) and publishes its log
//!   and result records.
//! * [`task_callbacks`]: SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat: verified task
//!   tokens' outcomes produced to the callback topic.
//! * `test_state`: TestState (one state in a generated machine).
//! * [`console`]: the browser console at `GET /console/` (graphs, executions followed live).
//! * [`start()`]: wiring for `expressway gateway` and `expressway dev`.

pub mod api;
pub mod backend;
pub mod console;
pub mod definitions_writer;
pub mod error;
pub mod server;
pub mod sigv4;
pub mod task_callbacks;
mod test_state;

pub use api::{Gateway, Support, OPERATIONS};
pub use backend::{Backend, KafkaBackend, MemoryBackend, Topics};
pub use error::ApiError;
pub use server::{router, ServerConfig};
pub use sigv4::Credentials;

use expressway_engine::Runtime;
use expressway_executor::{ExecutorConfig, Registry};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The producer or the follower could not be created.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The listener could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    /// The console's reader could not start.
    #[error(transparent)]
    Console(#[from] console::reader::ReaderError),
}

/// What `expressway gateway` needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Extra librdkafka settings.
    pub kafka: Vec<(String, String)>,
    /// Topics.
    pub topics: Topics,
    /// Follow the definitions topic into the registry (false when the registry is shared with
    /// an executor in the same process that already follows it).
    pub follow_definitions: bool,
    /// Where to listen.
    pub listen: SocketAddr,
    /// HTTP settings (auth, body limit).
    pub server: ServerConfig,
    /// The console at `/console/` (`None`: not served). Its reader reads `topics.results`
    /// and `topics.logs` with `brokers` and `kafka`.
    pub console: Option<ConsoleSettings>,
    /// The key that verifies task tokens (SendTask*); `None`: they are refused.
    pub task_token_key: Option<expressway_wire::TaskTokenKey>,
}

/// The console's settings in [`Options`].
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// Access.
    pub auth: console::ConsoleAuth,
    /// Bounds of the execution store.
    pub limits: console::Limits,
}

/// A running gateway.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    follower_stop: Arc<AtomicBool>,
    follower: Option<std::thread::JoinHandle<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    console: Option<Arc<console::Console>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("addr", &self.addr).finish()
    }
}

/// Starts the gateway on the current tokio runtime: the Kafka backend, the definitions
/// follower (unless shared) and the HTTP server.
pub async fn start(
    opts: Options,
    registry: Arc<Registry>,
    engine: Runtime,
) -> Result<Running, StartError> {
    let backend = KafkaBackend::new(&opts.brokers, &opts.kafka, opts.topics.clone())
        .map_err(|e| StartError::Kafka(e.to_string()))?;
    let follower_stop = Arc::new(AtomicBool::new(false));
    let follower = if opts.follow_definitions {
        let mut cfg = ExecutorConfig::new(opts.brokers.clone());
        cfg.kafka = opts.kafka.clone();
        Some(
            expressway_executor::spawn_follower(
                &cfg,
                opts.topics.definitions.clone(),
                registry.clone(),
                follower_stop.clone(),
            )
            .map_err(|e| StartError::Kafka(e.to_string()))?,
        )
    } else {
        None
    };
    if opts.task_token_key.is_none() {
        tracing::warn!("no task token key (--task-token-key-file or EXPRESSWAY_TASK_TOKEN_KEY): SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat answer InvalidToken");
    }
    let gateway = Arc::new(
        Gateway::new(registry, Arc::new(backend), engine)
            .with_task_tokens(opts.task_token_key.clone()),
    );
    let console = match &opts.console {
        Some(c) => Some(console::Console::start(
            gateway.clone(),
            console::ConsoleOptions {
                auth: c.auth.clone(),
                reader: Some(console::reader::ReaderConfig {
                    brokers: opts.brokers.clone(),
                    kafka: opts.kafka.clone(),
                    results_topic: opts.topics.results.clone(),
                    logs_topic: opts.topics.logs.clone(),
                    history_per_partition: (c.limits.per_machine * 10) as i64,
                }),
                limits: c.limits,
            },
        )?),
        None => None,
    };
    if let Some(c) = &console {
        let store = c.store().clone();
        gateway.set_execution_statuses(Arc::new(move |arn| store.get(arn).map(|e| e.status)));
    }
    let mut app = router(gateway, opts.server.clone());
    if let Some(c) = &console {
        app = console::router(c.clone()).merge(app);
    }
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| StartError::Listen(opts.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Listen(opts.listen, e))?;
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(expressway_executor::http_server::serve(
        listener,
        app,
        opts.server.http,
        "gateway",
        async move {
            let _ = rx.await;
        },
    ));
    tracing::info!(addr = %addr, auth = opts.server.auth.is_some(), "Step Functions API listening");
    Ok(Running {
        addr,
        stop: Some(stop),
        follower_stop,
        follower,
        server: Some(server),
        console,
    })
}

impl Running {
    /// Stops accepting requests, lets in-flight ones finish, stops the follower.
    pub async fn shutdown(mut self) {
        // The console's event streams would hold their connections open.
        if let Some(c) = self.console.take() {
            c.stop().await;
        }
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
        self.follower_stop.store(true, Ordering::Release);
        if let Some(f) = self.follower.take() {
            let _ = tokio::task::spawn_blocking(move || f.join()).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.follower_stop.store(true, Ordering::Release);
        if let Some(c) = &self.console {
            c.signal_stop();
        }
    }
}
