//! `https://` endpoints, against a local TLS server whose certificate a test CA signed.

use crate::support::*;
use bytes::Bytes;
use expressway_engine::TaskDispatcher;
use expressway_tasks::HTTP_INVOKE;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");

/// Serves `{"tls": true}` over TLS on 127.0.0.1; returns the port.
async fn tls_server() -> u16 {
    let certs = CertificateDer::pem_file_iter(format!("{FIXTURES}/server.pem"))
        .expect("cert file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(format!("{FIXTURES}/server.key")).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(br#"{"tls":true}"#)))
                            .expect("response"),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

#[tokio::test]
async fn https_with_a_configured_private_ca() {
    let port = tls_server().await;
    let reg = registry(&format!(
        r#"{{"tls": {{"extra_root_certificates": ["{FIXTURES}/ca.pem"]}}}}"#
    ));
    for host in ["localhost", "127.0.0.1"] {
        let out = reg
            .invoke(request(
                HTTP_INVOKE,
                json!({"ApiEndpoint": format!("https://{host}:{port}/secure"), "Method": "GET"}),
            ))
            .await
            .expect("success");
        assert_eq!(out["ResponseBody"], json!({"tls": true}), "{host}");
    }
}

#[tokio::test]
async fn https_rejects_an_untrusted_certificate() {
    let port = tls_server().await;
    let e = registry("{}")
        .invoke(request(
            HTTP_INVOKE,
            json!({"ApiEndpoint": format!("https://localhost:{port}/"), "Method": "GET"}),
        ))
        .await
        .expect_err("untrusted");
    assert_eq!(e.error, "States.Http.Socket");
    assert!(
        e.cause
            .as_deref()
            .unwrap_or("")
            .to_lowercase()
            .contains("certificate"),
        "{e:?}"
    );
}

#[test]
fn a_missing_ca_file_is_a_configuration_error() {
    let config = expressway_tasks::TaskConfig::from_json_str(
        r#"{"tls": {"extra_root_certificates": ["/nonexistent/ca.pem"]}}"#,
    )
    .expect("parses");
    let clock = Arc::new(expressway_engine::runtime::TokioClock::new());
    assert!(matches!(
        config.build_registry(clock, None),
        Err(expressway_tasks::ConfigError::Tls(_))
    ));
}
