//! Task resources for Expressway: what a Task state's `Resource` does.
//!
//! | Resource | module |
//! |---|---|
//! | `arn:aws:states:::http:invoke` (AWS's HTTP Task) | [`http_task`] |
//! | `arn:aws:states:::lambda:invoke` and `arn:aws:lambda:<region>:<account>:function:<name>` (functions over HTTP) | [`lambda`] |
//! | `arn:aws:states:::kafka:publish` (ours) | [`kafka`] |
//! | `arn:aws:states:::s3:getObject`, `s3:listObjectsV2`, `s3:putObject` (any S3-compatible store, SigV4) | [`s3`] |
//! | anything an embedder registers | [`native`] |
//!
//! [`TaskConfig`] (JSON, `deny_unknown_fields`) names the connections, the function endpoints, the
//! egress allowlist and the default timeout; [`TaskConfig::build_registry`] returns the engine's
//! [`Registry`] with every resource registered.
//!
//! Every outbound HTTP request carries `Idempotency-Key: <TaskRequest::idempotency_key>` (stable for
//! one execution ARN, state name and attempt) and passes the [`egress`] allowlist. Its timeout is
//! the Task's `TimeoutSeconds` when set, else `defaults.timeout_seconds` (60 s, AWS's).
//!
//! Each attempt is measured in `expressway_task_duration_seconds` and failures are counted in
//! `expressway_task_failures_total` (label `resource`), see [`metrics`].

pub mod auth;
mod client;
pub mod config;
pub mod egress;
pub mod http_task;
pub mod kafka;
pub mod lambda;
pub mod metrics;
pub mod native;
pub mod s3;

pub use client::IDEMPOTENCY_KEY;
pub use config::{
    ConfigError, ConnectionConfig, Defaults, FunctionTarget, S3Config, Secret, TaskConfig,
    TlsConfig,
};
pub use expressway_engine::tasks::{Handler, Registry};
pub use http_task::HTTP_INVOKE;
pub use kafka::{
    InMemoryPublisher, KafkaPublisher, KafkaRecord, PublishAck, PublishError, KAFKA_PUBLISH,
};
pub use lambda::{FUNCTION_ARN_PREFIX, LAMBDA_INVOKE};
pub use metrics::metered_registry;
pub use native::{handler, RegistryExt};

use auth::Connection;
use client::HttpClient;
use expressway_engine::{Clock, TaskError, TaskRequest};
use hyper::header::{HeaderName, HeaderValue};
use hyper::HeaderMap;
use lambda::FunctionRef;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// State shared by the HTTP-based handlers.
pub(crate) struct Shared {
    client: HttpClient,
    connections: HashMap<String, Arc<Connection>>,
    functions: HashMap<String, FunctionTarget>,
    clock: Arc<dyn Clock>,
    default_timeout: Duration,
}

impl Shared {
    fn timeout_for(&self, req: &TaskRequest) -> Duration {
        req.timeout.unwrap_or(self.default_timeout)
    }

    fn connection(&self, arn_or_name: &str) -> Result<Arc<Connection>, TaskError> {
        let name = auth::connection_name(arn_or_name);
        self.connections.get(name).cloned().ok_or_else(|| {
            http_task::runtime_error(format!(
                "The connection '{name}' is not defined in the task configuration"
            ))
        })
    }

    fn function(&self, f: &FunctionRef) -> Option<&FunctionTarget> {
        if let Some(q) = &f.qualifier {
            if let Some(t) = self.functions.get(&format!("{}:{q}", f.name)) {
                return Some(t);
            }
        }
        self.functions.get(&f.name)
    }

    fn function_known(&self, f: &FunctionRef) -> bool {
        self.function(f).is_some()
    }

    fn set_idempotency_key(&self, headers: &mut HeaderMap, req: &TaskRequest) {
        if let Ok(v) = HeaderValue::from_str(&req.idempotency_key) {
            headers.insert(HeaderName::from_static(IDEMPOTENCY_KEY), v);
        }
    }
}

