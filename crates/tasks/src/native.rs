//! Native handlers: Rust functions as Task resources.
//!
//! ```
//! use expressway_engine::{runtime::TokioClock, TaskError, TaskRequest};
//! use expressway_tasks::{RegistryExt, TaskConfig};
//! use serde_json::{json, Value};
//! use std::sync::Arc;
//!
//! async fn greet(req: TaskRequest) -> Result<Value, TaskError> {
//!     match req.input.get("name").and_then(Value::as_str) {
//!         Some(name) => Ok(json!({"greeting": format!("Hello, {name}!")})),
//!         None => Err(TaskError::new("Greeter.NoName", "the input has no name")),
//!     }
//! }
//!
//! let clock = Arc::new(TokioClock::new());
//! let mut registry = TaskConfig::default().build_registry(clock, None)?;
//! // A Task with "Resource": "arn:aws:states:::expressway:greet" now runs `greet`.
//! registry.register_fn("arn:aws:states:::expressway:greet", greet);
//! // Closures work too; a prefix handler serves a whole family of ARNs.
//! registry.register_fn_prefix("arn:example:echo:", |req: TaskRequest| async move { Ok(req.input) });
//! # Ok::<(), expressway_tasks::ConfigError>(())
//! ```
//!
//! Handlers registered this way record `expressway_task_duration_seconds` and
//! `expressway_task_failures_total` like the built-in resources (label: the exact ARN, or the prefix
//! followed by `*`). Errors are matched by Retry and Catch by their `error` name.

use crate::metrics::instrument_as;
use expressway_engine::tasks::{Handler, Registry};
use expressway_engine::{TaskError, TaskRequest};
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;

/// Turns an async function into an engine [`Handler`] (without metrics).
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(TaskRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, TaskError>> + Send + 'static,
{
    Arc::new(move |req| Box::pin(f(req)))
}

/// Registration of async functions on the engine's [`Registry`], with metrics.
pub trait RegistryExt {
    /// `resource` (an exact ARN) runs `f`.
    fn register_fn<F, Fut>(&mut self, resource: &str, f: F)
    where
        F: Fn(TaskRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, TaskError>> + Send + 'static;

    /// Every resource starting with `prefix` runs `f` (exact registrations win).
    fn register_fn_prefix<F, Fut>(&mut self, prefix: &str, f: F)
    where
        F: Fn(TaskRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, TaskError>> + Send + 'static;
}

impl RegistryExt for Registry {
    fn register_fn<F, Fut>(&mut self, resource: &str, f: F)
    where
        F: Fn(TaskRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, TaskError>> + Send + 'static,
    {
        self.register(resource, instrument_as(resource, handler(f)));
    }

    fn register_fn_prefix<F, Fut>(&mut self, prefix: &str, f: F)
    where
        F: Fn(TaskRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, TaskError>> + Send + 'static,
    {
        self.register_prefix(prefix, instrument_as(format!("{prefix}*"), handler(f)));
    }
}
