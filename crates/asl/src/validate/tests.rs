use super::*;
use serde_json::json;

type Found = Vec<(&'static str, String, Option<String>)>;

fn check(definition: Value) -> Found {
    check_typed(definition, MachineType::Standard)
}

fn check_typed(definition: Value, machine_type: MachineType) -> Found {
    validate_value(&definition, machine_type)
        .diagnostics
        .into_iter()
        .map(|d| (d.code, d.message, d.location))
        .collect()
}

fn one(code: &'static str, message: &str, location: &str) -> Found {
    vec![(code, message.to_string(), Some(location.to_string()))]
}

fn schema(message: &str, location: &str) -> Found {
    one(codes::SCHEMA_VALIDATION_FAILED, message, location)
}

/// A one-state machine around `state` (named `S`).
fn machine(state: Value) -> Value {
    json!({"StartAt": "S", "States": {"S": state}})
}

#[test]
fn valid_minimal_machines() {
    assert_eq!(check(machine(json!({"Type": "Pass", "End": true}))), vec![]);
    assert_eq!(check(machine(json!({"Type": "Succeed"}))), vec![]);
    assert_eq!(
        check(machine(json!({"Type": "Fail", "Error": "E", "Cause": "C"}))),
        vec![]
    );
    let v = validate(
        r#"{"StartAt": "S", "States": {"S": {"Type": "Pass", "End": true}}}"#,
        MachineType::Express,
    );
    assert_eq!(v.result(), "OK");
    assert_eq!(v.create_state_machine_message(), None);
    assert_eq!(
        serde_json::to_value(&v).expect("serialize"),
        json!({"result": "OK", "diagnostics": [], "truncated": false})
    );
}

#[test]
fn not_json_and_not_an_object() {
    let v = validate(" ", MachineType::Standard);
    assert_eq!(
        serde_json::to_value(&v).expect("serialize"),
        json!({"result": "FAIL", "truncated": false, "diagnostics": [
            {"severity": "ERROR", "code": "SCHEMA_VALIDATION_FAILED", "message": "Definition must be a valid JSON object"}
        ]})
    );
    assert_eq!(
        v.create_state_machine_message().as_deref(),
        Some("Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: Definition must be a valid JSON object at null'")
    );
    assert_eq!(
        validate("[1]", MachineType::Standard).diagnostics,
        not_an_object().diagnostics
    );
    let v = validate("not a definition", MachineType::Standard);
    assert_eq!(v.diagnostics.len(), 1);
    assert_eq!(v.diagnostics[0].code, codes::INVALID_JSON_DESCRIPTION);
    assert_eq!(
        v.diagnostics[0].location.as_deref(),
        Some("[Source: (String)\"not a definition\"; line: 1, column: 4]")
    );
}

#[test]
fn top_level_required_and_unknown_fields() {
    assert_eq!(
        check(json!({})),
        schema("These fields are required: [States, StartAt]", "/")
    );
    assert_eq!(
        check(json!({"States": {"S": {"Type": "Pass", "End": true}}})),
        schema("These fields are required: [StartAt]", "/")
    );
    assert_eq!(
        check(json!({"StartAt": "S"})),
        schema("These fields are required: [States]", "/")
    );
    let mut d = machine(json!({"Type": "Pass", "End": true}));
    d["Coment"] = json!("typo");
    assert_eq!(check(d), schema("Field 'Coment' is not supported", "/"));
}

#[test]
fn java_hash_set_order_matches_aws() {
    assert_eq!(
        java_hash_set_order(&["StartAt", "States"]),
        vec!["States", "StartAt"]
    );
    assert_eq!(
        java_hash_set_order(&["States", "StartAt"]),
        vec!["States", "StartAt"]
    );
}

#[test]
fn state_type_and_unsupported_fields() {
    assert_eq!(
        check(machine(json!({"End": true}))),
        schema("These fields are required: [Type]", "/States/S")
    );
    assert_eq!(
        check(machine(
            json!({"Type": "Pass", "End": true, "TimeoutSeconds": 3})
        )),
        schema("Field 'TimeoutSeconds' is not supported", "/States/S")
    );
    assert_eq!(
        check(machine(json!({"Type": "Pass", "End": true, "Catch": []}))),
        schema("Field 'Catch' is not supported", "/States/S")
    );
    assert_eq!(
        check(machine(json!({"Type": "Succeed", "End": true}))),
        schema("Field 'End' is not supported", "/States/S")
    );
    assert_eq!(
        check(machine(json!({"Type": "Nope", "End": true}))),
        schema(
            "The field 'Type' must be one of [Pass, Task, Choice, Wait, Succeed, Fail, Parallel, Map] but was 'Nope'",
            "/States/S/Type"
        )
    );
}

#[test]
fn next_xor_end() {
    let msg = "Exactly one of the fields 'Next' or 'End' is required";
    assert_eq!(
        check(machine(json!({"Type": "Pass"}))),
        schema(msg, "/States/S")
    );
    assert_eq!(
        check(machine(json!({"Type": "Pass", "End": false}))),
        schema(msg, "/States/S")
    );
    assert_eq!(
        check(machine(json!({"Type": "Pass", "End": true, "Next": "S"}))),
        schema(msg, "/States/S")
    );
}

#[test]
fn query_language_rules() {
    // Measured: a JSONPath state under a JSONata machine.
    let d = json!({"QueryLanguage": "JSONata", "StartAt": "P",
        "States": {"P": {"Type": "Pass", "End": true, "QueryLanguage": "JSONPath"}}});
    assert_eq!(
        check(d),
        schema(
            "'QueryLanguage' can not be 'JSONPath' if set to 'JSONata' for whole state machine",
            "/States/P"
        )
    );
    // JSONata state under a JSONPath machine is fine; nested states inherit the machine's language.
    let d = json!({"StartAt": "M", "QueryLanguage": "JSONPath", "States": {"M": {"Type": "Map", "QueryLanguage": "JSONata",
        "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "P",
            "States": {"P": {"QueryLanguage": "JSONPath", "Type": "Pass", "End": true}}}, "End": true}}});
    assert_eq!(check(d), vec![]);
    assert_eq!(
        check(machine(json!({"Type": "Pass", "End": true, "Output": {}}))),
        schema(
            "The QueryLanguage is set to 'JSONPath', but field 'Output' is only supported for the 'JSONata' QueryLanguage",
            "/States/S"
        )
    );
    assert_eq!(
        check(machine(json!({"Type": "Pass", "End": true, "QueryLanguage": "JSONata", "Parameters": {}}))),
        schema(
            "The QueryLanguage is set to 'JSONata', but field 'Parameters' is only supported for the 'JSONPath' QueryLanguage",
            "/States/S"
        )
    );
    let d = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
        "ItemProcessor": {"QueryLanguage": "JSONata", "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}}});
    assert_eq!(
        check(d),
        schema(
            "Field 'QueryLanguage' is not supported",
            "/States/M/ItemProcessor"
        )
    );
}

#[test]
fn payload_template_paths_and_intrinsics() {
    let state = |v: Value| machine(json!({"Type": "Pass", "End": true, "Parameters": v}));
    assert_eq!(
        check(state(
            json!({"a.$": "$.x", "b.$": "$$.Execution.Id", "c.$": "States.UUID()"})
        )),
        vec![]
    );
    let msg = |k: &str| {
        format!("The value for the field '{k}' must be a valid JSONPath or a valid intrinsic function call")
    };
    assert_eq!(
        check(state(json!({"a.$": "x"}))),
        schema(&msg("a.$"), "/States/S/Parameters")
    );
    assert_eq!(
        check(state(json!({"a.$": 3}))),
        schema(&msg("a.$"), "/States/S/Parameters")
    );
    assert_eq!(
        check(state(json!({"n": {"a.$": "States.Format('\\\"x\\\"')"}}))),
        schema(&msg("a.$"), "/States/S/Parameters/n")
    );
    assert_eq!(
        check(state(json!({"a.$": "States.Nope()"}))),
        schema(&msg("a.$"), "/States/S/Parameters")
    );
    // Literal argument types AWS checks statically.
    assert_eq!(
        check(state(json!({"foo.$": "States.MathAdd(1,'-1')"}))),
        schema(&msg("foo.$"), "/States/S/Parameters")
    );
    assert_eq!(
        check(state(json!({"foo.$": "States.MathAdd($.n, -1)"}))),
        vec![]
    );
    // The same output key with and without `.$`.
    assert_eq!(
        check(state(json!({"conflict": 1, "conflict.$": "$.x"}))),
        schema(
            "Only one of the fields [conflict, conflict.$] can be specified",
            "/States/S/Parameters"
        )
    );
    assert_eq!(
        check(state(json!({"n": [{"k": "v", "k.$": "$.k"}]}))),
        schema(
            "Only one of the fields [k, k.$] can be specified",
            "/States/S/Parameters/n[0]"
        )
    );
    let assign = machine(json!({"Type": "Pass", "End": true, "Assign": {"v": 1, "v.$": "$.v"}}));
    assert_eq!(
        check(assign),
        schema(
            "Only one of the fields [v, v.$] can be specified",
            "/States/S/Assign"
        )
    );
    // JSONata states do not interpret `.$`.
    let d = machine(
        json!({"Type": "Pass", "End": true, "QueryLanguage": "JSONata", "Output": {"a.$": "x"}}),
    );
    assert_eq!(check(d), vec![]);
}

#[test]
fn data_flow_paths() {
    assert_eq!(
        check(machine(
            json!({"Type": "Pass", "End": true, "InputPath": "foo"})
        )),
        schema(
            "The value for the field 'InputPath' must be a valid JSONPath",
            "/States/S"
        )
    );
    assert_eq!(
        check(machine(
            json!({"Type": "Pass", "End": true, "OutputPath": null, "ResultPath": null})
        )),
        vec![]
    );
    assert_eq!(
        check(machine(
            json!({"Type": "Pass", "End": true, "ResultPath": "$.a[*]"})
        )),
        schema(
            "The value for the field 'ResultPath' must be a valid Reference Path",
            "/States/S"
        )
    );
}

#[test]
fn wait_rules() {
    let wait = |extra: Value| {
        let mut s = json!({"Type": "Wait", "End": true});
        for (k, v) in extra.as_object().expect("object") {
            s[k] = v.clone();
        }
        machine(s)
    };
    assert_eq!(check(wait(json!({"Seconds": 1}))), vec![]);
    assert_eq!(
        check(wait(json!({"Timestamp": "2016-03-14T01:59:00Z"}))),
        vec![]
    );
    assert_eq!(
        check(wait(
            json!({"Timestamp": "2016-03-05T21:29:29.243167252+01:00"})
        )),
        vec![]
    );
    for bad in [
        "2016-13-05T21:29:29Z",
        "05-12-2016T21:29:29Z",
        "2016-12-05T25:29:29Z",
        "2016-12-05 21:29:29Z",
        "2016-12-05T21:29:29",
        "{% '2016-03-14T01:59:00Z' %}",
        "2016-02-30T00:00:00Z",
    ] {
        assert_eq!(
            check(wait(json!({"Timestamp": bad}))),
            schema(
                "String does not match RFC3339 timestamp",
                "/States/S/Timestamp"
            ),
            "{bad}"
        );
    }
    // In JSONata mode an expression is accepted.
    assert_eq!(
        check(wait(
            json!({"QueryLanguage": "JSONata", "Timestamp": "{% $x %}"})
        )),
        vec![]
    );
    let one_of = "Exactly one of the fields 'Seconds', 'Timestamp', 'SecondsPath' or 'TimestampPath' is required";
    assert_eq!(check(wait(json!({}))), schema(one_of, "/States/S"));
    assert_eq!(
        check(wait(json!({"Seconds": 1, "SecondsPath": "$.s"}))),
        schema(one_of, "/States/S")
    );
    assert_eq!(
        check(wait(json!({"Seconds": -1}))),
        schema(
            "The field 'Seconds' must be a non-negative integer",
            "/States/S/Seconds"
        )
    );
    assert_eq!(
        check(wait(json!({"TimestampPath": "nope"}))),
        schema(
            "The value for the field 'TimestampPath' must be a valid Reference Path",
            "/States/S"
        )
    );
}

#[test]
fn fail_rules() {
    assert_eq!(
        check(machine(
            json!({"Type": "Fail", "Error": "E", "ErrorPath": "$.e"})
        )),
        schema(
            "Only one of the fields [Error, ErrorPath] can be specified",
            "/States/S"
        )
    );
    assert_eq!(
        check(machine(
            json!({"Type": "Fail", "CausePath": "States.Format('{}', $.c)"})
        )),
        vec![]
    );
    assert_eq!(
        check(machine(json!({"Type": "Fail", "CausePath": "cause"}))),
        schema("The value for the field 'CausePath' must be a valid JSONPath or a valid intrinsic function call", "/States/S")
    );
}

#[test]
fn task_rules_and_express_restrictions() {
    let task = |resource: &str| machine(json!({"Type": "Task", "Resource": resource, "End": true}));
    assert_eq!(
        check(task("arn:aws:states:::states:startExecution.sync")),
        vec![]
    );
    // Expressway runs startExecution.sync and .sync:2 in the pod (issue #15): valid for EXPRESS,
    // with a WARNING that AWS Express would refuse it; other .sync integrations keep AWS's error.
    for resource in [
        "arn:aws:states:::states:startExecution.sync",
        "arn:aws:states:::states:startExecution.sync:2",
    ] {
        let v = validate_value(&task(resource), MachineType::Express);
        assert!(v.is_ok(), "{v:?}");
        assert_eq!(v.result(), "OK");
        assert_eq!(v.diagnostics.len(), 1, "{v:?}");
        assert_eq!(v.diagnostics[0].severity, Severity::Warning);
        assert_eq!(v.diagnostics[0].code, codes::SCHEMA_VALIDATION_FAILED);
        assert_eq!(
            v.diagnostics[0].location.as_deref(),
            Some("/States/S/Resource")
        );
        assert!(
            v.diagnostics[0].message.starts_with(
                "Express state machine does not support '.sync' service integration on AWS"
            ) && v.diagnostics[0]
                .message
                .contains("not portable to AWS Express"),
            "{v:?}"
        );
        assert_eq!(v.create_state_machine_message(), None);
        assert!(validate_value(&task(resource), MachineType::Standard)
            .diagnostics
            .is_empty());
    }
    assert_eq!(
        check_typed(
            task("arn:aws:states:::batch:submitJob.sync"),
            MachineType::Express
        ),
        schema(
            "Express state machine does not support '.sync' service integration",
            "/States/S/Resource"
        )
    );
    assert_eq!(
        check_typed(
            task("arn:aws:states:::ecs:runTask.sync:2"),
            MachineType::Express
        ),
        schema(
            "Express state machine does not support '.sync' service integration",
            "/States/S/Resource"
        )
    );
    let v = validate_value(
        &task("arn:aws:states:::sns:publish.waitForTaskToken"),
        MachineType::Express,
    );
    assert_eq!(
        v.create_state_machine_message().as_deref(),
        Some("Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: Express state machine does not support '.waitForTaskToken' service integration  at /States/S/Resource'")
    );
    // Expressway runs the callback pattern on lambda:invoke (issue #15): valid, with a WARNING that
    // names the field and says AWS Express would refuse it.
    let v = validate_value(
        &task("arn:aws:states:::lambda:invoke.waitForTaskToken"),
        MachineType::Express,
    );
    assert!(v.is_ok(), "{v:?}");
    assert_eq!(v.diagnostics.len(), 1, "{v:?}");
    assert_eq!(v.diagnostics[0].severity, Severity::Warning);
    assert_eq!(
        v.diagnostics[0].location.as_deref(),
        Some("/States/S/Resource")
    );
    assert!(v.diagnostics[0]
        .message
        .contains("not portable to AWS Express"));
    assert_eq!(v.create_state_machine_message(), None);
    assert!(validate_value(
        &task("arn:aws:states:::lambda:invoke.waitForTaskToken"),
        MachineType::Standard
    )
    .diagnostics
    .is_empty());
    assert_eq!(
        check(machine(json!({"Type": "Task", "End": true}))),
        schema("These fields are required: [Resource]", "/States/S")
    );
    // Not an ARN: refused by AWS, in both query languages.
    for bad in [
        "foo:bar",
        "${lambdaArn",
        "arn:aws:lambda:us-east-1:123456789012:function:Fn:",
        "arn:aws:lambda:us-east-1:123456789012:function:Fn:$*#$7485",
    ] {
        assert_eq!(
            check(task(bad)),
            schema("Value is not a valid resource ARN", "/States/S/Resource")
        );
        let mut jsonata = task(bad);
        jsonata["QueryLanguage"] = json!("JSONata");
        assert_eq!(
            check(jsonata),
            schema("Value is not a valid resource ARN", "/States/S/Resource")
        );
    }
    assert_eq!(
        check(task(
            "arn:aws:lambda:us-east-1:123456789012:function:Fn:live"
        )),
        vec![]
    );
    let cred = |c: Value| {
        machine(
            json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Credentials": c, "End": true}),
        )
    };
    assert_eq!(
        check(cred(json!({"RoleArn": "arn:aws:iam::1:role/r"}))),
        vec![]
    );
    for c in [json!({}), json!({"InvalidField": "x"})] {
        assert_eq!(
            check(cred(c)),
            schema(
                "The field 'RoleArn' is required but was missing",
                "/States/S/Credentials"
            )
        );
    }
    assert_eq!(
        check(machine(
            json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true, "TimeoutSeconds": 5, "HeartbeatSeconds": 5})
        )),
        schema(
            "HeartbeatSeconds must be smaller than TimeoutSeconds",
            "/States/S"
        )
    );
}

