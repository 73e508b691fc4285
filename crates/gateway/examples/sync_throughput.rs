//! StartSyncExecution throughput: N keep-alive HTTP/1.1 connections, each sending requests back
//! to back for a fixed time; prints one JSON line.
//!
//! ```sh
//! cargo run --release -p expressway-gateway --example sync_throughput -- \
//!   --addr 127.0.0.1:8083 --definition crates/engine/benches/fixtures/pipeline.asl.json \
//!   --input-file crates/engine/benches/fixtures/pipeline.input.json --connections 32 --seconds 10
//! ```
//!
//! The machine is created (EXPRESS, logging OFF unless `--log-level`) through the API first, so
//! the gateway must accept unsigned requests (`expressway dev`, or `gateway --no-auth`).

#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    addr: String,
    definition: String,
    input: String,
    connections: usize,
    seconds: f64,
    log_level: String,
    name: String,
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:8083".into(),
        definition: "crates/engine/benches/fixtures/pipeline.asl.json".into(),
        input: "crates/engine/benches/fixtures/pipeline.input.json".into(),
        connections: 32,
        seconds: 10.0,
        log_level: "OFF".into(),
        name: "sync-bench".into(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < argv.len() {
        let v = argv[i + 1].clone();
        match argv[i].as_str() {
            "--addr" => a.addr = v,
            "--definition" => a.definition = v,
            "--input-file" => a.input = v,
            "--connections" => a.connections = v.parse().expect("--connections N"),
            "--seconds" => a.seconds = v.parse().expect("--seconds S"),
            "--log-level" => a.log_level = v,
            "--name" => a.name = v,
            other => panic!("unknown flag {other}"),
        }
        i += 2;
    }
    a
}

/// One request on a keep-alive connection; returns (status, body).
async fn call(s: &mut TcpStream, buf: &mut Vec<u8>, req: &[u8]) -> (u16, Vec<u8>) {
    s.write_all(req).await.unwrap();
    buf.clear();
    let mut tmp = [0u8; 16384];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut tmp).await.unwrap();
                assert!(n > 0, "connection closed");
                buf.extend_from_slice(&tmp[..n]);
            }
            return (status, buf[end + 4..end + 4 + len].to_vec());
        }
        let n = s.read(&mut tmp).await.unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&tmp[..n]);
    }
}

fn request(addr: &str, op: &str, body: &str) -> Vec<u8> {
    format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nX-Amz-Target: AWSStepFunctions.{op}\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::main]
async fn main() {
    let a = parse_args();
    let definition = std::fs::read_to_string(&a.definition).unwrap();
    let input: Value = serde_json::from_str(&std::fs::read_to_string(&a.input).unwrap()).unwrap();
    let mut s = TcpStream::connect(&a.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let create = json!({
        "name": a.name, "definition": definition, "type": "EXPRESS",
        "roleArn": "arn:aws:iam::123456789012:role/bench",
        "loggingConfiguration": {"level": a.log_level, "includeExecutionData": a.log_level == "ALL"},
    })
    .to_string();
    let (st, body) = call(
        &mut s,
        &mut buf,
        &request(&a.addr, "CreateStateMachine", &create),
    )
    .await;
    assert!(
        st == 200 || String::from_utf8_lossy(&body).contains("AlreadyExists"),
        "create: {st} {}",
        String::from_utf8_lossy(&body)
    );
    let arn = format!(
        "arn:aws:states:us-east-1:123456789012:stateMachine:{}",
        a.name
    );
    let req = Arc::new(request(
        &a.addr,
        "StartSyncExecution",
        &json!({"stateMachineArn": arn, "input": input.to_string()}).to_string(),
    ));
    // Warm-up and a correctness check.
    let (st, body) = call(&mut s, &mut buf, &req).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((st, v["status"].as_str()), (200, Some("SUCCEEDED")), "{v}");

    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let lat = Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
    let mut tasks = Vec::new();
    let t0 = Instant::now();
    for _ in 0..a.connections {
        let (addr, req, done, errors, stop, lat) = (
            a.addr.clone(),
            req.clone(),
            done.clone(),
            errors.clone(),
            stop.clone(),
            lat.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = Vec::new();
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (st, _) = call(&mut s, &mut buf, &req).await;
                mine.push(t.elapsed().as_micros() as u32);
                if st == 200 {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat.lock().unwrap().extend(mine);
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(a.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut l = lat.lock().unwrap().clone();
    l.sort_unstable();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let n = done.load(Ordering::Relaxed);
    println!(
        "{}",
        json!({
            "requests": n,
            "errors": errors.load(Ordering::Relaxed),
            "seconds": (secs * 100.0).round() / 100.0,
            "requests_per_second": (n as f64 / secs).round(),
            "connections": a.connections,
            "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
            "log_level": a.log_level,
        })
    );
}
