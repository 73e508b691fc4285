//! The gateway's connection limit and timeouts on a real loopback socket, in tokio's paused
//! clock (a timeout fires when every task waits, without real waiting): a partial request head
//! is closed after the header timeout, a short body is answered 408 and closed, an idle
//! keep-alive connection is closed after the idle timeout, and connections over the limit are
//! refused with 503 while requests on the open ones still succeed.

use expressway_executor::http_server::{serve, HttpLimits};
use expressway_executor::Registry;
use expressway_gateway::{Gateway, MemoryBackend, ServerConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMITS: HttpLimits = HttpLimits {
    max_connections: 4,
    header_timeout: Duration::from_secs(10),
    body_timeout: Duration::from_secs(30),
    idle_timeout: Duration::from_secs(60),
};

async fn start() -> SocketAddr {
    let registry = Arc::new(Registry::new("us-east-1", "123456789012"));
    registry.set_loaded();
    let gw = Arc::new(Gateway::new(
        registry,
        Arc::new(MemoryBackend::default()),
        expressway_executor::default_engine_runtime(),
    ));
    let app = expressway_gateway::router(
        gw,
        ServerConfig {
            http: LIMITS,
            ..ServerConfig::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(
        listener,
        app,
        LIMITS,
        "gateway",
        std::future::pending(),
    ));
    addr
}

const LIST: &str = "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: AWSStepFunctions.ListStateMachines\r\nContent-Length: 2\r\n\r\n{}";

/// Reads one response (headers and a Content-Length body); `None` when the server closed.
async fn response(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= len {
                return Some(text);
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                return (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).to_string())
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Whether the server closed the connection (EOF or reset) without sending anything more.
async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    matches!(s.read(&mut b).await, Ok(0) | Err(_))
}

#[tokio::test(start_paused = true)]
async fn a_partial_request_head_is_closed_after_the_header_timeout() {
    let addr = start().await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Tar")
        .await
        .expect("write");
    let t0 = tokio::time::Instant::now();
    assert!(closed(&mut s).await);
    assert!(t0.elapsed() >= LIMITS.header_timeout, "{:?}", t0.elapsed());
    // A fresh connection that sends nothing at all is closed by the same timeout.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    assert!(closed(&mut silent).await);
}

#[tokio::test(start_paused = true)]
async fn a_short_body_is_answered_408_and_closed() {
    let addr = start().await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: AWSStepFunctions.ListStateMachines\r\nContent-Length: 5\r\n\r\n{}",
    )
    .await
    .expect("write");
    let r = response(&mut s).await.expect("an answer");
    assert!(r.starts_with("HTTP/1.1 408"), "{r}");
    assert!(r.contains("RequestTimeoutException"), "{r}");
    assert!(closed(&mut s).await);
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let addr = start().await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(LIST.as_bytes()).await.expect("write");
    let r = response(&mut s).await.expect("answer");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let t0 = tokio::time::Instant::now();
    assert!(closed(&mut s).await);
    assert!(t0.elapsed() >= LIMITS.idle_timeout, "{:?}", t0.elapsed());
}

#[tokio::test(start_paused = true)]
async fn connections_over_the_limit_are_refused_while_open_ones_keep_working() {
    let addr = start().await;
    let mut open = Vec::new();
    for _ in 0..LIMITS.max_connections {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(LIST.as_bytes()).await.expect("write");
        let r = response(&mut s).await.expect("answer");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        open.push(s);
    }
    for _ in 0..50 {
        let mut extra = TcpStream::connect(addr).await.expect("connect");
        let r = response(&mut extra).await.unwrap_or_default();
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(closed(&mut extra).await);
    }
    // The open connections still answer.
    for s in &mut open {
        s.write_all(LIST.as_bytes()).await.expect("write");
        let r = response(s).await.expect("answer");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    // Once they are closed, new connections are accepted again.
    drop(open);
    let mut later = None;
    for _ in 0..100 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(LIST.as_bytes()).await.expect("write");
        if let Some(r) = response(&mut s)
            .await
            .filter(|r| r.starts_with("HTTP/1.1 200"))
        {
            later = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        later.is_some(),
        "no connection accepted after the others closed"
    );
}
