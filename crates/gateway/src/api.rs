//! The operations: request JSON in, response JSON (or an [`ApiError`]) out.

use crate::backend::Backend;
use crate::definitions_writer::{ExclusiveError, Lease};
use crate::error::ApiError;
use expressway_asl::validate::{self, MachineType, Severity};
use expressway_engine::{execute, ExecutionRequest, Limits, Runtime, Status};
use expressway_executor::registry::{parse_version, LookupError, MachineEntry, Source};
use expressway_executor::telemetry::names;
use expressway_executor::Registry;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A JSON request body.
pub type Obj = Map<String, Value>;

/// Largest definition (AWS: 1 MiB).
pub const MAX_DEFINITION_BYTES: usize = 1_048_576;
/// Largest execution input (AWS Express: 256 KiB).
pub const MAX_INPUT_BYTES: usize = expressway_wire::MAX_INPUT_BYTES;

/// The definitions record of version `n` of a machine whose record is `machine_record`.
fn version_record(machine_record: &Value, description: Option<&str>, now: f64) -> Value {
    let mut v = json!({
        "definition": machine_record.get("definition").cloned().unwrap_or(Value::Null),
        "loggingConfiguration": machine_record.get("loggingConfiguration").cloned().unwrap_or(Value::Null),
        "type": "EXPRESS",
        "roleArn": machine_record.get("roleArn").cloned().unwrap_or(Value::Null),
        "creationDate": now,
        "revisionId": machine_record.get("revisionId").cloned().unwrap_or(Value::Null),
        "tracingConfiguration": machine_record.get("tracingConfiguration").cloned().unwrap_or(Value::Null),
    });
    if let Some(d) = description {
        v["description"] = json!(d);
    }
    v
}

/// Definitions records an operation writes in one exclusive transaction, and its answer
/// (see [`Gateway::exclusive`]).
struct Plan {
    records: Vec<(String, Option<Value>)>,
    response: Value,
}

impl Plan {
    /// Nothing to write (an idempotent repeat): just the answer.
    fn answer(response: Value) -> Plan {
        Plan {
            records: Vec::new(),
            response,
        }
    }
}

/// How often an exclusive operation takes the writer lease again after another replica wrote
/// first, before it gives up with ServiceUnavailable.
const EXCLUSIVE_ATTEMPTS: usize = 8;

/// How long a replica that just took the writer lease waits for its definitions follower.
const CATCH_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Parses an execution's `input` as the executor parses a start event's: a number without an
/// exact value (an integer beyond 64 bits, which serde_json would round to a double, or a float
/// beyond the double range) is refused by name rather than changed, so StartExecution refuses
/// what its start event would dead-letter, and StartSyncExecution never runs on a rounded number.
pub(crate) fn parse_execution_input(text: &str) -> Result<Value, ApiError> {
    let invalid = |detail: String| {
        ApiError::new(
            "InvalidExecutionInput",
            format!("Invalid State Machine Execution Input: '{detail}'"),
        )
    };
    if let Some(n) = expressway_wire::numbers::find_out_of_range_number(text) {
        return Err(invalid(n.to_string()));
    }
    serde_json::from_str(text).map_err(|e| invalid(e.to_string()))
}
const MAX_TAGS: usize = 50;
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// Every operation of AWS's Step Functions API and how Expressway answers it.
pub const OPERATIONS: &[(&str, Support)] = &[
    ("CreateStateMachine", Support::Implemented),
    ("DescribeStateMachine", Support::Implemented),
    ("UpdateStateMachine", Support::Implemented),
    ("DeleteStateMachine", Support::Implemented),
    ("ListStateMachines", Support::Implemented),
    ("ValidateStateMachineDefinition", Support::Implemented),
    ("PublishStateMachineVersion", Support::Implemented),
    ("ListStateMachineVersions", Support::Implemented),
    ("DeleteStateMachineVersion", Support::Implemented),
    ("CreateStateMachineAlias", Support::Implemented),
    ("DescribeStateMachineAlias", Support::Implemented),
    ("UpdateStateMachineAlias", Support::Implemented),
    ("DeleteStateMachineAlias", Support::Implemented),
    ("ListStateMachineAliases", Support::Implemented),
    ("TagResource", Support::Implemented),
    ("UntagResource", Support::Implemented),
    ("ListTagsForResource", Support::Implemented),
    ("StartExecution", Support::Implemented),
    ("StartSyncExecution", Support::Implemented),
    ("TestState", Support::Implemented),
    ("DescribeExecution", Support::RefusedForExpress),
    ("GetExecutionHistory", Support::RefusedForExpress),
    ("StopExecution", Support::RefusedForExpress),
    ("RedriveExecution", Support::RefusedForExpress),
    (
        "DescribeStateMachineForExecution",
        Support::RefusedForExpress,
    ),
    ("ListExecutions", Support::RefusedForExpress),
    ("CreateActivity", Support::NotProvided),
    ("DeleteActivity", Support::NotProvided),
    ("DescribeActivity", Support::NotProvided),
    ("ListActivities", Support::NotProvided),
    ("GetActivityTask", Support::NotProvided),
    ("SendTaskSuccess", Support::Implemented),
    ("SendTaskFailure", Support::Implemented),
    ("SendTaskHeartbeat", Support::Implemented),
    ("DescribeMapRun", Support::NotProvided),
    ("ListMapRuns", Support::NotProvided),
    ("UpdateMapRun", Support::NotProvided),
];

/// How an operation is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Implemented.
    Implemented,
    /// AWS refuses it for Express workflows; so does Expressway, with AWS's error.
    RefusedForExpress,
    /// Activities and map runs do not exist for Express workflows:
    /// `UnknownOperationException` with an explanation.
    NotProvided,
}

/// The API over a registry (the gateway's view of the definitions topic) and a backend.
pub struct Gateway {
    registry: Arc<Registry>,
    backend: Arc<dyn Backend>,
    engine: Runtime,
    started: f64,
    /// Serialises read-modify-write operations of this replica (version numbers, tags).
    writes: tokio::sync::Mutex<()>,
    /// Verifies task tokens (SendTask*); `None`: they are refused.
    task_tokens: Option<expressway_wire::TaskTokenKey>,
    /// The final status of an execution, when known (the console's store).
    statuses: std::sync::OnceLock<ExecutionStatuses>,
}

/// Looks up an execution's status by ARN (`SUCCEEDED`, `FAILED`, `TIMED_OUT`, `RUNNING`, ...).
pub type ExecutionStatuses = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("machines", &self.registry.len())
            .finish()
    }
}

pub(crate) fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0)
}

// ---- request field access ------------------------------------------------------------------

fn opt_str<'a>(b: &'a Obj, f: &str) -> Result<Option<&'a str>, ApiError> {
    match b.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::serialization(format!(
            "Expected a string for '{f}'"
        ))),
    }
}

fn req_str<'a>(b: &'a Obj, f: &str) -> Result<&'a str, ApiError> {
    opt_str(b, f)?.ok_or_else(|| ApiError::missing(f))
}

