//! What the nested integrations return, in AWS's shapes (PascalCase, dates in epoch
//! milliseconds, as AWS's optimized `states:` integration writes them).

use super::Mode;
use expressway_engine::{ExecutionRequest, Outcome, Status, TaskError};
use serde_json::{json, Map, Value};

/// `startExecution` (fire and forget): StartExecution's response with the SDK metadata AWS's
/// request-response integrations add (as `lambda:invoke` here does).
pub fn started(execution_arn: &str, start_millis: i64, request_id: &str) -> Value {
    json!({
        "ExecutionArn": execution_arn,
        "SdkHttpMetadata": {
            "AllHttpHeaders": {
                "Content-Type": ["application/x-amz-json-1.0"],
                "x-amzn-RequestId": [request_id],
            },
            "HttpHeaders": {
                "Content-Type": "application/x-amz-json-1.0",
                "x-amzn-RequestId": request_id,
            },
            "HttpStatusCode": 200,
        },
        "SdkResponseMetadata": {"RequestId": request_id},
        "StartDate": start_millis,
    })
}

/// `.sync` / `.sync:2`: the finished child as DescribeExecution describes it, keys in
/// alphabetical order as AWS writes them. `.sync:2` gives `Input`/`Output` as JSON values,
/// `.sync` as JSON text. Express executions are never redriven, so the Standard-only redrive
/// fields are left out.
pub fn described(mode: Mode, request: &ExecutionRequest, outcome: &Outcome) -> Value {
    let payload = |v: &Value| match mode {
        Mode::Sync2 => v.clone(),
        _ => Value::String(expressway_engine::jsonw::to_string(v)),
    };
    let mut m = Map::new();
    if let Some(c) = &outcome.cause {
        m.insert("Cause".into(), Value::String(c.clone()));
    }
    if let Some(e) = &outcome.error {
        m.insert("Error".into(), Value::String(e.clone()));
    }
    m.insert(
        "ExecutionArn".into(),
        Value::String(request.execution_arn.clone()),
    );
    m.insert("Input".into(), payload(&request.input));
    m.insert("InputDetails".into(), json!({"Included": true}));
    m.insert("Name".into(), Value::String(request.execution_name.clone()));
    if let Some(o) = &outcome.output {
        m.insert("Output".into(), payload(o));
        m.insert("OutputDetails".into(), json!({"Included": true}));
    }
    m.insert("StartDate".into(), Value::from(outcome.start_millis));
    m.insert(
        "StateMachineArn".into(),
        Value::String(request.state_machine_arn.clone()),
    );
    m.insert(
        "Status".into(),
        Value::String(outcome.status.as_str().into()),
    );
    m.insert("StopDate".into(), Value::from(outcome.stop_millis));
    Value::Object(m)
}

/// What the parent's task gets from a finished child: its description when it succeeded, else
/// `States.TaskFailed` with the description as the cause (JSON text), as AWS fails a `.sync`
/// task whose execution failed or timed out, so Retry and Catch see it.
pub(super) fn result(
    mode: Mode,
    request: &ExecutionRequest,
    outcome: &Outcome,
) -> Result<Value, TaskError> {
    let described = described(mode, request, outcome);
    match outcome.status {
        Status::Succeeded => Ok(described),
        Status::Failed | Status::TimedOut => Err(TaskError::new(
            "States.TaskFailed",
            expressway_engine::jsonw::to_string(&described),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use expressway_engine::{Limits, LogConfig};

    fn request() -> ExecutionRequest {
        ExecutionRequest {
            execution_arn: "arn:aws:states:us-east-1:123456789012:express:child:n:u".into(),
            execution_name: "n".into(),
            state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:child".into(),
            state_machine_name: "child".into(),
            role_arn: "arn:aws:iam::123456789012:role/expressway".into(),
            input: json!({"k": 1}),
            log: LogConfig::default(),
            limits: Limits::default(),
            synchronous: false,
        }
    }

    fn outcome(status: Status) -> Outcome {
        Outcome {
            status,
            output: (status == Status::Succeeded).then(|| json!({"ok": true})),
            error: (status == Status::Failed).then(|| "Boom".to_string()),
            cause: (status == Status::Failed).then(|| "it broke".to_string()),
            start_millis: 1000,
            stop_millis: 2000,
            events: Vec::new(),
            state_transitions: 2,
            exceeded_budget: None,
        }
    }

    #[test]
    fn sync2_payloads_are_json_values_and_keys_are_sorted() {
        let v = result(Mode::Sync2, &request(), &outcome(Status::Succeeded)).unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"ExecutionArn":"arn:aws:states:us-east-1:123456789012:express:child:n:u","Input":{"k":1},"InputDetails":{"Included":true},"Name":"n","Output":{"ok":true},"OutputDetails":{"Included":true},"StartDate":1000,"StateMachineArn":"arn:aws:states:us-east-1:123456789012:stateMachine:child","Status":"SUCCEEDED","StopDate":2000}"#
        );
    }

    #[test]
    fn sync_payloads_are_json_text() {
        let v = result(Mode::Sync, &request(), &outcome(Status::Succeeded)).unwrap();
        assert_eq!(v["Input"], json!("{\"k\":1}"));
        assert_eq!(v["Output"], json!("{\"ok\":true}"));
    }

    #[test]
    fn a_failed_child_fails_the_task_with_its_description() {
        let e = result(Mode::Sync2, &request(), &outcome(Status::Failed)).unwrap_err();
        assert_eq!(e.error, "States.TaskFailed");
        let cause: Value = serde_json::from_str(e.cause.as_deref().unwrap()).unwrap();
        assert_eq!(cause["Status"], "FAILED");
        assert_eq!(cause["Error"], "Boom");
        assert_eq!(cause["Cause"], "it broke");
        assert_eq!(cause["Input"], json!({"k": 1}));
        assert!(cause.get("Output").is_none());
        let keys: Vec<&String> = cause.as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(
            keys, sorted,
            "alphabetical, as AWS writes DescribeExecution"
        );

        let e = result(Mode::Sync, &request(), &outcome(Status::TimedOut)).unwrap_err();
        assert_eq!(e.error, "States.TaskFailed");
        let cause: Value = serde_json::from_str(e.cause.as_deref().unwrap()).unwrap();
        assert_eq!(cause["Status"], "TIMED_OUT");
        assert_eq!(cause["Input"], json!("{\"k\":1}"));
    }

    #[test]
    fn fire_and_forget_returns_start_execution_response() {
        let v = started("arn:x", 1234, "req-1");
        assert_eq!(v["ExecutionArn"], "arn:x");
        assert_eq!(v["StartDate"], 1234);
        assert_eq!(v["SdkResponseMetadata"]["RequestId"], "req-1");
        assert_eq!(v["SdkHttpMetadata"]["HttpStatusCode"], 200);
    }
}
