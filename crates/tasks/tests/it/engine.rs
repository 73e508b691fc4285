//! HTTP errors through the engine's Retry and Catch (real time, one-second intervals).

use crate::support::*;
use expressway_engine::Status;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[tokio::test]
async fn retries_a_503_with_backoff_then_succeeds() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let server = TestServer::start(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::text(503, "busy")
        } else {
            Reply::json(200, json!({"stock": 5}))
        }
    })
    .await;
    let definition = json!({
        "StartAt": "Check",
        "States": {"Check": {
            "Type": "Task", "Resource": "arn:aws:states:::http:invoke",
            "Parameters": {"ApiEndpoint": server.url("/stock"), "Method": "GET"},
            "ResultSelector": {"stock.$": "$.ResponseBody.stock"},
            "Retry": [{"ErrorEquals": ["States.Http.StatusCode.503"], "IntervalSeconds": 1,
                       "BackoffRate": 1.0, "MaxAttempts": 3}],
            "End": true
        }}
    });
    let out = run(&definition, json!({}), registry("{}")).await;
    assert_eq!(out.status, Status::Succeeded, "{out:?}");
    assert_eq!(out.output, Some(json!({"stock": 5})));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    let arn = "arn:aws:states:us-east-1:123456789012:express:test:run-1:00000000-0000-4000-8000-000000000001";
    for (attempt, r) in reqs.iter().enumerate() {
        assert_eq!(
            r.header("idempotency-key"),
            Some(expressway_engine::idempotency_key(
                arn,
                "Check",
                attempt as u32
            )),
        );
    }
}

#[tokio::test]
async fn catch_routes_on_http_error_names() {
    let server = TestServer::start(|_| Reply::json(404, json!({"message": "gone"}))).await;
    let port = closed_port().await;
    let definition = |url: String| {
        json!({
            "StartAt": "Call",
            "States": {
                "Call": {
                    "Type": "Task", "Resource": "arn:aws:states:::http:invoke",
                    "Parameters": {"ApiEndpoint": url, "Method": "GET"},
                    "Catch": [
                        {"ErrorEquals": ["States.Http.StatusCode.404"], "ResultPath": "$.err", "Next": "NotFound"},
                        {"ErrorEquals": ["States.Http.Socket"], "ResultPath": "$.err", "Next": "Unreachable"}
                    ],
                    "End": true
                },
                "NotFound": {"Type": "Pass", "Result": "not-found", "ResultPath": "$.route", "End": true},
                "Unreachable": {"Type": "Pass", "Result": "unreachable", "ResultPath": "$.route", "End": true}
            }
        })
    };
    let out = run(&definition(server.url("/x")), json!({}), registry("{}")).await;
    assert_eq!(out.status, Status::Succeeded, "{out:?}");
    let output = out.output.expect("output");
    assert_eq!(output["route"], "not-found");
    assert_eq!(output["err"]["Error"], "States.Http.StatusCode.404");

    let out = run(
        &definition(format!("http://127.0.0.1:{port}/x")),
        json!({}),
        registry("{}"),
    )
    .await;
    assert_eq!(out.output.expect("output")["route"], "unreachable");
}

#[tokio::test]
async fn uncaught_http_error_fails_the_execution() {
    let server = TestServer::start(|_| Reply::text(500, "boom")).await;
    let definition = json!({
        "StartAt": "Call",
        "States": {"Call": {
            "Type": "Task", "Resource": "arn:aws:states:::http:invoke",
            "Parameters": {"ApiEndpoint": server.url("/"), "Method": "POST", "RequestBody.$": "$"},
            "End": true
        }}
    });
    let out = run(&definition, json!({"a": 1}), registry("{}")).await;
    assert_eq!(out.status, Status::Failed);
    assert_eq!(out.error.as_deref(), Some("States.Http.StatusCode.500"));
    assert_eq!(server.requests()[0].json(), json!({"a": 1}));
}

#[tokio::test]
async fn task_timeout_seconds_bounds_the_request() {
    let server = TestServer::start(|_| {
        Reply::json(200, json!({})).delayed(std::time::Duration::from_secs(10))
    })
    .await;
    let definition = json!({
        "StartAt": "Call",
        "States": {"Call": {
            "Type": "Task", "Resource": "arn:aws:states:::http:invoke",
            "Parameters": {"ApiEndpoint": server.url("/slow"), "Method": "GET"},
            "TimeoutSeconds": 1,
            "End": true
        }}
    });
    let out = run(&definition, json!({}), registry("{}")).await;
    assert_eq!(out.status, Status::Failed);
    // The engine's timer and the request's own timeout are both 1 s; either name is correct.
    let error = out.error.unwrap_or_default();
    assert!(
        error == "States.Timeout" || error == "States.Http.Socket",
        "{error}"
    );
}
