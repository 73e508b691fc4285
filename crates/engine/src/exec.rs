//! The interpreter: runs one execution of a loaded state machine.

use crate::budget::{estimate_bytes, Budget, Charge, LiveBytes, IN_FLIGHT_COST};
use crate::events::{Details, EventLog, LogConfig};
use crate::pace::Pacer;
use crate::runtime::{uuid_v4, Runtime, SplitMix64, TaskError, TaskRequest};
use expressway_asl::depth::MAX_VALUE_DEPTH;
use expressway_asl::jsonpath::JsonPath;
use expressway_asl::model::*;
use expressway_asl::template::{
    json_size, to_json, EvalEnv, EvalError, EvalErrorKind, Template, ValueExpr,
};
use expressway_asl::timestamp::{format_millis, parse_timestamp};
use futures::future::{self, BoxFuture, Either};
use futures::{FutureExt, StreamExt};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// AWS Express limits, raisable by configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size of any state input/output and of the execution input, in UTF-8 bytes.
    pub max_payload_bytes: usize,
    /// Maximum execution duration (Express: 5 minutes).
    pub max_duration: Duration,
    /// Maximum number of log events an execution keeps (at its log level); more fails it with
    /// `States.DataLimitExceeded`. AWS caps a Standard execution's history at 25,000 events.
    pub max_events: usize,
    /// Budget of an execution's estimated live bytes: kept log events, Map items and results,
    /// iterations and branches in flight, Parallel branch outputs. More fails it with
    /// `States.DataLimitExceeded`; it also bounds how many Map iterations run at once.
    pub max_memory_bytes: usize,
}

/// Default of [`Limits::max_memory_bytes`]: 64 MiB.
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 64 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 262_144,
            max_duration: Duration::from_secs(300),
            max_events: 25_000,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
        }
    }
}

/// Everything that identifies and configures one execution.
#[derive(Debug, Clone)]
pub struct ExecutionRequest {
    /// `arn:aws:states:<region>:<account>:express:<machine>:<name>:<uuid>`.
    pub execution_arn: String,
    /// The execution name.
    pub execution_name: String,
    /// The state machine ARN.
    pub state_machine_arn: String,
    /// The state machine name.
    pub state_machine_name: String,
    /// The execution role ARN (reported in the context object and logs).
    pub role_arn: String,
    /// The execution input.
    pub input: Value,
    /// Which events to keep.
    pub log: LogConfig,
    /// Payload and duration limits.
    pub limits: Limits,
    /// Started by StartSyncExecution: the context object has no `RedriveCount`.
    pub synchronous: bool,
}

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

/// Why a state (or a branch) did not complete normally.
#[derive(Debug, Clone, PartialEq)]
struct Failure {
    error: String,
    cause: Option<String>,
    /// `States.Runtime` / `States.DataLimitExceeded` fail the execution; no Retry or Catch applies.
    fatal: bool,
    /// A JSONata evaluation failed in this state's own fields (field name); reported once as an
    /// `EvaluationFailed` event, as AWS does.
    evaluation: Option<(String, String)>,
}

impl Failure {
    fn new(error: impl Into<String>, cause: Option<String>) -> Failure {
        Failure {
            error: error.into(),
            cause,
            fatal: false,
            evaluation: None,
        }
    }
    fn error_output(&self) -> Value {
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

fn state_failure(state: &str, entered_id: u64, e: EvalError) -> Failure {
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

/// Runs one execution to its end.
pub async fn execute(
    machine: &StateMachine,
    request: &ExecutionRequest,
    runtime: &Runtime,
) -> Outcome {
    let start_millis = runtime.clock.now_millis();
    let exec = Exec {
        req: request,
        rt: runtime,
        log: EventLog::new(request.log),
        transitions: AtomicU64::new(0),
        variable_bytes: AtomicU64::new(0),
        start_millis,
        execution_ctx: OnceLock::new(),
        pacer: Pacer::default(),
        live: LiveBytes::default(),
        exceeded: OnceLock::new(),
    };
    let started_id = exec.log.emit(
        "ExecutionStarted",
        0,
        || start_millis,
        Details::Input {
            name_key: "roleArn",
            name: &request.role_arn,
            input: &request.input,
        },
    );

    let mut limit = request.limits.max_duration;
    if let Some(t) = machine.timeout_seconds {
        limit = limit.min(Duration::from_secs(t));
    }
    let run = async {
        let fit = fits(&request.input, request.limits.max_payload_bytes);
        if fit == Fit::TooDeep {
            return Err(too_deep("input", None));
        }
        if fit == Fit::TooLarge {
            return Err(Failure {
                error: "States.DataLimitExceeded".into(),
                cause: Some("The state/task 'input' returned a result with a size exceeding the maximum number of bytes service limit.".into()),
                fatal: true,
                evaluation: None,
            });
        }
        let root = Scope {
            vars: None,
            parent: None,
        };
        let mut prev = 0u64;
        exec.run_graph(
            &machine.graph,
            request.input.clone(),
            &root,
            &mut prev,
            None,
        )
        .await
        .map(|v| (v, prev))
    };
    let timer = runtime.clock.sleep(limit);
    let result = match future::select(Box::pin(run), timer).await {
        Either::Left((r, _)) => Some(r),
        Either::Right(((), _)) => None,
    };
    let stop_millis = runtime.clock.now_millis();
    let last = exec.log.peek_next_id().saturating_sub(1).max(started_id);
    let (status, output, error, cause) = match result {
        Some(Ok((output, _))) => {
            exec.log.emit(
                "ExecutionSucceeded",
                last,
                || stop_millis,
                Details::Output {
                    name: None,
                    output: &output,
                },
            );
            (Status::Succeeded, Some(output), None, None)
        }
        Some(Err(f)) => {
            exec.log.emit(
                "ExecutionFailed",
                last,
                || stop_millis,
                Details::Failure {
                    error: Some(f.error.as_str()).filter(|e| !e.is_empty()),
                    cause: f.cause.as_deref(),
                    resource: None,
                },
            );
            (
                Status::Failed,
                None,
                Some(f.error).filter(|e| !e.is_empty()),
                f.cause,
            )
        }
        None => {
            exec.log
                .emit("ExecutionTimedOut", last, || stop_millis, Details::Empty);
            (Status::TimedOut, None, None, None)
        }
    };
    let state_transitions = exec.transitions.load(Ordering::Relaxed);
    let exceeded_budget = exec.exceeded.get().copied();
    Outcome {
        status,
        output,
        error,
        cause,
        start_millis,
        stop_millis,
        events: exec.log.into_events(),
        state_transitions,
        exceeded_budget,
    }
}

struct Exec<'a> {
    req: &'a ExecutionRequest,
    rt: &'a Runtime,
    log: EventLog,
    transitions: AtomicU64,
    /// Serialized size of every variable currently assigned (AWS caps it at 10 MiB).
    variable_bytes: AtomicU64,
    start_millis: i64,
    execution_ctx: OnceLock<(Value, Value)>,
    /// When to give control back to the runtime.
    pacer: Pacer,
    /// Estimated live bytes besides the kept events (see [`crate::budget`]).
    live: LiveBytes,
    /// Set when a budget failed the execution.
    exceeded: OnceLock<Budget>,
}

/// Variables visible to a graph: its own, then its parents'.
struct Scope<'a> {
    vars: Option<&'a HashMap<String, Value>>,
    parent: Option<&'a Scope<'a>>,
}

impl Scope<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.vars
            .and_then(|v| v.get(name))
            .or_else(|| self.parent.and_then(|p| p.get(name)))
    }
}

struct MapItem<'a> {
    index: usize,
    value: &'a Value,
}

