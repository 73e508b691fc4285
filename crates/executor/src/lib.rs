//! The Expressway executor pod.
//!
//! * [`offsets::OffsetTracker`]: the contiguous-completed-prefix rule of at-least-once delivery.
//! * [`registry::Registry`]: state machines from a directory and the definitions topic.
//! * [`pod::Executor`]: the consumer group member that runs executions and produces their log,
//!   result and dead-letter records, with rebalance draining and graceful shutdown.
//! * [`telemetry`]: metric names, the Prometheus recorder, `/metrics` `/healthz` `/readyz`.
//! * [`lag`]: partition ownership and lag gauges (owner's and group's), removed on revoke.

pub mod config;
pub mod definitions;
pub mod lag;
pub mod offsets;
pub mod pod;
pub mod publisher;
pub mod registry;
pub mod telemetry;

pub use config::ExecutorConfig;
pub use definitions::spawn_follower;
pub use offsets::OffsetTracker;
pub use pod::{default_engine_runtime, engine_runtime_with_tasks, Executor, ExecutorError};
pub use registry::{AliasEntry, MachineEntry, Registry};
