//! Integration suite against a real Kafka broker (Apache Kafka 4.x in `.ci/run`, see
//! `deploy/kafka-it.sh` and `deploy/kafka/kafka.sh`): `expressway serve` as processes, started,
//! rebalanced, killed and drained, over plaintext, TLS, mutual TLS and SASL_SSL/SCRAM, on a
//! 3-node cluster that loses a node, and with `--guarantee exactly-once` (a SIGKILL, a pod
//! joining, a SIGSTOP zombie: read_committed readers see each record once). Ignored by default; each test runs when the variables naming
//! its broker are set (otherwise it says so and returns):
//!
//! ```text
//! EXPRESSWAY_IT_BROKERS=127.0.0.1:9092 cargo test -p expressway-cli --test broker -- --ignored --test-threads=1
//! ```
//!
//! * `EXPRESSWAY_IT_BROKERS`: a plaintext listener (one node is enough);
//! * `EXPRESSWAY_IT_SSL_BROKERS`, `EXPRESSWAY_IT_MTLS_BROKERS` (client certificate required),
//!   `EXPRESSWAY_IT_SASL_SSL_BROKERS` (SCRAM-SHA-512), with `EXPRESSWAY_IT_CA`,
//!   `EXPRESSWAY_IT_CLIENT_CERT`, `EXPRESSWAY_IT_CLIENT_KEY`, `EXPRESSWAY_IT_SCRAM_USER`,
//!   `EXPRESSWAY_IT_SCRAM_PASSWORD` (`kafka.sh start-secure` makes them);
//! * `EXPRESSWAY_IT_CLUSTER_BROKERS` and `EXPRESSWAY_IT_CLUSTER_NAME`: a 3-node cluster started by
//!   `kafka.sh start-cluster NAME`, whose nodes the node-loss test stops and restarts through
//!   `kafka.sh node-stop` / `node-start`.
//!
//! Every test uses its own topics and consumer group (prefixed with the process id), so the
//! suite can run repeatedly against one broker. Waits are bounded by generous deadlines; no
//! test asserts a duration.
#![allow(clippy::unwrap_used)]

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(120);

const CHOOSE: &str = r#"{"StartAt":"C","States":{
  "C":{"Type":"Choice","Choices":[{"Variable":"$.fail","BooleanEquals":true,"Next":"F"}],"Default":"S"},
  "F":{"Type":"Fail","Error":"Boom","Cause":"asked to fail"},
  "S":{"Type":"Pass","Parameters":{"i.$":"$.i","greeting.$":"States.Format('hi {}', $.i)"},"End":true}}}"#;
const ECHO: &str = r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#;
const SLEEPY: &str = r#"{"StartAt":"T","States":{
  "T":{"Type":"Task","Resource":"arn:aws:states:::expressway:test","Parameters":{"SleepSeconds.$":"$.sleep","Result.$":"$.i"},"End":true}}}"#;

/// The broker under test, or `None` (the test then returns without doing anything).
fn brokers() -> Option<String> {
    match std::env::var("EXPRESSWAY_IT_BROKERS") {
        Ok(b) if !b.trim().is_empty() => Some(b),
        _ => {
            eprintln!("EXPRESSWAY_IT_BROKERS is not set: skipping (see deploy/kafka-it.sh)");
            None
        }
    }
}

/// One test's topics, group and definitions directory.
struct Suite {
    brokers: String,
    /// Extra librdkafka settings for every client and pod of the test (TLS).
    kafka: Vec<(String, String)>,
    prefix: String,
    defs: PathBuf,
    logs_dir: PathBuf,
}

impl Suite {
    fn new(brokers: String, test: &str, start_partitions: i32, machines: &[(&str, &str)]) -> Suite {
        Suite::new_with(brokers, Vec::new(), test, start_partitions, machines)
    }

    fn new_with(
        brokers: String,
        kafka: Vec<(String, String)>,
        test: &str,
        start_partitions: i32,
        machines: &[(&str, &str)],
    ) -> Suite {
        let prefix = format!("it{}-{test}", std::process::id());
        let defs = std::env::temp_dir().join(format!("expressway-{prefix}-defs"));
        let _ = std::fs::remove_dir_all(&defs);
        std::fs::create_dir_all(&defs).unwrap();
        for (name, asl) in machines {
            std::fs::write(defs.join(format!("{name}.asl.json")), asl).unwrap();
            std::fs::write(
                defs.join(format!("{name}.config.json")),
                r#"{"loggingConfiguration":{"level":"ALL","includeExecutionData":true}}"#,
            )
            .unwrap();
        }
        let logs_dir = std::env::temp_dir().join(format!("expressway-{prefix}-logs"));
        std::fs::create_dir_all(&logs_dir).unwrap();
        let s = Suite {
            brokers,
            kafka,
            prefix,
            defs,
            logs_dir,
        };
        s.create_topics(&[
            (s.topic("start"), start_partitions),
            (s.topic("logs"), 1),
            (s.topic("results"), 1),
            (s.topic("dlq"), 1),
            (s.topic("definitions"), 1),
        ]);
        s
    }

    fn topic(&self, what: &str) -> String {
        format!("{}.{what}", self.prefix)
    }

    fn group(&self) -> String {
        format!("{}-group", self.prefix)
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.kafka {
            c.set(k, v);
        }
        c
    }

    fn create_topics(&self, topics: &[(String, i32)]) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            // -1: the broker's default.replication.factor (1 on one node, 3 on the cluster).
            .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(-1)))
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let res = rt
            .block_on(admin.create_topics(&new, &AdminOptions::new()))
            .unwrap();
        for r in res {
            if let Err((t, e)) = r {
                panic!("creating topic {t}: {e}");
            }
        }
        // Wait until the metadata shows every partition.
        let probe: BaseConsumer = self.client().create().unwrap();
        let deadline = Instant::now() + DEADLINE;
        for (t, p) in topics {
            loop {
                let n = probe
                    .fetch_metadata(Some(t), Duration::from_secs(5))
                    .ok()
                    .and_then(|md| md.topics().first().map(|t| t.partitions().len()))
                    .unwrap_or(0);
                if n == *p as usize {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "topic {t} never showed {p} partitions"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Idempotent, `acks=all` (librdkafka's default with idempotence), batching as configured by
    /// default: a consumer that resumes inside a batch gets the whole batch and skips to its offset.
    fn producer(&self) -> BaseProducer {
        self.client()
            .set("enable.idempotence", "true")
            .create()
            .unwrap()
    }

    fn produce(
        &self,
        p: &BaseProducer,
        topic: &str,
        key: Option<&str>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) {
        produce_to(p, topic, key, value, headers);
    }

    /// Produces start events `{stateMachine, name, input}` keyed `k<i>` and waits for the acks.
    fn start_events(
        &self,
        machine: &str,
        range: std::ops::Range<usize>,
        input: impl Fn(usize) -> Value,
    ) {
        let p = self.producer();
        let topic = self.topic("start");
        for i in range {
            let v = json!({"stateMachine": machine, "name": format!("e{i}"), "input": input(i)})
                .to_string();
            self.produce(&p, &topic, Some(&format!("k{i}")), Some(v.as_bytes()), &[]);
        }
        p.flush(Duration::from_secs(60)).unwrap();
    }

    /// Starts `expressway serve` on this test's topics; its stderr goes to a file in
    /// `logs_dir` (printed when a test fails to help diagnose).
    fn serve(&self, label: &str) -> Pod {
        self.serve_with(label, &[])
    }

    /// [`Suite::serve`] with extra environment variables (`EXPRESSWAY_GUARANTEE`, ...).
    fn serve_with(&self, label: &str, env: &[(&str, &str)]) -> Pod {
        let port = free_port();
        let log = self.logs_dir.join(format!("{label}.log"));
        let stderr = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_expressway"))
            .arg("serve")
            .env("EXPRESSWAY_BROKERS", &self.brokers)
            .env("EXPRESSWAY_DEFINITIONS", &self.defs)
            .env("EXPRESSWAY_GROUP", self.group())
            .env("EXPRESSWAY_START_TOPIC", self.topic("start"))
            .env("EXPRESSWAY_LOGS_TOPIC", self.topic("logs"))
            .env("EXPRESSWAY_RESULTS_TOPIC", self.topic("results"))
            .env("EXPRESSWAY_DLQ_TOPIC", self.topic("dlq"))
            .env("EXPRESSWAY_DEFINITIONS_TOPIC", self.topic("definitions"))
            .env("EXPRESSWAY_METRICS_LISTEN", format!("127.0.0.1:{port}"))
            .env("EXPRESSWAY_DRAIN_TIMEOUT", "20s")
            .env("EXPRESSWAY_KAFKA", {
                let mut kafka = "session.timeout.ms=6000;heartbeat.interval.ms=500;auto.commit.interval.ms=200;topic.metadata.refresh.interval.ms=1000".to_string();
                for (k, v) in &self.kafka {
                    kafka.push_str(&format!(";{k}={v}"));
                }
                kafka
            })
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Pod {
            child,
            port,
            log,
            label: label.to_string(),
        }
    }

    /// A reader of every partition of `topic` from the beginning.
    fn reader(&self, what: &str) -> Reader {
        self.reader_with(what, "read_uncommitted")
    }

    /// A reader that sees committed transactions only.
    fn committed_reader(&self, what: &str) -> Reader {
        self.reader_with(what, "read_committed")
    }

    fn reader_with(&self, what: &str, isolation: &str) -> Reader {
        let topic = self.topic(what);
        let c: BaseConsumer = self
            .client()
            .set("group.id", format!("{}-reader-{what}", self.prefix))
            .set("enable.auto.commit", "false")
            .set("isolation.level", isolation)
            .create()
            .unwrap();
        let md = c
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in md.topics()[0].partitions() {
            tpl.add_partition_offset(&topic, p.id(), Offset::Beginning)
                .unwrap();
        }
        c.assign(&tpl).unwrap();
        Reader {
            consumer: c,
            topic,
            records: Vec::new(),
        }
    }

    /// Committed offsets of the executor's group on the start topic, per partition.
    fn committed(&self, partitions: i32) -> Vec<i64> {
        let c: BaseConsumer = self
            .client()
            .set("group.id", self.group())
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(&self.topic("start"), p);
        }
        let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        (0..partitions)
            .map(|p| {
                match got
                    .find_partition(&self.topic("start"), p)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                }
            })
            .collect()
    }

    /// High watermarks of the start topic, per partition.
    fn start_ends(&self, partitions: i32) -> Vec<i64> {
        let c: BaseConsumer = self.client().create().unwrap();
        (0..partitions)
            .map(|p| {
                c.fetch_watermarks(&self.topic("start"), p, Duration::from_secs(10))
                    .unwrap()
                    .1
            })
            .collect()
    }

    /// Waits until the group has committed every start record.
    fn wait_all_committed(&self, partitions: i32) {
        let ends = self.start_ends(partitions);
        wait_until(&format!("committed offsets reach {ends:?}"), || {
            self.committed(partitions) == ends
        });
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.defs);
        // Pod logs are kept when a test fails or EXPRESSWAY_IT_KEEP_LOGS is set.
        if !std::thread::panicking() && std::env::var_os("EXPRESSWAY_IT_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.logs_dir);
        }
    }
}

