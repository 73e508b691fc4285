//! TestState: runs one state in isolation.
//!
//! The state is wrapped in a one-state machine whose every transition target (`Next`, Choice
//! `Choices[].Next` / `Default`, `Catch[].Next`) is replaced by a terminal Pass state standing for
//! it, so the engine runs exactly the tested state and the Pass state it ends in tells the next
//! state (and whether a catcher took the error). `Retry` is removed: an error a retrier would
//! retry is reported as `RETRIABLE`, as AWS does. A `mock` replaces the Task's resource with
//! its result or error; `variables` are assigned by a Pass state that runs first; Wait states
//! do not wait.

use crate::api::Obj;
use crate::error::ApiError;
use expressway_asl::validate::MachineType;
use expressway_engine::{
    execute, ExecutionRequest, Limits, LogConfig, LogLevel, Runtime, TaskDispatcher, TaskError,
    TaskRequest,
};
use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use std::sync::Arc;

const NEXT: &str = "__expressway_next_";
const CATCH: &str = "__expressway_catch_";
const SEED: &str = "__expressway_variables";

struct Mock(Result<Value, TaskError>);

impl TaskDispatcher for Mock {
    fn invoke(&self, _request: TaskRequest) -> BoxFuture<'static, Result<Value, TaskError>> {
        let r = self.0.clone();
        Box::pin(async move { r })
    }
}

fn str_field<'a>(b: &'a Obj, f: &str) -> Result<Option<&'a str>, ApiError> {
    match b.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::serialization(format!(
            "Expected a string for '{f}'"
        ))),
    }
}

fn invalid_definition(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidDefinition", message)
}

/// Whether a retrier's ErrorEquals matches `error` (AWS's rules for `States.ALL` and
/// `States.TaskFailed`).
fn matches(names: &[Value], error: &str) -> bool {
    names.iter().filter_map(Value::as_str).any(|n| {
        n == error
            || (n == "States.ALL"
                && error != "States.Runtime"
                && error != "States.DataLimitExceeded")
            || (n == "States.TaskFailed"
                && !matches!(
                    error,
                    "States.Timeout" | "States.Runtime" | "States.DataLimitExceeded"
                ))
    })
}

