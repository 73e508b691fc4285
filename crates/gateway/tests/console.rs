//! The console's HTTP side on a real socket (in-memory backend, no reader): HTTP basic, the
//! page and its headers, the JSON endpoints, StartExecution through the API's code path, and
//! the server-sent event stream (live update, end at stop). The browser test is
//! `tests/console/run.sh`.

use expressway_executor::Registry;
use expressway_gateway::console::{self, ConsoleAuth, ConsoleOptions, Limits};
use expressway_gateway::{Credentials, Gateway, MemoryBackend, ServerConfig};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HELLO: &str = r#"{"StartAt":"Greet","States":{"Greet":{"Type":"Pass","End":true}}}"#;
const USER: &str = "AKIDCONSOLE";
const SECRET: &str = "console-secret";

async fn serve() -> (std::net::SocketAddr, Arc<console::Console>, MemoryBackend) {
    let registry = Arc::new(Registry::new("us-east-1", "123456789012"));
    registry
        .insert(
            "hello",
            HELLO,
            Some(&json!({"level": "ALL", "includeExecutionData": true})),
        )
        .expect("registered");
    registry.set_loaded();
    let backend = MemoryBackend::default();
    let gw = Arc::new(Gateway::new(
        registry,
        Arc::new(backend.clone()),
        expressway_executor::default_engine_runtime(),
    ));
    let c = console::Console::start(
        gw.clone(),
        ConsoleOptions {
            auth: ConsoleAuth::Basic(Credentials::single(USER, SECRET)),
            reader: None,
            limits: Limits::default(),
        },
    )
    .expect("console");
    let app =
        console::router(c.clone()).merge(expressway_gateway::router(gw, ServerConfig::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, c, backend)
}

fn basic(user: &str, secret: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
    )
}

/// One request; returns (status, lower-cased head, body).
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("answered in time")
        .expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn basic_auth_pages_and_start() {
    let (addr, c, backend) = serve().await;
    let auth = vec![("Authorization", basic(USER, SECRET))];

    let (st, head, _) = request(addr, "GET", "/console/", &[], "").await;
    assert_eq!(st, 401);
    assert!(head.contains("www-authenticate: basic realm="), "{head}");
    for wrong in [
        basic(USER, "nope"),
        basic("OTHER", SECRET),
        "Basic !!!".into(),
        "Bearer x".into(),
    ] {
        let (st, _, _) = request(
            addr,
            "GET",
            "/console/api/machines",
            &[("Authorization", wrong)],
            "",
        )
        .await;
        assert_eq!(st, 401);
    }

    let (st, head, body) = request(addr, "GET", "/console/", &auth, "").await;
    assert_eq!(st, 200);
    assert!(head.contains("content-type: text/html"));
    assert!(head.contains("content-security-policy: default-src 'none'; script-src 'self'"));
    assert!(body.contains("assets/app.js") && body.contains("assets/dagre.min.js"));
    let (st, _, js) = request(addr, "GET", "/console/assets/dagre.min.js", &auth, "").await;
    assert_eq!(st, 200);
    assert!(
        js.contains("graphlib"),
        "the vendored dagre build is served"
    );

    let (st, _, body) = request(addr, "GET", "/console/api/machines", &auth, "").await;
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["machines"][0]["name"], "hello");
    assert_eq!(v["machines"][0]["logLevel"], "ALL");
    let (st, _, body) = request(addr, "GET", "/console/api/machines/hello", &auth, "").await;
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["definition"]["StartAt"], "Greet");
    let (st, _, _) = request(addr, "GET", "/console/api/machines/nope", &auth, "").await;
    assert_eq!(st, 404);

    // A cross-site form cannot start executions.
    let mut form = auth.clone();
    form.push(("Content-Type", "application/x-www-form-urlencoded".into()));
    let (st, _, _) = request(
        addr,
        "POST",
        "/console/api/machines/hello/start",
        &form,
        r#"{"input":"{}"}"#,
    )
    .await;
    assert_eq!(st, 403);
    let mut cross = auth.clone();
    cross.push(("Content-Type", "application/json".into()));
    cross.push(("Origin", "http://evil.example".into()));
    let (st, _, _) = request(
        addr,
        "POST",
        "/console/api/machines/hello/start",
        &cross,
        r#"{"input":"{}"}"#,
    )
    .await;
    assert_eq!(st, 403);
    assert!(backend.records("start").is_empty());

    // StartExecution's code path: the start event is published, the ARN derived from it.
    let mut jsonh = auth.clone();
    jsonh.push(("Content-Type", "application/json".into()));
    let (st, _, body) = request(
        addr,
        "POST",
        "/console/api/machines/hello/start",
        &jsonh,
        r#"{"input":"{\"who\":\"<script>\"}","name":"from-console"}"#,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    let arn = v["executionArn"].as_str().expect("arn").to_string();
    assert!(arn.contains(":express:hello:from-console:"), "{arn}");
    let starts = backend.records("start");
    assert_eq!(starts.len(), 1);
    let event: Value =
        serde_json::from_slice(starts[0].value.as_deref().unwrap_or_default()).expect("json");
    assert_eq!(event["input"], json!({"who": "<script>"}));
    assert_eq!(event["name"], "from-console");
    // Invalid input is StartExecution's own error.
    let (st, _, body) = request(
        addr,
        "POST",
        "/console/api/machines/hello/start",
        &jsonh,
        r#"{"input":"{oops"}"#,
    )
    .await;
    assert_eq!(st, 400);
    assert!(body.contains("InvalidExecutionInput"), "{body}");

    let (st, _, body) = request(
        addr,
        "GET",
        "/console/api/machines/hello/executions?status=RUNNING",
        &auth,
        "",
    )
    .await;
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["executions"][0]["executionArn"], json!(arn));
    let q = format!("/console/api/execution?arn={}", arn.replace(':', "%3A"));
    let (st, _, body) = request(addr, "GET", &q, &auth, "").await;
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["input"], json!({"who": "<script>"}));
    assert_eq!(v["hasLogRecord"], false);

    // The API is unchanged next to the console.
    let (st, _, _) = request(addr, "GET", "/", &[], "").await;
    assert_eq!(st, 400, "GET / is not an operation");
    c.stop().await;
}

