use crate::support::*;
use expressway_engine::TaskDispatcher;
use expressway_tasks::HTTP_INVOKE;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

// Secrets come from CARGO_PKG_NAME, which cargo sets for test processes: tests never call
// `std::env::set_var`, which races with the resolver's `getenv` in other threads.
const PKG: &str = env!("CARGO_PKG_NAME");

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn basic_auth_from_an_environment_variable() {
    let server = TestServer::start(|_| Reply::json(200, json!({}))).await;
    let reg = registry(
        r#"{"connections": {"orders": {"basic": {"username": "svc", "password": {"fromEnv": "CARGO_PKG_NAME"}}}}}"#,
    );
    reg.invoke(request(
        HTTP_INVOKE,
        json!({"ApiEndpoint": server.url("/"), "Method": "GET",
               "Authentication": {"ConnectionArn": "arn:aws:events:us-east-1:123456789012:connection/orders/1a2b"}}),
    ))
    .await
    .expect("success");
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some(format!("Basic {}", b64(&format!("svc:{PKG}"))))
    );
}

#[tokio::test]
async fn api_key_from_a_file_overrides_a_same_named_header() {
    let path = std::env::temp_dir().join(format!("expressway-apikey-{}", std::process::id()));
    std::fs::write(&path, "k-123\n").expect("write");
    let server = TestServer::start(|_| Reply::json(200, json!({}))).await;
    let reg = registry(&format!(
        r#"{{"connections": {{"stock": {{"api_key": {{"name": "x-api-key", "value": {{"fromFile": {}}}}}}}}}}}"#,
        serde_json::to_string(&path).expect("path")
    ));
    reg.invoke(request(
        HTTP_INVOKE,
        json!({"ApiEndpoint": server.url("/"), "Method": "GET", "Headers": {"x-api-key": "from-definition"},
               "Authentication": {"ConnectionArn": "stock"}}),
    ))
    .await
    .expect("success");
    let _ = std::fs::remove_file(&path);
    let r = &server.requests()[0];
    assert_eq!(r.header("x-api-key").as_deref(), Some("k-123"));
    assert_eq!(r.headers.get_all("x-api-key").iter().count(), 1);
}

#[tokio::test]
async fn missing_secret_fails_without_revealing_anything() {
    let server = TestServer::start(|_| Reply::json(200, json!({}))).await;
    let reg = registry(
        r#"{"connections": {"c": {"basic": {"username": "svc-user", "password": {"fromEnv": "EXPRESSWAY_TEST_SURELY_UNSET_PW"}}}}}"#,
    );
    let e = reg
        .invoke(request(
            HTTP_INVOKE,
            json!({"ApiEndpoint": server.url("/"), "Method": "GET", "Authentication": {"ConnectionArn": "c"}}),
        ))
        .await
        .expect_err("no secret");
    assert_eq!(e.error, "Expressway.Http.AuthorizationFailed");
    let cause = e.cause.unwrap_or_default();
    assert!(cause.contains("EXPRESSWAY_TEST_SURELY_UNSET_PW"), "{cause}");
    assert!(!cause.contains("svc-user"), "{cause}");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn oauth_token_is_fetched_once_and_reused() {
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = issued.clone();
    let server = TestServer::start(move |r| {
        if r.path_and_query == "/token" {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            Reply::json(
                200,
                json!({"access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": 3600}),
            )
        } else if r.header("authorization").as_deref() == Some("Bearer tok-0") {
            Reply::json(200, json!({"hello": "world"}))
        } else {
            Reply::json(401, json!({"message": "bad token"}))
        }
    })
    .await;
    let reg = registry(&format!(
        r#"{{"connections": {{"billing": {{"oauth": {{"token_url": "{}", "client_id": "cid",
             "client_secret": {{"fromEnv": "CARGO_PKG_NAME"}}, "scope": "payments read"}}}}}}}}"#,
        server.url("/token")
    ));
    for _ in 0..3 {
        let out = reg
            .invoke(request(
                HTTP_INVOKE,
                json!({"ApiEndpoint": server.url("/api"), "Method": "GET",
                       "Authentication": {"ConnectionArn": "arn:aws:events:us-east-1:1:connection/billing/x"}}),
            ))
            .await
            .expect("success");
        assert_eq!(out["ResponseBody"]["hello"], "world");
    }
    assert_eq!(
        issued.load(Ordering::SeqCst),
        1,
        "one token for three calls"
    );
    let reqs = server.requests();
    let token_req = &reqs[0];
    assert_eq!(token_req.method, "POST");
    assert_eq!(
        token_req.header("authorization"),
        Some(format!("Basic {}", b64(&format!("cid:{PKG}"))))
    );
    assert_eq!(
        std::str::from_utf8(&token_req.body).expect("utf8"),
        "grant_type=client_credentials&scope=payments%20read"
    );
    assert!(reqs[1..]
        .iter()
        .all(|r| r.header("idempotency-key").is_some()));
}

