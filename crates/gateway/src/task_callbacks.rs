//! SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat: a verified task token's outcome,
//! produced to the callback topic's partition the token names (the pod that runs the
//! execution reads it). The call answers `{}` once the brokers acknowledged the record.
//!
//! Errors as AWS answers them: `ValidationException` for lengths (`taskToken` 1-1,024
//! characters, `output` at most 262,144 bytes, `error` 256 and `cause` 32,768 characters),
//! `InvalidToken` for a token that does not verify (forged, altered, another key, not a task
//! token) or when this gateway has no task token key, `InvalidOutput` for an `output` that
//! is not JSON. `TaskDoesNotExist` / `TaskTimedOut` only when the gateway knows the execution
//! has ended (its console holds the execution's result: SUCCEEDED, FAILED or ABORTED /
//! TIMED_OUT); otherwise the callback is accepted, and a pod that finds nobody waiting for it
//! counts it (`expressway_callbacks_total{outcome="expired"}`) after the execution time limit.

use crate::api::Obj;
use crate::error::ApiError;
use crate::Gateway;
use expressway_wire::callback::{
    check_token_length, parse_output_text, CallbackError, MAX_CAUSE_CHARS, MAX_ERROR_CHARS,
    MAX_OUTPUT_BYTES,
};
use expressway_wire::{CallbackOutcome, CallbackRecord};
use serde_json::{json, Value};

fn text<'a>(b: &'a Obj, f: &str) -> Result<Option<&'a str>, ApiError> {
    match b.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::serialization(format!(
            "Expected a string for '{f}'"
        ))),
    }
}

fn too_long(field: &str, max: usize) -> ApiError {
    ApiError::validation(format!(
        "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must have length less than or equal to {max}"
    ))
}

/// SendTaskSuccess: `{"taskToken", "output"}`.
pub(crate) async fn send_task_success(gw: &Gateway, b: &Obj) -> Result<Value, ApiError> {
    let token = text(b, "taskToken")?.ok_or_else(|| ApiError::missing("taskToken"))?;
    let output = text(b, "output")?.ok_or_else(|| ApiError::missing("output"))?;
    if output.len() > MAX_OUTPUT_BYTES {
        return Err(too_long("output", MAX_OUTPUT_BYTES));
    }
    let value = parse_output_text(output).map_err(|e| match e {
        CallbackError::OutputTooLarge { .. } => too_long("output", MAX_OUTPUT_BYTES),
        CallbackError::InvalidOutput(detail) | CallbackError::NumberOutOfRange(detail) => {
            ApiError::new("InvalidOutput", format!("Invalid Output: '{detail}'"))
        }
        other => ApiError::new("InvalidOutput", format!("Invalid Output: '{other}'")),
    })?;
    send(gw, token, CallbackOutcome::Success(value)).await
}

/// SendTaskFailure: `{"taskToken", "error"?, "cause"?}`.
pub(crate) async fn send_task_failure(gw: &Gateway, b: &Obj) -> Result<Value, ApiError> {
    let token = text(b, "taskToken")?.ok_or_else(|| ApiError::missing("taskToken"))?;
    let error = text(b, "error")?;
    let cause = text(b, "cause")?;
    if error.is_some_and(|e| e.chars().count() > MAX_ERROR_CHARS) {
        return Err(too_long("error", MAX_ERROR_CHARS));
    }
    if cause.is_some_and(|c| c.chars().count() > MAX_CAUSE_CHARS) {
        return Err(too_long("cause", MAX_CAUSE_CHARS));
    }
    send(
        gw,
        token,
        CallbackOutcome::Failure {
            error: error.map(str::to_string),
            cause: cause.map(str::to_string),
        },
    )
    .await
}

/// SendTaskHeartbeat: `{"taskToken"}`.
pub(crate) async fn send_task_heartbeat(gw: &Gateway, b: &Obj) -> Result<Value, ApiError> {
    let token = text(b, "taskToken")?.ok_or_else(|| ApiError::missing("taskToken"))?;
    send(gw, token, CallbackOutcome::Heartbeat).await
}

async fn send(gw: &Gateway, token: &str, outcome: CallbackOutcome) -> Result<Value, ApiError> {
    if check_token_length(token).is_err() {
        return Err(if token.is_empty() {
            ApiError::validation(
                "1 validation error detected: Value at 'taskToken' failed to satisfy constraint: Member must have length greater than or equal to 1",
            )
        } else {
            too_long("taskToken", expressway_wire::task_token::MAX_TOKEN_CHARS)
        });
    }
    let Some(key) = gw.task_token_key() else {
        return Err(ApiError::new(
            "InvalidToken",
            "Invalid Token: this gateway cannot verify task tokens: it has no task token key (--task-token-key-file or EXPRESSWAY_TASK_TOKEN_KEY, the key the executor pods use)",
        ));
    };
    let fields = key.verify(token).map_err(|e| {
        tracing::info!(code = e.code(), "task token refused");
        ApiError::new("InvalidToken", format!("Invalid Token: '{e}'"))
    })?;
    match gw.execution_status(&fields.execution_arn).as_deref() {
        Some("SUCCEEDED" | "FAILED" | "ABORTED") => {
            return Err(ApiError::new(
                "TaskDoesNotExist",
                "Task Does Not Exist: the execution has ended",
            ))
        }
        Some("TIMED_OUT") => {
            return Err(ApiError::new(
                "TaskTimedOut",
                "Task Timed Out: the execution timed out",
            ))
        }
        _ => {}
    }
    let kind = outcome.kind();
    let record = CallbackRecord {
        task_token: token.to_string(),
        outcome,
    };
    let at = gw
        .backend()
        .publish_callback(fields.partition, record.to_json())
        .await
        .map_err(|e| ApiError::unavailable(format!("the callback was not written: {e}")))?;
    tracing::debug!(
        execution_arn = %fields.execution_arn,
        state = %fields.state_name,
        kind,
        partition = at.partition,
        offset = at.offset,
        "callback published"
    );
    Ok(json!({}))
}
