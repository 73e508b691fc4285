//! Task dispatch by `Resource`, and the deterministic built-in test resource.
//!
//! [`Registry`] maps Resource ARNs to async handlers. It always knows [`TEST_RESOURCE`], a resource
//! that succeeds, fails with a chosen error, fails the first N attempts, or sleeps (on the injected
//! clock), so Retry, Catch and timeouts can be exercised without a network.

use crate::runtime::{Clock, TaskDispatcher, TaskError, TaskRequest};
use futures::future::BoxFuture;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The built-in test resource.
///
/// Parameters (all optional):
/// - `Result`: the value to return (default: the task input itself);
/// - `Error` / `Cause`: fail with this error (and cause);
/// - `FailAttempts`: with `Error`, fail only the first N attempts, then succeed;
/// - `SleepSeconds`: complete after this many seconds (fractions allowed).
pub const TEST_RESOURCE: &str = "arn:aws:states:::expressway:test";

/// An async task handler.
pub type Handler =
    Arc<dyn Fn(TaskRequest) -> BoxFuture<'static, Result<Value, TaskError>> + Send + Sync>;

/// Resource ARN to handler.
///
/// Lookup order: exact registrations, prefix registrations, [`TEST_RESOURCE`], then the fallback
/// (by default [`unregistered`]: `States.TaskFailed`, "No handler is registered"). Registering
/// [`TEST_RESOURCE`] or a fallback wraps the built-ins (e.g. with metrics) without changing them.
#[derive(Clone)]
pub struct Registry {
    handlers: HashMap<String, Handler>,
    prefixes: Vec<(String, Handler)>,
    fallback: Option<Handler>,
    clock: Arc<dyn Clock>,
}

impl Registry {
    /// A registry that knows only [`TEST_RESOURCE`].
    pub fn new(clock: Arc<dyn Clock>) -> Registry {
        Registry {
            handlers: HashMap::new(),
            prefixes: Vec::new(),
            fallback: None,
            clock,
        }
    }

    /// The clock the built-in test resource sleeps on.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Handles every resource that nothing else handles (instead of [`unregistered`]).
    pub fn set_fallback(&mut self, handler: Handler) {
        self.fallback = Some(handler);
    }

    /// Registers a handler for an exact Resource ARN.
    pub fn register(&mut self, resource: impl Into<String>, handler: Handler) {
        self.handlers.insert(resource.into(), handler);
    }

    /// Registers a handler for every Resource ARN starting with `prefix` (e.g. `arn:aws:lambda:`).
    pub fn register_prefix(&mut self, prefix: impl Into<String>, handler: Handler) {
        self.prefixes.push((prefix.into(), handler));
    }
}

impl TaskDispatcher for Registry {
    fn invoke(&self, request: TaskRequest) -> BoxFuture<'static, Result<Value, TaskError>> {
        if let Some(h) = self.handlers.get(&request.resource) {
            return h(request);
        }
        if let Some((_, h)) = self
            .prefixes
            .iter()
            .find(|(p, _)| request.resource.starts_with(p.as_str()))
        {
            return h(request);
        }
        if request.resource == TEST_RESOURCE {
            return test_resource(request, self.clock.clone());
        }
        match &self.fallback {
            Some(h) => h(request),
            None => unregistered(request),
        }
    }
}

/// What a resource without a handler does: fail with `States.TaskFailed`.
pub fn unregistered(request: TaskRequest) -> BoxFuture<'static, Result<Value, TaskError>> {
    Box::pin(async move {
        Err(TaskError::new(
            "States.TaskFailed",
            format!(
                "No handler is registered for resource '{}'",
                request.resource
            ),
        ))
    })
}

/// The built-in [`TEST_RESOURCE`] (sleeping on `clock`).
pub fn test_resource(
    request: TaskRequest,
    clock: Arc<dyn Clock>,
) -> BoxFuture<'static, Result<Value, TaskError>> {
    Box::pin(async move {
        let p = &request.input;
        if let Some(secs) = p.get("SleepSeconds").and_then(Value::as_f64) {
            if secs > 0.0 {
                clock.sleep(Duration::from_secs_f64(secs)).await;
            }
        }
        if let Some(error) = p.get("Error").and_then(Value::as_str) {
            let fail_attempts = p.get("FailAttempts").and_then(Value::as_u64);
            if fail_attempts.is_none_or(|n| u64::from(request.attempt) < n) {
                return Err(TaskError {
                    error: error.to_string(),
                    cause: p.get("Cause").and_then(Value::as_str).map(str::to_string),
                });
            }
        }
        Ok(p.get("Result")
            .cloned()
            .unwrap_or_else(|| request.input.clone()))
    })
}
