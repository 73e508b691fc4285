//! The outbound HTTP client shared by every HTTP-based resource: allowlist, timeouts, body limits.

use crate::egress::{Allowlist, AllowlistResolver, HostVerdict, Refused};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;

/// The header every outbound request carries.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// One outbound request.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) timeout: Duration,
}

/// A complete response (body read up to the size limit).
#[derive(Debug)]
pub(crate) struct Inbound {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Why no response arrived. Messages name the destination as `host:port` only: paths and queries
/// may carry secrets.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error("the host '{0}' is not in the egress allowlist")]
    Refused(String),
    #[error("no complete response from {dest} within {secs:.3} s")]
    Timeout { dest: String, secs: f64 },
    #[error("the request to {dest} failed: {detail}")]
    Io { dest: String, detail: String },
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("the response body from {dest} exceeds {limit} bytes")]
    TooLarge { dest: String, limit: usize },
}

type Connector = HttpsConnector<HttpConnector<AllowlistResolver>>;

/// A pooled HTTP/1.1 client (plain `http://` and `https://` with rustls) whose every connection
/// passes the egress allowlist.
#[derive(Clone)]
pub(crate) struct HttpClient {
    inner: Client<Connector, Full<Bytes>>,
    allowlist: Arc<Allowlist>,
    max_response_bytes: usize,
}

impl HttpClient {
    /// `roots` are the trusted certificate authorities for `https://` (see [`trust_roots`]).
    pub(crate) fn new(
        allowlist: Allowlist,
        connect_timeout: Duration,
        max_response_bytes: usize,
        roots: rustls::RootCertStore,
    ) -> Result<HttpClient, rustls::Error> {
        let allowlist = Arc::new(allowlist);
        let mut connector = HttpConnector::new_with_resolver(AllowlistResolver {
            allowlist: allowlist.clone(),
        });
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(HttpClient {
            inner,
            allowlist,
            max_response_bytes,
        })
    }

    /// Sends `req` and reads the whole response within `req.timeout`.
    pub(crate) async fn send(&self, req: Outbound) -> Result<Inbound, SendError> {
        let dest = destination(&req.uri)?;
        let host = req
            .uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if self.allowlist.verdict(host) == HostVerdict::Refused {
            return Err(SendError::Refused(host.to_string()));
        }
        let timeout = req.timeout;
        let limit = self.max_response_bytes;
        let mut builder = hyper::Request::builder().method(req.method).uri(req.uri);
        if let Some(h) = builder.headers_mut() {
            *h = req.headers;
        }
        let request = builder
            .body(Full::new(req.body))
            .map_err(|e| SendError::InvalidUrl(e.to_string()))?;
        let exchange = async {
            let response = self.inner.request(request).await.map_err(|e| {
                if let Some(r) = find_source::<Refused>(&e) {
                    return SendError::Refused(r.0.clone());
                }
                SendError::Io {
                    dest: dest.clone(),
                    detail: error_chain(&e),
                }
            })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, limit)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        SendError::TooLarge {
                            dest: dest.clone(),
                            limit,
                        }
                    } else {
                        SendError::Io {
                            dest: dest.clone(),
                            detail: e.to_string(),
                        }
                    }
                })?
                .to_bytes();
            Ok(Inbound {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Timeout {
                dest,
                secs: timeout.as_secs_f64(),
            }),
        }
    }
}

/// `host:port` of an absolute `http://` or `https://` URL.
fn destination(uri: &Uri) -> Result<String, SendError> {
    let default_port = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        _ => {
            return Err(SendError::InvalidUrl(
                "the URL must be absolute and start with https:// or http://".into(),
            ))
        }
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| SendError::InvalidUrl("the URL has no host".into()))?;
    Ok(format!("{host}:{}", uri.port_u16().unwrap_or(default_port)))
}

/// The Mozilla root certificates (webpki-roots) plus the certificates in `extra_pem_files`.
pub(crate) fn trust_roots(
    extra_pem_files: &[std::path::PathBuf],
) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for path in extra_pem_files {
        let shown = path.display();
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read certificates from {shown}: {e}"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("invalid PEM in {shown}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{shown} holds no certificate"));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("unusable certificate in {shown}: {e}"))?;
        }
    }
    Ok(roots)
}

fn find_source<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// `a: b: c` from an error and its sources, without repeating identical messages.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if parts.last() != Some(&s) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// Parses an absolute URL.
pub(crate) fn parse_uri(s: &str) -> Result<Uri, SendError> {
    s.parse::<Uri>()
        .map_err(|e| SendError::InvalidUrl(format!("'{}': {e}", redact_url(s))))
}

/// The URL without its query string and user info (which may carry secrets), for messages.
pub(crate) fn redact_url(s: &str) -> String {
    let no_query = s.split(['?', '#']).next().unwrap_or_default();
    match no_query.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) if !rest.split('/').next().unwrap_or("").is_empty() => {
                format!("{scheme}://{host}")
            }
            _ => no_query.to_string(),
        },
        None => no_query.to_string(),
    }
}

/// Inserts a header whose value is a secret (never printed by `Debug`).
pub(crate) fn insert_sensitive(headers: &mut HeaderMap, name: HeaderName, value: &str) -> bool {
    match HeaderValue::from_str(value) {
        Ok(mut v) => {
            v.set_sensitive(true);
            headers.insert(name, v);
            true
        }
        Err(_) => false,
    }
}

/// Percent-encodes everything except RFC 3986 unreserved characters.
pub(crate) fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `k=v&...`, percent-encoded.
pub(crate) fn form_encode(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Response headers as `{name: [values]}` (names lower-case, values lossily UTF-8).
pub(crate) fn headers_json(headers: &HeaderMap) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (name, value) in headers {
        let v = serde_json::Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match out
            .entry(name.as_str().to_string())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()))
        {
            serde_json::Value::Array(a) => a.push(v),
            _ => unreachable!("only arrays are inserted"),
        }
    }
    out
}

/// Truncates `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_urls() {
        assert_eq!(
            redact_url("http://u:p@h:1/x?token=s"),
            "http://h:1/x".to_string()
        );
        assert_eq!(redact_url("http://h/x#f"), "http://h/x");
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(pct("a b[0]/é"), "a%20b%5B0%5D%2F%C3%A9");
        assert_eq!(
            form_encode(&[("a".into(), "1".into()), ("b c".into(), "&".into())]),
            "a=1&b%20c=%26"
        );
    }

    #[test]
    fn truncation_respects_chars() {
        assert_eq!(truncate("héllo".into(), 2), "h");
    }
}
