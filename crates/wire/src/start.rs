//! Start events: `{"stateMachine", "name"?, "input"?, "traceHeader"?}` as JSON, or protobuf
//! `StartExecution` when the record has the header `content-type: application/x-protobuf`.

use crate::arn::{parse_state_machine_ref, valid_name, MachineRef};
use crate::pb;
use prost::Message as _;
use serde_json::{Map, Value};

/// Largest execution input, in bytes of its compact JSON text (AWS Express: 256 KiB).
pub const MAX_INPUT_BYTES: usize = 262_144;

/// The `content-type` header value that marks a protobuf start event.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";

/// Why a record could not start an execution. [`StartError::code`] is the stable code written to
/// the dead-letter header `expressway-error`; the `Display` text is the `expressway-cause`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The record value is not UTF-8 (JSON forms only).
    #[error("the record is not valid UTF-8: {0}")]
    InvalidUtf8(String),
    /// The record value (or a protobuf event's input text) is not JSON.
    #[error("the record is not valid JSON: {0}")]
    InvalidJson(String),
    /// The record is marked protobuf but does not decode as `StartExecution`.
    #[error("the record is not a valid protobuf StartExecution: {0}")]
    InvalidProtobuf(String),
    /// Valid JSON/protobuf, but not a start event (missing `stateMachine`, wrong field types,
    /// invalid names).
    #[error("invalid start event: {0}")]
    InvalidStartEvent(String),
    /// `stateMachine` names no known state machine.
    #[error("unknown state machine '{0}'")]
    UnknownStateMachine(String),
    /// `stateMachine` is an ARN of another partition, region or account than the deployment's
    /// (AWS: `StateMachineDoesNotExist`); the text says which.
    #[error("{0}")]
    ForeignStateMachineArn(String),
    /// The execution input is larger than [`MAX_INPUT_BYTES`].
    #[error("the execution input is {size} bytes, over the limit of {limit} bytes")]
    InputTooLarge {
        /// Size of the compact JSON text of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl StartError {
    /// The stable error code (`InvalidJson`, `UnknownStateMachine`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            StartError::InvalidUtf8(_) => "InvalidUtf8",
            StartError::InvalidJson(_) => "InvalidJson",
            StartError::InvalidProtobuf(_) => "InvalidProtobuf",
            StartError::InvalidStartEvent(_) => "InvalidStartEvent",
            StartError::UnknownStateMachine(_) => "UnknownStateMachine",
            StartError::ForeignStateMachineArn(_) => "ForeignStateMachineArn",
            StartError::InputTooLarge { .. } => "InputTooLarge",
        }
    }
}

/// A decoded start event.
#[derive(Debug, Clone, PartialEq)]
pub struct StartEvent {
    /// The referenced state machine.
    pub state_machine: MachineRef,
    /// Explicit execution name.
    pub name: Option<String>,
    /// The execution input (`{}` when absent).
    pub input: Value,
    /// X-Ray trace header.
    pub trace_header: Option<String>,
}

impl StartEvent {
    /// Decodes a record value; `content_type` is the value of its `content-type` header, if any.
    pub fn decode(value: &[u8], content_type: Option<&[u8]>) -> Result<StartEvent, StartError> {
        let is_protobuf = content_type.is_some_and(|ct| {
            std::str::from_utf8(ct)
                .map(|s| {
                    s.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .eq_ignore_ascii_case(PROTOBUF_CONTENT_TYPE)
                })
                .unwrap_or(false)
        });
        if is_protobuf {
            StartEvent::from_protobuf(value)
        } else {
            StartEvent::from_json(value)
        }
    }

    /// Decodes the JSON form.
    pub fn from_json(value: &[u8]) -> Result<StartEvent, StartError> {
        let text =
            std::str::from_utf8(value).map_err(|e| StartError::InvalidUtf8(e.to_string()))?;
        let v: Value =
            serde_json::from_str(text).map_err(|e| StartError::InvalidJson(e.to_string()))?;
        let Value::Object(mut obj) = v else {
            return Err(StartError::InvalidStartEvent(format!(
                "a start event is a JSON object, not {}",
                type_name(&v)
            )));
        };
        let state_machine = match obj.remove("stateMachine") {
            Some(Value::String(s)) => machine_ref(&s)?,
            None | Some(Value::Null) => {
                return Err(StartError::InvalidStartEvent(
                    "the field 'stateMachine' is required".into(),
                ))
            }
            Some(other) => {
                return Err(StartError::InvalidStartEvent(format!(
                    "'stateMachine' must be a string, not {}",
                    type_name(&other)
                )))
            }
        };
        let name = optional_string(&mut obj, "name")?;
        let trace_header = optional_string(&mut obj, "traceHeader")?;
        let input = obj
            .remove("input")
            .unwrap_or_else(|| Value::Object(Map::new()));
        check_name(name.as_deref())?;
        check_size(&input)?;
        Ok(StartEvent {
            state_machine,
            name,
            input,
            trace_header,
        })
    }

