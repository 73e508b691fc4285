//! Validation parity with AWS on real-world definitions (issue #17): what AWS accepts validates OK
//! (and loads), what AWS refuses gets a diagnostic in AWS's shape (and the loader refuses it too).

use expressway_asl::load;
use expressway_asl::validate::{codes, validate_value, MachineType};
use serde_json::{json, Value};

type Found = Vec<(&'static str, String, Option<String>)>;

fn check(definition: &Value) -> Found {
    validate_value(definition, MachineType::Express)
        .diagnostics
        .into_iter()
        .map(|d| (d.code, d.message, d.location))
        .collect()
}

fn schema(message: &str, location: &str) -> Found {
    vec![(
        codes::SCHEMA_VALIDATION_FAILED,
        message.to_string(),
        Some(location.to_string()),
    )]
}

/// A one-state machine around `state` (named `S`).
fn machine(state: Value) -> Value {
    json!({"StartAt": "S", "States": {"S": state}})
}

fn jsonata(mut state: Value) -> Value {
    state["QueryLanguage"] = json!("JSONata");
    machine(state)
}

fn map_with(fields: Value) -> Value {
    let mut state = json!({"Type": "Map", "End": true,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
            "StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}});
    for (k, v) in fields.as_object().expect("object") {
        state[k] = v.clone();
    }
    machine(state)
}

const TASK: &str = "arn:aws:states:::lambda:invoke";

#[test]
fn custom_error_names_beginning_with_states_are_accepted() {
    let d = json!({"StartAt": "Vote", "States": {
        "Vote": {"Type": "Parallel", "Branches": [
            {"StartAt": "Q", "States": {"Q": {"Type": "Fail", "Error": "States.QuorumMet", "Cause": "3 of 5"}}}],
         "Catch": [{"ErrorEquals": ["States.QuorumMet"], "Next": "Done"}], "End": true},
        "Done": {"Type": "Succeed"}}});
    assert_eq!(check(&d), vec![]);
    assert!(load(&d).is_ok());
}

#[test]
fn unquoted_filter_words_and_script_indexes_are_accepted() {
    for path in [
        "$[?(@.TargetLanguageCode==es)].TranslatedText",
        "$.TranslatedTexts[?(@.TargetLanguageCode == es-MX)].TranslatedText",
        "$[(@.length-1)].bar",
        "$.items[(@.size() - 2)]",
    ] {
        let d = machine(json!({"Type": "Pass", "InputPath": path,
            "Parameters": {"v.$": path}, "End": true}));
        assert_eq!(check(&d), vec![], "{path}");
        assert!(load(&d).is_ok(), "{path}");
    }
    // A script other than `(@.length-n)` is still refused.
    let d = machine(json!({"Type": "Pass", "InputPath": "$[(@.length+1)]", "End": true}));
    assert_eq!(
        check(&d),
        schema(
            "The value for the field 'InputPath' must be a valid JSONPath",
            "/States/S"
        )
    );
}

#[test]
fn task_resource_must_be_an_arn() {
    for bad in [
        "foo:bar",
        "${lambdaArn",
        "arn:aws:lambda:us-east-1:123456789012:function:FUNCTION_NAME:",
        "arn:aws:lambda:us-east-1:123456789012:function:FUNCTION_NAME:$*#$7485",
    ] {
        let d = machine(json!({"Type": "Task", "Resource": bad, "End": true}));
        assert_eq!(
            check(&d),
            schema("Value is not a valid resource ARN", "/States/S/Resource"),
            "{bad}"
        );
    }
    for ok in [
        TASK,
        "arn:aws:states:::http:invoke",
        "arn:aws:lambda:us-east-1:123456789012:function:Fn",
        "arn:aws:lambda:us-east-1:123456789012:function:Fn:$LATEST",
    ] {
        let d = machine(json!({"Type": "Task", "Resource": ok, "End": true}));
        assert_eq!(check(&d), vec![], "{ok}");
    }
}

#[test]
fn a_key_with_and_without_dollar_suffix_is_refused() {
    for field in ["Parameters", "ResultSelector"] {
        let d = machine(json!({"Type": "Task", "Resource": TASK, "End": true,
            field: {"conflict": "x", "conflict.$": "$.x"}}));
        assert_eq!(
            check(&d),
            schema(
                "Only one of the fields [conflict, conflict.$] can be specified",
                &format!("/States/S/{field}")
            )
        );
        let e = load(&d).expect_err("loader refuses it too");
        assert!(
            e.message
                .contains("Only one of the fields [conflict, conflict.$]"),
            "{e}"
        );
    }
    let d = map_with(json!({"ItemSelector": {"deep": {"k.$": "$$.Map.Item.Value", "k": 1}}}));
    assert_eq!(
        check(&d),
        schema(
            "Only one of the fields [k, k.$] can be specified",
            "/States/S/ItemSelector/deep"
        )
    );
    // Different keys are fine; JSONata states do not interpret `.$`.
    let d = machine(json!({"Type": "Pass", "End": true, "Parameters": {"a": 1, "b.$": "$.b"}}));
    assert_eq!(check(&d), vec![]);
    let d = jsonata(json!({"Type": "Pass", "End": true, "Output": {"a": 1, "a.$": "x"}}));
    assert_eq!(check(&d), vec![]);
}

#[test]
fn a_field_and_its_path_twin_are_exclusive() {
    let only = |a: &str, b: &str, at: &str| {
        schema(
            &format!("Only one of the fields [{a}, {b}] can be specified"),
            at,
        )
    };
    let task = |extra: Value| {
        let mut s = json!({"Type": "Task", "Resource": TASK, "End": true});
        for (k, v) in extra.as_object().expect("object") {
            s[k] = v.clone();
        }
        machine(s)
    };
    assert_eq!(
        check(&task(
            json!({"TimeoutSeconds": 10, "TimeoutSecondsPath": "$.t"})
        )),
        only("TimeoutSeconds", "TimeoutSecondsPath", "/States/S")
    );
    assert_eq!(
        check(&task(
            json!({"HeartbeatSeconds": 10, "HeartbeatSecondsPath": "$.h"})
        )),
        only("HeartbeatSeconds", "HeartbeatSecondsPath", "/States/S")
    );
    for (a, b) in [
        ("MaxConcurrency", "MaxConcurrencyPath"),
        ("ToleratedFailureCount", "ToleratedFailureCountPath"),
        (
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
        ),
    ] {
        assert_eq!(
            check(&map_with(json!({a: 1, b: "$.n"}))),
            only(a, b, "/States/S")
        );
    }
    for (a, b) in [
        ("MaxItemsPerBatch", "MaxItemsPerBatchPath"),
        ("MaxInputBytesPerBatch", "MaxInputBytesPerBatchPath"),
    ] {
        assert_eq!(
            check(&map_with(json!({"ItemBatcher": {a: 10, b: "$.n"}}))),
            only(a, b, "/States/S/ItemBatcher")
        );
        // Either one alone is fine; a twin must be a reference path.
        assert_eq!(check(&map_with(json!({"ItemBatcher": {b: "$.n"}}))), vec![]);
        assert_eq!(
            check(&map_with(json!({"ItemBatcher": {b: "n"}}))),
            schema(
                &format!("The value for the field '{b}' must be a valid Reference Path"),
                "/States/S/ItemBatcher"
            )
        );
    }
    let reader = |config: Value| {
        map_with(
            json!({"ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
            "Parameters": {"Bucket": "b", "Key": "k"}, "ReaderConfig": config}}),
        )
    };
    assert_eq!(
        check(&reader(
            json!({"InputType": "JSON", "MaxItems": 5, "MaxItemsPath": "$.max"})
        )),
        only(
            "MaxItems",
            "MaxItemsPath",
            "/States/S/ItemReader/ReaderConfig"
        )
    );
    assert_eq!(
        check(&reader(
            json!({"InputType": "JSON", "MaxItemsPath": "$.max"})
        )),
        vec![]
    );
    // Wait and Fail keep their own measured shapes.
    assert_eq!(
        check(&machine(json!({"Type": "Wait", "Seconds": 1, "SecondsPath": "$.s", "End": true}))),
        schema("Exactly one of the fields 'Seconds', 'Timestamp', 'SecondsPath' or 'TimestampPath' is required", "/States/S")
    );
    assert_eq!(
        check(&machine(json!({"Type": "Wait", "Timestamp": "2026-01-01T00:00:00Z", "TimestampPath": "$.t", "End": true}))),
        schema("Exactly one of the fields 'Seconds', 'Timestamp', 'SecondsPath' or 'TimestampPath' is required", "/States/S")
    );
    assert_eq!(
        check(&machine(
            json!({"Type": "Fail", "Error": "E", "ErrorPath": "$.e"})
        )),
        only("Error", "ErrorPath", "/States/S")
    );
    assert_eq!(
        check(&machine(
            json!({"Type": "Fail", "Cause": "C", "CausePath": "$.c"})
        )),
        only("Cause", "CausePath", "/States/S")
    );
}

#[test]
fn intrinsic_argument_types_are_checked_statically() {
    let d = machine(
        json!({"Type": "Pass", "Parameters": {"foo.$": "States.MathAdd(1,'-1')"},
        "ResultPath": "$.input", "End": true}),
    );
    assert_eq!(
        check(&d),
        schema(
            "The value for the field 'foo.$' must be a valid JSONPath or a valid intrinsic function call",
            "/States/S/Parameters"
        )
    );
    let e = load(&d).expect_err("loader refuses it too");
    assert!(e.message.contains("argument 2 must be a number"), "{e}");
    let d = machine(
        json!({"Type": "Pass", "Parameters": {"foo.$": "States.MathAdd($.a, -1)"},
        "ResultPath": "$.input", "End": true}),
    );
    assert_eq!(check(&d), vec![]);
}

#[test]
fn incomplete_jsonata_wrappers_are_refused() {
    const MSG: &str =
        "The value is an incomplete JSONata expression: it must begin with '{%' and end with '%}'";
    for bad in ["{% 10 %", "10 %}", " {% 10 %}", "{%}"] {
        let d = jsonata(json!({"Type": "Pass", "Output": bad, "End": true}));
        assert_eq!(check(&d), schema(MSG, "/States/S/Output"), "{bad:?}");
        let e = load(&d).expect_err("loader refuses it too");
        assert_eq!(e.message, MSG);
    }
    let d = jsonata(json!({"Type": "Task", "Resource": TASK, "End": true,
        "Arguments": {"Payload": {"list": [1, "{% $states.input.x"]}},
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "S", "Output": "%}"}]}));
    assert_eq!(
        check(&d),
        vec![
            (
                codes::SCHEMA_VALIDATION_FAILED,
                MSG.to_string(),
                Some("/States/S/Arguments/Payload/list[1]".into())
            ),
            (
                codes::SCHEMA_VALIDATION_FAILED,
                MSG.to_string(),
                Some("/States/S/Catch[0]/Output".into())
            ),
        ]
    );
    let d = json!({"QueryLanguage": "JSONata", "StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Condition": "{% true %}", "Next": "D", "Assign": {"x": "{% 1 %"}}]},
        "D": {"Type": "Succeed"}}});
    assert_eq!(check(&d), schema(MSG, "/States/C/Choices[0]/Assign/x"));
    // Complete expressions and plain strings are fine, and JSONPath states take such strings
    // literally.
    for ok in [
        "{% 10 %}",
        "10 %",
        "{ % 10 % }",
        "100%",
        "{%10%}",
        " {% states.input %} ",
    ] {
        let d = jsonata(json!({"Type": "Pass", "Output": {"v": ok}, "End": true}));
        assert_eq!(check(&d), vec![], "{ok:?}");
    }
    let d = machine(json!({"Type": "Pass", "Parameters": {"v": "{% 10 %"}, "End": true}));
    assert_eq!(check(&d), vec![]);
}
