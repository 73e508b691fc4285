//! `loadtest chaos`: a fault-injection harness. It starts (or is given) Apache Kafka, creates a
//! fresh set of topics, starts N `expressway serve` pods in one group, produces M start events at a
//! steady rate with keys spread over many values, applies a fault schedule (pod SIGKILL, zombie
//! SIGSTOP/SIGCONT, rolling SIGTERM restart, Kafka node SIGKILL, whole-cluster stop; a flaky HTTP
//! task endpoint), then reads the results, logs and dead-letter topics to the end and prints ONE
//! JSON verdict. Exit status 1 when an accepted start event has no result (lost), 2 when the run
//! could not be completed.
//!
//! Not part of `cargo test`; bounded by `--count`, `--timeout` and `--max-seconds`; loopback only.

mod cluster;
mod faults;
mod http;
mod pods;
mod verdict;

use crate::load::round3;
use anyhow::{bail, Context as _};
use clap::Parser;
use cluster::Kafka;
use faults::{FaultSpec, Kind, Planned};
use pods::Pods;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, DeliveryResult, Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use verdict::Copy;

#[derive(Parser, Debug)]
#[command(
    name = "loadtest chaos",
    about = "Run Expressway pods under a fault schedule and print one JSON verdict (lost must be 0)"
)]
pub(crate) struct Args {
    /// Kafka bootstrap servers; without it the harness starts a setup with deploy/kafka/kafka.sh.
    #[arg(long)]
    brokers: Option<String>,
    /// With --brokers: the kafka.sh setup name those brokers belong to (needed by kill-broker and
    /// stop-cluster).
    #[arg(long)]
    kafka_setup: Option<String>,
    /// Start the 3-node cluster (start-cluster) instead of one node (start-single).
    #[arg(long)]
    cluster: bool,
    /// Leave the Kafka setup the harness started running.
    #[arg(long)]
    keep_kafka: bool,
    /// deploy/kafka/kafka.sh.
    #[arg(long, default_value = "deploy/kafka/kafka.sh")]
    kafka_script: PathBuf,
    /// The expressway binary (a release build for figures).
    #[arg(long, default_value = "target/release/expressway")]
    expressway: PathBuf,
    /// Pods in the group.
    #[arg(long, default_value_t = 3)]
    pods: usize,
    /// Partitions of the start topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Start events.
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// Start events per second (steady).
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Distinct record keys (keys are drawn from k0..kN with the seed).
    #[arg(long, default_value_t = 10_000)]
    keys: u32,
    /// The machine: `pass` (Pass, Pass, Succeed) or `http` (an http:invoke Task against the
    /// harness's endpoint, with Retry).
    #[arg(long, default_value = "pass")]
    machine: String,
    /// Log level of the machine (its NAME.config.json).
    #[arg(long, default_value = "ALL")]
    log_level: String,
    /// A fault, `KIND[:at=20s,every=25s,count=N,down=3s]` (repeatable): kill-pod, zombie-pod,
    /// rolling-restart, kill-broker, stop-cluster.
    #[arg(long = "fault")]
    faults: Vec<FaultSpec>,
    /// Seed of the pod choices, the keys and the HTTP endpoint's misbehaviour.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// An argument passed to every `expressway serve` (repeatable), e.g.
    /// `--serve-arg=--kafka --serve-arg=auto.commit.interval.ms=1000` or
    /// `--serve-arg=--guarantee --serve-arg=exactly-once`.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    serve_args: Vec<String>,
    /// librdkafka settings of the harness's own clients, `KEY=VALUE` (repeatable), e.g.
    /// `isolation.level=read_committed` for the readers.
    #[arg(long = "kafka")]
    kafka: Vec<String>,
    /// Fraction of HTTP task calls answered 500 (machine `http`).
    #[arg(long, default_value_t = 0.0)]
    http_fail: f64,
    /// Fraction of HTTP task calls that stall before answering (machine `http`).
    #[arg(long, default_value_t = 0.0)]
    http_stall: f64,
    /// How long a stalled call stalls.
    #[arg(long, default_value = "2s", value_parser = faults::parse_duration)]
    http_stall_for: Duration,
    /// Backlog (accepted start events without a result yet) under which a fault counts as
    /// recovered; 0: the rate x 1 s, at least 100.
    #[arg(long, default_value_t = 0)]
    lag_threshold: i64,
    /// Group lag (high watermark minus committed offset) under which a fault counts as recovered
    /// for committed offsets; 0: the rate x (commit interval + 1 s), at least 100.
    #[arg(long, default_value_t = 0)]
    committed_lag_threshold: i64,
    /// How long to wait for the last results after production and the faults ended (seconds).
    #[arg(long, default_value_t = 180.0)]
    timeout: f64,
    /// Hard bound of the whole run (seconds).
    #[arg(long, default_value_t = 1200.0)]
    max_seconds: f64,
    /// Sampling interval of lag and pod metrics.
    #[arg(long, default_value = "500ms", value_parser = faults::parse_duration)]
    sample_every: Duration,
    /// Working directory (definitions, pod logs); default a new directory under /tmp.
    #[arg(long)]
    work: Option<PathBuf>,
    /// Keep the working directory (pod logs) after a passing run.
    #[arg(long)]
    keep_work: bool,
}

