//! The task configuration: connections, functions, the egress allowlist and defaults.
//!
//! ```json
//! {
//!   "egress_allowlist": ["127.0.0.0/8", "api.example.com", "*.internal.example"],
//!   "defaults": {"timeout_seconds": 60},
//!   "connections": {
//!     "orders-api": {"basic": {"username": "svc", "password": {"fromEnv": "ORDERS_PASSWORD"}}},
//!     "stock-api": {"api_key": {"name": "x-api-key", "value": {"fromFile": "/run/secrets/stock"}},
//!                   "headers": {"x-tenant": "acme"}, "query_parameters": {"region": "eu"}},
//!     "billing": {"oauth": {"token_url": "https://auth.internal.example/token",
//!                           "client_id": "expressway", "client_secret": {"fromEnv": "BILLING_SECRET"},
//!                           "scope": "payments"}}
//!   },
//!   "tls": {"extra_root_certificates": ["/etc/expressway/internal-ca.pem"]},
//!   "functions": {
//!     "ValidateOrder": "http://127.0.0.1:9000/validate",
//!     "ChargePayment:prod": {"url": "https://payments.internal.example/charge", "connection": "billing"}
//!   }
//! }
//! ```

use crate::egress::{Allowlist, InvalidEntry};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything the task resources need to know about the outside world.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Named connections (EventBridge-connection equivalents) for `Authentication.ConnectionArn`.
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionConfig>,
    /// Function name (optionally `name:qualifier`) to the HTTP endpoint that implements it.
    #[serde(default)]
    pub functions: BTreeMap<String, FunctionTarget>,
    /// Hosts and networks outbound calls may reach (see [`crate::egress`]). Absent: unrestricted.
    #[serde(default)]
    pub egress_allowlist: Option<Vec<String>>,
    /// Timeouts and limits.
    #[serde(default)]
    pub defaults: Defaults,
    /// TLS settings for `https://` calls.
    #[serde(default)]
    pub tls: TlsConfig,
    /// The S3-compatible store of the `s3:*` resources (see [`crate::s3`]). Absent: AWS S3
    /// with the `AWS_*` environment's region and credentials.
    #[serde(default)]
    pub s3: Option<S3Config>,
}

/// An S3-compatible store: `{"endpoint": "http://127.0.0.1:9000", "region": "us-east-1",
/// "path_style": true, "access_key_id": {"fromEnv": "S3_KEY"}, "secret_access_key": {"fromFile":
/// "/run/secrets/s3"}}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Base URL of the store (`http(s)://host[:port]`). Absent: AWS S3 in `region`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The SigV4 signing region. Absent: `AWS_REGION`, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Path-style addressing (`<endpoint>/<bucket>/<key>`) instead of virtual-hosted
    /// (`<bucket>.<endpoint host>/<key>`); most self-hosted stores want it.
    #[serde(default)]
    pub path_style: bool,
    /// Access key id. Absent: `AWS_ACCESS_KEY_ID`.
    #[serde(default)]
    pub access_key_id: Option<Secret>,
    /// Secret access key. Absent: `AWS_SECRET_ACCESS_KEY`.
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// Session token of temporary credentials.
    #[serde(default)]
    pub session_token: Option<Secret>,
}

/// TLS settings. The Mozilla root certificates are always trusted.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM files of additional certificate authorities to trust (private CAs).
    #[serde(default)]
    pub extra_root_certificates: Vec<PathBuf>,
}

/// Timeouts and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// Per-request timeout when the Task has no `TimeoutSeconds` (AWS's HTTP Task uses 60 s).
    pub timeout_seconds: f64,
    /// TCP connect timeout.
    pub connect_timeout_seconds: f64,
    /// Larger response bodies fail the task.
    pub max_response_bytes: usize,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            timeout_seconds: 60.0,
            connect_timeout_seconds: 10.0,
            max_response_bytes: 10 * 1024 * 1024,
        }
    }
}