#[test]
fn retry_and_catch_rules() {
    let with = |retry: Value, catch: Value| {
        json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Retry": retry, "Catch": catch, "End": true},
            "H": {"Type": "Succeed"}}})
    };
    assert_eq!(
        check(with(
            json!([{"ErrorEquals": ["States.Timeout"], "MaxAttempts": 0, "BackoffRate": 1.5}, {"ErrorEquals": ["States.ALL"]}]),
            json!([{"ErrorEquals": ["Custom"], "Next": "H"}, {"ErrorEquals": ["States.ALL"], "Next": "H"}])
        )),
        vec![]
    );
    assert_eq!(
        check(with(
            json!([{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]),
            json!([{"ErrorEquals": ["X"], "Next": "H"}])
        )),
        schema(
            "Error name 'States.ALL' must appear alone and in the last retrier or catcher",
            "/States/T/Retry[0]/ErrorEquals"
        )
    );
    assert_eq!(
        check(with(
            json!([]),
            json!([{"ErrorEquals": ["States.ALL", "X"], "Next": "H"}])
        )),
        schema(
            "Error name 'States.ALL' must appear alone and in the last retrier or catcher",
            "/States/T/Catch[0]/ErrorEquals"
        )
    );
    // Custom names may begin with `States.` (AWS accepts them; a Fail state can raise one).
    assert_eq!(
        check(json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                  "Retry": [{"ErrorEquals": ["States.QuorumMet"], "MaxAttempts": 0}],
                  "Catch": [{"ErrorEquals": ["States.QuorumMet", "States.Http.StatusCode.404"], "Next": "H"}],
                  "Next": "Q"},
            "Q": {"Type": "Fail", "Error": "States.QuorumMet"},
            "H": {"Type": "Succeed"}}})),
        vec![]
    );
    assert_eq!(
        check(with(
            json!([{"ErrorEquals": ["X"], "BackoffRate": 0.5}]),
            json!([{"ErrorEquals": ["X"], "Next": "H"}])
        )),
        schema(
            "The field 'BackoffRate' must be a number greater than or equal to 1.0",
            "/States/T/Retry[0]/BackoffRate"
        )
    );
    assert_eq!(
        check(with(
            json!([{"ErrorEquals": ["X"], "MaxAttempts": -1}]),
            json!([{"ErrorEquals": ["X"], "Next": "H"}])
        )),
        schema(
            "The field 'MaxAttempts' must be a non-negative integer",
            "/States/T/Retry[0]/MaxAttempts"
        )
    );
    assert_eq!(
        check(with(json!([{}]), json!([{}]))),
        vec![
            (
                codes::SCHEMA_VALIDATION_FAILED,
                "These fields are required: [ErrorEquals]".into(),
                Some("/States/T/Retry[0]".into())
            ),
            (
                codes::SCHEMA_VALIDATION_FAILED,
                "These fields are required: [Next, ErrorEquals]".into(),
                Some("/States/T/Catch[0]".into())
            ),
        ]
    );
}