/// The evaluation environment of one state.
struct Env<'a> {
    exec: &'a Exec<'a>,
    input: &'a Value,
    scope: &'a Scope<'a>,
    state_name: &'a str,
    entered_millis: i64,
    map_item: Option<MapItem<'a>>,
    ctx: OnceLock<Value>,
    states: OnceLock<Value>,
    result: Option<&'a Value>,
    error_output: Option<&'a Value>,
}

impl<'a> Env<'a> {
    fn new(
        exec: &'a Exec<'a>,
        input: &'a Value,
        scope: &'a Scope<'a>,
        state_name: &'a str,
        entered_millis: i64,
    ) -> Env<'a> {
        Env {
            exec,
            input,
            scope,
            state_name,
            entered_millis,
            map_item: None,
            ctx: OnceLock::new(),
            states: OnceLock::new(),
            result: None,
            error_output: None,
        }
    }
    fn with_input(&self, input: &'a Value) -> Env<'a> {
        Env::new(
            self.exec,
            input,
            self.scope,
            self.state_name,
            self.entered_millis,
        )
    }
}

impl Env<'_> {
    fn state_context(&self) -> Value {
        let mut state = Map::with_capacity(2);
        state.insert("Name".into(), Value::String(self.state_name.to_string()));
        state.insert(
            "EnteredTime".into(),
            Value::String(format_millis(self.entered_millis)),
        );
        Value::Object(state)
    }
}

fn map_context(item: &MapItem<'_>) -> Value {
    let mut it = Map::with_capacity(2);
    it.insert("Index".into(), Value::from(item.index));
    it.insert("Value".into(), item.value.clone());
    let mut m = Map::with_capacity(1);
    m.insert("Item".into(), Value::Object(it));
    Value::Object(m)
}

impl EvalEnv for Env<'_> {
    fn input(&self) -> &Value {
        self.input
    }
    fn context(&self) -> &Value {
        self.ctx.get_or_init(|| {
            let (execution, machine) = self.exec.context_parts();
            let mut ctx = Map::with_capacity(4);
            ctx.insert("Execution".into(), execution.clone());
            ctx.insert("StateMachine".into(), machine.clone());
            ctx.insert("State".into(), self.state_context());
            if let Some(item) = &self.map_item {
                ctx.insert("Map".into(), map_context(item));
            }
            Value::Object(ctx)
        })
    }
    fn context_part(&self, name: &str) -> Option<Cow<'_, Value>> {
        if let Some(ctx) = self.ctx.get() {
            return ctx.get(name).map(Cow::Borrowed);
        }
        match name {
            "Execution" => Some(Cow::Borrowed(&self.exec.context_parts().0)),
            "StateMachine" => Some(Cow::Borrowed(&self.exec.context_parts().1)),
            "State" => Some(Cow::Owned(self.state_context())),
            "Map" => self
                .map_item
                .as_ref()
                .map(|item| Cow::Owned(map_context(item))),
            _ => None,
        }
    }
    fn variable(&self, name: &str) -> Option<&Value> {
        if name == "states" {
            return self.jsonata_states();
        }
        self.scope.get(name)
    }
    fn random_int(&self, start: i64, end: i64, seed: Option<i64>) -> i64 {
        let r = match seed {
            Some(s) => SplitMix64::mix(s as u64),
            None => self.exec.rt.entropy.next_u64(),
        };
        let span = (end as i128 - start as i128 + 1).max(1) as u128;
        (start as i128 + (r as u128 % span) as i128) as i64
    }
    fn uuid(&self) -> String {
        uuid_v4(self.exec.rt.entropy.as_ref())
    }
    fn states_member(&self, name: &str) -> Option<&Value> {
        match name {
            "input" => Some(self.input),
            "context" => Some(self.context()),
            "result" => self.result,
            "errorOutput" => self.error_output,
            _ => None,
        }
    }
    fn jsonata_states(&self) -> Option<&Value> {
        Some(self.states.get_or_init(|| {
            let mut m = Map::with_capacity(4);
            m.insert("input".into(), self.input.clone());
            m.insert("context".into(), self.context().clone());
            if let Some(r) = self.result {
                m.insert("result".into(), r.clone());
            }
            if let Some(e) = self.error_output {
                m.insert("errorOutput".into(), e.clone());
            }
            Value::Object(m)
        }))
    }
}

/// False for states whose output can only be a part of their (already size-checked) input.
fn needs_size_check(state: &State) -> bool {
    if state.query_language == QueryLanguage::Jsonata {
        // without Output, a Pass, Choice, Wait or Succeed state passes its input on unchanged
        return state.output.is_some()
            || !matches!(
                state.kind,
                Kind::Pass(_) | Kind::Choice(_) | Kind::Wait(_) | Kind::Succeed
            );
    }
    match &state.kind {
        Kind::Choice(_) | Kind::Wait(_) | Kind::Succeed => false,
        Kind::Pass(p) => {
            p.parameters.is_some()
                || p.result.is_some()
                || matches!(p.result_path, ResultPath::At(_))
        }
        _ => true,
    }
}

/// Whether a value fits the payload limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    Fits,
    /// Nested deeper than [`MAX_VALUE_DEPTH`] arrays and objects.
    TooDeep,
    /// Serializes to more than the byte limit.
    TooLarge,
}

/// True when `v` nests at most [`MAX_VALUE_DEPTH`] arrays and objects (checked without recursion,
/// before anything recursive touches it).
fn fits_depth(v: &Value) -> bool {
    expressway_asl::depth::value_depth(v, MAX_VALUE_DEPTH) <= MAX_VALUE_DEPTH
}

/// The failure of a state whose result nests deeper than [`MAX_VALUE_DEPTH`]: fatal, like the
/// payload size limit.
fn too_deep(state: &str, variable: Option<&str>) -> Failure {
    let what = match variable {
        Some(v) => format!("assigned the variable '{v}' a value"),
        None => "returned a result".into(),
    };
    Failure {
        error: "States.DataLimitExceeded".into(),
        cause: Some(format!(
            "The state/task '{state}' {what} nested deeper than {MAX_VALUE_DEPTH} arrays/objects, the maximum nesting of a value."
        )),
        fatal: true,
        evaluation: None,
    }
}

/// Whether `v` nests at most [`MAX_VALUE_DEPTH`] levels and serializes to at most `limit` bytes,
/// in one walk.
///
/// A cheap upper bound (every string byte counted as a 6-byte escape) settles almost every case
/// without touching the bytes; only payloads near the limit are measured exactly, by serializing
/// into a counting sink (no allocation). The walk recurses, but never past the depth bound.
fn fits(v: &Value, limit: usize) -> Fit {
    fn bound(v: &Value, budget: &mut isize, depth: usize) -> bool {
        match v {
            Value::Null | Value::Bool(_) => *budget -= 5,
            Value::Number(_) => *budget -= 32,
            Value::String(s) => *budget -= 6 * s.len() as isize + 2,
            Value::Array(a) => {
                if depth >= MAX_VALUE_DEPTH {
                    return false;
                }
                *budget -= 2 + a.len() as isize;
                for x in a {
                    if !bound(x, budget, depth + 1) {
                        return false;
                    }
                }
            }
            Value::Object(m) => {
                if depth >= MAX_VALUE_DEPTH {
                    return false;
                }
                *budget -= 2 + 2 * m.len() as isize;
                for (k, x) in m {
                    *budget -= 6 * k.len() as isize + 2;
                    if !bound(x, budget, depth + 1) {
                        return false;
                    }
                }
            }
        }
        true
    }
    let mut budget = limit as isize;
    if !bound(v, &mut budget, 0) {
        return Fit::TooDeep;
    }
    if budget >= 0 || json_size(v) <= limit {
        Fit::Fits
    } else {
        Fit::TooLarge
    }
}

