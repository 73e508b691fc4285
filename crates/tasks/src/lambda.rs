//! Lambda-style functions over HTTP.
//!
//! Two resources reach a function that the configuration maps to an HTTP endpoint:
//! - `arn:aws:states:::lambda:invoke` with Parameters `FunctionName` (a name, `name:qualifier`,
//!   a partial ARN `<account>:function:<name>` or a full function ARN, optionally qualified) and
//!   `Payload` (default `{}`); it returns AWS's shape
//!   `{ExecutedVersion, Payload, SdkHttpMetadata {AllHttpHeaders, HttpHeaders, HttpStatusCode},
//!   SdkResponseMetadata {RequestId}, StatusCode}`;
//! - a plain function ARN `arn:aws:lambda:<region>:<account>:function:<name>[:qualifier]` as the
//!   Resource; the task input is the payload and the function's payload is the result.
//!
//! The payload is POSTed as JSON with `Idempotency-Key`, `X-Amz-Invocation-Type: RequestResponse`
//! and `X-Expressway-Function: <name>[:qualifier]`. The function answers with its result as JSON.
//!
//! Error mapping (AWS's names where AWS has one):
//! | the function answers | error | cause |
//! |---|---|---|
//! | header `X-Amz-Function-Error`, or non-2xx, with a JSON body holding `errorType` | the `errorType` | the body |
//! | header `X-Amz-Function-Error` without `errorType` | `Lambda.Unknown` | the body |
//! | 429 | `Lambda.TooManyRequestsException` | status and body |
//! | 404 (no `errorType`) | `Lambda.ResourceNotFoundException` | status and body |
//! | other 4xx | `Lambda.AWSLambdaException` | status and body |
//! | 5xx | `Lambda.ServiceException` | status and body |
//! | no answer: refused, timeout, allowlist | `Lambda.SdkClientException` | what happened |
//! | function not in the configuration | `Lambda.ResourceNotFoundException` | the name |

use crate::auth::Applied;
use crate::client::{form_encode, headers_json, parse_uri, truncate, Inbound, Outbound};
use crate::http_task::{runtime_error, MAX_CAUSE_BYTES};
use crate::Shared;
use bytes::Bytes;
use expressway_engine::{TaskError, TaskRequest};
use hyper::header::{HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::{HeaderMap, Method};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The optimised Lambda integration.
pub const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";
/// Plain function ARNs start with this.
pub const FUNCTION_ARN_PREFIX: &str = "arn:aws:lambda:";

/// A function reference split into name and qualifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    /// The function name.
    pub name: String,
    /// Version or alias, if any.
    pub qualifier: Option<String>,
}

impl FunctionRef {
    /// Parses a name, `name:qualifier`, `<account>:function:<name>[:q]` or a full function ARN.
    pub fn parse(s: &str) -> Option<FunctionRef> {
        let rest = if let Some(arn) = s.strip_prefix(FUNCTION_ARN_PREFIX) {
            // <region>:<account>:function:<name>[:q]
            let mut it = arn.splitn(4, ':');
            let (_region, _account, kind, rest) = (it.next()?, it.next()?, it.next()?, it.next()?);
            (kind == "function").then_some(rest)?
        } else if let Some((_, rest)) = s.split_once(":function:") {
            rest
        } else {
            s
        };
        let (name, qualifier) = match rest.split_once(':') {
            Some((n, q)) if !q.is_empty() && !q.contains(':') => (n, Some(q.to_string())),
            Some(_) => return None,
            None => (rest, None),
        };
        if name.is_empty() {
            return None;
        }
        Some(FunctionRef {
            name: name.to_string(),
            qualifier,
        })
    }

    fn display(&self) -> String {
        match &self.qualifier {
            Some(q) => format!("{}:{q}", self.name),
            None => self.name.clone(),
        }
    }