impl TaskConfig {
    /// A registry with every resource of this crate registered (plus the engine's test resource),
    /// all metered ([`metrics::metered_registry`]). Without a publisher, `kafka:publish` stays
    /// unregistered (tasks using it fail with `States.TaskFailed`, "No handler is registered").
    pub fn build_registry(
        &self,
        clock: Arc<dyn Clock>,
        publisher: Option<Arc<dyn KafkaPublisher>>,
    ) -> Result<Registry, ConfigError> {
        let mut registry = metrics::metered_registry(clock.clone());
        self.register_into(&mut registry, clock, publisher)?;
        Ok(registry)
    }

    /// Registers this crate's resources into an existing registry.
    pub fn register_into(
        &self,
        registry: &mut Registry,
        clock: Arc<dyn Clock>,
        publisher: Option<Arc<dyn KafkaPublisher>>,
    ) -> Result<(), ConfigError> {
        self.check()?;
        let roots =
            client::trust_roots(&self.tls.extra_root_certificates).map_err(ConfigError::Tls)?;
        let client = HttpClient::new(
            self.allowlist()?,
            self.defaults.connect_timeout(),
            self.defaults.max_response_bytes,
            roots,
        )
        .map_err(|e| ConfigError::Tls(e.to_string()))?;
        let shared = Arc::new(Shared {
            client,
            connections: self
                .connections
                .iter()
                .map(|(name, c)| {
                    (
                        name.clone(),
                        Arc::new(Connection::new(name.clone(), c.clone())),
                    )
                })
                .collect(),
            functions: self
                .functions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            clock,
            default_timeout: self.defaults.timeout(),
        });
        let s = shared.clone();
        registry.register(
            HTTP_INVOKE,
            metrics::instrument_as(
                HTTP_INVOKE,
                Arc::new(move |req| Box::pin(http_task::invoke(s.clone(), req))),
            ),
        );
        let s = shared.clone();
        registry.register(
            LAMBDA_INVOKE,
            metrics::instrument_as(
                LAMBDA_INVOKE,
                Arc::new(move |req| Box::pin(lambda::invoke_optimised(s.clone(), req))),
            ),
        );
        let s = shared.clone();
        let for_label = shared.clone();
        registry.register_prefix(
            FUNCTION_ARN_PREFIX,
            metrics::instrument(
                Arc::new(move |req: &TaskRequest| lambda::metric_label(&for_label, &req.resource)),
                Arc::new(move |req| Box::pin(lambda::invoke_arn(s.clone(), req))),
            ),
        );
        let store = Arc::new(s3::S3Store::new(self.s3.as_ref()));
        type S3Call =
            fn(
                Arc<Shared>,
                Arc<s3::S3Store>,
                TaskRequest,
            )
                -> futures::future::BoxFuture<'static, Result<serde_json::Value, TaskError>>;
        let s3_calls: [(&str, S3Call); 3] = [
            (s3::S3_GET_OBJECT, |s, st, r| {
                Box::pin(s3::get_object(s, st, r))
            }),
            (s3::S3_LIST_OBJECTS_V2, |s, st, r| {
                Box::pin(s3::list_objects_v2(s, st, r))
            }),
            (s3::S3_PUT_OBJECT, |s, st, r| {
                Box::pin(s3::put_object(s, st, r))
            }),
        ];
        for (resource, call) in s3_calls {
            let (s, st) = (shared.clone(), store.clone());
            registry.register(
                resource,
                metrics::instrument_as(
                    resource,
                    Arc::new(move |req| call(s.clone(), st.clone(), req)),
                ),
            );
        }
        if let Some(publisher) = publisher {
            registry.register(
                KAFKA_PUBLISH,
                metrics::instrument_as(
                    KAFKA_PUBLISH,
                    Arc::new(move |req| Box::pin(kafka::invoke(publisher.clone(), req))),
                ),
            );
        }
        Ok(())
    }
}
