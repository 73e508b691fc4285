use crate::support::*;
use expressway_engine::{Status, TaskDispatcher};
use expressway_tasks::LAMBDA_INVOKE;
use serde_json::{json, Value};

const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:Echo";

async fn functions() -> (TestServer, expressway_tasks::Registry) {
    let server = TestServer::start(|r| match r.path_and_query.as_str() {
        "/echo" => Reply::json(200, json!({"got": r.json(), "fn": r.header("x-expressway-function")})),
        "/v7" => Reply::json(200, json!("seven")),
        "/validate" => Reply::json(
            200,
            json!({"errorType": "ValidationError", "errorMessage": "quantity must be positive", "trace": []}),
        )
        .header("X-Amz-Function-Error", "Unhandled"),
        "/crash" => Reply::text(200, "Runtime exited").header("X-Amz-Function-Error", "Unhandled"),
        "/typed500" => Reply::json(500, json!({"errorType": "PaymentDeclined", "errorMessage": "card expired"})),
        "/throttled" => Reply::text(429, "slow down"),
        _ => Reply::text(502, "bad gateway"),
    })
    .await;
    let reg = registry(&format!(
        r#"{{"functions": {{
            "Echo": "{}", "Echo:7": "{}", "Validate": "{}", "Crash": "{}",
            "Charge": {{"url": "{}"}}, "Busy": "{}", "Broken": "{}"
        }}}}"#,
        server.url("/echo"),
        server.url("/v7"),
        server.url("/validate"),
        server.url("/crash"),
        server.url("/typed500"),
        server.url("/throttled"),
        server.url("/broken"),
    ));
    (server, reg)
}

#[tokio::test]
async fn plain_function_arn_returns_the_payload_itself() {
    let (server, reg) = functions().await;
    let out = reg
        .invoke(request(ARN, json!({"order": 1})))
        .await
        .expect("success");
    assert_eq!(out, json!({"got": {"order": 1}, "fn": "Echo"}));
    let r = &server.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(r.header("idempotency-key").is_some());
    // A qualified ARN prefers the `name:qualifier` entry.
    let out = reg
        .invoke(request(&format!("{ARN}:7"), json!({})))
        .await
        .expect("success");
    assert_eq!(out, json!("seven"));
}

#[tokio::test]
async fn lambda_invoke_returns_the_aws_shape() {
    let (_server, reg) = functions().await;
    let out = reg
        .invoke(request(
            LAMBDA_INVOKE,
            json!({"FunctionName": ARN, "Payload": {"a": 1}}),
        ))
        .await
        .expect("success");
    assert_eq!(out["Payload"], json!({"got": {"a": 1}, "fn": "Echo"}));
    assert_eq!(out["StatusCode"], 200);
    assert_eq!(out["ExecutedVersion"], "$LATEST");
    assert_eq!(out["SdkHttpMetadata"]["HttpStatusCode"], 200);
    assert_eq!(
        out["SdkHttpMetadata"]["HttpHeaders"]["content-type"],
        "application/json"
    );
    assert!(out["SdkResponseMetadata"]["RequestId"].is_string());
    let out = reg
        .invoke(request(LAMBDA_INVOKE, json!({"FunctionName": "Echo:7"})))
        .await
        .expect("success");
    assert_eq!(out["Payload"], "seven");
    assert_eq!(out["ExecutedVersion"], "7");
}

#[tokio::test]
async fn function_errors_map_to_their_error_type() {
    let (_server, reg) = functions().await;
    let cases: [(&str, &str); 6] = [
        ("Validate", "ValidationError"),
        ("Crash", "Lambda.Unknown"),
        ("Charge", "PaymentDeclined"),
        ("Busy", "Lambda.TooManyRequestsException"),
        ("Broken", "Lambda.ServiceException"),
        ("Nope", "Lambda.ResourceNotFoundException"),
    ];
    for (name, expected) in cases {
        let e = reg
            .invoke(request(
                LAMBDA_INVOKE,
                json!({"FunctionName": name, "Payload": {}}),
            ))
            .await
            .expect_err(name);
        assert_eq!(e.error, expected, "{name}");
    }
    let e = reg
        .invoke(request(
            "arn:aws:lambda:us-east-1:123456789012:function:Validate",
            json!({}),
        ))
        .await
        .expect_err("validation");
    assert_eq!(e.error, "ValidationError");
    let cause: Value = serde_json::from_str(e.cause.as_deref().expect("cause")).expect("JSON");
    assert_eq!(cause["errorMessage"], "quantity must be positive");
}

#[tokio::test]
async fn unreachable_function_is_an_sdk_client_exception() {
    let port = closed_port().await;
    let reg = registry(&format!(
        r#"{{"functions": {{"Gone": "http://127.0.0.1:{port}/"}}}}"#
    ));
    let e = reg
        .invoke(request(
            "arn:aws:lambda:us-east-1:123456789012:function:Gone",
            json!({}),
        ))
        .await
        .expect_err("refused");
    assert_eq!(e.error, "Lambda.SdkClientException");
}

#[tokio::test]
async fn function_errors_drive_retry_and_catch() {
    let (server, reg) = functions().await;
    let definition = json!({
        "StartAt": "Validate",
        "States": {
            "Validate": {
                "Type": "Task",
                "Resource": "arn:aws:lambda:us-east-1:123456789012:function:Validate",
                "Retry": [{"ErrorEquals": ["ValidationError"], "IntervalSeconds": 1,
                           "MaxAttempts": 1, "BackoffRate": 1.0, "MaxDelaySeconds": 1}],
                "Catch": [{"ErrorEquals": ["ValidationError"], "ResultPath": "$.error", "Next": "Rejected"}],
                "End": true
            },
            "Rejected": {"Type": "Pass", "End": true}
        }
    });
    let out = run(&definition, json!({"id": 9}), reg).await;
    assert_eq!(out.status, Status::Succeeded, "{out:?}");
    let output = out.output.expect("output");
    assert_eq!(output["id"], 9);
    assert_eq!(output["error"]["Error"], "ValidationError");
    assert_eq!(server.requests().len(), 2, "one retry, then caught");
}
