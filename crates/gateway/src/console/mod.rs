//! The console: state machines as graphs and executions followed live, in the browser, at
//! `GET /console/` on the gateway's port.
//!
//! * Pages and assets (HTML, JS, CSS and the vendored dagre layout library) are embedded in
//!   the binary; the page renders every value as text (`textContent`), never as HTML, and the
//!   responses carry a `Content-Security-Policy` without inline scripts.
//! * JSON under `/console/api/...`: machines (registry), one machine (definition, logging,
//!   versions, aliases), executions of a machine (newest first, `?status=`), one execution
//!   (input, output, events) and `POST .../start` (StartExecution through [`Gateway::call`],
//!   the same code path as the API).
//! * Live updates: `GET /console/api/events` is a server-sent event stream of execution
//!   summaries. A stream ends after [`STREAM_SECONDS`] (shorter than the server's idle timeout:
//!   the connection watchdog counts a streaming response as idle) and at shutdown; the page's
//!   `EventSource` reconnects and reloads what it shows.
//! * [`store`]: the bounded ring of recent executions per machine; [`reader`]: the background
//!   consumer of the results and logs topics that fills it.
//! * Access: [`ConsoleAuth::Open`] (`expressway dev`, loopback) or HTTP basic with an access
//!   key id and its secret from the gateway's credentials ([`ConsoleAuth::Basic`]).
//!   State-changing requests must be `application/json` and same-origin.

pub mod reader;
pub mod store;

use crate::api::{Gateway, Obj};
use crate::sigv4::Credentials;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use expressway_engine::LogLevel;
use expressway_executor::telemetry::names;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
pub use store::{Limits, Store};

/// How long one server-sent event stream lasts before the page reconnects.
pub const STREAM_SECONDS: u64 = 25;

/// Largest body of a start request.
const MAX_START_BODY: usize = 512 * 1024;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const DAGRE_JS: &str = include_str!("assets/dagre.min.js");
const DAGRE_LICENSE: &str = include_str!("assets/dagre.LICENSE.txt");
const FAVICON: &str = include_str!("assets/favicon.svg");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Who may open the console.
#[derive(Debug, Clone)]
pub enum ConsoleAuth {
    /// Anyone who reaches the port (`expressway dev` on loopback).
    Open,
    /// HTTP basic: user = an access key id, password = its secret access key.
    Basic(Credentials),
}

/// What the console needs besides the gateway.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// Access.
    pub auth: ConsoleAuth,
    /// The reader of the results and logs topics (`None`: nothing is read; tests).
    pub reader: Option<reader::ReaderConfig>,
    /// Bounds of the execution store.
    pub limits: Limits,
}

/// The console of one gateway.
pub struct Console {
    gateway: Arc<Gateway>,
    store: Arc<Store>,
    auth: ConsoleAuth,
    closing: tokio::sync::watch::Sender<bool>,
    reader_stop: Arc<AtomicBool>,
    reader: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// Creates the console and starts its reader.
    pub fn start(
        gateway: Arc<Gateway>,
        opts: ConsoleOptions,
    ) -> Result<Arc<Console>, reader::ReaderError> {
        metrics::gauge!(names::CONSOLE_SSE_CLIENTS).set(0.0);
        let store = Arc::new(Store::new(opts.limits));
        let reader_stop = Arc::new(AtomicBool::new(false));
        let reader = match opts.reader {
            Some(cfg) => Some(reader::spawn(cfg, store.clone(), reader_stop.clone())?),
            None => None,
        };
        let (closing, _) = tokio::sync::watch::channel(false);
        tracing::info!(
            auth = matches!(opts.auth, ConsoleAuth::Basic(_)),
            per_machine = store.limits().per_machine,
            "console enabled at /console/"
        );
        Ok(Arc::new(Console {
            gateway,
            store,
            auth: opts.auth,
            closing,
            reader_stop,
            reader: Mutex::new(reader),
        }))
    }

    /// The execution store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Ends the event streams (so a graceful shutdown does not wait for them) and the reader.
    pub async fn stop(&self) {
        self.signal_stop();
        let handle = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }

    /// Tells the event streams and the reader to stop, without waiting.
    pub fn signal_stop(&self) {
        let _ = self.closing.send(true);
        self.reader_stop.store(true, Ordering::Release);
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let ConsoleAuth::Basic(creds) = &self.auth else {
            return true;
        };
        let Some(encoded) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Ok(text) = String::from_utf8(decoded) else {
            return false;
        };
        match text.split_once(':') {
            Some((id, secret)) => creds.check_secret(id, secret),
            None => false,
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.reader_stop.store(true, Ordering::Release);
    }
}

/// The `/console` routes (state included), to merge into the API router.
pub fn router(console: Arc<Console>) -> axum::Router {
    axum::Router::new()
        .route("/console", axum::routing::get(redirect))
        .route("/console/", axum::routing::any(handle))
        .route("/console/{*rest}", axum::routing::any(handle))
        .with_state(console)
}

async fn redirect() -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/console/"));
    r
}

fn with_headers(mut r: Response, content_type: &'static str) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn text(status: StatusCode, content_type: &'static str, body: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    with_headers(r, content_type)
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    with_headers(r, "application/json")
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    json_response(status, &json!({"error": kind, "message": message.into()}))
}

/// Decodes a percent-encoded query or path component (`+` is a space in queries).
fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k, true)? == key).then(|| percent_decode(v, true))?
    })
}

fn level_name(l: LogLevel) -> &'static str {
    match l {
        LogLevel::Off => "OFF",
        LogLevel::Fatal => "FATAL",
        LogLevel::Error => "ERROR",
        LogLevel::All => "ALL",
    }
}

async fn handle(State(c): State<Arc<Console>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if !c.authorized(&parts.headers) {
        metrics::counter!(names::GATEWAY_AUTH_FAILURES, "reason" => "ConsoleUnauthorized")
            .increment(1);
        let mut r = text(
            StatusCode::UNAUTHORIZED,
            "text/plain; charset=utf-8",
            "The console needs an access key id (user) and its secret access key (password).\n",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"expressway console\", charset=\"UTF-8\""),
        );
        return r;
    }
    let path = parts.uri.path().trim_start_matches("/console");
    let query = parts.uri.query();
    let segments: Vec<String> = match path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect::<Option<Vec<_>>>()
    {
        Some(s) => s,
        None => return error(StatusCode::BAD_REQUEST, "BadPath", "malformed path"),
    };
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    // HEAD is answered as GET (hyper drops the body).
    let method = if parts.method == Method::HEAD {
        Method::GET
    } else {
        parts.method.clone()
    };
    match (&method, seg.as_slice()) {
        (&Method::GET, [] | ["index.html"]) => {
            text(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML)
        }
        (&Method::GET, ["assets", "app.js"]) => {
            text(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS)
        }
        (&Method::GET, ["assets", "app.css"]) => {
            text(StatusCode::OK, "text/css; charset=utf-8", APP_CSS)
        }
        (&Method::GET, ["assets", "dagre.min.js"]) => {
            text(StatusCode::OK, "text/javascript; charset=utf-8", DAGRE_JS)
        }
        (&Method::GET, ["assets", "favicon.svg"]) => text(StatusCode::OK, "image/svg+xml", FAVICON),
        (&Method::GET, ["assets", "dagre.LICENSE.txt"]) => {
            text(StatusCode::OK, "text/plain; charset=utf-8", DAGRE_LICENSE)
        }
        (&Method::GET, ["api", "machines"]) => json_response(StatusCode::OK, &machines(&c)),
        (&Method::GET, ["api", "machines", name]) => match machine(&c, name) {
            Some(v) => json_response(StatusCode::OK, &v),
            None => error(
                StatusCode::NOT_FOUND,
                "StateMachineDoesNotExist",
                format!("no state machine named '{name}'"),
            ),
        },
        (&Method::GET, ["api", "machines", name, "executions"]) => {
            let status = query_param(query, "status").filter(|s| !s.is_empty());
            json_response(
                StatusCode::OK,
                &json!({
                    "executions": c.store.list(name, status.as_deref()),
                    "held": c.store.limits().per_machine,
                }),
            )
        }
        (&Method::POST, ["api", "machines", name, "start"]) => {
            start(&c, name, &parts.headers, body).await
        }
        (&Method::GET, ["api", "execution"]) => {
            let Some(arn) = query_param(query, "arn") else {
                return error(StatusCode::BAD_REQUEST, "MissingArn", "?arn= is required");
            };
            match c.store.get(&arn) {
                Some(e) => {
                    let mut v = e.detail();
                    if let Some(entry) = c.gateway.registry().get(&e.machine) {
                        v["logging"] = json!({
                            "level": level_name(entry.log.level),
                            "includeExecutionData": entry.log.include_execution_data,
                        });
                    }
                    json_response(StatusCode::OK, &v)
                }
                None => error(
                    StatusCode::NOT_FOUND,
                    "ExecutionDoesNotExist",
                    "the console holds no execution with this ARN (it keeps the most recent ones per machine)",
                ),
            }
        }
        (&Method::GET, ["api", "events"]) => events(&c, query_param(query, "machine")),
        (_, ["api", ..]) => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "no such console endpoint",
        ),
        // Client-side routes (#/...) all load the one page; anything else is unknown.
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n",
        ),
    }
}

