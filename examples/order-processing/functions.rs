//! The order-processing example's functions: four small "Lambda functions" served over HTTP.
//!
//! `cargo run -p expressway-tasks --example order-functions [-- PORT]` serves them on
//! `127.0.0.1:PORT` (default 9300): `POST /validate-order`, `/check-inventory`, `/charge-payment`,
//! `/reserve-shipping`. Each takes the payload as JSON and answers JSON. A failing function answers
//! like AWS Lambda: header `X-Amz-Function-Error: Unhandled` and body `{"errorType", "errorMessage"}`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::convert::Infallible;
use tokio::net::TcpListener;

/// Stock levels; unknown SKUs have 5 units.
fn stock_of(sku: &str) -> u64 {
    match sku {
        "WIDGET" => 10,
        "GADGET" => 0,
        _ => 5,
    }
}

/// A function's answer: status, whether it is a function error, JSON body.
pub struct Answer {
    pub status: u16,
    pub function_error: bool,
    pub body: Value,
}

fn ok(body: Value) -> Answer {
    Answer {
        status: 200,
        function_error: false,
        body,
    }
}

fn fail(error_type: &str, message: String) -> Answer {
    Answer {
        status: 200,
        function_error: true,
        body: json!({"errorType": error_type, "errorMessage": message}),
    }
}

fn items(order: &Value) -> Vec<(String, u64)> {
    order
        .get("items")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|i| {
                    (
                        i.get("sku")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        i.get("quantity").and_then(Value::as_u64).unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn validate_order(order: &Value) -> Answer {
    let id = order.get("orderId").and_then(Value::as_str).unwrap_or("");
    if id.is_empty() {
        return fail("ValidationError", "orderId is required".into());
    }
    let Some(list) = order
        .get("items")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    else {
        return fail("ValidationError", format!("order {id} has no items"));
    };
    for item in list {
        let sku = item.get("sku").and_then(Value::as_str).unwrap_or("");
        let quantity = item.get("quantity").and_then(Value::as_u64).unwrap_or(0);
        if sku.is_empty() || quantity == 0 {
            return fail(
                "ValidationError",
                format!("order {id}: every item needs a sku and a positive quantity"),
            );
        }
    }
    if order
        .get("total")
        .and_then(Value::as_f64)
        .is_none_or(|t| t <= 0.0)
    {
        return fail(
            "ValidationError",
            format!("order {id}: total must be positive"),
        );
    }
    ok(json!({"valid": true, "itemCount": list.len()}))
}

fn check_inventory(order: &Value) -> Answer {
    let short: Vec<String> = items(order)
        .into_iter()
        .filter(|(sku, q)| *q > stock_of(sku))
        .map(|(sku, _)| sku)
        .collect();
    ok(json!({"inStock": short.is_empty(), "shortSkus": short}))
}

fn charge_payment(req: &Value) -> Answer {
    let id = req
        .get("orderId")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    ok(
        json!({"chargeId": format!("ch_{id}"), "amount": req.get("amount").cloned().unwrap_or(Value::Null)}),
    )
}

fn reserve_shipping(req: &Value) -> Answer {
    let id = req
        .get("orderId")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    ok(json!({"trackingNumber": format!("TRK-{id}")}))
}

/// Routes one call.
pub fn handle(path: &str, payload: &Value) -> Answer {
    match path {
        "/validate-order" => validate_order(payload),
        "/check-inventory" => check_inventory(payload),
        "/charge-payment" => charge_payment(payload),
        "/reserve-shipping" => reserve_shipping(payload),
        _ => Answer {
            status: 404,
            function_error: false,
            body: json!({"message": format!("no function at {path}")}),
        },
    }
}

/// Serves the functions on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let path = req.uri().path().to_string();
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let answer = match serde_json::from_slice::<Value>(&body) {
                    Ok(payload) => handle(&path, &payload),
                    Err(e) => fail("InvalidPayload", format!("the payload is not JSON: {e}")),
                };
                let mut resp = hyper::Response::builder()
                    .status(answer.status)
                    .header("content-type", "application/json");
                if answer.function_error {
                    resp = resp.header("X-Amz-Function-Error", "Unhandled");
                }
                Ok::<_, Infallible>(
                    resp.body(Full::new(Bytes::from(answer.body.to_string())))
                        .unwrap_or_default(),
                )
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
        .unwrap_or(9300);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!(
        "order functions listening on http://{} (Ctrl-C to stop)",
        listener.local_addr()?
    );
    serve(listener).await;
    Ok(())
}