fn produce_to(
    p: &BaseProducer,
    topic: &str,
    key: Option<&str>,
    value: Option<&[u8]>,
    headers: &[(&str, &[u8])],
) {
    let mut h = OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    let mut rec = BaseRecord::<str, [u8]>::to(topic).headers(h);
    if let Some(k) = key {
        rec = rec.key(k);
    }
    if let Some(v) = value {
        rec = rec.payload(v);
    }
    p.send(rec).map_err(|(e, _)| e).unwrap();
    p.poll(Duration::ZERO);
}

/// A record read back.
#[derive(Clone, Debug)]
struct Rec {
    partition: i32,
    key: Option<String>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, String)>,
}

impl Rec {
    fn json(&self) -> Value {
        serde_json::from_slice(self.value.as_deref().unwrap_or_default()).unwrap()
    }
    fn header(&self, k: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(hk, _)| hk == k)
            .map(|(_, v)| v.clone())
    }
}

/// A consumed record, copied.
fn rec_of(m: &rdkafka::message::BorrowedMessage<'_>) -> Rec {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Rec {
        partition: m.partition(),
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        value: m.payload().map(<[u8]>::to_vec),
        headers,
    }
}

struct Reader {
    consumer: BaseConsumer,
    topic: String,
    records: Vec<Rec>,
}

impl Reader {
    /// Reads what is there (waiting up to 100 ms for the first record), at most 10,000 records, so
    /// the `until` conditions are checked per batch rather than per record (checking the whole set
    /// after every record made a reader of 10,000 results fall behind 100 results/s).
    fn poll_some(&mut self) {
        let mut wait = Duration::from_millis(100);
        for _ in 0..10_000 {
            match self.consumer.poll(wait) {
                Some(Ok(m)) => self.records.push(rec_of(&m)),
                Some(Err(_)) => {}
                None => return,
            }
            wait = Duration::ZERO;
        }
    }

    fn until(&mut self, what: &str, done: impl Fn(&[Rec]) -> bool) -> &[Rec] {
        let deadline = Instant::now() + DEADLINE;
        while !done(&self.records) {
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting for {what} ({} records read)",
                self.topic,
                self.records.len()
            );
            self.poll_some();
        }
        &self.records
    }

    /// Distinct keys read so far.
    fn keys(&self) -> HashSet<String> {
        self.records.iter().filter_map(|r| r.key.clone()).collect()
    }

    /// Reads for a little longer to catch late duplicates.
    fn settle(&mut self, for_how_long: Duration) {
        let until = Instant::now() + for_how_long;
        while Instant::now() < until {
            self.poll_some();
        }
    }
}

struct Pod {
    child: Child,
    port: u16,
    log: PathBuf,
    label: String,
}