fn opt_bool(b: &Obj, f: &str) -> Result<Option<bool>, ApiError> {
    match b.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(v)) => Ok(Some(*v)),
        Some(_) => Err(ApiError::serialization(format!(
            "Expected a boolean for '{f}'"
        ))),
    }
}

fn opt_u64(b: &Obj, f: &str) -> Result<Option<u64>, ApiError> {
    match b.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::serialization(format!("Expected an integer for '{f}'"))),
    }
}

fn opt_obj<'a>(b: &'a Obj, f: &str) -> Result<Option<&'a Obj>, ApiError> {
    match b.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(ApiError::serialization(format!(
            "Expected an object for '{f}'"
        ))),
    }
}

fn opt_array<'a>(b: &'a Obj, f: &str) -> Result<Option<&'a Vec<Value>>, ApiError> {
    match b.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(ApiError::serialization(format!(
            "Expected a list for '{f}'"
        ))),
    }
}

fn page_size(b: &Obj) -> Result<usize, ApiError> {
    match opt_u64(b, "maxResults")? {
        None | Some(0) => Ok(DEFAULT_PAGE),
        Some(n) if n as usize <= MAX_PAGE => Ok(n as usize),
        Some(n) => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 1000"
        ))),
    }
}

/// Pagination over a sorted list: the token is the index of the next item (hex).
fn paginate<T: Clone>(items: &[T], b: &Obj) -> Result<(Vec<T>, Option<String>), ApiError> {
    let size = page_size(b)?;
    let start = match opt_str(b, "nextToken")? {
        None => 0,
        Some(t) => t
            .strip_prefix("ew")
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .filter(|i| *i <= items.len())
            .ok_or_else(|| ApiError::new("InvalidToken", format!("Invalid Token: '{t}'")))?,
    };
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| format!("ew{end:x}"));
    Ok((items[start..end].to_vec(), next))
}

// ---- ARNs ----------------------------------------------------------------------------------

/// A parsed state machine ARN.
struct MachineArn {
    name: String,
    qualifier: Option<String>,
    scope: Option<expressway_wire::ArnScope>,
}

fn parse_machine_arn(arn: &str) -> Result<MachineArn, ApiError> {
    if !arn.starts_with("arn:") {
        return Err(ApiError::invalid_arn(arn));
    }
    let r = expressway_wire::parse_state_machine_ref(arn).ok_or_else(|| {
        if arn.contains(":express:") || arn.contains(":execution:") {
            ApiError::new(
                "InvalidArn",
                format!(
                    "Invalid Arn: 'Resource type not valid in this context: {}'",
                    if arn.contains(":express:") {
                        "express"
                    } else {
                        "execution"
                    }
                ),
            )
        } else {
            ApiError::invalid_arn(arn)
        }
    })?;
    Ok(MachineArn {
        name: r.name,
        qualifier: r.qualifier,
        scope: r.scope,
    })
}

fn validate_logging(l: Option<&Obj>) -> Result<Value, ApiError> {
    let Some(l) = l else {
        return Ok(json!({"level": "OFF", "includeExecutionData": false}));
    };
    let level = opt_str(l, "level")?.unwrap_or("OFF");
    if !matches!(level, "ALL" | "ERROR" | "FATAL" | "OFF") {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{level}' at 'loggingConfiguration.level' failed to satisfy constraint: Member must satisfy enum value set: [ALL, ERROR, FATAL, OFF]"
        )));
    }
    let include = opt_bool(l, "includeExecutionData")?.unwrap_or(false);
    let mut out = json!({"level": level, "includeExecutionData": include});
    if let Some(d) = l.get("destinations") {
        out["destinations"] = d.clone();
    }
    Ok(out)
}

fn tags_from(list: &[Value]) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::with_capacity(list.len());
    for t in list {
        let o = t
            .as_object()
            .ok_or_else(|| ApiError::serialization("Expected tag objects {key, value}"))?;
        let key = req_str(o, "key")?;
        let value = opt_str(o, "value")?.unwrap_or_default();
        if key.is_empty() || key.chars().count() > 128 || value.chars().count() > 256 {
            return Err(ApiError::validation(format!(
                "Invalid tag: key must be 1-128 characters and value at most 256: '{key}'"
            )));
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

fn tags_json(tags: Option<&Value>) -> Vec<Value> {
    tags.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect()
        })
        .unwrap_or_default()
}

fn definition_text(b: &Obj) -> Result<&str, ApiError> {
    let d = req_str(b, "definition")?;
    if d.len() > MAX_DEFINITION_BYTES {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at 'definition' failed to satisfy constraint: Member must have length less than or equal to {MAX_DEFINITION_BYTES}"
        )));
    }
    Ok(d)
}

fn check_definition(text: &str) -> Result<(), ApiError> {
    expressway_asl::load_validated(text, MachineType::Express)
        .map(|_| ())
        .map_err(|v| {
            ApiError::new(
                "InvalidDefinition",
                v.create_state_machine_message()
                    .unwrap_or_else(|| "Invalid State Machine Definition".into()),
            )
        })
}

fn check_type(b: &Obj) -> Result<(), ApiError> {
    match opt_str(b, "type")? {
        None => Err(ApiError::new(
            "StateMachineTypeNotSupported",
            "Expressway runs EXPRESS state machines only; pass type EXPRESS (AWS's default is STANDARD)",
        )),
        Some("EXPRESS") => Ok(()),
        Some("STANDARD") => Err(ApiError::new(
            "StateMachineTypeNotSupported",
            "Expressway runs EXPRESS state machines only; STANDARD is not supported",
        )),
        Some(other) => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{other}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [STANDARD, EXPRESS]"
        ))),
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if expressway_wire::arn::valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::new(
            "InvalidName",
            format!("Invalid Name: '{name}'"),
        ))
    }
}

/// Tag key that marks a file machine in ListTagsForResource (`expressway:source`).
pub const FILE_TAG_SOURCE: &str = "expressway:source";
/// Its value for machines of the definitions directory.
pub const FILE_SOURCE: &str = "definitions-directory";
/// Tag key naming a file machine's file (`expressway:file`).
pub const FILE_TAG_FILE: &str = "expressway:file";

/// DescribeStateMachine's `description` of a file machine.
fn file_description(file: &str) -> String {
    format!(
        "Defined by the file {file} of the definitions directory; read-only through the API (no updates, tags, versions or aliases)"
    )
}

/// A file machine's `revisionId`: a digest of its definition and logging configuration, so
/// every replica reports the same revision for the same file, and a new one when it changes.
fn file_revision(definition: &str, logging: &Value) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(definition.as_bytes());
    h.update([0]);
    h.update(logging.to_string().as_bytes());
    let d = h.finalize();
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn record_f64(record: &Value, f: &str, default: f64) -> f64 {
    record.get(f).and_then(Value::as_f64).unwrap_or(default)
}

impl Gateway {
    /// The API over `registry` (which the caller keeps following the definitions topic),
    /// writing through `backend`, running synchronous executions on `engine`.
    pub fn new(registry: Arc<Registry>, backend: Arc<dyn Backend>, engine: Runtime) -> Gateway {
        Gateway {
            registry,
            backend,
            engine,
            started: now_secs(),
            writes: tokio::sync::Mutex::new(()),
            task_tokens: None,
            statuses: std::sync::OnceLock::new(),
        }
    }

