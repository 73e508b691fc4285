//! The parameters of `arn:aws:states:::states:startExecution[.sync|.sync:2]`: AWS's optimized
//! integration takes `StateMachineArn` (required), `Input` and `Name`, nothing else.

use expressway_engine::TaskError;
use expressway_wire::{arn::valid_name, parse_state_machine_ref, MachineRef, MAX_INPUT_BYTES};
use serde_json::{Map, Value};

/// The fields AWS's optimized integration passes to StartExecution.
const FIELDS: [&str; 3] = ["StateMachineArn", "Input", "Name"];

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
pub struct StartParams {
    /// The machine to start (an ARN, optionally `:version` / `:alias`; a plain name also works,
    /// as in start events).
    pub machine: MachineRef,
    /// `StateMachineArn` as written.
    pub machine_text: String,
    /// The child's input: `Input` as a JSON value, or the JSON text `Input` holds when it is a
    /// string (`States.JsonToString(...)`), `{}` when absent or null.
    pub input: Value,
    /// `Name`, if given.
    pub name: Option<String>,
}

/// A request AWS would refuse before starting anything (wrong shapes: `States.Runtime`, as the
/// project's other integrations; API refusals: `StepFunctions.<Code>Exception`, as AWS names
/// them for this integration).
fn runtime(cause: impl Into<String>) -> TaskError {
    TaskError::new("States.Runtime", cause)
}

/// AWS's name for an error the StartExecution API answers with (`InvalidArn` →
/// `StepFunctions.InvalidArnException`), with the cause in the SDK's shape.
pub(super) fn api_error(code: &str, message: &str) -> TaskError {
    TaskError::new(
        format!("StepFunctions.{code}Exception"),
        format!(
            "{message} (Service: AWSStepFunctions; Status Code: 400; Error Code: {code}; Proxy: null)"
        ),
    )
}

/// Parses the task's effective parameters.
pub fn parse(parameters: &Value) -> Result<StartParams, TaskError> {
    let Value::Object(p) = parameters else {
        return Err(runtime(format!(
            "states:startExecution takes an object of parameters (StateMachineArn, Input, Name), not {}",
            expressway_wire::json_type_name(parameters)
        )));
    };
    if let Some(extra) = p.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(runtime(format!(
            "The field '{extra}' is not supported by states:startExecution (it takes StateMachineArn, Input and Name)"
        )));
    }
    let machine_text = match p.get("StateMachineArn") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => {
            return Err(runtime(
                "states:startExecution needs the field 'StateMachineArn'",
            ))
        }
        Some(other) => {
            return Err(runtime(format!(
                "The field 'StateMachineArn' must be a string, not {}",
                expressway_wire::json_type_name(other)
            )))
        }
    };
    let machine = parse_state_machine_ref(&machine_text)
        .ok_or_else(|| api_error("InvalidArn", &format!("Invalid Arn: '{machine_text}'")))?;
    let name = match p.get("Name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if valid_name(s) => Some(s.clone()),
        Some(Value::String(s)) => {
            return Err(api_error("InvalidName", &format!("Invalid Name: '{s}'")));
        }
        Some(other) => {
            return Err(runtime(format!(
                "The field 'Name' must be a string, not {}",
                expressway_wire::json_type_name(other)
            )))
        }
    };
    let input = input_of(p)?;
    let bytes = expressway_engine::jsonw::to_string(&input).len();
    if bytes > MAX_INPUT_BYTES {
        return Err(api_error(
            "InvalidExecutionInput",
            &format!(
                "The input of the execution is {bytes} bytes, more than the maximum of {MAX_INPUT_BYTES}"
            ),
        ));
    }
    Ok(StartParams {
        machine,
        machine_text,
        input,
        name,
    })
}