#[tokio::test]
async fn oauth_token_is_refetched_after_a_401() {
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = issued.clone();
    let server = TestServer::start(move |r| {
        if r.path_and_query == "/token" {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            Reply::json(
                200,
                json!({"access_token": format!("tok-{n}"), "expires_in": "3600"}),
            )
        } else if r.header("authorization").as_deref() == Some("Bearer tok-1") {
            Reply::json(200, json!({}))
        } else {
            Reply::json(401, json!({}))
        }
    })
    .await;
    let reg = registry(&format!(
        r#"{{"connections": {{"c": {{"oauth": {{"token_url": "{}", "client_id": "a", "client_secret": "b"}}}}}}}}"#,
        server.url("/token")
    ));
    let input = json!({"ApiEndpoint": server.url("/api"), "Method": "GET", "Authentication": {"ConnectionArn": "c"}});
    let e = reg
        .invoke(request(HTTP_INVOKE, input.clone()))
        .await
        .expect_err("401 with the first token");
    assert_eq!(e.error, "States.Http.StatusCode.401");
    reg.invoke(request(HTTP_INVOKE, input))
        .await
        .expect("second token works");
    assert_eq!(issued.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn failing_token_endpoint_is_an_authorization_error() {
    let server = TestServer::start(|_| {
        Reply::json(
            400,
            json!({"error": "invalid_client", "echo": "cid:topsecret"}),
        )
    })
    .await;
    let reg = registry(&format!(
        r#"{{"connections": {{"c": {{"oauth": {{"token_url": "{}", "client_id": "cid", "client_secret": "topsecret"}}}}}}}}"#,
        server.url("/token")
    ));
    let e = reg
        .invoke(request(
            HTTP_INVOKE,
            json!({"ApiEndpoint": server.url("/api"), "Method": "GET", "Authentication": {"ConnectionArn": "c"}}),
        ))
        .await
        .expect_err("token fails");
    assert_eq!(e.error, "Expressway.Http.AuthorizationFailed");
    assert!(!e.cause.unwrap_or_default().contains("topsecret"));
}

#[tokio::test]
async fn echoed_credentials_are_redacted_from_results_and_causes() {
    let server = TestServer::start(|r| {
        let key = r.header("x-api-key").unwrap_or_default();
        let status = if r.path_and_query == "/fail" {
            400
        } else {
            200
        };
        Reply::json(status, json!({"youSent": key})).header("x-echo", &key)
    })
    .await;
    let reg = registry(
        r#"{"connections": {"k": {"api_key": {"name": "x-api-key", "value": {"fromEnv": "CARGO_PKG_NAME"}}}}}"#,
    );
    let call = |path: &str| {
        request(
            HTTP_INVOKE,
            json!({"ApiEndpoint": server.url(path), "Method": "GET", "Authentication": {"ConnectionArn": "k"}}),
        )
    };
    let out = reg.invoke(call("/ok")).await.expect("success");
    assert_eq!(out["ResponseBody"]["youSent"], "<redacted>");
    assert_eq!(out["Headers"]["x-echo"], json!(["<redacted>"]));
    let e = reg.invoke(call("/fail")).await.expect_err("400");
    assert!(!e.cause.unwrap_or_default().contains(PKG));
    assert_eq!(
        server.requests()[0].header("x-api-key").as_deref(),
        Some(PKG)
    );
}

/// A wall clock the test moves by hand (only token expiry reads it).
struct ManualClock(std::sync::atomic::AtomicI64);

impl expressway_engine::Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    fn sleep(&self, d: std::time::Duration) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

#[tokio::test]
async fn oauth_token_is_refreshed_shortly_before_it_expires() {
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = issued.clone();
    let server = TestServer::start(move |r| {
        if r.path_and_query == "/token" {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            Reply::json(
                200,
                json!({"access_token": format!("tok-{n}"), "expires_in": 60}),
            )
        } else {
            Reply::json(200, json!({"auth": r.header("authorization")}))
        }
    })
    .await;
    let config = expressway_tasks::TaskConfig::from_json_str(&format!(
        r#"{{"connections": {{"c": {{"oauth": {{"token_url": "{}", "client_id": "a", "client_secret": "b"}}}}}}}}"#,
        server.url("/token")
    ))
    .expect("config");
    let clock = Arc::new(ManualClock(std::sync::atomic::AtomicI64::new(1_000_000)));
    let reg = config
        .build_registry(clock.clone(), None)
        .expect("registry");
    let input = json!({"ApiEndpoint": server.url("/api"), "Method": "GET", "Authentication": {"ConnectionArn": "c"}});
    let auth = |v: serde_json::Value| v["ResponseBody"]["auth"].as_str().map(str::to_string);
    let first = reg
        .invoke(request(HTTP_INVOKE, input.clone()))
        .await
        .expect("ok");
    assert_eq!(auth(first).as_deref(), Some("Bearer <redacted>"));
    // 29 s later the token (60 s lifetime, refreshed 30 s early) is still used...
    clock.0.fetch_add(29_000, Ordering::SeqCst);
    reg.invoke(request(HTTP_INVOKE, input.clone()))
        .await
        .expect("ok");
    assert_eq!(issued.load(Ordering::SeqCst), 1);
    // ...2 s after that it is refreshed.
    clock.0.fetch_add(2_000, Ordering::SeqCst);
    reg.invoke(request(HTTP_INVOKE, input)).await.expect("ok");
    assert_eq!(issued.load(Ordering::SeqCst), 2);
    let sent: Vec<Option<String>> = server
        .requests()
        .iter()
        .filter(|r| r.path_and_query == "/api")
        .map(|r| r.header("authorization"))
        .collect();
    assert_eq!(
        sent,
        vec![
            Some("Bearer tok-0".to_string()),
            Some("Bearer tok-0".to_string()),
            Some("Bearer tok-1".to_string())
        ]
    );
}

#[tokio::test]
async fn connection_invocation_parameters_are_merged() {
    let server = TestServer::start(|_| Reply::json(200, json!({}))).await;
    let reg = registry(&format!(
        r#"{{"connections": {{"p": {{
              "headers": {{"x-tenant": "acme", "x-custom": "from-connection"}},
              "query_parameters": {{"region": "eu west"}},
              "body_parameters": {{"account": {{"fromEnv": "CARGO_PKG_NAME"}}, "id": "conn"}}
           }}}},
           "functions": {{"F": {{"url": "{}", "connection": "p"}}}}}}"#,
        server.url("/fn?v=1")
    ));
    let base = json!({"ApiEndpoint": server.url("/api"), "Method": "POST",
                      "Headers": {"X-Custom": "from-definition"},
                      "QueryParameters": {"q": "1"},
                      "Authentication": {"ConnectionArn": "p"}});
    let mut json_body = base.clone();
    json_body["RequestBody"] = json!({"id": "def", "n": 1});
    reg.invoke(request(HTTP_INVOKE, json_body))
        .await
        .expect("json body");
    let mut form = base.clone();
    form["RequestBody"] = json!({"id": "def", "n": 1});
    form["Transform"] = json!({"RequestBodyEncoding": "URL_ENCODED"});
    reg.invoke(request(HTTP_INVOKE, form))
        .await
        .expect("form body");
    reg.invoke(request(
        "arn:aws:lambda:us-east-1:123456789012:function:F",
        json!({"order": 7}),
    ))
    .await
    .expect("function");

    let reqs = server.requests();
    let r = &reqs[0];
    assert_eq!(r.path_and_query, "/api?q=1&region=eu%20west");
    assert_eq!(r.header("x-tenant").as_deref(), Some("acme"));
    assert_eq!(r.header("x-custom").as_deref(), Some("from-connection"));
    assert_eq!(r.json(), json!({"id": "conn", "n": 1, "account": PKG}));
    assert_eq!(
        std::str::from_utf8(&reqs[1].body).expect("utf8"),
        format!("n=1&account={PKG}&id=conn")
    );
    assert_eq!(reqs[2].path_and_query, "/fn?v=1&region=eu%20west");
    assert_eq!(reqs[2].header("x-tenant").as_deref(), Some("acme"));
    assert_eq!(
        reqs[2].json(),
        json!({"order": 7, "account": PKG, "id": "conn"})
    );
}
