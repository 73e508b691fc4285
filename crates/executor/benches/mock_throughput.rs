//! Throughput of one executor pod on librdkafka's in-process mock cluster: a timing run, not a
//! test. `cargo bench -p expressway-executor --bench mock_throughput` (knobs:
//! `EXPRESSWAY_THROUGHPUT_N`, `EXPRESSWAY_THROUGHPUT_PER_PARTITION`, `EXPRESSWAY_THROUGHPUT_KAFKA`
//! as `k=v;k=v`, `EXPRESSWAY_THROUGHPUT_ORDERING` as `key:1000,key:8,none`). Prints one line per
//! ordering scenario; the real-broker figures come from `loadtest` on Tansu.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

fn main() {
    let n: usize = std::env::var("EXPRESSWAY_THROUGHPUT_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    // `EXPRESSWAY_THROUGHPUT_ORDERING=key:1000,key:8,none` (the default): one run per
    // `mode[:distinct keys]` (no count: every record its own key), each on a fresh cluster.
    let scenarios = std::env::var("EXPRESSWAY_THROUGHPUT_ORDERING")
        .unwrap_or_else(|_| "key:1000,key:8,none".into());
    for scenario in scenarios.split(',').filter(|s| !s.is_empty()) {
        let (mode, keys) = match scenario.split_once(':') {
            Some((m, k)) => (m, k.parse::<usize>().ok()),
            None => (scenario, None),
        };
        run(n, mode.parse().unwrap(), keys);
    }
}

fn run(n: usize, ordering: expressway_executor::OrderingMode, keys: Option<usize>) {
    let env = Env::new(4);
    let p = env.producer();
    for i in 0..n {
        let v = json!({"stateMachine": "choose", "input": {"i": i, "fail": false}}).to_string();
        let key = format!("k{}", keys.map_or(i, |k| i % k.max(1)));
        loop {
            let rec = rdkafka::producer::BaseRecord::<str, str>::to("expressway.start")
                .key(&key)
                .payload(&v);
            match p.send(rec) {
                Ok(()) => break,
                Err(_) => {
                    p.poll(Duration::from_millis(10));
                }
            }
        }
    }
    use rdkafka::producer::Producer as _;
    p.flush(Duration::from_secs(60)).unwrap();
    let mut cfg = env.config();
    cfg.group = "g-throughput".into();
    cfg.ordering = ordering;
    if let Some(v) = std::env::var("EXPRESSWAY_THROUGHPUT_PER_PARTITION")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.max_in_flight_per_partition = v;
        cfg.max_in_flight = v * 4;
    }
    if let Ok(extra) = std::env::var("EXPRESSWAY_THROUGHPUT_KAFKA") {
        for kv in extra.split(';').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap();
            cfg.kafka.push((k.into(), v.into()));
        }
    }
    let t0 = std::time::Instant::now();
    let exec = env.start(cfg, env.registry(&[("choose", CHOOSE)]));
    let mut results = env.reader("expressway.results");
    results.until("all results", |r| r.len() >= n);
    let secs = t0.elapsed().as_secs_f64();
    let keys = keys.map_or_else(|| "every record its own".to_string(), |k| k.to_string());
    println!(
        "throughput: ordering {ordering}, {keys} keys: {n} executions (log level ALL) in {secs:.2}s incl. group join = {:.0}/s",
        n as f64 / secs
    );
    exec.shutdown_blocking();
}