impl Pod {
    fn http(&self, path: &str) -> Option<(u16, String)> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let status = out.split_whitespace().nth(1)?.parse().ok()?;
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((status, body))
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some((200, _)) = self.http("/readyz") {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited early ({status}):\n{}", self.label, self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "{} never became ready:\n{}",
                self.label,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sum of a counter over all its label sets.
    fn counter(&self, name: &str) -> f64 {
        let Some((200, body)) = self.http("/metrics") else {
            return 0.0;
        };
        body.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit; returns its exit code.
    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit:\n{}",
                self.label,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn sigterm(mut self) -> Option<i32> {
        self.signal("-TERM");
        self.wait_exit()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- {} stderr ({}):\n{}",
                self.label,
                self.log.display(),
                self.stderr()
            );
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Checks every `e<i>` for `i < n` has a result, every duplicate has the same ARN; returns the
/// number of duplicates.
fn check_results_complete(results: &[Rec], n: usize) -> usize {
    let mut arn_by_name: HashMap<String, String> = HashMap::new();
    let mut duplicates = 0;
    for r in results {
        let v = r.json();
        let name = v["name"].as_str().unwrap().to_string();
        assert_eq!(
            r.key.as_deref(),
            Some(name.as_str()),
            "result key = execution name"
        );
        let arn = v["executionArn"].as_str().unwrap().to_string();
        if let Some(prev) = arn_by_name.insert(name.clone(), arn.clone()) {
            duplicates += 1;
            assert_eq!(prev, arn, "a re-run of {name} has the same execution ARN");
        }
    }
    for i in 0..n {
        assert!(
            arn_by_name.contains_key(&format!("e{i}")),
            "e{i} has no result"
        );
    }
    assert_eq!(arn_by_name.len(), n, "no results for names never sent");
    duplicates
}

fn all_names(n: usize) -> impl Fn(&[Rec]) -> bool {
    move |r: &[Rec]| {
        let names: HashSet<&str> = r.iter().filter_map(|r| r.key.as_deref()).collect();
        names.len() >= n
    }
}

#[test]
#[ignore = "needs a broker: EXPRESSWAY_IT_BROKERS (deploy/kafka-it.sh)"]
fn n_start_events_give_n_results_and_n_logs() {
    let Some(b) = brokers() else { return };
    let s = Suite::new(b, "basic", 3, &[("choose", CHOOSE)]);
    let mut pod = s.serve("pod");
    pod.wait_ready();
    let n = 300;
    s.start_events(
        "choose",
        0..n,
        |i| json!({"i": i, "fail": i.is_multiple_of(7)}),
    );

    let mut results = s.reader("results");
    results.until("all results", |r| r.len() >= n);
    let mut arns = HashSet::new();
    for r in &results.records {
        let v = r.json();
        let name = v["name"].as_str().unwrap();
        assert_eq!(r.key.as_deref(), Some(name));
        let i: usize = name[1..].parse().unwrap();
        if i.is_multiple_of(7) {
            assert_eq!(v["status"], "FAILED", "{v}");
            assert_eq!(v["error"], "Boom");
            assert_eq!(v["cause"], "asked to fail");
            assert!(v.get("output").is_none());
        } else {
            assert_eq!(v["status"], "SUCCEEDED", "{v}");
            assert_eq!(v["output"], json!({"i": i, "greeting": format!("hi {i}")}));
        }
        let arn = v["executionArn"].as_str().unwrap();
        assert!(
            arn.starts_with(&format!(
                "arn:aws:states:us-east-1:123456789012:express:choose:{name}:"
            )),
            "{arn}"
        );
        assert_eq!(
            v["stateMachineArn"],
            "arn:aws:states:us-east-1:123456789012:stateMachine:choose"
        );
        arns.insert(arn.to_string());
    }
    assert_eq!(arns.len(), n, "one result per start event");

    let mut logs = s.reader("logs");
    logs.until("all log records", |r| r.len() >= n);
    for l in &logs.records {
        let v = l.json();
        let arn = v["executionArn"].as_str().unwrap();
        assert_eq!(l.key.as_deref(), Some(arn), "log key = execution ARN");
        assert!(arns.contains(arn));
        let events = v["events"].as_array().unwrap();
        assert_eq!(events[0]["type"], "ExecutionStarted");
        assert_eq!(events[0]["execution_arn"], arn);
        assert!(
            events[0]["details"]["input"].is_string(),
            "input is a JSON-encoded string at level ALL"
        );
        let last = events.last().unwrap()["type"].as_str().unwrap();
        assert!(
            last == "ExecutionSucceeded" || last == "ExecutionFailed",
            "{last}"
        );
    }
    s.wait_all_committed(3);
    results.settle(Duration::from_secs(1));
    logs.settle(Duration::from_millis(200));
    assert_eq!(results.records.len(), n, "no duplicate results");
    assert_eq!(logs.records.len(), n, "no duplicate log records");
    assert_eq!(pod.sigterm(), Some(0));
}

#[test]
#[ignore = "needs a broker: EXPRESSWAY_IT_BROKERS (deploy/kafka-it.sh)"]
fn two_pods_share_partitions_and_a_third_joining_rebalances_without_loss() {
    let Some(b) = brokers() else { return };
    let s = Suite::new(b, "rebalance", 6, &[("sleepy", SLEEPY)]);
    let mut a = s.serve("pod-a");
    let mut bp = s.serve("pod-b");
    a.wait_ready();
    bp.wait_ready();
    let input = |i: usize| json!({"i": i, "sleep": 0.05});
    // Both pods run executions: the partitions are shared.
    let first = 120;
    s.start_events("sleepy", 0..first, input);
    let mut results = s.reader("results");
    results.until("first batch", all_names(first));
    let started = |p: &Pod| p.counter("expressway_executions_started_total");
    assert!(
        started(&a) > 0.0 && started(&bp) > 0.0,
        "both pods ran executions: a={} b={}",
        started(&a),
        started(&bp)
    );
    let rebalances = |a: &Pod, b: &Pod| {
        a.counter("expressway_rebalances_total") + b.counter("expressway_rebalances_total")
    };
    let rebalances_before = rebalances(&a, &bp);

    // A third pod joins while executions are in flight.
    let total = 360;
    s.start_events("sleepy", first..240, input);
    let mut c = s.serve("pod-c");
    c.wait_ready();
    s.start_events("sleepy", 240..total, input);
    results.until("every execution", all_names(total));
    wait_until("pod c runs executions", || started(&c) > 0.0);
    assert!(
        rebalances(&a, &bp) > rebalances_before,
        "the running pods saw the rebalance"
    );
    s.wait_all_committed(6);
    results.settle(Duration::from_secs(1));
    let duplicates = check_results_complete(&results.records, total);
    let executions = started(&a) + started(&bp) + started(&c);
    eprintln!(
        "rebalance: {total} start events, {executions} executions started, {duplicates} duplicate results"
    );
    for p in [a, bp, c] {
        assert_eq!(p.sigterm(), Some(0));
    }
}

#[test]
#[ignore = "needs a broker: EXPRESSWAY_IT_BROKERS (deploy/kafka-it.sh)"]
fn a_pod_killed_with_sigkill_is_replaced_and_every_start_event_gets_a_result() {
    let Some(b) = brokers() else { return };
    let s = Suite::new(b, "sigkill", 2, &[("sleepy", SLEEPY)]);
    let n = 40;
    s.start_events(
        "sleepy",
        0..n,
        |i| json!({"i": i, "sleep": 0.1 * (i % 20) as f64}),
    );
    let mut first = s.serve("pod-killed");
    let mut results = s.reader("results");
    // Kill as soon as some executions have finished, while the rest are running.
    results.until("the first results", |r| !r.is_empty());
    first.signal("-KILL");
    first.wait_exit();
    let done_before_kill = results.keys().len();
    let mut second = s.serve("pod-replacement");
    second.wait_ready();
    results.until("every execution", all_names(n));
    s.wait_all_committed(2);
    results.settle(Duration::from_secs(1));
    let duplicates = check_results_complete(&results.records, n);
    for r in &results.records {
        assert_eq!(r.json()["status"], "SUCCEEDED");
    }
    eprintln!("sigkill: {n} start events, {done_before_kill}+ finished before the kill, {duplicates} duplicates");
    assert_eq!(second.sigterm(), Some(0));
}

#[test]
#[ignore = "needs a broker: EXPRESSWAY_IT_BROKERS (deploy/kafka-it.sh)"]
fn sigterm_drains_in_flight_executions_without_loss_or_duplicates() {
    let Some(b) = brokers() else { return };
    let s = Suite::new(b, "sigterm", 2, &[("sleepy", SLEEPY)]);
    let mut first = s.serve("pod-drained");
    first.wait_ready();
    let n = 40;
    s.start_events(
        "sleepy",
        0..n,
        |i| json!({"i": i, "sleep": 1.0 + 0.05 * i as f64}),
    );
    wait_until("executions in flight", || {
        first.counter("expressway_executions_started_total") >= n as f64
    });
    let mut results = s.reader("results");
    assert_eq!(first.sigterm(), Some(0), "drained and exited 0");
    // Everything that was in flight finished before the exit, and its offset is committed.
    results.until("every execution", all_names(n));
    s.wait_all_committed(2);
    // A successor re-runs nothing.
    let mut second = s.serve("pod-successor");
    second.wait_ready();
    s.start_events("sleepy", n..n + 1, |i| json!({"i": i, "sleep": 0}));
    results.until("the successor's result", all_names(n + 1));
    results.settle(Duration::from_secs(2));
    let duplicates = check_results_complete(&results.records, n + 1);
    assert_eq!(duplicates, 0, "SIGTERM drained without duplicates");
    assert_eq!(second.sigterm(), Some(0));
}

#[test]
#[ignore = "needs a broker: EXPRESSWAY_IT_BROKERS (deploy/kafka-it.sh)"]
fn every_malformed_class_lands_in_the_dlq_and_the_partition_continues() {
    let Some(b) = brokers() else { return };
    let s = Suite::new(b, "dlq", 1, &[("echo", ECHO)]);
    let mut pod = s.serve("pod");
    pod.wait_ready();
    let big = json!({"stateMachine": "echo", "input": "x".repeat(262_144)}).to_string();
    type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a [u8])>);
    let cases: Vec<Case<'_>> = vec![
        ("InvalidJson", b"{not json".to_vec(), vec![]),
        ("InvalidUtf8", b"\xff\xfe\x00".to_vec(), vec![]),
        (
            "InvalidStartEvent",
            br#"{"stateMachine": 5}"#.to_vec(),
            vec![],
        ),
        (
            "UnknownStateMachine",
            br#"{"stateMachine": "nope"}"#.to_vec(),
            vec![],
        ),
        ("InputTooLarge", big.into_bytes(), vec![]),
        (
            "InvalidProtobuf",
            b"\xff\xff\xff\xff".to_vec(),
            vec![("content-type", b"application/x-protobuf")],
        ),
    ];
    let p = s.producer();
    let start = s.topic("start");
    for (i, (_, value, headers)) in cases.iter().enumerate() {
        let mut h = headers.clone();
        h.push(("x-origin", b"it"));
        s.produce(&p, &start, Some(&format!("key{i}")), Some(value), &h);
    }
    p.flush(Duration::from_secs(30)).unwrap();
    s.start_events("echo", 0..1, |_| json!({"ok": true}));

    let mut dlq = s.reader("dlq");
    dlq.until("every dead letter", |r| r.len() >= cases.len());
    let by_source: HashMap<String, &Rec> = dlq
        .records
        .iter()
        .map(|r| (r.header("expressway-source").unwrap(), r))
        .collect();
    for (i, (code, value, _)) in cases.iter().enumerate() {
        let r = by_source
            .get(&format!("{start}/0/{i}"))
            .unwrap_or_else(|| panic!("no dead letter for offset {i}"));
        assert_eq!(r.header("expressway-error").as_deref(), Some(*code));
        assert!(!r.header("expressway-cause").unwrap().is_empty());
        assert_eq!(r.key.as_deref(), Some(format!("key{i}").as_str()));
        assert_eq!(
            r.value.as_deref(),
            Some(value.as_slice()),
            "original value kept"
        );
        assert_eq!(
            r.header("x-origin").as_deref(),
            Some("it"),
            "original headers kept"
        );
        assert_eq!(r.partition, 0);
    }
    let mut results = s.reader("results");
    let ok = results.until("the good event's result", |r| !r.is_empty())[0].json();
    assert_eq!(ok["name"], "e0");
    assert_eq!(ok["status"], "SUCCEEDED");
    s.wait_all_committed(1);
    assert!(pod.counter("expressway_dead_letters_total") >= cases.len() as f64);
    assert_eq!(pod.sigterm(), Some(0));
}

