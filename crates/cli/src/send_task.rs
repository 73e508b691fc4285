//! `expressway send-task-success`, `send-task-failure`, `send-task-heartbeat`: produce a
//! callback record to the callback topic, on the partition the token names (as the gateway's
//! SendTask* calls do). The CLI needs no key: it reads the token's partition without
//! verifying it; the pods verify (a forged token is dead-lettered there). With a key
//! configured (`--task-token-key-file` / `EXPRESSWAY_TASK_TOKEN_KEY`) it verifies first.

use crate::task_tokens::TaskTokenArgs;
use anyhow::{bail, Context as _};
use expressway_executor::config::parse_key_value;
use expressway_wire::callback::{
    check_token_length, parse_output_text, MAX_CAUSE_CHARS, MAX_ERROR_CHARS,
};
use expressway_wire::task_token::{callback_partition, peek_unverified};
use expressway_wire::{topics, CallbackOutcome, CallbackRecord};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::json;
use std::time::Duration;

/// Flags every `send-task-*` command shares.
#[derive(clap::Args, Debug, Clone)]
pub struct CallbackTarget {
    /// Kafka bootstrap servers.
    #[arg(long, env = "EXPRESSWAY_BROKERS")]
    pub brokers: String,
    /// The task token (`$$.Task.Token` of the waiting task).
    #[arg(long)]
    pub task_token: String,
    /// Callback topic.
    #[arg(long, env = "EXPRESSWAY_CALLBACKS_TOPIC", default_value = topics::CALLBACKS)]
    pub topic: String,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Extra librdkafka setting `KEY=VALUE` (repeatable).
    #[arg(long = "kafka", value_parser = parse_key_value)]
    pub kafka: Vec<(String, String)>,
    #[command(flatten)]
    pub key: TaskTokenArgs,
}

/// `expressway send-task-success`.
#[derive(clap::Args, Debug, Clone)]
pub struct SuccessArgs {
    #[command(flatten)]
    pub target: CallbackTarget,
    /// The task's output (JSON text, at most 262,144 bytes).
    #[arg(long)]
    pub task_output: String,
}

/// `expressway send-task-failure`.
#[derive(clap::Args, Debug, Clone)]
pub struct FailureArgs {
    #[command(flatten)]
    pub target: CallbackTarget,
    /// The error name Retry and Catch match (at most 256 characters).
    #[arg(long)]
    pub error: Option<String>,
    /// Human text (at most 32,768 characters).
    #[arg(long)]
    pub cause: Option<String>,
}

/// `expressway send-task-heartbeat`.
#[derive(clap::Args, Debug, Clone)]
pub struct HeartbeatArgs {
    #[command(flatten)]
    pub target: CallbackTarget,
}

/// `expressway send-task-success`.
pub fn success(args: SuccessArgs) -> anyhow::Result<()> {
    let output = parse_output_text(&args.task_output).context("--task-output")?;
    send(&args.target, CallbackOutcome::Success(output))
}

/// `expressway send-task-failure`.
pub fn failure(args: FailureArgs) -> anyhow::Result<()> {
    if args
        .error
        .as_ref()
        .is_some_and(|e| e.chars().count() > MAX_ERROR_CHARS)
    {
        bail!("--error has more than {MAX_ERROR_CHARS} characters");
    }
    if args
        .cause
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_CAUSE_CHARS)
    {
        bail!("--cause has more than {MAX_CAUSE_CHARS} characters");
    }
    send(
        &args.target,
        CallbackOutcome::Failure {
            error: args.error,
            cause: args.cause,
        },
    )
}

/// `expressway send-task-heartbeat`.
pub fn heartbeat(args: HeartbeatArgs) -> anyhow::Result<()> {
    send(&args.target, CallbackOutcome::Heartbeat)
}

fn send(t: &CallbackTarget, outcome: CallbackOutcome) -> anyhow::Result<()> {
    check_token_length(&t.task_token).map_err(anyhow::Error::msg)?;
    let fields = match t.key.load()? {
        Some(key) => key
            .verify(&t.task_token)
            .context("the task token does not verify with the configured key")?,
        None => peek_unverified(&t.task_token).context("not an Expressway task token")?,
    };
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &t.brokers);
    for (k, v) in &t.kafka {
        c.set(k, v);
    }
    let producer: BaseProducer<_> = c
        .set("enable.idempotence", "true")
        .create_with_context(crate::client::Reporter::default())
        .context("creating the producer")?;
    let md = producer
        .client()
        .fetch_metadata(Some(&t.topic), Duration::from_secs(10))
        .context("fetching metadata")?;
    let n = md
        .topics()
        .iter()
        .find(|x| x.name() == t.topic && x.error().is_none())
        .map_or(0, |x| x.partitions().len() as i32);
    if n == 0 {
        bail!("the callback topic {} does not exist", t.topic);
    }
    let partition = callback_partition(fields.partition, n);
    let kind = outcome.kind();
    let value = CallbackRecord {
        task_token: t.task_token.clone(),
        outcome,
    }
    .to_json();
    producer
        .send(
            BaseRecord::<[u8], [u8]>::to(&t.topic)
                .partition(partition)
                .payload(&value),
        )
        .map_err(|(e, _)| e)
        .context("queueing the callback")?;
    producer
        .flush(Duration::from_secs(30))
        .context("delivering the callback")?;
    producer.context().outcome()?;
    if t.json {
        println!(
            "{}",
            json!({"topic": t.topic, "partition": partition, "kind": kind, "executionArn": fields.execution_arn, "state": fields.state_name})
        );
    } else {
        println!(
            "sent {kind} for state '{}' of {} to {}/{partition}",
            fields.state_name, fields.execution_arn, t.topic
        );
    }
    Ok(())
}