fn select_path(p: &JsonPath, value: &Value, env: &Env<'_>) -> Result<Value, EvalError> {
    use expressway_asl::jsonpath::Root;
    use expressway_asl::template::{resolve_path, PathFailure};
    let result = match p.root() {
        Root::Input => p.query(value).map_err(|_| PathFailure::NoResults),
        _ => resolve_path(p, env),
    };
    result.map_err(|f| match (f, p.root()) {
        (PathFailure::UnknownVariable, Root::Variable(name)) => EvalError::runtime(format!(
            "Invalid path '{p}' : The variable '${name}' is not defined."
        )),
        _ => EvalError::runtime(format!(
            "Invalid path '{p}' : No results for path: {}",
            p.bracket_notation()
        )),
    })
}

/// ResultPath: combines the state's raw input with its result (both moved, nothing copied).
fn apply_result_path(rp: &ResultPath, input: Value, result: Value) -> Result<Value, EvalError> {
    match rp {
        ResultPath::Replace => Ok(result),
        ResultPath::Discard => Ok(input),
        ResultPath::At(p) => {
            let mut out = if input.is_object() {
                input
            } else {
                Value::Object(Map::new())
            };
            match p.assign(&mut out, result) {
                Ok(()) => Ok(out),
                Err(_) => Err(EvalError::runtime(format!(
                    "Unable to apply ResultPath '{p}' to the input '{}'",
                    to_json(&out)
                ))),
            }
        }
    }
}

/// The state's effective input: InputPath applied (JSONPath), or the input itself (JSONata).
/// Borrowed whenever no copy is needed.
fn effective_input<'v>(
    state: &State,
    input: &'v Value,
    env: &Env<'_>,
) -> Result<Cow<'v, Value>, EvalError> {
    if state.query_language == QueryLanguage::Jsonata {
        return Ok(Cow::Borrowed(input));
    }
    match &state.input_path {
        IoPath::Identity => Ok(Cow::Borrowed(input)),
        IoPath::Discard => Ok(Cow::Owned(Value::Object(Map::new()))),
        IoPath::Path(p) => select_path(p, input, env).map(Cow::Owned),
    }
}

/// `Some(value)` when the effective input is a new value, `None` when it is the input itself.
fn owned_if_new(v: Cow<'_, Value>) -> Option<Value> {
    match v {
        Cow::Owned(v) => Some(v),
        Cow::Borrowed(_) => None,
    }
}

/// `Parameters` (JSONPath) or `Arguments` (JSONata) applied to the effective input, or the
/// effective input itself.
fn work_input(work: &Work, jsonata: bool, eff: &Value, env: &Env<'_>) -> Result<Value, EvalError> {
    match &work.parameters {
        Some(p) => p.eval_in(env, if jsonata { "Arguments" } else { "" }),
        None => Ok(eff.clone()),
    }
}

/// What a state needs after its work to build its output (no borrow of the input).
struct OutCtx<'a> {
    exec: &'a Exec<'a>,
    scope: &'a Scope<'a>,
    state_name: &'a str,
    entered_millis: i64,
}

impl OutCtx<'_> {
    fn env<'v>(&'v self, input: &'v Value) -> Env<'v> {
        Env::new(
            self.exec,
            input,
            self.scope,
            self.state_name,
            self.entered_millis,
        )
    }

    fn output_path(&self, path: &IoPath, value: Value) -> Result<Value, EvalError> {
        match path {
            IoPath::Identity => Ok(value),
            IoPath::Discard => Ok(Value::Object(Map::new())),
            IoPath::Path(p) => {
                let env = self.env(&value);
                select_path(p, &value, &env)
            }
        }
    }
}

enum Decision {
    Retry(Duration),
    Catch(usize),
    Fail,
}

fn error_matches(names: &[String], error: &str) -> bool {
    names.iter().any(|n| {
        n == error
            || (n == "States.ALL"
                && error != "States.Runtime"
                && error != "States.DataLimitExceeded")
            || (n == "States.TaskFailed"
                && error != "States.Timeout"
                && !error.starts_with("States."))
    })
}

impl<'a> Exec<'a> {
    fn context_parts(&self) -> &(Value, Value) {
        self.execution_ctx.get_or_init(|| {
            let mut e = Map::with_capacity(6);
            e.insert("Id".into(), Value::String(self.req.execution_arn.clone()));
            e.insert("Input".into(), self.req.input.clone());
            e.insert(
                "Name".into(),
                Value::String(self.req.execution_name.clone()),
            );
            e.insert("RoleArn".into(), Value::String(self.req.role_arn.clone()));
            e.insert(
                "StartTime".into(),
                Value::String(format_millis(self.start_millis)),
            );
            if !self.req.synchronous {
                e.insert("RedriveCount".into(), Value::from(0));
            }
            let mut m = Map::with_capacity(2);
            m.insert(
                "Id".into(),
                Value::String(self.req.state_machine_arn.clone()),
            );
            m.insert(
                "Name".into(),
                Value::String(self.req.state_machine_name.clone()),
            );
            (Value::Object(e), Value::Object(m))
        })
    }

    fn now(&self) -> i64 {
        self.rt.clock.now_millis()
    }

    /// Counts one unit of work and yields to the runtime every [`crate::pace::YIELD_EVERY`].
    async fn pace(&self) {
        if let Some(y) = self.pacer.tick() {
            y.await;
        }
    }

    fn memory_limit(&self) -> u64 {
        self.req.limits.max_memory_bytes as u64
    }

    /// Fails the execution once it keeps too many events or holds too many bytes.
    fn check_budgets(&self, state: &str) -> Result<(), Failure> {
        let kept = self.log.kept_count();
        if kept > self.req.limits.max_events as u64 {
            return Err(self.over_budget(Budget::Events, state, kept));
        }
        let bytes = self.live.get() + self.log.kept_bytes();
        if bytes > self.memory_limit() {
            return Err(self.over_budget(Budget::Memory, state, bytes));
        }
        Ok(())
    }

