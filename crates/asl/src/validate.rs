//! Static validation of state machine definitions, as AWS's `ValidateStateMachineDefinition` and
//! `CreateStateMachine` (`InvalidDefinition`) do it.
//!
//! [`validate`] collects every diagnostic (it never stops at the first) in a deterministic order:
//!
//! 1. the text must parse (`INVALID_JSON_DESCRIPTION`, Jackson-shaped) and be a JSON object;
//! 2. a schema pass over the whole document in document order (`SCHEMA_VALIDATION_FAILED`): required
//!    and unsupported fields per state type and query language, value types, field combinations, paths,
//!    intrinsic calls, Retry/Catch, Map labels, Express restrictions; duplicate state names are reported
//!    here too (`DUPLICATE_STATE_NAME`);
//! 3. only when the schema pass found no error, a graph pass per scope (the machine, then each Parallel
//!    branch and Map processor in document order): missing transition targets and unreachable states
//!    (`MISSING_TRANSITION_TARGET`) and scopes without a terminal state (`MISSING_END_STATE`, which
//!    suppresses the unreachable-state check of its scope, as AWS does).
//!
//! Locations are JSON-pointer-like strings built the way AWS prints them: object members as
//! `/Name` (unescaped) and array elements as `[i]` (`/States/C/Choices[0]/Next`). A few diagnostics have
//! no location (AWS omits the field; CreateStateMachine prints `at null`).
//!
//! Messages marked "measured" below were recorded from AWS (the conformance corpus, AWS-reported issue
//! threads); the others follow AWS's wording style but are not verified against AWS. Measured:
//! `These fields are required: [..]` (listed in `java.util.HashSet` order), `Field 'X' is not
//! supported`, the QueryLanguage messages, `The value for the field 'k.$' must be a valid JSONPath or a
//! valid intrinsic function call` (at the object holding the key), `String does not match RFC3339
//! timestamp`, `The field 'RoleArn' is required but was missing`, the Express `.sync` /
//! `.waitForTaskToken` messages, `Missing 'Next' target: X`, `State "X" is not reachable.`,
//! `Workflow has no terminal state`, `Value is not a valid resource ARN` (Step Functions Local),
//! `Definition must be a valid JSON object` and the Jackson
//! `INVALID_JSON_DESCRIPTION` shape. The Map `Label` reasons come from LocalStack's wording.
//! Not measured (our wording): Next/End and Wait one-of messages, type/enum/range messages, Retry/Catch
//! error-name rules, Choice rule shape, HeartbeatSeconds, name length, duplicate names, activities on
//! Express, `k` with `k.$`, incomplete `{% %}` strings. Intrinsic calls whose literal arguments have
//! the wrong type get the measured intrinsic message.

pub(crate) mod jackson;
mod jsonata_wrapper;
mod resource;

use crate::intrinsic::Intrinsic;
use crate::jsonata::type_name;
use crate::jsonpath::JsonPath;
use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// The state machine type the definition is validated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineType {
    /// STANDARD workflows.
    Standard,
    /// EXPRESS workflows (no `.sync` or activities; `.waitForTaskToken` only where Expressway runs it,
    /// with a WARNING that AWS Express would refuse it).
    Express,
}

/// Diagnostic severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Makes the definition invalid.
    Error,
    /// Reported but does not make the definition invalid.
    Warning,
}

impl Severity {
    /// AWS's spelling: `ERROR` / `WARNING`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
        }
    }
}

/// Diagnostic codes AWS uses.
pub mod codes {
    /// The text is not JSON.
    pub const INVALID_JSON_DESCRIPTION: &str = "INVALID_JSON_DESCRIPTION";
    /// Structural / field-level problem.
    pub const SCHEMA_VALIDATION_FAILED: &str = "SCHEMA_VALIDATION_FAILED";
    /// A transition names no state of its scope, or a state is never targeted.
    pub const MISSING_TRANSITION_TARGET: &str = "MISSING_TRANSITION_TARGET";
    /// A scope has no terminal state.
    pub const MISSING_END_STATE: &str = "MISSING_END_STATE";
    /// Two states share a name.
    pub const DUPLICATE_STATE_NAME: &str = "DUPLICATE_STATE_NAME";
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// ERROR or WARNING.
    pub severity: Severity,
    /// One of [`codes`].
    pub code: &'static str,
    /// AWS's message text.
    pub message: String,
    /// Where: `/`, `/States/A/Next`, `/States/C/Choices[0]/Next`…; `None` where AWS gives no location.
    pub location: Option<String>,
}

impl Serialize for Diagnostic {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Diagnostic", 4)?;
        s.serialize_field("severity", self.severity.as_str())?;
        s.serialize_field("code", self.code)?;
        s.serialize_field("message", &self.message)?;
        if let Some(location) = &self.location {
            s.serialize_field("location", location)?;
        } else {
            s.skip_field("location")?;
        }
        s.end()
    }
}

/// The outcome of a validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validation {
    /// Every finding, in a deterministic order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Validation {
    /// `"FAIL"` when any diagnostic is an error, else `"OK"`.
    pub fn result(&self) -> &'static str {
        if self.is_ok() {
            "OK"
        } else {
            "FAIL"
        }
    }

    /// True when no diagnostic is an error.
    pub fn is_ok(&self) -> bool {
        !self
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// AWS's `InvalidDefinition` message for CreateStateMachine/UpdateStateMachine, `None` when valid:
    /// `Invalid State Machine Definition: '<CODE>: <message> at <location>, <CODE>: …'` (errors only;
    /// a missing location prints as `null`, as AWS does).
    pub fn create_state_machine_message(&self) -> Option<String> {
        if self.is_ok() {
            return None;
        }
        let parts: Vec<String> = self
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| {
                format!(
                    "{}: {} at {}",
                    d.code,
                    d.message,
                    d.location.as_deref().unwrap_or("null")
                )
            })
            .collect();
        Some(format!(
            "Invalid State Machine Definition: '{}'",
            parts.join(", ")
        ))
    }
}

impl Serialize for Validation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Validation", 3)?;
        s.serialize_field("result", self.result())?;
        s.serialize_field("diagnostics", &self.diagnostics)?;
        s.serialize_field("truncated", &false)?;
        s.end()
    }
}

/// Validates a definition as sent (text), like ValidateStateMachineDefinition.
pub fn validate(definition_text: &str, machine_type: MachineType) -> Validation {
    if definition_text
        .trim_matches([' ', '\t', '\n', '\r'])
        .is_empty()
    {
        return not_an_object();
    }
    // Like Jackson's `readTree`, read the first JSON value and ignore whatever follows it.
    crate::depth::with_stack(|| match crate::json::parse_first(definition_text) {
        Ok(Some(value)) => {
            let mut report = validate_value(&value, machine_type);
            // What validation accepts must load (CreateStateMachine loads it): the loader's
            // errors (e.g. a JSONata expression nested beyond the parser's bound) are reported.
            if report.is_ok() {
                if let Err(e) = crate::load::load(&value) {
                    report.diagnostics.push(Diagnostic {
                        severity: Severity::Error,
                        code: codes::SCHEMA_VALIDATION_FAILED,
                        message: e.message,
                        location: Some(e.location),
                    });
                }
            }
            report
        }
        Ok(None) => not_an_object(),
        Err(e) => Validation {
            diagnostics: vec![Diagnostic {
                severity: Severity::Error,
                code: codes::INVALID_JSON_DESCRIPTION,
                message: e.message,
                location: Some(e.location),
            }],
        },
    })
}