    /// Decodes the protobuf form (`expressway.v1.StartExecution`).
    pub fn from_protobuf(value: &[u8]) -> Result<StartEvent, StartError> {
        let msg = pb::StartExecution::decode(value)
            .map_err(|e| StartError::InvalidProtobuf(e.to_string()))?;
        if msg.state_machine.is_empty() {
            return Err(StartError::InvalidStartEvent(
                "the field 'state_machine' is required".into(),
            ));
        }
        let state_machine = machine_ref(&msg.state_machine)?;
        let input = match msg.input.as_deref() {
            None | Some("") => Value::Object(Map::new()),
            Some(text) => serde_json::from_str(text).map_err(|e| {
                StartError::InvalidJson(format!("the field 'input' is not JSON: {e}"))
            })?,
        };
        check_name(msg.name.as_deref())?;
        check_size(&input)?;
        Ok(StartEvent {
            state_machine,
            name: msg.name,
            input,
            trace_header: msg.trace_header,
        })
    }

    /// The JSON form of this event.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let sm = match &self.state_machine.qualifier {
            Some(q) => format!("{}:{q}", self.state_machine.name),
            None => self.state_machine.name.clone(),
        };
        m.insert("stateMachine".into(), Value::String(sm));
        if let Some(n) = &self.name {
            m.insert("name".into(), Value::String(n.clone()));
        }
        m.insert("input".into(), self.input.clone());
        if let Some(t) = &self.trace_header {
            m.insert("traceHeader".into(), Value::String(t.clone()));
        }
        Value::Object(m)
    }

    /// The protobuf form of this event.
    pub fn to_protobuf(&self) -> Vec<u8> {
        pb::StartExecution {
            state_machine: self.state_machine.name.clone(),
            name: self.name.clone(),
            input: Some(self.input.to_string()),
            trace_header: self.trace_header.clone(),
        }
        .encode_to_vec()
    }
}

/// Decodes the raw record of a bound topic (`--bind TOPIC=MACHINE`): the whole value is the
/// execution input.
pub fn decode_raw_input(value: &[u8]) -> Result<Value, StartError> {
    let text = std::str::from_utf8(value).map_err(|e| StartError::InvalidUtf8(e.to_string()))?;
    let v: Value =
        serde_json::from_str(text).map_err(|e| StartError::InvalidJson(e.to_string()))?;
    check_size(&v)?;
    Ok(v)
}

fn machine_ref(s: &str) -> Result<MachineRef, StartError> {
    parse_state_machine_ref(s).ok_or_else(|| {
        StartError::InvalidStartEvent(format!(
            "'stateMachine' must be a state machine name or ARN, not '{s}'"
        ))
    })
}

fn optional_string(
    obj: &mut Map<String, Value>,
    field: &str,
) -> Result<Option<String>, StartError> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(StartError::InvalidStartEvent(format!(
            "'{field}' must be a string, not {}",
            type_name(&other)
        ))),
    }
}

fn check_name(name: Option<&str>) -> Result<(), StartError> {
    match name {
        Some(n) if !valid_name(n) => Err(StartError::InvalidStartEvent(format!(
            "invalid execution name '{n}' (1-80 characters, no whitespace or <>{{}}[]?*\"#%\\^|~`$&,;:/)"
        ))),
        _ => Ok(()),
    }
}

pub use expressway_asl::template::json_size;

