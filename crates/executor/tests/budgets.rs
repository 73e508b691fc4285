//! Runaway executions on a pod: a Pass/Choice loop at log level ALL and a Map bigger than the
//! pod's `execution_memory_bytes` fail with `States.DataLimitExceeded` (a result, not a stuck or
//! crashed pod), are counted in `expressway_execution_budget_exceeded_total`, and a normal
//! execution beside them completes. Its own test binary: it installs the process-wide recorder.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;

const LOOP: &str = r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"C"},
  "C":{"Type":"Choice","Choices":[{"Variable":"$.stop","IsPresent":true,"Next":"Done"}],"Default":"A"},
  "Done":{"Type":"Succeed"}}}"#;
const BIG_MAP: &str = r#"{"QueryLanguage":"JSONata","StartAt":"M","States":{"M":{"Type":"Map",
  "Items":"{% [1..200000] %}",
  "ItemProcessor":{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}},
  "Output":"{% $count($states.result) %}","End":true}}}"#;

#[test]
fn executions_over_their_budgets_fail_and_are_counted() {
    let env = Env::new(1);
    let prometheus = expressway_executor::telemetry::install_recorder().unwrap();
    let mut cfg = env.config();
    cfg.group = "g-budgets".into();
    // 200,000 Map items fit in the default 64 MiB, not in 16 MiB; 25,000 log events do
    cfg.execution_memory_bytes = 16 * 1024 * 1024;
    let exec = env.start(
        cfg,
        env.registry(&[("loop", LOOP), ("big-map", BIG_MAP), ("echo", ECHO)]),
    );
    env.start_event("a", &json!({"stateMachine": "loop", "name": "runaway"}));
    env.start_event("b", &json!({"stateMachine": "big-map", "name": "huge"}));
    env.start_event(
        "c",
        &json!({"stateMachine": "echo", "name": "normal", "input": {"x": 1}}),
    );
    let results = env.reader("expressway.results").at_least(3).to_vec();
    let by_name = |n: &str| {
        results
            .iter()
            .map(|r| r.json())
            .find(|v| v["name"] == json!(n))
            .unwrap()
    };
    let runaway = by_name("runaway");
    assert_eq!(runaway["status"], json!("FAILED"), "{runaway}");
    assert_eq!(runaway["error"], json!("States.DataLimitExceeded"));
    assert!(runaway["cause"]
        .as_str()
        .unwrap()
        .contains("budget of 25000 log events"));
    let huge = by_name("huge");
    assert_eq!(huge["error"], json!("States.DataLimitExceeded"), "{huge}");
    assert!(huge["cause"]
        .as_str()
        .unwrap()
        .contains("memory budget of 16777216 bytes"));
    assert_eq!(by_name("normal")["status"], json!("SUCCEEDED"));

    prometheus.run_upkeep();
    let text = prometheus.render();
    for line in [
        r#"expressway_execution_budget_exceeded_total{state_machine="loop",budget="events"} 1"#,
        r#"expressway_execution_budget_exceeded_total{state_machine="big-map",budget="memory"} 1"#,
        r#"expressway_execution_budget_exceeded_total{state_machine="echo",budget="memory"} 0"#,
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
    exec.shutdown_blocking();
}
