//! JSONata expressions inside ASL fields (`{% ... %}`).
//!
//! The JSONata evaluator itself lives in its own crate; this module adapts it to ASL's fields,
//! bindings (`$states`, variables) and AWS's `States.QueryEvaluationError` causes.

use std::sync::Arc;

use crate::template::{EvalEnv, EvalError};
use expressway_jsonata::{Expression, Host, HostObject, HostValue};
use serde_json::Value;

/// Budget of evaluation steps of one evaluation of one expression (an expression node evaluated
/// is a step, function bodies included). JSONata has no loops, but a tail call runs in constant
/// depth, so `($f := function(){ $f() }; $f())` never ends and never nests, and
/// `$f := function($n){ $f($n-1) + $f($n-1) }` is exponential within the depth bound. The
/// evaluation runs synchronously on an executor worker thread, where neither `TimeoutSeconds` nor
/// shutdown can interrupt it; past this budget it fails with JSONata's `U1001` (a
/// `States.QueryEvaluationError` of the state). Steps, not time, so that the outcome does not
/// depend on the load of the pod (and this crate reads no clock).
pub const MAX_EVAL_STEPS: u64 = 1_000_000;

/// A JSONata expression taken from a `{% ... %}` string, parsed once when the definition loads.
#[derive(Debug, Clone)]
pub struct JsonataExpr {
    text: String,
    expr: Arc<Expression>,
}

/// Adapts the state's evaluation environment to the JSONata evaluator: `$states`, variables,
/// and the execution's sources of randomness.
struct StateHost<'e> {
    env: &'e dyn EvalEnv,
    states: States<'e>,
}

/// `$states`, resolved member by member.
struct States<'e> {
    env: &'e dyn EvalEnv,
}

impl HostObject for States<'_> {
    fn field(&self, name: &str) -> Option<&Value> {
        self.env.states_member(name)
    }
    fn keys(&self) -> Vec<&str> {
        vec!["input", "context", "result", "errorOutput"]
    }
}

impl Host for StateHost<'_> {
    fn variable(&self, name: &str) -> Option<HostValue<'_>> {
        if name == "states" {
            return Some(HostValue::Object(&self.states));
        }
        self.env.variable(name).map(HostValue::Json)
    }

    fn random(&self, seed: Option<f64>) -> f64 {
        const SCALE: i64 = 1 << 52;
        let r = self.env.random_int(0, SCALE - 1, seed.map(|s| s as i64));
        r as f64 / SCALE as f64
    }

    fn uuid(&self) -> String {
        self.env.uuid()
    }
}

impl JsonataExpr {
    /// True when the string is a JSONata expression (`{% ... %}`).
    pub fn is_expression(s: &str) -> bool {
        s.len() >= 4 && s.starts_with("{%") && s.ends_with("%}")
    }

    /// True when the string looks meant as an expression but is not one: it begins with `{%` or
    /// ends with `%}` without being `{% ... %}`, e.g. `"{% 10 %"`, `"10 %}"`. AWS refuses these
    /// instead of taking them as literal strings. Blanks count: `" {% x %} "` begins and ends with
    /// a blank and is a literal (recorded: outputdecl `BASE_LITERALS`).
    pub fn is_incomplete_expression(s: &str) -> bool {
        (s.starts_with("{%") || s.ends_with("%}")) && !Self::is_expression(s)
    }

    /// Parses the text between `{%` and `%}`.
    pub fn parse(s: &str) -> Result<JsonataExpr, String> {
        let inner = s
            .strip_prefix("{%")
            .and_then(|r| r.strip_suffix("%}"))
            .ok_or("not a JSONata expression")?;
        let text = inner.trim().to_string();
        let expr = Expression::parse(&text).map_err(|e| {
            format!(
                "The JSONata expression '{text}' is invalid: {}: {}",
                e.code, e.message
            )
        })?;
        Ok(JsonataExpr {
            text,
            expr: Arc::new(expr),
        })
    }

    /// The expression text without the delimiters.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates; an undefined result is an error naming `field`.
    pub fn eval_required(&self, field: &str, env: &dyn EvalEnv) -> Result<Value, EvalError> {
        self.eval_required_named(&|| field.to_string(), env)
    }

    /// Like [`JsonataExpr::eval_required`], but the field name is only built for an error.
    pub fn eval_required_named(
        &self,
        field: &dyn Fn() -> String,
        env: &dyn EvalEnv,
    ) -> Result<Value, EvalError> {
        match self.eval_optional_named(field, env)? {
            Some(v) => Ok(v),
            None => Err(EvalError::query(format!(
                "The JSONata expression '{}' specified for the field '{}' returned nothing (undefined).",
                self.text,
                field()
            ))),
        }
    }

    /// Evaluates; `None` when the expression returns nothing.
    fn eval_optional_named(
        &self,
        field: &dyn Fn() -> String,
        env: &dyn EvalEnv,
    ) -> Result<Option<Value>, EvalError> {
        let host = StateHost {
            env,
            states: States { env },
        };
        let input = env.states_member("input");
        match self.expr.evaluate_with(input, &[], &host, EVALUATION_LIMITS) {
            Ok(v) => Ok(v),
            Err(e) if e.code == expressway_jsonata::FUNCTION_RESULT => Err(EvalError::query(format!(
                "The JSONata expression '{}' specified for the field '{}' returned an unsupported result type.",
                self.text,
                field()
            ))),
            Err(e) => Err(EvalError::query(format!(
                "The JSONata expression '{}' specified for the field '{}' threw an error during evaluation. {}: {}",
                self.text,
                field(),
                e.code,
                e.message
            ))),
        }
    }
}

/// What one JSONata evaluation of a running execution may take. jsonata-js bounds nothing but
/// its recursion and the range operator; a pod must also bound what a few bytes of expression
/// can make it build or spend, since the evaluation runs synchronously on a runtime worker:
/// - [`MAX_EVAL_STEPS`] evaluation steps (`U1001`), deterministic where a clock would not be;
/// - nesting of built values at [`crate::depth::MAX_VALUE_DEPTH`] (`U1002`);
/// - results spanning more than 2^20 JSON values (`U1003`, some 50 MB once converted): a value
///   sharing one object many times over is cheap to build and exponential to write out;
/// - arrays of more than 1,000,000 members (`U1004`, ~24 MB; jsonata-js's range operator allows
///   1e7) and strings of more than 16 MiB (`U1005`).
pub const EVALUATION_LIMITS: expressway_jsonata::Limits = expressway_jsonata::Limits {
    max_depth: 10_000,
    timeout: None,
    max_steps: Some(MAX_EVAL_STEPS),
    max_value_depth: crate::depth::MAX_VALUE_DEPTH,
    max_result_values: 1 << 20,
    max_array_items: 1_000_000,
    max_string_bytes: 16 * 1024 * 1024,
};

/// AWS's JSON type names in QueryEvaluationError causes.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
