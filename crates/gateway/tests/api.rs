//! The operations against an in-memory backend, and the HTTP layer (awsJson1_0, SigV4, limits)
//! on a real socket.

use expressway_executor::Registry;
use expressway_gateway::api::Obj;
use expressway_gateway::{Gateway, MemoryBackend, ServerConfig};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACCOUNT: &str = "123456789012";
const PASS: &str = r#"{"StartAt":"P","States":{"P":{"Type":"Pass","Result":{"v":1},"End":true}}}"#;
const PASS2: &str = r#"{"StartAt":"P","States":{"P":{"Type":"Pass","Result":{"v":2},"End":true}}}"#;

fn arn(name: &str) -> String {
    format!("arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:{name}")
}

fn setup() -> (Arc<Gateway>, MemoryBackend) {
    let registry = Arc::new(Registry::new("us-east-1", ACCOUNT));
    registry.set_loaded();
    let backend = MemoryBackend::default();
    let gw = Gateway::new(
        registry,
        Arc::new(backend.clone()),
        expressway_executor::default_engine_runtime(),
    );
    (Arc::new(gw), backend)
}

fn obj(v: Value) -> Obj {
    match v {
        Value::Object(o) => o,
        _ => Obj::new(),
    }
}

async fn call(gw: &Gateway, op: &str, body: Value) -> Result<Value, (String, String)> {
    gw.call(op, &obj(body))
        .await
        .map_err(|e| (e.kind.to_string(), e.message))
}

async fn create(gw: &Gateway, name: &str, def: &str) -> Value {
    call(
        gw,
        "CreateStateMachine",
        json!({"name": name, "definition": def, "roleArn": "arn:aws:iam::123456789012:role/r", "type": "EXPRESS"}),
    )
    .await
    .expect("created")
}

#[tokio::test]
async fn machines_lifecycle_and_definitions_records() {
    let (gw, backend) = setup();
    let r = create(&gw, "orders", PASS).await;
    assert_eq!(r["stateMachineArn"], json!(arn("orders")));
    // idempotent with the same definition, conflict with another
    create(&gw, "orders", PASS).await;
    let e = call(
        &gw,
        "CreateStateMachine",
        json!({"name": "orders", "definition": PASS2, "type": "EXPRESS"}),
    )
    .await
    .expect_err("conflict");
    assert_eq!(e.0, "StateMachineAlreadyExists");
    // STANDARD and missing type are refused, invalid definitions too
    let e = call(
        &gw,
        "CreateStateMachine",
        json!({"name": "s", "definition": PASS, "type": "STANDARD"}),
    )
    .await
    .expect_err("standard");
    assert_eq!(e.0, "StateMachineTypeNotSupported");
    let e = call(
        &gw,
        "CreateStateMachine",
        json!({"name": "bad", "definition": "{\"StartAt\":\"X\"}", "type": "EXPRESS"}),
    )
    .await
    .expect_err("invalid");
    assert_eq!(e.0, "InvalidDefinition");
    assert!(
        e.1.starts_with("Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED"),
        "{}",
        e.1
    );
    let e = call(
        &gw,
        "CreateStateMachine",
        json!({"name": "a b", "definition": PASS, "type": "EXPRESS"}),
    )
    .await
    .expect_err("name");
    assert_eq!(e.0, "InvalidName");
    let e = call(&gw, "CreateStateMachine", json!({"definition": PASS}))
        .await
        .expect_err("missing name");
    assert_eq!(e.0, "ValidationException");

    let d = call(
        &gw,
        "DescribeStateMachine",
        json!({"stateMachineArn": arn("orders")}),
    )
    .await
    .expect("describe");
    assert_eq!(d["definition"], json!(PASS));
    assert_eq!(d["type"], json!("EXPRESS"));
    assert_eq!(d["status"], json!("ACTIVE"));
    assert_eq!(d["loggingConfiguration"]["level"], json!("OFF"));
    let rev = d["revisionId"].as_str().expect("revision").to_string();

    let u = call(
        &gw,
        "UpdateStateMachine",
        json!({"stateMachineArn": arn("orders"), "definition": PASS2}),
    )
    .await
    .expect("update");
    assert_ne!(u["revisionId"], json!(rev));
    let d = call(
        &gw,
        "DescribeStateMachine",
        json!({"stateMachineArn": arn("orders")}),
    )
    .await
    .expect("describe");
    assert_eq!(d["definition"], json!(PASS2));

    // The definitions topic holds the machine record keyed by name (readable by old pods).
    let recs = backend.records("definitions");
    let last = recs.last().expect("a record");
    assert_eq!(last.key.as_deref(), Some("orders"));
    let v: Value = serde_json::from_slice(last.value.as_deref().expect("value")).expect("json");
    assert_eq!(v["definition"], json!(PASS2));

    // Pagination
    for i in 0..5 {
        create(&gw, &format!("m{i}"), PASS).await;
    }
    let p1 = call(&gw, "ListStateMachines", json!({"maxResults": 4}))
        .await
        .expect("page 1");
    assert_eq!(p1["stateMachines"].as_array().map(Vec::len), Some(4));
    let token = p1["nextToken"].as_str().expect("token").to_string();
    let p2 = call(
        &gw,
        "ListStateMachines",
        json!({"maxResults": 4, "nextToken": token}),
    )
    .await
    .expect("page 2");
    assert_eq!(p2["stateMachines"].as_array().map(Vec::len), Some(2));
    assert!(p2.get("nextToken").is_none());
    let e = call(&gw, "ListStateMachines", json!({"nextToken": "garbage"}))
        .await
        .expect_err("token");
    assert_eq!(e.0, "InvalidToken");

    call(
        &gw,
        "DeleteStateMachine",
        json!({"stateMachineArn": arn("orders")}),
    )
    .await
    .expect("delete");
    let e = call(
        &gw,
        "DescribeStateMachine",
        json!({"stateMachineArn": arn("orders")}),
    )
    .await
    .expect_err("gone");
    assert_eq!(e.0, "StateMachineDoesNotExist");
    let recs = backend.records("definitions");
    assert_eq!(
        recs.last().map(|r| r.value.is_none()),
        Some(true),
        "tombstone"
    );
}

