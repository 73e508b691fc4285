//! `loadtest` (default mode): produces start events for a machine (at a fixed rate or as fast as possible), reads
//! the results topic, and prints one JSON summary: sent, completed, lost, duplicates, throughput and
//! start-to-result latency percentiles. `--raw` first measures the broker's own produce+consume
//! ceiling for records of the same size, so both figures come from one run.

use anyhow::{bail, Context as _};
use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "loadtest",
    about = "Drive Expressway with start events and report latency and throughput"
)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, env = "EXPRESSWAY_BROKERS")]
    brokers: String,
    /// The state machine to start.
    #[arg(long)]
    machine: String,
    /// Execution input (JSON).
    #[arg(long, default_value = "{}")]
    input: String,
    /// Number of start events.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Start events per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// How long to wait for results after the last event was sent.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Start topic.
    #[arg(long, default_value = "expressway.start")]
    start_topic: String,
    /// Results topic.
    #[arg(long, default_value = "expressway.results")]
    results_topic: String,
    /// Also measure the broker's raw produce+consume ceiling on this scratch topic first.
    #[arg(long)]
    raw: bool,
    /// Scratch topic for `--raw` (created if missing).
    #[arg(long, default_value = "expressway.loadtest.raw")]
    raw_topic: String,
    /// Read results with `isolation.level=read_committed` (pods running `--guarantee
    /// exactly-once`: latency then includes the transaction commit).
    #[arg(long)]
    read_committed: bool,
    /// Extra librdkafka settings, `KEY=VALUE` (repeatable).
    #[arg(long = "kafka")]
    kafka: Vec<String>,
}

fn client(args: &Args) -> anyhow::Result<ClientConfig> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &args.brokers);
    for kv in &args.kafka {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--kafka expects KEY=VALUE, got '{kv}'")
        };
        c.set(k, v);
    }
    Ok(c)
}

/// Counts delivery reports: a record is sent only when the broker acknowledged it. Without this,
/// a record the producer gave up on (e.g. `message.timeout.ms` expired while the broker was slow)
/// disappears silently and shows up as "lost" although no executor ever saw it.
#[derive(Default)]
struct Deliveries {
    acked: AtomicU64,
    failed: AtomicU64,
    /// Failure reasons and how often each occurred.
    errors: Mutex<BTreeMap<String, u64>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
                *errors.entry(e.to_string()).or_default() += 1;
            }
        }
    }
}

impl Deliveries {
    fn summary(&self) -> Value {
        let errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        json!({
            "acked": self.acked.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
            "errors": *errors,
        })
    }
}

type LoadProducer = BaseProducer<Deliveries>;

/// Idempotent (`acks=all`, no reordering or duplicates on retry), with delivery reports counted.
fn producer(args: &Args) -> anyhow::Result<LoadProducer> {
    client(args)?
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Deliveries::default())
        .context("creating the producer")
}

/// Sum of the high watermarks of every partition of `topic`.
fn high_watermarks(args: &Args, topic: &str) -> anyhow::Result<i64> {
    let c: BaseConsumer = client(args)?
        .create()
        .context("creating a metadata client")?;
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("fetching metadata")?;
    let mut sum = 0;
    for t in md.topics() {
        for p in t.partitions() {
            sum += c
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .context("fetching watermarks")?
                .1;
        }
    }
    Ok(sum)
}

