//! The console's memory: a bounded ring of recent executions per state machine, merged from
//! the results topic (status, dates, output, error) and the logs topic (events), plus the
//! executions the console itself started (shown `RUNNING` until their result arrives).
//!
//! Bounds: `per_machine` executions per machine (oldest dropped first), `max_machines`
//! machines (records of further machines are dropped and counted), log records larger than
//! `max_log_bytes` keep no events, and the events of all held executions together stay under
//! `events_budget_bytes` (the oldest executions' events are dropped first; the execution page
//! says so).

use expressway_executor::telemetry::names;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Bounds of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Executions kept per machine.
    pub per_machine: usize,
    /// Machines tracked at most.
    pub max_machines: usize,
    /// A log record larger than this keeps no events.
    pub max_log_bytes: usize,
    /// Bytes of events held over all executions.
    pub events_budget_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            per_machine: 100,
            max_machines: 1024,
            max_log_bytes: 1 << 20,
            events_budget_bytes: 64 << 20,
        }
    }
}

/// One execution as the console knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    /// Execution ARN (the key).
    pub arn: String,
    /// The machine's name (from the ARN).
    pub machine: String,
    /// Execution name.
    pub name: String,
    /// `RUNNING` (started here, no result yet), `SUCCEEDED`, `FAILED`, `TIMED_OUT`, or
    /// `UNKNOWN` (events seen, no result yet).
    pub status: String,
    /// RFC 3339, when known.
    pub start_date: Option<String>,
    /// RFC 3339, when finished.
    pub stop_date: Option<String>,
    /// The qualified machine ARN of the result record.
    pub state_machine_arn: Option<String>,
    /// Execution input (only when started from the console: results do not carry it).
    pub input: Option<Value>,
    /// Output when SUCCEEDED.
    pub output: Option<Value>,
    /// Error name.
    pub error: Option<String>,
    /// Error cause.
    pub cause: Option<String>,
    /// The log record's events, when one arrived and was kept.
    pub events: Option<Arc<Vec<Value>>>,
    /// Why events are missing although a log record arrived.
    pub events_dropped: Option<&'static str>,
    bytes: usize,
    /// The update that stored `events` (its entry in the eviction queue).
    events_seq: u64,
    seq: u64,
}

impl Execution {
    fn new(arn: &str, machine: &str) -> Execution {
        Execution {
            arn: arn.to_string(),
            machine: machine.to_string(),
            name: name_of(arn).unwrap_or_default().to_string(),
            status: "UNKNOWN".into(),
            start_date: None,
            stop_date: None,
            state_machine_arn: None,
            input: None,
            output: None,
            error: None,
            cause: None,
            events: None,
            events_dropped: None,
            bytes: 0,
            events_seq: 0,
            seq: 0,
        }
    }

    /// The list-page view (no events, no output).
    pub fn summary(&self) -> Value {
        let mut m = Map::new();
        m.insert("executionArn".into(), json!(self.arn));
        m.insert("stateMachine".into(), json!(self.machine));
        m.insert("name".into(), json!(self.name));
        m.insert("status".into(), json!(self.status));
        for (k, v) in [
            ("startDate", &self.start_date),
            ("stopDate", &self.stop_date),
            ("error", &self.error),
            ("cause", &self.cause),
            ("stateMachineArn", &self.state_machine_arn),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), json!(v));
            }
        }
        m.insert("seq".into(), json!(self.seq));
        Value::Object(m)
    }

    /// The execution-page view: the summary plus input, output and events.
    pub fn detail(&self) -> Value {
        let mut v = self.summary();
        if let Some(i) = &self.input {
            v["input"] = i.clone();
        }
        if let Some(o) = &self.output {
            v["output"] = o.clone();
        }
        v["hasLogRecord"] = json!(self.events.is_some() || self.events_dropped.is_some());
        if let Some(e) = &self.events {
            v["events"] = Value::Array(e.as_ref().clone());
        }
        if let Some(why) = self.events_dropped {
            v["eventsDropped"] = json!(why);
        }
        v
    }
}

/// `arn:aws:states:<region>:<account>:express:<machine>:<name>:<uuid>` -> machine.
pub fn machine_of(execution_arn: &str) -> Option<&str> {
    let rest = execution_arn.split_once(":express:")?.1;
    let (machine, _) = rest.split_once(':')?;
    (!machine.is_empty()).then_some(machine)
}

fn name_of(execution_arn: &str) -> Option<&str> {
    let rest = execution_arn.split_once(":express:")?.1;
    let (_, rest) = rest.split_once(':')?;
    Some(rest.rsplit_once(':').map_or(rest, |(n, _)| n))
}

