//! `arn:aws:states:::http:invoke`: AWS's HTTP Task.
//!
//! Parameters: `ApiEndpoint` (required, absolute `https://` or `http://` URL), `Method` (required: GET, POST, PUT,
//! DELETE, PATCH, OPTIONS, HEAD), `Headers`, `QueryParameters`, `RequestBody`,
//! `Transform {RequestBodyEncoding: NONE|URL_ENCODED, RequestEncodingOptions {ArrayFormat:
//! INDICES|REPEAT|COMMAS|BRACKETS}}` and `Authentication {ConnectionArn}` (optional here; AWS
//! requires it). The result is `{Headers: {name: [values]}, ResponseBody, StatusCode, StatusText}`;
//! `ResponseBody` is parsed when the response is JSON.
//!
//! Errors: a non-2xx status fails with `States.Http.StatusCode.<code>` (cause: the result object as
//! JSON); no response in time, a refused connection, an egress-allowlist refusal or an oversized
//! response fail with `States.Http.Socket`; invalid parameters fail with `States.Runtime`; a
//! connection that cannot authorize (missing secret, failing token endpoint) fails with
//! `Expressway.Http.AuthorizationFailed`.

use crate::auth::Applied;
use crate::client::{form_encode, headers_json, parse_uri, truncate, Outbound, SendError};
use crate::Shared;
use bytes::Bytes;
use expressway_engine::{TaskError, TaskRequest};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{HeaderMap, Method, StatusCode};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The resource ARN.
pub const HTTP_INVOKE: &str = "arn:aws:states:::http:invoke";

/// Error when no response arrives (timeout, refused connection, allowlist refusal).
pub const SOCKET_ERROR: &str = "States.Http.Socket";
/// Error when a connection cannot produce credentials.
pub const AUTHORIZATION_FAILED: &str = "Expressway.Http.AuthorizationFailed";
/// Headers that frame the message; the client sets them.
const MANAGED_HEADERS: [&str; 6] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
];
/// AWS limits `Cause` to 32,768 characters.
pub(crate) const MAX_CAUSE_BYTES: usize = 32_768;

/// How arrays are URL-encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayFormat {
    /// `a[0]=x&a[1]=y` (AWS's default).
    Indices,
    /// `a=x&a=y`.
    Repeat,
    /// `a=x,y`.
    Commas,
    /// `a[]=x&a[]=y`.
    Brackets,
}

pub(crate) fn runtime_error(cause: impl Into<String>) -> TaskError {
    TaskError::new("States.Runtime", cause)
}

/// Flattens a JSON object into form data (`a[b]=c` for nested objects), percent-encoded.
pub fn url_encode(value: &Value, format: ArrayFormat) -> Result<String, String> {
    Ok(form_encode(&url_pairs(value, format)?))
}

fn url_pairs(value: &Value, format: ArrayFormat) -> Result<Vec<(String, String)>, String> {
    let Value::Object(map) = value else {
        return Err("URL_ENCODED needs a JSON object".into());
    };
    let mut pairs = Vec::new();
    for (k, v) in map {
        flatten(k.clone(), v, format, &mut pairs);
    }
    Ok(pairs)
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn flatten(key: String, v: &Value, format: ArrayFormat, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(format!("{key}[{k}]"), v, format, out);
            }
        }
        Value::Array(items) => {
            let scalars = items.iter().all(|i| !i.is_object() && !i.is_array());
            match format {
                ArrayFormat::Commas if scalars => {
                    let joined: Vec<String> = items.iter().map(scalar_text).collect();
                    out.push((key, joined.join(",")));
                }
                ArrayFormat::Repeat if scalars => {
                    for i in items {
                        out.push((key.clone(), scalar_text(i)));
                    }
                }
                ArrayFormat::Brackets if scalars => {
                    for i in items {
                        out.push((format!("{key}[]"), scalar_text(i)));
                    }
                }
                // INDICES, and nested structures in any format.
                _ => {
                    for (n, i) in items.iter().enumerate() {
                        flatten(format!("{key}[{n}]"), i, format, out);
                    }
                }
            }
        }
        scalar => out.push((key, scalar_text(scalar))),
    }
}