fn counts_or_empty(c: &Console, name: &str) -> Value {
    Value::Object(c.store.counts(name))
}

fn machines(c: &Console) -> Value {
    let reg = c.gateway.registry();
    let list: Vec<Value> = reg
        .names()
        .into_iter()
        .filter_map(|name| {
            let entry = reg.get(&name)?;
            Some(json!({
                "name": name,
                "arn": entry.arn,
                "source": if reg.file_of(&name).is_some() { "file" } else { "topic" },
                "versions": reg.versions_of(&name).iter().filter_map(|v| v.version).collect::<Vec<_>>(),
                "aliases": reg.aliases_of(&name).iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
                "logLevel": level_name(entry.log.level),
                "includeExecutionData": entry.log.include_execution_data,
                "executions": counts_or_empty(c, &name),
            }))
        })
        .collect();
    json!({"machines": list, "loaded": reg.is_loaded()})
}

fn machine(c: &Console, name: &str) -> Option<Value> {
    let reg = c.gateway.registry();
    let entry = reg.get(name)?;
    let definition: Value = serde_json::from_str(&entry.definition).unwrap_or(Value::Null);
    Some(json!({
        "name": entry.name,
        "arn": entry.arn,
        "source": if reg.file_of(name).is_some() { "file" } else { "topic" },
        "definition": definition,
        "definitionText": entry.definition,
        "logging": {
            "level": level_name(entry.log.level),
            "includeExecutionData": entry.log.include_execution_data,
        },
        "versions": reg.versions_of(name).iter().filter_map(|v| v.version).collect::<Vec<_>>(),
        "aliases": reg.aliases_of(name).iter().map(|a| json!({
            "name": a.name,
            "routes": a.routes.iter().map(|(v, w)| json!({"version": v, "weight": w})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "executions": counts_or_empty(c, name),
    }))
}

/// A state-changing request must be JSON (a cross-site form cannot send that without a
/// preflight) and, when the browser says where it comes from, from this origin.
fn same_origin_json(headers: &HeaderMap) -> Result<(), &'static str> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.starts_with("application/json") {
        return Err("the request must be application/json");
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or(origin);
        if host.is_empty() || origin_host != host {
            return Err("cross-origin requests are refused");
        }
    }
    Ok(())
}

async fn start(c: &Console, name: &str, headers: &HeaderMap, body: Body) -> Response {
    if let Err(why) = same_origin_json(headers) {
        return error(StatusCode::FORBIDDEN, "Forbidden", why);
    }
    let bytes = match axum::body::to_bytes(body, MAX_START_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                format!("the start request is larger than {MAX_START_BODY} bytes"),
            )
        }
    };
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(&bytes) else {
        return error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "the body must be a JSON object {\"input\": \"<JSON text>\", \"name\"?: \"...\"}",
        );
    };
    let input_text = match req.get("input") {
        Some(Value::String(s)) => s.clone(),
        None => "{}".to_string(),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                "input must be the JSON text, as StartExecution takes it",
            )
        }
    };
    let Some(entry) = c.gateway.registry().get(name) else {
        return error(
            StatusCode::NOT_FOUND,
            "StateMachineDoesNotExist",
            format!("no state machine named '{name}'"),
        );
    };
    let mut call = Obj::new();
    call.insert("stateMachineArn".into(), json!(entry.arn));
    call.insert("input".into(), json!(input_text));
    if let Some(Value::String(n)) = req.get("name") {
        if !n.is_empty() {
            call.insert("name".into(), json!(n));
        }
    }
    match c.gateway.call("StartExecution", &call).await {
        Ok(v) => {
            if let Some(arn) = v.get("executionArn").and_then(Value::as_str) {
                let input = serde_json::from_str(&input_text).unwrap_or(Value::Null);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                c.store
                    .started(arn, input, expressway_asl::timestamp::format_millis(now));
                tracing::info!(machine = %name, execution_arn = %arn, "console: execution started");
            }
            json_response(StatusCode::OK, &v)
        }
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            let mut r = Response::new(Body::from(e.body()));
            *r.status_mut() = status;
            with_headers(r, "application/json")
        }
    }
}

