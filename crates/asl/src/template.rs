//! Payload templates (`Parameters`, `ResultSelector`, `ItemSelector`, `Arguments`, `Output`, `Assign`)
//! and single-value expressions (`ErrorPath`, `SecondsPath`, JSONata strings), compiled once.

use crate::intrinsic::{looks_like_intrinsic, Intrinsic, IntrinsicEnv, IntrinsicError};
use crate::jsonata::JsonataExpr;
use crate::jsonpath::{JsonPath, Root};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Which error family a failed evaluation reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalErrorKind {
    /// JSONPath / intrinsic failures: `States.Runtime`.
    Runtime,
    /// JSONata failures: `States.QueryEvaluationError`.
    QueryEvaluation,
    /// Size limits (variables): `States.DataLimitExceeded`.
    DataLimit,
}

/// An evaluation failure. `detail` is AWS's text after the "An error occurred while executing the
/// state ..." prefix, which the engine adds.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{detail}")]
pub struct EvalError {
    /// The error family.
    pub kind: EvalErrorKind,
    /// AWS's detail text.
    pub detail: String,
}

impl EvalError {
    /// A `States.Runtime` failure.
    pub fn runtime(detail: impl Into<String>) -> EvalError {
        EvalError {
            kind: EvalErrorKind::Runtime,
            detail: detail.into(),
        }
    }
    /// A `States.DataLimitExceeded` failure.
    pub fn data_limit(detail: impl Into<String>) -> EvalError {
        EvalError {
            kind: EvalErrorKind::DataLimit,
            detail: detail.into(),
        }
    }
    /// A `States.QueryEvaluationError` failure.
    pub fn query(detail: impl Into<String>) -> EvalError {
        EvalError {
            kind: EvalErrorKind::QueryEvaluation,
            detail: detail.into(),
        }
    }
    /// The AWS error name.
    pub fn error_name(&self) -> &'static str {
        match self.kind {
            EvalErrorKind::Runtime => "States.Runtime",
            EvalErrorKind::QueryEvaluation => "States.QueryEvaluationError",
            EvalErrorKind::DataLimit => "States.DataLimitExceeded",
        }
    }
}

/// Everything an expression can read while a state runs.
pub trait EvalEnv {
    /// `$`: the value paths are evaluated against.
    fn input(&self) -> &Value;
    /// `$$`: the context object.
    fn context(&self) -> &Value;
    /// One member of the context object (`Execution`, `State`, `StateMachine`, `Map`, ...).
    /// Implementations may build it without building the whole object.
    fn context_part(&self, name: &str) -> Option<Cow<'_, Value>> {
        self.context().get(name).map(Cow::Borrowed)
    }
    /// `$name`: a variable visible from this state.
    fn variable(&self, name: &str) -> Option<&Value>;
    /// An integer in `[start, end]`, deterministic for a given seed.
    fn random_int(&self, start: i64, end: i64, seed: Option<i64>) -> i64;
    /// A random v4 UUID.
    fn uuid(&self) -> String;
    /// JSONata `$states` object and helpers (only JSONata expressions use it).
    fn jsonata_states(&self) -> Option<&Value> {
        None
    }
    /// One member of `$states` (`input`, `context`, `result`, `errorOutput`), without building
    /// the whole object.
    fn states_member(&self, name: &str) -> Option<&Value> {
        self.jsonata_states().and_then(|s| s.get(name))
    }
}

/// Resolves a path against the environment, returning a reference where possible.
pub fn resolve_path(path: &JsonPath, env: &dyn EvalEnv) -> Result<Value, PathFailure> {
    resolve_path_ref(path, env).map(Cow::into_owned)
}