fn not_an_object() -> Validation {
    // Measured: whitespace-only definition.
    Validation {
        diagnostics: vec![Diagnostic {
            severity: Severity::Error,
            code: codes::SCHEMA_VALIDATION_FAILED,
            message: "Definition must be a valid JSON object".into(),
            location: None,
        }],
    }
}

/// Validates an already-parsed definition.
pub fn validate_value(definition: &Value, machine_type: MachineType) -> Validation {
    let Some(root) = definition.as_object() else {
        return not_an_object();
    };
    let mut v = Validator {
        machine_type,
        machine_ql: Ql::JsonPath,
        diagnostics: Vec::new(),
        scopes: Vec::new(),
        names: HashSet::new(),
    };
    v.machine(root);
    let schema_failed = v
        .diagnostics
        .iter()
        .any(|d| d.code == codes::SCHEMA_VALIDATION_FAILED);
    if !schema_failed {
        let scopes = std::mem::take(&mut v.scopes);
        for scope in &scopes {
            v.graph(scope);
        }
    }
    Validation {
        diagnostics: v.diagnostics,
    }
}

// ---------------------------------------------------------------------------------------------------
// Field tables

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ql {
    JsonPath,
    Jsonata,
}

impl Ql {
    fn name(self) -> &'static str {
        match self {
            Ql::JsonPath => "JSONPath",
            Ql::Jsonata => "JSONata",
        }
    }
    fn other(self) -> Ql {
        match self {
            Ql::JsonPath => Ql::Jsonata,
            Ql::Jsonata => Ql::JsonPath,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pass,
    Task,
    Choice,
    Wait,
    Succeed,
    Fail,
    Parallel,
    Map,
}

impl Kind {
    fn from_name(name: &str) -> Option<Kind> {
        Some(match name {
            "Pass" => Kind::Pass,
            "Task" => Kind::Task,
            "Choice" => Kind::Choice,
            "Wait" => Kind::Wait,
            "Succeed" => Kind::Succeed,
            "Fail" => Kind::Fail,
            "Parallel" => Kind::Parallel,
            "Map" => Kind::Map,
            _ => return None,
        })
    }

    /// Fields (besides Type, Comment, QueryLanguage) a state of this kind accepts in `ql` mode.
    fn fields(self, ql: Ql) -> &'static [&'static str] {
        match (self, ql) {
            (Kind::Pass, Ql::JsonPath) => &[
                "InputPath",
                "OutputPath",
                "Parameters",
                "Result",
                "ResultPath",
                "Assign",
                "Next",
                "End",
            ],
            (Kind::Pass, Ql::Jsonata) => &["Output", "Assign", "Next", "End"],
            (Kind::Task, Ql::JsonPath) => &[
                "Resource",
                "InputPath",
                "OutputPath",
                "Parameters",
                "ResultSelector",
                "ResultPath",
                "TimeoutSeconds",
                "TimeoutSecondsPath",
                "HeartbeatSeconds",
                "HeartbeatSecondsPath",
                "Credentials",
                "Retry",
                "Catch",
                "Assign",
                "Next",
                "End",
            ],
            (Kind::Task, Ql::Jsonata) => &[
                "Resource",
                "Arguments",
                "Output",
                "TimeoutSeconds",
                "HeartbeatSeconds",
                "Credentials",
                "Retry",
                "Catch",
                "Assign",
                "Next",
                "End",
            ],
            (Kind::Choice, Ql::JsonPath) => {
                &["InputPath", "OutputPath", "Choices", "Default", "Assign"]
            }
            (Kind::Choice, Ql::Jsonata) => &["Choices", "Default", "Output", "Assign"],
            (Kind::Wait, Ql::JsonPath) => &[
                "InputPath",
                "OutputPath",
                "Seconds",
                "Timestamp",
                "SecondsPath",
                "TimestampPath",
                "Assign",
                "Next",
                "End",
            ],
            (Kind::Wait, Ql::Jsonata) => {
                &["Seconds", "Timestamp", "Output", "Assign", "Next", "End"]
            }
            (Kind::Succeed, Ql::JsonPath) => &["InputPath", "OutputPath"],
            (Kind::Succeed, Ql::Jsonata) => &["Output"],
            (Kind::Fail, Ql::JsonPath) => &["Error", "ErrorPath", "Cause", "CausePath"],
            (Kind::Fail, Ql::Jsonata) => &["Error", "Cause"],
            (Kind::Parallel, Ql::JsonPath) => &[
                "Branches",
                "InputPath",
                "OutputPath",
                "Parameters",
                "ResultSelector",
                "ResultPath",
                "Retry",
                "Catch",
                "Assign",
                "Next",
                "End",
            ],
            (Kind::Parallel, Ql::Jsonata) => &[
                "Branches",
                "Arguments",
                "Output",
                "Retry",
                "Catch",
                "Assign",
                "Next",
                "End",
            ],
            (Kind::Map, Ql::JsonPath) => &[
                "ItemProcessor",
                "Iterator",
                "ItemsPath",
                "ItemSelector",
                "Parameters",
                "ItemReader",
                "ItemBatcher",
                "ResultWriter",
                "MaxConcurrency",
                "MaxConcurrencyPath",
                "ToleratedFailurePercentage",
                "ToleratedFailurePercentagePath",
                "ToleratedFailureCount",
                "ToleratedFailureCountPath",
                "Label",
                "InputPath",
                "OutputPath",
                "ResultSelector",
                "ResultPath",
                "Retry",
                "Catch",
                "Assign",
                "Next",
                "End",
            ],
            (Kind::Map, Ql::Jsonata) => &[
                "ItemProcessor",
                "Iterator",
                "Items",
                "ItemSelector",
                "ItemReader",
                "ItemBatcher",
                "ResultWriter",
                "MaxConcurrency",
                "ToleratedFailurePercentage",
                "ToleratedFailureCount",
                "Label",
                "Output",
                "Retry",
                "Catch",
                "Assign",
                "Next",
                "End",
            ],
        }
    }

    fn has_transition(self) -> bool {
        !matches!(self, Kind::Choice | Kind::Succeed | Kind::Fail)
    }
}

const CHOICE_COMPARATORS: &[&str] = &[
    "StringEquals",
    "StringEqualsPath",
    "StringLessThan",
    "StringLessThanPath",
    "StringGreaterThan",
    "StringGreaterThanPath",
    "StringLessThanEquals",
    "StringLessThanEqualsPath",
    "StringGreaterThanEquals",
    "StringGreaterThanEqualsPath",
    "StringMatches",
    "NumericEquals",
    "NumericEqualsPath",
    "NumericLessThan",
    "NumericLessThanPath",
    "NumericGreaterThan",
    "NumericGreaterThanPath",
    "NumericLessThanEquals",
    "NumericLessThanEqualsPath",
    "NumericGreaterThanEquals",
    "NumericGreaterThanEqualsPath",
    "BooleanEquals",
    "BooleanEqualsPath",
    "TimestampEquals",
    "TimestampEqualsPath",
    "TimestampLessThan",
    "TimestampLessThanPath",
    "TimestampGreaterThan",
    "TimestampGreaterThanPath",
    "TimestampLessThanEquals",
    "TimestampLessThanEqualsPath",
    "TimestampGreaterThanEquals",
    "TimestampGreaterThanEqualsPath",
    "IsNull",
    "IsPresent",
    "IsNumeric",
    "IsString",
    "IsBoolean",
    "IsTimestamp",
];