#[test]
#[ignore = "needs a broker: EXPRESSWAY_IT_BROKERS (deploy/kafka-it.sh)"]
fn a_definition_published_to_the_topic_is_runnable_on_every_pod_without_restart() {
    let Some(b) = brokers() else { return };
    let s = Suite::new(b, "definitions", 4, &[]);
    let mut a = s.serve("pod-a");
    let mut bp = s.serve("pod-b");
    a.wait_ready();
    bp.wait_ready();
    let record = json!({
        "definition": r#"{"StartAt":"P","States":{"P":{"Type":"Pass","Parameters":{"late.$":"$.i"},"End":true}}}"#,
        "loggingConfiguration": {"level": "ERROR", "includeExecutionData": false}
    })
    .to_string();
    let p = s.producer();
    s.produce(
        &p,
        &s.topic("definitions"),
        Some("late"),
        Some(record.as_bytes()),
        &[],
    );
    p.flush(Duration::from_secs(30)).unwrap();
    // Probe until the definition is loaded (earlier probes are dead-lettered as
    // UnknownStateMachine, which is the documented behaviour for an unknown machine).
    let mut results = s.reader("results");
    let deadline = Instant::now() + DEADLINE;
    let mut probe = 0usize;
    'probe: loop {
        assert!(
            Instant::now() < deadline,
            "the published definition never became runnable"
        );
        let name = format!("probe{probe}");
        let v = json!({"stateMachine": "late", "name": name, "input": {"i": 0}}).to_string();
        s.produce(&p, &s.topic("start"), Some(&name), Some(v.as_bytes()), &[]);
        p.flush(Duration::from_secs(30)).unwrap();
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            results.poll_some();
            if results
                .records
                .iter()
                .any(|r| r.key.as_deref() == Some(name.as_str()))
            {
                break 'probe;
            }
        }
        probe += 1;
    }
    // Now every partition, whichever pod owns it, runs it.
    let n = 80;
    s.start_events("late", 0..n, |i| json!({"i": i}));
    results.until("every execution", |r| {
        r.iter()
            .filter(|r| r.key.as_deref().is_some_and(|k| k.starts_with('e')))
            .count()
            >= n
    });
    for r in results
        .records
        .iter()
        .filter(|r| r.key.as_deref().is_some_and(|k| k.starts_with('e')))
    {
        let v = r.json();
        assert_eq!(v["status"], "SUCCEEDED", "{v}");
        let i: usize = v["name"].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(v["output"], json!({"late": i}));
    }
    let started = |p: &Pod| p.counter("expressway_executions_started_total");
    assert!(
        started(&a) > 0.0 && started(&bp) > 0.0,
        "both pods ran it: a={} b={}",
        started(&a),
        started(&bp)
    );
    for pod in [a, bp] {
        assert_eq!(pod.sigterm(), Some(0));
    }
}

/// The secure node's listeners and credentials (`kafka.sh start-secure`), or `None`.
struct Secure {
    ssl: String,
    mtls: String,
    sasl_ssl: String,
    ca: String,
    cert: String,
    key: String,
    user: String,
    password: String,
}

fn secure() -> Option<Secure> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let got = (|| {
        Some(Secure {
            ssl: var("EXPRESSWAY_IT_SSL_BROKERS")?,
            mtls: var("EXPRESSWAY_IT_MTLS_BROKERS")?,
            sasl_ssl: var("EXPRESSWAY_IT_SASL_SSL_BROKERS")?,
            ca: var("EXPRESSWAY_IT_CA")?,
            cert: var("EXPRESSWAY_IT_CLIENT_CERT")?,
            key: var("EXPRESSWAY_IT_CLIENT_KEY")?,
            user: var("EXPRESSWAY_IT_SCRAM_USER")?,
            password: var("EXPRESSWAY_IT_SCRAM_PASSWORD")?,
        })
    })();
    if got.is_none() {
        eprintln!("EXPRESSWAY_IT_SSL_BROKERS and the other secure-listener variables are not all set: skipping (see deploy/kafka-it.sh)");
    }
    got
}

fn settings(kv: &[(&str, &str)]) -> Vec<(String, String)> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Whether a client with exactly `kv` gets the cluster's metadata from `brokers`.
fn can_read_metadata(brokers: &str, kv: &[(String, String)]) -> bool {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in kv {
        c.set(k, v);
    }
    let probe: BaseConsumer = c.create().unwrap();
    probe.fetch_metadata(None, Duration::from_secs(5)).is_ok()
}

/// A pod, `start` and the readers all on `brokers` with the librdkafka settings `kv`: 50
/// executions, every result and log record back, offsets committed. Returns the pod's log.
fn round_trip(brokers: &str, kv: Vec<(String, String)>, test: &str) -> String {
    assert!(
        can_read_metadata(brokers, &kv),
        "a client with the right settings reads {brokers}"
    );
    let s = Suite::new_with(brokers.to_string(), kv, test, 2, &[("choose", CHOOSE)]);
    let mut pod = s.serve("pod");
    pod.wait_ready();
    let n = 50;
    s.start_events("choose", 0..n, |i| json!({"i": i, "fail": false}));
    let mut results = s.reader("results");
    results.until("every execution", all_names(n));
    check_results_complete(&results.records, n);
    let mut logs = s.reader("logs");
    logs.until("every log record", |r| r.len() >= n);
    s.wait_all_committed(2);
    let log = pod.stderr();
    assert_eq!(pod.sigterm(), Some(0));
    log
}

/// TLS to the broker's own SSL listener (librdkafka with rdkafka's vendored OpenSSL), the broker's
/// certificate signed by a throw-away CA.
#[test]
#[ignore = "needs the secure node: EXPRESSWAY_IT_SSL_BROKERS, EXPRESSWAY_IT_CA, ... (deploy/kafka-it.sh)"]
fn serve_start_and_read_back_over_tls() {
    let Some(sec) = secure() else { return };
    assert!(
        !can_read_metadata(&sec.ssl, &settings(&[("security.protocol", "SSL")])),
        "a certificate from an unknown CA is rejected"
    );
    assert!(
        !can_read_metadata(&sec.ssl, &[]),
        "a plaintext client gets nothing from the TLS listener"
    );
    let tls = settings(&[("security.protocol", "SSL"), ("ssl.ca.location", &sec.ca)]);
    round_trip(&sec.ssl, tls, "tls");
}

/// Mutual TLS: the listener requires a client certificate signed by the CA.
#[test]
#[ignore = "needs the secure node: EXPRESSWAY_IT_MTLS_BROKERS, EXPRESSWAY_IT_CLIENT_CERT, ... (deploy/kafka-it.sh)"]
fn serve_over_mutual_tls_and_a_client_without_a_certificate_is_rejected() {
    let Some(sec) = secure() else { return };
    let server_only = settings(&[("security.protocol", "SSL"), ("ssl.ca.location", &sec.ca)]);
    assert!(
        !can_read_metadata(&sec.mtls, &server_only),
        "a client without a certificate is rejected"
    );
    let mut mutual = server_only;
    mutual.extend(settings(&[
        ("ssl.certificate.location", &sec.cert),
        ("ssl.key.location", &sec.key),
    ]));
    round_trip(&sec.mtls, mutual, "mtls");
}

/// SASL_SSL with SCRAM-SHA-512 (the user created at format time with `--add-scram`).
#[test]
#[ignore = "needs the secure node: EXPRESSWAY_IT_SASL_SSL_BROKERS, EXPRESSWAY_IT_SCRAM_USER, ... (deploy/kafka-it.sh)"]
fn serve_over_sasl_scram_sha_512_and_a_wrong_password_is_rejected() {
    let Some(sec) = secure() else { return };
    let scram = |password: &str| {
        settings(&[
            ("security.protocol", "SASL_SSL"),
            ("ssl.ca.location", &sec.ca),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", &sec.user),
            ("sasl.password", password),
        ])
    };
    assert!(
        !can_read_metadata(&sec.sasl_ssl, &scram("not-the-password")),
        "a wrong password is rejected"
    );
    let log = round_trip(&sec.sasl_ssl, scram(&sec.password), "scram");
    assert!(
        !log.contains(&sec.password),
        "the pod never logs the SASL password"
    );
}