fn parse_array_format(transform: Option<&Value>) -> Result<ArrayFormat, TaskError> {
    let f = transform
        .and_then(|t| t.get("RequestEncodingOptions"))
        .and_then(|o| o.get("ArrayFormat"));
    match f {
        None => Ok(ArrayFormat::Indices),
        Some(Value::String(s)) => match s.as_str() {
            "INDICES" => Ok(ArrayFormat::Indices),
            "REPEAT" => Ok(ArrayFormat::Repeat),
            "COMMAS" => Ok(ArrayFormat::Commas),
            "BRACKETS" => Ok(ArrayFormat::Brackets),
            other => Err(runtime_error(format!(
                "ArrayFormat must be INDICES, REPEAT, COMMAS or BRACKETS, not '{other}'"
            ))),
        },
        Some(_) => Err(runtime_error("ArrayFormat must be a string")),
    }
}

/// The HTTP Task handler.
pub(crate) async fn invoke(shared: Arc<Shared>, req: TaskRequest) -> Result<Value, TaskError> {
    let Some(p) = req.input.as_object() else {
        return Err(runtime_error(
            "The HTTP Task parameters must be a JSON object",
        ));
    };
    let endpoint = p
        .get("ApiEndpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| runtime_error("The HTTP Task needs a string ApiEndpoint"))?;
    let method = match p.get("Method").and_then(Value::as_str) {
        Some(m) => match m.to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "DELETE" => Method::DELETE,
            "PATCH" => Method::PATCH,
            "OPTIONS" => Method::OPTIONS,
            "HEAD" => Method::HEAD,
            _ => {
                return Err(runtime_error(format!(
                    "Method must be GET, POST, PUT, DELETE, PATCH, OPTIONS or HEAD, not '{m}'"
                )))
            }
        },
        None => return Err(runtime_error("The HTTP Task needs a string Method")),
    };
    let transform = p.get("Transform");
    let format = parse_array_format(transform)?;
    let url_encoded = match transform.and_then(|t| t.get("RequestBodyEncoding")) {
        None => false,
        Some(Value::String(s)) if s == "NONE" => false,
        Some(Value::String(s)) if s == "URL_ENCODED" => true,
        Some(_) => {
            return Err(runtime_error(
                "RequestBodyEncoding must be NONE or URL_ENCODED",
            ))
        }
    };

    let mut url = endpoint.to_string();
    match p.get("QueryParameters") {
        None | Some(Value::Null) => {}
        Some(q @ Value::Object(m)) if !m.is_empty() => {
            let query = url_encode(q, format).map_err(runtime_error)?;
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&query);
        }
        Some(Value::Object(_)) => {}
        Some(_) => return Err(runtime_error("QueryParameters must be a JSON object")),
    }
    // Validated before any credentials are fetched; parsed again below if the connection adds
    // query parameters.
    let mut uri = parse_uri(&url).map_err(|e| runtime_error(format!("ApiEndpoint: {e}")))?;

    let mut headers = HeaderMap::new();
    match p.get("Headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let name = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| runtime_error(format!("'{k}' is not a valid header name")))?;
                if MANAGED_HEADERS.contains(&name.as_str()) {
                    return Err(runtime_error(format!(
                        "The header '{k}' is set by Expressway and cannot be given in Headers"
                    )));
                }
                let value = HeaderValue::from_str(&scalar_text(v))
                    .map_err(|_| runtime_error(format!("The value of header '{k}' is invalid")))?;
                headers.append(name, value);
            }
        }
        Some(_) => return Err(runtime_error("Headers must be a JSON object")),
    }

    let connection = match p.get("Authentication").and_then(|a| a.get("ConnectionArn")) {
        None | Some(Value::Null) => None,
        Some(Value::String(arn)) => Some(shared.connection(arn)?),
        Some(_) => {
            return Err(runtime_error(
                "Authentication.ConnectionArn must be a string",
            ))
        }
    };

    let timeout = shared.timeout_for(&req);
    let applied = match &connection {
        Some(conn) => conn
            .authorize(&mut headers, &shared.client, &shared.clock, timeout)
            .await
            .map_err(|e| TaskError::new(AUTHORIZATION_FAILED, e.to_string()))?,
        None => Applied::default(),
    };
    if !applied.query.is_empty() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&form_encode(&applied.query));
        uri = parse_uri(&url).map_err(|e| runtime_error(format!("ApiEndpoint: {e}")))?;
    }
    let redact = applied.redact;

    // Connection body parameters win over the definition's keys.
    let request_body = match (p.get("RequestBody"), applied.body.is_empty()) {
        (None, true) => None,
        (None, false) => Some(Value::Object(Map::new())),
        (Some(b), _) => Some(b.clone()),
    };
    let body = match request_body {
        None => Bytes::new(),
        Some(b) if url_encoded => {
            let mut pairs =
                url_pairs(&b, format).map_err(|e| runtime_error(format!("RequestBody: {e}")))?;
            pairs.retain(|(k, _)| !applied.body.iter().any(|(ck, _)| ck == k));
            pairs.extend(applied.body);
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            Bytes::from(form_encode(&pairs))
        }
        Some(Value::String(s)) => {
            if !headers.contains_key(CONTENT_TYPE) {
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
            }
            Bytes::from(s)
        }
        Some(mut other) => {
            if let Value::Object(m) = &mut other {
                for (k, v) in applied.body {
                    m.insert(k, Value::String(v));
                }
            }
            if !headers.contains_key(CONTENT_TYPE) {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            Bytes::from(other.to_string())
        }
    };
    shared.set_idempotency_key(&mut headers, &req);

    let response = shared
        .client
        .send(Outbound {
            method,
            uri,
            headers,
            body,
            timeout,
        })
        .await
        .map_err(socket_error)?;

    if response.status == StatusCode::UNAUTHORIZED {
        if let Some(conn) = &connection {
            conn.invalidate().await;
        }
    }
    let result = redact.value(result_object(&response));
    if response.status.is_success() {
        Ok(result)
    } else {
        Err(TaskError::new(
            format!("States.Http.StatusCode.{}", response.status.as_u16()),
            truncate(result.to_string(), MAX_CAUSE_BYTES),
        ))
    }
}