fn input_of(p: &Map<String, Value>) -> Result<Value, TaskError> {
    match p.get("Input") {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        // StartExecution's `input` is JSON text; a string Input is that text.
        Some(Value::String(text)) => serde_json::from_str(text).map_err(|e| {
            api_error(
                "InvalidExecutionInput",
                &format!("Invalid State Machine Execution Input: '{e}'"),
            )
        }),
        Some(v) => Ok(v.clone()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:child";

    fn err(v: Value) -> TaskError {
        match parse(&v) {
            Err(e) => e,
            Ok(p) => panic!("{v} parsed as {p:?}"),
        }
    }

    #[test]
    fn arn_input_and_name() {
        let p =
            parse(&json!({"StateMachineArn": ARN, "Input": {"a": 1}, "Name": "run-1"})).unwrap();
        assert_eq!(p.machine.name, "child");
        assert_eq!(p.machine.qualifier, None);
        assert_eq!(p.machine_text, ARN);
        assert_eq!(p.input, json!({"a": 1}));
        assert_eq!(p.name.as_deref(), Some("run-1"));
        let q = parse(&json!({"StateMachineArn": format!("{ARN}:live")})).unwrap();
        assert_eq!(q.machine.qualifier.as_deref(), Some("live"));
        assert_eq!(q.input, json!({}), "no Input: {{}}");
        assert_eq!(q.name, None);
        assert_eq!(
            parse(&json!({"StateMachineArn": "child", "Input": null}))
                .unwrap()
                .input,
            json!({})
        );
    }

    #[test]
    fn a_string_input_is_json_text() {
        let p = parse(&json!({"StateMachineArn": ARN, "Input": "{\"a\":[1,2]}"})).unwrap();
        assert_eq!(p.input, json!({"a": [1, 2]}));
        let p = parse(&json!({"StateMachineArn": ARN, "Input": "\"text\""})).unwrap();
        assert_eq!(p.input, json!("text"));
        let p = parse(&json!({"StateMachineArn": ARN, "Input": [1, "x"]})).unwrap();
        assert_eq!(p.input, json!([1, "x"]), "any JSON value");
        let e = err(json!({"StateMachineArn": ARN, "Input": "not json"}));
        assert_eq!(e.error, "StepFunctions.InvalidExecutionInputException");
        assert!(e
            .cause
            .unwrap()
            .starts_with("Invalid State Machine Execution Input: '"));
    }

    #[test]
    fn refusals_name_the_field() {
        let e = err(json!({"Input": {}}));
        assert_eq!(e.error, "States.Runtime");
        assert!(e.cause.unwrap().contains("'StateMachineArn'"));
        let e = err(json!({"StateMachineArn": 7}));
        assert_eq!(
            e.cause.as_deref(),
            Some("The field 'StateMachineArn' must be a string, not a number")
        );
        let e = err(json!({"StateMachineArn": "arn:aws:states:us-east-1:1:activity:x"}));
        assert_eq!(e.error, "StepFunctions.InvalidArnException");
        assert_eq!(
            e.cause.as_deref(),
            Some("Invalid Arn: 'arn:aws:states:us-east-1:1:activity:x' (Service: AWSStepFunctions; Status Code: 400; Error Code: InvalidArn; Proxy: null)")
        );
        let e = err(json!({"StateMachineArn": ARN, "Name": "a b"}));
        assert_eq!(e.error, "StepFunctions.InvalidNameException");
        let e = err(json!({"StateMachineArn": ARN, "Name": 1}));
        assert_eq!(e.error, "States.Runtime");
        let e = err(json!({"StateMachineArn": ARN, "TraceHeader": "x"}));
        assert!(e.cause.unwrap().contains("'TraceHeader' is not supported"));
        let e = err(json!([ARN]));
        assert!(e.cause.unwrap().ends_with("not an array"));
    }

    #[test]
    fn input_size_is_bounded_like_start_events() {
        let big = "x".repeat(MAX_INPUT_BYTES);
        let e = err(json!({"StateMachineArn": ARN, "Input": {"s": big}}));
        assert_eq!(e.error, "StepFunctions.InvalidExecutionInputException");
        let fits = "x".repeat(MAX_INPUT_BYTES - 8);
        assert!(parse(&json!({"StateMachineArn": ARN, "Input": {"s": fits}})).is_ok());
    }
}