/// What a record did to the store (the `outcome` label of the records counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Merged into an execution.
    Applied,
    /// Not a record this store understands (not JSON, no execution ARN).
    Invalid,
    /// Dropped by a bound (too many machines).
    Dropped,
}

impl Applied {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Applied => "applied",
            Applied::Invalid => "invalid",
            Applied::Dropped => "dropped",
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Per machine: ARNs, oldest first.
    rings: HashMap<String, VecDeque<String>>,
    executions: HashMap<String, Execution>,
    /// (seq, ARN) of executions holding events, oldest first (may hold stale entries).
    with_events: VecDeque<(u64, String)>,
    event_bytes: usize,
    seq: u64,
}

/// The store; shared by the reader thread and the HTTP handlers.
pub struct Store {
    limits: Limits,
    inner: Mutex<Inner>,
    updates: broadcast::Sender<Value>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Store {
    /// An empty store.
    pub fn new(limits: Limits) -> Store {
        let (updates, _) = broadcast::channel(1024);
        metrics::gauge!(names::CONSOLE_EXECUTIONS_HELD).set(0.0);
        Store {
            limits: Limits {
                per_machine: limits.per_machine.max(1),
                max_machines: limits.max_machines.max(1),
                ..limits
            },
            inner: Mutex::new(Inner::default()),
            updates,
        }
    }

    /// Its bounds.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Summaries of every change from now on (an SSE client's feed).
    pub fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.updates.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `f` to the execution `arn` (created if new), then publishes its summary.
    fn upsert(&self, arn: &str, f: impl FnOnce(&mut Execution, &mut usize)) -> Applied {
        let Some(machine) = machine_of(arn) else {
            return Applied::Invalid;
        };
        let summary = {
            let mut g = self.lock();
            let inner = &mut *g;
            if !inner.executions.contains_key(arn) {
                if !inner.rings.contains_key(machine)
                    && inner.rings.len() >= self.limits.max_machines
                {
                    return Applied::Dropped;
                }
                let ring = inner.rings.entry(machine.to_string()).or_default();
                ring.push_back(arn.to_string());
                inner
                    .executions
                    .insert(arn.to_string(), Execution::new(arn, machine));
                while ring.len() > self.limits.per_machine {
                    if let Some(old) = ring.pop_front() {
                        if let Some(e) = inner.executions.remove(&old) {
                            inner.event_bytes -= e.bytes;
                        }
                    }
                }
            }
            inner.seq += 1;
            let seq = inner.seq;
            let Some(e) = inner.executions.get_mut(arn) else {
                return Applied::Invalid;
            };
            let before = e.bytes;
            let mut bytes = e.bytes;
            f(e, &mut bytes);
            e.bytes = bytes;
            e.seq = seq;
            let summary = e.summary();
            inner.event_bytes = inner.event_bytes - before + bytes;
            if bytes > 0 && e.events.is_some() && (bytes != before || e.events_seq == 0) {
                e.events_seq = seq;
                inner.with_events.push_back((seq, arn.to_string()));
            }
            // Evict the oldest executions' events until under the budget.
            while inner.event_bytes > self.limits.events_budget_bytes {
                let Some((s, victim)) = inner.with_events.pop_front() else {
                    break;
                };
                if let Some(v) = inner.executions.get_mut(&victim) {
                    // A stale entry (the events were replaced since) is skipped.
                    if v.events_seq == s && v.bytes > 0 {
                        inner.event_bytes -= v.bytes;
                        v.bytes = 0;
                        if v.events.take().is_some() {
                            v.events_dropped =
                                Some("evicted: the console's memory budget for events was reached");
                        }
                    }
                }
            }
            metrics::gauge!(names::CONSOLE_EXECUTIONS_HELD).set(inner.executions.len() as f64);
            summary
        };
        // No receivers is not an error.
        let _ = self.updates.send(summary);
        Applied::Applied
    }

    /// A results-topic record value.
    pub fn apply_result(&self, value: &[u8]) -> Applied {
        let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(value) else {
            return Applied::Invalid;
        };
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let Some(arn) = s("executionArn") else {
            return Applied::Invalid;
        };
        self.upsert(&arn, |e, _| {
            if let Some(n) = s("name") {
                e.name = n;
            }
            e.status = s("status").unwrap_or_else(|| "UNKNOWN".into());
            e.start_date = s("startDate").or(e.start_date.take());
            e.stop_date = s("stopDate");
            e.state_machine_arn = s("stateMachineArn");
            e.output = v.get("output").cloned();
            e.error = s("error");
            e.cause = s("cause");
        })
    }

    /// A logs-topic record value (JSON; other encodings are [`Applied::Invalid`]).
    pub fn apply_log(&self, value: &[u8]) -> Applied {
        let Ok(Value::Object(mut v)) = serde_json::from_slice::<Value>(value) else {
            return Applied::Invalid;
        };
        let Some(arn) = v
            .get("executionArn")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return Applied::Invalid;
        };
        let events = match v.remove("events") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        let truncated = v.get("truncated").and_then(Value::as_bool) == Some(true);
        let too_large = value.len() > self.limits.max_log_bytes;
        self.upsert(&arn, |e, bytes| {
            if truncated {
                e.events = None;
                e.events_dropped = Some("the log record was too large for Kafka and was truncated");
                *bytes = 0;
            } else if too_large {
                e.events = None;
                e.events_dropped = Some("the log record is larger than the console keeps");
                *bytes = 0;
            } else {
                if e.start_date.is_none() {
                    e.start_date = events
                        .iter()
                        .find(|ev| {
                            ev.get("type").and_then(Value::as_str) == Some("ExecutionStarted")
                        })
                        .and_then(|ev| ev.get("event_timestamp"))
                        .and_then(Value::as_str)
                        .and_then(|t| t.parse::<i64>().ok())
                        .map(expressway_asl::timestamp::format_millis);
                }
                e.events = Some(Arc::new(events));
                e.events_dropped = None;
                *bytes = value.len();
            }
        })
    }