/// Counts an SSE client for as long as its stream lives.
struct ClientGauge;

impl ClientGauge {
    fn new() -> ClientGauge {
        metrics::gauge!(names::CONSOLE_SSE_CLIENTS).increment(1.0);
        ClientGauge
    }
}

impl Drop for ClientGauge {
    fn drop(&mut self) {
        metrics::gauge!(names::CONSOLE_SSE_CLIENTS).decrement(1.0);
    }
}

struct Feed {
    rx: tokio::sync::broadcast::Receiver<Value>,
    closing: tokio::sync::watch::Receiver<bool>,
    deadline: tokio::time::Instant,
    machine: Option<String>,
    hello: bool,
    _gauge: ClientGauge,
}

fn events(c: &Console, machine: Option<String>) -> Response {
    let feed = Feed {
        rx: c.store.subscribe(),
        closing: c.closing.subscribe(),
        deadline: tokio::time::Instant::now() + Duration::from_secs(STREAM_SECONDS),
        machine,
        hello: true,
        _gauge: ClientGauge::new(),
    };
    if *feed.closing.borrow() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ShuttingDown",
            "the gateway is stopping",
        );
    }
    let stream = futures::stream::unfold(feed, |mut f| async move {
        if f.hello {
            f.hello = false;
            let ev = Event::default()
                .event("hello")
                .retry(Duration::from_millis(500))
                .data("{}");
            return Some((Ok::<Event, Infallible>(ev), f));
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(f.deadline) => return None,
                _ = f.closing.changed() => return None,
                r = f.rx.recv() => match r {
                    Ok(v) => {
                        if f.machine.as_deref().is_some_and(|m| v["stateMachine"] != m) {
                            continue;
                        }
                        return Some((Ok(Event::default().event("execution").data(v.to_string())), f));
                    }
                    // The page reloads its list when it missed updates.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        return Some((Ok(Event::default().event("resync").data("{}")), f));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    });
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10)));
    let mut r = sse.into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_percent_decoding() {
        let q = Some("status=FAILED&arn=arn%3Aaws%3Astates%3Ax%3A%3Cscript%3E&x=a+b");
        assert_eq!(query_param(q, "status").as_deref(), Some("FAILED"));
        assert_eq!(
            query_param(q, "arn").as_deref(),
            Some("arn:aws:states:x:<script>")
        );
        assert_eq!(query_param(q, "x").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%4", false), None);
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
    }

    #[test]
    fn state_changes_must_be_same_origin_json() {
        let mut h = HeaderMap::new();
        assert!(same_origin_json(&h).is_err(), "no content type");
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(same_origin_json(&h).is_err(), "a form's content type");
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(
            same_origin_json(&h).is_ok(),
            "no Origin: not a browser's cross-site request"
        );
        h.insert(header::HOST, HeaderValue::from_static("localhost:8083"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://localhost:8083"),
        );
        assert!(same_origin_json(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(same_origin_json(&h).is_err());
    }
}