/// Orders field names the way a `java.util.HashSet<String>` of default capacity iterates them
/// (AWS lists missing fields from such a set: `[States, StartAt]`, measured).
fn java_hash_set_order<'a>(names: &[&'a str]) -> Vec<&'a str> {
    fn bucket(s: &str) -> u32 {
        let h = s
            .encode_utf16()
            .fold(0u32, |h, c| h.wrapping_mul(31).wrapping_add(u32::from(c)));
        (h ^ (h >> 16)) & 15
    }
    let mut out = names.to_vec();
    out.sort_by_key(|n| bucket(n)); // stable: insertion order within a bucket
    out
}

// ---------------------------------------------------------------------------------------------------
// The validator

/// One state graph: the machine, a Parallel branch or a Map processor.
struct Scope {
    pointer: String,
    start_at: Option<String>,
    states: Vec<StateNode>,
}

struct StateNode {
    name: String,
    pointer: String,
    terminal: bool,
    /// (target, location of the field naming it)
    transitions: Vec<(String, String)>,
}

struct Validator {
    machine_type: MachineType,
    machine_ql: Ql,
    diagnostics: Vec<Diagnostic>,
    scopes: Vec<Scope>,
    names: HashSet<String>,
}

fn member(pointer: &str, name: &str) -> String {
    if pointer == "/" {
        format!("/{name}")
    } else {
        format!("{pointer}/{name}")
    }
}

fn element(pointer: &str, index: usize) -> String {
    format!("{pointer}[{index}]")
}

fn is_jsonata_expression(v: &Value) -> bool {
    matches!(v, Value::String(s) if s.starts_with("{%") && s.ends_with("%}") && s.len() >= 4)
}

