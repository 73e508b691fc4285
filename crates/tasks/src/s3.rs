//! `arn:aws:states:::s3:getObject`, `s3:listObjectsV2` and `s3:putObject` against any
//! S3-compatible store (AWS S3, MinIO, Ceph, moto...), signed with SigV4 by the `aws-sigv4` crate.
//!
//! These are the resources a Distributed Map's `ItemReader` and `ResultWriter` call (see the
//! engine's `exec/distributed_map`); a Task state may use them too. Parameters and results follow
//! the S3 API's names:
//!
//! | resource | parameters | result |
//! |---|---|---|
//! | `s3:getObject` | `Bucket`, `Key`, `VersionId`?, `Range`? | `Body` (text; base64 with `ExpresswayBodyEncoding: "base64"`), `ContentLength`, `ContentType`, `ETag`, `LastModified` |
//! | `s3:listObjectsV2` | `Bucket`, `Prefix`?, `Delimiter`?, `MaxKeys`?, `StartAfter`?, `ContinuationToken`? | `Contents` [{`Key`, `Size`, `Etag`, `LastModified` (epoch seconds), `StorageClass`}], `CommonPrefixes`, `IsTruncated`, `NextContinuationToken`, `KeyCount` |
//! | `s3:putObject` | `Bucket`, `Key`, `Body` (a string as it is, any other JSON serialised), `ContentType`? | `ETag` |
//!
//! `Contents` entries have the shape AWS gives a Distributed Map's items (`Etag`, epoch seconds).
//! An S3 error response becomes the task error `S3.<Code>` (`S3.NoSuchKey`, `S3.NoSuchBucket`,
//! `S3.AccessDenied`, ...) with the store's message as the cause; no response at all is
//! `States.Http.Socket`, as for the other HTTP resources.
//!
//! Configuration: the `s3` section of [`crate::TaskConfig`] ([`S3Config`]); without it, AWS S3
//! in `AWS_REGION` (default `us-east-1`) with the credentials of `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.

use crate::client::{parse_uri, Outbound};
use crate::config::{S3Config, Secret};
use crate::http_task::{runtime_error, socket_error};
use crate::Shared;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use bytes::Bytes;
use expressway_asl::timestamp::parse_timestamp;
use expressway_engine::{TaskError, TaskRequest};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper::{HeaderMap, Method};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::SystemTime;

/// `arn:aws:states:::s3:getObject`.
pub const S3_GET_OBJECT: &str = "arn:aws:states:::s3:getObject";
/// `arn:aws:states:::s3:listObjectsV2`.
pub const S3_LIST_OBJECTS_V2: &str = "arn:aws:states:::s3:listObjectsV2";
/// `arn:aws:states:::s3:putObject`.
pub const S3_PUT_OBJECT: &str = "arn:aws:states:::s3:putObject";

/// The parameter asking `s3:getObject` for the body as base64 (binary objects, e.g. manifests
/// of other formats).
const BODY_ENCODING: &str = "ExpresswayBodyEncoding";

/// Where and how to reach the store, resolved from [`S3Config`] and the environment.
pub(crate) struct S3Store {
    endpoint: Option<String>,
    region: String,
    path_style: bool,
    access_key_id: Option<Secret>,
    secret_access_key: Option<Secret>,
    session_token: Option<Secret>,
}

impl S3Store {
    pub(crate) fn new(config: Option<&S3Config>) -> S3Store {
        let env = |name: &str| {
            Some(Secret::Env {
                from_env: name.into(),
            })
        };
        match config {
            Some(c) => S3Store {
                endpoint: c.endpoint.clone(),
                region: c.region.clone().unwrap_or_else(default_region),
                path_style: c.path_style,
                access_key_id: c.access_key_id.clone().or_else(|| env("AWS_ACCESS_KEY_ID")),
                secret_access_key: c
                    .secret_access_key
                    .clone()
                    .or_else(|| env("AWS_SECRET_ACCESS_KEY")),
                session_token: c.session_token.clone(),
            },
            None => S3Store {
                endpoint: None,
                region: default_region(),
                path_style: false,
                access_key_id: env("AWS_ACCESS_KEY_ID"),
                secret_access_key: env("AWS_SECRET_ACCESS_KEY"),
                session_token: std::env::var("AWS_SESSION_TOKEN")
                    .is_ok()
                    .then(|| Secret::Env {
                        from_env: "AWS_SESSION_TOKEN".into(),
                    }),
            },
        }
    }

