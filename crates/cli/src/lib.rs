//! The library half of the `expressway` binary: what `run` does, reusable in-process (the
//! conformance runner calls [`local::run_definition`] exactly as `expressway run` does).

pub mod client;
pub mod dev;
pub mod gateway;
pub mod local;
pub mod send_task;
pub mod serve;
pub mod task_tokens;
