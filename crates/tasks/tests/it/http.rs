use crate::support::*;
use expressway_engine::{TaskDispatcher, TaskError};
use expressway_tasks::HTTP_INVOKE;
use serde_json::{json, Value};
use std::time::Duration;

async fn call(config: &str, input: Value) -> Result<Value, TaskError> {
    registry(config).invoke(request(HTTP_INVOKE, input)).await
}

#[tokio::test]
async fn json_response_is_parsed_and_shaped_like_aws() {
    let server = TestServer::start(|_| Reply::json(200, json!({"ok": true, "n": [1, 2]}))).await;
    let out = call(
        "{}",
        json!({"ApiEndpoint": server.url("/items"), "Method": "GET"}),
    )
    .await
    .expect("success");
    assert_eq!(out["StatusCode"], 200);
    assert_eq!(out["StatusText"], "OK");
    assert_eq!(out["ResponseBody"], json!({"ok": true, "n": [1, 2]}));
    assert_eq!(out["Headers"]["content-type"], json!(["application/json"]));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path_and_query, "/items");
}

#[tokio::test]
async fn non_json_body_is_a_string() {
    let server = TestServer::start(|_| Reply::text(201, "created <b>1</b>")).await;
    let out = call(
        "{}",
        json!({"ApiEndpoint": server.url("/x"), "Method": "POST"}),
    )
    .await
    .expect("success");
    assert_eq!(out["StatusCode"], 201);
    assert_eq!(out["StatusText"], "Created");
    assert_eq!(out["ResponseBody"], "created <b>1</b>");
}

#[tokio::test]
async fn request_parts_headers_query_and_json_body() {
    let server = TestServer::start(|_| Reply::json(200, json!({}))).await;
    call(
        "{}",
        json!({
            "ApiEndpoint": server.url("/orders?fixed=1"),
            "Method": "put",
            "Headers": {"X-Custom": "a b", "X-Num": 7},
            "QueryParameters": {"q": "x y", "tags": ["a", "b"]},
            "RequestBody": {"id": 1, "items": ["p"]}
        }),
    )
    .await
    .expect("success");
    let r = &server.requests()[0];
    assert_eq!(r.method, "PUT");
    assert_eq!(
        r.path_and_query,
        "/orders?fixed=1&q=x%20y&tags%5B0%5D=a&tags%5B1%5D=b"
    );
    assert_eq!(r.header("x-custom").as_deref(), Some("a b"));
    assert_eq!(r.header("x-num").as_deref(), Some("7"));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(r.json(), json!({"id": 1, "items": ["p"]}));
}

#[tokio::test]
async fn url_encoded_body_with_each_array_format() {
    let server = TestServer::start(|_| Reply::json(200, json!({}))).await;
    let cases = [
        ("INDICES", "a%5B0%5D=1&a%5B1%5D=2&s=x"),
        ("REPEAT", "a=1&a=2&s=x"),
        ("COMMAS", "a=1%2C2&s=x"),
        ("BRACKETS", "a%5B%5D=1&a%5B%5D=2&s=x"),
    ];
    for (format, _) in cases {
        call(
            "{}",
            json!({
                "ApiEndpoint": server.url("/form"),
                "Method": "POST",
                "RequestBody": {"a": [1, 2], "s": "x"},
                "Transform": {"RequestBodyEncoding": "URL_ENCODED",
                              "RequestEncodingOptions": {"ArrayFormat": format}}
            }),
        )
        .await
        .expect("success");
    }
    let reqs = server.requests();
    for (r, (format, expected)) in reqs.iter().zip(cases) {
        assert_eq!(
            std::str::from_utf8(&r.body).expect("utf8"),
            expected,
            "{format}"
        );
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/x-www-form-urlencoded")
        );
    }
}

#[tokio::test]
async fn non_2xx_fails_with_the_status_code_error() {
    let server = TestServer::start(|r| {
        if r.path_and_query == "/missing" {
            Reply::json(404, json!({"message": "no such order"}))
        } else {
            Reply::text(503, "busy")
        }
    })
    .await;
    let e = call(
        "{}",
        json!({"ApiEndpoint": server.url("/missing"), "Method": "GET"}),
    )
    .await
    .expect_err("404");
    assert_eq!(e.error, "States.Http.StatusCode.404");
    let cause: Value =
        serde_json::from_str(e.cause.as_deref().expect("cause")).expect("JSON cause");
    assert_eq!(cause["StatusCode"], 404);
    assert_eq!(cause["ResponseBody"]["message"], "no such order");
    let e = call(
        "{}",
        json!({"ApiEndpoint": server.url("/busy"), "Method": "GET"}),
    )
    .await
    .expect_err("503");
    assert_eq!(e.error, "States.Http.StatusCode.503");
}

#[tokio::test]
async fn timeout_is_a_socket_error() {
    let server =
        TestServer::start(|_| Reply::json(200, json!({})).delayed(Duration::from_secs(5))).await;
    let e = call(
        r#"{"defaults": {"timeout_seconds": 0.2}}"#,
        json!({"ApiEndpoint": server.url("/slow"), "Method": "GET"}),
    )
    .await
    .expect_err("times out");
    assert_eq!(e.error, "States.Http.Socket");
    assert!(e.cause.as_deref().unwrap_or("").contains("within"), "{e:?}");

    // The Task's own TimeoutSeconds takes precedence over the default.
    let mut req = request(
        HTTP_INVOKE,
        json!({"ApiEndpoint": server.url("/slow"), "Method": "GET"}),
    );
    req.timeout = Some(Duration::from_millis(200));
    let e = registry("{}").invoke(req).await.expect_err("times out");
    assert_eq!(e.error, "States.Http.Socket");
}