impl Validator {
    fn error(&mut self, code: &'static str, message: impl Into<String>, location: Option<String>) {
        self.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            location,
        });
    }

    fn warning(&mut self, code: &'static str, message: impl Into<String>, location: &str) {
        self.diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            code,
            message: message.into(),
            location: Some(location.to_string()),
        });
    }

    fn schema(&mut self, message: impl Into<String>, location: &str) {
        self.error(
            codes::SCHEMA_VALIDATION_FAILED,
            message,
            Some(location.to_string()),
        );
    }

    fn required(&mut self, missing: &[&str], location: &str) {
        if !missing.is_empty() {
            // Measured: "These fields are required: [States, StartAt]" at "/".
            let ordered = java_hash_set_order(missing);
            self.schema(
                format!("These fields are required: [{}]", ordered.join(", ")),
                location,
            );
        }
    }

    fn unsupported(&mut self, field: &str, location: &str) {
        // Measured: "Field 'TimeoutSeconds' is not supported" at the state.
        self.schema(format!("Field '{field}' is not supported"), location);
    }

    fn wrong_language(&mut self, field: &str, ql: Ql, location: &str) {
        // Measured: "The QueryLanguage is set to 'JSONPath', but field 'Output' is only supported
        // for the 'JSONata' QueryLanguage", located at the state.
        self.schema(
            format!(
                "The QueryLanguage is set to '{}', but field '{field}' is only supported for the '{}' QueryLanguage",
                ql.name(),
                ql.other().name()
            ),
            location,
        );
    }

    fn expect_string<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        field: &str,
        at: &str,
    ) -> Option<&'v str> {
        match obj.get(field) {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                self.schema(
                    format!(
                        "The field '{field}' must be a string but was {}",
                        type_name(other)
                    ),
                    &member(at, field),
                );
                None
            }
        }
    }

    /// The declared language. Only the exact string `JSONPath` means JSONPath; any other present
    /// value means JSONata (measured), with a diagnostic unless it is exactly `JSONata`.
    fn query_language(&mut self, obj: &Map<String, Value>, at: &str) -> Option<Ql> {
        match obj.get("QueryLanguage")? {
            Value::String(s) if s == "JSONPath" => Some(Ql::JsonPath),
            Value::String(s) if s == "JSONata" => Some(Ql::Jsonata),
            other => {
                self.schema(
                    format!("The field 'QueryLanguage' must be one of [JSONPath, JSONata] but was {other}"),
                    &member(at, "QueryLanguage"),
                );
                Some(Ql::Jsonata)
            }
        }
    }

    // ---- top level -------------------------------------------------------------------------------

    fn machine(&mut self, root: &Map<String, Value>) {
        const FIELDS: &[&str] = &[
            "Comment",
            "StartAt",
            "States",
            "Version",
            "TimeoutSeconds",
            "QueryLanguage",
        ];
        let at = "/";
        let missing: Vec<&str> = ["StartAt", "States"]
            .into_iter()
            .filter(|f| !root.contains_key(*f))
            .collect();
        self.required(&missing, at);
        for key in root.keys() {
            if !FIELDS.contains(&key.as_str()) {
                self.unsupported(key, at);
            }
        }
        self.expect_string(root, "Comment", at);
        self.expect_string(root, "Version", at);
        if let Some(t) = root.get("TimeoutSeconds") {
            if !matches!(t.as_u64(), Some(n) if n <= 99_999_999) {
                self.schema(
                    "The field 'TimeoutSeconds' must be a non-negative integer",
                    &member(at, "TimeoutSeconds"),
                );
            }
        }
        if let Some(ql) = self.query_language(root, at) {
            self.machine_ql = ql;
        }
        self.scope(root, at);
    }

    /// StartAt + States of the machine, a branch or a processor.
    fn scope(&mut self, obj: &Map<String, Value>, at: &str) {
        let index = self.scopes.len();
        self.scopes.push(Scope {
            pointer: at.to_string(),
            start_at: None,
            states: Vec::new(),
        });
        let start_at = self.expect_string(obj, "StartAt", at).map(str::to_string);
        self.scopes[index].start_at = start_at;
        let states_at = member(at, "States");
        match obj.get("States") {
            None => {}
            Some(Value::Object(states)) => {
                for (name, state) in states {
                    let pointer = member(&states_at, name);
                    if let Some(node) = self.state(name, state, &pointer) {
                        self.scopes[index].states.push(node);
                    }
                }
            }
            Some(other) => self.schema(
                format!(
                    "The field 'States' must be an object but was {}",
                    type_name(other)
                ),
                &states_at,
            ),
        }
    }

    // ---- states ----------------------------------------------------------------------------------

    fn state(&mut self, name: &str, state: &Value, at: &str) -> Option<StateNode> {
        if name.chars().count() > 80 {
            self.schema("State names must be at most 80 characters long", at);
        }
        if !self.names.insert(name.to_string()) {
            self.error(
                codes::DUPLICATE_STATE_NAME,
                format!("Duplicate State name: {name}"),
                Some(at.to_string()),
            );
        }
        let Value::Object(obj) = state else {
            self.schema(
                format!("A state must be an object but was {}", type_name(state)),
                at,
            );
            return None;
        };
        let kind = match obj.get("Type") {
            None => {
                self.required(&["Type"], at);
                return None;
            }
            Some(Value::String(t)) => match Kind::from_name(t) {
                Some(kind) => kind,
                None => {
                    self.schema(
                        format!(
                            "The field 'Type' must be one of [Pass, Task, Choice, Wait, Succeed, Fail, Parallel, Map] but was '{t}'"
                        ),
                        &member(at, "Type"),
                    );
                    return None;
                }
            },
            Some(other) => {
                self.schema(
                    format!(
                        "The field 'Type' must be a string but was {}",
                        type_name(other)
                    ),
                    &member(at, "Type"),
                );
                return None;
            }
        };

        // Query language: a state may switch to JSONata under a JSONPath machine, not back.
        let declared = self.query_language(obj, at);
        if declared == Some(Ql::JsonPath) && self.machine_ql == Ql::Jsonata {
            // Measured.
            self.schema(
                "'QueryLanguage' can not be 'JSONPath' if set to 'JSONata' for whole state machine",
                at,
            );
        }
        let ql = declared.unwrap_or(self.machine_ql);

        self.expect_string(obj, "Comment", at);
        let allowed = kind.fields(ql);
        let other_mode = kind.fields(ql.other());
        for key in obj.keys() {
            let key = key.as_str();
            if matches!(key, "Type" | "Comment" | "QueryLanguage") || allowed.contains(&key) {
                continue;
            }
            if other_mode.contains(&key) {
                self.wrong_language(key, ql, at);
            } else {
                self.unsupported(key, at);
            }
        }

        let mut node = StateNode {
            name: name.to_string(),
            pointer: at.to_string(),
            terminal: matches!(kind, Kind::Succeed | Kind::Fail),
            transitions: Vec::new(),
        };

        if kind.has_transition() {
            let next = self.expect_string(obj, "Next", at).map(str::to_string);
            let end = match obj.get("End") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    self.schema(
                        format!(
                            "The field 'End' must be a boolean but was {}",
                            type_name(other)
                        ),
                        &member(at, "End"),
                    );
                    true
                }
            };
            match (&next, end, obj.contains_key("Next")) {
                (Some(_), true, _) | (None, false, false) => {
                    self.schema("Exactly one of the fields 'Next' or 'End' is required", at)
                }
                _ => {}
            }
            if let Some(next) = next {
                node.transitions.push((next, member(at, "Next")));
            }
            node.terminal = end;
        }

        // Data-flow fields shared by several state types.
        if ql == Ql::JsonPath {
            for field in ["InputPath", "OutputPath"] {
                if allowed.contains(&field) {
                    self.path_field(obj, field, at, PathKind::Path, true);
                }
            }
            if allowed.contains(&"ResultPath") {
                self.path_field(obj, "ResultPath", at, PathKind::ResultPath, true);
            }
            for field in ["Parameters", "ResultSelector", "ItemSelector"] {
                if allowed.contains(&field) {
                    if let Some(template) = obj.get(field) {
                        self.payload_template(template, &member(at, field));
                    }
                }
            }
        }
        if let Some(assign) = obj.get("Assign") {
            self.assign(assign, ql, &member(at, "Assign"));
        }
        if ql == Ql::Jsonata {
            self.incomplete_expressions(obj, at);
        }

        match kind {
            Kind::Pass | Kind::Succeed => {}
            Kind::Task => self.task(obj, ql, at),
            Kind::Choice => self.choice(obj, ql, at, &mut node),
            Kind::Wait => self.wait(obj, ql, at),
            Kind::Fail => self.fail_state(obj, ql, at),
            Kind::Parallel => self.parallel(obj, at),
            Kind::Map => self.map(obj, ql, at),
        }
        if matches!(kind, Kind::Task | Kind::Parallel | Kind::Map) {
            self.retry(obj, at);
            self.catch(obj, ql, at, &mut node);
        }
        Some(node)
    }

    /// JSONata strings that begin with `{%` or end with `%}` without being expressions.
    fn incomplete_expressions(&mut self, obj: &Map<String, Value>, at: &str) {
        let mut found = Vec::new();
        for field in jsonata_wrapper::EXPRESSION_FIELDS {
            if let Some(value) = obj.get(*field) {
                jsonata_wrapper::incomplete_expressions(value, &member(at, field), &mut found);
            }
        }
        for location in found {
            self.schema(crate::template::INCOMPLETE_EXPRESSION, &location);
        }
    }

    fn path_field(
        &mut self,
        obj: &Map<String, Value>,
        field: &str,
        at: &str,
        kind: PathKind,
        nullable: bool,
    ) {
        match obj.get(field) {
            None => {}
            Some(Value::Null) if nullable => {}
            Some(Value::String(s)) if path_ok(s, kind) => {}
            Some(_) => {
                let what = match kind {
                    PathKind::Path => "a valid JSONPath",
                    PathKind::Reference | PathKind::ResultPath => "a valid Reference Path",
                    PathKind::PathOrIntrinsic => {
                        "a valid JSONPath or a valid intrinsic function call"
                    }
                };
                self.schema(
                    format!("The value for the field '{field}' must be {what}"),
                    at,
                );
            }
        }
    }

    /// `Parameters`/`ResultSelector`/`ItemSelector`-style templates: every `key.$` value must be a
    /// JSONPath or an intrinsic call (measured message, located at the object holding the key).
    fn payload_template(&mut self, template: &Value, at: &str) {
        match template {
            Value::Object(map) => {
                for (key, value) in map {
                    if let Some(plain) = key.strip_suffix(".$").filter(|p| map.contains_key(*p)) {
                        // Both would produce the output key `plain`.
                        self.schema(
                            format!("Only one of the fields [{plain}, {key}] can be specified"),
                            at,
                        );
                    }
                    if key.ends_with(".$") {
                        let ok = matches!(value, Value::String(s) if path_ok(s, PathKind::PathOrIntrinsic));
                        if !ok {
                            self.schema(
                                format!(
                                    "The value for the field '{key}' must be a valid JSONPath or a valid intrinsic function call"
                                ),
                                at,
                            );
                        }
                    } else {
                        self.payload_template(value, &member(at, key));
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.payload_template(item, &element(at, i));
                }
            }
            _ => {}
        }
    }

    fn assign(&mut self, assign: &Value, ql: Ql, at: &str) {
        let Value::Object(_) = assign else {
            self.schema(
                format!(
                    "The field 'Assign' must be an object but was {}",
                    type_name(assign)
                ),
                at,
            );
            return;
        };
        if ql == Ql::JsonPath {
            self.payload_template(assign, at);
        }
    }

    fn task(&mut self, obj: &Map<String, Value>, ql: Ql, at: &str) {
        if !obj.contains_key("Resource") {
            self.required(&["Resource"], at);
        }
        if let Some(resource) = self.expect_string(obj, "Resource", at) {
            if !resource::is_valid_resource_arn(resource) {
                // Measured (Step Functions Local): "Value is not a valid resource ARN".
                self.schema("Value is not a valid resource ARN", &member(at, "Resource"));
            } else if self.machine_type == MachineType::Express {
                let location = member(at, "Resource");
                if resource::expressway_runs_sync(resource) {
                    // Expressway runs the child in the pod (issue #15); AWS Express would not.
                    self.warning(
                        codes::SCHEMA_VALIDATION_FAILED,
                        "Express state machine does not support '.sync' service integration on AWS; Expressway runs startExecution.sync, so this definition is not portable to AWS Express",
                        &location,
                    );
                } else if resource.ends_with(".sync") || resource.contains(".sync:") {
                    // Measured.
                    self.schema(
                        "Express state machine does not support '.sync' service integration",
                        &location,
                    );
                } else if resource::expressway_waits_for_token(resource) {
                    // Expressway runs it (issue #15); AWS Express would not.
                    self.warning(
                        codes::SCHEMA_VALIDATION_FAILED,
                        "Express state machine does not support '.waitForTaskToken' service integration on AWS; Expressway runs it, so this definition is not portable to AWS Express",
                        &location,
                    );
                } else if resource.ends_with(".waitForTaskToken") {
                    // Measured (AWS's message ends with a space).
                    self.schema("Express state machine does not support '.waitForTaskToken' service integration ", &location);
                } else if resource.starts_with("arn:") && resource.contains(":activity:") {
                    self.schema(
                        "Express state machine does not support activities",
                        &location,
                    );
                }
            }
        }
        let timeout = self.seconds_field(obj, "TimeoutSeconds", ql, at);
        let heartbeat = self.seconds_field(obj, "HeartbeatSeconds", ql, at);
        if ql == Ql::JsonPath {
            self.exclusive(obj, &["TimeoutSeconds", "TimeoutSecondsPath"], at);
            self.exclusive(obj, &["HeartbeatSeconds", "HeartbeatSecondsPath"], at);
            self.path_field(obj, "TimeoutSecondsPath", at, PathKind::Reference, false);
            self.path_field(obj, "HeartbeatSecondsPath", at, PathKind::Reference, false);
        }
        if let (Some(t), Some(h)) = (timeout, heartbeat) {
            if h >= t {
                self.schema("HeartbeatSeconds must be smaller than TimeoutSeconds", at);
            }
        }
        if let Some(credentials) = obj.get("Credentials") {
            let location = member(at, "Credentials");
            match credentials {
                Value::Object(c) => {
                    if !c.contains_key("RoleArn") && !c.contains_key("RoleArn.$") {
                        // Measured (also when other, unknown fields are present).
                        self.schema("The field 'RoleArn' is required but was missing", &location);
                    } else if ql == Ql::JsonPath {
                        self.payload_template(credentials, &location);
                    }
                }
                other => self.schema(
                    format!(
                        "The field 'Credentials' must be an object but was {}",
                        type_name(other)
                    ),
                    &location,
                ),
            }
        }
    }

    /// Positive-integer `TimeoutSeconds`/`HeartbeatSeconds` (JSONata also takes an expression).
    fn seconds_field(
        &mut self,
        obj: &Map<String, Value>,
        field: &str,
        ql: Ql,
        at: &str,
    ) -> Option<u64> {
        let value = obj.get(field)?;
        if ql == Ql::Jsonata && is_jsonata_expression(value) {
            return None;
        }
        match value.as_u64() {
            Some(n) if (1..=99_999_999).contains(&n) => Some(n),
            _ => {
                self.schema(
                    format!("The field '{field}' must be a positive integer"),
                    &member(at, field),
                );
                None
            }
        }
    }

    fn exclusive(&mut self, obj: &Map<String, Value>, fields: &[&str], at: &str) {
        let present: Vec<&str> = fields
            .iter()
            .copied()
            .filter(|f| obj.contains_key(*f))
            .collect();
        if present.len() > 1 {
            self.schema(
                format!(
                    "Only one of the fields [{}] can be specified",
                    present.join(", ")
                ),
                at,
            );
        }
    }

    fn wait(&mut self, obj: &Map<String, Value>, ql: Ql, at: &str) {
        const ALL: [&str; 4] = ["Seconds", "Timestamp", "SecondsPath", "TimestampPath"];
        let count = ALL.iter().filter(|f| obj.contains_key(**f)).count();
        if count != 1 {
            self.schema("Exactly one of the fields 'Seconds', 'Timestamp', 'SecondsPath' or 'TimestampPath' is required", at);
        }
        if let Some(seconds) = obj.get("Seconds") {
            let ok = seconds.as_u64().is_some_and(|n| n <= 99_999_999)
                || (ql == Ql::Jsonata && is_jsonata_expression(seconds));
            if !ok {
                self.schema(
                    "The field 'Seconds' must be a non-negative integer",
                    &member(at, "Seconds"),
                );
            }
        }
        if let Some(timestamp) = obj.get("Timestamp") {
            let ok = match timestamp {
                Value::String(s) => {
                    is_rfc3339(s) || (ql == Ql::Jsonata && is_jsonata_expression(timestamp))
                }
                _ => false,
            };
            if !ok {
                // Measured.
                self.schema(
                    "String does not match RFC3339 timestamp",
                    &member(at, "Timestamp"),
                );
            }
        }
        if ql == Ql::JsonPath {
            self.path_field(obj, "SecondsPath", at, PathKind::Reference, false);
            self.path_field(obj, "TimestampPath", at, PathKind::Reference, false);
        }
    }

    fn fail_state(&mut self, obj: &Map<String, Value>, ql: Ql, at: &str) {
        for (field, path) in [("Error", "ErrorPath"), ("Cause", "CausePath")] {
            if obj.contains_key(field) && obj.contains_key(path) {
                self.schema(
                    format!("Only one of the fields [{field}, {path}] can be specified"),
                    at,
                );
            }
            self.expect_string(obj, field, at);
            if ql == Ql::JsonPath {
                self.path_field(obj, path, at, PathKind::PathOrIntrinsic, false);
            }
        }
    }

    fn choice(&mut self, obj: &Map<String, Value>, ql: Ql, at: &str, node: &mut StateNode) {
        match obj.get("Choices") {
            None => self.required(&["Choices"], at),
            Some(Value::Array(rules)) if !rules.is_empty() => {
                let choices_at = member(at, "Choices");
                for (i, rule) in rules.iter().enumerate() {
                    let rule_at = element(&choices_at, i);
                    self.choice_rule(rule, ql, &rule_at, true, node);
                }
            }
            Some(_) => self.schema(
                "The field 'Choices' must be a non-empty array",
                &member(at, "Choices"),
            ),
        }
        if let Some(default) = self.expect_string(obj, "Default", at) {
            node.transitions
                .push((default.to_string(), member(at, "Default")));
        }
    }

    fn choice_rule(&mut self, rule: &Value, ql: Ql, at: &str, top: bool, node: &mut StateNode) {
        let Value::Object(r) = rule else {
            self.schema(
                format!(
                    "A choice rule must be an object but was {}",
                    type_name(rule)
                ),
                at,
            );
            return;
        };
        if top {
            match self.expect_string(r, "Next", at) {
                Some(next) => node
                    .transitions
                    .push((next.to_string(), member(at, "Next"))),
                None if !r.contains_key("Next") => self.required(&["Next"], at),
                None => {}
            }
        }
        if ql == Ql::Jsonata {
            for key in r.keys() {
                let allowed = matches!(key.as_str(), "Condition" | "Comment")
                    || (top && matches!(key.as_str(), "Next" | "Assign" | "Output"));
                if allowed {
                    continue;
                }
                let jsonpath_only = matches!(key.as_str(), "Variable" | "And" | "Or" | "Not")
                    || CHOICE_COMPARATORS.contains(&key.as_str());
                if jsonpath_only {
                    self.wrong_language(key, ql, at);
                } else {
                    self.unsupported(key, at);
                }
            }
            match r.get("Condition") {
                None => self.required(&["Condition"], at),
                Some(Value::Bool(_)) => {}
                Some(c) if is_jsonata_expression(c) => {}
                Some(_) => self.schema(
                    "The field 'Condition' must be a JSONata expression or a boolean",
                    &member(at, "Condition"),
                ),
            }
            if let Some(assign) = r.get("Assign") {
                self.assign(assign, ql, &member(at, "Assign"));
            }
            self.incomplete_expressions(r, at);
            return;
        }
        let mut operators = Vec::new();
        for (key, value) in r {
            let key = key.as_str();
            match key {
                "Next" | "Comment" if key == "Comment" || top => {}
                "Assign" if top => self.assign(value, ql, &member(at, "Assign")),
                "Variable" => {
                    if !matches!(value, Value::String(s) if path_ok(s, PathKind::Path)) {
                        self.schema(
                            "The value for the field 'Variable' must be a valid JSONPath",
                            at,
                        );
                    }
                }
                "And" | "Or" => {
                    operators.push(key);
                    match value {
                        Value::Array(items) if !items.is_empty() => {
                            let list_at = member(at, key);
                            for (i, item) in items.iter().enumerate() {
                                self.choice_rule(item, ql, &element(&list_at, i), false, node);
                            }
                        }
                        _ => self.schema(
                            format!("The field '{key}' must be a non-empty array"),
                            &member(at, key),
                        ),
                    }
                }
                "Not" => {
                    operators.push(key);
                    self.choice_rule(value, ql, &member(at, key), false, node);
                }
                op if CHOICE_COMPARATORS.contains(&op) => {
                    operators.push(op);
                    self.comparator(op, value, at);
                }
                "Condition" | "Output" => self.wrong_language(key, ql, at),
                other => self.unsupported(other, at),
            }
        }
        let boolean = operators.iter().any(|o| matches!(*o, "And" | "Or" | "Not"));
        if operators.len() != 1 {
            self.schema(
                "A choice rule must have exactly one comparison operator",
                at,
            );
        } else if !boolean && !r.contains_key("Variable") {
            self.required(&["Variable"], at);
        } else if boolean && r.contains_key("Variable") {
            self.unsupported("Variable", at);
        }
    }

    fn comparator(&mut self, op: &str, value: &Value, at: &str) {
        let ok = if op.ends_with("Path") {
            matches!(value, Value::String(s) if path_ok(s, PathKind::Path))
        } else if op.starts_with("Is") || op.starts_with("Boolean") {
            value.is_boolean()
        } else if op.starts_with("Numeric") {
            value.is_number()
        } else if op.starts_with("Timestamp") {
            matches!(value, Value::String(s) if is_rfc3339(s))
        } else {
            value.is_string()
        };
        if !ok {
            let what = if op.ends_with("Path") {
                "a valid JSONPath".to_string()
            } else if op.starts_with("Timestamp") {
                "an RFC3339 timestamp".to_string()
            } else if op.starts_with("Is") || op.starts_with("Boolean") {
                "a boolean".to_string()
            } else if op.starts_with("Numeric") {
                "a number".to_string()
            } else {
                "a string".to_string()
            };
            self.schema(format!("The value for the field '{op}' must be {what}"), at);
        }
    }

    fn parallel(&mut self, obj: &Map<String, Value>, at: &str) {
        match obj.get("Branches") {
            None => self.required(&["Branches"], at),
            Some(Value::Array(branches)) if !branches.is_empty() => {
                let branches_at = member(at, "Branches");
                for (i, branch) in branches.iter().enumerate() {
                    self.sub_machine(branch, "Branches", &element(&branches_at, i));
                }
            }
            Some(_) => self.schema(
                "The field 'Branches' must be a non-empty array",
                &member(at, "Branches"),
            ),
        }
    }

    /// A Parallel branch or a Map processor: `StartAt`, `States`, `Comment` (and `ProcessorConfig`).
    fn sub_machine(&mut self, value: &Value, field: &str, at: &str) {
        let Value::Object(obj) = value else {
            self.schema(
                format!(
                    "The field '{field}' must be an object but was {}",
                    type_name(value)
                ),
                at,
            );
            return;
        };
        let missing: Vec<&str> = ["StartAt", "States"]
            .into_iter()
            .filter(|f| !obj.contains_key(*f))
            .collect();
        self.required(&missing, at);
        for key in obj.keys() {
            let ok = matches!(key.as_str(), "StartAt" | "States" | "Comment")
                || (field != "Branches" && key == "ProcessorConfig");
            if !ok {
                // Measured for QueryLanguage on ItemProcessor/Iterator.
                self.unsupported(key, at);
            }
        }
        self.expect_string(obj, "Comment", at);
        if let Some(config) = obj.get("ProcessorConfig") {
            self.processor_config(config, &member(at, "ProcessorConfig"));
        }
        self.scope(obj, at);
    }

    fn processor_config(&mut self, config: &Value, at: &str) {
        let Value::Object(c) = config else {
            self.schema(
                format!(
                    "The field 'ProcessorConfig' must be an object but was {}",
                    type_name(config)
                ),
                at,
            );
            return;
        };
        for (key, value) in c {
            let allowed: &[&str] = match key.as_str() {
                "Mode" => &["INLINE", "DISTRIBUTED"],
                "ExecutionType" => &["STANDARD", "EXPRESS"],
                other => {
                    self.unsupported(other, at);
                    continue;
                }
            };
            if !matches!(value, Value::String(s) if allowed.contains(&s.as_str())) {
                self.schema(
                    format!(
                        "The field '{key}' must be one of [{}] but was {value}",
                        allowed.join(", ")
                    ),
                    &member(at, key),
                );
            }
        }
    }

    fn map(&mut self, obj: &Map<String, Value>, ql: Ql, at: &str) {
        match (obj.get("ItemProcessor"), obj.get("Iterator")) {
            (None, None) => self.required(&["ItemProcessor"], at),
            (Some(_), Some(_)) => self.schema(
                "Only one of the fields [ItemProcessor, Iterator] can be specified",
                at,
            ),
            (Some(p), None) => self.sub_machine(p, "ItemProcessor", &member(at, "ItemProcessor")),
            (None, Some(p)) => self.sub_machine(p, "Iterator", &member(at, "Iterator")),
        }
        if obj.contains_key("ItemSelector") && obj.contains_key("Parameters") {
            self.schema(
                "Only one of the fields [ItemSelector, Parameters] can be specified",
                at,
            );
        }
        if ql == Ql::JsonPath {
            self.path_field(obj, "ItemsPath", at, PathKind::Reference, false);
            for field in [
                "MaxConcurrencyPath",
                "ToleratedFailurePercentagePath",
                "ToleratedFailureCountPath",
            ] {
                self.path_field(obj, field, at, PathKind::Reference, false);
            }
            self.exclusive(obj, &["MaxConcurrency", "MaxConcurrencyPath"], at);
            self.exclusive(
                obj,
                &[
                    "ToleratedFailurePercentage",
                    "ToleratedFailurePercentagePath",
                ],
                at,
            );
            self.exclusive(
                obj,
                &["ToleratedFailureCount", "ToleratedFailureCountPath"],
                at,
            );
        }
        let expression = |v: &Value| ql == Ql::Jsonata && is_jsonata_expression(v);
        if let Some(v) = obj.get("MaxConcurrency") {
            if !(v.as_u64().is_some() || expression(v)) {
                self.schema(
                    "The field 'MaxConcurrency' must be a non-negative integer",
                    &member(at, "MaxConcurrency"),
                );
            }
        }
        if let Some(v) = obj.get("ToleratedFailureCount") {
            if !(v.as_u64().is_some() || expression(v)) {
                self.schema(
                    "The field 'ToleratedFailureCount' must be a non-negative integer",
                    &member(at, "ToleratedFailureCount"),
                );
            }
        }
        if let Some(v) = obj.get("ToleratedFailurePercentage") {
            if !(v.as_f64().is_some_and(|p| (0.0..=100.0).contains(&p)) || expression(v)) {
                self.schema(
                    "The field 'ToleratedFailurePercentage' must be a number between 0 and 100",
                    &member(at, "ToleratedFailurePercentage"),
                );
            }
        }
        for field in ["ItemReader", "ItemBatcher", "ResultWriter"] {
            match obj.get(field) {
                None => {}
                Some(Value::Object(sub)) if ql == Ql::JsonPath => {
                    for inner in ["Parameters", "BatchInput"] {
                        if let Some(t) = sub.get(inner) {
                            self.payload_template(t, &member(&member(at, field), inner));
                        }
                    }
                }
                Some(Value::Object(_)) => {}
                Some(other) => self.schema(
                    format!(
                        "The field '{field}' must be an object but was {}",
                        type_name(other)
                    ),
                    &member(at, field),
                ),
            }
        }
        if ql == Ql::JsonPath {
            self.batch_and_reader_twins(obj, at);
        }
        if let Some(label) = obj.get("Label") {
            self.label(label, &member(at, "Label"));
        }
    }

    /// `ItemBatcher.MaxItemsPerBatch(Path)`, `ItemBatcher.MaxInputBytesPerBatch(Path)` and
    /// `ItemReader.ReaderConfig.MaxItems(Path)`: a field or its `...Path` twin, never both.
    fn batch_and_reader_twins(&mut self, obj: &Map<String, Value>, at: &str) {
        let batcher_at = member(at, "ItemBatcher");
        let config_at = member(&member(at, "ItemReader"), "ReaderConfig");
        let batcher = obj.get("ItemBatcher").and_then(Value::as_object);
        let config = obj
            .get("ItemReader")
            .and_then(|r| r.get("ReaderConfig"))
            .and_then(Value::as_object);
        let twins = [
            (batcher, batcher_at.as_str(), "MaxItemsPerBatch"),
            (batcher, batcher_at.as_str(), "MaxInputBytesPerBatch"),
            (config, config_at.as_str(), "MaxItems"),
        ];
        for (holder, holder_at, field) in twins {
            let Some(holder) = holder else { continue };
            let path_field = format!("{field}Path");
            self.exclusive(holder, &[field, &path_field], holder_at);
            self.path_field(holder, &path_field, holder_at, PathKind::Reference, false);
        }
    }

    /// Map `Label`: non-empty, at most 40 characters, none of the forbidden characters.
    fn label(&mut self, label: &Value, at: &str) {
        let Value::String(label) = label else {
            self.schema(
                format!(
                    "The field 'Label' must be a string but was {}",
                    type_name(label)
                ),
                at,
            );
            return;
        };
        if label.is_empty() {
            self.schema("Label cannot be empty", at);
        } else if label.chars().count() > 40 {
            self.schema("Label cannot exceed 40 characters", at);
        } else if let Some(bad) = label.chars().find(|c| is_forbidden_label_char(*c)) {
            self.schema(
                format!("Label contains invalid character: {}", quote_char(bad)),
                at,
            );
        }
    }

    fn retry(&mut self, obj: &Map<String, Value>, at: &str) {
        let Some(retry) = obj.get("Retry") else {
            return;
        };
        let retry_at = member(at, "Retry");
        let Value::Array(retriers) = retry else {
            self.schema(
                format!(
                    "The field 'Retry' must be an array but was {}",
                    type_name(retry)
                ),
                &retry_at,
            );
            return;
        };
        let last = retriers.len().saturating_sub(1);
        for (i, retrier) in retriers.iter().enumerate() {
            let r_at = element(&retry_at, i);
            let Value::Object(r) = retrier else {
                self.schema(
                    format!("A retrier must be an object but was {}", type_name(retrier)),
                    &r_at,
                );
                continue;
            };
            for key in r.keys() {
                if !matches!(
                    key.as_str(),
                    "ErrorEquals"
                        | "IntervalSeconds"
                        | "MaxAttempts"
                        | "BackoffRate"
                        | "MaxDelaySeconds"
                        | "JitterStrategy"
                        | "Comment"
                ) {
                    self.unsupported(key, &r_at);
                }
            }
            self.error_equals(r, &r_at, i == last, false);
            if let Some(v) = r.get("IntervalSeconds") {
                if !v.as_u64().is_some_and(|n| (1..=99_999_999).contains(&n)) {
                    self.schema(
                        "The field 'IntervalSeconds' must be a positive integer",
                        &member(&r_at, "IntervalSeconds"),
                    );
                }
            }
            if let Some(v) = r.get("MaxDelaySeconds") {
                if !v.as_u64().is_some_and(|n| (1..=31_622_400).contains(&n)) {
                    self.schema(
                        "The field 'MaxDelaySeconds' must be a positive integer",
                        &member(&r_at, "MaxDelaySeconds"),
                    );
                }
            }
            if let Some(v) = r.get("MaxAttempts") {
                if !matches!(v.as_u64(), Some(n) if n <= 99_999_999) {
                    self.schema(
                        "The field 'MaxAttempts' must be a non-negative integer",
                        &member(&r_at, "MaxAttempts"),
                    );
                }
            }
            if let Some(v) = r.get("BackoffRate") {
                if !v.as_f64().is_some_and(|b| b >= 1.0) {
                    self.schema(
                        "The field 'BackoffRate' must be a number greater than or equal to 1.0",
                        &member(&r_at, "BackoffRate"),
                    );
                }
            }
            if let Some(v) = r.get("JitterStrategy") {
                if !matches!(v, Value::String(s) if s == "FULL" || s == "NONE") {
                    self.schema(
                        format!(
                            "The field 'JitterStrategy' must be one of [FULL, NONE] but was {v}"
                        ),
                        &member(&r_at, "JitterStrategy"),
                    );
                }
            }
        }
    }

    fn catch(&mut self, obj: &Map<String, Value>, ql: Ql, at: &str, node: &mut StateNode) {
        let Some(catch) = obj.get("Catch") else {
            return;
        };
        let catch_at = member(at, "Catch");
        let Value::Array(catchers) = catch else {
            self.schema(
                format!(
                    "The field 'Catch' must be an array but was {}",
                    type_name(catch)
                ),
                &catch_at,
            );
            return;
        };
        let last = catchers.len().saturating_sub(1);
        for (i, catcher) in catchers.iter().enumerate() {
            let c_at = element(&catch_at, i);
            let Value::Object(c) = catcher else {
                self.schema(
                    format!("A catcher must be an object but was {}", type_name(catcher)),
                    &c_at,
                );
                continue;
            };
            let missing: Vec<&str> = ["ErrorEquals", "Next"]
                .into_iter()
                .filter(|f| !c.contains_key(*f))
                .collect();
            self.required(&missing, &c_at);
            let (own, other): (&[&str], &[&str]) = match ql {
                Ql::JsonPath => (&["ResultPath"], &["Output"]),
                Ql::Jsonata => (&["Output"], &["ResultPath"]),
            };
            for key in c.keys() {
                let key = key.as_str();
                if matches!(key, "ErrorEquals" | "Next" | "Comment" | "Assign")
                    || own.contains(&key)
                {
                    continue;
                }
                if other.contains(&key) {
                    self.wrong_language(key, ql, &c_at);
                } else {
                    self.unsupported(key, &c_at);
                }
            }
            self.error_equals(c, &c_at, i == last, true);
            if let Some(next) = self.expect_string(c, "Next", &c_at) {
                node.transitions
                    .push((next.to_string(), member(&c_at, "Next")));
            }
            if ql == Ql::JsonPath {
                self.path_field(c, "ResultPath", &c_at, PathKind::ResultPath, true);
            } else {
                self.incomplete_expressions(c, &c_at);
            }
            if let Some(assign) = c.get("Assign") {
                self.assign(assign, ql, &member(&c_at, "Assign"));
            }
        }
    }

    fn error_equals(
        &mut self,
        obj: &Map<String, Value>,
        at: &str,
        is_last: bool,
        is_catcher: bool,
    ) {
        let ee_at = member(at, "ErrorEquals");
        match obj.get("ErrorEquals") {
            None => {
                // Catchers report a missing ErrorEquals together with a missing Next.
                if !is_catcher {
                    self.required(&["ErrorEquals"], at);
                }
            }
            Some(Value::Array(names)) if !names.is_empty() => {
                for (i, name) in names.iter().enumerate() {
                    match name {
                        Value::String(n) if n == "States.ALL" => {
                            if names.len() != 1 || !is_last {
                                self.schema(
                                    "Error name 'States.ALL' must appear alone and in the last retrier or catcher",
                                    &ee_at,
                                );
                            }
                        }
                        // Any other name, `States.`-prefixed ones included: AWS runs deployed
                        // machines that catch their own `States.QuorumMet` (raised by a Fail state).
                        Value::String(_) => {}
                        other => self.schema(
                            format!("Error names must be strings but was {}", type_name(other)),
                            &element(&ee_at, i),
                        ),
                    }
                }
            }
            Some(_) => self.schema(
                "The field 'ErrorEquals' must be a non-empty array of strings",
                &ee_at,
            ),
        }
    }

    // ---- graph -----------------------------------------------------------------------------------

    fn graph(&mut self, scope: &Scope) {
        let names: HashMap<&str, usize> = scope
            .states
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let mut targeted: HashSet<&str> = HashSet::new();
        if let Some(start) = &scope.start_at {
            targeted.insert(start);
            if !names.contains_key(start.as_str()) {
                // Measured: "Missing 'Next' target: Not sure at /StartAt".
                self.error(
                    codes::MISSING_TRANSITION_TARGET,
                    format!("Missing 'Next' target: {start}"),
                    Some(member(&scope.pointer, "StartAt")),
                );
            }
        }
        for state in &scope.states {
            for (target, location) in &state.transitions {
                targeted.insert(target);
                if !names.contains_key(target.as_str()) {
                    // Measured: the word is 'Next' for Next, Default, Choices[i].Next and Catch[i].Next.
                    self.error(
                        codes::MISSING_TRANSITION_TARGET,
                        format!("Missing 'Next' target: {target}"),
                        Some(location.clone()),
                    );
                }
            }
        }
        if !scope.states.iter().any(|s| s.terminal) {
            // Measured: no location; suppresses the reachability check.
            self.error(
                codes::MISSING_END_STATE,
                "Workflow has no terminal state",
                None,
            );
            return;
        }
        for state in &scope.states {
            if !targeted.contains(state.name.as_str()) {
                // Measured: a state no transition of its scope names.
                self.error(
                    codes::MISSING_TRANSITION_TARGET,
                    format!("State \"{}\" is not reachable.", state.name),
                    Some(state.pointer.clone()),
                );
            }
        }
    }
}

