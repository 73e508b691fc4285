//! Runs one Step Functions execution in memory.
//!
//! [`execute`] interprets a loaded [`expressway_asl::StateMachine`]: state transitions, data flow,
//! Retry/Catch, Wait, Parallel, Map, timeouts, payload limits and the Express log events. Time,
//! randomness and task dispatch come in through [`Runtime`], so tests run in virtual time.

pub mod budget;
pub mod callback_hub;
pub mod callbacks;
pub mod events;
mod exec;
pub mod jsonw;
pub mod map_runs;
mod pace;
pub mod runtime;
pub mod tasks;

pub use budget::Budget;
pub use callback_hub::{CallbackHub, Delivery, HubLimits, TokenMinter};
pub use callbacks::{CallbackKey, CallbackListener, CallbackSignal, Callbacks};
pub use events::{Event, LogConfig, LogLevel};
pub use exec::{
    execute, idempotency_key, idempotency_key_at, ExecutionRequest, Limits, Outcome, Status,
    DEFAULT_MAX_MEMORY_BYTES,
};
pub use map_runs::{ChildExecution, ChildExecutionType, ChildExecutions};
pub use runtime::{Clock, Entropy, Runtime, TaskDispatcher, TaskError, TaskRequest};

/// The region Expressway reports in ARNs and events unless configured otherwise.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The account id Expressway reports in ARNs unless configured otherwise.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// Stack size of the threads that run executions (`serve`, `dev`, `gateway`). Values reach
/// recursive code (serde_json's clone, drop and serialization) up to
/// [`expressway_asl::depth::MAX_VALUE_DEPTH`] levels deep; tokio's default of 2 MiB holds that in
/// release builds but not in debug builds (about 2 KiB per level of `Value::clone`). Untouched
/// stack pages cost no memory.
pub const WORKER_STACK_BYTES: usize = 8 * 1024 * 1024;
