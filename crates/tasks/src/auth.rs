//! Connections: Basic, API key and OAuth client-credentials authentication of outbound calls.

use crate::client::{form_encode, insert_sensitive, HttpClient, Outbound};
use crate::config::{AuthConfig, ConnectionConfig, Secret, SecretError};
use base64::Engine as _;
use bytes::Bytes;
use expressway_engine::Clock;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::Method;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Tokens are refreshed this long before they expire.
const EXPIRY_MARGIN_MILLIS: i64 = 30_000;
/// Lifetime assumed when the token endpoint gives no `expires_in`.
const DEFAULT_TOKEN_LIFETIME_SECS: i64 = 3600;

/// A configured connection with its token cache.
pub(crate) struct Connection {
    name: String,
    kind: Option<AuthConfig>,
    config: ConnectionConfig,
    token: tokio::sync::Mutex<Option<CachedToken>>,
}

/// What a connection adds to a request besides headers.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Removes the connection's secrets from what comes back.
    pub(crate) redact: Redactor,
    /// Query parameters to append.
    pub(crate) query: Vec<(String, String)>,
    /// Body parameters to merge.
    pub(crate) body: Vec<(String, String)>,
}

struct CachedToken {
    header: String,
    expires_at_millis: i64,
}

/// Why a connection could not authorize a request. Messages never contain secret values.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("connection '{connection}': {source}")]
    Secret {
        connection: String,
        source: SecretError,
    },
    #[error("connection '{connection}': the OAuth token request failed: {detail}")]
    Token { connection: String, detail: String },
    #[error("connection '{connection}': a credential contains characters not allowed in a header")]
    BadHeader { connection: String },
}

impl Connection {
    pub(crate) fn new(name: String, config: ConnectionConfig) -> Connection {
        Connection {
            name,
            kind: config.auth(),
            config,
            token: tokio::sync::Mutex::new(None),
        }
    }

    fn reveal(&self, s: &Secret) -> Result<String, AuthError> {
        s.reveal().map_err(|source| AuthError::Secret {
            connection: self.name.clone(),
            source,
        })
    }

    /// Adds the connection's headers and credentials to `headers` (replacing same-named headers)
    /// and returns its query and body parameters, with a [`Redactor`] that removes the secrets from
    /// anything the remote side echoes back.
    pub(crate) async fn authorize(
        &self,
        headers: &mut HeaderMap,
        client: &HttpClient,
        clock: &Arc<dyn Clock>,
        timeout: Duration,
    ) -> Result<Applied, AuthError> {
        let bad = || AuthError::BadHeader {
            connection: self.name.clone(),
        };
        let mut secrets = Vec::new();
        let mut reveal_param = |s: &Secret| -> Result<String, AuthError> {
            let v = self.reveal(s)?;
            if !s.is_literal() {
                secrets.push(v.clone());
            }
            Ok(v)
        };
        for (k, v) in &self.config.headers {
            let header = HeaderName::from_bytes(k.as_bytes()).map_err(|_| bad())?;
            let value = reveal_param(v)?;
            if !insert_sensitive(headers, header, &value) {
                return Err(bad());
            }
        }
        let query = self
            .config
            .query_parameters
            .iter()
            .map(|(k, v)| Ok((k.clone(), reveal_param(v)?)))
            .collect::<Result<Vec<_>, AuthError>>()?;
        let body = self
            .config
            .body_parameters
            .iter()
            .map(|(k, v)| Ok((k.clone(), reveal_param(v)?)))
            .collect::<Result<Vec<_>, AuthError>>()?;
        let Some(kind) = &self.kind else {
            return Ok(Applied {
                redact: Redactor::new(secrets),
                query,
                body,
            });
        };
        let (name, value) = match kind {
            AuthConfig::Basic { username, password } => {
                let password = self.reveal(password)?;
                let raw = format!("{}:{password}", self.reveal(username)?);
                let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
                secrets.push(password);
                secrets.push(encoded.clone());
                (AUTHORIZATION, format!("Basic {encoded}"))
            }
            AuthConfig::ApiKey { name, value } => {
                let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
                let value = self.reveal(value)?;
                secrets.push(value.clone());
                (header, value)
            }
            AuthConfig::Oauth { .. } => {
                let value = self.bearer(client, clock, timeout).await?;
                if let Some(token) = value.strip_prefix("Bearer ") {
                    secrets.push(token.to_string());
                }
                (AUTHORIZATION, value)
            }
        };
        if !insert_sensitive(headers, name, &value) {
            return Err(bad());
        }
        Ok(Applied {
            redact: Redactor::new(secrets),
            query,
            body,
        })
    }