    fn executed_version(&self) -> String {
        match &self.qualifier {
            Some(q) if q.bytes().all(|b| b.is_ascii_digit()) => q.clone(),
            _ => "$LATEST".to_string(),
        }
    }
}

/// The metric label of a plain function ARN: the unqualified ARN when the function is configured,
/// one shared label otherwise (definitions could name arbitrarily many unknown functions).
pub(crate) fn metric_label(shared: &Shared, resource: &str) -> String {
    match FunctionRef::parse(resource) {
        Some(f) if shared.function_known(&f) => {
            let base = match &f.qualifier {
                Some(q) => resource
                    .strip_suffix(q.as_str())
                    .and_then(|r| r.strip_suffix(':'))
                    .unwrap_or(resource),
                None => resource,
            };
            base.to_string()
        }
        _ => format!("{FUNCTION_ARN_PREFIX}*"),
    }
}

/// `arn:aws:states:::lambda:invoke`.
pub(crate) async fn invoke_optimised(
    shared: Arc<Shared>,
    req: TaskRequest,
) -> Result<Value, TaskError> {
    let name = req
        .input
        .get("FunctionName")
        .and_then(Value::as_str)
        .ok_or_else(|| runtime_error("lambda:invoke needs a string FunctionName"))?;
    let function = FunctionRef::parse(name)
        .ok_or_else(|| runtime_error(format!("'{name}' is not a function name or ARN")))?;
    let payload = req
        .input
        .get("Payload")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let response = call(&shared, &req, &function, &payload).await?;
    let headers = headers_json(&response.headers);
    let single: Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.clone(), v.get(0).cloned().unwrap_or(Value::Null)))
        .collect();
    let request_id = response
        .headers
        .get("x-amzn-requestid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| req.idempotency_key.clone());
    let executed = response
        .headers
        .get("x-amz-executed-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| function.executed_version());
    let status = response.status.as_u16();
    Ok(json!({
        "ExecutedVersion": executed,
        "Payload": payload_value(&response),
        "SdkHttpMetadata": {
            "AllHttpHeaders": headers,
            "HttpHeaders": single,
            "HttpStatusCode": status,
        },
        "SdkResponseMetadata": {"RequestId": request_id},
        "StatusCode": status,
    }))
}

/// A plain function ARN as the Resource: the input is the payload, the payload is the result.
pub(crate) async fn invoke_arn(shared: Arc<Shared>, req: TaskRequest) -> Result<Value, TaskError> {
    let function = FunctionRef::parse(&req.resource).ok_or_else(|| {
        TaskError::new(
            "Lambda.ResourceNotFoundException",
            format!("'{}' is not a function ARN", req.resource),
        )
    })?;
    let response = call(&shared, &req, &function, &req.input).await?;
    Ok(payload_value(&response))
}

fn payload_value(response: &Inbound) -> Value {
    if response.body.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&response.body).into_owned()))
}

