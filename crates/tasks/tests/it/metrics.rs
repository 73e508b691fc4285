//! The task metrics, observed through a small recorder installed for this test binary.

use crate::support::*;
use expressway_engine::{TaskDispatcher, TaskError, TaskRequest};
use expressway_tasks::metrics::{TASK_DURATION, TASK_FAILURES};
use expressway_tasks::{RegistryExt, HTTP_INVOKE};
use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit,
};
use serde_json::json;
use std::sync::{Arc, Mutex, OnceLock};

/// (metric name, resource label, value) for every observation.
static OBSERVED: Mutex<Vec<(String, String, f64)>> = Mutex::new(Vec::new());

struct Cell(String, String);

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        OBSERVED
            .lock()
            .expect("lock")
            .push((self.0.clone(), self.1.clone(), value as f64));
    }
    fn absolute(&self, value: u64) {
        self.increment(value);
    }
}

impl HistogramFn for Cell {
    fn record(&self, value: f64) {
        OBSERVED
            .lock()
            .expect("lock")
            .push((self.0.clone(), self.1.clone(), value));
    }
}

struct Recorder;

fn cell(key: &Key) -> Arc<Cell> {
    let label = key
        .labels()
        .find(|l| l.key() == "resource")
        .map(|l| l.value().to_string())
        .unwrap_or_default();
    Arc::new(Cell(key.name().to_string(), label))
}

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(cell(key))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(cell(key))
    }
}

fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        metrics::set_global_recorder(Recorder).expect("no other recorder");
    });
}

fn observed(name: &str, resource: &str) -> Vec<f64> {
    OBSERVED
        .lock()
        .expect("lock")
        .iter()
        .filter(|(n, r, _)| n == name && r == resource)
        .map(|(_, _, v)| *v)
        .collect()
}

/// Failure increments of a resource (its counter is also registered at 0 up front).
fn failures(resource: &str) -> Vec<f64> {
    observed(TASK_FAILURES, resource)
        .into_iter()
        .filter(|v| *v != 0.0)
        .collect()
}

#[tokio::test]
async fn durations_and_failures_are_recorded_per_resource() {
    install();
    let mut reg = registry("{}");
    let arn = "arn:aws:states:::expressway:metrics-test";
    reg.register_fn(arn, |req: TaskRequest| async move {
        if req.input["fail"] == json!(true) {
            Err(TaskError::new("Boom", "failed on purpose"))
        } else {
            Ok(json!({}))
        }
    });
    reg.invoke(request(arn, json!({}))).await.expect("ok");
    reg.invoke(request(arn, json!({"fail": true})))
        .await
        .expect_err("fails");
    assert_eq!(observed(TASK_DURATION, arn).len(), 2);
    assert_eq!(failures(arn), vec![1.0]);

    // Built-in resources use their ARN as the label; unknown plain function ARNs share one label.
    let port = closed_port().await;
    let _ = reg
        .invoke(request(
            HTTP_INVOKE,
            json!({"ApiEndpoint": format!("http://127.0.0.1:{port}/"), "Method": "GET"}),
        ))
        .await;
    assert!(!failures(HTTP_INVOKE).is_empty());
    let _ = reg
        .invoke(request(
            "arn:aws:lambda:us-east-1:1:function:Unknown123",
            json!({}),
        ))
        .await;
    assert!(!failures("arn:aws:lambda:*").is_empty());
}

/// The registry `expressway serve` and `dev` run on (`build_registry`), and the executor's
/// default one (`metered_registry`), meter the engine's built-in test resource and resources with
/// no handler like every other resource. (The only test here that uses these labels.)
#[tokio::test]
async fn built_in_and_unregistered_resources_are_recorded() {
    use expressway_engine::tasks::TEST_RESOURCE;
    install();
    let reg = registry("{}");
    reg.invoke(request(TEST_RESOURCE, json!({"Result": 1})))
        .await
        .expect("ok");
    reg.invoke(request(TEST_RESOURCE, json!({"Error": "Oops"})))
        .await
        .expect_err("fails");
    assert_eq!(observed(TASK_DURATION, TEST_RESOURCE).len(), 2);
    assert_eq!(failures(TEST_RESOURCE), vec![1.0]);

    let unknown = "arn:aws:states:::nothing:here";
    for _ in 0..3 {
        let e = reg
            .invoke(request(unknown, json!({})))
            .await
            .expect_err("no handler");
        assert_eq!(e.error, "States.TaskFailed");
    }
    assert_eq!(failures(unknown), vec![1.0, 1.0, 1.0]);
    assert_eq!(observed(TASK_DURATION, unknown).len(), 3);

    let plain =
        expressway_tasks::metered_registry(Arc::new(expressway_engine::runtime::TokioClock::new()));
    plain
        .invoke(request(TEST_RESOURCE, json!({})))
        .await
        .expect("ok");
    assert_eq!(observed(TASK_DURATION, TEST_RESOURCE).len(), 3);
}