#[test]
fn choice_rules() {
    let choice = |rules: Value| json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": rules, "Default": "D"}, "D": {"Type": "Succeed"}}});
    assert_eq!(
        check(choice(json!([
            {"Variable": "$.x", "NumericEquals": 1, "Next": "D"},
            {"And": [{"Variable": "$.a", "IsPresent": true}, {"Not": {"Variable": "$.b", "StringEquals": "x"}}], "Next": "D"}
        ]))),
        vec![]
    );
    assert_eq!(
        check(choice(
            json!([{"Variable": "x", "NumericEquals": 1, "Next": "D"}])
        )),
        schema(
            "The value for the field 'Variable' must be a valid JSONPath",
            "/States/C/Choices[0]"
        )
    );
    assert_eq!(
        check(choice(
            json!([{"Variable": "$.x", "NumericEquals": "1", "Next": "D"}])
        )),
        schema(
            "The value for the field 'NumericEquals' must be a number",
            "/States/C/Choices[0]"
        )
    );
    assert_eq!(
        check(choice(json!([{"Variable": "$.x", "NumericEquals": 1}]))),
        schema("These fields are required: [Next]", "/States/C/Choices[0]")
    );
    assert_eq!(
        check(choice(json!([]))),
        schema(
            "The field 'Choices' must be a non-empty array",
            "/States/C/Choices"
        )
    );
    let d = json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsNull": true, "Next": "D"}], "End": true}, "D": {"Type": "Succeed"}}});
    assert_eq!(
        check(d),
        schema("Field 'End' is not supported", "/States/C")
    );
}

