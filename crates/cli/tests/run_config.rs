//! `expressway run --config FILE`: the task configuration reaches the HTTP and function resources.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

fn temp_file(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("expressway-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write temp file");
    p
}

/// Answers `n` HTTP/1.1 requests with `{"echo": <request body>, "path": <path>}`, one per connection.
fn serve(n: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(n) {
            let mut stream = stream.expect("connection");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            reader.read_line(&mut request_line).expect("request line");
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("header");
                if line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().expect("length");
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("body");
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
            let reply = json!({"echo": body, "path": path}).to_string();
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            )
            .expect("write");
        }
    });
    port
}

#[test]
fn run_with_config_calls_functions_and_http_endpoints() {
    let port = serve(2);
    let def = temp_file(
        "calls.asl.json",
        &json!({
            "StartAt": "Fn",
            "States": {
                "Fn": {"Type": "Task",
                       "Resource": "arn:aws:lambda:us-east-1:123456789012:function:Echo",
                       "ResultPath": "$.fn", "Next": "Http"},
                "Http": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke",
                         "Parameters": {"ApiEndpoint": format!("http://127.0.0.1:{port}/api"), "Method": "GET"},
                         "ResultSelector": {"path.$": "$.ResponseBody.path", "status.$": "$.StatusCode"},
                         "ResultPath": "$.http", "End": true}
            }
        })
        .to_string(),
    );
    let config = temp_file(
        "config.json",
        &json!({
            "egress_allowlist": ["127.0.0.1"],
            "functions": {"Echo": format!("http://127.0.0.1:{port}/echo")}
        })
        .to_string(),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_expressway"))
        .arg("run")
        .arg(&def)
        .arg("--config")
        .arg(&config)
        .args(["--input", r#"{"x":1}"#])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON result");
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert_eq!(
        r["output"],
        json!({"x": 1, "fn": {"echo": {"x": 1}, "path": "/echo"}, "http": {"path": "/api", "status": 200}})
    );
}

#[test]
fn run_rejects_an_invalid_config() {
    let def = temp_file(
        "pass.asl.json",
        r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#,
    );
    let bad = temp_file(
        "bad-config.json",
        r#"{"egress_allowlist": ["10.0.0.0/99"]}"#,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_expressway"))
        .arg("run")
        .arg(&def)
        .arg("--config")
        .arg(&bad)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("10.0.0.0/99"));
    let missing = Command::new(env!("CARGO_BIN_EXE_expressway"))
        .arg("run")
        .arg(&def)
        .args(["--config", "/nonexistent/config.json"])
        .output()
        .expect("runs");
    assert_eq!(missing.status.code(), Some(66));
}