#[tokio::test]
async fn event_stream_sends_updates_and_ends_at_stop() {
    let (addr, c, _) = serve().await;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET /console/api/events?machine=hello HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: {}\r\n\r\n",
        basic(USER, SECRET)
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let read_until = |needle: &'static str| {
        let needle = needle.to_string();
        move |seen: &String| seen.contains(&needle)
    };
    async fn fill(
        s: &mut tokio::net::TcpStream,
        buf: &mut [u8],
        seen: &mut String,
        done: impl Fn(&String) -> bool,
    ) {
        while !done(seen) {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(buf))
                .await
                .expect("data in time")
                .expect("read");
            assert!(n > 0, "stream ended early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    fill(&mut s, &mut buf, &mut seen, read_until("event: hello")).await;
    assert!(seen
        .to_ascii_lowercase()
        .contains("content-type: text/event-stream"));
    assert!(seen.contains("retry: 500"));
    // Another machine's update is filtered out; hello's arrives.
    let other = json!({"executionArn": "arn:aws:states:us-east-1:123456789012:express:other:x:u", "status": "FAILED"});
    assert_eq!(
        c.store().apply_result(other.to_string().as_bytes()),
        console::store::Applied::Applied
    );
    let mine = json!({"executionArn": "arn:aws:states:us-east-1:123456789012:express:hello:e1:u",
                      "name": "e1", "status": "SUCCEEDED", "startDate": "2026-01-01T00:00:00.000Z"});
    c.store().apply_result(mine.to_string().as_bytes());
    fill(&mut s, &mut buf, &mut seen, read_until("event: execution")).await;
    fill(&mut s, &mut buf, &mut seen, read_until("\n\n")).await;
    let data_line = seen
        .lines()
        .skip_while(|l| *l != "event: execution")
        .find_map(|l| l.strip_prefix("data: "))
        .expect("data line");
    let v: Value = serde_json::from_str(data_line).expect("json");
    assert_eq!(v["name"], "e1");
    assert_eq!(v["status"], "SUCCEEDED");
    assert!(!seen.contains(":express:other:"), "filtered by machine");
    // Stop ends the stream (a graceful shutdown does not wait for browsers).
    c.stop().await;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("stream ended at stop")
        .expect("read");
}
