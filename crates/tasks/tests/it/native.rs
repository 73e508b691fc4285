use crate::support::*;
use expressway_engine::{Status, TaskError, TaskRequest};
use expressway_tasks::RegistryExt;
use serde_json::{json, Value};

async fn reserve(req: TaskRequest) -> Result<Value, TaskError> {
    match req.input.get("sku").and_then(Value::as_str) {
        Some("out") => Err(TaskError::new("OutOfStock", "no units left")),
        Some(sku) => Ok(json!({"reserved": sku, "attempt": req.attempt})),
        None => Err(TaskError::new("States.Runtime", "no sku")),
    }
}

#[tokio::test]
async fn native_handlers_run_and_their_errors_are_caught() {
    let mut reg = registry("{}");
    reg.register_fn("arn:aws:states:::expressway:reserve", reserve);
    reg.register_fn_prefix(
        "arn:aws:example:us-east-1:123456789012:",
        |req: TaskRequest| async move { Ok(json!({"resource": req.resource})) },
    );
    let definition = json!({
        "StartAt": "Reserve",
        "States": {
            "Reserve": {
                "Type": "Task", "Resource": "arn:aws:states:::expressway:reserve",
                "Catch": [{"ErrorEquals": ["OutOfStock"], "ResultPath": "$.error", "Next": "Prefix"}],
                "ResultPath": "$.r",
                "Next": "Prefix"
            },
            "Prefix": {"Type": "Task", "Resource": "arn:aws:example:us-east-1:123456789012:anything", "ResultPath": "$.p", "End": true}
        }
    });
    let out = run(&definition, json!({"sku": "a1"}), reg.clone()).await;
    assert_eq!(out.status, Status::Succeeded, "{out:?}");
    let o = out.output.expect("output");
    assert_eq!(o["r"], json!({"reserved": "a1", "attempt": 0}));
    assert_eq!(
        o["p"]["resource"],
        "arn:aws:example:us-east-1:123456789012:anything"
    );

    let out = run(&definition, json!({"sku": "out"}), reg).await;
    assert_eq!(out.output.expect("output")["error"]["Error"], "OutOfStock");
}
