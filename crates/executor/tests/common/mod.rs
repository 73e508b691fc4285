//! Helpers for integration tests on librdkafka's in-process mock cluster.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use expressway_executor::{default_engine_runtime, Executor, ExecutorConfig, Registry};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Generous deadline for conditions (never asserted as a duration).
pub const DEADLINE: Duration = Duration::from_secs(60);

pub const ECHO: &str = r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#;
pub const CHOOSE: &str = r#"{"StartAt":"C","States":{
  "C":{"Type":"Choice","Choices":[{"Variable":"$.fail","BooleanEquals":true,"Next":"F"}],"Default":"S"},
  "F":{"Type":"Fail","Error":"Boom","Cause":"asked to fail"},
  "S":{"Type":"Succeed"}}}"#;
pub const SLEEPY: &str = r#"{"StartAt":"T","States":{
  "T":{"Type":"Task","Resource":"arn:aws:states:::expressway:test","Parameters":{"SleepSeconds.$":"$.sleep","Result.$":"$"},"End":true}}}"#;
pub const FLAKY: &str = r#"{"StartAt":"T","States":{
  "T":{"Type":"Task","Resource":"arn:aws:states:::expressway:test","Parameters":{"Error":"Oops"},"End":true}}}"#;

pub struct Env {
    pub cluster: MockCluster<'static, DefaultProducerContext>,
    pub brokers: String,
    pub rt: tokio::runtime::Runtime,
}

/// Tests print executor logs only when `RUST_LOG` is set.
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

impl Env {
    pub fn new(start_partitions: i32) -> Env {
        init_tracing();
        let cluster = MockCluster::new(1).expect("mock cluster");
        let brokers = cluster.bootstrap_servers();
        cluster
            .create_topic("expressway.start", start_partitions, 1)
            .unwrap();
        for t in [
            "expressway.logs",
            "expressway.results",
            "expressway.dlq",
            "expressway.definitions",
        ] {
            cluster.create_topic(t, 1, 1).unwrap();
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Env {
            cluster,
            brokers,
            rt,
        }
    }

    pub fn config(&self) -> ExecutorConfig {
        let mut c = ExecutorConfig::new(self.brokers.clone());
        c.drain_timeout = Duration::from_secs(20);
        c.kafka = vec![
            ("session.timeout.ms".into(), "6000".into()),
            ("heartbeat.interval.ms".into(), "500".into()),
            ("auto.commit.interval.ms".into(), "200".into()),
            ("statistics.interval.ms".into(), "500".into()),
            ("topic.metadata.refresh.interval.ms".into(), "1000".into()),
        ];
        c
    }

    pub fn registry(&self, machines: &[(&str, &str)]) -> Arc<Registry> {
        let r = Registry::new("us-east-1", "123456789012");
        let logging = serde_json::json!({"level": "ALL", "includeExecutionData": true});
        for (name, def) in machines {
            r.insert(name, def, Some(&logging)).unwrap();
        }
        Arc::new(r)
    }

    pub fn start(&self, config: ExecutorConfig, registry: Arc<Registry>) -> Executor {
        Executor::start(
            config,
            registry,
            default_engine_runtime(),
            self.rt.handle().clone(),
        )
        .expect("executor starts")
    }

    pub fn producer(&self) -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
            .unwrap()
    }

    pub fn produce(
        &self,
        topic: &str,
        key: Option<&str>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) {
        self.produce_at(topic, key, value, headers, None);
    }

    /// [`Env::produce`] with an explicit record timestamp (ms since the epoch).
    pub fn produce_at(
        &self,
        topic: &str,
        key: Option<&str>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
        timestamp_ms: Option<i64>,
    ) {
        let p = self.producer();
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
        if let Some(t) = timestamp_ms {
            rec = rec.timestamp(t);
        }
        p.send(rec).map_err(|(e, _)| e).unwrap();
        p.flush(Duration::from_secs(10)).unwrap();
    }

    pub fn start_event(&self, key: &str, event: &Value) {
        self.produce(
            "expressway.start",
            Some(key),
            Some(event.to_string().as_bytes()),
            &[],
        );
    }

    /// A success and a failure of `choose`, a run of `flaky` (its task fails), and `malformed`
    /// (for the dead-letter topic): one of each outcome the metrics count.
    pub fn start_sample_events(&self, malformed: &[u8]) {
        self.start_event(
            "a",
            &json!({"stateMachine": "choose", "input": {"fail": false}}),
        );
        self.start_event(
            "b",
            &json!({"stateMachine": "choose", "input": {"fail": true}}),
        );
        self.start_event("c", &json!({"stateMachine": "flaky"}));
        self.produce("expressway.start", Some("d"), Some(malformed), &[]);
    }

    pub fn reader(&self, topic: &str) -> Reader {
        self.reader_with(topic, "read_uncommitted")
    }

    /// A reader that sees only committed transactions (`isolation.level=read_committed`).
    pub fn committed_reader(&self, topic: &str) -> Reader {
        self.reader_with(topic, "read_committed")
    }

    fn reader_with(&self, topic: &str, isolation: &str) -> Reader {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("enable.partition.eof", "false")
            .set("group.id", "expressway-test-reader")
            .set("enable.auto.commit", "false")
            .set("isolation.level", isolation)
            .create()
            .unwrap();
        let md = c
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for t in md.topics() {
            for p in t.partitions() {
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                    .unwrap();
            }
        }
        c.assign(&tpl).unwrap();
        Reader {
            consumer: c,
            records: Vec::new(),
        }
    }

    /// High watermark of one partition.
    pub fn high_watermark(&self, topic: &str, partition: i32) -> i64 {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
            .unwrap();
        c.fetch_watermarks(topic, partition, Duration::from_secs(10))
            .unwrap()
            .1
    }

    /// Committed offsets of `group` on the start topic, per partition (-1 = none).
    pub fn committed(&self, group: &str, partitions: i32) -> Vec<i64> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition("expressway.start", p);
        }
        let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        (0..partitions)
            .map(|p| {
                match got
                    .find_partition("expressway.start", p)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(o)) => o,
                    _ => -1,
                }
            })
            .collect()
    }

    /// Waits until the committed offsets equal `expected`.
    pub fn wait_committed(&self, group: &str, expected: &[i64]) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let got = self.committed(group, expected.len() as i32);
            if got == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "committed offsets {got:?}, expected {expected:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rec {
    pub key: Option<String>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub partition: i32,
    pub offset: i64,
}

impl Rec {
    pub fn json(&self) -> Value {
        serde_json::from_slice(self.value.as_deref().unwrap_or(b"null")).unwrap()
    }
    pub fn header(&self, key: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

pub struct Reader {
    consumer: BaseConsumer,
    pub records: Vec<Rec>,
}

impl Reader {
    /// Reads what is available within `wait`.
    pub fn poll_for(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(50)) {
                self.records.push(Rec {
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    partition: m.partition(),
                    offset: m.offset(),
                });
            }
        }
    }

    /// Reads until `done(records)` holds (panics after [`DEADLINE`]).
    pub fn until(&mut self, what: &str, done: impl Fn(&[Rec]) -> bool) -> &[Rec] {
        let deadline = Instant::now() + DEADLINE;
        while !done(&self.records) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; have {} records",
                self.records.len()
            );
            self.poll_for(Duration::from_millis(100));
        }
        &self.records
    }

    /// Reads until at least `n` records arrived.
    pub fn at_least(&mut self, n: usize) -> &[Rec] {
        self.until(&format!("{n} records"), |r| r.len() >= n)
    }
}

/// Waits until `cond` holds (panics after [`DEADLINE`]).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