#[derive(Clone, Copy)]
enum PathKind {
    /// Any JSONPath (`$`, `$$`, `$var` roots).
    Path,
    /// A definite path (names and indexes only).
    Reference,
    /// A `ResultPath`: `$`-rooted names and non-negative indexes.
    ResultPath,
    /// A JSONPath or an intrinsic function call.
    PathOrIntrinsic,
}

fn path_ok(text: &str, kind: PathKind) -> bool {
    match kind {
        PathKind::Path => text.starts_with('$') && JsonPath::parse(text).is_ok(),
        PathKind::Reference => {
            text.starts_with('$') && JsonPath::parse(text).is_ok_and(|p| p.is_definite())
        }
        PathKind::ResultPath => {
            text.starts_with('$') && JsonPath::parse(text).is_ok_and(|p| p.is_reference_path())
        }
        PathKind::PathOrIntrinsic => {
            if text.trim_start().starts_with("States.") {
                Intrinsic::parse(text).is_ok()
            } else {
                text.starts_with('$') && JsonPath::parse(text).is_ok()
            }
        }
    }
}

/// RFC 3339 date-time as AWS accepts it: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, uppercase `T`/`Z`,
/// with calendar and clock ranges checked.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(range)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return false;
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    if chrono::NaiveDate::from_ymd_opt(year as i32, month, day).is_none()
        || hour > 23
        || minute > 59
        || second > 60
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z'] => true,
        [b'+' | b'-', _, _, b':', _, _] => {
            let (Some(h), Some(m)) = (digits(i + 1..i + 3), digits(i + 4..i + 6)) else {
                return false;
            };
            h <= 23 && m <= 59
        }
        _ => false,
    }
}

fn is_forbidden_label_char(c: char) -> bool {
    c.is_whitespace()
        || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c)
        || ('\u{0}'..='\u{1f}').contains(&c)
        || ('\u{7f}'..='\u{9f}').contains(&c)
}

/// The character quoted like Python's `repr` (`' '`, `'\\'`, `'\n'`, `'\x00'`), the form the recorded
/// messages use.
fn quote_char(c: char) -> String {
    match c {
        '\\' => "'\\\\'".into(),
        '\n' => "'\\n'".into(),
        '\r' => "'\\r'".into(),
        '\t' => "'\\t'".into(),
        '\'' => "\"'\"".into(),
        c if ('\u{0}'..='\u{1f}').contains(&c) || ('\u{7f}'..='\u{a0}').contains(&c) => {
            format!("'\\x{:02x}'", c as u32)
        }
        c => format!("'{c}'"),
    }
}

#[cfg(test)]
mod tests;