#[test]
fn transitions_and_reachability() {
    // Measured (localstack#11978 reproduction against AWS).
    let d = json!({"StartAt": "pass1", "States": {
        "pass1": {"Type": "Pass", "Next": "pass3"},
        "pass2": {"Type": "Pass", "End": true}}});
    let v = validate_value(&d, MachineType::Standard);
    assert_eq!(
        v.create_state_machine_message().as_deref(),
        Some("Invalid State Machine Definition: 'MISSING_TRANSITION_TARGET: Missing 'Next' target: pass3 at /States/pass1/Next, MISSING_TRANSITION_TARGET: State \"pass2\" is not reachable. at /States/pass2'")
    );
    // StartAt naming no state: only states nothing routes to are unreachable.
    let d = json!({"StartAt": "Not sure", "States": {
        "Pass One": {"Type": "Pass", "Next": "Success"}, "Success": {"Type": "Succeed"}}});
    assert_eq!(
        check(d),
        vec![
            (
                codes::MISSING_TRANSITION_TARGET,
                "Missing 'Next' target: Not sure".into(),
                Some("/StartAt".into())
            ),
            (
                codes::MISSING_TRANSITION_TARGET,
                "State \"Pass One\" is not reachable.".into(),
                Some("/States/Pass One".into())
            ),
        ]
    );
    // Choice Default / Choices[i].Next / Catch[i].Next all say 'Next'.
    let d = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsNull": true, "Next": "N1"}], "Default": "N2"},
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "N3"}], "End": true}}});
    let found = check(d);
    assert_eq!(
        found,
        vec![
            (
                codes::MISSING_TRANSITION_TARGET,
                "Missing 'Next' target: N1".into(),
                Some("/States/C/Choices[0]/Next".into())
            ),
            (
                codes::MISSING_TRANSITION_TARGET,
                "Missing 'Next' target: N2".into(),
                Some("/States/C/Default".into())
            ),
            (
                codes::MISSING_TRANSITION_TARGET,
                "Missing 'Next' target: N3".into(),
                Some("/States/T/Catch[0]/Next".into())
            ),
            (
                codes::MISSING_TRANSITION_TARGET,
                "State \"T\" is not reachable.".into(),
                Some("/States/T".into())
            ),
        ]
    );
}

