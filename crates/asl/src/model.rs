//! The typed, compiled form of a state machine definition.
//!
//! Everything that can be decided when the definition is loaded is decided here: transitions are
//! resolved to indexes, paths/intrinsics/JSONata are parsed, defaults are filled in. Running a state
//! never re-parses anything.

use crate::choice::Rule;
use crate::jsonpath::JsonPath;
use crate::template::{Template, ValueExpr};
use serde_json::Value;
use std::collections::HashMap;

/// The query language of a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryLanguage {
    /// The default.
    JsonPath,
    /// `"QueryLanguage": "JSONata"`.
    Jsonata,
}

/// A loaded state machine.
#[derive(Debug, Clone)]
pub struct StateMachine {
    /// Top-level `Comment`.
    pub comment: Option<String>,
    /// Top-level `TimeoutSeconds`.
    pub timeout_seconds: Option<u64>,
    /// Top-level `QueryLanguage`.
    pub query_language: QueryLanguage,
    /// The top-level graph.
    pub graph: Graph,
    /// Number of states, including nested ones.
    pub total_states: usize,
}

/// A set of states with a start: the top level, a Parallel branch or a Map item processor.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Index of `StartAt` in `states`.
    pub start: usize,
    /// The states, in definition order.
    pub states: Vec<State>,
    /// Name to index.
    pub index: HashMap<String, usize>,
}

/// Where a state goes when it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// `Next`: index into the same graph.
    Next(usize),
    /// `End: true`.
    End,
}

/// `InputPath` / `OutputPath`: absent means `$`; `null` means "use {}".
#[derive(Debug, Clone)]
pub enum IoPath {
    /// Pass the value through unchanged (`$` or absent).
    Identity,
    /// `null`: the state sees / emits `{}`.
    Discard,
    /// A path to select.
    Path(JsonPath),
}

/// `ResultPath`: absent means `$` (replace); `null` discards the result.
#[derive(Debug, Clone)]
pub enum ResultPath {
    /// Result replaces the input.
    Replace,
    /// Input passes through; result dropped.
    Discard,
    /// Result is written at this reference path inside the input.
    At(JsonPath),
}

/// A number given literally or through a path / JSONata expression.
#[derive(Debug, Clone)]
pub enum Dynamic<T> {
    /// Literal from the definition.
    Fixed(T),
    /// `...Path` (JSONPath) or `{% %}` (JSONata).
    Expr(ValueExpr),
}

/// One state.
#[derive(Debug, Clone)]
pub struct State {
    /// The state name.
    pub name: String,
    /// Effective query language.
    pub query_language: QueryLanguage,
    /// `InputPath` (JSONPath mode).
    pub input_path: IoPath,
    /// `OutputPath` (JSONPath mode).
    pub output_path: IoPath,
    /// `Output` (JSONata mode).
    pub output: Option<Template>,
    /// `Assign`.
    pub assign: Option<Template>,
    /// The type-specific part.
    pub kind: Kind,
}

/// The type-specific part of a state.
#[derive(Debug, Clone)]
pub enum Kind {
    /// `Pass`.
    Pass(Pass),
    /// `Task`.
    Task(Box<Task>),
    /// `Choice`.
    Choice(Choice),
    /// `Wait`.
    Wait(Wait),
    /// `Succeed`.
    Succeed,
    /// `Fail`.
    Fail(Fail),
    /// `Parallel`.
    Parallel(Box<Parallel>),
    /// `Map`.
    Map(Box<MapState>),
}

impl Kind {
    /// The ASL `Type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Pass(_) => "Pass",
            Kind::Task(_) => "Task",
            Kind::Choice(_) => "Choice",
            Kind::Wait(_) => "Wait",
            Kind::Succeed => "Succeed",
            Kind::Fail(_) => "Fail",
            Kind::Parallel(_) => "Parallel",
            Kind::Map(_) => "Map",
        }
    }
}

/// `Pass`.
#[derive(Debug, Clone)]
pub struct Pass {
    /// `Parameters`.
    pub parameters: Option<Template>,
    /// `Result`.
    pub result: Option<Value>,
    /// `ResultPath`.
    pub result_path: ResultPath,
    /// `Next`/`End`.
    pub transition: Transition,
}

/// `Retry` entry.
#[derive(Debug, Clone)]
pub struct Retrier {
    /// `ErrorEquals`.
    pub error_equals: Vec<String>,
    /// `IntervalSeconds` (default 1).
    pub interval_seconds: f64,
    /// `MaxAttempts` (default 3).
    pub max_attempts: u32,
    /// `BackoffRate` (default 2.0).
    pub backoff_rate: f64,
    /// `MaxDelaySeconds`.
    pub max_delay_seconds: Option<f64>,
    /// `JitterStrategy: FULL`.
    pub jitter_full: bool,
}