/// Start events produced at a steady rate by a background thread (`e0`, `e1`, ... keyed `k<i>`).
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Load {
    fn start(s: &Suite, machine: &str, per_second: f64, input: fn(usize) -> Value) -> Load {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let sent = std::sync::Arc::new(AtomicUsize::new(0));
        let p = s.producer();
        let topic = s.topic("start");
        let machine = machine.to_string();
        let (stop2, sent2) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut i = 0usize;
            while !stop2.load(Ordering::Relaxed) {
                let due = t0 + Duration::from_secs_f64(i as f64 / per_second);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    p.poll(wait);
                    continue;
                }
                let v =
                    json!({"stateMachine": machine, "name": format!("e{i}"), "input": input(i)})
                        .to_string();
                produce_to(&p, &topic, Some(&format!("k{i}")), Some(v.as_bytes()), &[]);
                i += 1;
                sent2.store(i, Ordering::Relaxed);
            }
            p.flush(Duration::from_secs(60)).unwrap();
            i
        });
        Load {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    /// Start events handed to the producer so far.
    fn sent(&self) -> usize {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until `n` more events were sent.
    fn wait_more(&self, n: usize) {
        let target = self.sent() + n;
        wait_until(&format!("{target} start events sent"), || {
            self.sent() >= target
        });
    }

    /// Stops the load; returns how many events were sent (all acknowledged).
    fn stop(mut self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Every `e<i>` with `i < n` has a result.
fn names_below(n: usize) -> impl Fn(&[Rec]) -> bool {
    move |r: &[Rec]| {
        let names: HashSet<&str> = r.iter().filter_map(|r| r.key.as_deref()).collect();
        (0..n).all(|i| names.contains(format!("e{i}").as_str()))
    }
}

/// Result records beyond the first per name: re-runs.
fn reruns(r: &[Rec]) -> usize {
    let names: HashSet<&str> = r.iter().filter_map(|r| r.key.as_deref()).collect();
    r.len() - names.len()
}

/// Rebalances on Kafka, measured: 3 pods on 8 partitions under steady load (100 executions/s of
/// 0.1 s each); a fourth pod joins, then one leaves with SIGTERM, then one is killed. For each
/// event, the re-runs (results of the same execution name beyond the first) between the event and
/// the moment every execution started up to 8 s after it has a result. With cooperative-sticky
/// and the drain before a partition is released, the graceful join and leave re-run nothing.
#[test]
#[ignore = "needs a broker: EXPRESSWAY_IT_BROKERS (deploy/kafka-it.sh)"]
fn rebalance_figures_join_leave_and_kill_under_steady_load() {
    let Some(b) = brokers() else { return };
    let partitions = 8;
    let s = Suite::new(b, "rebalance-figures", partitions, &[("sleepy", SLEEPY)]);
    let mut pods: Vec<Pod> = ["pod-a", "pod-b", "pod-c"]
        .iter()
        .map(|l| s.serve(l))
        .collect();
    for p in &mut pods {
        p.wait_ready();
    }
    let rate = 100.0;
    let load = Load::start(&s, "sleepy", rate, |i| json!({"i": i, "sleep": 0.1}));
    let mut results = s.reader("results");
    let settle = |results: &mut Reader, what: &str| {
        load.wait_more((8.0 * rate) as usize);
        let n = load.sent();
        results.until(
            &format!("every result up to e{n} after {what}"),
            names_below(n),
        );
        reruns(&results.records)
    };
    let before = settle(&mut results, "the start");
    assert_eq!(before, 0, "no re-runs while the group is stable");

    pods.push(s.serve("pod-d"));
    pods.last_mut().unwrap().wait_ready();
    let after_join = settle(&mut results, "the join");

    let leaving = pods.remove(0);
    assert_eq!(
        leaving.sigterm(),
        Some(0),
        "the leaving pod drained and exited 0"
    );
    let after_leave = settle(&mut results, "the SIGTERM leave");

    let killed = pods.remove(0);
    killed.signal("-KILL");
    drop(killed);
    let after_kill = settle(&mut results, "the SIGKILL");

    let n = load.stop();
    results.until("every result", names_below(n));
    s.wait_all_committed(partitions);
    results.settle(Duration::from_secs(1));
    let total = check_results_complete(&results.records, n);
    let (join, leave, kill) = (
        after_join - before,
        after_leave - after_join,
        after_kill - after_leave,
    );
    eprintln!(
        "rebalance figures: 3 pods, {partitions} partitions, {rate} start events/s of 0.1 s, {n} executions: \
         re-runs on join {join}, on SIGTERM leave {leave}, on SIGKILL {kill}, after the kill {} (total {total})",
        total - after_kill
    );
    assert_eq!(join, 0, "a pod joining re-runs nothing");
    assert_eq!(leave, 0, "a pod leaving with SIGTERM re-runs nothing");
    for p in pods {
        assert_eq!(p.sigterm(), Some(0));
    }
}

/// The `deploy/kafka/kafka.sh` that started the cluster.
fn kafka_sh(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/kafka/kafka.sh");
    let ok = Command::new("bash")
        .arg(script)
        .args(args)
        .status()
        .unwrap();
    assert!(ok.success(), "kafka.sh {args:?} failed");
}

/// Partition `partition` of `topic`: (leader, replicas, in-sync replicas).
fn replicas(s: &Suite, topic: &str, partition: i32) -> (i32, Vec<i32>, Vec<i32>) {
    let c: BaseConsumer = s.client().create().unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let p = md.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .unwrap();
    (p.leader(), p.replicas().to_vec(), p.isr().to_vec())
}

/// A 3-node cluster (replication 3, min.insync.replicas 2) loses the leader of `start/0` to
/// SIGKILL while two pods run executions under steady load: the producer and the pods carry on
/// (results keep coming while the node is down), the node comes back and rejoins every ISR, and
/// every start event has a result (re-runs allowed, same ARN; nothing lost).
#[test]
#[ignore = "needs a 3-node cluster: EXPRESSWAY_IT_CLUSTER_BROKERS + EXPRESSWAY_IT_CLUSTER_NAME (deploy/kafka-it.sh)"]
fn losing_one_node_of_three_loses_nothing_and_the_node_catches_up() {
    let (Ok(b), Ok(cluster)) = (
        std::env::var("EXPRESSWAY_IT_CLUSTER_BROKERS"),
        std::env::var("EXPRESSWAY_IT_CLUSTER_NAME"),
    ) else {
        eprintln!("EXPRESSWAY_IT_CLUSTER_BROKERS / EXPRESSWAY_IT_CLUSTER_NAME not set: skipping");
        return;
    };
    let partitions = 8;
    let s = Suite::new(b, "node-loss", partitions, &[("sleepy", SLEEPY)]);
    let start = s.topic("start");
    let (victim, replica_set, _) = replicas(&s, &start, 0);
    assert_eq!(
        replica_set.len(),
        3,
        "the start topic is replicated 3 times"
    );
    let mut pods = [s.serve("pod-a"), s.serve("pod-b")];
    for p in &mut pods {
        p.wait_ready();
    }
    let load = Load::start(&s, "sleepy", 50.0, |i| json!({"i": i, "sleep": 0.05}));
    let mut results = s.reader("results");
    load.wait_more(100);
    results.until("results before the node loss", all_names(50));

    kafka_sh(&["node-stop", &cluster, &victim.to_string(), "-9"]);
    let at_kill = load.sent();
    let done_at_kill = results.keys().len();
    wait_until("a new leader for start/0", || {
        let (leader, _, isr) = replicas(&s, &start, 0);
        leader != victim && leader >= 0 && !isr.contains(&victim)
    });
    // Writable and running without the node: results for events sent after the kill.
    load.wait_more(250);
    let while_down = load.sent();
    results.until("results while the node is down", names_below(while_down));
    let started = |p: &Pod| p.counter("expressway_executions_started_total");
    assert!(
        pods.iter().all(|p| started(p) > 0.0),
        "both pods kept running executions"
    );

    kafka_sh(&["node-start", &cluster, &victim.to_string()]);
    load.wait_more(100);
    let n = load.stop();
    results.until("every result", names_below(n));
    s.wait_all_committed(partitions);
    for what in ["start", "results", "logs", "dlq", "definitions"] {
        let topic = s.topic(what);
        let count = if what == "start" { partitions } else { 1 };
        for p in 0..count {
            wait_until(
                &format!("node {victim} back in the ISR of {topic}/{p}"),
                || replicas(&s, &topic, p).2.contains(&victim),
            );
        }
    }
    results.settle(Duration::from_secs(1));
    let duplicates = check_results_complete(&results.records, n);
    eprintln!(
        "node loss: node {victim} (leader of start/0) killed after {at_kill} start events ({done_at_kill} results), \
         {} more while it was down, {n} in all: every one has a result, {duplicates} re-runs (same ARN), \
         the node rejoined every ISR",
        while_down - at_kill
    );
    for p in pods {
        assert_eq!(p.sigterm(), Some(0));
    }
}

// ---- concurrent writers -------------------------------------------------------------------

/// One API call over a plain HTTP/1.1 connection (blocking).
fn post(addr: std::net::SocketAddr, op: &str, body: Value) -> (u16, Value) {
    let body = body.to_string();
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nX-Amz-Target: AWSStepFunctions.{op}\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Two gateway replicas publishing versions of one machine at the same moment (issue #13,
/// "Concurrent writers"): every publication gets its own number, the numbers are 1..=N without
/// gaps, and both replicas end up with the same versions. The replicas share the definitions
/// topic's writer lease through Kafka's transactional fencing (the gateway's
/// `definitions_writer.rs`); librdkafka's mock cluster does not fence, so this runs here.
#[test]
#[ignore = "needs a broker: EXPRESSWAY_IT_BROKERS (deploy/kafka-it.sh)"]
fn racing_gateway_replicas_never_publish_the_same_version_number() {
    use expressway_executor::Registry;
    use expressway_gateway::{Options, ServerConfig, Topics};
    use std::sync::Arc;
    let Some(brokers) = brokers() else { return };
    let s = Suite::new(brokers.clone(), "race", 1, &[]);
    let topics = Topics {
        start: s.topic("start"),
        logs: s.topic("logs"),
        results: s.topic("results"),
        definitions: s.topic("definitions"),
        callbacks: s.topic("callbacks"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let start = |registry: Arc<Registry>| {
            expressway_gateway::start(
                Options {
                    brokers: brokers.clone(),
                    kafka: Vec::new(),
                    topics: topics.clone(),
                    follow_definitions: true,
                    listen: "127.0.0.1:0".parse().expect("addr"),
                    server: ServerConfig::default(),
                    console: None,
                    task_token_key: None,
                },
                registry,
                expressway_executor::default_engine_runtime(),
            )
        };
        let registries = [
            Arc::new(Registry::new("us-east-1", "123456789012")),
            Arc::new(Registry::new("us-east-1", "123456789012")),
        ];
        let a = start(registries[0].clone()).await.expect("replica a");
        let b = start(registries[1].clone()).await.expect("replica b");
        let def = r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#;
        let addr = a.addr;
        let (st, r) = tokio::task::spawn_blocking(move || {
            post(
                addr,
                "CreateStateMachine",
                json!({"name": "race", "definition": def, "type": "EXPRESS"}),
            )
        })
        .await
        .expect("create");
        assert_eq!(st, 200, "{r}");
        let arn = "arn:aws:states:us-east-1:123456789012:stateMachine:race";
        let deadline = Instant::now() + Duration::from_secs(20);
        while registries[1].get("race").is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        const EACH: usize = 12;
        let publish = |addr, who: &'static str, i: usize| async move {
            let (st, r) = tokio::task::spawn_blocking(move || {
                post(
                    addr,
                    "PublishStateMachineVersion",
                    json!({"stateMachineArn": arn, "description": format!("{who}-{i}")}),
                )
            })
            .await
            .expect("publish");
            assert_eq!(st, 200, "{who}-{i}: {r}");
            let v = r["stateMachineVersionArn"].as_str().expect("version arn");
            let n: u64 = v
                .rsplit(':')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("number");
            (n, format!("{who}-{i}"))
        };
        let calls: Vec<_> = (0..EACH)
            .flat_map(|i| [publish(a.addr, "a", i), publish(b.addr, "b", i)])
            .map(tokio::spawn)
            .collect();
        let mut got: Vec<(u64, String)> = Vec::new();
        for c in calls {
            got.push(c.await.expect("publication"));
        }
        got.sort();
        let numbers: Vec<u64> = got.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            numbers,
            (1..=(2 * EACH) as u64).collect::<Vec<_>>(),
            "every publication its own number, without gaps: {got:?}"
        );
        // Both replicas converge on the same versions, each with the description its
        // publication sent.
        for registry in &registries {
            let deadline = Instant::now() + Duration::from_secs(20);
            while registry.versions_of("race").len() < 2 * EACH && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            for (n, description) in &got {
                let v = registry
                    .version("race", *n)
                    .expect("version known to both replicas");
                assert_eq!(
                    v.record.get("description").and_then(Value::as_str),
                    Some(description.as_str())
                );
            }
        }
        a.shutdown().await;
        b.shutdown().await;
    });
}

/// Sleeps `$.sleep` seconds, publishes `{"i"}` to the test's `out` topic (key = execution
/// name), then succeeds with the publish acknowledgement.
const SLEEP_THEN_PUBLISH: &str = r#"{"StartAt":"S","States":{
  "S":{"Type":"Task","Resource":"arn:aws:states:::expressway:test","Parameters":{"SleepSeconds.$":"$.sleep","Result.$":"$"},"ResultPath":null,"Next":"P"},
  "P":{"Type":"Task","Resource":"arn:aws:states:::kafka:publish",
       "Parameters":{"Topic.$":"$.out","Key.$":"$$.Execution.Name","Value":{"i.$":"$.i"}},"End":true}}}"#;

/// Exactly-once settings for a pod with a fixed `transactional.id`.
fn eos_env(id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("EXPRESSWAY_GUARANTEE", "exactly-once".to_string()),
        ("EXPRESSWAY_TRANSACTIONAL_ID", id.to_string()),
    ]
}

