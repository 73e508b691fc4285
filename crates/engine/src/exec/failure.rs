//! [`Failure`]: why a state or a branch did not complete normally, and the texts of its causes.

use expressway_asl::template::{to_json, EvalError, EvalErrorKind};
use serde_json::{Map, Value};

/// Why a state (or a branch) did not complete normally.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Failure {
    pub(super) error: String,
    pub(super) cause: Option<String>,
    /// `States.Runtime` / `States.DataLimitExceeded` fail the execution; no Retry or Catch applies.
    pub(super) fatal: bool,
    /// A JSONata evaluation failed in this state's own fields (field name); reported once as an
    /// `EvaluationFailed` event, as AWS does.
    pub(super) evaluation: Option<(String, String)>,
}

impl Failure {
    pub(super) fn new(error: impl Into<String>, cause: Option<String>) -> Failure {
        Failure {
            error: error.into(),
            cause,
            fatal: false,
            evaluation: None,
        }
    }
    pub(super) fn error_output(&self) -> Value {
        let mut m = Map::new();
        if !self.error.is_empty() {
            m.insert("Error".into(), Value::String(self.error.clone()));
        }
        if let Some(c) = &self.cause {
            m.insert("Cause".into(), Value::String(c.clone()));
        }
        Value::Object(m)
    }
}

pub(super) fn state_failure(state: &str, entered_id: u64, e: EvalError) -> Failure {
    Failure {
        error: e.error_name().to_string(),
        cause: Some(format!("An error occurred while executing the state '{state}' (entered at the event id #{entered_id}). {}", e.detail)),
        fatal: matches!(e.kind, EvalErrorKind::Runtime | EvalErrorKind::DataLimit),
        evaluation: (e.kind == EvalErrorKind::QueryEvaluation).then(|| (state.to_string(), field_of(&e.detail))),
    }
}

/// The field an AWS cause names ("... specified for the field 'Output/result' ...").
fn field_of(detail: &str) -> String {
    detail
        .split("for the field '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_default()
        .to_string()
}

/// The text AWS shows for a value in causes: strings bare, everything else as JSON.
pub(super) fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => to_json(other),
    }
}
