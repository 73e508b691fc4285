//! `expressway run`: one execution, locally, no broker.

use expressway_asl::StateMachine;
use expressway_engine::runtime::format_uuid;
use expressway_engine::{
    execute, ExecutionRequest, Limits, LogConfig, Outcome, Runtime, DEFAULT_ACCOUNT, DEFAULT_REGION,
};
use serde_json::Value;

/// Identity of a local execution.
#[derive(Debug, Clone)]
pub struct Identity {
    /// State machine name.
    pub machine: String,
    /// Execution name.
    pub name: String,
    /// 128 bits that make the execution ARN unique.
    pub uuid: [u8; 16],
}

/// The role ARN reported for local executions.
pub fn default_role_arn() -> String {
    format!("arn:aws:iam::{DEFAULT_ACCOUNT}:role/expressway-local")
}

/// Builds the request for one execution of `machine`.
pub fn request(identity: &Identity, input: Value, log: LogConfig) -> ExecutionRequest {
    let uuid = format_uuid(&identity.uuid);
    ExecutionRequest {
        execution_arn: format!(
            "arn:aws:states:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:express:{}:{}:{uuid}",
            identity.machine, identity.name
        ),
        execution_name: identity.name.clone(),
        state_machine_arn: format!(
            "arn:aws:states:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:stateMachine:{}",
            identity.machine
        ),
        state_machine_name: identity.machine.clone(),
        role_arn: default_role_arn(),
        input,
        log,
        limits: Limits::default(),
        synchronous: false,
    }
}

/// Runs one execution of an already loaded machine.
pub async fn run_definition(
    machine: &StateMachine,
    identity: &Identity,
    input: Value,
    log: LogConfig,
    runtime: &Runtime,
) -> (ExecutionRequest, Outcome) {
    let req = request(identity, input, log);
    let outcome = execute(machine, &req, runtime).await;
    (req, outcome)
}

/// The machine name for a definition file: `orders.asl.json` -> `orders`.
pub fn machine_name_from_path(path: &std::path::Path) -> String {
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or("StateMachine");
    let stem = file
        .strip_suffix(".asl.json")
        .or_else(|| file.strip_suffix(".json"))
        .unwrap_or(file);
    let cleaned: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "StateMachine".into()
    } else {
        cleaned
    }
}
