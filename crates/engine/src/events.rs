//! Execution history events and AWS's Express (CloudWatch) log format.
//!
//! Every event gets an id, as AWS numbers them, even when nothing is logged: causes quote
//! "entered at the event id #n". Event *details* are built only when the log level keeps the event.

use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// CloudWatch log level of a state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    /// Nothing.
    #[default]
    Off,
    /// Execution failures and time-outs.
    Fatal,
    /// FATAL plus state failures.
    Error,
    /// Everything.
    All,
}

impl LogLevel {
    /// Parses `ALL`, `ERROR`, `FATAL` or `OFF`.
    pub fn parse(s: &str) -> Option<LogLevel> {
        Some(match s {
            "ALL" => LogLevel::All,
            "ERROR" => LogLevel::Error,
            "FATAL" => LogLevel::Fatal,
            "OFF" => LogLevel::Off,
            _ => return None,
        })
    }
    /// The AWS name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::All => "ALL",
            LogLevel::Error => "ERROR",
            LogLevel::Fatal => "FATAL",
            LogLevel::Off => "OFF",
        }
    }
}

/// `loggingConfiguration` of a state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogConfig {
    /// Which events are kept.
    pub level: LogLevel,
    /// Keep inputs and outputs in event details.
    pub include_execution_data: bool,
}

/// The minimum level at which AWS logs an event type.
pub fn event_level(event_type: &str) -> LogLevel {
    match event_type {
        "ExecutionAborted" | "ExecutionFailed" | "ExecutionTimedOut" => LogLevel::Fatal,
        "FailStateEntered"
        | "LambdaFunctionFailed"
        | "LambdaFunctionScheduleFailed"
        | "LambdaFunctionStartFailed"
        | "LambdaFunctionTimedOut"
        | "MapStateAborted"
        | "MapStateFailed"
        | "MapIterationAborted"
        | "MapIterationFailed"
        | "MapRunAborted"
        | "MapRunFailed"
        | "ParallelStateAborted"
        | "ParallelStateFailed"
        | "TaskFailed"
        | "TaskStartFailed"
        | "TaskStateAborted"
        | "TaskSubmitFailed"
        | "TaskTimedOut"
        | "WaitStateAborted" => LogLevel::Error,
        _ => LogLevel::All,
    }
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// 1-based id.
    pub id: u64,
    /// The event this one follows.
    pub previous_event_id: u64,
    /// AWS event type, e.g. `PassStateEntered`.
    pub event_type: &'static str,
    /// Milliseconds since the Unix epoch.
    pub timestamp_millis: i64,
    /// The `*EventDetails` body.
    pub details: Value,
}

impl Event {
    /// The event as an AWS Express log record (every scalar a string, except inside `details`).
    pub fn to_log_json(&self, execution_arn: &str, redrive_count: u32) -> Value {
        let mut m = Map::with_capacity(7);
        m.insert("id".into(), Value::String(self.id.to_string()));
        m.insert("type".into(), Value::String(self.event_type.to_string()));
        m.insert("details".into(), self.details.clone());
        m.insert(
            "previous_event_id".into(),
            Value::String(self.previous_event_id.to_string()),
        );
        m.insert(
            "event_timestamp".into(),
            Value::String(self.timestamp_millis.to_string()),
        );
        m.insert(
            "execution_arn".into(),
            Value::String(execution_arn.to_string()),
        );
        m.insert(
            "redrive_count".into(),
            Value::String(redrive_count.to_string()),
        );
        Value::Object(m)
    }
}

/// [`Event::to_log_json`] as a serializer view: the same JSON text (same keys, same order) written
/// straight from the event, without building a `Value` or cloning its details.
#[derive(Debug, Clone, Copy)]
pub struct LogEvent<'a> {
    /// The event.
    pub event: &'a Event,
    /// The execution's ARN.
    pub execution_arn: &'a str,
    /// AWS's redrive count (always 0 here).
    pub redrive_count: u32,
}

/// A `Display` value serialized as a JSON string.
struct AsString<T>(T);

impl<T: std::fmt::Display> serde::Serialize for AsString<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl serde::Serialize for LogEvent<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let e = self.event;
        let mut m = s.serialize_map(Some(7))?;
        m.serialize_entry("id", &AsString(e.id))?;
        m.serialize_entry("type", e.event_type)?;
        m.serialize_entry("details", &e.details)?;
        m.serialize_entry("previous_event_id", &AsString(e.previous_event_id))?;
        m.serialize_entry("event_timestamp", &AsString(e.timestamp_millis))?;
        m.serialize_entry("execution_arn", self.execution_arn)?;
        m.serialize_entry("redrive_count", &AsString(self.redrive_count))?;
        m.end()
    }
}

