//! JSONata expressions inside ASL fields (`{% ... %}`).
//!
//! The JSONata evaluator itself lives in its own crate; this module adapts it to ASL's fields,
//! bindings (`$states`, variables) and AWS's `States.QueryEvaluationError` causes.

use crate::template::{EvalEnv, EvalError};
use serde_json::Value;

/// A JSONata expression taken from a `{% ... %}` string.
#[derive(Debug, Clone)]
pub struct JsonataExpr {
    text: String,
}

impl JsonataExpr {
    /// True when the string is a JSONata expression (`{% ... %}`).
    pub fn is_expression(s: &str) -> bool {
        let t = s.trim();
        t.len() >= 4 && t.starts_with("{%") && t.ends_with("%}")
    }

    /// Parses the text between `{%` and `%}`.
    pub fn parse(s: &str) -> Result<JsonataExpr, String> {
        let t = s.trim();
        let inner = t
            .strip_prefix("{%")
            .and_then(|r| r.strip_suffix("%}"))
            .ok_or("not a JSONata expression")?;
        Ok(JsonataExpr {
            text: inner.trim().to_string(),
        })
    }

    /// The expression text without the delimiters.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates; an undefined result is an error naming `field`.
    pub fn eval_required(&self, field: &str, _env: &dyn EvalEnv) -> Result<Value, EvalError> {
        Err(EvalError::query(format!(
            "The JSONata expression '{}' specified for the field '{field}' could not be evaluated: JSONata is not available in this build.",
            self.text
        )))
    }
}

/// AWS's JSON type names in QueryEvaluationError causes.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