    /// Holds `bytes` of live state until the guard drops, or fails the execution when they do
    /// not fit in its memory budget.
    fn charge(&self, bytes: u64, state: &str) -> Result<Charge<'_>, Failure> {
        self.live
            .charge(bytes, self.log.kept_bytes(), self.memory_limit())
            .map_err(|used| self.over_budget(Budget::Memory, state, used))
    }

    /// Adds `bytes` to a charge, failing the execution when they do not fit.
    fn grow(&self, charge: &mut Charge<'_>, bytes: u64, state: &str) -> Result<(), Failure> {
        charge
            .grow(bytes, self.log.kept_bytes(), self.memory_limit())
            .map_err(|used| self.over_budget(Budget::Memory, state, used))
    }

    fn over_budget(&self, budget: Budget, state: &str, used: u64) -> Failure {
        let _ = self.exceeded.set(budget);
        let limits = &self.req.limits;
        let cause = match budget {
            Budget::Events => format!(
                "The execution exceeded its budget of {} log events in the state '{state}' ({used} events kept at its log level).",
                limits.max_events
            ),
            Budget::Memory => format!(
                "The execution exceeded its memory budget of {} bytes in the state '{state}' (about {used} bytes of live state: log events, Map items and results, iterations and branches in flight).",
                limits.max_memory_bytes
            ),
        };
        Failure {
            error: "States.DataLimitExceeded".into(),
            cause: Some(cause),
            fatal: true,
            evaluation: None,
        }
    }

    fn decide(&self, work: &Work, counters: &mut [u32], f: &Failure) -> Decision {
        if f.fatal {
            return Decision::Fail;
        }
        for (i, r) in work.retry.iter().enumerate() {
            if error_matches(&r.error_equals, &f.error) {
                if counters[i] < r.max_attempts {
                    let mut delay = r.interval_seconds * r.backoff_rate.powi(counters[i] as i32);
                    if let Some(max) = r.max_delay_seconds {
                        delay = delay.min(max);
                    }
                    if r.jitter_full {
                        let unit = (self.rt.entropy.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                        delay *= unit;
                    }
                    counters[i] += 1;
                    return Decision::Retry(Duration::from_secs_f64(delay.max(0.0)));
                }
                break;
            }
        }
        for (i, c) in work.catch.iter().enumerate() {
            if error_matches(&c.error_equals, &f.error) {
                return Decision::Catch(i);
            }
        }
        Decision::Fail
    }

    fn run_graph<'s>(
        &'s self,
        graph: &'s Graph,
        input: Value,
        parent: &'s Scope<'s>,
        prev: &'s mut u64,
        map_vars: Option<HashMap<String, Value>>,
    ) -> BoxFuture<'s, Result<Value, Failure>> {
        async move {
            let mut vars: HashMap<String, Value> = map_vars.unwrap_or_default();
            let mut index = graph.start;
            let mut input = input;
            loop {
                let state = &graph.states[index];
                let step = {
                    let scope = Scope {
                        vars: Some(&vars),
                        parent: Some(parent),
                    };
                    self.run_state(state, input, &scope, prev).await?
                };
                for (k, v) in step.assign {
                    let new = json_size(&v) as u64;
                    let old = vars.get(&k).map(|o| json_size(o) as u64).unwrap_or(0);
                    self.variable_bytes.fetch_add(new, Ordering::Relaxed);
                    self.variable_bytes.fetch_sub(old, Ordering::Relaxed);
                    vars.insert(k, v);
                }
                self.check_budgets(&state.name)?;
                self.pace().await;
                match step.next {
                    Some(n) => {
                        index = n;
                        input = step.output;
                    }
                    None => return Ok(step.output),
                }
            }
        }
        .boxed()
    }

    async fn run_state(
        &self,
        state: &State,
        input: Value,
        scope: &Scope<'_>,
        prev: &mut u64,
    ) -> Result<Step, Failure> {
        let result = self.run_state_body(state, input, scope, prev).await;
        result.map_err(|mut f| {
            if let Some((state_name, location)) = f.evaluation.take() {
                let mut details = Map::new();
                if let Some(c) = &f.cause {
                    details.insert("cause".into(), Value::String(c.clone()));
                }
                details.insert("error".into(), Value::String(f.error.clone()));
                details.insert("location".into(), Value::String(location));
                details.insert("state".into(), Value::String(state_name));
                *prev = self.log.emit(
                    "EvaluationFailed",
                    0,
                    || self.now(),
                    Details::Raw(Value::Object(details)),
                );
                let failed = match &state.kind {
                    Kind::Map(_) => Some("MapStateFailed"),
                    Kind::Parallel(_) => Some("ParallelStateFailed"),
                    _ => None,
                };
                if let Some(t) = failed {
                    *prev = self.log.emit(t, *prev, || self.now(), Details::Empty);
                }
            }
            f
        })
    }

    async fn run_state_body(
        &self,
        state: &State,
        input: Value,
        scope: &Scope<'_>,
        prev: &mut u64,
    ) -> Result<Step, Failure> {
        self.transitions.fetch_add(1, Ordering::Relaxed);
        let entered_millis = self.now();
        let entered_type = entered_event(&state.kind);
        let entered_id = self.log.emit(
            entered_type,
            *prev,
            || entered_millis,
            Details::Input {
                name_key: "name",
                name: &state.name,
                input: &input,
            },
        );
        *prev = entered_id;
        let fail = |e: EvalError| state_failure(&state.name, entered_id, e);
        let jsonata = state.query_language == QueryLanguage::Jsonata;
        let out_ctx = OutCtx {
            exec: self,
            scope,
            state_name: &state.name,
            entered_millis,
        };

        let step = match &state.kind {
            Kind::Pass(pass) => {
                // `result: None` means "the result is the effective input, which is the input itself".
                let (result, assign, jsonata_out) = {
                    let env = Env::new(self, &input, scope, &state.name, entered_millis);
                    let eff = effective_input(state, &input, &env).map_err(fail)?;
                    let eff_env = env.with_input(&eff);
                    let result = match (&pass.parameters, &pass.result) {
                        (Some(p), _) => Some(
                            p.eval_in(&eff_env, if jsonata { "Arguments" } else { "" })
                                .map_err(fail)?,
                        ),
                        (None, Some(r)) => Some(r.clone()),
                        (None, None) => None,
                    };
                    let assign = match &state.assign {
                        Some(_) => {
                            let target = result.as_ref().unwrap_or(&eff);
                            self.eval_assign(state, &env.with_input(target))
                                .map_err(fail)?
                        }
                        None => Vec::new(),
                    };
                    let jsonata_out = if jsonata {
                        self.jsonata_output(state, &env).map_err(fail)?
                    } else {
                        None
                    };
                    let result = match (result, eff) {
                        (Some(r), _) => Some(r),
                        (None, Cow::Owned(v)) => Some(v),
                        (None, Cow::Borrowed(_)) => None,
                    };
                    (result, assign, jsonata_out)
                };
                let output = match jsonata_out {
                    Some(o) => o,
                    None => {
                        let merged = match result {
                            Some(r) => {
                                apply_result_path(&pass.result_path, input, r).map_err(fail)?
                            }
                            None => match &pass.result_path {
                                ResultPath::At(_) => {
                                    let r = input.clone();
                                    apply_result_path(&pass.result_path, input, r).map_err(fail)?
                                }
                                _ => input,
                            },
                        };
                        out_ctx
                            .output_path(&state.output_path, merged)
                            .map_err(fail)?
                    }
                };
                Step {
                    next: next_of(pass.transition),
                    output,
                    assign,
                }
            }
            Kind::Succeed => {
                let (eff_owned, jsonata_out) = {
                    let env = Env::new(self, &input, scope, &state.name, entered_millis);
                    if jsonata {
                        (None, self.jsonata_output(state, &env).map_err(fail)?)
                    } else {
                        (
                            owned_if_new(effective_input(state, &input, &env).map_err(fail)?),
                            None,
                        )
                    }
                };
                let output = match jsonata_out {
                    Some(o) => o,
                    None => out_ctx
                        .output_path(&state.output_path, eff_owned.unwrap_or(input))
                        .map_err(fail)?,
                };
                Step {
                    next: None,
                    output,
                    assign: Vec::new(),
                }
            }
            Kind::Fail(f) => {
                let env = Env::new(self, &input, scope, &state.name, entered_millis);
                let eff = effective_input(state, &input, &env).map_err(fail)?;
                let eff_env = env.with_input(&eff);
                let error = self
                    .dynamic_string(&f.error, "ErrorPath", "Error", &eff_env)
                    .map_err(fail)?;
                let cause = self
                    .dynamic_string(&f.cause, "CausePath", "Cause", &eff_env)
                    .map_err(fail)?;
                return Err(Failure::new(error.unwrap_or_default(), cause));
            }
            Kind::Choice(choice) => {
                let (next, assign, eff_owned, jsonata_out) = {
                    let env = Env::new(self, &input, scope, &state.name, entered_millis);
                    let eff = effective_input(state, &input, &env).map_err(fail)?;
                    let eff_env = env.with_input(&eff);
                    let mut matched = None;
                    for branch in &choice.choices {
                        if branch.rule.eval(&eff_env).map_err(fail)? {
                            matched = Some(branch);
                            break;
                        }
                    }
                    let (next, assign_t, output_t) = match matched {
                        Some(b) => (b.next, b.assign.as_ref().or(state.assign.as_ref()), b.output.as_ref().or(state.output.as_ref())),
                        None => match choice.default {
                            Some(d) => (d, state.assign.as_ref(), state.output.as_ref()),
                            None => {
                                return Err(Failure::new(
                                    "States.NoChoiceMatched",
                                    Some(format!("An error occurred while executing the state '{}' (entered at the event id #{entered_id}). Failed to transition out of the state. The state does not point to a next state.", state.name)),
                                ))
                            }
                        },
                    };
                    let assign = match assign_t {
                        Some(t) => eval_assign_template(t, &eff_env).map_err(fail)?,
                        None => Vec::new(),
                    };
                    let jsonata_out = match (jsonata, output_t) {
                        (true, Some(t)) => Some(t.eval_in(&env, "Output").map_err(fail)?),
                        _ => None,
                    };
                    (next, assign, owned_if_new(eff), jsonata_out)
                };
                let output = match jsonata_out {
                    Some(o) => o,
                    None if jsonata => input,
                    None => out_ctx
                        .output_path(&state.output_path, eff_owned.unwrap_or(input))
                        .map_err(fail)?,
                };
                Step {
                    next: Some(next),
                    output,
                    assign,
                }
            }
            Kind::Wait(wait) => {
                let (assign, eff_owned, jsonata_out) = {
                    let env = Env::new(self, &input, scope, &state.name, entered_millis);
                    let eff = effective_input(state, &input, &env).map_err(fail)?;
                    let eff_env = env.with_input(&eff);
                    let delay = self.wait_delay(&wait.wait_for, &eff_env).map_err(fail)?;
                    if !delay.is_zero() {
                        self.rt.clock.sleep(delay).await;
                    }
                    let assign = self.eval_assign(state, &eff_env).map_err(fail)?;
                    let jsonata_out = if jsonata {
                        self.jsonata_output(state, &env).map_err(fail)?
                    } else {
                        None
                    };
                    (assign, owned_if_new(eff), jsonata_out)
                };
                let output = match jsonata_out {
                    Some(o) => o,
                    None => out_ctx
                        .output_path(&state.output_path, eff_owned.unwrap_or(input))
                        .map_err(fail)?,
                };
                Step {
                    next: next_of(wait.transition),
                    output,
                    assign,
                }
            }
            Kind::Task(task) => {
                self.run_task(state, task, input, &out_ctx, entered_id, prev)
                    .await?
            }
            Kind::Parallel(par) => {
                self.run_parallel(state, par, input, &out_ctx, entered_id, prev)
                    .await?
            }
            Kind::Map(map) => {
                self.run_map(state, map, input, &out_ctx, entered_id, prev)
                    .await?
            }
        };
        if needs_size_check(state) {
            let fit = fits(&step.output, self.req.limits.max_payload_bytes);
            if fit == Fit::TooDeep {
                return Err(too_deep(&state.name, None));
            }
            if fit == Fit::TooLarge {
                return Err(Failure {
                    error: "States.DataLimitExceeded".into(),
                    cause: Some(format!("The state/task '{}' returned a result with a size exceeding the maximum number of bytes service limit.", state.name)),
                    fatal: true,
                    evaluation: None,
                });
            }
        }
        if let Some((name, _)) = step.assign.iter().find(|(_, v)| !fits_depth(v)) {
            return Err(too_deep(&state.name, Some(name)));
        }
        if let Some(exited) = exited_event(&state.kind) {
            let id = self.log.emit(
                exited,
                *prev,
                || self.now(),
                Details::Output {
                    name: Some(&state.name),
                    output: &step.output,
                },
            );
            *prev = id;
        }
        Ok(step)
    }

    fn eval_assign(&self, state: &State, env: &Env<'_>) -> Result<Vec<(String, Value)>, EvalError> {
        match &state.assign {
            Some(t) => eval_assign_template(t, env),
            None => Ok(Vec::new()),
        }
    }

    /// A JSONata state's `Output`; `None` without one, when the output is the input (Pass, Wait,
    /// Succeed), passed on without copying.
    fn jsonata_output(&self, state: &State, env: &Env<'_>) -> Result<Option<Value>, EvalError> {
        state
            .output
            .as_ref()
            .map(|t| t.eval_in(env, "Output"))
            .transpose()
    }

    fn dynamic_string(
        &self,
        d: &Option<Dynamic<String>>,
        path_field: &str,
        field: &str,
        env: &Env<'_>,
    ) -> Result<Option<String>, EvalError> {
        match d {
            None => Ok(None),
            Some(Dynamic::Fixed(s)) => Ok(Some(s.clone())),
            Some(Dynamic::Expr(e)) => {
                let name = if matches!(e, ValueExpr::Jsonata(_)) {
                    field
                } else {
                    path_field
                };
                match e.eval(name, env)? {
                    Value::String(s) => Ok(Some(s)),
                    other => Ok(Some(to_json(&other))),
                }
            }
        }
    }

    fn wait_delay(&self, wait_for: &WaitFor, env: &Env<'_>) -> Result<Duration, EvalError> {
        let now = self.now();
        let until = |ts: &str, err: &dyn Fn() -> EvalError| -> Result<Duration, EvalError> {
            let t = parse_timestamp(ts).ok_or_else(err)?;
            let target = t.timestamp_millis();
            if target - now > i32::MAX as i64 * 1000 {
                return Err(EvalError::runtime("Wait state delay is too long."));
            }
            Ok(Duration::from_millis((target - now).max(0) as u64))
        };
        match wait_for {
            WaitFor::Seconds(s) => Ok(Duration::from_secs(*s)),
            WaitFor::Timestamp(ts) => until(ts, &|| {
                EvalError::runtime("The Timestamp field cannot be parsed")
            }),
            WaitFor::SecondsPath(p) => {
                let v = select_path(p, env.input, env).map_err(|_| {
                    EvalError::runtime(format!(
                        "The SecondsPath parameter does not reference an input value: {p}"
                    ))
                })?;
                let text = value_text(&v);
                match v.as_i64() {
                    Some(n) if n < 0 => Err(EvalError::runtime(format!(
                        "The SecondsPath parameter references a negative value: {p} == {text}"
                    ))),
                    Some(n) if v.is_i64() || v.is_u64() => Ok(Duration::from_secs(n as u64)),
                    _ => Err(EvalError::runtime(format!(
                        "The SecondsPath parameter cannot be parsed as a long value: {p} == {text}"
                    ))),
                }
            }
            WaitFor::TimestampPath(p) => {
                let v = select_path(p, env.input, env).map_err(|_| {
                    EvalError::runtime(format!(
                        "The TimestampPath parameter does not reference an input value: {p}"
                    ))
                })?;
                let bad = || {
                    EvalError::runtime(format!("The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {p} == {}", value_text(&v)))
                };
                match &v {
                    Value::String(s) => until(s, &bad),
                    _ => Err(bad()),
                }
            }
            WaitFor::SecondsExpr(e) => {
                let v = e.eval("Seconds", env)?;
                match v.as_u64() {
                    Some(n) => Ok(Duration::from_secs(n)),
                    None => Err(EvalError::query(format!("The JSONata expression '{}' specified for the field 'Seconds' returned an unexpected result type. Expected 'integer', but was '{}' for value: {}", e.text(), expressway_asl::jsonata::type_name(&v), to_json(&v)))),
                }
            }
            WaitFor::TimestampExpr(e) => {
                let v = e.eval("Timestamp", env)?;
                let text = value_text(&v);
                let bad = || {
                    EvalError::query(format!("The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format string: {text}"))
                };
                match &v {
                    Value::String(s) => until(s, &bad),
                    _ => Err(bad()),
                }
            }
        }
    }

    async fn run_task(
        &self,
        state: &State,
        task: &Task,
        input: Value,
        out: &OutCtx<'_>,
        entered_id: u64,
        prev: &mut u64,
    ) -> Result<Step, Failure> {
        let fail = |e: EvalError| state_failure(&state.name, entered_id, e);
        let jsonata = state.query_language == QueryLanguage::Jsonata;
        let outcome = {
            let env_owned = out.env(&input);
            let env = &env_owned;
            let eff = effective_input(state, &input, env).map_err(fail)?;
            let eff_env = env.with_input(&eff);
            let params = work_input(&task.work, jsonata, &eff, &eff_env).map_err(fail)?;
            let timeout = self
                .dynamic_seconds(
                    &task.timeout_seconds,
                    "TimeoutSecondsPath",
                    "TimeoutSeconds",
                    &eff_env,
                )
                .map_err(fail)?;
            let heartbeat = self
                .dynamic_seconds(
                    &task.heartbeat_seconds,
                    "HeartbeatSecondsPath",
                    "HeartbeatSeconds",
                    &eff_env,
                )
                .map_err(fail)?;
            let mut counters = vec![0u32; task.work.retry.len()];
            let mut attempt = 0u32;
            let outcome = loop {
                let id = self.log.emit(
                    "TaskScheduled",
                    *prev,
                    || self.now(),
                    Details::TaskScheduled {
                        resource: &task.resource,
                        parameters: &params,
                        timeout,
                        heartbeat,
                    },
                );
                let id = self.log.emit(
                    "TaskStarted",
                    id,
                    || self.now(),
                    Details::TaskResource {
                        resource: &task.resource,
                        output: None,
                    },
                );
                *prev = id;
                let request = TaskRequest {
                    resource: task.resource.clone(),
                    input: params.clone(),
                    state_name: state.name.clone(),
                    execution_arn: self.req.execution_arn.clone(),
                    attempt,
                    timeout: timeout.map(Duration::from_secs),
                    idempotency_key: idempotency_key(&self.req.execution_arn, &state.name, attempt),
                };
                let call = self.rt.tasks.invoke(request);
                let result = match timeout {
                    Some(t) => {
                        match future::select(call, self.rt.clock.sleep(Duration::from_secs(t)))
                            .await
                        {
                            Either::Left((r, _)) => r,
                            Either::Right(_) => Err(TaskError {
                                error: "States.Timeout".into(),
                                cause: None,
                            }),
                        }
                    }
                    None => call.await,
                };
                match result {
                    Ok(v) => {
                        *prev = self.log.emit(
                            "TaskSucceeded",
                            *prev,
                            || self.now(),
                            Details::TaskResource {
                                resource: &task.resource,
                                output: Some(&v),
                            },
                        );
                        break Ok(v);
                    }
                    Err(te) => {
                        let ty = if te.error == "States.Timeout" {
                            "TaskTimedOut"
                        } else {
                            "TaskFailed"
                        };
                        *prev = self.log.emit(
                            ty,
                            *prev,
                            || self.now(),
                            Details::Failure {
                                error: Some(te.error.as_str()),
                                cause: te.cause.as_deref(),
                                resource: Some(&task.resource),
                            },
                        );
                        let f = Failure::new(te.error, te.cause);
                        match self.decide(&task.work, &mut counters, &f) {
                            Decision::Retry(d) => {
                                attempt += 1;
                                if !d.is_zero() {
                                    self.rt.clock.sleep(d).await;
                                }
                                // a zero-delay retry of an instant failure must not spin
                                self.pace().await;
                            }
                            Decision::Catch(i) => break Err((f, Some(i))),
                            Decision::Fail => break Err((f, None)),
                        }
                    }
                }
            };
            outcome
        };
        self.finish_work(state, &task.work, input, out, outcome, entered_id)
    }

    fn dynamic_seconds(
        &self,
        d: &Option<Dynamic<u64>>,
        path_field: &str,
        field: &str,
        env: &Env<'_>,
    ) -> Result<Option<u64>, EvalError> {
        match d {
            None => Ok(None),
            Some(Dynamic::Fixed(n)) => Ok(Some(*n)),
            Some(Dynamic::Expr(e)) => {
                let name = if matches!(e, ValueExpr::Jsonata(_)) {
                    field
                } else {
                    path_field
                };
                let v = e.eval(name, env)?;
                match v.as_u64() {
                    Some(n) if n > 0 => Ok(Some(n)),
                    _ => Err(EvalError::runtime(format!("The {name} field refers to value \"{}\" which is not a valid positive integer: {}", value_text(&v), e.text()))),
                }
            }
        }
    }

    /// Applies ResultSelector, Assign, ResultPath, OutputPath (or Output) after Task/Parallel/Map
    /// work, or routes a failure to its catcher.
    fn finish_work(
        &self,
        state: &State,
        work: &Work,
        input: Value,
        out: &OutCtx<'_>,
        outcome: Result<Value, (Failure, Option<usize>)>,
        entered_id: u64,
    ) -> Result<Step, Failure> {
        let fail = |e: EvalError| state_failure(&state.name, entered_id, e);
        let jsonata = state.query_language == QueryLanguage::Jsonata;
        match outcome {
            Ok(result) => {
                let selected = match &work.result_selector {
                    Some(rs) if !jsonata => {
                        let renv = out.env(&result);
                        rs.eval(&renv).map_err(fail)?
                    }
                    _ => result,
                };
                if jsonata {
                    let mut oenv = out.env(&input);
                    oenv.result = Some(&selected);
                    let assign = self.eval_assign(state, &oenv).map_err(fail)?;
                    let output = match &state.output {
                        Some(t) => t.eval_in(&oenv, "Output").map_err(fail)?,
                        None => selected.clone(),
                    };
                    return Ok(Step {
                        next: next_of(work.transition),
                        output,
                        assign,
                    });
                }
                let renv = out.env(&selected);
                let assign = self.eval_assign(state, &renv).map_err(fail)?;
                let merged = apply_result_path(&work.result_path, input, selected).map_err(fail)?;
                let output = out.output_path(&state.output_path, merged).map_err(fail)?;
                Ok(Step {
                    next: next_of(work.transition),
                    output,
                    assign,
                })
            }
            Err((f, None)) => Err(f),
            Err((f, Some(i))) => {
                let catcher = &work.catch[i];
                let error_output = f.error_output();
                if jsonata {
                    let mut cenv = out.env(&input);
                    cenv.error_output = Some(&error_output);
                    let assign = match &catcher.assign {
                        Some(t) => eval_assign_template(t, &cenv).map_err(fail)?,
                        None => Vec::new(),
                    };
                    let output = match &catcher.output {
                        Some(t) => t.eval_in(&cenv, "Output").map_err(fail)?,
                        None => error_output.clone(),
                    };
                    return Ok(Step {
                        next: Some(catcher.next),
                        output,
                        assign,
                    });
                }
                let eenv = out.env(&error_output);
                let assign = match &catcher.assign {
                    Some(t) => eval_assign_template(t, &eenv).map_err(fail)?,
                    None => Vec::new(),
                };
                let output = apply_result_path(&catcher.result_path, input, error_output.clone())
                    .map_err(fail)?;
                Ok(Step {
                    next: Some(catcher.next),
                    output,
                    assign,
                })
            }
        }
    }

    async fn run_parallel(
        &self,
        state: &State,
        par: &Parallel,
        input: Value,
        out: &OutCtx<'_>,
        entered_id: u64,
        prev: &mut u64,
    ) -> Result<Step, Failure> {
        let fail = |e: EvalError| state_failure(&state.name, entered_id, e);
        let jsonata = state.query_language == QueryLanguage::Jsonata;
        let outcome = {
            let env_owned = out.env(&input);
            let env = &env_owned;
            let eff = effective_input(state, &input, env).map_err(fail)?;
            let eff_env = env.with_input(&eff);
            let branch_input = work_input(&par.work, jsonata, &eff, &eff_env).map_err(fail)?;
            let branch_cost = IN_FLIGHT_COST + estimate_bytes(&branch_input);
            let mut counters = vec![0u32; par.work.retry.len()];
            let outcome = loop {
                let started =
                    self.log
                        .emit("ParallelStateStarted", *prev, || self.now(), Details::Empty);
                *prev = started;
                let branches = par
                    .branches
                    .iter()
                    .map(|g| {
                        let branch_input = branch_input.clone();
                        async move {
                            let running = self.charge(branch_cost, &state.name)?;
                            let mut lane = started;
                            let v = self
                                .run_graph(g, branch_input, env.scope, &mut lane, None)
                                .await?;
                            drop(running);
                            // the output is held until every branch is done
                            let held = self.charge(estimate_bytes(&v), &state.name)?;
                            Ok::<_, Failure>((v, lane, held))
                        }
                    })
                    .collect::<Vec<_>>();
                match future::try_join_all(branches).await {
                    Ok(results) => {
                        if let Some(last) = results.iter().map(|(_, l, _)| *l).max() {
                            *prev = last;
                        }
                        *prev = self.log.emit(
                            "ParallelStateSucceeded",
                            *prev,
                            || self.now(),
                            Details::Empty,
                        );
                        break Ok(Value::Array(
                            results.into_iter().map(|(v, _, _held)| v).collect(),
                        ));
                    }
                    Err(f) => {
                        *prev = self.log.peek_next_id().saturating_sub(1);
                        if f.fatal {
                            return Err(f);
                        }
                        if let Some(outcome) = self
                            .after_failure(&par.work, &mut counters, f, "ParallelStateFailed", prev)
                            .await
                        {
                            break outcome;
                        }
                    }
                }
            };
            outcome
        };
        self.finish_work(state, &par.work, input, out, outcome, entered_id)
    }

    async fn run_map(
        &self,
        state: &State,
        map: &MapState,
        input: Value,
        out: &OutCtx<'_>,
        entered_id: u64,
        prev: &mut u64,
    ) -> Result<Step, Failure> {
        let fail = |e: EvalError| state_failure(&state.name, entered_id, e);
        let jsonata = state.query_language == QueryLanguage::Jsonata;
        let outcome = {
            let env_owned = out.env(&input);
            let env = &env_owned;
            let eff = effective_input(state, &input, env).map_err(fail)?;
            let eff_env = env.with_input(&eff);
            let items_value = if let Some(items) = &map.items {
                let v = items.eval_in(&eff_env, "Items").map_err(fail)?;
                if !v.is_array() {
                    let text = items_text(items);
                    return Err(fail(EvalError::query(format!(
                    "The JSONata expression '{text}' specified for the field 'Items' returned an unexpected result type. Expected 'array', but was '{}' for value: {}",
                    expressway_asl::jsonata::type_name(&v),
                    to_json(&v)
                ))));
                }
                v
            } else {
                match &map.items_path {
                    Some(p) => select_path(p, &eff, &eff_env).map_err(fail)?,
                    None => eff.clone().into_owned(),
                }
            };
            let Value::Array(items) = &items_value else {
                let detail = if jsonata {
                    EvalError::query(format!(
                        "Map state input must be an array but was: {}",
                        to_json(&items_value)
                    ))
                } else {
                    let path = map
                        .items_path
                        .as_ref()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_else(|| "$".into());
                    EvalError::runtime(format!("Reference path \"{path}\" must point to array."))
                };
                return Err(fail(detail));
            };
            let max_concurrency = match &map.max_concurrency {
                Dynamic::Fixed(n) => *n as usize,
                Dynamic::Expr(e) => {
                    let v = e.eval("MaxConcurrencyPath", &eff_env).map_err(fail)?;
                    let parsed = match &v {
                        Value::Number(n) => n.as_u64(),
                        Value::String(s) => s.trim().parse::<u64>().ok(),
                        _ => None,
                    };
                    match parsed {
                    Some(n) => n as usize,
                    None => {
                        return Err(fail(EvalError::runtime(format!(
                            "The MaxConcurrencyPath field refers to value \"{}\" which is not a valid integer: {}",
                            value_text(&v),
                            e.text()
                        ))))
                    }
                }
                }
            };
            // Iterations in flight hold at most a quarter of the memory budget (declared
            // concurrency is kept below that: 4,096 at the default 64 MiB).
            let in_flight_cap = (self.memory_limit() / (4 * IN_FLIGHT_COST)).max(1) as usize;
            let limit = if max_concurrency == 0 {
                items.len().max(1)
            } else {
                max_concurrency
            }
            .min(in_flight_cap);
            // The items and the results (one slot per item, then each result) are live until
            // the state is done.
            let slot = std::mem::size_of::<Option<Value>>() as u64;
            let _items_held = self.charge(
                estimate_bytes(&items_value) + slot * items.len() as u64,
                &state.name,
            )?;
            let mut counters = vec![0u32; map.work.retry.len()];
            let mut tolerance: Option<(Option<f64>, Option<f64>)> = None;
            let outcome = loop {
                let started = self.log.emit(
                    "MapStateStarted",
                    *prev,
                    || self.now(),
                    Details::Raw(length_details(items.len())),
                );
                *prev = started;
                // AWS evaluates the tolerated-failure fields after MapStateStarted.
                let (tolerated_count, tolerated_pct) = match tolerance {
                    Some(t) => t,
                    None => {
                        let count = self
                            .tolerance(
                                &map.tolerated_failure_count,
                                "ToleratedFailureCountPath",
                                true,
                                &eff_env,
                            )
                            .map_err(fail)?;
                        let pct = self
                            .tolerance(
                                &map.tolerated_failure_percentage,
                                "ToleratedFailurePercentagePath",
                                false,
                                &eff_env,
                            )
                            .map_err(fail)?;
                        *tolerance.insert((count, pct))
                    }
                };
                let tolerant = tolerated_count.is_some() || tolerated_pct.is_some();
                // Created lazily: only `limit` iteration futures exist at a time.
                // (indexes, not `(usize, &Value)` pairs: a closure over borrowed pairs is not
                // general enough for the boxed, `Send` interpreter future)
                let iterations = (0..items.len()).map(|index| {
                    let item = &items[index];
                    let eff_ref: &Value = &eff;
                    async move {
                        let mut lane = self.log.emit(
                            "MapIterationStarted",
                            started,
                            || self.now(),
                            Details::Raw(iteration_details(index, &state.name)),
                        );
                        let item_input = match &map.item_selector {
                            Some(sel) => {
                                let mut ienv = Env::new(
                                    self,
                                    eff_ref,
                                    env.scope,
                                    &state.name,
                                    env.entered_millis,
                                );
                                ienv.map_item = Some(MapItem { index, value: item });
                                sel.eval_in(&ienv, if jsonata { "ItemSelector" } else { "" })
                                    .map_err(|e| state_failure(&state.name, entered_id, e))?
                            }
                            None => item.clone(),
                        };
                        let running =
                            self.charge(IN_FLIGHT_COST + estimate_bytes(&item_input), &state.name)?;
                        let r = self
                            .run_graph(&map.processor, item_input, env.scope, &mut lane, None)
                            .await;
                        drop(running);
                        let ty = if r.is_ok() {
                            "MapIterationSucceeded"
                        } else {
                            "MapIterationFailed"
                        };
                        self.log.emit(
                            ty,
                            lane,
                            || self.now(),
                            Details::Raw(iteration_details(index, &state.name)),
                        );
                        Ok::<_, Failure>((index, r))
                    }
                });
                let mut stream = futures::stream::iter(iterations).buffer_unordered(limit);
                let mut results: Vec<Option<Value>> = vec![None; items.len()];
                // a retried attempt starts with no results
                let mut results_charge = self.charge(0, &state.name)?;
                let mut failures = 0usize;
                let mut first_failure: Option<Failure> = None;
                while let Some(r) = stream.next().await {
                    let (index, r) = r?;
                    match r {
                        Ok(v) => {
                            self.grow(&mut results_charge, estimate_bytes(&v), &state.name)?;
                            results[index] = Some(v);
                        }
                        Err(f) => {
                            if f.fatal {
                                return Err(f);
                            }
                            failures += 1;
                            let e = f.error_output();
                            self.grow(&mut results_charge, estimate_bytes(&e), &state.name)?;
                            results[index] = Some(e);
                            let exceeded = if tolerant {
                                let over_count = tolerated_count
                                    .is_some_and(|c| failures as f64 > c)
                                    || tolerated_count.is_none();
                                let over_pct = tolerated_pct.is_some_and(|p| {
                                    failures as f64 * 100.0 / items.len().max(1) as f64 > p
                                }) || tolerated_pct.is_none();
                                over_count && over_pct
                            } else {
                                true
                            };
                            if exceeded {
                                first_failure = Some(if tolerant {
                                    Failure::new("States.ExceedToleratedFailureThreshold", Some("The specified tolerated failure threshold was exceeded".into()))
                                } else {
                                    f
                                });
                                break;
                            }
                        }
                    }
                }
                drop(stream);
                *prev = self.log.peek_next_id().saturating_sub(1);
                match first_failure {
                    None => {
                        *prev = self.log.emit(
                            "MapStateSucceeded",
                            *prev,
                            || self.now(),
                            Details::Empty,
                        );
                        break Ok(Value::Array(
                            results
                                .into_iter()
                                .map(|v| v.unwrap_or(Value::Null))
                                .collect(),
                        ));
                    }
                    Some(f) => {
                        if let Some(outcome) = self
                            .after_failure(&map.work, &mut counters, f, "MapStateFailed", prev)
                            .await
                        {
                            break outcome;
                        }
                    }
                }
            };
            outcome
        };
        self.finish_work(state, &map.work, input, out, outcome, entered_id)
    }

    /// After a failed Parallel/Map attempt: waits and returns `None` to retry, or emits the state's
    /// `...StateFailed` event and returns the outcome (caught or not).
    async fn after_failure(
        &self,
        work: &Work,
        counters: &mut [u32],
        f: Failure,
        failed_event: &'static str,
        prev: &mut u64,
    ) -> Option<Result<Value, (Failure, Option<usize>)>> {
        let caught = match self.decide(work, counters, &f) {
            Decision::Retry(d) => {
                if !d.is_zero() {
                    self.rt.clock.sleep(d).await;
                }
                self.pace().await;
                return None;
            }
            Decision::Catch(i) => Some(i),
            Decision::Fail => None,
        };
        *prev = self
            .log
            .emit(failed_event, *prev, || self.now(), Details::Empty);
        Some(Err((f, caught)))
    }

    fn tolerance(
        &self,
        d: &Option<Dynamic<f64>>,
        field: &str,
        integer: bool,
        env: &Env<'_>,
    ) -> Result<Option<f64>, EvalError> {
        let n = match d {
            None => return Ok(None),
            Some(Dynamic::Fixed(n)) => *n,
            Some(Dynamic::Expr(e)) => {
                let v = e.eval(field, env)?;
                let parsed = match &v {
                    Value::Number(n) if integer => n.as_i64().map(|i| i as f64),
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) if integer => s.trim().parse::<i64>().ok().map(|i| i as f64),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                };
                let kind = if integer { "integer" } else { "float" };
                parsed.ok_or_else(|| {
                    EvalError::runtime(format!(
                        "The {field} field refers to value \"{}\" which is not a valid {kind}: {}",
                        value_text(&v),
                        e.text()
                    ))
                })?
            }
        };
        if integer && n < 0.0 {
            return Err(EvalError::runtime(
                "ToleratedFailureCount cannot be negative.",
            ));
        }
        if !integer && !(0.0..=100.0).contains(&n) {
            return Err(EvalError::runtime(
                "ToleratedFailurePercentage must be between 0 and 100.",
            ));
        }
        Ok(Some(n))
    }
}