impl Defaults {
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_seconds.max(0.001))
    }
    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.connect_timeout_seconds.max(0.001))
    }
}

/// A connection (the equivalent of an EventBridge connection): at most one authentication kind,
/// plus invocation parameters merged into every request that uses the connection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// HTTP Basic authentication.
    #[serde(default)]
    pub basic: Option<BasicAuth>,
    /// A fixed header such as `x-api-key`.
    #[serde(default)]
    pub api_key: Option<ApiKeyAuth>,
    /// OAuth 2.0 client credentials.
    #[serde(default)]
    pub oauth: Option<OAuthClientCredentials>,
    /// Headers added to every request; they replace same-named headers of the definition.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Query parameters appended to every request.
    #[serde(default)]
    pub query_parameters: BTreeMap<String, Secret>,
    /// Keys merged into JSON-object and URL-encoded request bodies (they win over the
    /// definition's keys).
    #[serde(default)]
    pub body_parameters: BTreeMap<String, Secret>,
}

/// HTTP Basic credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: Secret,
    /// Password.
    pub password: Secret,
}

/// An API key header.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyAuth {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: Secret,
}

/// OAuth 2.0 client credentials; the token is cached until shortly before it expires.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClientCredentials {
    /// The token endpoint (`https://...`; subject to the egress allowlist).
    pub token_url: String,
    /// Client id (sent with the secret as HTTP Basic credentials).
    pub client_id: Secret,
    /// Client secret.
    pub client_secret: Secret,
    /// Requested scope, if any.
    #[serde(default)]
    pub scope: Option<String>,
}

/// The authentication of a connection, as used internally.
#[derive(Debug, Clone)]
pub(crate) enum AuthConfig {
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        /// User name.
        username: Secret,
        /// Password.
        password: Secret,
    },
    /// A fixed header, e.g. `x-api-key: ...`.
    ApiKey {
        /// Header name.
        name: String,
        /// Header value.
        value: Secret,
    },
    /// OAuth 2.0 client credentials; the token is cached until shortly before it expires.
    Oauth {
        /// The token endpoint (`https://...`; subject to the egress allowlist).
        token_url: String,
        /// Client id (sent with the secret as HTTP Basic credentials).
        client_id: Secret,
        /// Client secret.
        client_secret: Secret,
        /// Requested scope, if any.
        scope: Option<String>,
    },
}

impl ConnectionConfig {
    /// The authentication kind, if any (at most one is allowed; [`TaskConfig::check`] enforces it).
    pub(crate) fn auth(&self) -> Option<AuthConfig> {
        if let Some(b) = &self.basic {
            return Some(AuthConfig::Basic {
                username: b.username.clone(),
                password: b.password.clone(),
            });
        }
        if let Some(k) = &self.api_key {
            return Some(AuthConfig::ApiKey {
                name: k.name.clone(),
                value: k.value.clone(),
            });
        }
        self.oauth.as_ref().map(|o| AuthConfig::Oauth {
            token_url: o.token_url.clone(),
            client_id: o.client_id.clone(),
            client_secret: o.client_secret.clone(),
            scope: o.scope.clone(),
        })
    }
}

/// The HTTP endpoint behind a function.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FunctionTarget {
    /// Just the URL.
    Url(String),
    /// URL plus options.
    Detailed(FunctionEndpoint),
}

/// A function endpoint with options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionEndpoint {
    /// Where the payload is POSTed.
    pub url: String,
    /// A connection from `connections` that authenticates the call.
    #[serde(default)]
    pub connection: Option<String>,
}

impl FunctionTarget {
    /// The endpoint URL.
    pub fn url(&self) -> &str {
        match self {
            FunctionTarget::Url(u) => u,
            FunctionTarget::Detailed(d) => &d.url,
        }
    }
    /// The connection name, if any.
    pub fn connection(&self) -> Option<&str> {
        match self {
            FunctionTarget::Url(_) => None,
            FunctionTarget::Detailed(d) => d.connection.as_deref(),
        }
    }
}

