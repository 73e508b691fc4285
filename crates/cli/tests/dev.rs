//! `expressway dev` as a process: what operators see on `/metrics` from the shipped binary, and
//! how long it takes to stop.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

struct Dev {
    child: Child,
    metrics: String,
    gateway: String,
    dir: PathBuf,
}

impl Dev {
    /// Starts `expressway dev` on free ports with `machines` (name, definition) and waits for
    /// `/readyz`.
    fn start(tag: &str, machines: &[(&str, &str)]) -> Dev {
        let dir = std::env::temp_dir().join(format!("expressway-dev-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, def) in machines {
            std::fs::write(dir.join(format!("{name}.asl.json")), def).unwrap();
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_expressway"))
            .args(["dev", "--definitions"])
            .arg(&dir)
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(["--gateway-listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut metrics = String::new();
        let mut gateway = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while metrics.is_empty() || gateway.is_empty() {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "dev exited early");
            if let Some(u) = line.trim().strip_prefix("metrics:") {
                metrics = u
                    .trim()
                    .trim_start_matches("http://")
                    .trim_end_matches("/metrics")
                    .into();
            }
            if let Some(u) = line.trim().strip_prefix("gateway:") {
                let url = u.split_whitespace().next().unwrap();
                gateway = url
                    .trim_start_matches("http://")
                    .replace("localhost", "127.0.0.1");
            }
        }
        // Keep reading stdout so dev never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = out.read_to_string(&mut sink);
        });
        let dev = Dev {
            child,
            metrics,
            gateway,
            dir,
        };
        dev.wait_for("/readyz 200", |_| dev.get("/readyz").0 == 200);
        dev
    }

    fn get(&self, path: &str) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect(&self.metrics) else {
            return (0, String::new());
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        let status = buf
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = buf.split_once("\r\n\r\n").map(|x| x.1.to_string());
        (status, body.unwrap_or_default())
    }

    fn scrape(&self) -> String {
        self.get("/metrics").1
    }

    /// Sends a Step Functions API request and returns the open connection (the answer is not
    /// awaited).
    fn send(&self, op: &str, body: &str) -> TcpStream {
        let mut s = TcpStream::connect(&self.gateway).unwrap();
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: AWSStepFunctions.{op}\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        s
    }

    fn start_execution(&self, machine: &str) {
        let body = format!(
            r#"{{"stateMachineArn":"arn:aws:states:us-east-1:123456789012:stateMachine:{machine}","input":"{{}}"}}"#
        );
        let mut s = self.send("StartExecution", &body);
        let mut first = [0u8; 12];
        s.read_exact(&mut first).unwrap();
        assert!(
            first.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&first)
        );
    }

    fn wait_for(&self, what: &str, mut cond: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let body = self.scrape();
            if cond(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The value of the sample `series` (name and labels exactly as exported), if present.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

const TASKS: &str = r#"{"StartAt":"T","States":{
  "T":{"Type":"Task","Resource":"arn:aws:states:::expressway:test","Parameters":{"Error":"Oops"},
       "Catch":[{"ErrorEquals":["States.ALL"],"Next":"U"}],"Next":"U"},
  "U":{"Type":"Task","Resource":"arn:aws:states:::nothing:here","End":true}}}"#;

/// Issue #20, 1 and 2: the shipped binary's runtime meters the built-in test resource and
/// resources without a handler, and the dead-letter reasons exist at zero before any traffic.
#[test]
fn dev_exports_task_metrics_and_dead_letter_reasons_at_zero() {
    let dev = Dev::start("metrics", &[("tasks", TASKS)]);
    let before = dev.scrape();
    for reason in [
        "InvalidJson",
        "UnknownStateMachine",
        "InputTooLarge",
        "InternalError",
    ] {
        let series = format!("expressway_dead_letters_total{{reason=\"{reason}\"}}");
        assert_eq!(sample(&before, &series), Some(0.0), "{series}\n{before}");
    }

    for _ in 0..3 {
        dev.start_execution("tasks");
    }
    let body = dev.wait_for("three failed executions", |b| {
        sample(
            b,
            "expressway_executions_failed_total{state_machine=\"tasks\"}",
        ) == Some(3.0)
    });
    let test = "arn:aws:states:::expressway:test";
    let unknown = "arn:aws:states:::nothing:here";
    assert_eq!(
        sample(
            &body,
            &format!("expressway_task_failures_total{{resource=\"{test}\"}}")
        ),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            &format!("expressway_task_duration_seconds_count{{resource=\"{test}\"}}")
        ),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            &format!("expressway_task_failures_total{{resource=\"{unknown}\"}}")
        ),
        Some(3.0),
        "{body}"
    );
}

const HOLD: &str = r#"{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":120,"End":true}}}"#;

/// Issue #20, 7: SIGTERM with a StartSyncExecution and an execution in a 120 s Wait exits
/// within dev's 5 s drain timeout (plus start-up slack), not when the Wait ends.
#[test]
fn dev_exits_within_the_drain_timeout_with_long_executions_in_flight() {
    let dev = Dev::start("shutdown", &[("hold", HOLD)]);
    let body = r#"{"stateMachineArn":"arn:aws:states:us-east-1:123456789012:stateMachine:hold","input":"{}"}"#;
    let _sync = dev.send("StartSyncExecution", body);
    dev.start_execution("hold");
    dev.wait_for("the async execution running", |b| {
        sample(b, "expressway_executions_in_flight").is_some_and(|v| v >= 1.0)
    });
    let mut dev = dev;
    dev.sigterm();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = dev.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "dev still running 30 s after SIGTERM (drain timeout 5 s)"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0));
}