/// Like [`resolve_path`], but borrows the value when the path is definite (no copy).
///
/// `$$.Member...` paths read only that member of the context object ([`EvalEnv::context_part`]),
/// so Map iterations do not rebuild a context holding a copy of the execution input.
pub fn resolve_path_ref<'e>(
    path: &JsonPath,
    env: &'e dyn EvalEnv,
) -> Result<Cow<'e, Value>, PathFailure> {
    let root: &Value = match path.root() {
        Root::Input => env.input(),
        Root::Context => match path.first_name().map(|n| env.context_part(n)) {
            Some(Some(Cow::Borrowed(part))) => {
                return if path.is_definite() {
                    path.query_tail_ref(part)
                        .map(Cow::Borrowed)
                        .ok_or(PathFailure::NoResults)
                } else {
                    path.query_tail(part)
                        .map(Cow::Owned)
                        .map_err(PathFailure::from)
                };
            }
            Some(Some(Cow::Owned(part))) => {
                return path
                    .query_tail(&part)
                    .map(Cow::Owned)
                    .map_err(PathFailure::from);
            }
            Some(None) => return Err(PathFailure::NoResults),
            None => env.context(),
        },
        Root::Variable(name) => env.variable(name).ok_or(PathFailure::UnknownVariable)?,
    };
    if path.is_definite() {
        path.query_ref(root)
            .map(Cow::Borrowed)
            .ok_or(PathFailure::NoResults)
    } else {
        path.query(root).map(Cow::Owned).map_err(PathFailure::from)
    }
}

/// Why a path could not be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathFailure {
    /// The path matched nothing.
    NoResults,
    /// The path visited more than [`crate::jsonpath::MAX_QUERY_VISITS`] values.
    TooManyVisits,
    /// `$name` names no visible variable.
    UnknownVariable,
}

/// Size in bytes of the compact JSON text of `v`, computed without allocating (the payload
/// limits of Step Functions are defined on this size).
pub fn json_size(v: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter(0);
    // Writing a `Value` to an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Compact JSON text (as AWS quotes inputs inside causes).
pub fn to_json(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl From<crate::jsonpath::QueryFailure> for PathFailure {
    fn from(f: crate::jsonpath::QueryFailure) -> PathFailure {
        match f {
            crate::jsonpath::QueryFailure::NoResults => PathFailure::NoResults,
            crate::jsonpath::QueryFailure::TooManyVisits => PathFailure::TooManyVisits,
        }
    }
}

/// The error of a path that visited too many values (`field` names where it was used).
pub fn too_many_visits(path: &JsonPath, field: &str) -> EvalError {
    EvalError::runtime(format!(
        "The JSONPath '{path}' specified for the field '{field}' visits more than {} values of the input; chained recursive descents ('..') multiply the values they visit",
        crate::jsonpath::MAX_QUERY_VISITS
    ))
}

fn path_not_found(
    path: &JsonPath,
    field: &str,
    env: &dyn EvalEnv,
    failure: PathFailure,
) -> EvalError {
    match (failure, path.root()) {
        (PathFailure::TooManyVisits, _) => too_many_visits(path, field),
        (PathFailure::UnknownVariable, Root::Variable(name)) => EvalError::runtime(format!(
            "The variable '${name}' specified for the field '{field}' is not defined."
        )),
        _ => {
            let doc = match path.root() {
                Root::Context => env.context(),
                Root::Variable(name) => env.variable(name).unwrap_or(&Value::Null),
                Root::Input => env.input(),
            };
            EvalError::runtime(format!(
                "The JSONPath '{path}' specified for the field '{field}' could not be found in the input '{}'",
                to_json(doc)
            ))
        }
    }
}

struct IntrinsicAdapter<'a> {
    env: &'a dyn EvalEnv,
}

impl IntrinsicEnv for IntrinsicAdapter<'_> {
    fn resolve(&self, path: &JsonPath) -> Result<Value, IntrinsicError> {
        resolve_path(path, self.env).map_err(|f| IntrinsicError {
            message: path_not_found(path, "", self.env, f).detail,
        })
    }
    fn random_int(&self, start: i64, end: i64, seed: Option<i64>) -> i64 {
        self.env.random_int(start, end, seed)
    }
    fn uuid(&self) -> String {
        self.env.uuid()
    }
}

/// A compiled value-producing expression: a JSONPath, an intrinsic call, or a JSONata expression.
#[derive(Debug, Clone)]
pub enum ValueExpr {
    /// `$.a.b`, `$$.Execution.Id`, `$var.x`.
    Path(JsonPath),
    /// `States.Format(...)`.
    Intrinsic(Intrinsic),
    /// `{% ... %}`.
    Jsonata(JsonataExpr),
}

impl ValueExpr {
    /// Compiles a JSONPath-mode `.$` value: a path or an intrinsic call.
    pub fn parse_jsonpath_mode(text: &str) -> Result<ValueExpr, String> {
        if looks_like_intrinsic(text) {
            Intrinsic::parse(text)
                .map(ValueExpr::Intrinsic)
                .map_err(|e| e.to_string())
        } else {
            JsonPath::parse(text)
                .map(ValueExpr::Path)
                .map_err(|e| e.to_string())
        }
    }