    /// Verifies task tokens of SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat with
    /// `key` (the pods' key); without one they are refused (`InvalidToken`).
    pub fn with_task_tokens(mut self, key: Option<expressway_wire::TaskTokenKey>) -> Gateway {
        self.task_tokens = key;
        self
    }

    /// The task token key, if any.
    pub fn task_token_key(&self) -> Option<&expressway_wire::TaskTokenKey> {
        self.task_tokens.as_ref()
    }

    /// Where SendTask* learn that an execution has ended (`TaskDoesNotExist`,
    /// `TaskTimedOut`); set once (the console's store).
    pub fn set_execution_statuses(&self, statuses: ExecutionStatuses) {
        let _ = self.statuses.set(statuses);
    }

    /// The execution's status, when known.
    pub fn execution_status(&self, execution_arn: &str) -> Option<String> {
        self.statuses.get().and_then(|f| f(execution_arn))
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Parses a state machine (version, alias) ARN of this gateway's partition, region and
    /// account; an ARN of another one names nothing here: `missing(arn)`, with the reason.
    fn local_arn(&self, arn: &str, missing: fn(&str) -> ApiError) -> Result<MachineArn, ApiError> {
        let a = parse_machine_arn(arn)?;
        if let Some(scope) = &a.scope {
            if let Err(e) = self.registry.check_scope(arn, scope) {
                tracing::debug!(arn, error = %e, "ARN of another region or account");
                let mut err = missing(arn);
                err.message = format!(
                    "{} (this endpoint serves partition '{}', region '{}', account '{}')",
                    err.message,
                    self.registry.partition(),
                    self.registry.region(),
                    self.registry.account()
                );
                return Err(err);
            }
        }
        Ok(a)
    }

    /// Refuses writes to a machine defined by a definitions-directory file (read-only through
    /// the API: its truth is the file, which every pod and gateway reads).
    fn writable(&self, name: &str, arn: &str) -> Result<(), ApiError> {
        match self.registry.file_of(name) {
            None => Ok(()),
            Some(file) => Err(ApiError::new(
                "ConflictException",
                format!(
                    "State machine '{arn}' is defined by the file {file} of the definitions directory and is read-only through the API (no updates, deletes, tags, versions or aliases): change the file (Helm: definitions / definitionFiles) instead"
                ),
            )),
        }
    }

    /// The machine name of an unqualified local state machine ARN.
    fn unqualified(&self, arn: &str) -> Result<String, ApiError> {
        let a = self.local_arn(arn, ApiError::no_machine)?;
        if a.qualifier.is_some() {
            return Err(ApiError::validation(format!(
                "Invalid Arn: '{arn}': this operation does not accept a version or alias ARN"
            ))
            .with_reason("API_DOES_NOT_SUPPORT_LABELED_ARNS"));
        }
        Ok(a.name)
    }

    /// Runs operation `op` on a parsed request body.
    pub async fn call(&self, op: &str, body: &Obj) -> Result<Value, ApiError> {
        match op {
            "CreateStateMachine" => self.create_state_machine(body).await,
            "DescribeStateMachine" => self.describe_state_machine(body),
            "UpdateStateMachine" => self.update_state_machine(body).await,
            "DeleteStateMachine" => self.delete_state_machine(body).await,
            "ListStateMachines" => self.list_state_machines(body),
            "ValidateStateMachineDefinition" => validate_definition(body),
            "PublishStateMachineVersion" => self.publish_version(body).await,
            "ListStateMachineVersions" => self.list_versions(body),
            "DeleteStateMachineVersion" => self.delete_version(body).await,
            "CreateStateMachineAlias" => self.create_alias(body).await,
            "DescribeStateMachineAlias" => self.describe_alias(body),
            "UpdateStateMachineAlias" => self.update_alias(body).await,
            "DeleteStateMachineAlias" => self.delete_alias(body).await,
            "ListStateMachineAliases" => self.list_aliases(body),
            "TagResource" => self.tag_resource(body).await,
            "UntagResource" => self.untag_resource(body).await,
            "ListTagsForResource" => self.list_tags(body),
            "StartExecution" => self.start_execution(body).await,
            "StartSyncExecution" => self.start_sync_execution(body).await,
            "TestState" => crate::test_state::test_state(body, &self.engine).await,
            "SendTaskSuccess" => crate::task_callbacks::send_task_success(self, body).await,
            "SendTaskFailure" => crate::task_callbacks::send_task_failure(self, body).await,
            "SendTaskHeartbeat" => crate::task_callbacks::send_task_heartbeat(self, body).await,
            "DescribeExecution"
            | "GetExecutionHistory"
            | "StopExecution"
            | "RedriveExecution"
            | "DescribeStateMachineForExecution" => refuse_execution(body),
            "ListExecutions" => self.list_executions(body),
            other => match OPERATIONS.iter().find(|(name, _)| *name == other) {
                Some(_) => Err(ApiError::unknown_operation(format!(
                    "{other} is not supported: Express workflows have no activities or map runs"
                ))),
                None => Err(ApiError::unknown_operation(format!(
                    "Unknown operation '{other}' for AWSStepFunctions"
                ))),
            },
        }
    }

    /// Writes a definitions record, then applies it locally (read-your-writes on this replica).
    async fn put(&self, key: String, value: Option<Value>) -> Result<(), ApiError> {
        let bytes = value.map(|v| v.to_string().into_bytes());
        self.backend
            .put_definition(key.clone(), bytes.clone())
            .await
            .map_err(|e| {
                ApiError::unavailable(format!("cannot write the definitions topic: {e}"))
            })?;
        if let Err(e) = self.registry.apply_record(key.as_bytes(), bytes.as_deref()) {
            tracing::warn!(key = %key, error = %e, "definition record written but not applied");
        }
        Ok(())
    }

    /// Runs a read-modify-write of the definitions topic as its one writer across replicas
    /// (see `definitions_writer.rs`): takes the writer lease (catching up with every earlier
    /// write when it was just taken), computes the records from the registry, and commits them
    /// in one transaction; when another replica took the lease in between, nothing was written
    /// and it starts over.
    async fn exclusive(
        &self,
        plan: impl Fn() -> Result<Plan, ApiError>,
    ) -> Result<Value, ApiError> {
        let unavailable = |e: ExclusiveError| {
            ApiError::unavailable(format!("cannot write the definitions topic: {e}"))
        };
        for attempt in 1..=EXCLUSIVE_ATTEMPTS {
            match self.backend.acquire_writer().await.map_err(unavailable)? {
                Lease::Held => {}
                Lease::Fresh(marks) => self.catch_up(&marks).await?,
            }
            let p = plan()?;
            if p.records.is_empty() {
                return Ok(p.response);
            }
            let bytes: Vec<(String, Option<Vec<u8>>)> = p
                .records
                .iter()
                .map(|(k, v)| (k.clone(), v.as_ref().map(|v| v.to_string().into_bytes())))
                .collect();
            match self.backend.write_exclusive(bytes.clone()).await {
                Ok(()) => {
                    for (key, value) in &bytes {
                        if let Err(e) = self.registry.apply_record(key.as_bytes(), value.as_deref())
                        {
                            tracing::warn!(key = %key, error = %e, "definition record written but not applied");
                        }
                    }
                    return Ok(p.response);
                }
                Err(ExclusiveError::Fenced(e)) => {
                    metrics::counter!(names::DEFINITIONS_WRITER_CONFLICTS).increment(1);
                    tracing::info!(attempt, error = %e, "another gateway replica wrote the definitions topic first; recomputing");
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(ApiError::unavailable(format!(
            "cannot write the definitions topic: other gateway replicas took the writer lease {EXCLUSIVE_ATTEMPTS} times in a row"
        )))
    }

    /// The machine's entry and its definitions record (an object) to modify.
    fn current_record(
        &self,
        name: &str,
        arn: &str,
    ) -> Result<(Arc<MachineEntry>, Value), ApiError> {
        let entry = self
            .registry
            .get(name)
            .ok_or_else(|| ApiError::no_machine(arn))?;
        let record = match &entry.record {
            r @ Value::Object(_) => r.clone(),
            _ => json!({}),
        };
        Ok((entry, record))
    }

    /// Waits until the definitions follower has read every partition up to `marks`.
    async fn catch_up(&self, marks: &std::collections::HashMap<i32, i64>) -> Result<(), ApiError> {
        let deadline = std::time::Instant::now() + CATCH_UP_TIMEOUT;
        loop {
            let behind: Vec<(i32, i64)> = marks
                .iter()
                .filter(|(p, high)| self.registry.followed(**p).is_none_or(|o| o < **high))
                .map(|(p, high)| (*p, *high))
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(ApiError::unavailable(format!(
                    "the definitions follower has not caught up with {behind:?} (partition, high watermark) within {CATCH_UP_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    fn creation_date(&self, e: &MachineEntry) -> f64 {
        record_f64(&e.record, "creationDate", self.started)
    }

    // ---- machines --------------------------------------------------------------------------

    async fn create_state_machine(&self, b: &Obj) -> Result<Value, ApiError> {
        let name = req_str(b, "name")?;
        check_name(name)?;
        let definition = definition_text(b)?;
        check_type(b)?;
        check_definition(definition)?;
        let logging = validate_logging(opt_obj(b, "loggingConfiguration")?)?;
        let tags = tags_from(opt_array(b, "tags")?.map_or(&[][..], |v| v.as_slice()))?;
        if tags.len() > MAX_TAGS {
            return Err(ApiError::new("TooManyTags", "Too many tags: at most 50"));
        }
        let role = opt_str(b, "roleArn")?
            .map(str::to_string)
            .unwrap_or_else(|| format!("arn:aws:iam::{}:role/expressway", self.registry.account()));
        let publish = opt_bool(b, "publish")?.unwrap_or(false);
        let version_description = opt_str(b, "versionDescription")?;
        let _guard = self.writes.lock().await;
        let out = self.exclusive(|| {
        let arn = self.registry.machine_arn(name);
        if let Some(file) = self.registry.file_of(name) {
            return Err(ApiError::new(
                "StateMachineAlreadyExists",
                format!(
                    "State Machine Already Exists: '{arn}' (defined by the file {file} of the definitions directory, read-only through the API)"
                ),
            ));
        }
        if let Some(existing) = self.registry.get(name) {
            // AWS: idempotent when everything matches, else StateMachineAlreadyExists.
            let same = existing.definition == definition
                && existing.record.get("roleArn").and_then(Value::as_str) == Some(role.as_str());
            if same && !publish {
                return Ok(Plan::answer(
                    json!({"stateMachineArn": arn, "creationDate": self.creation_date(&existing)}),
                ));
            }
            return Err(ApiError::new(
                "StateMachineAlreadyExists",
                format!("State Machine Already Exists: '{arn}'"),
            ));
        }
        let now = now_secs();
        let revision = uuid::Uuid::new_v4().to_string();
        let tag_map: Map<String, Value> = tags
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut record = json!({
            "definition": definition,
            "loggingConfiguration": logging,
            "type": "EXPRESS",
            "roleArn": role,
            "creationDate": now,
            "revisionId": revision,
            "tracingConfiguration": b.get("tracingConfiguration").cloned().unwrap_or(json!({"enabled": false})),
            "tags": tag_map,
            "nextVersion": if publish { 2 } else { 1 },
        });
        if let Some(d) = opt_str(b, "description")? {
            record["description"] = json!(d);
        }
        let mut out = json!({"stateMachineArn": arn, "creationDate": now});
        let mut records = vec![(name.to_string(), Some(record.clone()))];
        if publish {
            records.push((
                format!("{name}:1"),
                Some(version_record(&record, version_description, now)),
            ));
            out["stateMachineVersionArn"] = json!(format!("{arn}:1"));
        }
        Ok(Plan {
            records,
            response: out,
        })
        })
        .await?;
        tracing::info!(machine = %name, "state machine created");
        Ok(out)
    }

    fn describe_state_machine(&self, b: &Obj) -> Result<Value, ApiError> {
        let arn = req_str(b, "stateMachineArn")?;
        let a = self.local_arn(arn, ApiError::no_machine)?;
        let entry = match a.qualifier.as_deref() {
            None => self.registry.get(&a.name),
            Some(q) => match parse_version(q) {
                Some(n) => self.registry.version(&a.name, n),
                None => {
                    return Err(ApiError::validation(format!(
                        "Invalid Arn: '{arn}': DescribeStateMachine does not accept an alias ARN; use DescribeStateMachineAlias"
                    ))
                    .with_reason("API_DOES_NOT_SUPPORT_LABELED_ARNS"))
                }
            },
        }
        .ok_or_else(|| ApiError::no_machine(arn))?;
        let r = &entry.record;
        let mut out = json!({
            "stateMachineArn": match entry.version {
                Some(n) => format!("{}:{n}", entry.arn),
                None => entry.arn.clone(),
            },
            "name": entry.name,
            "status": "ACTIVE",
            "definition": entry.definition,
            "roleArn": r.get("roleArn").cloned().unwrap_or_else(|| json!(format!("arn:aws:iam::{}:role/expressway", self.registry.account()))),
            "type": "EXPRESS",
            "creationDate": self.creation_date(&entry),
            "loggingConfiguration": r.get("loggingConfiguration").cloned().unwrap_or(json!({"level": "OFF", "includeExecutionData": false})),
            "tracingConfiguration": r.get("tracingConfiguration").cloned().unwrap_or(json!({"enabled": false})),
        });
        for f in ["revisionId", "description"] {
            if let Some(v) = r.get(f).filter(|v| !v.is_null()) {
                out[f] = v.clone();
            }
        }
        if let Source::Files { file } = &entry.source {
            out["description"] = json!(file_description(file));
            out["revisionId"] = json!(file_revision(
                &entry.definition,
                &out["loggingConfiguration"]
            ));
        }
        Ok(out)
    }

    async fn update_state_machine(&self, b: &Obj) -> Result<Value, ApiError> {
        let arn = req_str(b, "stateMachineArn")?;
        let name = self.unqualified(arn)?;
        self.writable(&name, arn)?;
        let definition = match b.get("definition") {
            None | Some(Value::Null) => None,
            Some(_) => Some(definition_text(b)?),
        };
        let role = opt_str(b, "roleArn")?;
        let logging = opt_obj(b, "loggingConfiguration")?;
        let tracing_cfg = b.get("tracingConfiguration").filter(|v| !v.is_null());
        let publish = opt_bool(b, "publish")?.unwrap_or(false);
        if definition.is_none() && role.is_none() && logging.is_none() && tracing_cfg.is_none() {
            return Err(ApiError::new(
                "MissingRequiredParameter",
                "Either the definition, the role ARN, the LoggingConfiguration, or the TracingConfiguration must be specified",
            ));
        }
        if let Some(d) = definition {
            check_definition(d)?;
        }
        let logging = logging.map(|l| validate_logging(Some(l))).transpose()?;
        let version_description = opt_str(b, "versionDescription")?;
        let _guard = self.writes.lock().await;
        self.exclusive(|| {
            let (entry, mut record) = self.current_record(&name, arn)?;
            record["definition"] = json!(definition.unwrap_or(&entry.definition));
            if let Some(r) = role {
                record["roleArn"] = json!(r);
            }
            if let Some(l) = &logging {
                record["loggingConfiguration"] = l.clone();
            }
            if let Some(t) = tracing_cfg {
                record["tracingConfiguration"] = t.clone();
            }
            if record.get("creationDate").is_none() {
                record["creationDate"] = json!(self.started);
            }
            record["type"] = json!("EXPRESS");
            let now = now_secs();
            let revision = uuid::Uuid::new_v4().to_string();
            record["revisionId"] = json!(revision);
            record["updateDate"] = json!(now);
            let n = record
                .get("nextVersion")
                .and_then(Value::as_u64)
                .unwrap_or(1);
            if publish {
                record["nextVersion"] = json!(n + 1);
            }
            let mut out = json!({"updateDate": now, "revisionId": revision});
            let mut records = vec![(name.clone(), Some(record.clone()))];
            if publish {
                records.push((
                    format!("{name}:{n}"),
                    Some(version_record(&record, version_description, now)),
                ));
                out["stateMachineVersionArn"] = json!(format!("{}:{n}", entry.arn));
            }
            Ok(Plan {
                records,
                response: out,
            })
        })
        .await
    }

    async fn delete_state_machine(&self, b: &Obj) -> Result<Value, ApiError> {
        let arn = req_str(b, "stateMachineArn")?;
        let a = self.local_arn(arn, ApiError::no_machine)?;
        self.writable(&a.name, arn)?;
        match a.qualifier.as_deref() {
            None => {}
            Some(q) if parse_version(q).is_some() => {
                return self.delete_version_named(&a.name, q, arn).await
            }
            Some(_) => {
                return Err(ApiError::validation(format!(
                    "Invalid Arn: '{arn}': use DeleteStateMachineAlias to delete an alias"
                )))
            }
        }
        let _guard = self.writes.lock().await;
        for alias in self.registry.aliases_of(&a.name) {
            self.put(format!("{}:{}", a.name, alias.name), None).await?;
        }
        for v in self.registry.versions_of(&a.name) {
            if let Some(n) = v.version {
                self.put(format!("{}:{n}", a.name), None).await?;
            }
        }
        if self.registry.get(&a.name).is_some() {
            self.put(a.name.clone(), None).await?;
            tracing::info!(machine = %a.name, "state machine deleted");
        }
        Ok(json!({}))
    }

    fn list_state_machines(&self, b: &Obj) -> Result<Value, ApiError> {
        let names = self.registry.names();
        let (page, next) = paginate(&names, b)?;
        let items: Vec<Value> = page
            .iter()
            .filter_map(|n| self.registry.get(n))
            .map(|e| {
                json!({
                    "stateMachineArn": e.arn,
                    "name": e.name,
                    "type": "EXPRESS",
                    "creationDate": self.creation_date(&e),
                })
            })
            .collect();
        let mut out = json!({ "stateMachines": items });
        if let Some(t) = next {
            out["nextToken"] = json!(t);
        }
        Ok(out)
    }

    fn list_executions(&self, b: &Obj) -> Result<Value, ApiError> {
        if let Some(arn) = opt_str(b, "stateMachineArn")? {
            let a = self.local_arn(arn, ApiError::no_machine)?;
            if self.registry.get(&a.name).is_none() {
                return Err(ApiError::no_machine(arn));
            }
        }
        Err(ApiError::new(
            "StateMachineTypeNotSupported",
            "This operation is not supported by this type of state machine",
        ))
    }

    // ---- versions --------------------------------------------------------------------------

    async fn publish_version(&self, b: &Obj) -> Result<Value, ApiError> {
        let arn = req_str(b, "stateMachineArn")?;
        let name = self.unqualified(arn)?;
        self.writable(&name, arn)?;
        let description = opt_str(b, "description")?;
        let want = opt_str(b, "revisionId")?;
        let _guard = self.writes.lock().await;
        self.exclusive(|| {
        let (entry, mut record) = self.current_record(&name, arn)?;
        if record.get("revisionId").is_none() {
            record["revisionId"] = json!(uuid::Uuid::new_v4().to_string());
        }
        record["definition"] = json!(entry.definition);
        let revision = record.get("revisionId").cloned().unwrap_or(Value::Null);
        if let Some(want) = want {
            if revision.as_str() != Some(want) {
                return Err(ApiError::new(
                    "ConflictException",
                    format!("Failed to publish the State Machine version for revision {want}. The current State Machine revision is {}.", revision.as_str().unwrap_or("")),
                ));
            }
        }
        // Idempotent: the current revision already published with the same description.
        if let Some(latest) = self.registry.versions_of(&name).first() {
            if latest.record.get("revisionId") == Some(&revision)
                && latest.record.get("description").and_then(Value::as_str) == description
            {
                if let Some(n) = latest.version {
                    return Ok(Plan::answer(json!({
                        "creationDate": record_f64(&latest.record, "creationDate", self.started),
                        "stateMachineVersionArn": format!("{}:{n}", entry.arn),
                    })));
                }
            }
        }
        let n = record
            .get("nextVersion")
            .and_then(Value::as_u64)
            .unwrap_or(1)
            .max(
                self.registry
                    .versions_of(&name)
                    .first()
                    .and_then(|v| v.version)
                    .map_or(1, |v| v + 1),
            );
        record["nextVersion"] = json!(n + 1);
        if record.get("creationDate").is_none() {
            record["creationDate"] = json!(self.started);
        }
        let now = now_secs();
        Ok(Plan {
            records: vec![
                (name.clone(), Some(record.clone())),
                (format!("{name}:{n}"), Some(version_record(&record, description, now))),
            ],
            response: json!({"creationDate": now, "stateMachineVersionArn": format!("{}:{n}", entry.arn)}),
        })
        })
        .await
    }

    fn list_versions(&self, b: &Obj) -> Result<Value, ApiError> {
        let arn = req_str(b, "stateMachineArn")?;
        let name = self.unqualified(arn)?;
        if self.registry.get(&name).is_none() {
            return Err(ApiError::no_machine(arn));
        }
        let versions = self.registry.versions_of(&name);
        let (page, next) = paginate(&versions, b)?;
        let items: Vec<Value> = page
            .iter()
            .filter_map(|v| {
                Some(json!({
                    "stateMachineVersionArn": format!("{}:{}", v.arn, v.version?),
                    "creationDate": record_f64(&v.record, "creationDate", self.started),
                }))
            })
            .collect();
        let mut out = json!({ "stateMachineVersions": items });
        if let Some(t) = next {
            out["nextToken"] = json!(t);
        }
        Ok(out)
    }

    async fn delete_version(&self, b: &Obj) -> Result<Value, ApiError> {
        let arn = req_str(b, "stateMachineVersionArn")?;
        let a = self.local_arn(arn, ApiError::no_machine)?;
        match a.qualifier.as_deref() {
            Some(q) if parse_version(q).is_some() => {
                self.delete_version_named(&a.name, q, arn).await
            }
            _ => Err(ApiError::validation(format!(
                "Invalid Arn: '{arn}': a version ARN (…:stateMachine:NAME:N) is required"
            ))),
        }
    }

    async fn delete_version_named(
        &self,
        name: &str,
        q: &str,
        arn: &str,
    ) -> Result<Value, ApiError> {
        let Some(n) = parse_version(q) else {
            return Err(ApiError::invalid_arn(arn));
        };
        self.writable(name, arn)?;
        let _guard = self.writes.lock().await;
        let referencing: Vec<String> = self
            .registry
            .aliases_of(name)
            .iter()
            .filter(|a| a.routes.iter().any(|(v, _)| *v == n))
            .map(|a| format!("{}:{}", self.registry.machine_arn(name), a.name))
            .collect();
        if !referencing.is_empty() {
            return Err(ApiError::new(
                "ConflictException",
                format!(
                    "Version to be deleted must not be referenced by an alias. Current list of aliases referencing this version: [{}]",
                    referencing.join(", ")
                ),
            ));
        }
        if self.registry.version(name, n).is_some() {
            self.put(format!("{name}:{n}"), None).await?;
        }
        Ok(json!({}))
    }

    // ---- aliases ---------------------------------------------------------------------------

    fn routing(&self, b: &Obj) -> Result<(String, Value), ApiError> {
        let list = opt_array(b, "routingConfiguration")?
            .ok_or_else(|| ApiError::missing("routingConfiguration"))?;
        let invalid =
            |m: String| ApiError::validation(m).with_reason("INVALID_ROUTING_CONFIGURATION");
        if list.is_empty() || list.len() > 2 {
            return Err(invalid(
                "Routing configuration must contain one or two versions".into(),
            ));
        }
        let mut machine: Option<String> = None;
        let mut seen = Vec::new();
        let mut sum = 0u64;
        let mut out = Vec::new();
        for item in list {
            let o = item
                .as_object()
                .ok_or_else(|| ApiError::serialization("Expected routing objects"))?;
            let varn = req_str(o, "stateMachineVersionArn")?;
            let weight = opt_u64(o, "weight")?.ok_or_else(|| ApiError::missing("weight"))?;
            if weight > 100 {
                return Err(invalid(format!("Invalid weight {weight}: must be 0..100")));
            }
            let a = self.local_arn(varn, ApiError::not_found)?;
            let n = a
                .qualifier
                .as_deref()
                .and_then(parse_version)
                .ok_or_else(|| invalid(format!("'{varn}' is not a state machine version ARN")))?;
            match &machine {
                None => machine = Some(a.name.clone()),
                Some(m) if *m != a.name => {
                    return Err(invalid(
                        "Routing configuration versions must belong to the same state machine"
                            .into(),
                    ))
                }
                Some(_) => {}
            }
            if seen.contains(&n) {
                return Err(invalid(
                    "Routing configuration must not contain the same version twice".into(),
                ));
            }
            seen.push(n);
            self.writable(&a.name, varn)?;
            if self.registry.version(&a.name, n).is_none() {
                return Err(ApiError::not_found(varn));
            }
            sum += weight;
            out.push(json!({
                "stateMachineVersionArn": format!("{}:{n}", self.registry.machine_arn(&a.name)),
                "weight": weight,
            }));
        }
        if sum != 100 {
            return Err(invalid(format!(
                "Routing configuration weights must sum to 100, not {sum}"
            )));
        }
        Ok((machine.unwrap_or_default(), Value::Array(out)))
    }

    fn check_alias_name(name: &str) -> Result<(), ApiError> {
        if !expressway_wire::arn::valid_name(name)
            || name.bytes().all(|b| b.is_ascii_digit())
            || name.len() > 80
        {
            return Err(ApiError::new(
                "InvalidName",
                format!("Invalid Name: '{name}' (alias names must not be a number)"),
            ));
        }
        Ok(())
    }

    async fn create_alias(&self, b: &Obj) -> Result<Value, ApiError> {
        let name = req_str(b, "name")?;
        Self::check_alias_name(name)?;
        let (machine, routes) = self.routing(b)?;
        let description = opt_str(b, "description")?;
        let _guard = self.writes.lock().await;
        let arn = format!("{}:{name}", self.registry.machine_arn(&machine));
        if let Some(existing) = self.registry.alias(&machine, name) {
            if existing.record.get("routingConfiguration") == Some(&routes)
                && existing.record.get("description").and_then(Value::as_str) == description
            {
                return Ok(json!({
                    "stateMachineAliasArn": arn,
                    "creationDate": record_f64(&existing.record, "creationDate", self.started),
                }));
            }
            return Err(ApiError::new(
                "ConflictException",
                format!("Alias already exists with a different configuration: '{arn}'"),
            ));
        }
        let now = now_secs();
        let mut record =
            json!({"routingConfiguration": routes, "creationDate": now, "updateDate": now});
        if let Some(d) = description {
            record["description"] = json!(d);
        }
        self.put(format!("{machine}:{name}"), Some(record)).await?;
        Ok(json!({"stateMachineAliasArn": arn, "creationDate": now}))
    }

    fn alias_arn(&self, b: &Obj) -> Result<(String, String, String), ApiError> {
        let arn = req_str(b, "stateMachineAliasArn")?;
        let a = self.local_arn(arn, ApiError::not_found)?;
        match a.qualifier {
            Some(q) if parse_version(&q).is_none() => Ok((arn.to_string(), a.name, q)),
            _ => Err(ApiError::invalid_arn(arn)),
        }
    }

    fn describe_alias(&self, b: &Obj) -> Result<Value, ApiError> {
        let (arn, machine, name) = self.alias_arn(b)?;
        let alias = self
            .registry
            .alias(&machine, &name)
            .ok_or_else(|| ApiError::not_found(&arn))?;
        let r = &alias.record;
        let mut out = json!({
            "stateMachineAliasArn": format!("{}:{name}", self.registry.machine_arn(&machine)),
            "name": name,
            "routingConfiguration": r.get("routingConfiguration").cloned().unwrap_or(json!([])),
            "creationDate": record_f64(r, "creationDate", self.started),
            "updateDate": record_f64(r, "updateDate", self.started),
        });
        if let Some(d) = r.get("description").filter(|d| !d.is_null()) {
            out["description"] = d.clone();
        }
        Ok(out)
    }

    async fn update_alias(&self, b: &Obj) -> Result<Value, ApiError> {
        let (arn, machine, name) = self.alias_arn(b)?;
        let routes = match b.get("routingConfiguration") {
            None | Some(Value::Null) => None,
            Some(_) => {
                let (m, r) = self.routing(b)?;
                if m != machine {
                    return Err(ApiError::validation(
                        "Routing configuration versions must belong to the alias's state machine",
                    ));
                }
                Some(r)
            }
        };
        let description = opt_str(b, "description")?;
        if routes.is_none() && description.is_none() {
            return Err(ApiError::validation(
                "Either the description or the routingConfiguration must be specified",
            ));
        }
        let _guard = self.writes.lock().await;
        let alias = self
            .registry
            .alias(&machine, &name)
            .ok_or_else(|| ApiError::not_found(&arn))?;
        let mut record = alias.record.clone();
        if let Some(r) = routes {
            record["routingConfiguration"] = r;
        }
        if let Some(d) = description {
            record["description"] = json!(d);
        }
        let now = now_secs();
        record["updateDate"] = json!(now);
        self.put(format!("{machine}:{name}"), Some(record)).await?;
        Ok(json!({"updateDate": now}))
    }

    async fn delete_alias(&self, b: &Obj) -> Result<Value, ApiError> {
        let (_, machine, name) = self.alias_arn(b)?;
        let _guard = self.writes.lock().await;
        if self.registry.alias(&machine, &name).is_some() {
            self.put(format!("{machine}:{name}"), None).await?;
        }
        Ok(json!({}))
    }

    fn list_aliases(&self, b: &Obj) -> Result<Value, ApiError> {
        let arn = req_str(b, "stateMachineArn")?;
        let name = self.unqualified(arn)?;
        if self.registry.get(&name).is_none() {
            return Err(ApiError::no_machine(arn));
        }
        let aliases = self.registry.aliases_of(&name);
        let (page, next) = paginate(&aliases, b)?;
        let items: Vec<Value> = page
            .iter()
            .map(|a| {
                json!({
                    "stateMachineAliasArn": format!("{}:{}", self.registry.machine_arn(&name), a.name),
                    "creationDate": record_f64(&a.record, "creationDate", self.started),
                })
            })
            .collect();
        let mut out = json!({ "stateMachineAliases": items });
        if let Some(t) = next {
            out["nextToken"] = json!(t);
        }
        Ok(out)
    }

    // ---- tags ------------------------------------------------------------------------------

    fn tagged(&self, arn: &str) -> Result<Arc<MachineEntry>, ApiError> {
        let a = self.local_arn(arn, ApiError::not_found)?;
        if a.qualifier.is_some() {
            return Err(ApiError::invalid_arn(arn));
        }
        self.registry
            .get(&a.name)
            .ok_or_else(|| ApiError::not_found(arn))
    }

    async fn retag(
        &self,
        arn: &str,
        f: impl FnOnce(&mut Map<String, Value>) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        let _guard = self.writes.lock().await;
        let entry = self.tagged(arn)?;
        self.writable(&entry.name, arn)?;
        let mut record = entry.record.clone();
        if !record.is_object() {
            record = json!({});
        }
        record["definition"] = json!(entry.definition);
        let mut tags = record
            .get("tags")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        f(&mut tags)?;
        record["tags"] = Value::Object(tags);
        self.put(entry.name.clone(), Some(record)).await?;
        Ok(json!({}))
    }

    async fn tag_resource(&self, b: &Obj) -> Result<Value, ApiError> {
        let arn = req_str(b, "resourceArn")?;
        let tags = tags_from(opt_array(b, "tags")?.ok_or_else(|| ApiError::missing("tags"))?)?;
        self.retag(arn, |m| {
            for (k, v) in tags {
                m.insert(k, Value::String(v));
            }
            if m.len() > MAX_TAGS {
                return Err(ApiError::new(
                    "TooManyTags",
                    format!("Too many tags: at most {MAX_TAGS} per resource"),
                ));
            }
            Ok(())
        })
        .await
    }

    async fn untag_resource(&self, b: &Obj) -> Result<Value, ApiError> {
        let arn = req_str(b, "resourceArn")?;
        let keys: Vec<String> = opt_array(b, "tagKeys")?
            .ok_or_else(|| ApiError::missing("tagKeys"))?
            .iter()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect();
        self.retag(arn, |m| {
            for k in &keys {
                m.remove(k);
            }
            Ok(())
        })
        .await
    }

    fn list_tags(&self, b: &Obj) -> Result<Value, ApiError> {
        let arn = req_str(b, "resourceArn")?;
        let entry = self.tagged(arn)?;
        if let Source::Files { file } = &entry.source {
            // How a file machine is marked where every client can see it.
            return Ok(json!({ "tags": [
                {"key": FILE_TAG_SOURCE, "value": FILE_SOURCE},
                {"key": FILE_TAG_FILE, "value": file},
            ]}));
        }
        Ok(json!({ "tags": tags_json(entry.record.get("tags")) }))
    }

    // ---- executions ------------------------------------------------------------------------

    /// Resolves the machine to run, checks name and input.
    fn prepare(&self, b: &Obj) -> Result<Prepared, ApiError> {
        let arn = req_str(b, "stateMachineArn")?;
        let a = self.local_arn(arn, ApiError::no_machine)?;
        let r = expressway_wire::MachineRef {
            name: a.name.clone(),
            qualifier: a.qualifier.clone(),
            scope: a.scope.clone(),
        };
        let entry = self.registry.lookup(&r).map_err(|e| match e {
            LookupError::FileQualifier { .. } => {
                let mut err = ApiError::no_machine(arn);
                err.message = format!("{} ({e})", err.message);
                err
            }
            _ => ApiError::no_machine(arn),
        })?;
        let name = opt_str(b, "name")?;
        if let Some(n) = name {
            check_name(n)?;
        }
        let input_text = opt_str(b, "input")?.unwrap_or("{}");
        if input_text.len() > MAX_INPUT_BYTES {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at 'input' failed to satisfy constraint: Member must have length less than or equal to {MAX_INPUT_BYTES}"
            )));
        }
        let input = parse_execution_input(input_text)?;
        let qualified = match &a.qualifier {
            Some(q) => format!("{}:{q}", self.registry.machine_arn(&a.name)),
            None => self.registry.machine_arn(&a.name),
        };
        Ok(Prepared {
            entry,
            qualified,
            name: name.map(str::to_string),
            input,
            input_text: input_text.to_string(),
            trace_header: opt_str(b, "traceHeader")?.map(str::to_string),
        })
    }

    async fn start_execution(&self, b: &Obj) -> Result<Value, ApiError> {
        let p = self.prepare(b)?;
        let mut event = json!({"stateMachine": p.qualified, "input": p.input});
        if let Some(n) = &p.name {
            event["name"] = json!(n);
        }
        if let Some(t) = &p.trace_header {
            event["traceHeader"] = json!(t);
        }
        let pos = self
            .backend
            .publish_start(event.to_string().into_bytes())
            .await
            .map_err(|e| ApiError::unavailable(format!("cannot write the start topic: {e}")))?;
        let id = expressway_wire::execution_identity(
            self.registry.region(),
            self.registry.account(),
            &p.entry.name,
            p.name.as_deref(),
            &pos.topic,
            pos.partition,
            pos.offset,
        );
        Ok(json!({"executionArn": id.arn, "startDate": now_secs()}))
    }

    async fn start_sync_execution(&self, b: &Obj) -> Result<Value, ApiError> {
        let p = self.prepare(b)?;
        let metadata_only = match opt_str(b, "includedData")? {
            None | Some("ALL_DATA") => false,
            Some("METADATA_ONLY") => true,
            Some(other) => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{other}' at 'includedData' failed to satisfy constraint: Member must satisfy enum value set: [ALL_DATA, METADATA_ONLY]"
                )))
            }
        };
        let uuid = uuid::Uuid::new_v4().to_string();
        let name = p.name.clone().unwrap_or_else(|| uuid.clone());
        let entry = &p.entry;
        let req = ExecutionRequest {
            execution_arn: format!(
                "arn:aws:states:{}:{}:express:{}:{name}:{uuid}",
                self.registry.region(),
                self.registry.account(),
                entry.name
            ),
            execution_name: name,
            state_machine_arn: entry.arn.clone(),
            state_machine_name: entry.name.clone(),
            role_arn: entry
                .record
                .get("roleArn")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| {
                    format!("arn:aws:iam::{}:role/expressway", self.registry.account())
                }),
            input: p.input,
            log: entry.log,
            limits: Limits::default(),
            synchronous: true,
        };
        let label = entry.name.clone();
        metrics::counter!(names::STARTED, "state_machine" => label.clone()).increment(1);
        metrics::gauge!(names::IN_FLIGHT).increment(1.0);
        let t0 = Instant::now();
        let outcome = execute(&entry.machine, &req, &self.engine).await;
        let elapsed = t0.elapsed();
        metrics::gauge!(names::IN_FLIGHT).decrement(1.0);
        let status_metric = match outcome.status {
            Status::Succeeded => names::SUCCEEDED,
            Status::TimedOut => names::TIMED_OUT,
            Status::Failed => names::FAILED,
        };
        metrics::counter!(status_metric, "state_machine" => label.clone()).increment(1);
        metrics::counter!(names::TRANSITIONS, "state_machine" => label.clone())
            .increment(outcome.state_transitions);
        expressway_executor::telemetry::record_budget_exceeded(
            &label,
            &req.execution_arn,
            &outcome,
        );
        metrics::histogram!(names::DURATION, "state_machine" => label, "status" => outcome.status.as_str())
            .record(elapsed.as_secs_f64());

        // The log and result records, as the executor publishes them.
        let result = outcome.result_object(&req).to_string().into_bytes();
        let log = outcome.log_record(&req).to_string().into_bytes();
        let publish = self.backend.publish_outputs(
            req.execution_arn.clone(),
            log,
            req.execution_name.clone(),
            result,
        );
        match tokio::time::timeout(Duration::from_secs(10), publish).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(execution_arn = %req.execution_arn, error = %e, "sync execution records not published")
            }
            Err(_) => {
                tracing::warn!(execution_arn = %req.execution_arn, "sync execution records: publish timed out")
            }
        }

        let billed_ms = ((elapsed.as_millis() as u64).div_ceil(100).max(1)) * 100;
        let mut out = json!({
            "executionArn": req.execution_arn,
            "stateMachineArn": p.qualified,
            "name": req.execution_name,
            "startDate": outcome.start_millis as f64 / 1000.0,
            "stopDate": outcome.stop_millis as f64 / 1000.0,
            "status": outcome.status.as_str(),
            "inputDetails": {"included": !metadata_only},
            "billingDetails": {"billedMemoryUsedInMB": 64, "billedDurationInMilliseconds": billed_ms},
        });
        if !metadata_only {
            out["input"] = json!(p.input_text);
        }
        if let Some(o) = &outcome.output {
            out["outputDetails"] = json!({"included": !metadata_only});
            if !metadata_only {
                out["output"] = json!(o.to_string());
            }
        }
        if let Some(e) = &outcome.error {
            out["error"] = json!(e);
        }
        if let Some(c) = &outcome.cause {
            out["cause"] = json!(c);
        }
        if let Some(t) = &p.trace_header {
            out["traceHeader"] = json!(t);
        }
        Ok(out)
    }
}