#[test]
fn missing_end_state() {
    let d = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"},
        "Z": {"Type": "Pass", "Next": "A"}}});
    let v = validate_value(&d, MachineType::Standard);
    assert_eq!(
        serde_json::to_value(&v).expect("serialize")["diagnostics"],
        json!([{"severity": "ERROR", "code": "MISSING_END_STATE", "message": "Workflow has no terminal state"}])
    );
    assert_eq!(
        v.create_state_machine_message().as_deref(),
        Some("Invalid State Machine Definition: 'MISSING_END_STATE: Workflow has no terminal state at null'")
    );
    let d = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "NOPE"}}});
    assert_eq!(
        check(d),
        vec![
            (
                codes::MISSING_TRANSITION_TARGET,
                "Missing 'Next' target: NOPE".into(),
                Some("/States/A/Next".into())
            ),
            (
                codes::MISSING_END_STATE,
                "Workflow has no terminal state".into(),
                None
            ),
        ]
    );
}

#[test]
fn nested_scopes() {
    // A branch state may not jump out of its branch; the outer machine cannot jump in.
    let d = json!({"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "Next": "Inner", "Branches": [
            {"StartAt": "Inner", "States": {"Inner": {"Type": "Pass", "Next": "Done"}}}]},
        "Done": {"Type": "Succeed"}}});
    assert_eq!(
        check(d),
        vec![
            (
                codes::MISSING_TRANSITION_TARGET,
                "Missing 'Next' target: Inner".into(),
                Some("/States/P/Next".into())
            ),
            (
                codes::MISSING_TRANSITION_TARGET,
                "State \"Done\" is not reachable.".into(),
                Some("/States/Done".into())
            ),
            (
                codes::MISSING_TRANSITION_TARGET,
                "Missing 'Next' target: Done".into(),
                Some("/States/P/Branches[0]/States/Inner/Next".into())
            ),
            (
                codes::MISSING_END_STATE,
                "Workflow has no terminal state".into(),
                None
            ),
        ]
    );
    // Schema errors inside a Map processor carry the nested pointer.
    let d = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
        "Iterator": {"StartAt": "X", "States": {"X": {"Type": "Pass"}}}}}});
    assert_eq!(
        check(d),
        schema(
            "Exactly one of the fields 'Next' or 'End' is required",
            "/States/M/Iterator/States/X"
        )
    );
    let d = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [{"StartAt": "X"}]}}});
    assert_eq!(
        check(d),
        schema(
            "These fields are required: [States]",
            "/States/P/Branches[0]"
        )
    );
}

