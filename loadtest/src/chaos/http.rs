//! The harness's task endpoint: a small HTTP/1.1 server on loopback that answers 200, or (for a
//! seeded random fraction of calls) stalls before answering or answers 500. It records every
//! call's `Idempotency-Key`, so the verdict can say whether a re-run execution called again with
//! the key of its first run.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the endpoint misbehaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Behaviour {
    /// Fraction of calls answered 500.
    pub(crate) fail: f64,
    /// Fraction of calls answered only after `stall_for`.
    pub(crate) stall: f64,
    pub(crate) stall_for: Duration,
    pub(crate) seed: u64,
}

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) calls: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) stalled: AtomicU64,
    pub(crate) without_key: AtomicU64,
    keys: Mutex<HashMap<String, u32>>,
}

impl Stats {
    pub(crate) fn summary(&self) -> serde_json::Value {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let repeated = keys.values().filter(|n| **n > 1).count();
        serde_json::json!({
            "calls": self.calls.load(Ordering::Relaxed),
            "answered_500": self.failed.load(Ordering::Relaxed),
            "stalled": self.stalled.load(Ordering::Relaxed),
            "calls_without_idempotency_key": self.without_key.load(Ordering::Relaxed),
            "distinct_idempotency_keys": keys.len(),
            // A key seen twice: the same (execution ARN, state, attempt) called again, i.e. a
            // re-run of an execution presenting its first run's key.
            "idempotency_keys_seen_more_than_once": repeated,
        })
    }
}

pub(crate) struct Server {
    pub(crate) url: String,
    pub(crate) stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub(crate) fn start(b: Behaviour) -> std::io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}/work", listener.local_addr()?);
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (stats.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut conn_id = 0u64;
            for stream in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                conn_id += 1;
                let (s, st) = (s.clone(), st.clone());
                let rng =
                    SmallRng::seed_from_u64(b.seed ^ conn_id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                std::thread::spawn(move || serve(stream, b, &s, &st, rng));
            }
        });
        Ok(Server { url, stats, stop })
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        if let Some(addr) = self
            .url
            .strip_prefix("http://")
            .and_then(|r| r.split('/').next())
        {
            let _ = TcpStream::connect(addr);
        }
    }
}

/// Keep-alive request loop of one connection.
fn serve(stream: TcpStream, b: Behaviour, stats: &Stats, stop: &AtomicBool, mut rng: SmallRng) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while !stop.load(Ordering::Relaxed) {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.trim().is_empty() {
            continue;
        }
        let (mut length, mut key) = (0usize, None);
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
                if name == "content-length" {
                    length = value.parse().unwrap_or(0);
                } else if name == "idempotency-key" {
                    key = Some(value.to_string());
                }
            }
        }
        let mut body = vec![0u8; length.min(1 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        stats.calls.fetch_add(1, Ordering::Relaxed);
        match key {
            Some(k) => {
                let mut keys = stats.keys.lock().unwrap_or_else(|p| p.into_inner());
                *keys.entry(k).or_default() += 1;
            }
            None => {
                stats.without_key.fetch_add(1, Ordering::Relaxed);
            }
        }
        let draw: f64 = rng.gen();
        let (status, text) = if draw < b.fail {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            (500, "Internal Server Error")
        } else {
            if draw < b.fail + b.stall {
                stats.stalled.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(b.stall_for);
            }
            (200, "OK")
        };
        let payload = format!("{{\"status\":{status}}}");
        let resp = format!(
            "HTTP/1.1 {status} {text}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}",
            payload.len()
        );
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(addr: &str, key: &str) -> String {
        let mut s = TcpStream::connect(addr).expect("connect");
        let req = format!(
            "POST /work HTTP/1.1\r\nhost: x\r\nidempotency-key: {key}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
        );
        s.write_all(req.as_bytes()).expect("write");
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).expect("read");
        line
    }

    #[test]
    fn answers_500_for_the_failing_fraction_and_counts_keys() {
        let always_fail = Server::start(Behaviour {
            fail: 1.0,
            stall: 0.0,
            stall_for: Duration::ZERO,
            seed: 1,
        })
        .expect("bind");
        let addr = always_fail
            .url
            .trim_start_matches("http://")
            .trim_end_matches("/work")
            .to_string();
        assert!(call(&addr, "k1").starts_with("HTTP/1.1 500"));
        assert!(call(&addr, "k1").starts_with("HTTP/1.1 500"));
        let s = always_fail.stats.summary();
        assert_eq!(s["calls"], 2);
        assert_eq!(s["answered_500"], 2);
        assert_eq!(s["distinct_idempotency_keys"], 1);
        assert_eq!(s["idempotency_keys_seen_more_than_once"], 1);
        always_fail.stop();

        let healthy = Server::start(Behaviour {
            fail: 0.0,
            stall: 0.0,
            stall_for: Duration::ZERO,
            seed: 1,
        })
        .expect("bind");
        let addr = healthy
            .url
            .trim_start_matches("http://")
            .trim_end_matches("/work")
            .to_string();
        assert!(call(&addr, "k2").starts_with("HTTP/1.1 200"));
        assert_eq!(healthy.stats.summary()["answered_500"], 0);
        healthy.stop();
    }
}