fn serve_eos(s: &Suite, label: &str, id: &str) -> Pod {
    let env = eos_env(id);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    s.serve_with(label, &env)
}

/// Every name `e0..e<n>` exactly once among `recs` (keyed by name or, for logs, by ARN).
fn exactly_once_by(recs: &[Rec], n: usize, name_of: impl Fn(&Rec) -> String, what: &str) {
    let mut count: HashMap<String, usize> = HashMap::new();
    for r in recs {
        *count.entry(name_of(r)).or_default() += 1;
    }
    let dup: Vec<_> = count.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        dup.is_empty(),
        "{what}: duplicates for read_committed readers: {dup:?}"
    );
    for i in 0..n {
        assert!(count.contains_key(&format!("e{i}")), "{what}: e{i} missing");
    }
    assert_eq!(count.len(), n, "{what}: names never sent");
}

/// The execution name at the end of an ARN `...:express:machine:name:uuid`.
fn name_of_arn(arn: &str) -> String {
    let parts: Vec<&str> = arn.split(':').collect();
    parts[parts.len() - 2].to_string()
}

fn check_exactly_once(s: &Suite, n: usize) {
    let mut results = s.committed_reader("results");
    let mut logs = s.committed_reader("logs");
    let mut out = s.committed_reader("out");
    results.until("every result", all_names(n));
    logs.until("every log", |r| r.len() >= n);
    out.until("every published record", all_names(n));
    results.settle(Duration::from_secs(2));
    logs.settle(Duration::from_millis(500));
    out.settle(Duration::from_millis(500));
    exactly_once_by(
        &results.records,
        n,
        |r| r.key.clone().unwrap_or_default(),
        "results",
    );
    exactly_once_by(
        &logs.records,
        n,
        |r| name_of_arn(r.key.as_deref().unwrap_or_default()),
        "logs",
    );
    exactly_once_by(
        &out.records,
        n,
        |r| r.key.clone().unwrap_or_default(),
        "published",
    );
    for r in &results.records {
        assert_eq!(r.json()["status"], "SUCCEEDED", "{}", r.json());
    }
    // What a reader without read_committed sees: aborted attempts too.
    let mut raw = s.reader("results");
    raw.until("every result", all_names(n));
    raw.settle(Duration::from_millis(500));
    eprintln!(
        "exactly-once: {n} executions; read_committed: {} results, {} logs, {} published; read_uncommitted: {} results",
        results.records.len(),
        logs.records.len(),
        out.records.len(),
        raw.records.len()
    );
}

#[test]
#[ignore = "needs a broker: EXPRESSWAY_IT_BROKERS (deploy/kafka-it.sh)"]
fn exactly_once_two_pods_one_killed_and_restarted_read_committed_sees_each_record_once() {
    let Some(b) = brokers() else { return };
    let s = Suite::new(b, "eos-kill", 4, &[("pub", SLEEP_THEN_PUBLISH)]);
    s.create_topics(&[(s.topic("out"), 2)]);
    let mut a = serve_eos(&s, "pod-a", &format!("{}-a", s.prefix));
    let mut bp = serve_eos(&s, "pod-b", &format!("{}-b", s.prefix));
    a.wait_ready();
    bp.wait_ready();
    let n = 400;
    let out = s.topic("out");
    s.start_events(
        "pub",
        0..n,
        |i| json!({"i": i, "sleep": 0.02 * (i % 10) as f64, "out": out}),
    );
    let mut results = s.committed_reader("results");
    results.until("a quarter of the results", |r| r.len() >= n / 4);
    // SIGKILL in the middle of the run: its open transaction holds records of finished
    // executions whose offsets are not committed.
    a.signal("-KILL");
    a.wait_exit();
    // The same transactional.id: the restarted pod aborts its predecessor's open transaction in
    // init_transactions.
    let mut a2 = serve_eos(&s, "pod-a-restarted", &format!("{}-a", s.prefix));
    a2.wait_ready();
    check_exactly_once(&s, n);
    s.wait_all_committed(4);
    let committed =
        a2.counter("expressway_transactions_total") + bp.counter("expressway_transactions_total");
    assert!(committed > 0.0, "transactions are counted");
    assert_eq!(a2.sigterm(), Some(0));
    assert_eq!(bp.sigterm(), Some(0));
}