    /// Records an execution the console started (StartExecution's answer), shown `RUNNING`
    /// until its result arrives.
    pub fn started(&self, arn: &str, input: Value, start_date: String) -> Applied {
        self.upsert(arn, |e, _| {
            if e.status == "UNKNOWN" {
                e.status = "RUNNING".into();
            }
            e.input = Some(input);
            e.start_date.get_or_insert(start_date);
        })
    }

    /// The summaries of `machine`'s executions, newest first, optionally of one status.
    pub fn list(&self, machine: &str, status: Option<&str>) -> Vec<Value> {
        let g = self.lock();
        let Some(ring) = g.rings.get(machine) else {
            return Vec::new();
        };
        let mut out: Vec<&Execution> = ring
            .iter()
            .filter_map(|a| g.executions.get(a))
            .filter(|e| status.is_none_or(|s| e.status == s))
            .collect();
        out.sort_by(|a, b| {
            b.start_date
                .cmp(&a.start_date)
                .then_with(|| b.seq.cmp(&a.seq))
        });
        out.into_iter().map(Execution::summary).collect()
    }

    /// Executions of `machine` per status.
    pub fn counts(&self, machine: &str) -> Map<String, Value> {
        let g = self.lock();
        let mut m: HashMap<&str, u64> = HashMap::new();
        if let Some(ring) = g.rings.get(machine) {
            for e in ring.iter().filter_map(|a| g.executions.get(a)) {
                *m.entry(e.status.as_str()).or_default() += 1;
            }
        }
        m.into_iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect()
    }

    /// One execution.
    pub fn get(&self, arn: &str) -> Option<Execution> {
        self.lock().executions.get(arn).cloned()
    }

