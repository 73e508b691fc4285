//! Every metric name the Grafana dashboard and the Prometheus alert rules use
//! (`deploy/metrics.txt`) is exported by a running executor's `/metrics`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::Duration;

const METRICS: &str = include_str!("../../../deploy/metrics.txt");

fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Metric names present in a Prometheus text exposition (sample lines only).
fn exported(body: &str) -> std::collections::HashSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_dashboard_and_alert_metric_is_exported() {
    let wanted: Vec<&str> = METRICS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(!wanted.is_empty(), "deploy/metrics.txt lists metric names");

    let env = Env::new(2);
    let prometheus = expressway_executor::telemetry::install_recorder();
    assert!(prometheus.is_some(), "recorder installed");
    let mut cfg = env.config();
    cfg.group = "g-dashboard".into();
    // Task tokens: the Callbacks row.
    env.cluster
        .create_topic("expressway.callbacks", 2, 1)
        .unwrap();
    cfg.callbacks.key =
        Some(expressway_wire::TaskTokenKey::new(*b"dashboard-key-0123456789abcdef0123").unwrap());
    let registry = env.registry(&[("choose", CHOOSE), ("flaky", FLAKY)]);
    let exec = env.start(cfg, registry.clone());
    // An exactly-once pod of another group on its own start topic (the lag table has one owner
    // per partition in a process): the transaction metrics.
    env.cluster.create_topic("dash.eos.start", 1, 1).unwrap();
    let mut eos = env.config();
    eos.group = "g-dashboard-eos".into();
    eos.start_topic = "dash.eos.start".into();
    eos.guarantee = expressway_executor::Guarantee::ExactlyOnce;
    eos.transactions.transactional_id = Some("dashboard-eos".into());
    let eos_exec = env.start(eos, registry.clone());
    let addr = env
        .rt
        .block_on(expressway_executor::telemetry::serve_http(
            "127.0.0.1:0".parse().unwrap(),
            prometheus,
            exec.health(),
            registry,
            std::future::pending(),
        ))
        .unwrap();
    wait_until("/readyz 200", || http_get(addr, "/readyz").0 == 200);

    // A success, a failure, a failing task, and a malformed event for the DLQ.
    env.start_sample_events(b"{not json");
    env.produce(
        "dash.eos.start",
        Some("e"),
        Some(br#"{"stateMachine":"choose","input":{"fail":false}}"#),
        &[],
    );
    env.reader("expressway.results").at_least(4);
    env.reader("expressway.dlq").at_least(1);
    // A wait and its callback (latency histogram, waiting gauge, callbacks counter).
    {
        use expressway_engine::Callbacks as _;
        use futures::StreamExt as _;
        let transport = exec.callbacks().expect("a key was configured");
        let mut listener = transport
            .bind("expressway.start", 0)
            .listen(expressway_engine::CallbackKey {
                execution_arn: "arn:aws:states:us-east-1:123456789012:express:choose:e:u".into(),
                state_name: "Charge".into(),
                scope: String::new(),
                attempt: 0,
            })
            .unwrap();
        let record = expressway_wire::CallbackRecord {
            task_token: listener.token.clone(),
            outcome: expressway_wire::CallbackOutcome::Success(serde_json::json!({})),
        };
        env.produce("expressway.callbacks", None, Some(&record.to_json()), &[]);
        env.rt
            .block_on(async { tokio::time::timeout(DEADLINE, listener.signals.next()).await })
            .expect("the callback arrives");
    }

    let mut last: String;
    let mut missing: Vec<String>;
    let ok = {
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            let (status, body) = http_get(addr, "/metrics");
            let names = exported(&body);
            missing = wanted
                .iter()
                .filter(|m| !names.contains(**m))
                .map(|m| m.to_string())
                .collect();
            last = body;
            if status == 200 && missing.is_empty() {
                break true;
            }
            if std::time::Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // A scrape for `promtool check metrics` (deploy/check.sh runs it when present).
    let sample =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/metrics-sample.txt");
    if let Some(dir) = sample.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&sample, &last);
    assert!(
        ok,
        "metrics used by deploy/ but not exported: {missing:?}\n--- /metrics ---\n{last}"
    );
    exec.shutdown_blocking();
    eos_exec.shutdown_blocking();
}