/// A secret: a literal, `{"fromEnv": "VAR"}` or `{"fromFile": "/path"}` (read at each use, so
/// rotated files are picked up; a trailing newline is removed). `Debug` never shows the value.
#[derive(Clone, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    /// The value itself (fine for user names; avoid for passwords).
    Literal(String),
    /// From an environment variable.
    Env {
        /// Variable name.
        #[serde(rename = "fromEnv")]
        from_env: String,
    },
    /// From a file.
    File {
        /// File path.
        #[serde(rename = "fromFile")]
        from_file: PathBuf,
    },
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Literal(_) => f.write_str("Secret(<redacted>)"),
            Secret::Env { from_env } => write!(f, "Secret(fromEnv {from_env})"),
            Secret::File { from_file } => write!(f, "Secret(fromFile {})", from_file.display()),
        }
    }
}

/// A secret that cannot be read. The message names the source, never a value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set (or not UTF-8).
    #[error("the environment variable {0} is not set")]
    MissingEnv(String),
    /// The file cannot be read.
    #[error("the secret file {path} cannot be read: {reason}")]
    File {
        /// The path.
        path: String,
        /// The I/O error kind.
        reason: String,
    },
}

impl Secret {
    /// Whether the value is written in the configuration itself.
    pub fn is_literal(&self) -> bool {
        matches!(self, Secret::Literal(_))
    }

