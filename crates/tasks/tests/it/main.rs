//! Integration tests against real HTTP servers on 127.0.0.1 (no external network).

mod auth;
mod engine;
mod http;
mod kafka;
mod lambda;
mod metrics;
mod native;
mod order_processing;
mod s3;
mod support;
mod tls;
