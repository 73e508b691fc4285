//! Callback records (`expressway.callbacks`): the outcome of a `.waitForTaskToken` Task.
//!
//! * `{"taskToken": T, "output": O}`: SendTaskSuccess. `O` is, as on AWS, the output's JSON
//!   text in a string (`"output": "{\"paid\":true}"`); any other JSON value is taken as the
//!   output itself (`"output": {"paid": true}`). A string is always JSON text: to send the
//!   string `"ok"`, write `"output": "\"ok\""`.
//! * `{"taskToken": T, "error": E?, "cause": C?}`: SendTaskFailure; at least one of the two
//!   fields (a string or null).
//! * `{"taskToken": T, "heartbeat": true}`: SendTaskHeartbeat.
//!
//! Other fields are ignored; a field given twice is refused. Limits are AWS's: `taskToken`
//! 1-1,024 characters, `output` at most 262,144 bytes of JSON text, `error` at most 256 and
//! `cause` at most 32,768 characters.

use crate::numbers::find_out_of_range_number;
use crate::task_token::MAX_TOKEN_CHARS;
use serde::Deserialize;
use serde_json::{json, Value};

/// Largest `output`, in bytes of its JSON text (AWS: 262,144).
pub const MAX_OUTPUT_BYTES: usize = 262_144;
/// Longest `error`, in characters (AWS: 256).
pub const MAX_ERROR_CHARS: usize = 256;
/// Longest `cause`, in characters (AWS: 32,768).
pub const MAX_CAUSE_CHARS: usize = 32_768;

/// What a callback says.
#[derive(Debug, Clone, PartialEq)]
pub enum CallbackOutcome {
    /// SendTaskSuccess: the task's result.
    Success(Value),
    /// SendTaskFailure.
    Failure {
        /// The error name (what Retry and Catch match).
        error: Option<String>,
        /// Human text.
        cause: Option<String>,
    },
    /// SendTaskHeartbeat.
    Heartbeat,
}

impl CallbackOutcome {
    /// `success`, `failure` or `heartbeat` (metric labels).
    pub fn kind(&self) -> &'static str {
        match self {
            CallbackOutcome::Success(_) => "success",
            CallbackOutcome::Failure { .. } => "failure",
            CallbackOutcome::Heartbeat => "heartbeat",
        }
    }
}

/// One callback record.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackRecord {
    /// The task token (not verified here: see `TaskTokenKey::verify`).
    pub task_token: String,
    /// What happened.
    pub outcome: CallbackOutcome,
}

/// Why a record is not a callback. [`CallbackError::code`] is the stable dead-letter code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// No value (a tombstone) or an empty one.
    #[error("{0}")]
    EmptyRecord(String),
    /// The value is not UTF-8.
    #[error("the record is not valid UTF-8: {0}")]
    InvalidUtf8(String),
    /// The value is not JSON.
    #[error("the record is not valid JSON: {0}")]
    InvalidJson(String),
    /// A number without an exact value (see [`crate::numbers`]).
    #[error("{0}")]
    NumberOutOfRange(String),
    /// JSON, but not one of the three callback shapes.
    #[error("invalid callback: {0}")]
    InvalidCallback(String),
    /// `output` is a string that is not JSON text (AWS: `InvalidOutput`).
    #[error("invalid output: {0}")]
    InvalidOutput(String),
    /// `output` is larger than [`MAX_OUTPUT_BYTES`].
    #[error("the output is {size} bytes, over the limit of {limit} bytes", limit = MAX_OUTPUT_BYTES)]
    OutputTooLarge {
        /// Bytes of its JSON text.
        size: usize,
    },
}

impl CallbackError {
    /// The stable dead-letter code (`expressway-error` header).
    pub fn code(&self) -> &'static str {
        match self {
            CallbackError::EmptyRecord(_) => "EmptyRecord",
            CallbackError::InvalidUtf8(_) => "InvalidUtf8",
            CallbackError::InvalidJson(_) => "InvalidJson",
            CallbackError::NumberOutOfRange(_) => "NumberOutOfRange",
            CallbackError::InvalidCallback(_) => "InvalidCallback",
            CallbackError::InvalidOutput(_) => "InvalidOutput",
            CallbackError::OutputTooLarge { .. } => "OutputTooLarge",
        }
    }

    /// Every code [`CallbackError::code`] can return.
    pub const CODES: &'static [&'static str] = &[
        "EmptyRecord",
        "InvalidUtf8",
        "InvalidJson",
        "NumberOutOfRange",
        "InvalidCallback",
        "InvalidOutput",
        "OutputTooLarge",
    ];
}

