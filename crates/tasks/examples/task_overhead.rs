//! Measures the per-execution latency of a one-state machine: a Pass state versus an HTTP Task
//! against a local server, plus a bare HTTP request with no engine, as a baseline.
//!
//! `cargo run --release -p expressway-tasks --example task_overhead [-- ITERATIONS]`

use bytes::Bytes;
use expressway_asl::validate::MachineType;
use expressway_engine::runtime::{OsEntropy, TokioClock};
use expressway_engine::{execute, ExecutionRequest, Limits, LogConfig, Runtime, Status};
use expressway_tasks::TaskConfig;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn start_server() -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let service = service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from_static(br#"{"ok":true}"#)))
                                .unwrap_or_default(),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    rx.recv().expect("server address")
}

fn summary(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    println!(
        "{name:<28} median {:>8.1} µs   p90 {:>8.1} µs   p99 {:>8.1} µs   (n={})",
        pct(0.5).as_secs_f64() * 1e6,
        pct(0.9).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        samples.len()
    );
    pct(0.5)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    let addr = start_server();
    let url = format!("http://{addr}/item");

    let clock = Arc::new(TokioClock::new());
    let registry = TaskConfig::default()
        .build_registry(clock.clone(), None)
        .expect("registry");
    let runtime = Runtime {
        map_children: None,
        clock,
        entropy: Arc::new(OsEntropy),
        tasks: Arc::new(registry),
        callbacks: None,
    };
    let machine = |state: Value| {
        let def = json!({"StartAt": "S", "States": {"S": state}});
        expressway_asl::load_validated(&def.to_string(), MachineType::Express).expect("valid")
    };
    let pass = machine(json!({"Type": "Pass", "End": true}));
    let http = machine(json!({
        "Type": "Task", "Resource": "arn:aws:states:::http:invoke",
        "Parameters": {"ApiEndpoint": url, "Method": "GET"},
        "End": true
    }));
    let request = ExecutionRequest {
        execution_arn: "arn:aws:states:us-east-1:123456789012:express:bench:b:00000000-0000-4000-8000-000000000000".into(),
        execution_name: "b".into(),
        state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:bench".into(),
        state_machine_name: "bench".into(),
        role_arn: "arn:aws:iam::123456789012:role/bench".into(),
        input: json!({"orderId": "1001"}),
        log: LogConfig::default(),
        limits: Limits::default(),
        synchronous: false,
    };

    // The three measurements are interleaved, so scheduling noise on a busy machine hits them alike.
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: hyper::Uri = url.parse().expect("uri");
    let (mut pass_t, mut http_t, mut raw_t) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..iterations + 200 {
        let t = Instant::now();
        let out = execute(&pass, &request, &runtime).await;
        let d_pass = t.elapsed();
        assert_eq!(out.status, Status::Succeeded);

        let t = Instant::now();
        let out = execute(&http, &request, &runtime).await;
        let d_http = t.elapsed();
        assert_eq!(out.status, Status::Succeeded, "{:?}", out.error);

        let t = Instant::now();
        let resp = client.get(uri.clone()).await.expect("response");
        let _ = resp.into_body().collect().await.expect("body");
        let d_raw = t.elapsed();

        // The first 200 rounds warm up connection pools and caches.
        if i >= 200 {
            pass_t.push(d_pass);
            http_t.push(d_http);
            raw_t.push(d_raw);
        }
    }
    let pass_median = summary("Pass state", pass_t);
    let http_median = summary("HTTP Task (local server)", http_t);
    let raw_median = summary("bare hyper GET (no engine)", raw_t);
    println!(
        "HTTP Task - Pass: {:.1} µs; HTTP Task - bare GET: {:.1} µs",
        (http_median.as_secs_f64() - pass_median.as_secs_f64()) * 1e6,
        (http_median.as_secs_f64() - raw_median.as_secs_f64()) * 1e6
    );
}