#[tokio::test]
async fn connection_refused_is_a_socket_error() {
    let port = closed_port().await;
    let e = call(
        "{}",
        json!({"ApiEndpoint": format!("http://127.0.0.1:{port}/x?token=SECRET"), "Method": "GET"}),
    )
    .await
    .expect_err("refused");
    assert_eq!(e.error, "States.Http.Socket");
    let cause = e.cause.unwrap_or_default();
    assert!(cause.contains(&format!("127.0.0.1:{port}")), "{cause}");
    assert!(!cause.contains("SECRET"), "{cause}");
}

#[tokio::test]
async fn allowlist_refuses_hosts_outside_it() {
    let server = TestServer::start(|_| Reply::json(200, json!({}))).await;
    let url = server.url("/x");
    let e = call(
        r#"{"egress_allowlist": ["api.example.com", "10.0.0.0/8"]}"#,
        json!({"ApiEndpoint": url, "Method": "GET"}),
    )
    .await
    .expect_err("refused");
    assert_eq!(e.error, "States.Http.Socket");
    assert!(
        e.cause
            .as_deref()
            .unwrap_or("")
            .contains("egress allowlist"),
        "{e:?}"
    );
    // A name that resolves outside the CIDRs is refused at resolution time.
    let e = call(
        r#"{"egress_allowlist": ["10.0.0.0/8"]}"#,
        json!({"ApiEndpoint": format!("http://localhost:{}/x", server.addr.port()), "Method": "GET"}),
    )
    .await
    .expect_err("refused");
    assert_eq!(e.error, "States.Http.Socket");
    assert!(
        e.cause
            .as_deref()
            .unwrap_or("")
            .contains("egress allowlist"),
        "{e:?}"
    );
    assert!(server.requests().is_empty());

    // Allowed by CIDR, and by a name whose addresses are in the CIDR.
    call(
        r#"{"egress_allowlist": ["127.0.0.0/8"]}"#,
        json!({"ApiEndpoint": url, "Method": "GET"}),
    )
    .await
    .expect("allowed");
    call(
        r#"{"egress_allowlist": ["localhost"]}"#,
        json!({"ApiEndpoint": format!("http://localhost:{}/x", server.addr.port()), "Method": "GET"}),
    )
    .await
    .expect("allowed by name");
}

#[tokio::test]
async fn idempotency_key_is_sent_and_stable_per_attempt() {
    let server = TestServer::start(|_| Reply::json(200, json!({}))).await;
    let reg = registry("{}");
    let input = json!({"ApiEndpoint": server.url("/x"), "Method": "POST", "Headers": {"Idempotency-Key": "mine"}});
    let mk = |attempt: u32| {
        let mut r = request(HTTP_INVOKE, input.clone());
        r.attempt = attempt;
        r.idempotency_key =
            expressway_engine::idempotency_key(&r.execution_arn, &r.state_name, attempt);
        r
    };
    for attempt in [0, 0, 1] {
        reg.invoke(mk(attempt)).await.expect("success");
    }
    let keys: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").expect("key present"))
        .collect();
    assert_eq!(keys[0], mk(0).idempotency_key);
    assert_eq!(
        keys[0], keys[1],
        "same (execution, state, attempt) -> same key"
    );
    assert_ne!(keys[1], keys[2], "another attempt -> another key");
    assert_eq!(
        server.requests()[0]
            .headers
            .get_all("idempotency-key")
            .iter()
            .count(),
        1
    );
}

#[tokio::test]
async fn invalid_parameters_are_runtime_errors() {
    for input in [
        json!({"Method": "GET"}),
        json!({"ApiEndpoint": "http://127.0.0.1:1/", "Method": "TRACE"}),
        json!({"ApiEndpoint": "not a url", "Method": "GET"}),
        json!({"ApiEndpoint": "http://127.0.0.1:1/", "Method": "GET", "Headers": {"Content-Length": "5"}}),
        json!({"ApiEndpoint": "http://127.0.0.1:1/", "Method": "GET", "Authentication": {"ConnectionArn": "nope"}}),
        json!({"ApiEndpoint": "http://127.0.0.1:1/", "Method": "POST", "RequestBody": [1],
               "Transform": {"RequestBodyEncoding": "URL_ENCODED"}}),
    ] {
        let e = call("{}", input.clone()).await.expect_err("invalid");
        assert_eq!(e.error, "States.Runtime", "{input}");
    }
}

#[tokio::test]
async fn oversized_responses_fail() {
    let server = TestServer::start(|_| Reply::text(200, &"x".repeat(5000))).await;
    let e = call(
        r#"{"defaults": {"max_response_bytes": 1000}}"#,
        json!({"ApiEndpoint": server.url("/big"), "Method": "GET"}),
    )
    .await
    .expect_err("too large");
    assert_eq!(e.error, "States.Http.Socket");
    assert!(e
        .cause
        .as_deref()
        .unwrap_or("")
        .contains("exceeds 1000 bytes"));
}