/// `Catch` entry.
#[derive(Debug, Clone)]
pub struct Catcher {
    /// `ErrorEquals`.
    pub error_equals: Vec<String>,
    /// `Next` index.
    pub next: usize,
    /// `ResultPath` (JSONPath mode).
    pub result_path: ResultPath,
    /// `Output` (JSONata mode).
    pub output: Option<Template>,
    /// `Assign`.
    pub assign: Option<Template>,
}

/// Fields shared by Task, Parallel and Map.
#[derive(Debug, Clone)]
pub struct Work {
    /// `Parameters` (JSONPath) or `Arguments` (JSONata).
    pub parameters: Option<Template>,
    /// `ResultSelector`.
    pub result_selector: Option<Template>,
    /// `ResultPath`.
    pub result_path: ResultPath,
    /// `Retry`.
    pub retry: Vec<Retrier>,
    /// `Catch`.
    pub catch: Vec<Catcher>,
    /// `Next`/`End`.
    pub transition: Transition,
}

/// `Task`.
#[derive(Debug, Clone)]
pub struct Task {
    /// `Resource`.
    pub resource: String,
    /// Shared fields.
    pub work: Work,
    /// `TimeoutSeconds` / `TimeoutSecondsPath`.
    pub timeout_seconds: Option<Dynamic<u64>>,
    /// `HeartbeatSeconds` / `HeartbeatSecondsPath`.
    pub heartbeat_seconds: Option<Dynamic<u64>>,
    /// `Credentials`, kept as given.
    pub credentials: Option<Value>,
}

/// One Choice rule with its target.
#[derive(Debug, Clone)]
pub struct ChoiceBranch {
    /// The rule.
    pub rule: Rule,
    /// Target index.
    pub next: usize,
    /// Rule-level `Assign`.
    pub assign: Option<Template>,
    /// Rule-level `Output` (JSONata).
    pub output: Option<Template>,
}

/// `Choice`.
#[derive(Debug, Clone)]
pub struct Choice {
    /// `Choices`.
    pub choices: Vec<ChoiceBranch>,
    /// `Default`.
    pub default: Option<usize>,
}

/// What a Wait waits for.
#[derive(Debug, Clone)]
pub enum WaitFor {
    /// `Seconds`.
    Seconds(u64),
    /// `Timestamp`.
    Timestamp(String),
    /// `SecondsPath`.
    SecondsPath(JsonPath),
    /// `TimestampPath`.
    TimestampPath(JsonPath),
    /// JSONata `Seconds: "{% %}"`.
    SecondsExpr(ValueExpr),
    /// JSONata `Timestamp: "{% %}"`.
    TimestampExpr(ValueExpr),
}

/// `Wait`.
#[derive(Debug, Clone)]
pub struct Wait {
    /// What to wait for.
    pub wait_for: WaitFor,
    /// `Next`/`End`.
    pub transition: Transition,
}

/// `Fail`.
#[derive(Debug, Clone)]
pub struct Fail {
    /// `Error` / `ErrorPath`.
    pub error: Option<Dynamic<String>>,
    /// `Cause` / `CausePath`.
    pub cause: Option<Dynamic<String>>,
}

/// `Parallel`.
#[derive(Debug, Clone)]
pub struct Parallel {
    /// `Branches`.
    pub branches: Vec<Graph>,
    /// Shared fields.
    pub work: Work,
}

/// `Map`.
#[derive(Debug, Clone)]
pub struct MapState {
    /// `ItemProcessor` / `Iterator`.
    pub processor: Graph,
    /// `ItemsPath` (JSONPath mode).
    pub items_path: Option<JsonPath>,
    /// `Items` (JSONata mode).
    pub items: Option<Template>,
    /// `ItemSelector` / legacy `Parameters`.
    pub item_selector: Option<Template>,
    /// `MaxConcurrency` / `MaxConcurrencyPath` (0 = unlimited).
    pub max_concurrency: Dynamic<u64>,
    /// `ToleratedFailureCount` / `...Path`.
    pub tolerated_failure_count: Option<Dynamic<f64>>,
    /// `ToleratedFailurePercentage` / `...Path`.
    pub tolerated_failure_percentage: Option<Dynamic<f64>>,
    /// `Label`.
    pub label: Option<String>,
    /// `ProcessorConfig.Mode == DISTRIBUTED`.
    pub distributed: bool,
    /// ItemReader, ItemBatcher, ResultWriter and ExecutionType (Distributed Map only).
    pub dmap: Option<Box<DistributedConfig>>,
    /// Shared fields (`Parameters` is not used for Map; see `item_selector`).
    pub work: Work,
}

