//! The Expressway executor pod.
//!
//! * [`offsets::OffsetTracker`]: the contiguous-completed-prefix rule of at-least-once delivery.
//! * [`ordering`]: which waiting records of a partition may start (`--ordering key|partition|none`).
//! * [`exactly_once`]: `--guarantee exactly-once`, outputs and offsets in Kafka transactions.
//! * [`registry::Registry`]: state machines from a directory and the definitions topic.
//! * [`pod::Executor`]: the consumer group member that runs executions and produces their log,
//!   result and dead-letter records, with rebalance draining and graceful shutdown.
//! * [`http_server`]: the HTTP/1 server with a connection limit and header/body/idle timeouts
//!   (the metrics port here, the gateway's API).
//! * [`telemetry`]: metric names, the Prometheus recorder, `/metrics` `/healthz` `/readyz`.
//! * [`lag`]: partition ownership and lag gauges (owner's and group's), removed on revoke.
//! * [`callbacks`]: task tokens and the callback topic of `.waitForTaskToken` Tasks.
//! * [`map_children`]: Distributed Map children as start events, their outcomes as callbacks.
//! * [`nested`]: the `states:startExecution[.sync|.sync:2]` Task resources (nested executions).

pub mod callbacks;
mod commit_errors;
pub mod config;
mod dead_letter_headers;
pub mod definitions;
pub mod exactly_once;
pub mod http_server;
pub mod lag;
pub mod map_children;
pub mod nested;
pub mod offsets;
pub mod ordering;
pub mod pod;
pub mod publisher;
pub mod record_reader;
pub mod registry;
pub mod telemetry;

pub use config::{CallbackConfig, ExecutorConfig, Guarantee, TransactionConfig};
pub use definitions::spawn_follower;
pub use offsets::OffsetTracker;
pub use ordering::OrderingMode;
pub use pod::{default_engine_runtime, engine_runtime_with_tasks, Executor, ExecutorError};
pub use registry::{AliasEntry, LookupError, MachineEntry, Registry, Source};
