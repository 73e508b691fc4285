//! StartSyncExecution runs the engine in-process: a Pass/Choice loop must time out at its
//! `TimeoutSeconds` while other requests on the same runtime are still answered. Virtual time: a
//! ticker advances tokio's paused clock while the loop keeps the runtime busy.

use expressway_executor::Registry;
use expressway_gateway::api::Obj;
use expressway_gateway::{Gateway, MemoryBackend};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const LOOP: &str = r#"{"TimeoutSeconds":2,"StartAt":"A","States":{"A":{"Type":"Pass","Next":"C"},
  "C":{"Type":"Choice","Choices":[{"Variable":"$.stop","IsPresent":true,"Next":"Done"}],"Default":"A"},
  "Done":{"Type":"Succeed"}}}"#;
const PASS: &str = r#"{"StartAt":"P","States":{"P":{"Type":"Pass","Result":{"v":1},"End":true}}}"#;

fn obj(v: Value) -> Obj {
    match v {
        Value::Object(o) => o,
        _ => Obj::new(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_sync_pass_choice_loop_times_out_while_other_requests_are_answered() {
    let registry = Arc::new(Registry::new("us-east-1", "123456789012"));
    registry.set_loaded();
    let gw = Arc::new(Gateway::new(
        registry,
        Arc::new(MemoryBackend::default()),
        expressway_executor::default_engine_runtime(),
    ));
    for (name, def) in [("loop", LOOP), ("pass", PASS)] {
        gw.call(
            "CreateStateMachine",
            &obj(json!({"name": name, "definition": def, "type": "EXPRESS",
                "roleArn": "arn:aws:iam::123456789012:role/r"})),
        )
        .await
        .expect("created");
    }
    let ticker = tokio::spawn(async {
        loop {
            tokio::time::advance(Duration::from_millis(1)).await;
        }
    });
    let sync = |name: &str| {
        let gw = gw.clone();
        let arn = format!("arn:aws:states:us-east-1:123456789012:stateMachine:{name}");
        tokio::spawn(async move {
            gw.call("StartSyncExecution", &obj(json!({"stateMachineArn": arn})))
                .await
                .map_err(|e| e.message)
        })
    };
    let looping = sync("loop");
    tokio::task::yield_now().await;
    let normal = sync("pass").await.expect("joined").expect("answered");
    assert_eq!(normal["status"], json!("SUCCEEDED"));
    assert!(!looping.is_finished(), "the loop is still running");
    let timed_out = looping.await.expect("joined").expect("answered");
    assert_eq!(timed_out["status"], json!("TIMED_OUT"), "{timed_out}");
    let secs = timed_out["stopDate"].as_f64().unwrap_or(0.0)
        - timed_out["startDate"].as_f64().unwrap_or(0.0);
    assert!((2.0..2.1).contains(&secs), "timed out after {secs} s");
    ticker.abort();
}
