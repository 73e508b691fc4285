//! Registering a native Rust handler as a Task resource and running a machine that uses it.
//!
//! `cargo run -p expressway-tasks --example native_handler`

use expressway_asl::validate::MachineType;
use expressway_engine::runtime::{OsEntropy, TokioClock};
use expressway_engine::{
    execute, ExecutionRequest, Limits, LogConfig, Runtime, TaskError, TaskRequest,
};
use expressway_tasks::{RegistryExt, TaskConfig};
use serde_json::{json, Value};
use std::sync::Arc;

/// The resource ARN embedders choose for their handler.
const PRICE: &str = "arn:aws:states:::expressway:price-quote";

/// A native handler: the Task's effective Parameters arrive as `req.input`.
async fn price_quote(req: TaskRequest) -> Result<Value, TaskError> {
    let quantity = req
        .input
        .get("quantity")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            TaskError::new("Quote.InvalidQuantity", "quantity must be a whole number")
        })?;
    let unit = 4.25;
    Ok(json!({"quantity": quantity, "total": unit * quantity as f64}))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = Arc::new(TokioClock::new());
    let mut registry = TaskConfig::default().build_registry(clock.clone(), None)?;
    registry.register_fn(PRICE, price_quote);

    let definition = json!({
        "StartAt": "Quote",
        "States": {
            "Quote": {
                "Type": "Task",
                "Resource": PRICE,
                "Parameters": {"quantity.$": "$.qty"},
                "Catch": [{"ErrorEquals": ["Quote.InvalidQuantity"], "Next": "Invalid"}],
                "End": true
            },
            "Invalid": {"Type": "Fail", "Error": "InvalidOrder"}
        }
    });
    let machine = expressway_asl::load_validated(&definition.to_string(), MachineType::Express)
        .map_err(|report| format!("invalid definition: {report:?}"))?;
    let runtime = Runtime {
        map_children: None,
        clock,
        entropy: Arc::new(OsEntropy),
        tasks: Arc::new(registry),
        callbacks: None,
    };
    for input in [json!({"qty": 4}), json!({"qty": "four"})] {
        let request = ExecutionRequest {
            execution_arn: "arn:aws:states:us-east-1:123456789012:express:quotes:demo:00000000-0000-4000-8000-000000000000".into(),
            execution_name: "demo".into(),
            state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:quotes".into(),
            state_machine_name: "quotes".into(),
            role_arn: "arn:aws:iam::123456789012:role/demo".into(),
            input,
            log: LogConfig::default(),
            limits: Limits::default(),
            synchronous: false,
        };
        let outcome = execute(&machine, &request, &runtime).await;
        println!("{}", outcome.result_object(&request));
    }
    Ok(())
}
