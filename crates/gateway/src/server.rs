//! The HTTP side: `POST /` with `X-Amz-Target: AWSStepFunctions.<Operation>` (awsJson1_0),
//! SigV4 verification, the body limit, metrics and one tracing line per request.

use crate::api::{Gateway, Obj, OPERATIONS};
use crate::error::ApiError;
use crate::sigv4::{self, Credentials, SignedRequest};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use expressway_executor::http_server::{read_body, BodyError, HttpLimits};
use expressway_executor::telemetry::names;
use futures::FutureExt as _;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

/// Largest request body accepted (AWS: 1 MiB definitions; the JSON escaping of a definition
/// string may add a little, so the body may be somewhat larger than the definition).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1_048_576 + 65_536;

const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// How long a request waits for the definitions follower's initial catch-up.
const STARTUP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// HTTP-level settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// SigV4 credentials; `None` accepts unsigned requests (`--no-auth`).
    pub auth: Option<Credentials>,
    /// Body limit.
    pub max_body_bytes: usize,
    /// Connection limit and header/body/idle timeouts.
    pub http: HttpLimits,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            auth: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            http: HttpLimits::GATEWAY,
        }
    }
}

struct Shared {
    gateway: Arc<Gateway>,
    config: ServerConfig,
}

/// The router: `POST /` for the API, `GET /healthz` and `GET /readyz` (registry loaded).
pub fn router(gateway: Arc<Gateway>, config: ServerConfig) -> axum::Router {
    let shared = Arc::new(Shared { gateway, config });
    axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route(
            "/readyz",
            axum::routing::get(|State(s): State<Arc<Shared>>| async move {
                if s.gateway.registry().is_loaded() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
        )
        .fallback(handle)
        .with_state(shared)
}

fn respond(status: u16, body: String, request_id: &str, error: Option<&str>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static(JSON_CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(kind) = error.and_then(|k| HeaderValue::from_str(k).ok()) {
        h.insert("x-amzn-errortype", kind);
    }
    if status == 408 {
        // The rest of the body may still arrive: the connection cannot carry another request.
        h.insert("connection", HeaderValue::from_static("close"));
    }
    r
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn handle(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let t0 = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = req.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let op = target.strip_prefix("AWSStepFunctions.").unwrap_or_default();
    let op_label: &'static str = OPERATIONS
        .iter()
        .find(|(name, _)| *name == op)
        .map_or("unknown", |(name, _)| name);

    let result: Result<Value, ApiError> = async {
        if parts.method != axum::http::Method::POST || parts.uri.path() != "/" {
            return Err(ApiError::unknown_operation(format!(
                "{} {} is not an operation: the Step Functions API is POST / with X-Amz-Target: AWSStepFunctions.<Operation>",
                parts.method,
                parts.uri.path()
            )));
        }
        let bytes = read_body(body, s.config.max_body_bytes, &s.config.http, "gateway")
            .await
            .map_err(|e| match e {
                BodyError::TooLarge(limit) => ApiError::new(
                    "RequestEntityTooLargeException",
                    format!("Request body is larger than {limit} bytes"),
                )
                .with_status(413),
                BodyError::Timeout(_) => {
                    ApiError::new("RequestTimeoutException", e.to_string()).with_status(408)
                }
            })?;
        if let Some(creds) = &s.config.auth {
            let headers: Vec<(String, String)> = parts
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect();
            let signed = SignedRequest {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                query: parts.uri.query().unwrap_or_default(),
                headers: &headers,
                body: &bytes,
            };
            if let Err(e) = sigv4::verify(creds, &signed, now_secs()) {
                metrics::counter!(names::GATEWAY_AUTH_FAILURES, "reason" => e.kind).increment(1);
                return Err(e);
            }
        }
        if op.is_empty() {
            return Err(ApiError::unknown_operation(if target.is_empty() {
                "Missing X-Amz-Target header (expected AWSStepFunctions.<Operation>)".to_string()
            } else {
                format!("Unknown operation target '{target}' (expected AWSStepFunctions.<Operation>)")
            }));
        }
        let body: Obj = if bytes.iter().all(u8::is_ascii_whitespace) {
            Obj::new()
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(o)) => o,
                Ok(_) => {
                    return Err(ApiError::serialization(
                        "The request body must be a JSON object",
                    ))
                }
                Err(e) => {
                    return Err(ApiError::serialization(format!(
                        "The request body is not valid JSON: {e}"
                    )))
                }
            }
        };
        // After a restart, wait (bounded) for the definitions follower to catch up, so a
        // replica never answers from a partial view of the topic.
        let registry = s.gateway.registry();
        if !registry.is_loaded() {
            let deadline = Instant::now() + STARTUP_WAIT;
            while !registry.is_loaded() && Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            if !registry.is_loaded() {
                return Err(ApiError::unavailable(
                    "the gateway is still reading the definitions topic; retry shortly",
                ));
            }
        }
        match std::panic::AssertUnwindSafe(s.gateway.call(op, &body))
            .catch_unwind()
            .await
        {
            Ok(r) => r,
            Err(_) => {
                tracing::error!(operation = op, "operation panicked");
                Err(ApiError::new(
                    "InternalFailure",
                    "The request processing has failed because of an unknown error",
                )
                .with_status(500))
            }
        }
    }
    .await;

    let (status, response) = match result {
        Ok(v) => (200, respond(200, v.to_string(), &request_id, None)),
        Err(e) => (
            e.status,
            respond(e.status, e.body(), &request_id, Some(e.kind)),
        ),
    };
    let elapsed = t0.elapsed();
    metrics::counter!(names::GATEWAY_REQUESTS, "operation" => op_label, "code" => status.to_string())
        .increment(1);
    metrics::histogram!(names::GATEWAY_REQUEST_DURATION, "operation" => op_label)
        .record(elapsed.as_secs_f64());
    if status >= 500 {
        tracing::warn!(operation = %target, status, request_id = %request_id, micros = elapsed.as_micros() as u64, "request failed");
    } else {
        tracing::debug!(operation = %target, status, request_id = %request_id, micros = elapsed.as_micros() as u64, "request");
    }
    response
}