struct Prepared {
    entry: Arc<MachineEntry>,
    qualified: String,
    name: Option<String>,
    input: Value,
    input_text: String,
    trace_header: Option<String>,
}

/// DescribeExecution, GetExecutionHistory, StopExecution, RedriveExecution,
/// DescribeStateMachineForExecution: AWS refuses Express execution ARNs.
fn refuse_execution(b: &Obj) -> Result<Value, ApiError> {
    let arn = req_str(b, "executionArn")?;
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() >= 6 && parts[0] == "arn" && parts[2] == "states" {
        match parts[5] {
            "express" => Err(ApiError::new(
                "InvalidArn",
                "Invalid Arn: 'Resource type not valid in this context: express'",
            )),
            "execution" => Err(ApiError::new(
                "ExecutionDoesNotExist",
                format!("Execution Does Not Exist: '{arn}'"),
            )),
            other => Err(ApiError::new(
                "InvalidArn",
                format!("Invalid Arn: 'Resource type not valid in this context: {other}'"),
            )),
        }
    } else {
        Err(ApiError::invalid_arn(arn))
    }
}

fn validate_definition(b: &Obj) -> Result<Value, ApiError> {
    let text = definition_text(b)?;
    let machine_type = match opt_str(b, "type")? {
        None | Some("STANDARD") => MachineType::Standard,
        Some("EXPRESS") => MachineType::Express,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{other}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [STANDARD, EXPRESS]"
            )))
        }
    };
    let include_warnings = match opt_str(b, "severity")? {
        None | Some("ERROR") => false,
        Some("WARNING") => true,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{other}' at 'severity' failed to satisfy constraint: Member must satisfy enum value set: [ERROR, WARNING]"
            )))
        }
    };
    let max = match opt_u64(b, "maxResults")? {
        None | Some(0) => 100,
        Some(n) => n as usize,
    };
    let report = validate::validate(text, machine_type);
    let mut diagnostics: Vec<&validate::Diagnostic> = report
        .diagnostics
        .iter()
        .filter(|d| include_warnings || d.severity == Severity::Error)
        .collect();
    let truncated = diagnostics.len() > max;
    diagnostics.truncate(max);
    Ok(json!({
        "result": report.result(),
        "diagnostics": diagnostics,
        "truncated": truncated,
    }))
}