pub(crate) fn socket_error(e: SendError) -> TaskError {
    match e {
        SendError::InvalidUrl(m) => runtime_error(format!("ApiEndpoint: {m}")),
        other => TaskError::new(SOCKET_ERROR, other.to_string()),
    }
}

/// Whether the response declares a JSON body.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            let ct = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            ct == "application/json" || ct.ends_with("+json")
        })
        .unwrap_or(false)
}

fn result_object(response: &crate::client::Inbound) -> Value {
    let text = String::from_utf8_lossy(&response.body);
    let body = if is_json(&response.headers) {
        serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into_owned()))
    } else {
        Value::String(text.into_owned())
    };
    let mut out = Map::with_capacity(4);
    out.insert(
        "Headers".into(),
        Value::Object(headers_json(&response.headers)),
    );
    out.insert("ResponseBody".into(), body);
    out.insert("StatusCode".into(), Value::from(response.status.as_u16()));
    out.insert(
        "StatusText".into(),
        Value::String(response.status.canonical_reason().unwrap_or("").to_string()),
    );
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn array_formats() {
        let v = json!({"a": ["x", "y"], "n": 1, "o": {"k": true}});
        let enc = |f| url_encode(&v, f).expect("object");
        assert_eq!(
            enc(ArrayFormat::Indices),
            "a%5B0%5D=x&a%5B1%5D=y&n=1&o%5Bk%5D=true"
        );
        assert_eq!(enc(ArrayFormat::Repeat), "a=x&a=y&n=1&o%5Bk%5D=true");
        assert_eq!(enc(ArrayFormat::Commas), "a=x%2Cy&n=1&o%5Bk%5D=true");
        assert_eq!(
            enc(ArrayFormat::Brackets),
            "a%5B%5D=x&a%5B%5D=y&n=1&o%5Bk%5D=true"
        );
        assert!(url_encode(&json!([1]), ArrayFormat::Indices).is_err());
    }
}