    /// Reads the secret's value.
    pub fn reveal(&self) -> Result<String, SecretError> {
        match self {
            Secret::Literal(v) => Ok(v.clone()),
            Secret::Env { from_env } => {
                std::env::var(from_env).map_err(|_| SecretError::MissingEnv(from_env.clone()))
            }
            Secret::File { from_file } => std::fs::read_to_string(from_file)
                .map(|s| {
                    s.strip_suffix('\n')
                        .unwrap_or(&s)
                        .trim_end_matches('\r')
                        .to_string()
                })
                .map_err(|e| SecretError::File {
                    path: from_file.display().to_string(),
                    reason: e.kind().to_string(),
                }),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A TLS setting cannot be used.
    #[error("invalid task configuration: tls: {0}")]
    Tls(String),
    /// The JSON does not match the schema.
    #[error("invalid task configuration: {0}")]
    Parse(#[from] serde_json::Error),
    /// A bad allowlist entry.
    #[error(transparent)]
    Allowlist(#[from] InvalidEntry),
    /// Something else, explained.
    #[error("invalid task configuration: {0}")]
    Invalid(String),
}

impl TaskConfig {
    /// Parses a JSON configuration and checks it.
    pub fn from_json_str(text: &str) -> Result<TaskConfig, ConfigError> {
        let config: TaskConfig = serde_json::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    /// Reads and parses a JSON configuration file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<TaskConfig, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        TaskConfig::from_json_str(&text)
    }

    /// The parsed allowlist.
    pub fn allowlist(&self) -> Result<Allowlist, InvalidEntry> {
        match &self.egress_allowlist {
            None => Ok(Allowlist::unrestricted()),
            Some(entries) => Allowlist::new(entries),
        }
    }

    /// Checks cross-references and URLs (secrets are read only when used).
    pub fn check(&self) -> Result<(), ConfigError> {
        self.allowlist()?;
        let url_ok = |u: &str| {
            u.parse::<hyper::Uri>().ok().is_some_and(|uri| {
                matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
            })
        };
        for (name, f) in &self.functions {
            if !url_ok(f.url()) {
                return Err(ConfigError::Invalid(format!(
                    "function '{name}': the url must be an absolute https:// or http:// URL"
                )));
            }
            if let Some(c) = f.connection() {
                if !self.connections.contains_key(c) {
                    return Err(ConfigError::Invalid(format!(
                        "function '{name}' uses the unknown connection '{c}'"
                    )));
                }
            }
        }
        for (name, c) in &self.connections {
            let kinds = [c.basic.is_some(), c.api_key.is_some(), c.oauth.is_some()];
            if kinds.iter().filter(|k| **k).count() > 1 {
                return Err(ConfigError::Invalid(format!(
                    "connection '{name}': choose one of basic, api_key and oauth"
                )));
            }
            if let Some(o) = &c.oauth {
                if !url_ok(&o.token_url) {
                    return Err(ConfigError::Invalid(format!(
                        "connection '{name}': token_url must be an absolute https:// or http:// URL"
                    )));
                }
            }
            let header_names = c.api_key.iter().map(|k| &k.name).chain(c.headers.keys());
            for header in header_names {
                if hyper::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    return Err(ConfigError::Invalid(format!(
                        "connection '{name}': '{header}' is not a valid header name"
                    )));
                }
            }
        }
        if let Some(endpoint) = self.s3.as_ref().and_then(|s| s.endpoint.as_deref()) {
            if !url_ok(endpoint) {
                return Err(ConfigError::Invalid(
                    "s3: the endpoint must be an absolute https:// or http:// URL".into(),
                ));
            }
        }
        if !(self.defaults.timeout_seconds > 0.0 && self.defaults.connect_timeout_seconds > 0.0) {
            return Err(ConfigError::Invalid(
                "defaults: timeouts must be positive".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let text = r#"{
          "egress_allowlist": ["127.0.0.0/8", "api.example.com", "*.internal.example"],
          "defaults": {"timeout_seconds": 30},
          "connections": {
            "a": {"basic": {"username": "svc", "password": {"fromEnv": "PW"}}},
            "b": {"api_key": {"name": "x-api-key", "value": {"fromFile": "/run/k"}},
                  "headers": {"x-tenant": "acme"}, "query_parameters": {"region": "eu"},
                  "body_parameters": {"account": {"fromEnv": "ACCOUNT"}}},
            "c": {"oauth": {"token_url": "http://auth.internal.example/token", "client_id": "id",
                            "client_secret": {"fromEnv": "S"}, "scope": "payments"}}
          },
          "functions": {
            "ValidateOrder": "http://127.0.0.1:9000/validate",
            "Charge:prod": {"url": "http://payments.internal.example/charge", "connection": "c"}
          }
        }"#;
        let c = TaskConfig::from_json_str(text).expect("valid");
        assert_eq!(c.defaults.timeout_seconds, 30.0);
        assert_eq!(c.defaults.max_response_bytes, 10 * 1024 * 1024);
        assert_eq!(c.functions["Charge:prod"].connection(), Some("c"));
        assert!(format!("{:?}", c.connections["a"]).contains("fromEnv PW"));
    }

    #[test]
    fn rejects_unknown_fields_and_bad_references() {
        for bad in [
            r#"{"conections": {}}"#,
            r#"{"defaults": {"timeout": 1}}"#,
            r#"{"connections": {"a": {"basic": {"username": "u", "password": "p", "x": 1}}}}"#,
            r#"{"functions": {"f": {"url": "http://h/", "connection": "nope"}}}"#,
            r#"{"functions": {"f": "ftp://h/"}}"#,
            r#"{"tls": {"extra_roots": []}}"#,
            r#"{"connections": {"a": {"basic": {"username": "u", "password": "p"}, "api_key": {"name": "k", "value": "v"}}}}"#,
            r#"{"connections": {"a": {"headers": {"bad header": "v"}}}}"#,
            r#"{"egress_allowlist": ["10.0.0.0/40"]}"#,
        ] {
            assert!(TaskConfig::from_json_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_never_show_their_value() {
        let s = Secret::Literal("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        let missing = Secret::Env {
            from_env: "EXPRESSWAY_TASKS_TEST_SURELY_UNSET".into(),
        };
        assert!(matches!(missing.reveal(), Err(SecretError::MissingEnv(_))));
        let path = std::env::temp_dir().join(format!("expressway-secret-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").expect("write");
        let f = Secret::File {
            from_file: path.clone(),
        };
        assert_eq!(f.reveal().expect("readable"), "s3cret");
        let _ = std::fs::remove_file(path);
    }
}