#[test]
fn duplicate_state_names() {
    let d = json!({"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "X", "States": {"X": {"Type": "Pass", "End": true}}},
            {"StartAt": "X", "States": {"X": {"Type": "Pass", "End": true}}}]}}});
    assert_eq!(
        check(d),
        one(
            codes::DUPLICATE_STATE_NAME,
            "Duplicate State name: X",
            "/States/P/Branches[1]/States/X"
        )
    );
}

#[test]
fn state_name_length() {
    let long = "n".repeat(81);
    let d = json!({"StartAt": long.clone(), "States": {long.clone(): {"Type": "Succeed"}}});
    assert_eq!(
        check(d),
        schema(
            "State names must be at most 80 characters long",
            &format!("/States/{long}")
        )
    );
    let ok = "n".repeat(80);
    assert_eq!(
        check(json!({"StartAt": ok.clone(), "States": {ok: {"Type": "Succeed"}}})),
        vec![]
    );
}

#[test]
fn map_label_rules() {
    let map = |label: &str| {
        json!({"StartAt": "M", "States": {"M": {"Type": "Map", "Label": label, "End": true,
            "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}}}})
    };
    assert_eq!(check(map("my-label_1")), vec![]);
    assert_eq!(check(map(&"x".repeat(40))), vec![]);
    assert_eq!(
        check(map("")),
        schema("Label cannot be empty", "/States/M/Label")
    );
    assert_eq!(
        check(map(&"x".repeat(41))),
        schema("Label cannot exceed 40 characters", "/States/M/Label")
    );
    for (label, shown) in [
        ("a b", "' '"),
        ("a:b", "':'"),
        ("a\\b", "'\\\\'"),
        ("a\nb", "'\\n'"),
        ("a\u{0}b", "'\\x00'"),
        ("a\u{7f}b", "'\\x7f'"),
        ("a\u{9f}b", "'\\x9f'"),
        ("a\"b", "'\"'"),
    ] {
        assert_eq!(
            check(map(label)),
            schema(
                &format!("Label contains invalid character: {shown}"),
                "/States/M/Label"
            ),
            "{label:?}"
        );
    }
    assert_eq!(
        check(map("a\u{a0}b")),
        schema(
            "Label contains invalid character: '\\xa0'",
            "/States/M/Label"
        )
    );
}

#[test]
fn map_fields() {
    let d = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true, "MaxConcurrency": -1,
        "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}}}});
    assert_eq!(
        check(d),
        schema(
            "The field 'MaxConcurrency' must be a non-negative integer",
            "/States/M/MaxConcurrency"
        )
    );
    let d = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true}}});
    assert_eq!(
        check(d),
        schema("These fields are required: [ItemProcessor]", "/States/M")
    );
    let d = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true, "ItemsPath": "$.items[?(@.a)]",
        "ItemProcessor": {"ProcessorConfig": {"Mode": "FAST"}, "StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}}}});
    assert_eq!(
        check(d),
        vec![
            (
                codes::SCHEMA_VALIDATION_FAILED,
                "The field 'Mode' must be one of [INLINE, DISTRIBUTED] but was \"FAST\"".into(),
                Some("/States/M/ItemProcessor/ProcessorConfig/Mode".into())
            ),
            (
                codes::SCHEMA_VALIDATION_FAILED,
                "The value for the field 'ItemsPath' must be a valid Reference Path".into(),
                Some("/States/M".into())
            ),
        ]
    );
}

#[test]
fn all_diagnostics_are_collected() {
    let d = json!({"StartAt": "A", "Bogus": 1, "States": {
        "A": {"Type": "Pass", "Next": "B", "Catch": []},
        "B": {"Type": "Wait", "Timestamp": "yesterday", "End": true}}});
    assert_eq!(
        check(d),
        vec![
            (
                codes::SCHEMA_VALIDATION_FAILED,
                "Field 'Bogus' is not supported".into(),
                Some("/".into())
            ),
            (
                codes::SCHEMA_VALIDATION_FAILED,
                "Field 'Catch' is not supported".into(),
                Some("/States/A".into())
            ),
            (
                codes::SCHEMA_VALIDATION_FAILED,
                "String does not match RFC3339 timestamp".into(),
                Some("/States/B/Timestamp".into())
            ),
        ]
    );
}

#[test]
fn choice_rule_query_language_fields() {
    let d = json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Default": "D",
        "Choices": [{"Condition": "{% true %}", "Next": "D"}]}, "D": {"Type": "Succeed"}}});
    let found = check(d);
    assert_eq!(
        found[0],
        (
            codes::SCHEMA_VALIDATION_FAILED,
            "The QueryLanguage is set to 'JSONPath', but field 'Condition' is only supported for the 'JSONata' QueryLanguage".into(),
            Some("/States/C/Choices[0]".into())
        )
    );
    let d = json!({"QueryLanguage": "JSONata", "StartAt": "C", "States": {"C": {"Type": "Choice", "Default": "D",
        "Choices": [{"Condition": "{% $states.input.x %}", "Next": "D", "Output": {"a": 1}}]}, "D": {"Type": "Succeed"}}});
    assert_eq!(check(d), vec![]);
    let d = json!({"QueryLanguage": "JSONata", "StartAt": "C", "States": {"C": {"Type": "Choice", "Default": "D",
        "Choices": [{"Variable": "$.x", "IsNull": true, "Condition": "{% true %}", "Next": "D"}]}, "D": {"Type": "Succeed"}}});
    assert_eq!(
        check(d),
        vec![
            (
                codes::SCHEMA_VALIDATION_FAILED,
                "The QueryLanguage is set to 'JSONata', but field 'Variable' is only supported for the 'JSONPath' QueryLanguage".into(),
                Some("/States/C/Choices[0]".into())
            ),
            (
                codes::SCHEMA_VALIDATION_FAILED,
                "The QueryLanguage is set to 'JSONata', but field 'IsNull' is only supported for the 'JSONPath' QueryLanguage".into(),
                Some("/States/C/Choices[0]".into())
            ),
        ]
    );
}