/// `ProcessorConfig.ExecutionType` of a Distributed Map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionType {
    /// `STANDARD` (the default).
    Standard,
    /// `EXPRESS`.
    Express,
}

/// `ItemReader.ReaderConfig.InputType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    /// `JSON`: the object is a JSON array (or holds one at `ItemsPointer`).
    Json,
    /// `JSONL`: one JSON value per line.
    Jsonl,
    /// `CSV`: one item (an object of strings) per row.
    Csv,
    /// `MANIFEST` (S3 inventory `manifest.json`): the rows of its gzip CSV data files.
    Manifest,
}

/// `ItemReader.ReaderConfig.CSVHeaderLocation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsvHeaders {
    /// `FIRST_ROW`: the first row names the columns.
    FirstRow,
    /// `GIVEN`: `CSVHeaders` names them; every row is data.
    Given(Vec<String>),
}

/// `ItemReader.ReaderConfig`.
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// `InputType`; `None` for `s3:listObjectsV2` and `kafka:getRecords`, which read no file.
    pub input_type: Option<InputType>,
    /// `CSVHeaderLocation` / `CSVHeaders` (CSV only).
    pub csv_headers: CsvHeaders,
    /// `CSVDelimiter` (`COMMA` by default, or `PIPE`, `SEMICOLON`, `SPACE`, `TAB`).
    pub csv_delimiter: u8,
    /// `ItemsPointer` (JSON only): a JSON pointer to the array inside the object.
    pub items_pointer: Option<String>,
    /// `MaxItems` / `MaxItemsPath`.
    pub max_items: Option<Dynamic<u64>>,
}

/// `ItemReader`.
#[derive(Debug, Clone)]
pub struct ItemReader {
    /// `Resource`: `arn:aws:states:::s3:getObject`, `...:s3:listObjectsV2` or `...:kafka:getRecords`.
    pub resource: String,
    /// `Parameters` (JSONPath) or `Arguments` (JSONata).
    pub parameters: Option<Template>,
    /// `ReaderConfig`.
    pub config: ReaderConfig,
}

/// `ItemBatcher`.
#[derive(Debug, Clone)]
pub struct ItemBatcher {
    /// `MaxItemsPerBatch` / `MaxItemsPerBatchPath`.
    pub max_items_per_batch: Option<Dynamic<u64>>,
    /// `MaxInputBytesPerBatch` / `MaxInputBytesPerBatchPath` (at most 256 KiB).
    pub max_input_bytes_per_batch: Option<Dynamic<u64>>,
    /// `BatchInput`.
    pub batch_input: Option<Template>,
}

/// `ResultWriter.WriterConfig.OutputType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputType {
    /// `JSON` (the default): each result file is a JSON array.
    Json,
    /// `JSONL`: one result per line.
    Jsonl,
}

/// `ResultWriter.WriterConfig.Transformation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transformation {
    /// `NONE` (the default): AWS's full result entries (execution ARN, input, output, status, ...).
    None,
    /// `COMPACT`: the child outputs only (and `Error`/`Cause` for failed children).
    Compact,
    /// `FLATTEN`: like `COMPACT`, with array outputs (batches) flattened into one array.
    Flatten,
}

/// `ResultWriter`.
#[derive(Debug, Clone)]
pub struct ResultWriter {
    /// `Resource`: `arn:aws:states:::s3:putObject` or `arn:aws:states:::kafka:publish`; `None`
    /// when only `WriterConfig` is given (the results come back in the state output).
    pub resource: Option<String>,
    /// `Parameters` / `Arguments` (`Bucket`, `Prefix`; or `Topic`).
    pub parameters: Option<Template>,
    /// `WriterConfig.OutputType`.
    pub output_type: OutputType,
    /// `WriterConfig.Transformation`.
    pub transformation: Transformation,
}

/// What a `ProcessorConfig.Mode: DISTRIBUTED` Map adds to a Map.
#[derive(Debug, Clone)]
pub struct DistributedConfig {
    /// `ProcessorConfig.ExecutionType`.
    pub execution_type: ExecutionType,
    /// `ItemReader`.
    pub item_reader: Option<ItemReader>,
    /// `ItemBatcher`.
    pub item_batcher: Option<ItemBatcher>,
    /// `ResultWriter`.
    pub result_writer: Option<ResultWriter>,
}
