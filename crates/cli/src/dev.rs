//! `expressway dev`: librdkafka's in-process mock cluster plus an executor, for trying it out.

use crate::serve::{init_tracing, shutdown_signal, Pod};
use anyhow::Context as _;
use expressway_executor::ExecutorConfig;
use expressway_wire::topics;
use rdkafka::mocking::MockCluster;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Flags of `expressway dev`.
#[derive(clap::Args, Debug, Clone)]
pub struct DevArgs {
    /// Directory of `NAME.asl.json` definitions.
    #[arg(long, env = "EXPRESSWAY_DEFINITIONS", default_value = "examples")]
    pub definitions: PathBuf,
    /// Partitions of the start topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(
        long,
        env = "EXPRESSWAY_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: SocketAddr,
    /// Address of the Step Functions API (no SigV4 in dev). Use `localhost` in endpoint URLs:
    /// see the README on the `sync-` host prefix of StartSyncExecution.
    #[arg(
        long,
        env = "EXPRESSWAY_GATEWAY_LISTEN",
        default_value = "127.0.0.1:8083"
    )]
    pub gateway_listen: SocketAddr,
    /// Memory budget of each execution the pod runs (see `expressway serve --help`).
    #[arg(long, env = "EXPRESSWAY_EXECUTION_MEMORY_BUDGET", default_value = "64MiB", value_parser = crate::serve::parse_bytes)]
    pub execution_memory_budget: usize,
    /// Executions the console keeps per state machine (the most recent ones).
    #[arg(long, env = "EXPRESSWAY_CONSOLE_EXECUTIONS", default_value_t = 100)]
    pub console_executions: usize,
    /// Task configuration (JSON; expressway-tasks): connections, functions, egress allowlist,
    /// for the pod and the gateway.
    #[arg(long, env = "EXPRESSWAY_TASKS_CONFIG")]
    pub tasks_config: Option<PathBuf>,
    /// Longest execution, in seconds (see `expressway serve --help`).
    #[arg(long, env = "EXPRESSWAY_MAX_EXECUTION_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_execution_seconds: u64,
    /// Task tokens: without a configured key, dev makes a random one for this process.
    #[command(flatten)]
    pub task_tokens: crate::task_tokens::TaskTokenArgs,
}

/// `expressway dev`.
pub fn run(args: DevArgs) -> anyhow::Result<()> {
    init_tracing();
    let cluster = MockCluster::new(1).context("starting the mock cluster")?;
    cluster
        .create_topic(topics::START, args.partitions.max(1), 1)
        .context("creating the start topic")?;
    cluster
        .create_topic(topics::CALLBACKS, args.partitions.max(1), 1)
        .context("creating the callback topic")?;
    for t in [
        topics::LOGS,
        topics::RESULTS,
        topics::DLQ,
        topics::DEFINITIONS,
    ] {
        cluster
            .create_topic(t, 1, 1)
            .with_context(|| format!("creating {t}"))?;
    }
    let brokers = cluster.bootstrap_servers();
    let mut config = ExecutorConfig::new(brokers.clone());
    // The mock cluster has no group.initial.rebalance.delay; keep membership changes quick.
    config.kafka = vec![
        ("session.timeout.ms".into(), "6000".into()),
        ("heartbeat.interval.ms".into(), "500".into()),
    ];
    config.drain_timeout = std::time::Duration::from_secs(5);
    config.execution_memory_bytes = args.execution_memory_budget;
    config.max_execution = std::time::Duration::from_secs(args.max_execution_seconds);
    let (task_token_key, random_key) = match args.task_tokens.load()? {
        Some(k) => (k, false),
        None => (crate::task_tokens::random_key(), true),
    };
    config.callbacks.key = Some(task_token_key.clone());
    let drain_timeout = config.drain_timeout;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(expressway_engine::WORKER_STACK_BYTES)
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let pod = Pod::start(
            config,
            Some(&args.definitions),
            args.metrics_listen,
            args.tasks_config.as_deref(),
        )
        .await?;
        let gateway = expressway_gateway::start(
            expressway_gateway::Options {
                brokers: brokers.clone(),
                kafka: Vec::new(),
                topics: expressway_gateway::Topics::default(),
                // The pod in this process already follows the definitions topic into the
                // shared registry.
                follow_definitions: false,
                listen: args.gateway_listen,
                server: expressway_gateway::ServerConfig::default(),
                // Open: dev listens on loopback by default and has no credentials.
                console: Some(expressway_gateway::ConsoleSettings {
                    auth: expressway_gateway::console::ConsoleAuth::Open,
                    limits: expressway_gateway::console::Limits {
                        per_machine: args.console_executions.max(1),
                        ..Default::default()
                    },
                }),
                task_token_key: Some(task_token_key),
            },
            pod.registry.clone(),
            pod.engine.clone(),
        )
        .await?;
        let url = format!("http://localhost:{}", gateway.addr.port());
        let example = first_machine(&args.definitions).unwrap_or_else(|| "hello".into());
        let (exe, install_hint) = self_command();
        println!("expressway dev: embedded Kafka-protocol broker (librdkafka mock cluster)");
        println!("  bootstrap: {brokers}");
        println!("  metrics:   http://{}/metrics", pod.metrics_addr);
        println!("  gateway:   {url}  (Step Functions API, no SigV4 in dev)");
        println!("  console:   {url}/console/  (open it in a browser)");
        if random_key {
            println!("  task tokens: a random key for this process (set EXPRESSWAY_TASK_TOKEN_KEY to keep tokens valid across restarts)");
        }
        println!("Try, in another terminal:");
        println!(
            "  {exe} start --brokers {brokers} {example} --input '{{\"name\":\"Ada\",\"amount\":150}}'"
        );
        println!("  {exe} tail --brokers {brokers} --from-beginning");
        println!("  {exe} tail --brokers {brokers} --logs --from-beginning");
        println!("  {exe} send-task-success --brokers {brokers} --task-token TOKEN --task-output '{{\"ok\":true}}'   # a waiting .waitForTaskToken task");
        println!(
            "  AWS_DISABLE_HOST_PREFIX_INJECTION=true aws stepfunctions --endpoint-url {url} start-sync-execution --state-machine-arn arn:aws:states:us-east-1:123456789012:stateMachine:{example} --input '{{\"name\":\"Ada\",\"amount\":150}}'"
        );
        if let Some(hint) = install_hint {
            println!("{hint}");
        }
        println!("Ctrl-C stops.");
        shutdown_signal().await;
        tracing::info!(drain_timeout = ?drain_timeout, "signal received: draining");
        // The gateway and the pod drain at the same time, each within the drain timeout: a
        // StartSyncExecution still running then (a Wait of minutes) is cut off (its connection
        // closes when the runtime stops) instead of holding the exit for as long as it runs.
        let gateway_drain = async {
            if tokio::time::timeout(drain_timeout, gateway.shutdown())
                .await
                .is_err()
            {
                tracing::warn!(
                    drain_timeout = ?drain_timeout,
                    "gateway: requests still running after the drain timeout are cut off"
                );
            }
        };
        tokio::join!(gateway_drain, pod.shutdown());
        anyhow::Ok(())
    })?;
    drop(cluster);
    Ok(())
}