    /// The URL of `bucket`/`key` (key already percent-encoded) plus `query`.
    fn url(&self, bucket: &str, encoded_key: &str, query: &str) -> String {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        match &self.endpoint {
            Some(e) if self.path_style => {
                format!("{}/{bucket}/{encoded_key}{q}", e.trim_end_matches('/'))
            }
            Some(e) => {
                let (scheme, host) = e
                    .trim_end_matches('/')
                    .split_once("://")
                    .unwrap_or(("https", e));
                format!("{scheme}://{bucket}.{host}/{encoded_key}{q}")
            }
            None if self.path_style => {
                format!(
                    "https://s3.{}.amazonaws.com/{bucket}/{encoded_key}{q}",
                    self.region
                )
            }
            None => format!(
                "https://{bucket}.s3.{}.amazonaws.com/{encoded_key}{q}",
                self.region
            ),
        }
    }

    fn credentials(&self) -> Result<Credentials, TaskError> {
        let reveal = |s: &Option<Secret>, what: &str| -> Result<String, TaskError> {
            match s {
                Some(s) => s
                    .reveal()
                    .map_err(|e| runtime_error(format!("S3 {what}: {e}"))),
                None => Err(runtime_error(format!(
                    "S3 {what} is not configured (the task configuration's s3 section or the AWS_* environment)"
                ))),
            }
        };
        let token = match &self.session_token {
            Some(t) => Some(
                t.reveal()
                    .map_err(|e| runtime_error(format!("S3 session token: {e}")))?,
            ),
            None => None,
        };
        Ok(Credentials::new(
            reveal(&self.access_key_id, "access key id")?,
            reveal(&self.secret_access_key, "secret access key")?,
            token,
            None,
            "expressway-task-config",
        ))
    }
}

fn default_region() -> String {
    std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())
}

/// S3's key encoding: every byte but the unreserved ones and `/` percent-encoded.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Query-string encoding (everything but the unreserved characters).
fn encode_query(s: &str) -> String {
    encode_key(s).replace('/', "%2F")
}

fn params(req: &TaskRequest) -> Result<&Map<String, Value>, TaskError> {
    req.input.as_object().ok_or_else(|| {
        runtime_error(format!(
            "{}: the parameters must be a JSON object",
            req.resource
        ))
    })
}

fn string_param<'a>(
    p: &'a Map<String, Value>,
    name: &str,
    resource: &str,
) -> Result<Option<&'a str>, TaskError> {
    match p.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(runtime_error(format!(
            "{resource}: {name} must be a string"
        ))),
    }
}

fn required<'a>(
    p: &'a Map<String, Value>,
    name: &str,
    resource: &str,
) -> Result<&'a str, TaskError> {
    string_param(p, name, resource)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| runtime_error(format!("{resource}: the parameter {name} is required")))
}

/// A parameter sent as a header: refused when it cannot be one (control characters).
fn header_value(v: &str, name: &str, resource: &str) -> Result<HeaderValue, TaskError> {
    HeaderValue::from_str(v).map_err(|_| {
        runtime_error(format!(
            "{resource}: {name} holds characters a header cannot carry"
        ))
    })
}