/// Dead-letter code of a callback whose token does not verify.
pub const INVALID_TASK_TOKEN_CODE: &str = "InvalidTaskToken";

/// `Some(None)` for a field given as `null`, `None` when absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default, deserialize_with = "present")]
    task_token: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    output: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    cause: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    heartbeat: Option<Value>,
}

fn optional_text(
    v: Option<Value>,
    field: &str,
    max: usize,
) -> Result<Option<String>, CallbackError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let n = s.chars().count();
            if n > max {
                return Err(CallbackError::InvalidCallback(format!(
                    "'{field}' has {n} characters, over the limit of {max}"
                )));
            }
            Ok(Some(s))
        }
        Some(other) => Err(CallbackError::InvalidCallback(format!(
            "'{field}' must be a string, not {}",
            crate::json_type_name(&other)
        ))),
    }
}

/// Checks a task token's length (AWS: 1-1,024 characters).
pub fn check_token_length(token: &str) -> Result<(), String> {
    let n = token.chars().count();
    if n == 0 || n > MAX_TOKEN_CHARS {
        return Err(format!(
            "'taskToken' has {n} characters; it must have 1 to {MAX_TOKEN_CHARS}"
        ));
    }
    Ok(())
}

/// Parses SendTaskSuccess's `output` text (a JSON document of at most [`MAX_OUTPUT_BYTES`]).
pub fn parse_output_text(text: &str) -> Result<Value, CallbackError> {
    if text.len() > MAX_OUTPUT_BYTES {
        return Err(CallbackError::OutputTooLarge { size: text.len() });
    }
    if let Some(n) = find_out_of_range_number(text) {
        return Err(CallbackError::NumberOutOfRange(n.to_string()));
    }
    serde_json::from_str(text).map_err(|e| CallbackError::InvalidOutput(e.to_string()))
}

fn check_output_size(v: &Value) -> Result<(), CallbackError> {
    let size = serde_json::to_string(v).map_or(0, |s| s.len());
    if size > MAX_OUTPUT_BYTES {
        return Err(CallbackError::OutputTooLarge { size });
    }
    Ok(())
}

impl CallbackRecord {
    /// Decodes a record value (`None`: a tombstone).
    pub fn decode(value: Option<&[u8]>) -> Result<CallbackRecord, CallbackError> {
        let value = crate::record_value(value, "a callback").map_err(CallbackError::EmptyRecord)?;
        let text =
            std::str::from_utf8(value).map_err(|e| CallbackError::InvalidUtf8(e.to_string()))?;
        if let Some(n) = find_out_of_range_number(text) {
            return Err(CallbackError::NumberOutOfRange(n.to_string()));
        }
        let any: Value =
            serde_json::from_str(text).map_err(|e| CallbackError::InvalidJson(e.to_string()))?;
        if !any.is_object() {
            return Err(CallbackError::InvalidCallback(format!(
                "a callback is a JSON object, not {}",
                crate::json_type_name(&any)
            )));
        }
        // Again as the envelope, so a field given twice is refused (which one did the
        // producer mean?).
        let raw: Raw = serde_json::from_str(text)
            .map_err(|e| CallbackError::InvalidCallback(e.to_string()))?;
        let task_token = match raw.task_token {
            Some(Value::String(s)) => s,
            None | Some(Value::Null) => {
                return Err(CallbackError::InvalidCallback(
                    "the field 'taskToken' is required".into(),
                ))
            }
            Some(other) => {
                return Err(CallbackError::InvalidCallback(format!(
                    "'taskToken' must be a string, not {}",
                    crate::json_type_name(&other)
                )))
            }
        };
        check_token_length(&task_token).map_err(CallbackError::InvalidCallback)?;
        let failure = raw.error.is_some() || raw.cause.is_some();
        let kinds = [raw.output.is_some(), failure, raw.heartbeat.is_some()]
            .iter()
            .filter(|k| **k)
            .count();
        if kinds != 1 {
            return Err(CallbackError::InvalidCallback(
                "a callback has exactly one of 'output' (success), 'error'/'cause' (failure) or 'heartbeat': true"
                    .into(),
            ));
        }
        let outcome = if let Some(output) = raw.output {
            let value = match output {
                Value::String(text) => parse_output_text(&text)?,
                other => other,
            };
            check_output_size(&value)?;
            CallbackOutcome::Success(value)
        } else if let Some(h) = raw.heartbeat {
            if h != Value::Bool(true) {
                return Err(CallbackError::InvalidCallback(format!(
                    "'heartbeat' must be true, not {h}"
                )));
            }
            CallbackOutcome::Heartbeat
        } else {
            CallbackOutcome::Failure {
                error: optional_text(raw.error, "error", MAX_ERROR_CHARS)?,
                cause: optional_text(raw.cause, "cause", MAX_CAUSE_CHARS)?,
            }
        };
        Ok(CallbackRecord {
            task_token,
            outcome,
        })
    }