#[tokio::test]
async fn versions_aliases_and_tags() {
    let (gw, backend) = setup();
    create(&gw, "m", PASS).await;
    let v1 = call(
        &gw,
        "PublishStateMachineVersion",
        json!({"stateMachineArn": arn("m"), "description": "one"}),
    )
    .await
    .expect("v1");
    assert_eq!(
        v1["stateMachineVersionArn"],
        json!(format!("{}:1", arn("m")))
    );
    // same revision + description: the same version
    let again = call(
        &gw,
        "PublishStateMachineVersion",
        json!({"stateMachineArn": arn("m"), "description": "one"}),
    )
    .await
    .expect("idempotent");
    assert_eq!(
        again["stateMachineVersionArn"],
        v1["stateMachineVersionArn"]
    );
    let u = call(
        &gw,
        "UpdateStateMachine",
        json!({"stateMachineArn": arn("m"), "definition": PASS2, "publish": true}),
    )
    .await
    .expect("update+publish");
    assert_eq!(
        u["stateMachineVersionArn"],
        json!(format!("{}:2", arn("m")))
    );
    let e = call(
        &gw,
        "PublishStateMachineVersion",
        json!({"stateMachineArn": arn("m"), "revisionId": "nope"}),
    )
    .await
    .expect_err("stale revision");
    assert_eq!(e.0, "ConflictException");
    let list = call(
        &gw,
        "ListStateMachineVersions",
        json!({"stateMachineArn": arn("m")}),
    )
    .await
    .expect("versions");
    let arns: Vec<&str> = list["stateMachineVersions"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v["stateMachineVersionArn"].as_str())
        .collect();
    assert_eq!(
        arns,
        vec![format!("{}:2", arn("m")), format!("{}:1", arn("m"))]
    );
    let d = call(
        &gw,
        "DescribeStateMachine",
        json!({"stateMachineArn": format!("{}:1", arn("m"))}),
    )
    .await
    .expect("version");
    assert_eq!(d["definition"], json!(PASS));

    // alias 50/50 between v1 and v2
    let routes = json!([
        {"stateMachineVersionArn": format!("{}:1", arn("m")), "weight": 50},
        {"stateMachineVersionArn": format!("{}:2", arn("m")), "weight": 50},
    ]);
    let bad = json!([
        {"stateMachineVersionArn": format!("{}:1", arn("m")), "weight": 50},
        {"stateMachineVersionArn": format!("{}:2", arn("m")), "weight": 40},
    ]);
    let e = call(
        &gw,
        "CreateStateMachineAlias",
        json!({"name": "live", "routingConfiguration": bad}),
    )
    .await
    .expect_err("weights");
    assert_eq!(e.0, "ValidationException");
    let e = call(&gw, "CreateStateMachineAlias", json!({"name": "live", "routingConfiguration": [{"stateMachineVersionArn": format!("{}:9", arn("m")), "weight": 100}]}))
        .await
        .expect_err("no such version");
    assert_eq!(e.0, "ResourceNotFound");
    let a = call(
        &gw,
        "CreateStateMachineAlias",
        json!({"name": "live", "routingConfiguration": routes}),
    )
    .await
    .expect("alias");
    let alias_arn = format!("{}:live", arn("m"));
    assert_eq!(a["stateMachineAliasArn"], json!(alias_arn));
    let d = call(
        &gw,
        "DescribeStateMachineAlias",
        json!({"stateMachineAliasArn": alias_arn}),
    )
    .await
    .expect("describe alias");
    assert_eq!(d["routingConfiguration"], routes);
    let l = call(
        &gw,
        "ListStateMachineAliases",
        json!({"stateMachineArn": arn("m")}),
    )
    .await
    .expect("list");
    assert_eq!(
        l["stateMachineAliases"][0]["stateMachineAliasArn"],
        json!(alias_arn)
    );

    // Sync executions through the alias split 50/50 (exact over 100 picks).
    let mut seen = [0u32; 3];
    for _ in 0..100 {
        let r = call(
            &gw,
            "StartSyncExecution",
            json!({"stateMachineArn": alias_arn}),
        )
        .await
        .expect("sync");
        let out: Value = serde_json::from_str(r["output"].as_str().expect("output")).expect("json");
        seen[out["v"].as_u64().expect("v") as usize] += 1;
    }
    assert_eq!(seen, [0, 50, 50]);

    // a version used by an alias cannot be deleted
    let e = call(
        &gw,
        "DeleteStateMachineVersion",
        json!({"stateMachineVersionArn": format!("{}:1", arn("m"))}),
    )
    .await
    .expect_err("referenced");
    assert_eq!(e.0, "ConflictException");
    call(&gw, "UpdateStateMachineAlias", json!({"stateMachineAliasArn": alias_arn, "routingConfiguration": [{"stateMachineVersionArn": format!("{}:2", arn("m")), "weight": 100}]}))
        .await
        .expect("update alias");
    call(
        &gw,
        "DeleteStateMachineVersion",
        json!({"stateMachineVersionArn": format!("{}:1", arn("m"))}),
    )
    .await
    .expect("delete v1");
    assert!(backend
        .records("definitions")
        .iter()
        .any(|r| r.key.as_deref() == Some("m:1") && r.value.is_none()));
    call(
        &gw,
        "DeleteStateMachineAlias",
        json!({"stateMachineAliasArn": alias_arn}),
    )
    .await
    .expect("delete alias");
    let e = call(
        &gw,
        "DescribeStateMachineAlias",
        json!({"stateMachineAliasArn": alias_arn}),
    )
    .await
    .expect_err("gone");
    assert_eq!(e.0, "ResourceNotFound");

    // tags
    call(&gw, "TagResource", json!({"resourceArn": arn("m"), "tags": [{"key": "team", "value": "a"}, {"key": "env", "value": "dev"}]}))
        .await
        .expect("tag");
    call(
        &gw,
        "UntagResource",
        json!({"resourceArn": arn("m"), "tagKeys": ["env"]}),
    )
    .await
    .expect("untag");
    let t = call(&gw, "ListTagsForResource", json!({"resourceArn": arn("m")}))
        .await
        .expect("tags");
    assert_eq!(t["tags"], json!([{"key": "team", "value": "a"}]));
    let e = call(
        &gw,
        "ListTagsForResource",
        json!({"resourceArn": arn("nope")}),
    )
    .await
    .expect_err("missing");
    assert_eq!(e.0, "ResourceNotFound");
    // tagging kept the definition and versions
    let d = call(
        &gw,
        "DescribeStateMachine",
        json!({"stateMachineArn": arn("m")}),
    )
    .await
    .expect("describe");
    assert_eq!(d["definition"], json!(PASS2));
}