/// The last long strings written into one log record and where their escaped text lies in it:
/// consecutive events repeat their data (a state's output is the next state's input), so the
/// same JSON text would otherwise be escaped once per event.
#[derive(Default)]
pub(crate) struct EscapedReuse<'a> {
    recent: [Option<(&'a str, std::ops::Range<usize>)>; 2],
    next: usize,
}

impl<'a> EscapedReuse<'a> {
    /// Strings shorter than this are escaped again (comparing would not pay).
    const MIN_LEN: usize = 48;

    fn write_str(&mut self, out: &mut Vec<u8>, s: &'a str) {
        if s.len() < Self::MIN_LEN {
            crate::jsonw::write_str(out, s);
            return;
        }
        out.push(b'"');
        let hit = self
            .recent
            .iter()
            .flatten()
            .find(|(t, _)| *t == s)
            .map(|(_, r)| r.clone());
        match hit {
            Some(r) => out.extend_from_within(r),
            None => {
                let start = out.len();
                crate::jsonw::write_str_contents(out, s);
                self.recent[self.next] = Some((s, start..out.len()));
                self.next = (self.next + 1) % self.recent.len();
            }
        }
        out.push(b'"');
    }
}

impl<'a> LogEvent<'a> {
    /// Appends the event's JSON text (what its `Serialize` writes); `arn_escaped` is
    /// `execution_arn` already escaped as JSON string contents.
    pub(crate) fn write_json(
        &self,
        out: &mut Vec<u8>,
        arn_escaped: &[u8],
        reuse: &mut EscapedReuse<'a>,
    ) {
        use crate::jsonw;
        let e = self.event;
        out.extend_from_slice(b"{\"id\":\"");
        jsonw::write_u64(out, e.id);
        out.extend_from_slice(b"\",\"type\":");
        jsonw::write_str(out, e.event_type);
        out.extend_from_slice(b",\"details\":");
        match &e.details {
            Value::Object(m) => {
                out.push(b'{');
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    jsonw::write_str(out, k);
                    out.push(b':');
                    match v {
                        Value::String(s) => reuse.write_str(out, s),
                        _ => jsonw::write_value(out, v),
                    }
                }
                out.push(b'}');
            }
            other => jsonw::write_value(out, other),
        }
        out.extend_from_slice(b",\"previous_event_id\":\"");
        jsonw::write_u64(out, e.previous_event_id);
        out.extend_from_slice(b"\",\"event_timestamp\":\"");
        jsonw::write_i64(out, e.timestamp_millis);
        out.extend_from_slice(b"\",\"execution_arn\":\"");
        out.extend_from_slice(arn_escaped);
        out.extend_from_slice(b"\",\"redrive_count\":\"");
        jsonw::write_u64(out, u64::from(self.redrive_count));
        out.extend_from_slice(b"\"}");
    }
}

/// Payloads above this size are truncated in log details (AWS: 248 KiB escaped).
const MAX_LOGGED_PAYLOAD: usize = 248 * 1024;

/// Payloads whose text is longer than this are not kept for comparison with the next one (the
/// copy would cost memory for the whole execution).
const MAX_REMEMBERED_PAYLOAD: usize = 16 * 1024;

/// Collects events for one execution.
#[derive(Debug)]
pub struct EventLog {
    config: LogConfig,
    next_id: AtomicU64,
    events: Mutex<Vec<Event>>,
    /// Number of kept events.
    kept: AtomicU64,
    /// Estimated bytes of the kept events (see [`crate::budget`]).
    kept_bytes: AtomicU64,
    /// The last logged payload and its (possibly truncated) text: a state's output is usually
    /// the next state's input, which then is compared instead of serialized again.
    last_payload: Mutex<Option<(Value, String, bool)>>,
}

/// Details of an event, built only when it is kept.
pub enum Details<'a> {
    /// No details (`{}`).
    Empty,
    /// `input` + `inputDetails` (+ `name` / `roleArn`).
    Input {
        name_key: &'static str,
        name: &'a str,
        input: &'a Value,
    },
    /// `name` + `output` + `outputDetails`.
    Output {
        name: Option<&'a str>,
        output: &'a Value,
    },
    /// `error` + `cause` (+ resource fields).
    Failure {
        error: Option<&'a str>,
        cause: Option<&'a str>,
        resource: Option<&'a str>,
    },
    /// Anything else, as given (data fields are not filtered).
    Raw(Value),
    /// Task scheduling details.
    TaskScheduled {
        resource: &'a str,
        parameters: &'a Value,
        timeout: Option<u64>,
        heartbeat: Option<u64>,
    },
    /// Task start / success.
    TaskResource {
        resource: &'a str,
        output: Option<&'a Value>,
    },
}

impl EventLog {
    /// A log keeping events per `config`.
    pub fn new(config: LogConfig) -> EventLog {
        EventLog {
            config,
            next_id: AtomicU64::new(1),
            events: Mutex::new(Vec::new()),
            kept: AtomicU64::new(0),
            kept_bytes: AtomicU64::new(0),
            last_payload: Mutex::new(None),
        }
    }

    /// True when events of this type are kept at the configured level.
    pub fn keeps(&self, event_type: &str) -> bool {
        self.config.level != LogLevel::Off && event_level(event_type) <= self.config.level
    }

