//! Latency of normal executions while runaway Pass/Choice loops share their runtime.
//!
//! `cargo run --release -p expressway-engine --example runaway_latency -- [LOOPS] [EXECUTIONS]`
//! (defaults 10 and 2,000). One current-thread tokio runtime, real clock: LOOPS executions of
//! the issue's loop (no `TimeoutSeconds`) are spawned first, then EXECUTIONS runs of the engine
//! bench machine are started one after another as new tasks, each timed from submission to outcome. Prints one
//! JSON line with p50/p99/max in microseconds, once without loops and once with them.

use expressway_engine::runtime::{NoTasks, SplitMix64, TokioClock};
use expressway_engine::{execute, ExecutionRequest, Limits, LogConfig, Runtime};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

const LOOP: &str = r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"C"},
  "C":{"Type":"Choice","Choices":[{"Variable":"$.stop","IsPresent":true,"Next":"Done"}],"Default":"A"},
  "Done":{"Type":"Succeed"}}}"#;

fn request(input: Value) -> ExecutionRequest {
    ExecutionRequest {
        execution_arn: "arn:aws:states:us-east-1:123456789012:express:m:e:0".into(),
        execution_name: "e".into(),
        state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:m".into(),
        state_machine_name: "m".into(),
        role_arn: "arn:aws:iam::123456789012:role/r".into(),
        input,
        log: LogConfig::default(),
        limits: Limits::default(),
        synchronous: false,
    }
}

fn runtime() -> Runtime {
    Runtime {
        map_children: None,
        clock: Arc::new(TokioClock::new()),
        entropy: Arc::new(SplitMix64::new(1)),
        tasks: Arc::new(NoTasks),
        callbacks: None,
    }
}

async fn measure(loops: usize, executions: usize) -> Value {
    let looping = Arc::new(expressway_asl::load_str(LOOP).expect("loop loads"));
    let handles: Vec<_> = (0..loops)
        .map(|_| {
            let m = looping.clone();
            tokio::spawn(async move { execute(&m, &request(json!({})), &runtime()).await })
        })
        .collect();
    tokio::task::yield_now().await;
    let machine = Arc::new(
        expressway_asl::load_str(include_str!("../benches/fixtures/pipeline.asl.json"))
            .expect("bench machine loads"),
    );
    let input: Value =
        serde_json::from_str(include_str!("../benches/fixtures/pipeline.input.json"))
            .expect("input");
    let mut micros = Vec::with_capacity(executions);
    for _ in 0..executions {
        // timed from submission (a new task, as the executor spawns one per record) to outcome
        let (m, req) = (machine.clone(), request(input.clone()));
        let t0 = Instant::now();
        let done = tokio::spawn(async move {
            let o = execute(&m, &req, &runtime()).await;
            std::hint::black_box(o);
            t0.elapsed()
        });
        match done.await {
            Ok(d) => micros.push(d.as_secs_f64() * 1e6),
            Err(e) => panic!("execution task failed: {e}"),
        }
    }
    let still_running = handles.iter().filter(|h| !h.is_finished()).count();
    for h in handles {
        h.abort();
    }
    micros.sort_by(f64::total_cmp);
    let q = |p: f64| micros[((micros.len() as f64 - 1.0) * p) as usize].round();
    json!({"loops": loops, "loops_still_running": still_running, "executions": executions,
           "p50_us": q(0.5), "p99_us": q(0.99), "max_us": q(1.0)})
}

fn main() {
    let mut args = std::env::args().skip(1);
    let loops = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let executions = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    for n in [0, loops] {
        println!("{}", rt.block_on(measure(n, executions)));
    }
}
