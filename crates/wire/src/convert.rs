//! JSON record values to their protobuf forms.

use crate::pb;
use serde_json::Value;

fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The protobuf `ExecutionLogBatch` of a log record value (`{"executionArn","events":[...]}`).
pub fn log_batch_from_json(record: &Value) -> pb::ExecutionLogBatch {
    let events = record
        .get("events")
        .and_then(Value::as_array)
        .map(|evs| {
            evs.iter()
                .map(|e| pb::LogEvent {
                    id: text(e.get("id")),
                    previous_event_id: text(e.get("previous_event_id")),
                    r#type: text(e.get("type")),
                    details: e.get("details").map(Value::to_string).unwrap_or_default(),
                    event_timestamp: text(e.get("event_timestamp")),
                    execution_arn: text(e.get("execution_arn")),
                    redrive_count: text(e.get("redrive_count")),
                })
                .collect()
        })
        .unwrap_or_default();
    pb::ExecutionLogBatch {
        execution_arn: text(record.get("executionArn")),
        events,
    }
}

/// Encoded protobuf `ExecutionLogBatch` of a log record value.
pub fn encode_log_batch(record: &Value) -> Vec<u8> {
    use prost::Message as _;
    log_batch_from_json(record).encode_to_vec()
}

/// The protobuf `ExecutionResult` of a result object.
pub fn result_from_json(result: &Value) -> pb::ExecutionResult {
    let opt = |k: &str| result.get(k).map(|v| text(Some(v)));
    pb::ExecutionResult {
        execution_arn: text(result.get("executionArn")),
        state_machine_arn: text(result.get("stateMachineArn")),
        name: text(result.get("name")),
        status: text(result.get("status")),
        start_date: text(result.get("startDate")),
        stop_date: text(result.get("stopDate")),
        // `output` is JSON text in protobuf (a JSON string output stays quoted).
        output: result.get("output").map(Value::to_string),
        error: opt("error"),
        cause: opt("cause"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use serde_json::json;

    #[test]
    fn log_batch() {
        let record = json!({"executionArn": "arn:x", "events": [
            {"id": "1", "previous_event_id": "0", "type": "ExecutionStarted",
             "details": {"input": "{}", "inputDetails": {"truncated": false}},
             "event_timestamp": "1700000000000", "execution_arn": "arn:x", "redrive_count": "0"}
        ]});
        let b = log_batch_from_json(&record);
        assert_eq!(b.execution_arn, "arn:x");
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.events[0].r#type, "ExecutionStarted");
        let details: Value = serde_json::from_str(&b.events[0].details).expect("json");
        assert_eq!(details["input"], "{}");
        let again = pb::ExecutionLogBatch::decode(b.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(again, b);
    }

    #[test]
    fn result() {
        let ok = result_from_json(
            &json!({"executionArn": "a", "name": "n", "status": "SUCCEEDED", "output": "s"}),
        );
        assert_eq!(ok.output.as_deref(), Some("\"s\""));
        assert_eq!(ok.error, None);
        let failed = result_from_json(&json!({"status": "FAILED", "error": "E", "cause": "C"}));
        assert_eq!(failed.output, None);
        assert_eq!(failed.error.as_deref(), Some("E"));
        assert_eq!(failed.cause.as_deref(), Some("C"));
    }
}