    /// Evaluates; `field` names the field in error causes (e.g. `value.$`, `ErrorPath`).
    pub fn eval(&self, field: &str, env: &dyn EvalEnv) -> Result<Value, EvalError> {
        self.eval_named(&|| field.to_string(), env)
    }

    /// Like [`ValueExpr::eval`], but the field name is only built when there is an error.
    pub fn eval_named(
        &self,
        field: &dyn Fn() -> String,
        env: &dyn EvalEnv,
    ) -> Result<Value, EvalError> {
        match self {
            ValueExpr::Path(p) => {
                resolve_path(p, env).map_err(|f| path_not_found(p, &field(), env, f))
            }
            ValueExpr::Intrinsic(i) => i.eval(&IntrinsicAdapter { env }).map_err(|e| {
                if e.message.starts_with("The JSONPath") || e.message.starts_with("The variable") {
                    EvalError::runtime(e.message.replacen(
                        "for the field ''",
                        &format!("for the field '{}'", field()),
                        1,
                    ))
                } else {
                    EvalError::runtime(e.message)
                }
            }),
            ValueExpr::Jsonata(j) => j.eval_required_named(field, env),
        }
    }

    /// The source text.
    pub fn text(&self) -> &str {
        match self {
            ValueExpr::Path(p) => p.as_str(),
            ValueExpr::Intrinsic(i) => i.as_str(),
            ValueExpr::Jsonata(j) => j.text(),
        }
    }
}

/// The diagnostic for a string that begins with `{%` or ends with `%}` but is not an expression
/// (located at the string).
pub const INCOMPLETE_EXPRESSION: &str =
    "The value is an incomplete JSONata expression: it must begin with '{%' and end with '%}'";

/// A compiled payload template.
#[derive(Debug, Clone)]
pub enum Template {
    /// No dynamic part: copied as is.
    Const(Value),
    /// An object with at least one dynamic member. Keys are output keys (the `.$` already removed).
    Object(Vec<(String, Template)>),
    /// An array with at least one dynamic element (JSONata mode).
    Array(Vec<Template>),
    /// A dynamic value; the string is the field name used in error causes.
    Expr(ValueExpr, String),
}

/// The query language a template is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// `"key.$": "$.path"` members.
    JsonPath,
    /// `"{% expr %}"` strings.
    Jsonata,
}

impl Template {
    /// Compiles a template. JSONPath mode: keys ending in `.$` hold paths or intrinsic calls.
    /// JSONata mode: strings of the form `{% ... %}` are expressions.
    pub fn compile(value: &Value, lang: Lang) -> Result<Template, String> {
        Self::compile_at(value, lang, "")
    }

    fn compile_at(value: &Value, lang: Lang, field: &str) -> Result<Template, String> {
        match (value, lang) {
            (Value::Object(map), _) => {
                let mut members = Vec::with_capacity(map.len());
                let mut dynamic = false;
                for (k, v) in map {
                    match (lang, k.strip_suffix(".$"), v) {
                        (Lang::JsonPath, Some(stripped), _) if map.contains_key(stripped) => {
                            return Err(format!(
                                "Only one of the fields [{stripped}, {k}] can be specified"
                            ));
                        }
                        (Lang::JsonPath, Some(stripped), Value::String(s)) => {
                            let expr = ValueExpr::parse_jsonpath_mode(s)
                                .map_err(|e| format!("The value for the field '{k}' must be a valid JSONPath or a valid intrinsic function call ({e})"))?;
                            members.push((stripped.to_string(), Template::Expr(expr, k.clone())));
                            dynamic = true;
                        }
                        _ => {
                            let t = Self::compile_at(v, lang, k)?;
                            dynamic |= !matches!(t, Template::Const(_));
                            members.push((k.clone(), t));
                        }
                    }
                }
                if dynamic {
                    Ok(Template::Object(members))
                } else {
                    Ok(Template::Const(value.clone()))
                }
            }
            (Value::Array(items), _) => {
                let compiled: Vec<Template> = items
                    .iter()
                    .map(|v| Self::compile_at(v, lang, field))
                    .collect::<Result<_, _>>()?;
                if compiled.iter().all(|t| matches!(t, Template::Const(_))) {
                    Ok(Template::Const(value.clone()))
                } else {
                    Ok(Template::Array(compiled))
                }
            }
            (Value::String(s), Lang::Jsonata) if JsonataExpr::is_incomplete_expression(s) => {
                Err(INCOMPLETE_EXPRESSION.to_string())
            }
            (Value::String(s), Lang::Jsonata) if JsonataExpr::is_expression(s) => {
                Ok(Template::Expr(
                    ValueExpr::Jsonata(JsonataExpr::parse(s)?),
                    field.to_string(),
                ))
            }
            _ => Ok(Template::Const(value.clone())),
        }
    }

