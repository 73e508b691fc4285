//! Start events: `{"stateMachine", "name"?, "input"?, "traceHeader"?}` as JSON, or protobuf
//! `StartExecution` when the record has the header `content-type: application/x-protobuf`.

use crate::arn::{parse_state_machine_ref, valid_name, MachineRef};
use crate::numbers::find_out_of_range_number;
use crate::pb;
use prost::Message as _;
use serde::de::{Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
    /// The record has no value (a tombstone) or an empty one.
    #[error("{0}")]
    EmptyRecord(String),
    /// A number that has no exact representation (an integer beyond i64/u64, a float beyond
    /// f64): refused instead of silently rounded.
    #[error("{0}")]
    NumberOutOfRange(String),
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
    /// The machine exists, but has no such version or alias.
    #[error("state machine '{machine}' has no version or alias '{qualifier}'")]
    UnknownVersionOrAlias {
        /// The machine name.
        machine: String,
        /// The unknown `:version` or `:alias`.
        qualifier: String,
    },
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
            StartError::EmptyRecord(_) => "EmptyRecord",
            StartError::NumberOutOfRange(_) => "NumberOutOfRange",
            StartError::InvalidProtobuf(_) => "InvalidProtobuf",
            StartError::InvalidStartEvent(_) => "InvalidStartEvent",
            StartError::UnknownStateMachine(_) => "UnknownStateMachine",
            StartError::ForeignStateMachineArn(_) => "ForeignStateMachineArn",
            StartError::UnknownVersionOrAlias { .. } => "UnknownVersionOrAlias",
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
    /// Decodes a record value (`None`: a tombstone); `content_type` is the value of its
    /// `content-type` header, if any.
    pub fn decode(
        value: Option<&[u8]>,
        content_type: Option<&[u8]>,
    ) -> Result<StartEvent, StartError> {
        let value = crate::record_value(value, "a start event").map_err(StartError::EmptyRecord)?;
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

    /// Decodes the JSON form. A field of the event given twice is refused (the event would be
    /// ambiguous: which `stateMachine` did the producer mean?); inside `input`, a repeated key
    /// keeps its last value, as AWS's parser (Jackson's default) does.
    pub fn from_json(value: &[u8]) -> Result<StartEvent, StartError> {
        let text = json_text(value)?;
        let mut de = serde_json::Deserializer::from_str(text);
        // `end`: trailing characters after the value are an error, as in serde_json::from_str.
        let envelope = (&mut de)
            .deserialize_any(EnvelopeVisitor)
            .and_then(|e| de.end().map(|()| e))
            .map_err(|e| {
                let text = e.to_string();
                match text.strip_prefix(DUPLICATE_FIELD) {
                    Some(rest) => StartError::InvalidStartEvent(format!("the field {rest}")),
                    None => json_error(e),
                }
            })?;
        let mut fields = match envelope {
            Envelope::Object(fields) => fields,
            Envelope::Other(kind) => {
                return Err(StartError::InvalidStartEvent(format!(
                    "a start event is a JSON object, not {kind}"
                )))
            }
        };
        let state_machine = match fields.state_machine.take() {
            Some(Value::String(s)) => machine_ref(&s)?,
            None | Some(Value::Null) => {
                return Err(StartError::InvalidStartEvent(
                    "the field 'stateMachine' is required".into(),
                ))
            }
            Some(other) => {
                return Err(StartError::InvalidStartEvent(format!(
                    "'stateMachine' must be a string, not {}",
                    crate::json_type_name(&other)
                )))
            }
        };
        let name = optional_string(fields.name.take(), "name")?;
        let trace_header = optional_string(fields.trace_header.take(), "traceHeader")?;
        let input = fields
            .input
            .take()
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
            Some(text) => parse_json(text).map_err(|e| match e {
                StartError::InvalidJson(e) => {
                    StartError::InvalidJson(format!("the field 'input' is not JSON: {e}"))
                }
                other => other,
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

    /// The JSON form of this event (`stateMachine` as [`MachineRef`]'s text: the ARN, qualifier
    /// and scope included, when it came from one).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "stateMachine".into(),
            Value::String(self.state_machine.to_string()),
        );
        if let Some(n) = &self.name {
            m.insert("name".into(), Value::String(n.clone()));
        }
        m.insert("input".into(), self.input.clone());
        if let Some(t) = &self.trace_header {
            m.insert("traceHeader".into(), Value::String(t.clone()));
        }
        Value::Object(m)
    }

    /// The protobuf form of this event (`state_machine` as in [`StartEvent::to_json`]).
    pub fn to_protobuf(&self) -> Vec<u8> {
        pb::StartExecution {
            state_machine: self.state_machine.to_string(),
            name: self.name.clone(),
            input: Some(self.input.to_string()),
            trace_header: self.trace_header.clone(),
        }
        .encode_to_vec()
    }
}

/// Decodes the raw record of a bound topic (`--bind TOPIC=MACHINE`): the whole value is the
/// execution input.
pub fn decode_raw_input(value: Option<&[u8]>) -> Result<Value, StartError> {
    let Some(value) = value else {
        return Err(StartError::EmptyRecord(
            "the record has no value (a tombstone): the input of a bound topic is JSON".into(),
        ));
    };
    let v = serde_json::from_str(json_text(value)?).map_err(json_error)?;
    check_size(&v)?;
    Ok(v)
}

/// The UTF-8 text of a JSON record, after the exact-number check.
fn json_text(value: &[u8]) -> Result<&str, StartError> {
    let text = std::str::from_utf8(value).map_err(|e| StartError::InvalidUtf8(e.to_string()))?;
    check_numbers(text)?;
    Ok(text)
}

/// Parses JSON text into a value, after the exact-number check.
fn parse_json(text: &str) -> Result<Value, StartError> {
    check_numbers(text)?;
    serde_json::from_str(text).map_err(json_error)
}

fn check_numbers(text: &str) -> Result<(), StartError> {
    match find_out_of_range_number(text) {
        Some(n) => Err(StartError::NumberOutOfRange(n.to_string())),
        None => Ok(()),
    }
}

/// serde_json's error as an `InvalidJson` cause; its nesting bound gets a sentence of its own.
fn json_error(e: serde_json::Error) -> StartError {
    let text = e.to_string();
    if text.starts_with("recursion limit exceeded") {
        StartError::InvalidJson(format!(
            "the JSON nests deeper than {MAX_JSON_DEPTH} arrays/objects ({text})"
        ))
    } else {
        StartError::InvalidJson(text)
    }
}

/// serde_json's nesting bound (arrays and objects), which start events inherit.
pub const MAX_JSON_DEPTH: usize = 128;

/// The top level of a JSON start event, read without building the whole object: each known
/// field at most once; other fields are skipped (not kept).
enum Envelope {
    Object(Box<Fields>),
    /// Not an object: what it is, for the error.
    Other(&'static str),
}

#[derive(Default)]
struct Fields {
    state_machine: Option<Value>,
    name: Option<Value>,
    input: Option<Value>,
    trace_header: Option<Value>,
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a start event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "stateMachine" => &mut fields.state_machine,
                "name" => &mut fields.name,
                "input" => &mut fields.input,
                "traceHeader" => &mut fields.trace_header,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(serde::de::Error::custom(format_args!(
                    "{DUPLICATE_FIELD}'{key}' is given more than once"
                )));
            }
            *slot = Some(map.next_value()?);
        }
        Ok(Envelope::Object(Box::new(fields)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Envelope, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Envelope::Other("an array"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Envelope, E> {
        Ok(Envelope::Other("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Envelope, E> {
        Ok(Envelope::Other("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Envelope, E> {
        Ok(Envelope::Other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Envelope, E> {
        Ok(Envelope::Other("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Envelope, E> {
        Ok(Envelope::Other("a string"))
    }
    fn visit_unit<E>(self) -> Result<Envelope, E> {
        Ok(Envelope::Other("null"))
    }
}

/// Marks the visitor's duplicate-field error, so it becomes `InvalidStartEvent`.
const DUPLICATE_FIELD: &str = "duplicate field: ";

fn machine_ref(s: &str) -> Result<MachineRef, StartError> {
    parse_state_machine_ref(s).ok_or_else(|| {
        StartError::InvalidStartEvent(format!(
            "'stateMachine' must be a state machine name or ARN, not '{s}'"
        ))
    })
}

fn optional_string(value: Option<Value>, field: &str) -> Result<Option<String>, StartError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(StartError::InvalidStartEvent(format!(
            "'{field}' must be a string, not {}",
            crate::json_type_name(&other)
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
        let unknown_version = StartError::UnknownVersionOrAlias {
            machine: "m".into(),
            qualifier: "7".into(),
        };
        assert_eq!(unknown_version.code(), "UnknownVersionOrAlias");
        assert_eq!(
            unknown_version.to_string(),
            "state machine 'm' has no version or alias '7'"
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
        let d = StartEvent::decode(Some(&bytes), Some(b"application/x-protobuf")).expect("decodes");
        assert_eq!(d, e);
    }

    #[test]
    fn protobuf_errors() {
        assert_eq!(
            code(StartEvent::decode(
                Some(b"\xff\xff\xff"),
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
        assert!(StartEvent::decode(Some(json), None).is_ok());
        assert!(StartEvent::decode(Some(json), Some(b"application/json")).is_ok());
        assert_eq!(
            code(StartEvent::decode(
                Some(json),
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
        assert_eq!(decode_raw_input(Some(b"{\"a\":1}")), Ok(json!({"a": 1})));
        assert_eq!(
            decode_raw_input(Some(b"nope")).expect_err("bad").code(),
            "InvalidJson"
        );
        assert_eq!(
            decode_raw_input(Some(b"\xc3")).expect_err("bad").code(),
            "InvalidUtf8"
        );
    }
    // One test per bad-input class of a start event (issue #13); the executor's
    // `tests/bad_input.rs` sends the same classes through a pod.

    #[test]
    fn a_tombstone_and_an_empty_value_are_empty_records() {
        let tombstone = StartEvent::decode(None, None).expect_err("tombstone");
        assert_eq!(tombstone.code(), "EmptyRecord");
        assert!(tombstone.to_string().contains("tombstone"), "{tombstone}");
        let empty = StartEvent::decode(Some(b""), None).expect_err("empty");
        assert_eq!(empty.code(), "EmptyRecord");
        assert!(empty.to_string().contains("empty"), "{empty}");
        let empty_pb = StartEvent::decode(Some(b""), Some(b"application/x-protobuf"));
        assert_eq!(code(empty_pb), "EmptyRecord");
        assert_eq!(
            decode_raw_input(None).expect_err("tombstone").code(),
            "EmptyRecord"
        );
    }

    #[test]
    fn non_object_json_is_an_invalid_start_event_naming_its_type() {
        for (text, kind) in [
            ("[1, {\"stateMachine\": \"a\"}]", "an array"),
            ("42", "a number"),
            ("\"hello\"", "a string"),
            ("null", "null"),
            ("true", "a boolean"),
        ] {
            let e = StartEvent::from_json(text.as_bytes()).expect_err(text);
            assert_eq!(e.code(), "InvalidStartEvent", "{text}");
            assert!(e.to_string().ends_with(kind), "{text}: {e}");
        }
    }

    #[test]
    fn trailing_text_after_the_object_is_invalid_json() {
        assert_eq!(
            code(StartEvent::from_json(br#"{"stateMachine":"a"} {"#)),
            "InvalidJson"
        );
        assert!(StartEvent::from_json(b" {\"stateMachine\":\"a\"} \n").is_ok());
    }

    #[test]
    fn a_missing_or_non_string_state_machine_is_refused() {
        for text in [
            r#"{"input":{}}"#,
            r#"{"stateMachine":null}"#,
            r#"{"stateMachine":["a"]}"#,
            r#"{"stateMachine":{"name":"a"}}"#,
            r#"{"stateMachine":true}"#,
        ] {
            assert_eq!(
                code(StartEvent::from_json(text.as_bytes())),
                "InvalidStartEvent",
                "{text}"
            );
        }
    }

    #[test]
    fn a_field_of_the_event_given_twice_is_refused() {
        let e = StartEvent::from_json(br#"{"stateMachine":"nope","stateMachine":"hello"}"#)
            .expect_err("ambiguous");
        assert_eq!(e.code(), "InvalidStartEvent");
        assert!(
            e.to_string()
                .contains("'stateMachine' is given more than once"),
            "{e}"
        );
        assert_eq!(
            code(StartEvent::from_json(
                br#"{"stateMachine":"a","input":1,"input":2}"#
            )),
            "InvalidStartEvent"
        );
    }

    #[test]
    fn a_key_repeated_inside_the_input_keeps_its_last_value_as_aws_does() {
        let e = StartEvent::from_json(br#"{"stateMachine":"a","input":{"k":1,"k":2}}"#)
            .expect("Jackson's default: last wins");
        assert_eq!(e.input, json!({"k": 2}));
    }

    #[test]
    fn unknown_fields_of_the_event_are_skipped() {
        let e = StartEvent::from_json(br#"{"extra":[[1]],"stateMachine":"a"}"#).expect("valid");
        assert_eq!(e.state_machine.name, "a");
    }

    #[test]
    fn integers_beyond_64_bits_are_refused_not_rounded() {
        let text = br#"{"stateMachine":"a","input":{"n":18446744073709551617123}}"#;
        let e = StartEvent::from_json(text).expect_err("would be rounded");
        assert_eq!(e.code(), "NumberOutOfRange");
        assert!(e.to_string().contains("18446744073709551617123"), "{e}");
        let exact = StartEvent::from_json(
            br#"{"stateMachine":"a","input":[18446744073709551615,-9223372036854775808]}"#,
        )
        .expect("64-bit integers are exact");
        assert_eq!(exact.input, json!([u64::MAX, i64::MIN]));
        let pb = pb::StartExecution {
            state_machine: "a".into(),
            input: Some("[1e999]".into()),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(code(StartEvent::from_protobuf(&pb)), "NumberOutOfRange");
        assert_eq!(
            decode_raw_input(Some(b"99999999999999999999"))
                .expect_err("raw")
                .code(),
            "NumberOutOfRange"
        );
    }

    #[test]
    fn numbers_beyond_the_double_range_are_refused() {
        let e = StartEvent::from_json(br#"{"stateMachine":"a","input":{"x":1e400}}"#)
            .expect_err("infinite");
        assert_eq!(e.code(), "NumberOutOfRange");
        assert!(e.to_string().contains("1e400"), "{e}");
    }

    #[test]
    fn input_nested_100000_levels_is_invalid_json_with_the_bound_named() {
        let deep = format!(
            r#"{{"stateMachine":"a","input":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        // serde_json stops at 128 levels: a 1 MiB stack (half of a tokio worker's) is enough.
        let e = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(move || StartEvent::from_json(deep.as_bytes()).expect_err("too deep"))
            .expect("thread")
            .join()
            .expect("no stack overflow");
        assert_eq!(e.code(), "InvalidJson");
        assert!(e.to_string().contains("nests deeper than 128"), "{e}");
        let ok = format!(
            r#"{{"stateMachine":"a","input":{}{}}}"#,
            "[".repeat(120),
            "]".repeat(120)
        );
        assert!(StartEvent::from_json(ok.as_bytes()).is_ok());
    }
}