#[tokio::test]
async fn executions_validate_and_refusals() {
    let (gw, backend) = setup();
    create(&gw, "m", r#"{"StartAt":"P","States":{"P":{"Type":"Pass","Parameters":{"hi.$":"$.name"},"End":true}}}"#).await;
    let r = call(
        &gw,
        "StartExecution",
        json!({"stateMachineArn": arn("m"), "input": "{\"name\":\"Ada\"}", "name": "e1"}),
    )
    .await
    .expect("start");
    let expected = expressway_wire::execution_identity(
        "us-east-1",
        ACCOUNT,
        "m",
        Some("e1"),
        "expressway.start",
        0,
        0,
    );
    assert_eq!(r["executionArn"], json!(expected.arn));
    let starts = backend.records("start");
    let ev: Value = serde_json::from_slice(starts[0].value.as_deref().expect("v")).expect("json");
    assert_eq!(
        ev,
        json!({"stateMachine": arn("m"), "input": {"name": "Ada"}, "name": "e1"})
    );

    let s = call(
        &gw,
        "StartSyncExecution",
        json!({"stateMachineArn": arn("m"), "input": "{\"name\":\"Ada\"}"}),
    )
    .await
    .expect("sync");
    assert_eq!(s["status"], json!("SUCCEEDED"));
    assert_eq!(s["output"], json!("{\"hi\":\"Ada\"}"));
    assert!(s["executionArn"]
        .as_str()
        .expect("arn")
        .contains(":express:m:"));
    let results = backend.records("results");
    assert_eq!(results.len(), 1);
    let result: Value =
        serde_json::from_slice(results[0].value.as_deref().expect("v")).expect("json");
    assert_eq!(result["output"], json!({"hi": "Ada"}));
    assert_eq!(backend.records("logs").len(), 1);
    let meta = call(
        &gw,
        "StartSyncExecution",
        json!({"stateMachineArn": arn("m"), "includedData": "METADATA_ONLY"}),
    )
    .await
    .expect("sync");
    assert!(meta.get("output").is_none() && meta.get("input").is_none());

    let e = call(
        &gw,
        "StartExecution",
        json!({"stateMachineArn": arn("m"), "input": "{nope"}),
    )
    .await
    .expect_err("bad input");
    assert_eq!(e.0, "InvalidExecutionInput");
    // Numbers without an exact value are refused by name, as the executor dead-letters them,
    // on every path that takes an input (never rounded: 1.8446744073709552e22).
    for (op, input) in [
        ("StartExecution", r#"{"n": 18446744073709551617123}"#),
        ("StartSyncExecution", r#"{"n": 18446744073709551617123}"#),
        ("StartSyncExecution", r#"[1e400]"#),
    ] {
        let e = call(
            &gw,
            op,
            json!({"stateMachineArn": arn("m"), "input": input}),
        )
        .await
        .expect_err("out-of-range number");
        assert_eq!(e.0, "InvalidExecutionInput", "{op} {input}: {e:?}");
        assert!(
            e.1.contains(if input.contains("1e400") {
                "1e400"
            } else {
                "18446744073709551617123"
            }),
            "{op}: {}",
            e.1
        );
    }
    let e = call(
        &gw,
        "TestState",
        json!({"definition": r#"{"Type": "Pass", "End": true}"#, "input": r#"{"n": 18446744073709551617123}"#}),
    )
    .await
    .expect_err("out-of-range number");
    assert_eq!(e.0, "InvalidExecutionInput", "{e:?}");
    let e = call(
        &gw,
        "StartExecution",
        json!({"stateMachineArn": arn("nope")}),
    )
    .await
    .expect_err("missing");
    assert_eq!(e.0, "StateMachineDoesNotExist");
    let e = call(&gw, "StartExecution", json!({"stateMachineArn": "m"}))
        .await
        .expect_err("not an arn");
    assert_eq!(e.0, "InvalidArn");
    let big = format!("\"{}\"", "x".repeat(262_144));
    let e = call(
        &gw,
        "StartSyncExecution",
        json!({"stateMachineArn": arn("m"), "input": big}),
    )
    .await
    .expect_err("too large");
    assert_eq!(e.0, "ValidationException");

    let v = call(
        &gw,
        "ValidateStateMachineDefinition",
        json!({"definition": "{\"StartAt\":\"X\"}", "type": "EXPRESS"}),
    )
    .await
    .expect("validate");
    assert_eq!(v["result"], json!("FAIL"));
    assert_eq!(
        v["diagnostics"][0]["code"],
        json!("SCHEMA_VALIDATION_FAILED")
    );
    let v = call(
        &gw,
        "ValidateStateMachineDefinition",
        json!({"definition": PASS}),
    )
    .await
    .expect("validate");
    assert_eq!(
        v,
        json!({"result": "OK", "diagnostics": [], "truncated": false})
    );

    let express = r["executionArn"].as_str().expect("arn");
    for op in [
        "DescribeExecution",
        "GetExecutionHistory",
        "StopExecution",
        "RedriveExecution",
    ] {
        let e = call(&gw, op, json!({"executionArn": express}))
            .await
            .expect_err(op);
        assert_eq!(
            e,
            (
                "InvalidArn".to_string(),
                "Invalid Arn: 'Resource type not valid in this context: express'".to_string()
            )
        );
    }
    let e = call(&gw, "ListExecutions", json!({"stateMachineArn": arn("m")}))
        .await
        .expect_err("list executions");
    assert_eq!(e.0, "StateMachineTypeNotSupported");
    let e = call(&gw, "CreateActivity", json!({"name": "a"}))
        .await
        .expect_err("activity");
    assert_eq!(e.0, "UnknownOperationException");
    let e = call(&gw, "Frobnicate", json!({}))
        .await
        .expect_err("unknown");
    assert_eq!(e.0, "UnknownOperationException");
}

#[tokio::test]
async fn test_state_inspection_mock_catch_retry_choice() {
    let (gw, _) = setup();
    let task = json!({
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"x.$": "$.a"}, "ResultPath": "$.r", "Next": "After",
        "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 2, "MaxAttempts": 2}],
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Handler"}]
    })
    .to_string();
    let ok = call(&gw, "TestState", json!({"definition": task, "input": "{\"a\":1}", "inspectionLevel": "DEBUG", "mock": {"result": "{\"done\":true}"}}))
        .await
        .expect("mocked");
    assert_eq!(ok["status"], json!("SUCCEEDED"));
    assert_eq!(ok["nextState"], json!("After"));
    assert_eq!(ok["output"], json!("{\"a\":1,\"r\":{\"done\":true}}"));
    assert_eq!(ok["inspectionData"]["input"], json!("{\"a\":1}"));
    assert_eq!(ok["inspectionData"]["result"], json!("{\"done\":true}"));

    let retry = call(&gw, "TestState", json!({"definition": task, "input": "{\"a\":1}", "inspectionLevel": "DEBUG", "mock": {"errorOutput": {"error": "Flaky", "cause": "c"}}}))
        .await
        .expect("retriable");
    assert_eq!(retry["status"], json!("RETRIABLE"));
    assert_eq!(retry["error"], json!("Flaky"));
    assert_eq!(retry["errorDetails"]["retryIndex"], json!(0));
    let caught = call(&gw, "TestState", json!({"definition": task, "input": "{\"a\":1}", "mock": {"errorOutput": {"error": "Other", "cause": "boom"}}}))
        .await
        .expect("caught");
    assert_eq!(caught["status"], json!("CAUGHT_ERROR"));
    assert_eq!(caught["nextState"], json!("Handler"));
    assert_eq!(caught["error"], json!("Other"));
    assert!(caught.get("inspectionData").is_none());

    let choice = json!({"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 5, "Next": "Big"}], "Default": "Small"}).to_string();
    let big = call(
        &gw,
        "TestState",
        json!({"definition": choice, "input": "{\"n\":9}"}),
    )
    .await
    .expect("choice");
    assert_eq!(
        (big["status"].clone(), big["nextState"].clone()),
        (json!("SUCCEEDED"), json!("Big"))
    );
    let small = call(
        &gw,
        "TestState",
        json!({"definition": choice, "input": "{\"n\":1}"}),
    )
    .await
    .expect("choice");
    assert_eq!(small["nextState"], json!("Small"));

    let fail = call(
        &gw,
        "TestState",
        json!({"definition": "{\"Type\":\"Fail\",\"Error\":\"E\",\"Cause\":\"C\"}"}),
    )
    .await
    .expect("fail");
    assert_eq!(
        (fail["status"].clone(), fail["error"].clone()),
        (json!("FAILED"), json!("E"))
    );

    // A state of a whole machine, with variables.
    let machine = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {"v.$": "$x"}, "End": true}}}).to_string();
    let v = call(&gw, "TestState", json!({"definition": machine, "stateName": "A", "variables": "{\"x\": 42}", "inspectionLevel": "TRACE"}))
        .await
        .expect("variables");
    assert_eq!(v["output"], json!("{\"v\":42}"));
    assert!(v["inspectionData"]["events"].is_array());
    let e = call(
        &gw,
        "TestState",
        json!({"definition": "{\"Type\":\"Nope\"}"}),
    )
    .await
    .expect_err("invalid");
    assert_eq!(e.0, "InvalidDefinition");
}

// ---- HTTP -------------------------------------------------------------------------------------

/// A gateway whose registry holds `hello` from a definitions file (as `--definitions DIR`
/// loads it), next to machines created through the API.
fn setup_with_file() -> (Arc<Gateway>, MemoryBackend) {
    let (gw, backend) = setup();
    gw.registry()
        .insert(
            "hello",
            PASS,
            Some(&json!({"level": "ERROR", "includeExecutionData": false})),
        )
        .expect("file machine");
    (gw, backend)
}

#[tokio::test]
async fn file_machines_are_listed_described_and_started_like_api_machines() {
    let (gw, backend) = setup_with_file();
    create(&gw, "orders", PASS2).await;
    let list = call(&gw, "ListStateMachines", json!({}))
        .await
        .expect("list");
    let names: Vec<&str> = list["stateMachines"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, vec!["hello", "orders"]);
    assert_eq!(
        list["stateMachines"][0]["stateMachineArn"],
        json!(arn("hello"))
    );

    let d = call(
        &gw,
        "DescribeStateMachine",
        json!({"stateMachineArn": arn("hello")}),
    )
    .await
    .expect("describe");
    assert_eq!(d["definition"], json!(PASS));
    assert_eq!(d["type"], json!("EXPRESS"));
    assert_eq!(d["loggingConfiguration"]["level"], json!("ERROR"));
    assert!(d["description"]
        .as_str()
        .expect("description")
        .starts_with("Defined by the file hello.asl.json of the definitions directory; read-only"));
    let revision = d["revisionId"].as_str().expect("revision").to_string();
    assert_eq!(revision.len(), 32);
    let tags = call(
        &gw,
        "ListTagsForResource",
        json!({"resourceArn": arn("hello")}),
    )
    .await
    .expect("tags");
    assert_eq!(
        tags["tags"],
        json!([{"key": "expressway:source", "value": "definitions-directory"},
               {"key": "expressway:file", "value": "hello.asl.json"}])
    );

    let s = call(
        &gw,
        "StartSyncExecution",
        json!({"stateMachineArn": arn("hello")}),
    )
    .await
    .expect("sync");
    assert_eq!(
        (s["status"].clone(), s["output"].clone()),
        (json!("SUCCEEDED"), json!("{\"v\":1}"))
    );
    let r = call(
        &gw,
        "StartExecution",
        json!({"stateMachineArn": arn("hello"), "name": "f1"}),
    )
    .await
    .expect("start");
    assert!(r["executionArn"]
        .as_str()
        .expect("arn")
        .contains(":express:hello:f1:"));
    let ev: Value =
        serde_json::from_slice(backend.records("start")[0].value.as_deref().expect("value"))
            .expect("json");
    assert_eq!(ev["stateMachine"], json!(arn("hello")));
    let versions = call(
        &gw,
        "ListStateMachineVersions",
        json!({"stateMachineArn": arn("hello")}),
    )
    .await
    .expect("versions");
    assert_eq!(versions["stateMachineVersions"], json!([]));
}

#[tokio::test]
async fn file_machines_are_read_only_and_own_their_name() {
    let (gw, backend) = setup_with_file();
    // Same name through the API: refused, whatever the definition.
    for def in [PASS, PASS2] {
        let e = call(
            &gw,
            "CreateStateMachine",
            json!({"name": "hello", "definition": def, "type": "EXPRESS"}),
        )
        .await
        .expect_err("the file owns the name");
        assert_eq!(e.0, "StateMachineAlreadyExists");
        assert!(
            e.1.contains("defined by the file hello.asl.json"),
            "{}",
            e.1
        );
    }
    let hello = arn("hello");
    let refused: Vec<(&str, Value)> = vec![
        (
            "UpdateStateMachine",
            json!({"stateMachineArn": hello, "definition": PASS2}),
        ),
        ("DeleteStateMachine", json!({"stateMachineArn": hello})),
        (
            "DeleteStateMachine",
            json!({"stateMachineArn": format!("{hello}:1")}),
        ),
        (
            "PublishStateMachineVersion",
            json!({"stateMachineArn": hello}),
        ),
        (
            "DeleteStateMachineVersion",
            json!({"stateMachineVersionArn": format!("{hello}:1")}),
        ),
        (
            "TagResource",
            json!({"resourceArn": hello, "tags": [{"key": "a", "value": "b"}]}),
        ),
        (
            "UntagResource",
            json!({"resourceArn": hello, "tagKeys": ["a"]}),
        ),
        (
            "CreateStateMachineAlias",
            json!({"name": "live", "routingConfiguration": [{"stateMachineVersionArn": format!("{hello}:1"), "weight": 100}]}),
        ),
    ];
    for (op, body) in refused {
        let e = call(&gw, op, body).await.expect_err(op);
        assert_eq!(e.0, "ConflictException", "{op}: {}", e.1);
        assert!(e.1.contains("read-only through the API"), "{op}: {}", e.1);
    }
    assert!(
        backend.records("definitions").is_empty(),
        "nothing was written for the file machine"
    );
    // Versions and aliases of a file machine do not exist, with the reason.
    for op in ["StartExecution", "StartSyncExecution"] {
        let e = call(&gw, op, json!({"stateMachineArn": format!("{hello}:live")}))
            .await
            .expect_err(op);
        assert_eq!(e.0, "StateMachineDoesNotExist", "{op}");
        assert!(e.1.contains("has no versions or aliases"), "{op}: {}", e.1);
    }
    // A definitions-topic record of the same name (written before the file existed) is
    // shadowed: the file's definition is what runs and what Describe shows.
    gw.registry()
        .apply_record(
            b"hello",
            Some(json!({"definition": PASS2}).to_string().as_bytes()),
        )
        .expect("record");
    let s = call(&gw, "StartSyncExecution", json!({"stateMachineArn": hello}))
        .await
        .expect("sync");
    assert_eq!(s["output"], json!("{\"v\":1}"));
    let d = call(
        &gw,
        "DescribeStateMachine",
        json!({"stateMachineArn": hello}),
    )
    .await
    .expect("describe");
    assert_eq!(d["definition"], json!(PASS));
}

#[tokio::test]
async fn arns_of_another_region_or_account_name_no_machine() {
    let (gw, backend) = setup_with_file();
    create(&gw, "orders", PASS).await;
    for name in ["hello", "orders"] {
        for other in [
            format!("arn:aws:states:eu-west-1:{ACCOUNT}:stateMachine:{name}"),
            format!("arn:aws:states:us-east-1:999999999999:stateMachine:{name}"),
        ] {
            for op in [
                "StartExecution",
                "StartSyncExecution",
                "DescribeStateMachine",
                "UpdateStateMachine",
                "PublishStateMachineVersion",
            ] {
                let e = call(
                    &gw,
                    op,
                    json!({"stateMachineArn": other, "definition": PASS2}),
                )
                .await
                .expect_err(op);
                assert_eq!(e.0, "StateMachineDoesNotExist", "{op} {other}");
                assert_eq!(
                    e.1,
                    format!("State Machine Does Not Exist: '{other}' (this endpoint serves partition 'aws', region 'us-east-1', account '{ACCOUNT}')"),
                    "{op}"
                );
            }
            let e = call(&gw, "ListTagsForResource", json!({"resourceArn": other}))
                .await
                .expect_err("tags");
            assert_eq!(e.0, "ResourceNotFound");
        }
    }
    assert!(backend.records("start").is_empty(), "nothing started");
    assert!(backend.records("results").is_empty(), "nothing ran");
}

async fn serve(config: ServerConfig) -> (std::net::SocketAddr, Arc<Gateway>) {
    let (gw, _) = setup();
    let app = expressway_gateway::router(gw.clone(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, gw)
}

/// One HTTP/1.1 request; returns (status, body).
async fn http(addr: std::net::SocketAddr, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write body");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn target(op: &str) -> Vec<(&'static str, String)> {
    vec![
        ("X-Amz-Target", format!("AWSStepFunctions.{op}")),
        ("Content-Type", "application/x-amz-json-1.0".into()),
    ]
}

#[tokio::test]
async fn http_protocol_errors_and_limits() {
    let (addr, _) = serve(ServerConfig {
        auth: None,
        max_body_bytes: 4096,
        ..ServerConfig::default()
    })
    .await;
    let (st, body) = http(addr, &target("ListStateMachines"), b"{}").await;
    assert_eq!(st, 200);
    assert_eq!(body, json!({"stateMachines": []}));
    let (st, body) = http(addr, &target("NoSuchThing"), b"{}").await;
    assert_eq!(
        (st, body["__type"].clone()),
        (400, json!("UnknownOperationException"))
    );
    let (st, body) = http(addr, &[], b"{}").await;
    assert_eq!(
        (st, body["__type"].clone()),
        (400, json!("UnknownOperationException"))
    );
    let (st, body) = http(addr, &target("ListStateMachines"), b"{not json").await;
    assert_eq!(
        (st, body["__type"].clone()),
        (400, json!("SerializationException"))
    );
    let (st, body) = http(addr, &target("ListStateMachines"), b"[1]").await;
    assert_eq!(
        (st, body["__type"].clone()),
        (400, json!("SerializationException"))
    );
    let big = vec![b' '; 5000];
    let (st, body) = http(addr, &target("ListStateMachines"), &big).await;
    assert_eq!(
        (st, body["__type"].clone()),
        (413, json!("RequestEntityTooLargeException"))
    );
    let (st, body) = http(
        addr,
        &target("DescribeStateMachine"),
        b"{\"stateMachineArn\": 5}",
    )
    .await;
    assert_eq!(
        (st, body["__type"].clone()),
        (400, json!("SerializationException"))
    );
}

#[tokio::test]
async fn http_sigv4() {
    use expressway_gateway::sigv4;
    let secret = "s3cr3t";
    let (addr, _) = serve(ServerConfig {
        auth: Some(expressway_gateway::Credentials::single("AKIDTEST", secret)),
        max_body_bytes: 1 << 20,
        ..ServerConfig::default()
    })
    .await;
    let (st, body) = http(addr, &target("ListStateMachines"), b"{}").await;
    assert_eq!(
        (st, body["__type"].clone()),
        (400, json!("MissingAuthenticationTokenException"))
    );

    let sign = |key: &str, secret: &str, region: &str, body: &[u8]| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        // format YYYYMMDDTHHMMSSZ from epoch seconds
        let days = now.div_euclid(86400);
        let secs = now.rem_euclid(86400);
        let (y, m, d) = civil(days);
        let amz = format!(
            "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        );
        let date = &amz[..8];
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), addr.to_string()),
            ("x-amz-date".into(), amz.clone()),
            (
                "x-amz-target".into(),
                "AWSStepFunctions.ListStateMachines".into(),
            ),
        ];
        let req = sigv4::SignedRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body,
        };
        let creq = sigv4::canonical_request(&req, &["host", "x-amz-date", "x-amz-target"]);
        let sts = sigv4::string_to_sign(&amz, date, region, "states", &creq);
        let sig = sigv4::sign(secret, date, region, "states", &sts);
        headers.push((
            "Authorization".into(),
            format!("AWS4-HMAC-SHA256 Credential={key}/{date}/{region}/states/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature={sig}"),
        ));
        headers
    };
    let to_refs = |h: Vec<(String, String)>| -> Vec<(&'static str, String)> {
        h.into_iter()
            .filter(|(k, _)| k != "host")
            .map(|(k, v)| {
                let k: &'static str = match k.as_str() {
                    "x-amz-date" => "X-Amz-Date",
                    "x-amz-target" => "X-Amz-Target",
                    _ => "Authorization",
                };
                (k, v)
            })
            .collect()
    };
    let (st, _) = http(
        addr,
        &to_refs(sign("AKIDTEST", secret, "us-east-1", b"{}")),
        b"{}",
    )
    .await;
    assert_eq!(st, 200);
    let (st, body) = http(
        addr,
        &to_refs(sign("AKIDTEST", "wrong", "us-east-1", b"{}")),
        b"{}",
    )
    .await;
    assert_eq!(
        (st, body["__type"].clone()),
        (400, json!("InvalidSignatureException"))
    );
    let (st, body) = http(
        addr,
        &to_refs(sign("AKIDOTHER", secret, "us-east-1", b"{}")),
        b"{}",
    )
    .await;
    assert_eq!(
        (st, body["__type"].clone()),
        (400, json!("UnrecognizedClientException"))
    );
    // A correct signature for another region than the gateway's is refused, as AWS does.
    let (st, body) = http(
        addr,
        &to_refs(sign("AKIDTEST", secret, "eu-west-1", b"{}")),
        b"{}",
    )
    .await;
    assert_eq!(
        (st, body["__type"].clone(), body["message"].clone()),
        (
            400,
            json!("InvalidSignatureException"),
            json!("Credential should be scoped to a valid region, not 'eu-west-1'. ")
        )
    );
}

fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn task_key() -> expressway_wire::TaskTokenKey {
    expressway_wire::TaskTokenKey::new(*b"gateway-test-key-0123456789abcdef").expect("key")
}

fn task_token(key: &expressway_wire::TaskTokenKey, partition: i32, arn: &str) -> String {
    key.mint(&expressway_wire::TokenFields {
        partition,
        execution_arn: arn.into(),
        state_name: "Charge".into(),
        scope: "0".into(),
        attempt: 0,
    })
    .expect("mint")
}

const RUNNING_ARN: &str =
    "arn:aws:states:us-east-1:123456789012:express:order:e1:6f1c3a52-8e0b-5d7a-9b21-5e44c017a83d";

#[tokio::test]
async fn send_task_calls_verify_the_token_and_publish_to_its_partition() {
    let registry = Arc::new(Registry::new("us-east-1", ACCOUNT));
    registry.set_loaded();
    let backend = MemoryBackend::default();
    let gw = Gateway::new(
        registry,
        Arc::new(backend.clone()),
        expressway_executor::default_engine_runtime(),
    )
    .with_task_tokens(Some(task_key()));
    let token = task_token(&task_key(), 3, RUNNING_ARN);

    let ok = call(
        &gw,
        "SendTaskSuccess",
        json!({"taskToken": token, "output": "{\"paid\":true}"}),
    )
    .await
    .expect("success");
    assert_eq!(ok, json!({}));
    call(
        &gw,
        "SendTaskFailure",
        json!({"taskToken": token, "error": "Declined", "cause": "card"}),
    )
    .await
    .expect("failure");
    call(&gw, "SendTaskFailure", json!({"taskToken": token}))
        .await
        .expect("a failure without error and cause");
    call(&gw, "SendTaskHeartbeat", json!({"taskToken": token}))
        .await
        .expect("heartbeat");
    let published = backend.records("callbacks");
    assert!(published.iter().all(|w| w.key.as_deref() == Some("3")));
    let outcomes: Vec<_> = published
        .iter()
        .map(|w| {
            let r = expressway_wire::CallbackRecord::decode(w.value.as_deref())
                .expect("a callback record");
            assert_eq!(r.task_token, token);
            r.outcome
        })
        .collect();
    use expressway_wire::CallbackOutcome as O;
    assert_eq!(
        outcomes,
        vec![
            O::Success(json!({"paid": true})),
            O::Failure {
                error: Some("Declined".into()),
                cause: Some("card".into())
            },
            O::Failure {
                error: None,
                cause: None
            },
            O::Heartbeat,
        ]
    );

    // Refusals publish nothing.
    let forged = task_token(
        &expressway_wire::TaskTokenKey::new(*b"someone-elses-key-0123456789abcdef").expect("key"),
        3,
        RUNNING_ARN,
    );
    let long = "t".repeat(1025);
    let big = format!("\"{}\"", "x".repeat(262_144));
    let cases = [
        (
            "SendTaskSuccess",
            json!({"taskToken": forged, "output": "{}"}),
            "InvalidToken",
        ),
        (
            "SendTaskHeartbeat",
            json!({"taskToken": "not-a-token"}),
            "InvalidToken",
        ),
        (
            "SendTaskHeartbeat",
            json!({"taskToken": ""}),
            "ValidationException",
        ),
        (
            "SendTaskHeartbeat",
            json!({"taskToken": long}),
            "ValidationException",
        ),
        ("SendTaskHeartbeat", json!({}), "ValidationException"),
        (
            "SendTaskSuccess",
            json!({"taskToken": token}),
            "ValidationException",
        ),
        (
            "SendTaskSuccess",
            json!({"taskToken": token, "output": "{oops"}),
            "InvalidOutput",
        ),
        (
            "SendTaskSuccess",
            json!({"taskToken": token, "output": big}),
            "ValidationException",
        ),
        (
            "SendTaskSuccess",
            json!({"taskToken": token, "output": {"a": 1}}),
            "SerializationException",
        ),
        (
            "SendTaskFailure",
            json!({"taskToken": token, "error": "e".repeat(257)}),
            "ValidationException",
        ),
        (
            "SendTaskFailure",
            json!({"taskToken": token, "cause": "c".repeat(32_769)}),
            "ValidationException",
        ),
    ];
    for (op, body, expected) in cases {
        let e = call(&gw, op, body.clone()).await.expect_err(op);
        assert_eq!(e.0, expected, "{op} {body}: {}", e.1);
    }
    assert_eq!(backend.records("callbacks").len(), 4);

    // What the gateway knows of ended executions.
    gw.set_execution_statuses(Arc::new(|arn: &str| {
        Some(
            if arn.contains(":done:") {
                "SUCCEEDED"
            } else {
                "TIMED_OUT"
            }
            .to_string(),
        )
    }));
    let done = task_token(
        &task_key(),
        0,
        "arn:aws:states:us-east-1:123456789012:express:done:e:u",
    );
    let late = task_token(
        &task_key(),
        0,
        "arn:aws:states:us-east-1:123456789012:express:late:e:u",
    );
    let e = call(
        &gw,
        "SendTaskSuccess",
        json!({"taskToken": done, "output": "1"}),
    )
    .await
    .expect_err("ended");
    assert_eq!(e.0, "TaskDoesNotExist");
    let e = call(&gw, "SendTaskHeartbeat", json!({"taskToken": late}))
        .await
        .expect_err("timed out");
    assert_eq!(e.0, "TaskTimedOut");
    assert_eq!(backend.records("callbacks").len(), 4);
}

#[tokio::test]
async fn send_task_calls_without_a_key_are_refused() {
    let (gw, backend) = setup();
    let token = task_token(&task_key(), 0, RUNNING_ARN);
    let e = call(
        &gw,
        "SendTaskSuccess",
        json!({"taskToken": token, "output": "{}"}),
    )
    .await
    .expect_err("no key");
    assert_eq!(e.0, "InvalidToken");
    assert!(e.1.contains("EXPRESSWAY_TASK_TOKEN_KEY"), "{}", e.1);
    assert!(backend.records("callbacks").is_empty());
}