fn items_text(t: &Template) -> String {
    match t {
        Template::Expr(e, _) => e.text().to_string(),
        Template::Const(v) => to_json(v),
        _ => String::from("Items"),
    }
}

fn length_details(len: usize) -> Value {
    let mut m = Map::new();
    m.insert("length".into(), Value::from(len));
    Value::Object(m)
}

fn iteration_details(index: usize, name: &str) -> Value {
    let mut m = Map::new();
    m.insert("index".into(), Value::from(index));
    m.insert("name".into(), Value::String(name.to_string()));
    Value::Object(m)
}

/// The text AWS shows for a value in causes: strings bare, everything else as JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => to_json(other),
    }
}

/// AWS's variable limits: 256 KiB per variable and per Assign, 10 MiB per execution.
const MAX_VARIABLE_BYTES: usize = 262_144;
const MAX_EXECUTION_VARIABLE_BYTES: u64 = 10 * 1024 * 1024;

fn eval_assign_template(t: &Template, env: &Env<'_>) -> Result<Vec<(String, Value)>, EvalError> {
    let assigned: Vec<(String, Value)> = match t.eval_in(env, "Assign")? {
        Value::Object(m) => m.into_iter().collect(),
        _ => return Ok(Vec::new()),
    };
    let (mut total, mut replaced) = (0usize, 0u64);
    for (k, v) in &assigned {
        let size = json_size(v);
        if size > MAX_VARIABLE_BYTES {
            return Err(EvalError::data_limit(format!(
                "The value assigned to the variable '{k}' is {size} bytes, more than the maximum of {MAX_VARIABLE_BYTES} bytes."
            )));
        }
        total += size;
        replaced += env.scope.get(k).map(|o| json_size(o) as u64).unwrap_or(0);
    }
    if total > MAX_VARIABLE_BYTES {
        return Err(EvalError::data_limit(format!(
            "The variables assigned by this state are {total} bytes in all, more than the maximum of {MAX_VARIABLE_BYTES} bytes."
        )));
    }
    let current = env.exec.variable_bytes.load(Ordering::Relaxed);
    if current + total as u64 - replaced.min(current) > MAX_EXECUTION_VARIABLE_BYTES {
        return Err(EvalError::data_limit(format!(
            "The variables of this execution would be more than the maximum of {MAX_EXECUTION_VARIABLE_BYTES} bytes in all."
        )));
    }
    Ok(assigned)
}