/// How to run this binary from another terminal: `expressway` when that is what the PATH
/// finds, else this binary's path (e.g. `target/debug/expressway` under `cargo run`), with a
/// hint on installing it.
fn self_command() -> (String, Option<String>) {
    match std::env::current_exe().and_then(|p| p.canonicalize()) {
        Ok(me) => command_for(&me, std::env::var_os("PATH").as_deref()),
        Err(_) => ("expressway".into(), None),
    }
}

fn command_for(me: &std::path::Path, path: Option<&std::ffi::OsStr>) -> (String, Option<String>) {
    let on_path = path.and_then(|path| {
        std::env::split_paths(path)
            .map(|d| d.join("expressway"))
            .find(|p| p.is_file())
    });
    if on_path.and_then(|p| p.canonicalize().ok()).as_deref() == Some(me) {
        return ("expressway".into(), None);
    }
    let shown = me.display().to_string();
    let quoted = if shown
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
    {
        shown
    } else {
        format!("'{}'", shown.replace('\'', "'\\''"))
    };
    (
        quoted,
        Some(
            "(`expressway` on your PATH is not this binary: the commands above use its path; `cargo install --path crates/cli` installs it)"
                .into(),
        ),
    )
}

fn first_machine(dir: &std::path::Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|f| f.strip_suffix(".asl.json"))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::command_for;

    #[test]
    fn hints_name_a_command_that_runs_this_binary() {
        let dir = std::env::temp_dir().join(format!("expressway-dev-hint-{}", std::process::id()));
        let (bin, other) = (dir.join("bin"), dir.join("other dir"));
        for d in [&bin, &other] {
            std::fs::create_dir_all(d).expect("dir");
            std::fs::write(d.join("expressway"), b"").expect("file");
        }
        let me = bin.join("expressway").canonicalize().expect("canonical");
        let path = |dirs: &[&std::path::Path]| std::env::join_paths(dirs).expect("PATH");
        // On the PATH (first match): the short name.
        let p = path(&[&bin, &other]);
        assert_eq!(command_for(&me, Some(&p)), ("expressway".to_string(), None));
        // Another `expressway` first, or none at all (cargo run): this binary's path and a hint.
        for p in [Some(path(&[&other, &bin])), Some(path(&[])), None] {
            let (cmd, hint) = command_for(&me, p.as_deref());
            assert_eq!(cmd, me.display().to_string());
            assert!(hint.is_some_and(|h| h.contains("cargo install --path crates/cli")));
        }
        // A path with a space is quoted for the shell.
        let spaced = other.join("expressway").canonicalize().expect("canonical");
        let (cmd, _) = command_for(&spaced, None);
        assert_eq!(cmd, format!("'{}'", spaced.display()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