/// Reads `topic` from the beginning and reports, per partition, the watermarks, how many records
/// the broker returns, how many of them belong to this run (key prefix), and the offsets it skips.
/// Run when results are missing, to tell "the broker does not have the start event" from "the
/// executor did not run it".
fn audit_topic(args: &Args, topic: &str, run_prefix: &str) -> anyhow::Result<Value> {
    let c: BaseConsumer = client(args)?
        .set(
            "group.id",
            format!("expressway-loadtest-audit-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .context("creating the audit consumer")?;
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("fetching metadata")?;
    let mut report = Vec::new();
    let mut run_total = 0u64;
    let mut distinct_total = 0u64;
    for p in md.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = c
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .context("fetching watermarks")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        c.assign(&tpl)?;
        let (mut records, mut of_run, mut gaps) = (0u64, 0u64, 0u64);
        let mut keys_of_run: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
        let (mut first, mut last) = (None::<i64>, None::<i64>);
        let mut idle = Instant::now();
        loop {
            match c.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    idle = Instant::now();
                    records += 1;
                    if let Some(prev) = last {
                        if m.offset() != prev + 1 {
                            gaps += 1;
                        }
                    }
                    first.get_or_insert(m.offset());
                    last = Some(m.offset());
                    if let Some(k) = m.key().filter(|k| k.starts_with(run_prefix.as_bytes())) {
                        of_run += 1;
                        keys_of_run.insert(k.to_vec());
                    }
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                Some(Err(_)) | None => {
                    if idle.elapsed() > Duration::from_secs(5) {
                        break;
                    }
                }
            }
        }
        run_total += of_run;
        distinct_total += keys_of_run.len() as u64;
        report.push(json!({
            "partition": p.id(), "low": low, "high": high, "records_read": records,
            "records_of_run": of_run, "first_offset": first, "last_offset": last, "offset_gaps": gaps,
        }));
    }
    Ok(
        json!({"topic": topic, "records_of_run": run_total, "distinct_keys_of_run": distinct_total, "partitions": report}),
    )
}

/// Waits until every queued record got its delivery report.
fn flush(p: &LoadProducer) {
    // `flush` times out while the broker is slow; keep serving delivery reports until the
    // queue is empty (records that cannot be delivered fail after `message.timeout.ms`).
    while p.in_flight_count() > 0 {
        let _ = p.flush(Duration::from_secs(1));
    }
}

/// A consumer assigned to every partition of `topic` at its current end.
fn tail_consumer(args: &Args, topic: &str) -> anyhow::Result<BaseConsumer> {
    let c: BaseConsumer = client(args)?
        .set(
            "group.id",
            format!("expressway-loadtest-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set(
            "isolation.level",
            if args.read_committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .create()
        .context("creating the consumer")?;
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("fetching metadata")?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        bail!("topic '{topic}' has no partitions (does it exist?)");
    }
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (_, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .context("fetching watermarks")?;
        tpl.add_partition_offset(topic, p, Offset::Offset(high))?;
    }
    c.assign(&tpl)?;
    Ok(c)
}

fn send(p: &LoadProducer, topic: &str, key: &str, value: &[u8]) {
    let mut rec = BaseRecord::<str, [u8]>::to(topic).key(key).payload(value);
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((_, r)) => {
                rec = r;
                p.poll(Duration::from_millis(5));
            }
        }
    }
}

pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Produces and consumes `count` records of `size` bytes on a scratch topic: the broker's ceiling.
fn raw_ceiling(args: &Args, size: usize) -> anyhow::Result<Value> {
    let admin: AdminClient<DefaultClientContext> = client(args)?
        .create()
        .context("creating the admin client")?;
    // -1: the broker's default.replication.factor, so on a replicated cluster the ceiling is
    // measured with the same replication (and acks=all) as the executor's topics.
    let topic = NewTopic::new(&args.raw_topic, 1, TopicReplication::Fixed(-1));
    // Creation fails harmlessly when the topic exists (or the broker does not support it).
    let _ = futures_lite_block_on(admin.create_topics([&topic], &AdminOptions::new()));
    let consumer = tail_consumer(args, &args.raw_topic)?;
    let p = producer(args)?;
    let payload = vec![b'x'; size];
    let started = Instant::now();
    for i in 0..args.count {
        send(&p, &args.raw_topic, &i.to_string(), &payload);
        p.poll(Duration::ZERO);
    }
    flush(&p);
    let mut got = 0usize;
    let deadline = Instant::now() + Duration::from_secs_f64(args.timeout);
    while got < args.count && Instant::now() < deadline {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            got += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(
        json!({"records": got, "record_bytes": size, "seconds": round3(secs), "records_per_second": (got as f64 / secs).round(), "deliveries": p.context().summary()}),
    )
}

/// A minimal executor for the one admin future (rdkafka's futures need no runtime).
pub(crate) fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// The load mode: `loadtest --brokers B --machine M ...` (the CLI `kafka-figures.sh` and
/// `deploy/prometheus-check.sh` use).
pub(crate) fn main(argv: Vec<std::ffi::OsString>) -> anyhow::Result<()> {
    let args = Args::parse_from(argv);
    let input: Value = serde_json::from_str(&args.input).context("--input is not JSON")?;
    let run_id = format!(
        "lt{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() % 100_000
    );
    let sample =
        json!({"stateMachine": args.machine, "name": format!("{run_id}-0"), "input": input})
            .to_string();
    let raw = if args.raw {
        Some(raw_ceiling(&args, sample.len())?)
    } else {
        None
    };

    let consumer = tail_consumer(&args, &args.results_topic)?;
    let start_high_before = high_watermarks(&args, &args.start_topic)?;
    let p = producer(&args)?;
    let mut sent_at: HashMap<String, Instant> = HashMap::with_capacity(args.count);
    let mut latencies: Vec<f64> = Vec::with_capacity(args.count);
    let mut completed: HashMap<String, u32> = HashMap::with_capacity(args.count);
    let mut statuses: HashMap<String, usize> = HashMap::new();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut next = 0usize;
    let deadline_after_send = Duration::from_secs_f64(args.timeout);
    let mut all_sent_at: Option<Instant> = None;

    let drain = |consumer: &BaseConsumer,
                 sent_at: &HashMap<String, Instant>,
                 latencies: &mut Vec<f64>,
                 completed: &mut HashMap<String, u32>,
                 statuses: &mut HashMap<String, usize>,
                 wait: Duration| {
        let mut first = true;
        while let Some(Ok(m)) = consumer.poll(if first { wait } else { Duration::ZERO }) {
            first = false;
            let Some(name) = m.key().map(|k| String::from_utf8_lossy(k).into_owned()) else {
                continue;
            };
            let Some(t0) = sent_at.get(&name) else {
                continue;
            };
            let n = completed.entry(name).or_insert(0);
            *n += 1;
            if *n == 1 {
                latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                let status = serde_json::from_slice::<Value>(m.payload().unwrap_or_default())
                    .ok()
                    .and_then(|v| v.get("status").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_else(|| "UNKNOWN".into());
                *statuses.entry(status).or_default() += 1;
            }
        }
    };

    loop {
        // Send what the rate allows.
        let due = if args.rate > 0.0 {
            ((started.elapsed().as_secs_f64() * args.rate) as usize + 1).min(args.count)
        } else {
            args.count
        };
        let batch_end = due.min(next + 5000);
        while next < batch_end {
            let name = format!("{run_id}-{next}");
            let v = json!({"stateMachine": args.machine, "name": name, "input": input}).to_string();
            sent_at.insert(name.clone(), Instant::now());
            send(&p, &args.start_topic, &name, v.as_bytes());
            next += 1;
        }
        p.poll(Duration::ZERO);
        if next == args.count && all_sent_at.is_none() {
            flush(&p);
            all_sent_at = Some(Instant::now());
        }
        drain(
            &consumer,
            &sent_at,
            &mut latencies,
            &mut completed,
            &mut statuses,
            Duration::from_millis(if next < args.count { 1 } else { 50 }),
        );
        if last_progress.elapsed() >= Duration::from_secs(1) {
            eprintln!(
                "[{:>6.1}s] sent {next}/{} acked {} failed {} completed {} ({:.0}/s)",
                started.elapsed().as_secs_f64(),
                args.count,
                p.context().acked.load(Ordering::Relaxed),
                p.context().failed.load(Ordering::Relaxed),
                completed.len(),
                completed.len() as f64 / started.elapsed().as_secs_f64()
            );
            last_progress = Instant::now();
        }
        if completed.len() >= args.count
            || all_sent_at.is_some_and(|t| t.elapsed() > deadline_after_send)
        {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // What the broker appended to the start topic during the run (exact when nobody else
    // produces to it): compare with `sent` and the delivery reports to tell a producer-side
    // loss from a broker-side one.
    let start_high_after = high_watermarks(&args, &args.start_topic)?;
    latencies.sort_by(|a, b| a.total_cmp(b));
    let duplicates: u32 = completed.values().map(|n| n - 1).sum();
    let throughput = completed.len() as f64 / secs;
    let mut summary = json!({
        "machine": args.machine,
        "sent": next,
        "completed": completed.len(),
        "lost": next - completed.len(),
        "duplicates": duplicates,
        "deliveries": p.context().summary(),
        "start_topic_appended": start_high_after - start_high_before,
        "statuses": statuses,
        "seconds": round3(secs),
        "executions_per_second": throughput.round(),
        "target_rate": args.rate,
        "latency_ms": {
            "p50": round3(percentile(&latencies, 0.50)),
            "p90": round3(percentile(&latencies, 0.90)),
            "p99": round3(percentile(&latencies, 0.99)),
            "max": round3(latencies.last().copied().unwrap_or(0.0)),
        },
    });
    if next > completed.len() {
        // Something is missing: does the broker have the start events?
        match audit_topic(&args, &args.start_topic, &format!("{run_id}-")) {
            Ok(audit) => {
                let on_broker = audit
                    .get("records_of_run")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let acked = p.context().acked.load(Ordering::Relaxed);
                let failed = p.context().failed.load(Ordering::Relaxed);
                // Are the missing results on the broker (so this reader missed them)?
                let results_on_broker =
                    match audit_topic(&args, &args.results_topic, &format!("{run_id}-")) {
                        Ok(r) => {
                            let n = r
                                .get("distinct_keys_of_run")
                                .and_then(Value::as_u64)
                                .unwrap_or(0);
                            summary["results_topic_audit"] = r;
                            n
                        }
                        Err(e) => {
                            eprintln!("auditing {}: {e:#}", args.results_topic);
                            0
                        }
                    };
                summary["diagnosis"] = json!(if failed > 0 {
                    format!("{failed} start events were never acknowledged by the broker (see deliveries.errors): producer-side loss")
                } else if on_broker < acked {
                    format!("the broker acknowledged {acked} start events but returns only {on_broker} when read from the beginning: the broker lost acknowledged records")
                } else if results_on_broker >= next as u64 {
                    format!("every execution's result is on the results topic ({results_on_broker} distinct names read from the beginning): this reader missed some (on Tansu 0.6.0 a reader that starts at the end can start inside a batch; use a fresh broker or results topic)")
                } else {
                    format!("all {acked} start events are on the broker (read back from the beginning); the executor did not receive or finish {} of them: check expressway_consumer_lag and the executor log (Tansu 0.6.0: a fetch from an offset inside a record batch returns nothing, see ARCHITECTURE.md)", next - completed.len())
                });
                summary["start_topic_audit"] = audit;
            }
            Err(e) => eprintln!("auditing {}: {e:#}", args.start_topic),
        }
    }
    if let Some(raw) = raw {
        let ceiling = raw
            .get("records_per_second")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        summary["raw_broker"] = raw;
        if ceiling > 0.0 {
            summary["ratio_to_raw"] = json!(round3(throughput / ceiling));
        }
    }
    println!("{summary}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_nearest_ranks() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn block_on_runs_a_ready_future() {
        assert_eq!(futures_lite_block_on(async { 7 }), 7);
    }
}