/// The `Idempotency-Key` for a task attempt: stable across redeliveries of the same start event.
pub fn idempotency_key(execution_arn: &str, state_name: &str, attempt: u32) -> String {
    // FNV-1a 128-bit over the three parts; printable and short.
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for part in [
        execution_arn.as_bytes(),
        &[0u8],
        state_name.as_bytes(),
        &[0u8],
        &attempt.to_be_bytes(),
    ] {
        for b in part {
            h ^= *b as u128;
            h = h.wrapping_mul(0x0000000001000000000000000000013B);
        }
    }
    format!("{h:032x}")
}

struct Step {
    next: Option<usize>,
    output: Value,
    assign: Vec<(String, Value)>,
}

fn next_of(t: Transition) -> Option<usize> {
    match t {
        Transition::Next(n) => Some(n),
        Transition::End => None,
    }
}

fn entered_event(kind: &Kind) -> &'static str {
    match kind {
        Kind::Pass(_) => "PassStateEntered",
        Kind::Task(_) => "TaskStateEntered",
        Kind::Choice(_) => "ChoiceStateEntered",
        Kind::Wait(_) => "WaitStateEntered",
        Kind::Succeed => "SucceedStateEntered",
        Kind::Fail(_) => "FailStateEntered",
        Kind::Parallel(_) => "ParallelStateEntered",
        Kind::Map(_) => "MapStateEntered",
    }
}

fn exited_event(kind: &Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Pass(_) => "PassStateExited",
        Kind::Task(_) => "TaskStateExited",
        Kind::Choice(_) => "ChoiceStateExited",
        Kind::Wait(_) => "WaitStateExited",
        Kind::Succeed => "SucceedStateExited",
        Kind::Fail(_) => return None,
        Kind::Parallel(_) => "ParallelStateExited",
        Kind::Map(_) => "MapStateExited",
    })
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
