//! Record formats of Expressway's Kafka topics.
//!
//! * [`pb`]: prost types generated from `proto/expressway/v1/*.proto`.
//! * [`start`]: start events (JSON or protobuf) and their stable error codes.
//! * [`identity`]: deterministic execution names and ARNs.
//! * [`convert`]: JSON record values to their protobuf forms.
//! * [`numbers`]: numbers without an exact value (refused, never rounded).
//! * [`arn`]: state machine references (`NAME` or `arn:...:stateMachine:NAME[:qualifier]`).
//! * [`task_token`]: task tokens of `.waitForTaskToken` Tasks (HMAC-SHA256 authenticated).
//! * [`callback`]: callback records (SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat).
//! * [`map_child`]: the header of a Distributed Map child's start event.
//!
//! This crate knows record *formats* only, never Kafka clients.

pub mod arn;
pub mod callback;
pub mod convert;
pub mod identity;
pub mod map_child;
pub mod numbers;
pub mod start;
pub mod task_token;

/// Generated protobuf types (package `expressway.v1`).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/expressway.v1.rs"));
}

pub use arn::{parse_state_machine_ref, ArnScope, MachineRef};
pub use callback::{CallbackError, CallbackOutcome, CallbackRecord};
pub use identity::{execution_identity, nested_identity, ExecutionIdentity, NestedOrigin};
pub use map_child::{MapChild, MAP_CHILD_HEADER};
pub use start::{StartError, StartEvent, MAX_INPUT_BYTES, PROTOBUF_CONTENT_TYPE};
pub use task_token::{TaskTokenKey, TokenError, TokenFields};

/// What a JSON value is, for error messages: "null", "a boolean", "a number", "a string",
/// "an array" or "an object".
pub fn json_type_name(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A record's value, or why there is none: `None` is a tombstone, `Some([])` an empty value
/// (`what` names the record kind in the message, e.g. "a start event").
pub fn record_value<'a>(value: Option<&'a [u8]>, what: &str) -> Result<&'a [u8], String> {
    match value {
        None => Err(format!(
            "the record has no value (a tombstone): {what} is a JSON object"
        )),
        Some([]) => Err(format!(
            "the record value is empty: {what} is a JSON object"
        )),
        Some(v) => Ok(v),
    }
}

/// Default topic names (BLUEPRINT "Topics and records").
pub mod topics {
    /// Start events.
    pub const START: &str = "expressway.start";
    /// One log record per finished execution.
    pub const LOGS: &str = "expressway.logs";
    /// One result record per finished execution.
    pub const RESULTS: &str = "expressway.results";
    /// Dead letters.
    pub const DLQ: &str = "expressway.dlq";
    /// Compacted state machine definitions.
    pub const DEFINITIONS: &str = "expressway.definitions";
    /// Callbacks of `.waitForTaskToken` Tasks, partitioned like the start topic.
    pub const CALLBACKS: &str = "expressway.callbacks";
}

/// Dead-letter header names.
pub mod dlq_headers {
    /// Stable error code ([`crate::StartError::code`]).
    pub const ERROR: &str = "expressway-error";
    /// Human-readable cause.
    pub const CAUSE: &str = "expressway-cause";
    /// `topic/partition/offset` of the original record.
    pub const SOURCE: &str = "expressway-source";
}