/// Entry point; returns the process exit code.
pub(crate) fn main(argv: Vec<std::ffi::OsString>) -> anyhow::Result<i32> {
    let args = Args::parse_from(argv);
    run(args)
}

fn secs_since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64()
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn client(brokers: &str, extra: &[String]) -> anyhow::Result<ClientConfig> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for kv in extra {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--kafka expects KEY=VALUE, got '{kv}'")
        };
        c.set(k, v);
    }
    Ok(c)
}

/// Settings that only make sense for consumers (the producer and admin clients warn on them).
fn producer_settings(extra: &[String]) -> Vec<String> {
    extra
        .iter()
        .filter(|kv| !kv.starts_with("isolation.level="))
        .cloned()
        .collect()
}

/// Per start event: 0 queued, 1 acknowledged, 2 failed.
struct Acks {
    state: Vec<AtomicU8>,
    acked: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, i: usize) {
        match result {
            Ok(_) => {
                self.state[i].store(1, Ordering::Relaxed);
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.state[i].store(2, Ordering::Relaxed);
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
                *errors.entry(e.to_string()).or_default() += 1;
            }
        }
    }
}

fn create_topics(
    brokers: &str,
    extra: &[String],
    topics: &[(&str, i32, bool)],
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client(brokers, &producer_settings(extra))?
        .create()
        .context("creating the admin client")?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions, compact)| {
            // -1: the broker's default.replication.factor (3 on the cluster).
            let t = NewTopic::new(name, *partitions, TopicReplication::Fixed(-1));
            if *compact {
                t.set("cleanup.policy", "compact")
            } else {
                t
            }
        })
        .collect();
    let results =
        crate::load::futures_lite_block_on(admin.create_topics(new.iter(), &AdminOptions::new()))
            .context("creating topics")?;
    for r in results {
        if let Err((t, e)) = r {
            bail!("creating topic {t}: {e}");
        }
    }
    Ok(())
}

/// The definitions directory: machine `chaos`.
fn write_definitions(
    dir: &std::path::Path,
    machine: &str,
    log_level: &str,
    url: Option<&str>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let def = match (machine, url) {
        ("pass", _) => json!({
            "Comment": "chaos harness: two Pass states",
            "StartAt": "Shape",
            "States": {
                "Shape": {"Type": "Pass", "Parameters": {"i.$": "$.i", "tag": "chaos"}, "Next": "Stamp"},
                "Stamp": {"Type": "Pass", "ResultPath": "$.stamp", "Result": {"ok": true}, "Next": "Done"},
                "Done": {"Type": "Succeed"}
            }
        }),
        ("http", Some(url)) => json!({
            "Comment": "chaos harness: an HTTP task with Retry against the harness endpoint",
            "StartAt": "Call",
            "States": {
                "Call": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::http:invoke",
                    "Parameters": {"ApiEndpoint": url, "Method": "POST", "RequestBody": {"i.$": "$.i"}},
                    "TimeoutSeconds": 10,
                    "Retry": [{
                        "ErrorEquals": ["States.ALL"],
                        "IntervalSeconds": 1, "MaxAttempts": 10, "BackoffRate": 1.0
                    }],
                    "ResultSelector": {"status.$": "$.StatusCode"},
                    "Next": "Done"
                },
                "Done": {"Type": "Succeed"}
            }
        }),
        _ => bail!("--machine must be pass or http"),
    };
    std::fs::write(dir.join("chaos.asl.json"), serde_json::to_vec_pretty(&def)?)?;
    std::fs::write(
        dir.join("chaos.config.json"),
        json!({"loggingConfiguration": {"level": log_level, "includeExecutionData": false}})
            .to_string(),
    )?;
    Ok(())
}

/// What happened to one fault.
#[derive(Debug, Clone)]
struct FaultRecord {
    kind: Kind,
    target: String,
    /// Seconds since the first start event.
    start: f64,
    /// When the fault was over (pod restarted, node started, SIGCONT).
    healed: f64,
    notes: Vec<String>,
    /// Log file and offset of a zombie pod at SIGCONT (what it logged after waking up).
    wake_log: Option<(PathBuf, u64)>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    t: f64,
    backlog: i64,
    committed_lag: Option<i64>,
}

/// Everything the readers collect.
#[derive(Default)]
struct Collected {
    results: HashMap<String, Vec<Copy>>,
    foreign_results: u64,
    log_records: u64,
    log_copies: HashMap<String, u32>,
    dlq_reasons: BTreeMap<String, u64>,
    dlq_names: HashMap<String, u64>,
}