    /// Records an event and returns its id. The timestamp and details are computed only when the
    /// event is kept; ids are assigned either way (AWS numbers every event).
    pub fn emit(
        &self,
        event_type: &'static str,
        previous_event_id: u64,
        timestamp_millis: impl FnOnce() -> i64,
        details: Details<'_>,
    ) -> u64 {
        if !self.keeps(event_type) {
            return self.next_id.fetch_add(1, Ordering::Relaxed);
        }
        let details = self.render(details);
        self.kept.fetch_add(1, Ordering::Relaxed);
        self.kept_bytes.fetch_add(
            crate::budget::EVENT_COST + crate::budget::estimate_bytes(&details),
            Ordering::Relaxed,
        );
        let timestamp_millis = timestamp_millis();
        let mut events = match self.events.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Taken under the lock so that ids stay in recording order.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        events.push(Event {
            id,
            previous_event_id,
            event_type,
            timestamp_millis,
            details,
        });
        id
    }

    /// Number of events kept so far.
    pub fn kept_count(&self) -> u64 {
        self.kept.load(Ordering::Relaxed)
    }

    /// Estimated bytes of the events kept so far.
    pub fn kept_bytes(&self) -> u64 {
        self.kept_bytes.load(Ordering::Relaxed)
    }

    /// The id the next event will get.
    pub fn peek_next_id(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed)
    }

    /// The kept events, in id order.
    pub fn into_events(self) -> Vec<Event> {
        match self.events.into_inner() {
            Ok(e) => e,
            Err(p) => p.into_inner(),
        }
    }

    fn payload(&self, m: &mut Map<String, Value>, key: &str, details_key: &str, v: &Value) {
        if !self.config.include_execution_data {
            return;
        }
        let mut last = match self.last_payload.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (text, truncated) = match &*last {
            Some((prev, text, truncated)) if crate::jsonw::same_text(prev, v) => {
                (text.clone(), *truncated)
            }
            _ => {
                let mut text = crate::jsonw::to_string(v);
                let truncated = text.len() > MAX_LOGGED_PAYLOAD;
                if truncated {
                    let mut cut = MAX_LOGGED_PAYLOAD;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                }
                *last = if text.len() <= MAX_REMEMBERED_PAYLOAD {
                    Some((v.clone(), text.clone(), truncated))
                } else {
                    None
                };
                (text, truncated)
            }
        };
        drop(last);
        m.insert(key.into(), Value::String(text));
        let mut d = Map::new();
        d.insert("truncated".into(), Value::Bool(truncated));
        m.insert(details_key.into(), Value::Object(d));
    }

    fn render(&self, details: Details<'_>) -> Value {
        let mut m = Map::new();
        match details {
            Details::Empty => {}
            Details::Raw(v) => return v,
            Details::Input {
                name_key,
                name,
                input,
            } => {
                self.payload(&mut m, "input", "inputDetails", input);
                m.insert(name_key.into(), Value::String(name.to_string()));
            }
            Details::Output { name, output } => {
                if let Some(n) = name {
                    m.insert("name".into(), Value::String(n.to_string()));
                }
                self.payload(&mut m, "output", "outputDetails", output);
            }
            Details::Failure {
                error,
                cause,
                resource,
            } => {
                if let Some(c) = cause {
                    m.insert("cause".into(), Value::String(c.to_string()));
                }
                if let Some(e) = error {
                    m.insert("error".into(), Value::String(e.to_string()));
                }
                if let Some(r) = resource {
                    m.insert("resource".into(), Value::String(r.to_string()));
                    m.insert(
                        "resourceType".into(),
                        Value::String(resource_type(r).to_string()),
                    );
                }
            }
            Details::TaskScheduled {
                resource,
                parameters,
                timeout,
                heartbeat,
            } => {
                m.insert("resource".into(), Value::String(resource.to_string()));
                m.insert(
                    "resourceType".into(),
                    Value::String(resource_type(resource).to_string()),
                );
                m.insert("region".into(), Value::String(crate::DEFAULT_REGION.into()));
                if self.config.include_execution_data {
                    m.insert(
                        "parameters".into(),
                        Value::String(crate::jsonw::to_string(parameters)),
                    );
                }
                if let Some(t) = timeout {
                    m.insert("timeoutInSeconds".into(), Value::String(t.to_string()));
                }
                if let Some(h) = heartbeat {
                    m.insert("heartbeatInSeconds".into(), Value::String(h.to_string()));
                }
            }
            Details::TaskResource { resource, output } => {
                m.insert("resource".into(), Value::String(resource.to_string()));
                m.insert(
                    "resourceType".into(),
                    Value::String(resource_type(resource).to_string()),
                );
                if let Some(o) = output {
                    self.payload(&mut m, "output", "outputDetails", o);
                }
            }
        }
        Value::Object(m)
    }
}

/// AWS's `resourceType` for a resource ARN (`lambda`, `http`, ...).
pub fn resource_type(resource: &str) -> &str {
    // arn:aws:states:::lambda:invoke -> lambda ; arn:aws:lambda:...:function:x -> lambda
    let parts: Vec<&str> = resource.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "states", _, _, service, ..] => service,
        ["arn", _, service, ..] => service,
        _ => resource,
    }
}