    /// The record's JSON form (what gateways and the CLI produce): `output` as JSON text in a
    /// string, as on AWS; a failure always has `error` (null when absent), so it decodes as
    /// a failure.
    pub fn to_json(&self) -> Vec<u8> {
        let v = match &self.outcome {
            CallbackOutcome::Success(output) => {
                json!({"taskToken": self.task_token, "output": output.to_string()})
            }
            CallbackOutcome::Failure { error, cause } => {
                let mut v = json!({"taskToken": self.task_token, "error": error});
                if let Some(c) = cause {
                    v["cause"] = json!(c);
                }
                v
            }
            CallbackOutcome::Heartbeat => json!({"taskToken": self.task_token, "heartbeat": true}),
        };
        v.to_string().into_bytes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Result<CallbackRecord, CallbackError> {
        CallbackRecord::decode(Some(s.as_bytes()))
    }

    #[test]
    fn the_three_shapes() {
        let r = decode(r#"{"taskToken":"t","output":"{\"paid\":true}"}"#).unwrap();
        assert_eq!(r.task_token, "t");
        assert_eq!(r.outcome, CallbackOutcome::Success(json!({"paid": true})));
        let r = decode(r#"{"taskToken":"t","output":{"paid":true}}"#).unwrap();
        assert_eq!(r.outcome, CallbackOutcome::Success(json!({"paid": true})));
        let r = decode(r#"{"taskToken":"t","output":"\"ok\""}"#).unwrap();
        assert_eq!(r.outcome, CallbackOutcome::Success(json!("ok")));
        let r = decode(r#"{"taskToken":"t","output":[1,2]}"#).unwrap();
        assert_eq!(r.outcome, CallbackOutcome::Success(json!([1, 2])));
        let r = decode(r#"{"taskToken":"t","error":"Declined","cause":"card"}"#).unwrap();
        assert_eq!(
            r.outcome,
            CallbackOutcome::Failure {
                error: Some("Declined".into()),
                cause: Some("card".into())
            }
        );
        let r = decode(r#"{"taskToken":"t","cause":"only a cause"}"#).unwrap();
        assert!(matches!(
            r.outcome,
            CallbackOutcome::Failure { error: None, .. }
        ));
        let r = decode(r#"{"taskToken":"t","error":null}"#).unwrap();
        assert_eq!(
            r.outcome,
            CallbackOutcome::Failure {
                error: None,
                cause: None
            }
        );
        let r = decode(r#"{"taskToken":"t","heartbeat":true,"extra":1}"#).unwrap();
        assert_eq!(r.outcome, CallbackOutcome::Heartbeat);
    }

    #[test]
    fn encode_round_trips() {
        for outcome in [
            CallbackOutcome::Success(json!({"a": [1, "x"]})),
            CallbackOutcome::Success(json!("text")),
            CallbackOutcome::Success(Value::Null),
            CallbackOutcome::Failure {
                error: Some("E".into()),
                cause: None,
            },
            CallbackOutcome::Failure {
                error: None,
                cause: None,
            },
            CallbackOutcome::Heartbeat,
        ] {
            let r = CallbackRecord {
                task_token: "v1.x.y".into(),
                outcome,
            };
            assert_eq!(CallbackRecord::decode(Some(&r.to_json())).unwrap(), r);
        }
    }

    #[test]
    fn typed_errors() {
        let code = |s: &str| decode(s).unwrap_err().code();
        assert_eq!(
            CallbackRecord::decode(None).unwrap_err().code(),
            "EmptyRecord"
        );
        assert_eq!(
            CallbackRecord::decode(Some(b"")).unwrap_err().code(),
            "EmptyRecord"
        );
        assert_eq!(
            CallbackRecord::decode(Some(b"\xff\xfe"))
                .unwrap_err()
                .code(),
            "InvalidUtf8"
        );
        assert_eq!(code("{not json"), "InvalidJson");
        assert_eq!(code(r#"{"taskToken":"t","output":1} x"#), "InvalidJson");
        assert_eq!(code(r#"[1]"#), "InvalidCallback");
        assert_eq!(code(r#"{"output":"1"}"#), "InvalidCallback");
        assert_eq!(code(r#"{"taskToken":5,"output":"1"}"#), "InvalidCallback");
        assert_eq!(code(r#"{"taskToken":"","output":"1"}"#), "InvalidCallback");
        assert_eq!(code(r#"{"taskToken":"t"}"#), "InvalidCallback");
        assert_eq!(
            code(r#"{"taskToken":"t","output":"1","error":"E"}"#),
            "InvalidCallback"
        );
        assert_eq!(
            code(r#"{"taskToken":"t","heartbeat":false}"#),
            "InvalidCallback"
        );
        assert_eq!(code(r#"{"taskToken":"t","error":7}"#), "InvalidCallback");
        assert_eq!(
            code(r#"{"taskToken":"a","taskToken":"b","output":"1"}"#),
            "InvalidCallback"
        );
        assert_eq!(
            code(r#"{"taskToken":"t","output":"not json"}"#),
            "InvalidOutput"
        );
        assert_eq!(
            code(r#"{"taskToken":"t","output":"18446744073709551617123"}"#),
            "NumberOutOfRange"
        );
        assert_eq!(
            code(r#"{"taskToken":"t","output":{"n":1e400}}"#),
            "NumberOutOfRange"
        );
        let long_token = format!(r#"{{"taskToken":"{}","heartbeat":true}}"#, "t".repeat(1025));
        assert_eq!(code(&long_token), "InvalidCallback");
        let long_error = format!(r#"{{"taskToken":"t","error":"{}"}}"#, "e".repeat(257));
        assert_eq!(code(&long_error), "InvalidCallback");
        let long_cause = format!(r#"{{"taskToken":"t","cause":"{}"}}"#, "c".repeat(32_769));
        assert_eq!(code(&long_cause), "InvalidCallback");
        let big = format!(
            r#"{{"taskToken":"t","output":{{"s":"{}"}}}}"#,
            "x".repeat(262_144)
        );
        assert_eq!(code(&big), "OutputTooLarge");
        let big_text = serde_json::to_string(
            &json!({"taskToken": "t", "output": format!("\"{}\"", "x".repeat(262_143))}),
        )
        .unwrap();
        assert_eq!(code(&big_text), "OutputTooLarge");
        for e in [
            decode("{").unwrap_err(),
            decode(r#"{"taskToken":"t"}"#).unwrap_err(),
        ] {
            assert!(CallbackError::CODES.contains(&e.code()));
        }
    }

    #[test]
    fn limits_are_inclusive() {
        let at = format!(
            r#"{{"taskToken":"{}","error":"{}","cause":"{}"}}"#,
            "t".repeat(1024),
            "e".repeat(256),
            "c".repeat(32_768)
        );
        assert!(decode(&at).is_ok());
        let output = format!("\"{}\"", "x".repeat(262_142));
        assert_eq!(output.len(), MAX_OUTPUT_BYTES);
        assert!(parse_output_text(&output).is_ok());
    }
}