    /// Forgets a cached OAuth token (after the API answered 401), so the next call fetches anew.
    pub(crate) async fn invalidate(&self) {
        if matches!(self.kind, Some(AuthConfig::Oauth { .. })) {
            *self.token.lock().await = None;
        }
    }

    /// `Bearer <token>`, from the cache or the token endpoint. Concurrent callers wait for one fetch.
    async fn bearer(
        &self,
        client: &HttpClient,
        clock: &Arc<dyn Clock>,
        timeout: Duration,
    ) -> Result<String, AuthError> {
        let Some(AuthConfig::Oauth {
            token_url,
            client_id,
            client_secret,
            scope,
        }) = &self.kind
        else {
            unreachable!("bearer() is only called for OAuth connections");
        };
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref() {
            if clock.now_millis() < t.expires_at_millis {
                return Ok(t.header.clone());
            }
        }
        let fail = |detail: String| AuthError::Token {
            connection: self.name.clone(),
            detail,
        };
        let credentials = format!(
            "{}:{}",
            self.reveal(client_id)?,
            self.reveal(client_secret)?
        );
        let mut headers = HeaderMap::new();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        );
        if !insert_sensitive(&mut headers, AUTHORIZATION, &basic) {
            return Err(AuthError::BadHeader {
                connection: self.name.clone(),
            });
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let mut form = vec![("grant_type".to_string(), "client_credentials".to_string())];
        if let Some(s) = scope {
            form.push(("scope".to_string(), s.clone()));
        }
        let uri = crate::client::parse_uri(token_url).map_err(|e| fail(e.to_string()))?;
        let started = clock.now_millis();
        let response = client
            .send(Outbound {
                method: Method::POST,
                uri,
                headers,
                body: Bytes::from(form_encode(&form)),
                timeout,
            })
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.status.is_success() {
            // The body of a failed token response may echo credentials; report only the status.
            return Err(fail(format!(
                "the token endpoint answered {}",
                response.status
            )));
        }
        let body: Value = serde_json::from_slice(&response.body)
            .map_err(|_| fail("the token endpoint did not answer JSON".into()))?;
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("the token response has no access_token".into()))?;
        let lifetime = match body.get("expires_in") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .unwrap_or(DEFAULT_TOKEN_LIFETIME_SECS);
        let header = format!("Bearer {token}");
        *cached = Some(CachedToken {
            header: header.clone(),
            expires_at_millis: started + lifetime.saturating_mul(1000) - EXPIRY_MARGIN_MILLIS,
        });
        Ok(header)
    }
}

/// Replaces credential values in text that came back from a remote service (an API that echoes
/// request headers would otherwise put them into the execution's output or error cause).
#[derive(Debug, Default)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    fn new(mut secrets: Vec<String>) -> Redactor {
        // Very short values would redact unrelated text; they are not worth hiding anyway.
        secrets.retain(|s| s.len() >= 4);
        // Longer first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every credential replaced by `<redacted>`.
    pub(crate) fn text(&self, text: String) -> String {
        if !self.secrets.iter().any(|s| text.contains(s.as_str())) {
            return text;
        }
        self.secrets
            .iter()
            .fold(text, |t, s| t.replace(s.as_str(), "<redacted>"))
    }

    /// `value` with every credential in its strings replaced.
    pub(crate) fn value(&self, value: Value) -> Value {
        if self.secrets.is_empty() {
            return value;
        }
        match value {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(a) => Value::Array(a.into_iter().map(|v| self.value(v)).collect()),
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| (self.text(k), self.value(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

/// The connection name in `arn:aws:events:<region>:<account>:connection/<name>/<id>`, or the
/// argument itself when it is a plain name.
pub(crate) fn connection_name(arn_or_name: &str) -> &str {
    match arn_or_name.split_once(":connection/") {
        Some((prefix, rest)) if prefix.starts_with("arn:") => {
            rest.split('/').next().unwrap_or(rest)
        }
        _ => arn_or_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redactor_hides_credentials() {
        let r = Redactor::new(vec!["s3cret-token".into(), "abc".into()]);
        assert_eq!(
            r.value(serde_json::json!({"auth": ["Bearer s3cret-token"], "abc": "abc"})),
            serde_json::json!({"auth": ["Bearer <redacted>"], "abc": "abc"})
        );
    }

    #[test]
    fn connection_names() {
        assert_eq!(
            connection_name("arn:aws:events:us-east-1:123456789012:connection/orders/0b1c-2d"),
            "orders"
        );
        assert_eq!(
            connection_name("arn:aws:events:us-east-1:123456789012:connection/orders"),
            "orders"
        );
        assert_eq!(connection_name("orders"), "orders");
    }
}
