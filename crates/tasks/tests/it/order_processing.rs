//! The `examples/order-processing` definition end to end against its functions, started in-process.

use crate::support::run;
use expressway_engine::runtime::TokioClock;
use expressway_engine::Status;
use expressway_tasks::TaskConfig;
use serde_json::{json, Value};
use std::sync::Arc;

#[allow(dead_code, unreachable_pub)]
#[path = "../../../../examples/order-processing/functions.rs"]
mod functions;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/order-processing"
);

fn read_json(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{DIR}/{name}")).expect("example file");
    serde_json::from_str(&text).expect("example JSON")
}

#[tokio::test]
async fn each_sample_input_has_its_documented_outcome() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(functions::serve(listener));
    let config_text = std::fs::read_to_string(format!("{DIR}/config.json"))
        .expect("config")
        .replace("127.0.0.1:9300", &addr.to_string());
    let config = TaskConfig::from_json_str(&config_text).expect("valid config");
    let registry = config
        .build_registry(Arc::new(TokioClock::new()), None)
        .expect("registry");
    let definition = read_json("order-processing.asl.json");

    let out = run(
        &definition,
        read_json("inputs/valid-order.json"),
        registry.clone(),
    )
    .await;
    assert_eq!(out.status, Status::Succeeded, "{out:?}");
    assert_eq!(
        out.output,
        Some(
            json!({"orderId": "1001", "status": "CONFIRMED", "chargeId": "ch_1001", "trackingNumber": "TRK-1001"})
        )
    );

    let out = run(
        &definition,
        read_json("inputs/invalid-order.json"),
        registry.clone(),
    )
    .await;
    assert_eq!(out.status, Status::Failed, "{out:?}");
    assert_eq!(out.error.as_deref(), Some("OrderRejected"));

    let out = run(&definition, read_json("inputs/out-of-stock.json"), registry).await;
    assert_eq!(out.status, Status::Failed, "{out:?}");
    assert_eq!(out.error.as_deref(), Some("OutOfStock"));
}