/// One signed request to the store; the response when it is a 2xx, else the S3 error.
async fn send(
    shared: &Shared,
    store: &S3Store,
    req: &TaskRequest,
    method: Method,
    url: String,
    mut headers: HeaderMap,
    body: Bytes,
) -> Result<crate::client::Inbound, TaskError> {
    let uri = parse_uri(&url).map_err(socket_error)?;
    if let Some(authority) = uri.authority() {
        if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
            headers.insert(HOST, v);
        }
    }
    shared.set_idempotency_key(&mut headers, req);
    let identity = store.credentials()?.into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&store.region)
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| runtime_error(format!("S3 signing: {e}")))?
        .into();
    let header_pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    let signable = SignableRequest::new(
        method.as_str(),
        &url,
        header_pairs.into_iter(),
        SignableBody::Bytes(&body),
    )
    .map_err(|e| runtime_error(format!("S3 signing: {e}")))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| runtime_error(format!("S3 signing: {e}")))?
        .into_parts();
    let (signed_headers, _) = instructions.into_parts();
    for h in signed_headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name().as_bytes()),
            HeaderValue::from_str(h.value()),
        ) {
            headers.insert(name, value);
        }
    }
    let response = shared
        .client
        .send(Outbound {
            method,
            uri,
            headers,
            body,
            timeout: shared.timeout_for(req),
        })
        .await
        .map_err(socket_error)?;
    if response.status.is_success() {
        Ok(response)
    } else {
        Err(s3_error(response.status.as_u16(), &response.body))
    }
}

/// `S3.<Code>` from an S3 error document (`<Error><Code>..</Code><Message>..</Message>`), or
/// from the status when the body has none.
fn s3_error(status: u16, body: &[u8]) -> TaskError {
    let text = String::from_utf8_lossy(body);
    let doc = roxmltree::Document::parse(&text).ok();
    let field = |name: &str| {
        doc.as_ref().and_then(|d| {
            d.descendants()
                .find(|n| n.has_tag_name(name))
                .and_then(|n| n.text())
                .map(str::to_string)
        })
    };
    let code = field("Code").unwrap_or_else(|| match status {
        403 => "AccessDenied".into(),
        404 => "NotFound".into(),
        _ => format!("StatusCode.{status}"),
    });
    let message = field("Message").unwrap_or_else(|| format!("HTTP status {status}"));
    TaskError::new(format!("S3.{code}"), message)
}

/// Copies the response headers `(field, header)` that are present into `out` as strings.
fn copy_headers(out: &mut Map<String, Value>, headers: &HeaderMap, fields: &[(&str, &str)]) {
    for (field, header) in fields {
        if let Some(v) = headers.get(*header).and_then(|v| v.to_str().ok()) {
            out.insert((*field).into(), Value::from(v));
        }
    }
}

pub(crate) async fn get_object(
    shared: Arc<Shared>,
    store: Arc<S3Store>,
    req: TaskRequest,
) -> Result<Value, TaskError> {
    let p = params(&req)?;
    let bucket = required(p, "Bucket", S3_GET_OBJECT)?;
    let key = required(p, "Key", S3_GET_OBJECT)?;
    let base64 = string_param(p, BODY_ENCODING, S3_GET_OBJECT)? == Some("base64");
    let query = match string_param(p, "VersionId", S3_GET_OBJECT)? {
        Some(v) => format!("versionId={}", encode_query(v)),
        None => String::new(),
    };
    let mut headers = HeaderMap::new();
    if let Some(range) = string_param(p, "Range", S3_GET_OBJECT)? {
        headers.insert(
            hyper::header::RANGE,
            header_value(range, "Range", S3_GET_OBJECT)?,
        );
    }
    let url = store.url(bucket, &encode_key(key), &query);
    let response = send(
        &shared,
        &store,
        &req,
        Method::GET,
        url,
        headers,
        Bytes::new(),
    )
    .await?;
    let body = if base64 {
        base64::engine::general_purpose::STANDARD.encode(&response.body)
    } else {
        String::from_utf8(response.body.to_vec()).map_err(|_| {
            runtime_error(format!(
                "s3:getObject: the object {bucket}/{key} is not UTF-8 text"
            ))
        })?
    };
    let mut out = Map::new();
    out.insert("Body".into(), Value::String(body));
    out.insert("ContentLength".into(), Value::from(response.body.len()));
    copy_headers(
        &mut out,
        &response.headers,
        &[
            ("ContentType", "content-type"),
            ("ETag", "etag"),
            ("LastModified", "last-modified"),
            ("VersionId", "x-amz-version-id"),
        ],
    );
    Ok(Value::Object(out))
}

