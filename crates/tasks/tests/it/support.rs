//! Local HTTP servers and engine helpers for the integration tests.

use bytes::Bytes;
use expressway_asl::validate::MachineType;
use expressway_engine::runtime::{SplitMix64, TokioClock};
use expressway_engine::tasks::Registry;
use expressway_engine::{
    execute, ExecutionRequest, Limits, LogConfig, LogLevel, Outcome, Runtime, TaskRequest,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    pub(crate) path_and_query: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Recorded {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_string())
    }
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON request body")
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) delay: Duration,
}

impl Reply {
    pub(crate) fn json(status: u16, v: Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: v.to_string().into_bytes(),
            delay: Duration::ZERO,
        }
    }
    pub(crate) fn text(status: u16, s: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: s.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }
    pub(crate) fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub(crate) fn delayed(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

type Responder = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// An HTTP/1.1 server on 127.0.0.1 that records every request.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) requests: Arc<Mutex<Vec<Recorded>>>,
}

impl TestServer {
    pub(crate) async fn start(
        respond: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let respond: Arc<Responder> = Arc::new(respond);
        let recorded = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let respond = respond.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<Incoming>| {
                        let respond = respond.clone();
                        let recorded = recorded.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let rec = Recorded {
                                method: parts.method.to_string(),
                                path_and_query: parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default(),
                                headers: parts.headers,
                                body,
                            };
                            let reply = respond(&rec);
                            recorded.lock().expect("lock").push(rec);
                            if !reply.delay.is_zero() {
                                tokio::time::sleep(reply.delay).await;
                            }
                            let mut resp = hyper::Response::builder().status(reply.status);
                            for (k, v) in &reply.headers {
                                resp = resp.header(k, v);
                            }
                            Ok::<_, Infallible>(
                                resp.body(Full::new(Bytes::from(reply.body)))
                                    .expect("response"),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestServer { addr, requests }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }
}

/// A port with nothing listening (bound, then released).
pub(crate) async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

pub(crate) fn request(resource: &str, input: Value) -> TaskRequest {
    TaskRequest {
        resource: resource.to_string(),
        input,
        state_name: "Call".into(),
        execution_arn:
            "arn:aws:states:us-east-1:123456789012:express:m:e:00000000-0000-4000-8000-000000000000"
                .into(),
        attempt: 0,
        scope: String::new(),
        timeout: None,
        idempotency_key: expressway_engine::idempotency_key("arn:exec", "Call", 0),
    }
}

pub(crate) fn registry(config: &str) -> Registry {
    let config = expressway_tasks::TaskConfig::from_json_str(config).expect("valid config");
    config
        .build_registry(Arc::new(TokioClock::new()), None)
        .expect("registry")
}

/// Runs `definition` to the end with real time and the given registry.
pub(crate) async fn run(definition: &Value, input: Value, registry: Registry) -> Outcome {
    let machine = expressway_asl::load_validated(&definition.to_string(), MachineType::Express)
        .unwrap_or_else(|report| {
            panic!(
                "invalid definition: {}",
                serde_json::to_string(&report).unwrap_or_default()
            )
        });
    let clock = Arc::new(TokioClock::new());
    let runtime = Runtime {
        map_children: None,
        clock,
        entropy: Arc::new(SplitMix64::new(7)),
        tasks: Arc::new(registry),
        callbacks: None,
    };
    let req = ExecutionRequest {
        execution_arn: "arn:aws:states:us-east-1:123456789012:express:test:run-1:00000000-0000-4000-8000-000000000001".into(),
        execution_name: "run-1".into(),
        state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:test".into(),
        state_machine_name: "test".into(),
        role_arn: "arn:aws:iam::123456789012:role/test".into(),
        input,
        log: LogConfig {
            level: LogLevel::Off,
            include_execution_data: false,
        },
        limits: Limits::default(),
        synchronous: false,
    };
    execute(&machine, &req, &runtime).await
}