/// A consumer assigned to every partition of `topic` from the beginning.
fn reader(brokers: &str, extra: &[String], topic: &str) -> anyhow::Result<BaseConsumer> {
    let c: BaseConsumer = client(brokers, extra)?
        .set(
            "group.id",
            format!("expressway-chaos-reader-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .context("creating a reader")?;
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("fetching metadata")?;
    let mut tpl = TopicPartitionList::new();
    for p in md.topics().iter().flat_map(|t| t.partitions()) {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
    }
    if tpl.count() == 0 {
        bail!("topic {topic} has no partitions");
    }
    c.assign(&tpl)?;
    Ok(c)
}

/// Reads `topic` until `stop` is set and then to its end (every partition's position at the high
/// watermark read after `stop`, or 20 s without progress).
fn read_topic(
    brokers: String,
    extra: Vec<String>,
    topic: String,
    stop: Arc<AtomicBool>,
    mut on: impl FnMut(&BorrowedMessage<'_>),
) -> anyhow::Result<()> {
    let c = reader(&brokers, &extra, &topic)?;
    let mut end: Option<HashMap<i32, i64>> = None;
    let mut last_progress = Instant::now();
    let mut checked = Instant::now();
    loop {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            on(&m);
            last_progress = Instant::now();
        }
        if !stop.load(Ordering::Relaxed) {
            continue;
        }
        if end.is_none() {
            let mut e = HashMap::new();
            let md = c.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
            for p in md.topics().iter().flat_map(|t| t.partitions()) {
                let (_, high) = c.fetch_watermarks(&topic, p.id(), Duration::from_secs(10))?;
                e.insert(p.id(), high);
            }
            end = Some(e);
        }
        if checked.elapsed() > Duration::from_millis(500) {
            checked = Instant::now();
            let pos = c.position()?;
            let done = end.as_ref().is_some_and(|e| {
                e.iter().all(|(p, high)| {
                    *high == 0
                        || pos
                            .find_partition(&topic, *p)
                            .and_then(|tp| tp.offset().to_raw())
                            .is_some_and(|o| o >= *high)
                })
            });
            if done {
                return Ok(());
            }
        }
        if last_progress.elapsed() > Duration::from_secs(20) {
            eprintln!("chaos: reader of {topic} stopped 20 s without progress before its end");
            return Ok(());
        }
    }
}

/// The group's lag: sum over partitions of high watermark minus committed offset.
fn committed_lag(c: &BaseConsumer, topic: &str, partitions: i32) -> Option<i64> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = c.committed_offsets(tpl, Duration::from_secs(2)).ok()?;
    let mut lag = 0;
    for p in 0..partitions {
        let (_, high) = c.fetch_watermarks(topic, p, Duration::from_secs(2)).ok()?;
        let off = committed
            .find_partition(topic, p)
            .and_then(|tp| tp.offset().to_raw())
            .filter(|o| *o >= 0)
            .unwrap_or(0);
        lag += (high - off).max(0);
    }
    Some(lag)
}

/// The Kafka node (node id = kafka.sh node number) leading the most partitions of `topic`.
fn busiest_leader(brokers: &str, extra: &[String], topic: &str) -> anyhow::Result<(i32, Vec<i32>)> {
    let c: BaseConsumer = client(brokers, &producer_settings(extra))?.create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut by: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in md.topics().iter().flat_map(|t| t.partitions()) {
        by.entry(p.leader()).or_default().push(p.id());
    }
    by.into_iter()
        .max_by_key(|(id, ps)| (ps.len(), -id))
        .context("no partition leaders")
}

struct Shared {
    pods: Mutex<Pods>,
    kafka: Option<Kafka>,
    brokers: String,
    extra: Vec<String>,
    start_topic: String,
}

fn lock(p: &Mutex<Pods>) -> std::sync::MutexGuard<'_, Pods> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits for pod `index`'s `/readyz` (or `/healthz` when `assigned` is false: a restarted pod may
/// join without partitions yet) without holding the pods' lock.
fn wait_ready(sh: &Shared, index: usize, timeout: Duration, assigned: bool) -> bool {
    let port = lock(&sh.pods).pods[index].port;
    let path = if assigned { "/readyz" } else { "/healthz" };
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if !lock(&sh.pods).is_running(index) {
            return false;
        }
        if pods::http_get(port, path).is_some_and(|(s, _)| s == 200) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Applies one fault; blocks until it is healed.
fn apply(sh: &Shared, f: &Planned, rng: &mut SmallRng, t0: Instant) -> anyhow::Result<FaultRecord> {
    let start = secs_since(t0);
    let mut rec = FaultRecord {
        kind: f.kind,
        target: String::new(),
        start,
        healed: start,
        notes: Vec::new(),
        wake_log: None,
    };
    let n = lock(&sh.pods).pods.len();
    match f.kind {
        Kind::KillPod => {
            let i = rng.gen_range(0..n);
            rec.target = format!("pod-{i}");
            lock(&sh.pods).kill(i);
            eprintln!("chaos: [{start:>6.1}s] SIGKILL pod-{i}");
            std::thread::sleep(f.down);
            lock(&sh.pods).spawn(i)?;
            rec.healed = secs_since(t0);
            let ready = wait_ready(sh, i, Duration::from_secs(60), false);
            rec.notes.push(format!(
                "restarted after {:.1} s, healthy after {:.1} s{}",
                rec.healed - start,
                secs_since(t0) - start,
                if ready { "" } else { " (NOT healthy in 60 s)" }
            ));
        }
        Kind::ZombiePod => {
            let i = rng.gen_range(0..n);
            rec.target = format!("pod-{i}");
            lock(&sh.pods).stop_signal(i, true)?;
            eprintln!("chaos: [{start:>6.1}s] SIGSTOP pod-{i} for {:?}", f.down);
            std::thread::sleep(f.down);
            let mut pods = lock(&sh.pods);
            let log = pods.pods[i].log.clone();
            let offset = std::fs::metadata(&log).map_or(0, |m| m.len());
            pods.stop_signal(i, false)?;
            rec.healed = secs_since(t0);
            rec.wake_log = Some((log, offset));
            eprintln!("chaos: [{:>6.1}s] SIGCONT pod-{i}", rec.healed);
        }
        Kind::RollingRestart => {
            rec.target = "every pod".into();
            for i in 0..n {
                let taken = lock(&sh.pods).take(i);
                let (status, took) = match taken {
                    Some((c, stopped)) => pods::terminate(c, stopped, Duration::from_secs(60)),
                    None => ("not running".into(), 0.0),
                };
                lock(&sh.pods).spawn(i)?;
                let ready = wait_ready(sh, i, Duration::from_secs(60), true);
                eprintln!(
                    "chaos: [{:>6.1}s] SIGTERM pod-{i}: {status} after {took:.1} s, restarted{}",
                    secs_since(t0),
                    if ready {
                        ", ready"
                    } else {
                        ", NOT ready in 60 s"
                    }
                );
                rec.notes.push(format!(
                    "pod-{i}: {status} {took:.1} s after SIGTERM; {}",
                    if ready {
                        "new incarnation ready"
                    } else {
                        "new incarnation NOT ready within 60 s"
                    }
                ));
            }
            rec.healed = secs_since(t0);
        }
        Kind::KillBroker => {
            let k = sh
                .kafka
                .as_ref()
                .context("kill-broker needs a kafka.sh setup")?;
            let (node, led) = busiest_leader(&sh.brokers, &sh.extra, &sh.start_topic)?;
            rec.target = format!(
                "kafka node {node} (leader of {} partitions {led:?})",
                sh.start_topic
            );
            eprintln!("chaos: [{start:>6.1}s] SIGKILL {}", rec.target);
            k.node_stop(node as u32, true)?;
            std::thread::sleep(f.down);
            k.node_start(node as u32)?;
            rec.healed = secs_since(t0);
            rec.notes.push(format!(
                "node {node} started again after {:.1} s",
                rec.healed - start
            ));
        }
        Kind::StopCluster => {
            let k = sh
                .kafka
                .as_ref()
                .context("stop-cluster needs a kafka.sh setup")?;
            rec.target = format!("all {} kafka nodes", k.nodes);
            eprintln!("chaos: [{start:>6.1}s] SIGTERM {}", rec.target);
            k.all_nodes(|k, n| k.node_stop(n, false))?;
            let stopped = secs_since(t0);
            std::thread::sleep(f.down);
            k.all_nodes(|k, n| k.node_start(n))?;
            rec.healed = secs_since(t0);
            rec.notes.push(format!(
                "stopping took {:.1} s; every node down {:.1} s; all started again {:.1} s after the fault",
                stopped - start,
                f.down.as_secs_f64(),
                rec.healed - start
            ));
        }
    }
    Ok(rec)
}

/// What a pod logged after `offset` that a reader of its log would look at (WARN/ERROR lines and
/// partition assignments/revocations), without timestamps, deduplicated, at most 16.
fn log_messages_after(path: &std::path::Path, offset: u64) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let tail = bytes.get(offset as usize..).unwrap_or_default();
    let mut seen: Vec<(String, u64)> = Vec::new();
    for line in String::from_utf8_lossy(tail).lines() {
        let interesting = [" WARN ", " ERROR ", "revoked", "assigned", "lost"]
            .iter()
            .any(|w| line.contains(w))
            && !line.contains("expressway_tasks");
        if !interesting {
            continue;
        }
        // Drop the timestamp (first word) and long offset lists.
        let text: String = line
            .split_once(' ')
            .map_or(line, |(_, rest)| rest)
            .trim()
            .chars()
            .take(200)
            .collect();
        match seen.iter_mut().find(|(t, _)| *t == text) {
            Some((_, n)) => *n += 1,
            None => seen.push((text, 1)),
        }
    }
    seen.into_iter()
        .take(16)
        .map(|(m, n)| if n > 1 { format!("{m} (x{n})") } else { m })
        .collect()
}

/// The pods' commit interval: from `--serve-arg` `auto.commit.interval.ms=`, else the pod default
/// (1000 ms since the cadence runs; 5000 ms before).
fn auto_commit_interval_ms(serve_args: &[String]) -> f64 {
    serve_args
        .iter()
        .flat_map(|a| a.split(';'))
        .find_map(|a| a.strip_prefix("auto.commit.interval.ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000.0)
}

fn run(args: Args) -> anyhow::Result<i32> {
    let wall = Instant::now();
    let run_id = format!("chaos{}-{}", std::process::id(), epoch_ms() % 1_000_000);
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("expressway-{run_id}")));
    std::fs::create_dir_all(&work)?;
    if !args.expressway.exists() {
        bail!(
            "{} not found (cargo build --release -p expressway-cli)",
            args.expressway.display()
        );
    }
    if args.faults.iter().any(|f| f.kind.needs_setup())
        && args.brokers.is_some()
        && args.kafka_setup.is_none()
    {
        bail!("kill-broker / stop-cluster with --brokers need --kafka-setup NAME");
    }

    // Kafka.
    let (kafka, brokers) = match (&args.brokers, &args.kafka_setup) {
        (Some(b), Some(name)) => (
            Some(Kafka::existing(
                args.kafka_script.clone(),
                name,
                b.split(',').count() as u32,
            )),
            b.clone(),
        ),
        (Some(b), None) => (None, b.clone()),
        (None, _) => {
            let name = format!("chaos-{}", if args.cluster { "cluster" } else { "single" });
            let (k, b) = Kafka::start(args.kafka_script.clone(), args.cluster, &name)?;
            (Some(k), b)
        }
    };
    let kafka = kafka.map(|mut k| {
        if args.keep_kafka {
            k.disown();
        }
        k
    });

    // Topics (fresh per run) and the group.
    let t = |s: &str| format!("{run_id}.{s}");
    let (start_topic, logs_topic, results_topic, dlq_topic, defs_topic) = (
        t("start"),
        t("logs"),
        t("results"),
        t("dlq"),
        t("definitions"),
    );
    create_topics(
        &brokers,
        &args.kafka,
        &[
            (&start_topic, args.partitions, false),
            (&logs_topic, 4, false),
            (&results_topic, 4, false),
            (&dlq_topic, 1, false),
            (&defs_topic, 1, true),
        ],
    )?;
    let group = run_id.clone();

    // The task endpoint and the definitions.
    let http = if args.machine == "http" {
        Some(http::Server::start(http::Behaviour {
            fail: args.http_fail,
            stall: args.http_stall,
            stall_for: args.http_stall_for,
            seed: args.seed,
        })?)
    } else {
        None
    };
    let defs = work.join("definitions");
    write_definitions(
        &defs,
        &args.machine,
        &args.log_level,
        http.as_ref().map(|h| h.url.as_str()),
    )?;

    // Pods.
    let mut serve: Vec<String> = ["--brokers", &brokers, "--definitions"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    serve.push(defs.display().to_string());
    for (flag, v) in [
        ("--group", &group),
        ("--start-topic", &start_topic),
        ("--logs-topic", &logs_topic),
        ("--results-topic", &results_topic),
        ("--dlq-topic", &dlq_topic),
        ("--definitions-topic", &defs_topic),
    ] {
        serve.push(flag.into());
        serve.push(v.clone());
    }
    serve.extend(args.serve_args.iter().cloned());
    let mut pods = Pods::new(args.expressway.clone(), serve, &work);
    for i in 0..args.pods {
        pods.spawn(i)?;
    }
    for i in 0..args.pods {
        if !pods.wait_ready(i, Duration::from_secs(90), true) {
            bail!(
                "pod-{i} did not become ready in 90 s (log: {})",
                pods.pods[i].log.display()
            );
        }
    }
    eprintln!(
        "chaos: {} pods ready on {start_topic} ({} partitions), group {group}",
        args.pods, args.partitions
    );

    let shared = Arc::new(Shared {
        pods: Mutex::new(pods),
        kafka,
        brokers: brokers.clone(),
        extra: args.kafka.clone(),
        start_topic: start_topic.clone(),
    });

    // Readers.
    let stop_readers = Arc::new(AtomicBool::new(false));
    let collected = Arc::new(Mutex::new(Collected::default()));
    let distinct_results = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let t0_ms = epoch_ms();
    let prefix = format!("{run_id}-");
    let mut readers = Vec::new();
    {
        let (c, d, prefix) = (collected.clone(), distinct_results.clone(), prefix.clone());
        readers.push(std::thread::spawn({
            let (b, e, t, s) = (
                brokers.clone(),
                args.kafka.clone(),
                results_topic.clone(),
                stop_readers.clone(),
            );
            move || {
                read_topic(b, e, t, s, |m| {
                    let Some(name) = m.key().map(|k| String::from_utf8_lossy(k).into_owned())
                    else {
                        return;
                    };
                    let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                    if !name.starts_with(&prefix) {
                        c.foreign_results += 1;
                        return;
                    }
                    let v: Value = serde_json::from_slice(m.payload().unwrap_or_default())
                        .unwrap_or(Value::Null);
                    let field =
                        |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
                    let ts = m.timestamp().to_millis().unwrap_or_else(epoch_ms);
                    let copies = c.results.entry(name).or_default();
                    if copies.is_empty() {
                        d.fetch_add(1, Ordering::Relaxed);
                    }
                    copies.push(Copy {
                        arn: field("executionArn"),
                        status: field("status"),
                        t: (ts - t0_ms) as f64 / 1000.0,
                    });
                })
            }
        }));
    }
    {
        let c = collected.clone();
        let (b, e, t, s) = (
            brokers.clone(),
            args.kafka.clone(),
            logs_topic.clone(),
            stop_readers.clone(),
        );
        readers.push(std::thread::spawn(move || {
            read_topic(b, e, t, s, |m| {
                let arn = m
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                c.log_records += 1;
                *c.log_copies.entry(arn).or_default() += 1;
            })
        }));
    }
    {
        let c = collected.clone();
        let (b, e, t, s) = (
            brokers.clone(),
            args.kafka.clone(),
            dlq_topic.clone(),
            stop_readers.clone(),
        );
        readers.push(std::thread::spawn(move || {
            read_topic(b, e, t, s, |m| {
                let reason = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "expressway-error"))
                    .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
                    .unwrap_or_else(|| "?".into());
                let name = serde_json::from_slice::<Value>(m.payload().unwrap_or_default())
                    .ok()
                    .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_string));
                let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                *c.dlq_reasons.entry(reason).or_default() += 1;
                if let Some(n) = name {
                    *c.dlq_names.entry(n).or_default() += 1;
                }
            })
        }));
    }

    // Producer.
    let acks = Acks {
        state: (0..args.count).map(|_| AtomicU8::new(0)).collect(),
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        errors: Mutex::new(BTreeMap::new()),
    };
    let producer: BaseProducer<Acks> = client(&brokers, &producer_settings(&args.kafka))?
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .set("queue.buffering.max.messages", "2000000")
        .set("message.timeout.ms", "600000")
        .create_with_context(acks)
        .context("creating the producer")?;
    let producer = Arc::new(producer);

    // Sampler: backlog (accepted without result), group lag, pod commit counters.
    let stop_sampler = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let sampler = {
        let (sh, stop, samples, p, d) = (
            shared.clone(),
            stop_sampler.clone(),
            samples.clone(),
            producer.clone(),
            distinct_results.clone(),
        );
        let lag_client: BaseConsumer = client(&brokers, &args.kafka)?
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()?;
        let (topic, parts, every) = (start_topic.clone(), args.partitions, args.sample_every);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let next = Instant::now() + every;
                let t = secs_since(t0);
                let backlog = p.context().acked.load(Ordering::Relaxed) as i64
                    - d.load(Ordering::Relaxed) as i64;
                let committed = committed_lag(&lag_client, &topic, parts);
                let ports = lock(&sh.pods).ports();
                for (i, port, v) in Pods::scrape_commits(&ports) {
                    lock(&sh.pods).record_commits(i, port, v);
                }
                samples
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Sample {
                        t,
                        backlog,
                        committed_lag: committed,
                    });
                if let Some(rest) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(rest);
                }
            }
        })
    };

    // Faults.
    let plan = faults::schedule(&args.faults);
    let fault_thread = {
        let sh = shared.clone();
        let seed = args.seed;
        std::thread::spawn(move || {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut done = Vec::new();
            for f in &plan {
                if let Some(rest) = f.at.checked_sub(t0.elapsed()) {
                    std::thread::sleep(rest);
                }
                match apply(&sh, f, &mut rng, t0) {
                    Ok(r) => done.push(r),
                    Err(e) => {
                        eprintln!("chaos: fault {} failed: {e:#}", f.kind);
                        done.push(FaultRecord {
                            kind: f.kind,
                            target: format!("FAILED: {e:#}"),
                            start: secs_since(t0),
                            healed: secs_since(t0),
                            notes: Vec::new(),
                            wake_log: None,
                        });
                    }
                }
            }
            done
        })
    };

    // Production at a steady rate.
    let mut key_rng = SmallRng::seed_from_u64(args.seed.wrapping_add(7));
    let mut next = 0usize;
    let mut progress = Instant::now();
    let max = Duration::from_secs_f64(args.max_seconds);
    while next < args.count {
        let due = ((t0.elapsed().as_secs_f64() * args.rate) as usize + 1).min(args.count);
        while next < due {
            let name = format!("{prefix}{next}");
            let key = format!("k{}", key_rng.gen_range(0..args.keys.max(1)));
            let v =
                json!({"stateMachine": "chaos", "name": name, "input": {"i": next}}).to_string();
            let mut rec = BaseRecord::<str, [u8], usize>::with_opaque_to(&start_topic, next)
                .key(&key)
                .payload(v.as_bytes());
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        rec = r;
                        producer.poll(Duration::from_millis(5));
                    }
                }
            }
            next += 1;
        }
        producer.poll(Duration::from_millis(2));
        if progress.elapsed() >= Duration::from_secs(5) {
            progress = Instant::now();
            eprintln!(
                "chaos: [{:>6.1}s] sent {next}/{} acked {} results {}",
                secs_since(t0),
                args.count,
                producer.context().acked.load(Ordering::Relaxed),
                distinct_results.load(Ordering::Relaxed)
            );
        }
        if wall.elapsed() > max {
            eprintln!("chaos: --max-seconds reached while producing");
            break;
        }
    }
    let produced_s = secs_since(t0);
    while producer.in_flight_count() > 0 && wall.elapsed() < max {
        let _ = producer.flush(Duration::from_secs(1));
    }
    eprintln!(
        "chaos: [{:>6.1}s] all {next} sent; waiting for the faults and the results",
        secs_since(t0)
    );
    let records = fault_thread.join().unwrap_or_default();
    let settle_from = Instant::now();
    let acked = || producer.context().acked.load(Ordering::Relaxed);
    while distinct_results.load(Ordering::Relaxed) < acked()
        && settle_from.elapsed() < Duration::from_secs_f64(args.timeout)
        && wall.elapsed() < max
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let completed_s = secs_since(t0);
    // Let the pods commit what they finished, then stop them (SIGTERM: drain, commit, leave).
    std::thread::sleep(Duration::from_secs(2));
    stop_sampler.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let mut shutdowns = Vec::new();
    {
        let mut pods = lock(&shared.pods);
        let ports = pods.ports();
        for (i, port, v) in Pods::scrape_commits(&ports) {
            pods.record_commits(i, port, v);
        }
        for i in 0..pods.pods.len() {
            let (st, took) = pods.terminate(i, Duration::from_secs(60));
            shutdowns.push(format!("pod-{i}: {st} in {took:.1} s"));
        }
    }
    stop_readers.store(true, Ordering::Relaxed);
    for r in readers {
        match r.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("chaos: a reader failed: {e:#}"),
            Err(_) => eprintln!("chaos: a reader panicked"),
        }
    }
    if let Some(h) = &http {
        h.stop();
    }

    // The verdict.
    let c = collected.lock().unwrap_or_else(|p| p.into_inner());
    let ctx = producer.context();
    let accepted: Vec<String> = (0..next)
        .filter(|i| ctx.state[*i].load(Ordering::Relaxed) == 1)
        .map(|i| format!("{prefix}{i}"))
        .collect();
    let lost = verdict::lost(&accepted, &c.results, &c.dlq_names);
    let dups = verdict::duplicates(c.results.values());
    let samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let backlog_series: Vec<(f64, Option<i64>)> =
        samples.iter().map(|s| (s.t, Some(s.backlog))).collect();
    let committed_series: Vec<(f64, Option<i64>)> =
        samples.iter().map(|s| (s.t, s.committed_lag)).collect();
    let interval_ms = auto_commit_interval_ms(&args.serve_args);
    let lag_threshold = if args.lag_threshold > 0 {
        args.lag_threshold
    } else {
        (args.rate as i64).max(100)
    };
    let committed_threshold = if args.committed_lag_threshold > 0 {
        args.committed_lag_threshold
    } else {
        ((args.rate * (interval_ms / 1000.0 + 1.0)) as i64).max(100)
    };
    let starts: Vec<f64> = records.iter().map(|r| r.start).collect();
    let (per_fault, before_faults) = verdict::attribute(&dups.rerun_times, &starts);
    // A few re-run names per fault (with the times of all their copies), for reading the pod logs.
    let mut rerun_list: Vec<(f64, &String, Vec<f64>)> = Vec::new();
    for (name, copies) in c.results.iter().filter(|(_, v)| v.len() > 1) {
        let mut times: Vec<f64> = copies.iter().map(|c| round3(c.t)).collect();
        times.sort_by(f64::total_cmp);
        for t in &times[1..] {
            rerun_list.push((*t, name, times.clone()));
        }
    }
    rerun_list.sort_by(|a, b| a.0.total_cmp(&b.0));
    let sample_between = |from: f64, to: f64| -> Vec<String> {
        rerun_list
            .iter()
            .filter(|(t, _, _)| *t >= from && *t < to)
            .take(5)
            .map(|(_, n, times)| format!("{n} copies at {times:?} s"))
            .collect()
    };
    let mut fault_json = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(f64::MAX);
        let (rec_s, peak) = verdict::recovery(&backlog_series, r.start, end, lag_threshold);
        let (crec_s, cpeak) =
            verdict::recovery(&committed_series, r.start, end, committed_threshold);
        let unreadable = samples
            .iter()
            .filter(|s| s.t >= r.start && s.t <= r.healed && s.committed_lag.is_none())
            .count();
        let mut f = json!({
            "kind": r.kind.name(),
            "target": r.target,
            "at_s": round3(r.start),
            "healed_s": round3(r.healed),
            "reruns": per_fault[i],
            "recovery_s": rec_s.map(round3),
            "peak_backlog": peak,
            "committed_lag_recovery_s": crec_s.map(round3),
            "peak_committed_lag": cpeak,
            "notes": r.notes,
            "rerun_sample": sample_between(r.start, starts.get(i + 1).copied().unwrap_or(f64::MAX)),
        });
        if unreadable > 0 {
            f["lag_unreadable_samples"] = json!(unreadable);
        }
        if let Some((log, off)) = &r.wake_log {
            // What the zombie did after SIGCONT, and the re-runs a reader saw from then on.
            let late = dups
                .rerun_times
                .iter()
                .filter(|t| **t >= r.healed && **t < r.healed + 15.0)
                .count();
            f["after_wake"] = json!({
                "reruns_within_15s_of_sigcont": late,
                "pod_log": log_messages_after(log, *off),
            });
        }
        fault_json.push(f);
    }
    let statuses = verdict::tally(
        c.results
            .values()
            .filter_map(|v| v.first())
            .map(|c| c.status.as_str()),
    );
    let log_dups: u64 = c
        .log_copies
        .values()
        .map(|n| u64::from(*n).saturating_sub(1))
        .sum();
    let (commits, commit_errors) = lock(&shared.pods).commits();
    let run_s = completed_s.max(produced_s);
    let max_per_fault = per_fault.iter().copied().max().unwrap_or(0);
    let lost_n = lost.len();
    let mut out = json!({
        "verdict": if lost_n == 0 { "PASS" } else { "FAIL" },
        "accepted": accepted.len(),
        "send_failed": ctx.failed.load(Ordering::Relaxed),
        "send_errors": *ctx.errors.lock().unwrap_or_else(|p| p.into_inner()),
        "results": c.results.len(),
        "result_records": c.results.values().map(|v| v.len()).sum::<usize>(),
        "lost": lost_n,
        "lost_sample": lost.iter().take(10).collect::<Vec<_>>(),
        "duplicates": {
            "records": dups.extra_records,
            "executions": dups.names,
            "all_share_the_execution_arn": dups.names_with_different_arns == 0,
            "with_different_arns": dups.names_with_different_arns,
            "with_different_status": dups.names_with_different_status,
            "max_copies": dups.max_copies,
        },
        "reruns": {
            "max_per_fault": max_per_fault,
            "before_any_fault": before_faults,
            "before_any_fault_sample": sample_between(f64::MIN, starts.first().copied().unwrap_or(f64::MAX)),
            "per_fault": per_fault,
        },
        "statuses": statuses,
        "logs": {"records": c.log_records, "duplicate_records": log_dups},
        "dlq": c.dlq_reasons,
        "faults": fault_json,
        "offset_commits": {
            "ok_total": commits,
            "error_total": commit_errors,
            "per_second": round3(commits / run_s.max(1.0)),
            "auto_commit_interval_ms": interval_ms,
        },
        "recovery_thresholds": {"backlog": lag_threshold, "committed_lag": committed_threshold},
        "timing": {
            "produce_s": round3(produced_s),
            "all_results_s": round3(completed_s),
            "rate_achieved": round3(accepted.len() as f64 / produced_s.max(0.001)),
            "wall_s": round3(wall.elapsed().as_secs_f64()),
        },
        "config": {
            "pods": args.pods, "partitions": args.partitions, "count": args.count, "rate": args.rate,
            "keys": args.keys, "machine": args.machine, "log_level": args.log_level,
            "kafka": if args.brokers.is_some() { "given" } else if args.cluster { "3-node cluster" } else { "single node" },
            "faults": args.faults.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>(),
            "serve_args": args.serve_args, "reader_kafka": args.kafka, "seed": args.seed,
            "start_topic": start_topic, "group": group, "work": work.display().to_string(),
        },
        "pod_shutdown": shutdowns,
        // The sampled series, [t_s, backlog, committed_lag or null], to recompute or plot recovery.
        "series": samples.iter().map(|s| json!([round3(s.t), s.backlog, s.committed_lag])).collect::<Vec<_>>(),
    });
    if c.foreign_results > 0 {
        out["foreign_results"] = json!(c.foreign_results);
    }
    if let Some(h) = &http {
        out["http"] = h.stats.summary();
        out["http"]["behaviour"] = json!({"fail": args.http_fail, "stall": args.http_stall, "stall_for_s": args.http_stall_for.as_secs_f64()});
    }
    println!("{out}");
    drop(c);
    if lost_n == 0 && !args.keep_work {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        eprintln!("chaos: pod logs kept in {}", work.display());
    }
    Ok(if lost_n > 0 { 1 } else { 0 })
}