fn check_size(input: &Value) -> Result<(), StartError> {
    let size = json_size(input);
    if size > MAX_INPUT_BYTES {
        return Err(StartError::InputTooLarge {
            size,
            limit: MAX_INPUT_BYTES,
        });
    }
    Ok(())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(r: Result<StartEvent, StartError>) -> &'static str {
        r.expect_err("must fail").code()
    }

    #[test]
    fn full_json_event() {
        let e = StartEvent::from_json(
            br#"{"stateMachine":"hello","name":"n1","input":{"a":1},"traceHeader":"Root=1"}"#,
        )
        .expect("valid");
        assert_eq!(e.state_machine.name, "hello");
        assert_eq!(e.name.as_deref(), Some("n1"));
        assert_eq!(e.input, json!({"a": 1}));
        assert_eq!(e.trace_header.as_deref(), Some("Root=1"));
    }

    #[test]
    fn minimal_json_event_defaults_input() {
        let e = StartEvent::from_json(
            br#"{"stateMachine":"arn:aws:states:us-east-1:123456789012:stateMachine:hello:v1"}"#,
        )
        .expect("valid");
        assert_eq!(e.state_machine.name, "hello");
        assert_eq!(e.state_machine.qualifier.as_deref(), Some("v1"));
        assert_eq!(e.input, json!({}));
        assert_eq!(e.name, None);
    }

    #[test]
    fn error_codes() {
        assert_eq!(code(StartEvent::from_json(b"{not json")), "InvalidJson");
        assert_eq!(code(StartEvent::from_json(b"\xff\xfe{}")), "InvalidUtf8");
        assert_eq!(code(StartEvent::from_json(b"[1]")), "InvalidStartEvent");
        assert_eq!(code(StartEvent::from_json(b"{}")), "InvalidStartEvent");
        assert_eq!(
            code(StartEvent::from_json(br#"{"stateMachine":5}"#)),
            "InvalidStartEvent"
        );
        assert_eq!(
            code(StartEvent::from_json(br#"{"stateMachine":"a","name":3}"#)),
            "InvalidStartEvent"
        );
        assert_eq!(
            code(StartEvent::from_json(
                br#"{"stateMachine":"a","name":"x y"}"#
            )),
            "InvalidStartEvent"
        );
        assert_eq!(
            code(StartEvent::from_json(br#"{"stateMachine":"a b"}"#)),
            "InvalidStartEvent"
        );
        assert_eq!(
            StartError::UnknownStateMachine("x".into()).code(),
            "UnknownStateMachine"
        );
    }

    #[test]
    fn input_size_limit_is_exact() {
        // A JSON string of n chars has compact size n + 2.
        let at_limit = json!({"stateMachine": "a", "input": "x".repeat(MAX_INPUT_BYTES - 2)});
        let ok = StartEvent::from_json(at_limit.to_string().as_bytes()).expect("at the limit");
        assert_eq!(json_size(&ok.input), MAX_INPUT_BYTES);
        let over = json!({"stateMachine": "a", "input": "x".repeat(MAX_INPUT_BYTES - 1)});
        let err = StartEvent::from_json(over.to_string().as_bytes()).expect_err("over");
        assert_eq!(
            err,
            StartError::InputTooLarge {
                size: MAX_INPUT_BYTES + 1,
                limit: MAX_INPUT_BYTES
            }
        );
        assert_eq!(err.code(), "InputTooLarge");
    }

    #[test]
    fn protobuf_round_trip() {
        let e = StartEvent {
            state_machine: parse_state_machine_ref("hello").expect("valid"),
            name: Some("p1".into()),
            input: json!({"k": [1, 2]}),
            trace_header: None,
        };
        let bytes = e.to_protobuf();
        let d = StartEvent::decode(&bytes, Some(b"application/x-protobuf")).expect("decodes");
        assert_eq!(d, e);
    }

    #[test]
    fn protobuf_errors() {
        assert_eq!(
            code(StartEvent::decode(
                b"\xff\xff\xff",
                Some(b"application/x-protobuf")
            )),
            "InvalidProtobuf"
        );
        let empty = pb::StartExecution::default().encode_to_vec();
        assert_eq!(code(StartEvent::from_protobuf(&empty)), "InvalidStartEvent");
        let bad_input = pb::StartExecution {
            state_machine: "a".into(),
            input: Some("{".into()),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(code(StartEvent::from_protobuf(&bad_input)), "InvalidJson");
    }

    #[test]
    fn content_type_selects_the_format() {
        let json = br#"{"stateMachine":"a"}"#;
        assert!(StartEvent::decode(json, None).is_ok());
        assert!(StartEvent::decode(json, Some(b"application/json")).is_ok());
        assert_eq!(
            code(StartEvent::decode(
                json,
                Some(b"application/x-protobuf; v=1")
            )),
            "InvalidProtobuf"
        );
    }

    #[test]
    fn json_round_trip() {
        let e = StartEvent::from_json(br#"{"stateMachine":"a","name":"b","input":[1]}"#)
            .expect("valid");
        let again = StartEvent::from_json(e.to_json().to_string().as_bytes()).expect("valid");
        assert_eq!(again, e);
    }

    #[test]
    fn raw_input() {
        assert_eq!(decode_raw_input(b"{\"a\":1}"), Ok(json!({"a": 1})));
        assert_eq!(
            decode_raw_input(b"nope").expect_err("bad").code(),
            "InvalidJson"
        );
        assert_eq!(
            decode_raw_input(b"\xc3").expect_err("bad").code(),
            "InvalidUtf8"
        );
    }
}