pub(crate) async fn list_objects_v2(
    shared: Arc<Shared>,
    store: Arc<S3Store>,
    req: TaskRequest,
) -> Result<Value, TaskError> {
    let p = params(&req)?;
    let bucket = required(p, "Bucket", S3_LIST_OBJECTS_V2)?;
    // Sorted by name, as SigV4's canonical query string is.
    let mut query = vec![("list-type".to_string(), "2".to_string())];
    for (param, name) in [
        ("ContinuationToken", "continuation-token"),
        ("Delimiter", "delimiter"),
        ("Prefix", "prefix"),
        ("StartAfter", "start-after"),
    ] {
        if let Some(v) = string_param(p, param, S3_LIST_OBJECTS_V2)? {
            query.push((name.into(), v.into()));
        }
    }
    match p.get("MaxKeys") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_u64().is_some() => {
            query.push(("max-keys".into(), n.to_string()));
        }
        Some(_) => {
            return Err(runtime_error(
                "s3:listObjectsV2: MaxKeys must be a non-negative integer",
            ))
        }
    }
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_query(v)))
        .collect::<Vec<_>>()
        .join("&");
    let url = store.url(bucket, "", &query);
    let response = send(
        &shared,
        &store,
        &req,
        Method::GET,
        url,
        HeaderMap::new(),
        Bytes::new(),
    )
    .await?;
    parse_list(&response.body)
}

/// A `ListBucketResult` document as the task's result.
fn parse_list(body: &[u8]) -> Result<Value, TaskError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| runtime_error("s3:listObjectsV2: the response is not UTF-8"))?;
    let doc = roxmltree::Document::parse(text)
        .map_err(|e| runtime_error(format!("s3:listObjectsV2: the response is not XML: {e}")))?;
    let root = doc.root_element();
    let child_text = |node: roxmltree::Node<'_, '_>, name: &str| {
        node.children()
            .find(|n| n.has_tag_name(name))
            .and_then(|n| n.text())
            .map(str::to_string)
    };
    let mut contents = Vec::new();
    let mut prefixes = Vec::new();
    for node in root.children().filter(|n| n.is_element()) {
        match node.tag_name().name() {
            "Contents" => {
                let mut item = Map::new();
                if let Some(etag) = child_text(node, "ETag") {
                    item.insert("Etag".into(), Value::String(etag));
                }
                item.insert(
                    "Key".into(),
                    Value::String(child_text(node, "Key").unwrap_or_default()),
                );
                if let Some(lm) = child_text(node, "LastModified") {
                    let secs = parse_timestamp(&lm).map(|t| t.timestamp());
                    item.insert(
                        "LastModified".into(),
                        secs.map(Value::from).unwrap_or(Value::String(lm)),
                    );
                }
                let size = child_text(node, "Size")
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
                item.insert("Size".into(), Value::from(size));
                if let Some(class) = child_text(node, "StorageClass") {
                    item.insert("StorageClass".into(), Value::String(class));
                }
                contents.push(Value::Object(item));
            }
            "CommonPrefixes" => {
                if let Some(prefix) = child_text(node, "Prefix") {
                    prefixes.push(json!({ "Prefix": prefix }));
                }
            }
            _ => {}
        }
    }
    let mut out = Map::new();
    out.insert("Contents".into(), Value::Array(contents));
    if !prefixes.is_empty() {
        out.insert("CommonPrefixes".into(), Value::Array(prefixes));
    }
    out.insert(
        "IsTruncated".into(),
        Value::Bool(child_text(root, "IsTruncated").as_deref() == Some("true")),
    );
    if let Some(t) = child_text(root, "NextContinuationToken") {
        out.insert("NextContinuationToken".into(), Value::String(t));
    }
    if let Some(n) = child_text(root, "KeyCount").and_then(|s| s.parse::<u64>().ok()) {
        out.insert("KeyCount".into(), Value::from(n));
    }
    for field in ["Name", "Prefix"] {
        if let Some(v) = child_text(root, field) {
            out.insert(field.into(), Value::String(v));
        }
    }
    Ok(Value::Object(out))
}