#[test]
fn trailing_content_after_the_definition_is_ignored_like_jackson() {
    let v = validate(
        r#"{"StartAt": "S", "States": {"S": {"Type": "Succeed"}}} trailing"#,
        MachineType::Standard,
    );
    assert_eq!(v.result(), "OK");
    let v = validate(
        r#"{"StartAt": "S", "States": {"S": {"Type": "Succeed"}}"#,
        MachineType::Standard,
    );
    assert_eq!(v.diagnostics[0].code, codes::INVALID_JSON_DESCRIPTION);
    assert!(v.diagnostics[0]
        .message
        .starts_with("Unexpected end-of-input: expected close marker for Object (start marker at [Source: (String)"));
}

#[test]
fn unknown_query_language_value_means_jsonata() {
    let d = json!({"StartAt": "S", "States": {"S": {"Type": "Pass", "End": true, "QueryLanguage": "jsonpath", "Parameters": {}}}});
    assert_eq!(
        check(d),
        vec![
            (
                codes::SCHEMA_VALIDATION_FAILED,
                "The field 'QueryLanguage' must be one of [JSONPath, JSONata] but was \"jsonpath\"".into(),
                Some("/States/S/QueryLanguage".into())
            ),
            (
                codes::SCHEMA_VALIDATION_FAILED,
                "The QueryLanguage is set to 'JSONata', but field 'Parameters' is only supported for the 'JSONPath' QueryLanguage".into(),
                Some("/States/S".into())
            ),
        ]
    );
}