#[test]
#[ignore = "needs a broker: EXPRESSWAY_IT_BROKERS (deploy/kafka-it.sh)"]
fn exactly_once_a_zombie_woken_after_the_session_timeout_commits_nothing() {
    let Some(b) = brokers() else { return };
    let s = Suite::new(b, "eos-zombie", 2, &[("pub", SLEEP_THEN_PUBLISH)]);
    s.create_topics(&[(s.topic("out"), 1)]);
    let mut zombie = serve_eos(&s, "pod-zombie", &format!("{}-z", s.prefix));
    zombie.wait_ready();
    let n = 60;
    let out = s.topic("out");
    // Long enough that executions are in flight (some already published) when it stops.
    s.start_events(
        "pub",
        0..n,
        |i| json!({"i": i, "sleep": 0.5 + 0.05 * (i % 20) as f64, "out": out}),
    );
    let mut raw = s.reader("out");
    raw.until("some published records", |r| !r.is_empty());
    zombie.signal("-STOP");
    // Its partitions go to the other pod once the session times out (6 s).
    let mut other = serve_eos(&s, "pod-other", &format!("{}-o", s.prefix));
    other.wait_ready();
    let mut results = s.committed_reader("results");
    results.until("every result (from the other pod)", all_names(n));
    zombie.signal("-CONT");
    // The zombie finishes its executions and tries to commit: refused (KIP-447), aborted.
    std::thread::sleep(Duration::from_secs(5));
    check_exactly_once(&s, n);
    let log = zombie.stderr();
    eprintln!(
        "zombie: aborted transactions {}, refusal logged: {}",
        zombie.counter("expressway_transactions_total{result=\"aborted\"}"),
        log.contains("aborting the transaction")
    );
    assert!(
        log.contains("aborting the transaction"),
        "the zombie aborted its transaction:\n{log}"
    );
    assert_eq!(other.sigterm(), Some(0));
    drop(zombie);
}

#[test]
#[ignore = "needs a broker: EXPRESSWAY_IT_BROKERS (deploy/kafka-it.sh)"]
fn exactly_once_a_pod_joining_mid_run_revokes_by_committing_and_nothing_is_duplicated() {
    let Some(b) = brokers() else { return };
    let s = Suite::new(b, "eos-join", 4, &[("pub", SLEEP_THEN_PUBLISH)]);
    s.create_topics(&[(s.topic("out"), 2)]);
    let mut a = serve_eos(&s, "pod-a", &format!("{}-a", s.prefix));
    a.wait_ready();
    let n = 300;
    let out = s.topic("out");
    s.start_events(
        "pub",
        0..n,
        |i| json!({"i": i, "sleep": 0.02 * (i % 10) as f64, "out": out}),
    );
    let mut results = s.committed_reader("results");
    results.until("some results", |r| r.len() >= n / 5);
    // A second pod joins: pod a's revoke drains the revoked partitions and commits the open
    // transaction with their offsets before releasing them.
    let mut bp = serve_eos(&s, "pod-b", &format!("{}-b", s.prefix));
    bp.wait_ready();
    check_exactly_once(&s, n);
    s.wait_all_committed(4);
    let log = a.stderr();
    assert!(
        log.contains("partitions revoked"),
        "pod a gave partitions to pod b:\n{log}"
    );
    eprintln!(
        "join: pod a aborted {} transactions (revoke fell back to abort: {})",
        a.counter("expressway_transactions_total{result=\"aborted\"}"),
        log.contains("revoke: writers did not finish")
    );
    assert_eq!(a.sigterm(), Some(0));
    assert_eq!(bp.sigterm(), Some(0));
}

/// Waits for a callback: publishes the token (with the order) to the test's payments topic.
fn pay_definition(payments_topic: &str) -> String {
    json!({"StartAt": "Charge", "States": {"Charge": {"Type": "Task",
        "Resource": "arn:aws:states:::kafka:publish.waitForTaskToken",
        "Parameters": {"Topic": payments_topic,
            "Value": {"taskToken.$": "$$.Task.Token", "order.$": "$.order"}},
        "End": true}}})
    .to_string()
}