pub(crate) async fn put_object(
    shared: Arc<Shared>,
    store: Arc<S3Store>,
    req: TaskRequest,
) -> Result<Value, TaskError> {
    let p = params(&req)?;
    let bucket = required(p, "Bucket", S3_PUT_OBJECT)?;
    let key = required(p, "Key", S3_PUT_OBJECT)?;
    let (body, default_type) = match p.get("Body") {
        None | Some(Value::Null) => (Bytes::new(), "binary/octet-stream"),
        Some(Value::String(s)) => (Bytes::from(s.clone()), "text/plain; charset=utf-8"),
        Some(other) => (Bytes::from(other.to_string()), "application/json"),
    };
    let content_type = string_param(p, "ContentType", S3_PUT_OBJECT)?.unwrap_or(default_type);
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        header_value(content_type, "ContentType", S3_PUT_OBJECT)?,
    );
    let url = store.url(bucket, &encode_key(key), "");
    let response = send(&shared, &store, &req, Method::PUT, url, headers, body).await?;
    let mut out = Map::new();
    copy_headers(
        &mut out,
        &response.headers,
        &[("ETag", "etag"), ("VersionId", "x-amz-version-id")],
    );
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_per_segment() {
        assert_eq!(encode_key("a b/c+d/é.json"), "a%20b/c%2Bd/%C3%A9.json");
        assert_eq!(encode_query("in/put"), "in%2Fput");
    }

    #[test]
    fn urls_follow_the_addressing_style() {
        let mut store = S3Store::new(None);
        store.region = "eu-west-1".into();
        assert_eq!(
            store.url("b", "k.json", ""),
            "https://b.s3.eu-west-1.amazonaws.com/k.json"
        );
        store.endpoint = Some("http://127.0.0.1:9000/".into());
        store.path_style = true;
        assert_eq!(
            store.url("b", "", "list-type=2"),
            "http://127.0.0.1:9000/b/?list-type=2"
        );
        store.path_style = false;
        assert_eq!(store.url("b", "k", ""), "http://b.127.0.0.1:9000/k");
    }

    #[test]
    fn parameters_sent_as_headers_are_refused_when_they_cannot_be_headers() {
        let e = header_value("bytes=0-1\r\nx: y", "Range", S3_GET_OBJECT).expect_err("refused");
        assert_eq!(e.error, "States.Runtime");
        assert!(e.cause.as_deref().unwrap_or("").contains("Range"), "{e:?}");
        assert!(header_value("bytes=0-1", "Range", S3_GET_OBJECT).is_ok());
    }

    #[test]
    fn error_documents_name_the_code() {
        let e = s3_error(
            404,
            b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>",
        );
        assert_eq!(e.error, "S3.NoSuchKey");
        assert_eq!(
            e.cause.as_deref(),
            Some("The specified key does not exist.")
        );
        assert_eq!(s3_error(503, b"").error, "S3.StatusCode.503");
    }

    #[test]
    fn a_listing_has_the_item_shape_of_a_distributed_map() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>in/</Prefix>
<KeyCount>1</KeyCount><MaxKeys>1</MaxKeys><IsTruncated>true</IsTruncated>
<NextContinuationToken>tok</NextContinuationToken>
<Contents><Key>in/a.json</Key><LastModified>2022-11-17T15:44:41.000Z</LastModified>
<ETag>"05704f"</ETag><Size>34910</Size><StorageClass>STANDARD</StorageClass></Contents>
</ListBucketResult>"#;
        let v = parse_list(body).expect("parses");
        assert_eq!(
            v,
            json!({
                "Contents": [{"Etag": "\"05704f\"", "Key": "in/a.json", "LastModified": 1668699881,
                              "Size": 34910, "StorageClass": "STANDARD"}],
                "IsTruncated": true, "NextContinuationToken": "tok", "KeyCount": 1,
                "Name": "b", "Prefix": "in/"
            })
        );
    }
}