/// Runs TestState.
pub(crate) async fn test_state(b: &Obj, engine: &Runtime) -> Result<Value, ApiError> {
    let text = str_field(b, "definition")?.ok_or_else(|| ApiError::missing("definition"))?;
    if text.len() > crate::api::MAX_DEFINITION_BYTES {
        return Err(ApiError::validation(
            "definition is larger than 1048576 bytes",
        ));
    }
    let parsed: Value = serde_json::from_str(text)
        .map_err(|e| invalid_definition(format!("Invalid State Machine Definition: '{e}'")))?;
    let level = match str_field(b, "inspectionLevel")? {
        None | Some("INFO") => 0,
        Some("DEBUG") => 1,
        Some("TRACE") => 2,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{other}' at 'inspectionLevel' failed to satisfy constraint: Member must satisfy enum value set: [INFO, DEBUG, TRACE]"
            )))
        }
    };
    let (state_name, mut state, query_language) = match str_field(b, "stateName")? {
        Some(name) => {
            let st = parsed
                .get("States")
                .and_then(|s| s.get(name))
                .cloned()
                .ok_or_else(|| {
                    ApiError::validation(format!("State '{name}' is not in the definition"))
                })?;
            (name.to_string(), st, parsed.get("QueryLanguage").cloned())
        }
        None => ("TestState".to_string(), parsed, None),
    };
    let Some(st) = state.as_object_mut() else {
        return Err(invalid_definition(
            "Invalid State Machine Definition: the state definition must be a JSON object",
        ));
    };
    let kind = st
        .get("Type")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            invalid_definition("Invalid State Machine Definition: 'Type' is required")
        })?;

    // Rewrite transitions to terminal Pass states.
    let mut targets: Vec<(String, String)> = Vec::new(); // synthetic -> original
    let synth = |original: &Value, prefix: &str, targets: &mut Vec<(String, String)>| {
        let name = format!("{prefix}{}", targets.len());
        targets.push((
            name.clone(),
            original.as_str().unwrap_or_default().to_string(),
        ));
        Value::String(name)
    };
    if let Some(n) = st.get("Next").cloned() {
        st.insert("Next".into(), synth(&n, NEXT, &mut targets));
    }
    if let Some(d) = st.get("Default").cloned() {
        st.insert("Default".into(), synth(&d, NEXT, &mut targets));
    }
    if let Some(Value::Array(choices)) = st.get_mut("Choices") {
        for c in choices.iter_mut() {
            if let Some(n) = c.get("Next").cloned() {
                c["Next"] = synth(&n, NEXT, &mut targets);
            }
        }
    }
    if let Some(Value::Array(catchers)) = st.get_mut("Catch") {
        for c in catchers.iter_mut() {
            if let Some(n) = c.get("Next").cloned() {
                c["Next"] = synth(&n, CATCH, &mut targets);
            }
        }
    }
    let retriers = st.remove("Retry");
    if kind == "Wait" {
        for f in ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"] {
            st.remove(f);
        }
        st.insert("Seconds".into(), json!(0));
    }
    let mut states = Map::new();
    let variables = match str_field(b, "variables")? {
        None => None,
        Some(v) => Some(serde_json::from_str::<Value>(v).map_err(|e| {
            ApiError::validation(format!("'variables' must be a JSON object: {e}"))
        })?),
    };
    let start = match &variables {
        Some(Value::Object(vars)) if !vars.is_empty() => {
            states.insert(
                SEED.into(),
                json!({"Type": "Pass", "Assign": vars, "Next": state_name}),
            );
            SEED.to_string()
        }
        Some(Value::Object(_)) | None => state_name.clone(),
        Some(_) => return Err(ApiError::validation("'variables' must be a JSON object")),
    };
    states.insert(state_name.clone(), state.clone());
    for (name, _) in &targets {
        states.insert(name.clone(), json!({"Type": "Pass", "End": true}));
    }
    let mut machine = json!({"StartAt": start, "States": states});
    if let Some(ql) = query_language {
        machine["QueryLanguage"] = ql;
    }
    let machine_text = machine.to_string();
    let loaded =
        expressway_asl::load_validated(&machine_text, MachineType::Express).map_err(|v| {
            invalid_definition(
                v.create_state_machine_message()
                    .unwrap_or_else(|| "Invalid State Machine Definition".into()),
            )
        })?;

    let input_text = str_field(b, "input")?.unwrap_or("{}");
    let input = crate::api::parse_execution_input(input_text)?;
    let runtime = match b.get("mock").and_then(Value::as_object) {
        None => engine.clone(),
        Some(m) => {
            let r = if let Some(result) = m.get("result").and_then(Value::as_str) {
                Ok(serde_json::from_str::<Value>(result).map_err(|e| {
                    ApiError::validation(format!("mock.result must be JSON text: {e}"))
                })?)
            } else if let Some(e) = m.get("errorOutput").and_then(Value::as_object) {
                Err(TaskError {
                    error: e
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("States.TaskFailed")
                        .to_string(),
                    cause: e.get("cause").and_then(Value::as_str).map(str::to_string),
                })
            } else {
                return Err(ApiError::validation(
                    "mock requires either 'result' or 'errorOutput'",
                ));
            };
            Runtime {
                map_children: None,
                clock: engine.clock.clone(),
                entropy: engine.entropy.clone(),
                tasks: Arc::new(Mock(r)),
                callbacks: None,
            }
        }
    };
    let uuid = uuid::Uuid::new_v4();
    let req = ExecutionRequest {
        execution_arn: format!(
            "arn:aws:states:{}:{}:express:TestState:{uuid}:{uuid}",
            expressway_engine::DEFAULT_REGION,
            expressway_engine::DEFAULT_ACCOUNT
        ),
        execution_name: uuid.to_string(),
        state_machine_arn: format!(
            "arn:aws:states:{}:{}:stateMachine:TestState",
            expressway_engine::DEFAULT_REGION,
            expressway_engine::DEFAULT_ACCOUNT
        ),
        state_machine_name: "TestState".into(),
        role_arn: str_field(b, "roleArn")?
            .unwrap_or("arn:aws:iam::123456789012:role/expressway")
            .to_string(),
        input,
        log: LogConfig {
            level: LogLevel::All,
            include_execution_data: true,
        },
        limits: Limits::default(),
        synchronous: true,
    };
    let outcome = execute(&loaded, &req, &runtime).await;

    // Which synthetic Pass state did the run end in?
    let ended_in = outcome
        .events
        .iter()
        .rev()
        .filter(|e| e.event_type == "PassStateEntered")
        .filter_map(|e| e.details.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with(NEXT) || n.starts_with(CATCH))
        .map(str::to_string);
    let original = |synthetic: &str| {
        targets
            .iter()
            .find(|(s, _)| s == synthetic)
            .map(|(_, o)| o.clone())
    };
    let first_error = outcome.events.iter().find_map(|e| {
        let error = e.details.get("error").and_then(Value::as_str)?;
        Some((
            error.to_string(),
            e.details
                .get("cause")
                .and_then(Value::as_str)
                .map(str::to_string),
        ))
    });
    let mut out = Map::new();
    let retry_count = b
        .get("stateConfiguration")
        .and_then(|c| c.get("retrierRetryCount"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    // The error the state raised (caught or not), and a retrier that would retry it.
    let raised = match (&outcome.status, &ended_in) {
        (expressway_engine::Status::Succeeded, Some(s)) if s.starts_with(CATCH) => {
            first_error.clone()
        }
        (expressway_engine::Status::Succeeded, _) => None,
        _ => Some((
            outcome.error.clone().unwrap_or_default(),
            outcome.cause.clone(),
        )),
    };
    let retrier = raised.as_ref().and_then(|(error, _)| {
        retriers
            .as_ref()
            .and_then(Value::as_array)?
            .iter()
            .enumerate()
            .find(|(_, r)| {
                r.get("ErrorEquals")
                    .and_then(Value::as_array)
                    .is_some_and(|names| matches(names, error))
            })
            .filter(|(_, r)| {
                r.get("MaxAttempts").and_then(Value::as_u64).unwrap_or(3) > retry_count
            })
    });
    let status = if let Some((i, r)) = retrier {
        if level >= 1 {
            let interval = r
                .get("IntervalSeconds")
                .and_then(Value::as_f64)
                .unwrap_or(1.0);
            let rate = r.get("BackoffRate").and_then(Value::as_f64).unwrap_or(2.0);
            let mut backoff = interval * rate.powi(retry_count as i32);
            if let Some(max) = r.get("MaxDelaySeconds").and_then(Value::as_f64) {
                backoff = backoff.min(max);
            }
            out.insert(
                "errorDetails".into(),
                json!({"retryIndex": i, "retryBackoffIntervalSeconds": backoff as u64}),
            );
        }
        "RETRIABLE"
    } else {
        match (&outcome.status, &ended_in) {
            (expressway_engine::Status::Succeeded, Some(s)) if s.starts_with(CATCH) => {
                out.insert("nextState".into(), json!(original(s)));
                "CAUGHT_ERROR"
            }
            (expressway_engine::Status::Succeeded, next) => {
                if let Some(s) = next {
                    out.insert("nextState".into(), json!(original(s)));
                }
                "SUCCEEDED"
            }
            _ => "FAILED",
        }
    };
    if let Some((e, c)) = &raised {
        out.insert("error".into(), json!(e));
        if let Some(c) = c {
            out.insert("cause".into(), json!(c));
        }
    }
    if status == "SUCCEEDED" || status == "CAUGHT_ERROR" {
        if let Some(o) = &outcome.output {
            out.insert("output".into(), json!(o.to_string()));
        }
    }
    out.insert("status".into(), json!(status));
    if level >= 1 {
        out.insert(
            "inspectionData".into(),
            inspection(&outcome.events, &state_name, input_text, level),
        );
    }
    Ok(Value::Object(out))
}

/// `inspectionData` from the tested state's events: `input`, `afterParameters` (the task's
/// effective parameters), `result` (the task's result), `afterResultPath` (the state's output),
/// and at TRACE the raw events of the state.
fn inspection(
    events: &[expressway_engine::Event],
    state_name: &str,
    input_text: &str,
    level: u8,
) -> Value {
    let mut d = Map::new();
    d.insert("input".into(), json!(input_text));
    let mut inside = false;
    let mut raw = Vec::new();
    for e in events {
        let name = e.details.get("name").and_then(Value::as_str);
        if e.event_type.ends_with("StateEntered") {
            inside = name == Some(state_name);
        }
        if !inside {
            continue;
        }
        raw.push(json!({"type": e.event_type, "details": e.details}));
        match e.event_type {
            "TaskScheduled" => {
                if let Some(p) = e.details.get("parameters") {
                    d.insert("afterParameters".into(), p.clone());
                }
            }
            "TaskSucceeded" => {
                if let Some(o) = e.details.get("output") {
                    d.insert("result".into(), o.clone());
                }
            }
            t if t.ends_with("StateExited") => {
                if let Some(o) = e.details.get("output") {
                    d.insert("afterResultPath".into(), o.clone());
                }
                inside = false;
            }
            _ => {}
        }
    }
    if level >= 2 {
        d.insert("events".into(), Value::Array(raw));
    }
    Value::Object(d)
}