async fn call(
    shared: &Shared,
    req: &TaskRequest,
    function: &FunctionRef,
    payload: &Value,
) -> Result<Inbound, TaskError> {
    let target = shared.function(function).ok_or_else(|| {
        TaskError::new(
            "Lambda.ResourceNotFoundException",
            format!(
                "Function not found: '{}' has no endpoint in the task configuration's functions",
                function.display()
            ),
        )
    })?;
    let mut url = target.url().to_string();
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    headers.insert(
        HeaderName::from_static("x-amz-invocation-type"),
        HeaderValue::from_static("RequestResponse"),
    );
    if let Ok(v) = HeaderValue::from_str(&function.display()) {
        headers.insert(HeaderName::from_static("x-expressway-function"), v);
    }
    let timeout = shared.timeout_for(req);
    let connection = match target.connection() {
        Some(c) => Some(shared.connection(c)?),
        None => None,
    };
    let applied = match &connection {
        Some(conn) => conn
            .authorize(&mut headers, &shared.client, &shared.clock, timeout)
            .await
            .map_err(|e| TaskError::new("Lambda.SdkClientException", e.to_string()))?,
        None => Applied::default(),
    };
    if !applied.query.is_empty() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&form_encode(&applied.query));
    }
    let uri =
        parse_uri(&url).map_err(|e| TaskError::new("Lambda.SdkClientException", e.to_string()))?;
    let redact = applied.redact;
    let body = match payload {
        Value::Object(m) if !applied.body.is_empty() => {
            let mut m = m.clone();
            for (k, v) in applied.body {
                m.insert(k, Value::String(v));
            }
            Value::Object(m).to_string()
        }
        other => other.to_string(),
    };
    shared.set_idempotency_key(&mut headers, req);
    let response = shared
        .client
        .send(Outbound {
            method: Method::POST,
            uri,
            headers,
            body: Bytes::from(body),
            timeout,
        })
        .await
        .map_err(|e| TaskError::new("Lambda.SdkClientException", e.to_string()))?;
    let mut response = response;
    if !redact.is_empty() {
        let text = redact.text(String::from_utf8_lossy(&response.body).into_owned());
        response.body = Bytes::from(text);
        for value in response.headers.values_mut() {
            let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
            let redacted = redact.text(text.clone());
            if redacted != text {
                if let Ok(v) = HeaderValue::from_str(&redacted) {
                    *value = v;
                }
            }
        }
    }
    let function_error = response.headers.contains_key("x-amz-function-error");
    if response.status.is_success() && !function_error {
        return Ok(response);
    }
    if response.status.as_u16() == 401 {
        if let Some(conn) = &connection {
            conn.invalidate().await;
        }
    }
    Err(function_failure(&response, function_error))
}

fn function_failure(response: &Inbound, function_error: bool) -> TaskError {
    let body_text = truncate(
        String::from_utf8_lossy(&response.body).into_owned(),
        MAX_CAUSE_BYTES,
    );
    let parsed: Option<Value> = serde_json::from_slice(&response.body).ok();
    if let Some(error_type) = parsed
        .as_ref()
        .and_then(|v| v.get("errorType"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        return TaskError::new(error_type, body_text);
    }
    if function_error {
        return TaskError::new("Lambda.Unknown", body_text);
    }
    let code = response.status.as_u16();
    let name = match code {
        429 => "Lambda.TooManyRequestsException",
        404 => "Lambda.ResourceNotFoundException",
        400..=499 => "Lambda.AWSLambdaException",
        _ => "Lambda.ServiceException",
    };
    TaskError::new(
        name,
        truncate(
            json!({"StatusCode": code, "Body": body_text}).to_string(),
            MAX_CAUSE_BYTES,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, q: Option<&str>) -> Option<FunctionRef> {
        Some(FunctionRef {
            name: name.into(),
            qualifier: q.map(str::to_string),
        })
    }

    #[test]
    fn parses_function_references() {
        assert_eq!(FunctionRef::parse("Validate"), f("Validate", None));
        assert_eq!(
            FunctionRef::parse("Validate:prod"),
            f("Validate", Some("prod"))
        );
        assert_eq!(
            FunctionRef::parse("arn:aws:lambda:us-east-1:123456789012:function:Validate"),
            f("Validate", None)
        );
        assert_eq!(
            FunctionRef::parse("arn:aws:lambda:us-east-1:123456789012:function:Validate:7"),
            f("Validate", Some("7"))
        );
        assert_eq!(
            FunctionRef::parse("123456789012:function:Validate:$LATEST"),
            f("Validate", Some("$LATEST"))
        );
        assert_eq!(
            FunctionRef::parse("arn:aws:lambda:us-east-1:1:layer:x"),
            None
        );
        assert_eq!(FunctionRef::parse("a:b:c"), None);
        assert_eq!(FunctionRef::parse(""), None);
        assert_eq!(
            FunctionRef::parse("Validate:7").map(|f| f.executed_version()),
            Some("7".into())
        );
    }
}
