//! `expressway_executions_aborted_total`: an execution still running when the shutdown drain
//! budget runs out is abandoned, counted as aborted, and its offset is not committed (the next
//! owner re-runs it). Its own test binary, because it installs the process-wide recorder.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn an_execution_outliving_the_drain_budget_is_counted_as_aborted() {
    let env = Env::new(1);
    let prometheus = expressway_executor::telemetry::install_recorder().unwrap();
    let mut cfg = env.config();
    cfg.group = "g-aborted".into();
    cfg.drain_timeout = Duration::from_millis(300);
    let exec = env.start(cfg, env.registry(&[("sleepy", SLEEPY)]));
    env.start_event(
        "k",
        &json!({"stateMachine": "sleepy", "name": "stuck", "input": {"sleep": 600}}),
    );
    let render = || {
        prometheus.run_upkeep();
        prometheus.render()
    };
    wait_until("the execution started", || {
        render().contains(r#"expressway_executions_started_total{state_machine="sleepy"} 1"#)
    });
    assert!(render().contains(r#"expressway_executions_aborted_total{state_machine="sleepy"} 0"#));
    exec.shutdown_blocking();
    let text = render();
    assert!(
        text.contains(r#"expressway_executions_aborted_total{state_machine="sleepy"} 1"#),
        "{text}"
    );
    assert!(text.contains("expressway_executions_in_flight 0"), "{text}");
    assert_eq!(
        env.high_watermark("expressway.results", 0),
        0,
        "no result published"
    );
    assert_eq!(
        env.committed("g-aborted", 1),
        vec![-1],
        "offset not committed"
    );
}
