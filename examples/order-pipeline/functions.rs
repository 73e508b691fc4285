//! The order pipeline's functions and its payment stub, served over HTTP like AWS Lambda.
//!
//! `cargo run -p expressway-tasks --example order-pipeline-functions [-- PORT]` serves, on
//! `127.0.0.1:PORT` (default 9310):
//! - `POST /validate-order`: `{"order_id", "user_id"}` → `{"order_id", "user_id", "valid": true}`,
//!   or a `ValidationError` function error;
//! - `POST /charge-card`: `{"taskToken", "input"}` → `{"accepted": true}` at once, and hands the
//!   token to the payment stub, which answers through the Step Functions API later:
//!   `SendTaskSuccess` after 2 s with `{"charge_id", "user_id"}`; for an order id starting with
//!   `DECLINE`, `SendTaskFailure` with `PaymentDeclined`; for one starting with `SILENT`, two
//!   `SendTaskHeartbeat`s 2 s apart and then nothing;
//! - `POST /ship-package`: → `{"tracking_number": "TRK-<order_id>"}`.
//!
//! The stub calls the API at `$EXPRESSWAY_ENDPOINT` (default `http://127.0.0.1:8083`, where
//! `expressway dev` serves it), as the AWS CLI would (`X-Amz-Target: AWSStepFunctions.SendTask*`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::Duration;
use tokio::net::TcpListener;

/// A function's answer: whether it is a function error, and the JSON body.
pub struct Answer {
    pub function_error: bool,
    pub body: Value,
}

fn ok(body: Value) -> Answer {
    Answer {
        function_error: false,
        body,
    }
}

fn fail(error_type: &str, message: String) -> Answer {
    Answer {
        function_error: true,
        body: json!({"errorType": error_type, "errorMessage": message}),
    }
}

/// The order id of a payload or of a previous `lambda:invoke` result (`{"Payload": {...}}`).
fn order_id(v: &Value) -> &str {
    v.get("order_id")
        .or_else(|| v.get("Payload").and_then(|p| p.get("order_id")))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn validate_order(order: &Value) -> Answer {
    let id = order_id(order);
    if id.is_empty() {
        return fail("ValidationError", "order_id is required".into());
    }
    match order.get("user_id").and_then(Value::as_u64) {
        Some(user) if user > 0 => ok(json!({"order_id": id, "user_id": user, "valid": true})),
        _ => fail(
            "ValidationError",
            format!("order {id}: user_id must be a positive number"),
        ),
    }
}

fn ship_package(req: &Value) -> Answer {
    ok(json!({"tracking_number": format!("TRK-{}", order_id(req))}))
}

/// What the payment stub will send for a token, and when.
#[derive(Debug, Clone, PartialEq)]
pub enum Payment {
    /// SendTaskSuccess with this output.
    Charged(Value),
    /// SendTaskFailure.
    Declined,
    /// Heartbeats, then silence.
    Silent,
}

/// The payment decision for an order (by its id).
pub fn payment_for(input: &Value) -> Payment {
    let id = order_id(input);
    if id.starts_with("DECLINE") {
        Payment::Declined
    } else if id.starts_with("SILENT") {
        Payment::Silent
    } else {
        let user = input
            .get("Payload")
            .and_then(|p| p.get("user_id"))
            .cloned()
            .unwrap_or(Value::Null);
        Payment::Charged(json!({"charge_id": format!("ch_{id}"), "user_id": user}))
    }
}

/// Calls one Step Functions API action (JSON 1.0, as the AWS CLI does; no SigV4, as in dev).
pub async fn call_api(endpoint: &str, action: &str, body: Value) -> Result<String, String> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = hyper::Request::post(endpoint)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", format!("AWSStepFunctions.{action}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let text = response
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(text)
    } else {
        Err(format!("{status}: {text}"))
    }
}

/// The payment stub: answers for `token` through the API at `endpoint`.
pub async fn pay(endpoint: String, token: String, payment: Payment) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (action, body) = match payment {
        Payment::Charged(output) => (
            "SendTaskSuccess",
            json!({"taskToken": token, "output": output.to_string()}),
        ),
        Payment::Declined => (
            "SendTaskFailure",
            json!({"taskToken": token, "error": "PaymentDeclined", "cause": "the card was declined"}),
        ),
        Payment::Silent => {
            for _ in 0..2 {
                report(call_api(&endpoint, "SendTaskHeartbeat", json!({"taskToken": token})).await);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            return;
        }
    };
    report(call_api(&endpoint, action, body).await);
}

fn report(r: Result<String, String>) {
    if let Err(e) = r {
        eprintln!("payment stub: the callback failed: {e}");
    }
}

/// Routes one call; `/charge-card` starts the payment stub for its token.
pub fn handle(path: &str, payload: &Value, endpoint: &str) -> Option<Answer> {
    Some(match path {
        "/validate-order" => validate_order(payload),
        "/ship-package" => ship_package(payload),
        "/charge-card" => {
            let Some(token) = payload.get("taskToken").and_then(Value::as_str) else {
                return Some(fail("InvalidPayload", "taskToken is required".into()));
            };
            let input = payload.get("input").cloned().unwrap_or(Value::Null);
            tokio::spawn(pay(
                endpoint.to_string(),
                token.to_string(),
                payment_for(&input),
            ));
            ok(json!({"accepted": true}))
        }
        _ => return None,
    })
}

/// Serves the functions on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, endpoint: String) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let endpoint = endpoint.clone();
                async move {
                    let path = req.uri().path().to_string();
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let answer = match serde_json::from_slice::<Value>(&body) {
                        Ok(payload) => handle(&path, &payload, &endpoint),
                        Err(e) => Some(fail(
                            "InvalidPayload",
                            format!("the payload is not JSON: {e}"),
                        )),
                    };
                    let (status, answer) = match answer {
                        Some(a) => (200, a),
                        None => (
                            404,
                            ok(json!({"message": format!("no function at {path}")})),
                        ),
                    };
                    let mut resp = hyper::Response::builder()
                        .status(status)
                        .header("content-type", "application/json");
                    if answer.function_error {
                        resp = resp.header("X-Amz-Function-Error", "Unhandled");
                    }
                    Ok::<_, Infallible>(
                        resp.body(Full::new(Bytes::from(answer.body.to_string())))
                            .unwrap_or_default(),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(9310);
    let endpoint = std::env::var("EXPRESSWAY_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:8083".to_string());
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!(
        "order-pipeline functions on http://{}, payment callbacks to {endpoint} (Ctrl-C to stop)",
        listener.local_addr()?
    );
    serve(listener, endpoint).await;
    Ok(())
}
