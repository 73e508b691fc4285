//! The `expressway` CLI contract: one line on stdout, exit codes, log records.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_expressway"))
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn temp_file(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("expressway-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write temp file");
    p
}

fn stdout_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().count(),
        1,
        "stdout must be exactly one line: {text}"
    );
    serde_json::from_str(&text).expect("stdout is JSON")
}

#[test]
fn run_prints_one_result_line_for_the_example() {
    let out = bin()
        .args(["run"])
        .arg(repo("examples/hello.asl.json"))
        .args(["--input", r#"{"name":"Ada","amount":250}"#, "--name", "n1"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let r = stdout_json(&out);
    assert_eq!(r["status"], "SUCCEEDED");
    assert_eq!(r["name"], "n1");
    assert_eq!(
        r["output"],
        serde_json::json!({"greeting": "Hello, Ada!", "amount": 250, "tier": "gold"})
    );
    assert!(r["executionArn"]
        .as_str()
        .is_some_and(|a| a.starts_with("arn:aws:states:us-east-1:123456789012:express:hello:n1:")));
    assert!(r.get("error").is_none());
}

#[test]
fn the_jsonata_example_prices_discounts_and_totals() {
    let out = bin()
        .args(["run"])
        .arg(repo("examples/quote.asl.json"))
        .args([
            "--input",
            r#"{"customer":"Ada","items":[{"name":"tea","price":4.5,"qty":10},{"name":"cup","price":30,"qty":2}]}"#,
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let r = stdout_json(&out);
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert_eq!(
        r["output"],
        serde_json::json!({"customer": "Ada", "net": 94.5, "lines": ["10 x tea", "2 x cup"], "discount": "10%", "gross": 113.4})
    );
}

#[test]
fn failed_executions_still_exit_zero_with_error_and_cause() {
    let def = temp_file(
        "fail.asl.json",
        r#"{"StartAt":"F","States":{"F":{"Type":"Fail","Error":"Oops","Cause":"because"}}}"#,
    );
    let out = bin().arg("run").arg(&def).output().expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let r = stdout_json(&out);
    assert_eq!(
        (
            r["status"].as_str(),
            r["error"].as_str(),
            r["cause"].as_str()
        ),
        (Some("FAILED"), Some("Oops"), Some("because"))
    );
    assert!(r.get("output").is_none());
}

#[test]
fn logs_are_written_as_one_record_filtered_by_level() {
    let def = temp_file(
        "logs.asl.json",
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}}"#,
    );
    let logs = temp_file("logs.out", "");
    let out = bin()
        .arg("run")
        .arg(&def)
        .args(["--log-level", "ALL", "--logs"])
        .arg(&logs)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(&logs).expect("log file")).expect("JSON");
    let types: Vec<&str> = record["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "ExecutionStarted",
            "PassStateEntered",
            "PassStateExited",
            "ExecutionSucceeded"
        ]
    );
    assert_eq!(
        record["events"][0]["id"], "1",
        "scalars are strings, as in CloudWatch"
    );
    assert!(
        record["events"][1]["details"].get("input").is_none(),
        "no execution data unless asked"
    );
}

#[test]
fn exit_codes_follow_the_contract() {
    let invalid = temp_file(
        "bad.asl.json",
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"Nowhere"}}}"#,
    );
    let out = bin().arg("run").arg(&invalid).output().expect("runs");
    assert_eq!(out.status.code(), Some(65), "invalid definition");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/States/A/Next"),
        "diagnostics name the location"
    );

    let out = bin()
        .args(["run", "/nonexistent/def.asl.json"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(66), "unreadable file");

    let out = bin()
        .args(["run", "--no-such-flag"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(64), "usage error");

    let out = bin()
        .arg("run")
        .arg(repo("examples/hello.asl.json"))
        .args(["--input", "{not json"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(65), "malformed input");
}

#[test]
fn validate_reports_ok_and_fail() {
    let out = bin()
        .arg("validate")
        .arg(repo("examples/hello.asl.json"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout_json(&out)["result"], "OK");
    let invalid = temp_file("bad2.asl.json", r#"{"States":{}}"#);
    let out = bin().arg("validate").arg(&invalid).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let r = stdout_json(&out);
    assert_eq!(r["result"], "FAIL");
    assert_eq!(r["diagnostics"][0]["code"], "SCHEMA_VALIDATION_FAILED");
}

#[test]
fn bench_prints_throughput() {
    let out = bin()
        .arg("bench")
        .arg(repo("examples/hello.asl.json"))
        .args(["--input", r#"{"name":"x","amount":1}"#, "--seconds", "0.2"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let r = stdout_json(&out);
    assert!(r["executions"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(r["threads"], 1);
}
