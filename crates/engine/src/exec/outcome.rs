//! The result of an execution: [`Outcome`], [`Status`] and the result and log records built from
//! them.

use super::ExecutionRequest;
use crate::budget::Budget;
use expressway_asl::timestamp::format_millis;
use serde_json::{Map, Value};

/// Terminal status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Reached a Succeed state or an End.
    Succeeded,
    /// Failed with an error.
    Failed,
    /// Exceeded TimeoutSeconds or the 5-minute limit.
    TimedOut,
}

impl Status {
    /// AWS's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::TimedOut => "TIMED_OUT",
        }
    }
}

/// The result of one execution.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Terminal status.
    pub status: Status,
    /// Output (SUCCEEDED only).
    pub output: Option<Value>,
    /// Error name (FAILED).
    pub error: Option<String>,
    /// Cause (FAILED).
    pub cause: Option<String>,
    /// Start, epoch milliseconds.
    pub start_millis: i64,
    /// Stop, epoch milliseconds.
    pub stop_millis: i64,
    /// Events kept by the log level, in id order.
    pub events: Vec<crate::events::Event>,
    /// Number of states entered.
    pub state_transitions: u64,
    /// The budget whose exhaustion failed the execution (`States.DataLimitExceeded`), if any.
    pub exceeded_budget: Option<Budget>,
}

impl Outcome {
    /// The result object (StartSyncExecution's shape; also the value of a results-topic record).
    pub fn result_object(&self, request: &ExecutionRequest) -> Value {
        let mut m = Map::with_capacity(9);
        m.insert(
            "executionArn".into(),
            Value::String(request.execution_arn.clone()),
        );
        m.insert(
            "stateMachineArn".into(),
            Value::String(request.state_machine_arn.clone()),
        );
        m.insert("name".into(), Value::String(request.execution_name.clone()));
        m.insert("status".into(), Value::String(self.status.as_str().into()));
        m.insert(
            "startDate".into(),
            Value::String(format_millis(self.start_millis)),
        );
        m.insert(
            "stopDate".into(),
            Value::String(format_millis(self.stop_millis)),
        );
        if let Some(o) = &self.output {
            m.insert("output".into(), o.clone());
        }
        if let Some(e) = &self.error {
            m.insert("error".into(), Value::String(e.clone()));
        }
        if let Some(c) = &self.cause {
            m.insert("cause".into(), Value::String(c.clone()));
        }
        Value::Object(m)
    }

    /// [`Outcome::result_object`] as JSON text, with `traceHeader` appended when given (as the
    /// executor inserts it), written without building a `Value` or cloning the output.
    pub fn result_json(&self, request: &ExecutionRequest, trace_header: Option<&str>) -> Vec<u8> {
        use crate::jsonw::{write_str, write_value};
        let mut out = Vec::with_capacity(
            256 + request.execution_arn.len()
                + request.state_machine_arn.len()
                + request.execution_name.len(),
        );
        out.extend_from_slice(b"{\"executionArn\":");
        write_str(&mut out, &request.execution_arn);
        out.extend_from_slice(b",\"stateMachineArn\":");
        write_str(&mut out, &request.state_machine_arn);
        out.extend_from_slice(b",\"name\":");
        write_str(&mut out, &request.execution_name);
        out.extend_from_slice(b",\"status\":");
        write_str(&mut out, self.status.as_str());
        out.extend_from_slice(b",\"startDate\":");
        write_str(&mut out, &format_millis(self.start_millis));
        out.extend_from_slice(b",\"stopDate\":");
        write_str(&mut out, &format_millis(self.stop_millis));
        if let Some(o) = &self.output {
            out.extend_from_slice(b",\"output\":");
            write_value(&mut out, o);
        }
        if let Some(e) = &self.error {
            out.extend_from_slice(b",\"error\":");
            write_str(&mut out, e);
        }
        if let Some(c) = &self.cause {
            out.extend_from_slice(b",\"cause\":");
            write_str(&mut out, c);
        }
        if let Some(t) = trace_header {
            out.extend_from_slice(b",\"traceHeader\":");
            write_str(&mut out, t);
        }
        out.push(b'}');
        out
    }

    /// [`Outcome::log_record`] as JSON text, written straight from the events (no `Value` is
    /// built and no details are cloned): the executor's hot path at log level ALL.
    pub fn log_record_json(&self, request: &ExecutionRequest) -> Vec<u8> {
        let arn = request.execution_arn.as_str();
        let mut arn_escaped = Vec::with_capacity(arn.len() + 8);
        crate::jsonw::write_str_contents(&mut arn_escaped, arn);
        let size: usize = self
            .events
            .iter()
            .map(|e| 160 + arn.len() + e.event_type.len() + details_size_hint(&e.details))
            .sum();
        let mut out = Vec::with_capacity(size + 64);
        out.extend_from_slice(b"{\"executionArn\":\"");
        out.extend_from_slice(&arn_escaped);
        out.extend_from_slice(b"\",\"events\":[");
        let mut reuse = crate::events::EscapedReuse::default();
        for (i, event) in self.events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            crate::events::LogEvent {
                event,
                execution_arn: arn,
                redrive_count: 0,
            }
            .write_json(&mut out, &arn_escaped, &mut reuse);
        }
        out.extend_from_slice(b"]}");
        out
    }

    /// The log record (`{"executionArn","events":[...]}`) with AWS's Express event shape.
    pub fn log_record(&self, request: &ExecutionRequest) -> Value {
        let events = self
            .events
            .iter()
            .map(|e| e.to_log_json(&request.execution_arn, 0))
            .collect();
        let mut m = Map::with_capacity(2);
        m.insert(
            "executionArn".into(),
            Value::String(request.execution_arn.clone()),
        );
        m.insert("events".into(), Value::Array(events));
        Value::Object(m)
    }
}

/// A cheap lower bound of an event's details text (its top-level strings, escaped ones growing
/// by about a tenth), to size the log record buffer once.
fn details_size_hint(details: &Value) -> usize {
    match details {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                k.len()
                    + 4
                    + match v {
                        Value::String(s) => s.len() + s.len() / 8 + 2,
                        _ => 24,
                    }
            })
            .sum(),
        _ => 16,
    }
}