    /// True when the template has no dynamic part.
    pub fn is_const(&self) -> bool {
        matches!(self, Template::Const(_))
    }

    /// Evaluates the template. `field_prefix` is prepended to JSONata field names (`Output/`, ...).
    pub fn eval(&self, env: &dyn EvalEnv) -> Result<Value, EvalError> {
        self.eval_in(env, "")
    }

    /// Evaluates with a field-name prefix for error causes (e.g. `"Output"` gives `Output/result`).
    pub fn eval_in(&self, env: &dyn EvalEnv, prefix: &str) -> Result<Value, EvalError> {
        match self {
            Template::Const(v) => Ok(v.clone()),
            Template::Object(members) => {
                let mut out = Map::with_capacity(members.len());
                for (k, t) in members {
                    out.insert(k.clone(), t.eval_in(env, prefix)?);
                }
                Ok(Value::Object(out))
            }
            Template::Array(items) => items
                .iter()
                .map(|t| t.eval_in(env, prefix))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Template::Expr(e, field) => {
                let full = || match (prefix.is_empty(), field.is_empty()) {
                    (true, _) => field.clone(),
                    (false, true) => prefix.to_string(),
                    (false, false) => format!("{prefix}/{field}"),
                };
                e.eval_named(&full, env)
            }
        }
    }

    /// Every variable name read by the template (for static checks).
    pub fn walk_exprs<'a>(&'a self, f: &mut dyn FnMut(&'a ValueExpr)) {
        match self {
            Template::Const(_) => {}
            Template::Object(m) => m.iter().for_each(|(_, t)| t.walk_exprs(f)),
            Template::Array(a) => a.iter().for_each(|t| t.walk_exprs(f)),
            Template::Expr(e, _) => f(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Env {
        input: Value,
        ctx: Value,
    }
    impl EvalEnv for Env {
        fn input(&self) -> &Value {
            &self.input
        }
        fn context(&self) -> &Value {
            &self.ctx
        }
        fn variable(&self, name: &str) -> Option<&Value> {
            (name == "v").then_some(&self.ctx)
        }
        fn random_int(&self, s: i64, _: i64, _: Option<i64>) -> i64 {
            s
        }
        fn uuid(&self) -> String {
            String::new()
        }
    }

    #[test]
    fn parameters_resolve_paths_and_intrinsics() {
        let t = Template::compile(
            &json!({"a.$": "$.x", "b": {"c.$": "States.Format('{}!', $.x)"}, "d": [1], "e.$": "$$.Id"}),
            Lang::JsonPath,
        )
        .expect("compiles");
        let env = Env {
            input: json!({"x": "hi"}),
            ctx: json!({"Id": 7}),
        };
        assert_eq!(
            t.eval(&env),
            Ok(json!({"a": "hi", "b": {"c": "hi!"}, "d": [1], "e": 7}))
        );
    }

    #[test]
    fn missing_path_reports_aws_cause() {
        let t = Template::compile(&json!({"value.$": "$.nope"}), Lang::JsonPath).expect("compiles");
        let env = Env {
            input: json!({"x": 1}),
            ctx: json!({}),
        };
        let err = t.eval(&env).expect_err("fails");
        assert_eq!(err.error_name(), "States.Runtime");
        assert_eq!(err.detail, "The JSONPath '$.nope' specified for the field 'value.$' could not be found in the input '{\"x\":1}'");
    }

    #[test]
    fn const_templates_are_folded() {
        let t = Template::compile(&json!({"a": {"b": [1, 2]}}), Lang::JsonPath).expect("compiles");
        assert!(t.is_const());
        assert!(Template::compile(&json!({"a.$": "not a path"}), Lang::JsonPath).is_err());
    }
}
