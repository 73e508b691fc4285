//! Engine throughput: executions per second of the benchmark machines, logs OFF and ALL.
//!
//! `cargo bench -p expressway-engine`. Throughput is reported in executions (elements) per second.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use expressway_engine::runtime::{NoTasks, SplitMix64};
use expressway_engine::{execute, Clock, ExecutionRequest, Limits, LogConfig, LogLevel, Runtime};
use futures::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The same allocator as the `expressway` binary, so figures match `expressway bench`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A clock that never sleeps (the benchmark machines do not wait).
struct FixedClock;
impl Clock for FixedClock {
    fn now_millis(&self) -> i64 {
        1_767_225_600_000
    }
    fn sleep(&self, _d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }
}

fn request(input: Value, level: LogLevel) -> ExecutionRequest {
    ExecutionRequest {
        execution_arn: "arn:aws:states:us-east-1:123456789012:express:bench:e:00000000-0000-4000-8000-000000000000".into(),
        execution_name: "e".into(),
        state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:bench".into(),
        state_machine_name: "bench".into(),
        role_arn: "arn:aws:iam::123456789012:role/r".into(),
        input,
        log: LogConfig { level, include_execution_data: true },
        limits: Limits::default(),
        synchronous: false,
    }
}

fn bench_machine(c: &mut Criterion, name: &str, definition: &str, input: Value) {
    let machine = expressway_asl::load_str(definition).expect("benchmark definition loads");
    let runtime = Runtime {
        map_children: None,
        clock: Arc::new(FixedClock),
        entropy: Arc::new(SplitMix64::new(7)),
        tasks: Arc::new(NoTasks),
        callbacks: None,
    };
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    for level in [LogLevel::Off, LogLevel::All] {
        let req = request(input.clone(), level);
        group.bench_with_input(BenchmarkId::new("logs", level.as_str()), &req, |b, req| {
            b.iter(|| {
                let outcome = futures::executor::block_on(execute(&machine, req, &runtime));
                std::hint::black_box(outcome)
            })
        });
    }
    group.finish();
}

fn engine(c: &mut Criterion) {
    let input: Value =
        serde_json::from_str(include_str!("fixtures/pipeline.input.json")).expect("input");
    bench_machine(
        c,
        "pipeline",
        include_str!("fixtures/pipeline.asl.json"),
        input.clone(),
    );
    bench_machine(
        c,
        "pipeline_jsonata",
        include_str!("fixtures/pipeline_jsonata.asl.json"),
        input,
    );
    let items: Vec<Value> = (0..100).map(Value::from).collect();
    bench_machine(
        c,
        "map100",
        include_str!("fixtures/map100.asl.json"),
        serde_json::json!({ "items": items }),
    );
}

criterion_group!(benches, engine);
criterion_main!(benches);