    /// Executions held (all machines).
    pub fn len(&self) -> usize {
        self.lock().executions.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arn(machine: &str, name: &str) -> String {
        format!("arn:aws:states:us-east-1:123456789012:express:{machine}:{name}:0f0e-uuid")
    }

    fn result(machine: &str, name: &str, status: &str, start: &str) -> Vec<u8> {
        json!({"executionArn": arn(machine, name), "name": name, "status": status,
               "startDate": start, "stopDate": start, "output": {"n": name}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn arn_parts() {
        let a = arn("hello", "expressway.start-0-12");
        assert_eq!(machine_of(&a), Some("hello"));
        assert_eq!(name_of(&a), Some("expressway.start-0-12"));
        assert_eq!(
            machine_of("arn:aws:states:us-east-1:1:stateMachine:x"),
            None
        );
        assert_eq!(machine_of("garbage"), None);
    }

    #[test]
    fn result_and_log_merge_in_either_order() {
        let s = Store::new(Limits::default());
        let a = arn("m", "e1");
        let log = json!({"executionArn": a, "events": [
            {"id":"1","type":"ExecutionStarted","event_timestamp":"1764684000000","details":{}},
            {"id":"2","type":"PassStateEntered","details":{"name":"A","input":"{}"}}]})
        .to_string();
        assert_eq!(s.apply_log(log.as_bytes()), Applied::Applied);
        let e = s.get(&a).expect("held");
        assert_eq!(e.status, "UNKNOWN");
        assert_eq!(
            e.start_date.as_deref(),
            Some("2025-12-02T14:00:00.000Z"),
            "start date taken from ExecutionStarted"
        );
        assert_eq!(
            s.apply_result(&result("m", "e1", "SUCCEEDED", "2026-01-01T00:00:00Z")),
            Applied::Applied
        );
        let d = s.get(&a).expect("held").detail();
        assert_eq!(d["status"], "SUCCEEDED");
        assert_eq!(d["output"], json!({"n": "e1"}));
        assert_eq!(d["events"].as_array().map(Vec::len), Some(2));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn ring_is_bounded_per_machine_and_lists_newest_first() {
        let s = Store::new(Limits {
            per_machine: 3,
            ..Limits::default()
        });
        for i in 0..5 {
            s.apply_result(&result(
                "m",
                &format!("e{i}"),
                "SUCCEEDED",
                &format!("2026-01-01T00:00:0{i}Z"),
            ));
        }
        s.apply_result(&result("other", "x", "FAILED", "2026-01-01T00:00:00Z"));
        let names: Vec<String> = s
            .list("m", None)
            .iter()
            .map(|v| v["name"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(names, ["e4", "e3", "e2"]);
        assert_eq!(s.len(), 4);
        assert!(s.get(&arn("m", "e0")).is_none());
        assert_eq!(s.list("other", Some("FAILED")).len(), 1);
        assert!(s.list("other", Some("SUCCEEDED")).is_empty());
        assert_eq!(s.counts("m").get("SUCCEEDED"), Some(&json!(3)));
    }

    #[test]
    fn machines_and_event_bytes_are_bounded() {
        let s = Store::new(Limits {
            max_machines: 2,
            events_budget_bytes: 600,
            max_log_bytes: 400,
            ..Limits::default()
        });
        assert_eq!(
            s.apply_result(&result("a", "1", "SUCCEEDED", "t")),
            Applied::Applied
        );
        assert_eq!(
            s.apply_result(&result("b", "1", "SUCCEEDED", "t")),
            Applied::Applied
        );
        assert_eq!(
            s.apply_result(&result("c", "1", "SUCCEEDED", "t")),
            Applied::Dropped
        );
        let log = |m: &str, n: &str, pad: usize| {
            json!({"executionArn": arn(m, n), "events": [{"id":"1","type":"X","details":{"p":"x".repeat(pad)}}]})
                .to_string()
        };
        let big = log("a", "1", 500);
        assert!(big.len() > 400);
        s.apply_log(big.as_bytes());
        let e = s.get(&arn("a", "1")).expect("held");
        assert!(e.events.is_none());
        assert!(e.events_dropped.is_some());
        // Two logs of ~300 bytes fit in 600 only if... three do not: the oldest loses its events.
        let l1 = log("a", "1", 150);
        let l2 = log("a", "2", 150);
        let l3 = log("b", "1", 150);
        for l in [&l1, &l2, &l3] {
            assert!(l.len() < 300);
            s.apply_log(l.as_bytes());
        }
        assert!(l1.len() + l2.len() + l3.len() > 600);
        let first = s.get(&arn("a", "1")).expect("held");
        assert!(first.events.is_none(), "oldest events evicted");
        assert!(first.events_dropped.is_some_and(|w| w.contains("budget")));
        assert!(s.get(&arn("b", "1")).expect("held").events.is_some());
        assert!(s.get(&arn("a", "2")).expect("held").events.is_some());
    }

    #[test]
    fn started_is_running_until_the_result() {
        let s = Store::new(Limits::default());
        let mut rx = s.subscribe();
        let a = arn("m", "mine");
        s.started(&a, json!({"x": "<script>"}), "2026-01-01T00:00:00Z".into());
        assert_eq!(s.get(&a).expect("held").status, "RUNNING");
        let update = rx.try_recv().expect("published");
        assert_eq!(update["status"], "RUNNING");
        s.apply_result(&result("m", "mine", "FAILED", "2026-01-01T00:00:00Z"));
        let e = s.get(&a).expect("held");
        assert_eq!(e.status, "FAILED");
        assert_eq!(e.input, Some(json!({"x": "<script>"})), "input kept");
        assert_eq!(rx.try_recv().expect("published")["status"], "FAILED");
        assert_eq!(s.apply_result(b"not json"), Applied::Invalid);
        assert_eq!(s.apply_log(br#"{"events":[]}"#), Applied::Invalid);
    }
}
