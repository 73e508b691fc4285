//! The HTTP/1 server under the pod's `/metrics` endpoint and the gateway's API: an accept loop
//! with a connection limit, and per-connection timeouts, so idle, slow or half-sent requests
//! cannot hold sockets and file descriptors forever.
//!
//! * **Connection limit**: at most [`HttpLimits::max_connections`] open connections; one more
//!   is answered `503` with `connection: close` right away and closed
//!   (`expressway_http_connections_refused_total`).
//! * **Header timeout**: a request head must arrive completely within
//!   [`HttpLimits::header_timeout`] of its first byte (or of the accept, on a fresh
//!   connection).
//! * **Idle timeout**: a keep-alive connection waiting for its next request is closed after
//!   [`HttpLimits::idle_timeout`].
//! * **Body timeout**: [`HttpLimits::body_timeout`] bounds reading a request body; the handler
//!   that reads it applies it (the gateway answers `408`, see [`read_body`]).
//!
//! Connections closed by a timeout count in `expressway_http_timeouts_total{server,phase}`;
//! `expressway_http_connections_open{server}` is the gauge of open ones. While a request is
//! being handled no timeout runs (the handler bounds its own work). On shutdown idle
//! connections are closed and in-flight requests finish.

use crate::telemetry::names;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;

/// Connection limit and timeouts of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open connections at most; further ones are refused with `503`.
    pub max_connections: usize,
    /// Time allowed for a complete request head.
    pub header_timeout: Duration,
    /// Time allowed for reading a request body (applied by handlers that read one).
    pub body_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
}

impl HttpLimits {
    /// Defaults of the gateway's API port.
    pub const GATEWAY: HttpLimits = HttpLimits {
        max_connections: 4096,
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
    };
    /// Defaults of the `/metrics` `/healthz` `/readyz` port (scrapers and probes only).
    pub const METRICS: HttpLimits = HttpLimits {
        max_connections: 128,
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
    };
}

/// Exports a server's connection series at zero (dashboards see them before any refusal).
pub fn touch_metrics(server: &'static str) {
    metrics::counter!(names::HTTP_CONNECTIONS_REFUSED, "server" => server).increment(0);
    for phase in ["header", "body", "idle"] {
        metrics::counter!(names::HTTP_TIMEOUTS, "server" => server, "phase" => phase).increment(0);
    }
    metrics::gauge!(names::HTTP_CONNECTIONS_OPEN, "server" => server).increment(0.0);
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than the limit.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// Not complete within the body timeout (counted in `expressway_http_timeouts_total`).
    #[error("the request body did not arrive within {0:?}")]
    Timeout(Duration),
}

/// Reads a request body up to `max_bytes` within `limits.body_timeout`.
pub async fn read_body(
    body: axum::body::Body,
    max_bytes: usize,
    limits: &HttpLimits,
    server: &'static str,
) -> Result<axum::body::Bytes, BodyError> {
    match tokio::time::timeout(limits.body_timeout, axum::body::to_bytes(body, max_bytes)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(BodyError::TooLarge(max_bytes)),
        Err(_) => {
            metrics::counter!(names::HTTP_TIMEOUTS, "server" => server, "phase" => "body")
                .increment(1);
            tracing::info!(server, timeout = ?limits.body_timeout, "request body timed out");
            Err(BodyError::Timeout(limits.body_timeout))
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then closes idle connections, lets
/// in-flight requests finish and returns. `server` is the metrics label (`gateway`, `metrics`).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: HttpLimits,
    server: &'static str,
    shutdown: impl Future<Output = ()> + Send,
) {
    touch_metrics(server);
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let (closing_tx, closing) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE/ENFILE and friends: back off instead of spinning.
                    tracing::warn!(server, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(stream, server, max);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let closing = closing.clone();
        tokio::spawn(async move {
            connection(stream, app, limits, server, closing).await;
            drop(slot);
        });
    }
    let _ = closing_tx.send(true);
    // Every connection holds a slot until it ends.
    let _ = slots.acquire_many(max as u32).await;
}

fn refuse(stream: TcpStream, server: &'static str, max: usize) {
    metrics::counter!(names::HTTP_CONNECTIONS_REFUSED, "server" => server).increment(1);
    tracing::warn!(
        server,
        max_connections = max,
        "connection refused: too many open connections"
    );
    // Best effort, never waits: the socket's send buffer is empty.
    let _ = stream.try_write(
        b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n",
    );
}

/// Where a connection is, for its timeouts.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for the first byte of a request (`fresh`: none served yet).
    Idle { since: Instant, fresh: bool },
    /// Part of a request head arrived.
    Head { since: Instant },
    /// Requests being handled.
    Busy(usize),
}

struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn update(&self, f: impl FnOnce(Phase) -> Phase) {
        let mut p = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        *p = f(*p);
        drop(p);
        self.changed.notify_waiters();
    }

    fn on_read(&self) {
        let mut p = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        if let Phase::Idle { .. } = *p {
            *p = Phase::Head {
                since: Instant::now(),
            };
            drop(p);
            self.changed.notify_waiters();
        }
    }

    /// Resolves with the timeout's phase label once the connection overstays its phase.
    async fn expired(&self, limits: &HttpLimits) -> &'static str {
        loop {
            let notified = self.changed.notified();
            let mut notified = pin!(notified);
            notified.as_mut().enable();
            let phase = *self.phase.lock().unwrap_or_else(|e| e.into_inner());
            let (deadline, label) = match phase {
                Phase::Busy(_) => {
                    notified.await;
                    continue;
                }
                Phase::Idle { since, fresh: true } | Phase::Head { since } => {
                    (since + limits.header_timeout, "header")
                }
                Phase::Idle {
                    since,
                    fresh: false,
                } => (since + limits.idle_timeout, "idle"),
            };
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => return label,
            }
        }
    }
}

/// Ends a request's `Busy` share when dropped (also when the handler future is dropped).
struct InRequest(Arc<Activity>);

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.update(|p| match p {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle {
                since: Instant::now(),
                fresh: false,
            },
        });
    }
}

async fn connection(
    stream: TcpStream,
    app: axum::Router,
    limits: HttpLimits,
    server: &'static str,
    mut closing: watch::Receiver<bool>,
) {
    let open = metrics::gauge!(names::HTTP_CONNECTIONS_OPEN, "server" => server);
    open.increment(1.0);
    let activity = Arc::new(Activity {
        phase: Mutex::new(Phase::Idle {
            since: Instant::now(),
            fresh: true,
        }),
        changed: Notify::new(),
    });
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        requests.update(|p| match p {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        });
        let guard = InRequest(requests.clone());
        let mut app = app.clone();
        async move {
            let response =
                tower_service::Service::call(&mut app, req.map(axum::body::Body::new)).await;
            drop(guard);
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    let mut conn = pin!(conn);
    let mut shutting_down = *closing.borrow();
    if shutting_down {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(server, error = %e, "connection ended with an error");
                }
                break;
            }
            phase = activity.expired(&limits) => {
                metrics::counter!(names::HTTP_TIMEOUTS, "server" => server, "phase" => phase).increment(1);
                if phase == "idle" {
                    tracing::debug!(server, "idle keep-alive connection closed");
                } else {
                    tracing::info!(server, timeout = ?limits.header_timeout, "connection closed: request head incomplete within the header timeout");
                }
                break;
            }
            changed = closing.changed(), if !shutting_down => {
                if changed.is_err() || *closing.borrow() {
                    shutting_down = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
    open.decrement(1.0);
}

/// A socket that reports reads to its connection's [`Activity`].
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