/// Runs an `expressway send-task-*` command against the suite's callback topic.
fn send_task(s: &Suite, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_expressway"))
        .args(args)
        .arg("--brokers")
        .arg(&s.brokers)
        .arg("--topic")
        .arg(s.topic("callbacks"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "expressway {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs a broker: EXPRESSWAY_IT_BROKERS (deploy/kafka-it.sh)"]
fn a_pod_killed_while_executions_wait_for_callbacks_is_replaced_and_the_callbacks_complete_them() {
    let Some(b) = brokers() else { return };
    // The payments topic's name must be in the definition, before the suite exists.
    let payments = format!("it{}-callbacks.payments", std::process::id());
    let pay = pay_definition(&payments);
    let s = Suite::new(b, "callbacks", 2, &[("pay", &pay)]);
    assert_eq!(s.topic("payments"), payments);
    s.create_topics(&[(s.topic("callbacks"), 2), (payments.clone(), 1)]);
    let callbacks_topic = s.topic("callbacks");
    let env = [
        (
            "EXPRESSWAY_TASK_TOKEN_KEY",
            "it-callbacks-0123456789abcdef0123456789abcdef",
        ),
        ("EXPRESSWAY_CALLBACKS_TOPIC", callbacks_topic.as_str()),
    ];
    let n = 20;
    let mut first = s.serve_with("pod-waiting", &env);
    first.wait_ready();
    s.start_events("pay", 0..n, |i| json!({"order": i}));
    // Every execution has sent its request (with its token) and waits.
    let mut requests = s.reader("payments");
    requests.until("every payment request", |r| r.len() >= n);
    let tokens: HashMap<u64, String> = requests
        .records
        .iter()
        .map(|r| {
            let v = r.json();
            (
                v["order"].as_u64().unwrap(),
                v["taskToken"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(tokens.len(), n, "one token per execution");
    first.signal("-KILL");
    first.wait_exit();
    // The payment service answers while no pod runs: even orders succeed, odd ones fail.
    for (order, token) in &tokens {
        if order.is_multiple_of(2) {
            let output = json!({"paid": order}).to_string();
            send_task(
                &s,
                &[
                    "send-task-success",
                    "--task-token",
                    token,
                    "--task-output",
                    &output,
                ],
            );
        } else {
            send_task(
                &s,
                &[
                    "send-task-failure",
                    "--task-token",
                    token,
                    "--error",
                    "PaymentDeclined",
                    "--cause",
                    "card expired",
                ],
            );
        }
    }
    let mut second = s.serve_with("pod-replacement", &env);
    second.wait_ready();
    let mut results = s.reader("results");
    results.until("every execution", all_names(n));
    s.wait_all_committed(2);
    results.settle(Duration::from_secs(1));
    check_results_complete(&results.records, n);
    for r in &results.records {
        let v = r.json();
        let name = v["name"].as_str().unwrap();
        let i: u64 = name.trim_start_matches('e').parse().unwrap();
        if i.is_multiple_of(2) {
            assert_eq!(v["status"], "SUCCEEDED", "{v}");
            assert_eq!(v["output"], json!({"paid": i}), "{v}");
        } else {
            assert_eq!(v["status"], "FAILED", "{v}");
            assert_eq!(v["error"], "PaymentDeclined", "{v}");
        }
    }
    // The re-runs sent their requests again with the same tokens, which the callbacks named.
    requests.until("the re-runs' requests", |r| r.len() >= 2 * n);
    let again: HashSet<String> = requests.records[n..]
        .iter()
        .map(|r| r.json()["taskToken"].as_str().unwrap().to_string())
        .collect();
    let first_tokens: HashSet<String> = tokens.values().cloned().collect();
    assert!(
        again.is_subset(&first_tokens),
        "a re-run minted a new token"
    );
    eprintln!("callbacks: {n} executions waited, their pod was SIGKILLed, the {n} callbacks sent while no pod ran completed them on its replacement");
    assert_eq!(second.sigterm(), Some(0));
}

const MAP_OVER_TOPIC: &str = r#"{"StartAt":"M","States":{"M":{"Type":"Map",
  "ItemReader":{"Resource":"arn:aws:states:::kafka:getRecords",
    "Parameters":{"Topic.$":"$.topic","StartTimestamp.$":"$.from","EndTimestamp.$":"$.to"}},
  "ItemSelector":{"v.$":"$$.Map.Item.Value.Value","p.$":"$$.Map.Item.Value.Partition"},
  "ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"EXPRESS"},
    "StartAt":"P","States":{"P":{"Type":"Pass","End":true}}},
  "End":true}}}"#;

/// A Distributed Map whose items are the records of a topic between two timestamps
/// (`kafka:getRecords`, record_reader.rs), run by a pod on Apache Kafka. The mock cluster cannot
/// look offsets up by time, so this is the timestamp test.
#[test]
#[ignore = "needs a broker: EXPRESSWAY_IT_BROKERS (deploy/kafka-it.sh)"]
fn a_distributed_map_reads_its_items_from_a_topic_between_two_timestamps() {
    let Some(b) = brokers() else { return };
    let s = Suite::new(b, "getrecords", 1, &[("overtopic", MAP_OVER_TOPIC)]);
    let items = s.topic("items");
    s.create_topics(&[(items.clone(), 2)]);
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 60_000;
    let p = s.producer();
    // Partition 0 and 1 each get records at base + 0, 1, 2, 3, 4 s.
    for partition in 0..2 {
        for n in 0..5i64 {
            let v = json!({"n": n, "partition": partition}).to_string();
            p.send(
                BaseRecord::<str, str>::to(&items)
                    .partition(partition)
                    .payload(&v)
                    .timestamp(base + n * 1000),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
    let mut pod = s.serve("pod");
    pod.wait_ready();
    s.start_events(
        "overtopic",
        0..1,
        |_| json!({"topic": items, "from": base + 1000, "to": base + 3000}),
    );
    let mut results = s.reader("results");
    results.until("the map's result", |r| !r.is_empty());
    let v = results.records[0].json();
    assert_eq!(v["status"], "SUCCEEDED", "{v}");
    let want: Vec<Value> = (0..2)
        .flat_map(|p| (1..3).map(move |n| json!({"v": {"n": n, "partition": p}, "p": p})))
        .collect();
    assert_eq!(
        v["output"],
        Value::Array(want),
        "records at [from, to) of both partitions"
    );
    assert_eq!(pod.sigterm(), Some(0));
}

/// A Distributed Map over the records of the topic `$.topic` (`kafka:getRecords`: AWS caps a
/// state's input at 256 KiB, so 100,000 items come from a reader), whose children (batches of
/// `$.batch` items) wait `$.wait` seconds and report how many items they had and the first one.
const FAN_OUT: &str = r#"{"StartAt":"M","States":{"M":{"Type":"Map",
  "ItemReader":{"Resource":"arn:aws:states:::kafka:getRecords","Parameters":{"Topic.$":"$.topic"}},
  "ItemSelector":{"v.$":"$$.Map.Item.Value.Value"},
  "MaxConcurrencyPath":"$.concurrency",
  "ItemBatcher":{"MaxItemsPerBatchPath":"$.batch","BatchInput":{"wait.$":"$.wait"}},
  "ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"EXPRESS"},
    "StartAt":"W","States":{
      "W":{"Type":"Wait","SecondsPath":"$.BatchInput.wait","Next":"P"},
      "P":{"Type":"Pass","Parameters":{"n.$":"States.ArrayLength($.Items)","first.$":"$.Items[0].v"},"End":true}}},
  "End":true}}}"#;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Distributed Map children across the cluster (`crate::map_children` of the executor): 3 pods
/// on 8 partitions, the children are start events every pod runs, their outcomes reach the
/// parent through the callback topic; the parent's pod is SIGKILLed in the middle and replaced.
/// The re-run parent finds the children that had finished or started (no child runs twice but
/// those written and not begun yet) and the Map's output has every batch once, in order.
///
/// Sized for CI by default (3,000 items in batches of 30, each child waiting 1 s, 10 at a
/// time); the figures of the README come from the same test with `EXPRESSWAY_IT_MAP_ITEMS`,
/// `_BATCH`, `_WAIT`, `_CONCURRENCY` and `_KILL` (0: no kill) set, e.g.
/// `EXPRESSWAY_IT_MAP_ITEMS=100000 EXPRESSWAY_IT_MAP_BATCH=100 EXPRESSWAY_IT_MAP_WAIT=0
/// EXPRESSWAY_IT_MAP_CONCURRENCY=100 bash deploy/kafka-it.sh distributed_map_fans_out`.
#[test]
#[ignore = "needs a broker: EXPRESSWAY_IT_BROKERS (deploy/kafka-it.sh)"]
fn a_distributed_map_fans_out_over_three_pods_and_survives_the_kill_of_its_parents_pod() {
    let Some(b) = brokers() else { return };
    let items = env_or("EXPRESSWAY_IT_MAP_ITEMS", 3000) as usize;
    let batch = env_or("EXPRESSWAY_IT_MAP_BATCH", 30) as usize;
    let wait = env_or("EXPRESSWAY_IT_MAP_WAIT", 1);
    let concurrency = env_or("EXPRESSWAY_IT_MAP_CONCURRENCY", 10);
    let kill = env_or("EXPRESSWAY_IT_MAP_KILL", 1) == 1;
    let children = items.div_ceil(batch);
    let s = Suite::new(b, "mapfanout", 8, &[("fan", FAN_OUT)]);
    let items_topic = s.topic("items");
    s.create_topics(&[(s.topic("callbacks"), 8), (items_topic.clone(), 1)]);
    let p = s.producer();
    for i in 0..items {
        let v = i.to_string();
        s.produce(&p, &items_topic, None, Some(v.as_bytes()), &[]);
        if i % 10_000 == 9_999 {
            p.flush(Duration::from_secs(60)).unwrap();
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
    let callbacks_topic = s.topic("callbacks");
    let env = [
        (
            "EXPRESSWAY_TASK_TOKEN_KEY",
            "it-map-children-0123456789abcdef0123456789abcdef",
        ),
        ("EXPRESSWAY_CALLBACKS_TOPIC", callbacks_topic.as_str()),
    ];
    let mut pods: Vec<Pod> = (0..3)
        .map(|i| s.serve_with(&format!("pod-{i}"), &env))
        .collect();
    for p in &mut pods {
        p.wait_ready();
    }
    let input =
        json!({"topic": items_topic, "batch": batch, "wait": wait, "concurrency": concurrency});
    let start = json!({"stateMachine": "fan", "name": "parent", "input": input}).to_string();
    let t0 = Instant::now();
    s.produce(
        &p,
        &s.topic("start"),
        Some("parent"),
        Some(start.as_bytes()),
        &[],
    );
    p.flush(Duration::from_secs(60)).unwrap();

    let mut results = s.reader("results");
    let mut killed = None;
    if kill {
        // The parent's pod is the one that emits children; kill it once a third have finished.
        results.until("a third of the children", |r| r.len() >= children / 3);
        let parent_pod = (0..pods.len())
            .find(|i| pods[*i].counter("expressway_map_children_total{event=\"emitted\"}") > 0.0)
            .expect("a pod emits the children");
        pods[parent_pod].signal("-KILL");
        pods[parent_pod].wait_exit();
        killed = Some((parent_pod, results.records.len(), t0.elapsed()));
        let mut replacement = s.serve_with("pod-replacement", &env);
        replacement.wait_ready();
        pods[parent_pod] = replacement;
    }
    let deadline = DEADLINE.max(Duration::from_secs(60 + (items as u64) / 200));
    let started = Instant::now();
    loop {
        results.poll_some();
        if results.records.iter().any(|r| r.json()["name"] == "parent") {
            break;
        }
        assert!(
            started.elapsed() < deadline,
            "the parent never finished: {} child results",
            results.records.len()
        );
    }
    let wall = t0.elapsed();
    results.settle(Duration::from_secs(2));
    let all: Vec<Value> = results.records.iter().map(Rec::json).collect();
    let parent = all.iter().find(|r| r["name"] == "parent").unwrap();
    assert_eq!(parent["status"], "SUCCEEDED", "{parent}");
    let out = parent["output"].as_array().unwrap();
    assert_eq!(out.len(), children, "one entry per batch");
    for (i, o) in out.iter().enumerate() {
        let n = batch.min(items - i * batch);
        assert_eq!(o, &json!({"n": n, "first": i * batch}), "batch {i}");
    }
    let mut runs: HashMap<String, usize> = HashMap::new();
    for r in all.iter().filter(|r| r["name"] != "parent") {
        assert_eq!(r["status"], "SUCCEEDED", "{r}");
        *runs
            .entry(r["executionArn"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(runs.len(), children, "every child has a result");
    let duplicates: usize = runs.values().map(|n| n - 1).sum();
    let count = |event: &str| -> f64 {
        let series = format!("expressway_map_children_total{{event=\"{event}\"}}");
        pods.iter().map(|p| p.counter(&series)).sum()
    };
    let (reused, resumed) = (count("reused"), count("resumed"));
    eprintln!(
        "distributed map: {items} items in {children} batches of {batch}, MaxConcurrency {concurrency}, child wait {wait} s, 3 pods / 8 partitions: {:.1} s wall, {:.0} items/s, {:.1} children/s; killed: {:?}; child re-runs: {duplicates}; the re-run parent reused {reused} finished and resumed {resumed} started children",
        wall.as_secs_f64(),
        items as f64 / wall.as_secs_f64(),
        children as f64 / wall.as_secs_f64(),
        killed.map(|(pod, done, at)| format!("pod-{pod} after {done} child results at {:.1} s", at.as_secs_f64())),
    );
    if kill {
        assert!(
            reused + resumed > 0.0,
            "the re-run parent started every child again"
        );
        // Only children written by the killed parent and not begun yet, or cut short by the
        // kill (at most MaxConcurrency of them), run twice.
        assert!(
            duplicates as u64 <= 2 * concurrency,
            "{duplicates} child re-runs for MaxConcurrency {concurrency}"
        );
    }
    for p in pods {
        assert_eq!(p.sigterm(), Some(0));
    }
}
