//! The data-flow steps shared by the state kinds: InputPath, Parameters/Arguments, ResultSelector,
//! ResultPath, OutputPath and JSONata `Output`, and the routing of a caught failure.

use super::assign::eval_assign_template;
use super::env::{Env, Scope};
use super::failure::{state_failure, Failure};
use super::{next_of, Exec, Step};
use expressway_asl::jsonpath::JsonPath;
use expressway_asl::model::*;
use expressway_asl::template::{to_json, EvalError};
use serde_json::{Map, Value};
use std::borrow::Cow;

pub(super) fn select_path(p: &JsonPath, value: &Value, env: &Env<'_>) -> Result<Value, EvalError> {
    use expressway_asl::jsonpath::Root;
    use expressway_asl::template::{resolve_path, PathFailure};
    let result = match p.root() {
        Root::Input => p.query(value).map_err(PathFailure::from),
        _ => resolve_path(p, env),
    };
    result.map_err(|f| match (f, p.root()) {
        (PathFailure::TooManyVisits, _) => expressway_asl::template::too_many_visits(p, "Path"),
        (PathFailure::UnknownVariable, Root::Variable(name)) => EvalError::runtime(format!(
            "Invalid path '{p}' : The variable '${name}' is not defined."
        )),
        _ => EvalError::runtime(format!(
            "Invalid path '{p}' : No results for path: {}",
            p.bracket_notation()
        )),
    })
}

/// ResultPath: combines the state's raw input with its result (both moved, nothing copied).
pub(super) fn apply_result_path(
    rp: &ResultPath,
    input: Value,
    result: Value,
) -> Result<Value, EvalError> {
    match rp {
        ResultPath::Replace => Ok(result),
        ResultPath::Discard => Ok(input),
        ResultPath::At(p) => {
            let mut out = if input.is_object() {
                input
            } else {
                Value::Object(Map::new())
            };
            match p.assign(&mut out, result) {
                Ok(()) => Ok(out),
                Err(_) => Err(EvalError::runtime(format!(
                    "Unable to apply ResultPath '{p}' to the input '{}'",
                    to_json(&out)
                ))),
            }
        }
    }
}

/// The state's effective input: InputPath applied (JSONPath), or the input itself (JSONata).
/// Borrowed whenever no copy is needed.
pub(super) fn effective_input<'v>(
    state: &State,
    input: &'v Value,
    env: &Env<'_>,
) -> Result<Cow<'v, Value>, EvalError> {
    if state.query_language == QueryLanguage::Jsonata {
        return Ok(Cow::Borrowed(input));
    }
    match &state.input_path {
        IoPath::Identity => Ok(Cow::Borrowed(input)),
        IoPath::Discard => Ok(Cow::Owned(Value::Object(Map::new()))),
        IoPath::Path(p) => select_path(p, input, env).map(Cow::Owned),
    }
}

/// `Some(value)` when the effective input is a new value, `None` when it is the input itself.
pub(super) fn owned_if_new(v: Cow<'_, Value>) -> Option<Value> {
    match v {
        Cow::Owned(v) => Some(v),
        Cow::Borrowed(_) => None,
    }
}

/// `Parameters` (JSONPath) or `Arguments` (JSONata) applied to the effective input, or the
/// effective input itself.
pub(super) fn work_input(
    work: &Work,
    jsonata: bool,
    eff: &Value,
    env: &Env<'_>,
) -> Result<Value, EvalError> {
    match &work.parameters {
        Some(p) => p.eval_in(env, if jsonata { "Arguments" } else { "" }),
        None => Ok(eff.clone()),
    }
}

/// What a state needs after its work to build its output (no borrow of the input).
pub(super) struct OutCtx<'a> {
    pub(super) exec: &'a Exec<'a>,
    pub(super) scope: &'a Scope<'a>,
    pub(super) state_name: &'a str,
    pub(super) entered_millis: i64,
}

impl OutCtx<'_> {
    pub(super) fn env<'v>(&'v self, input: &'v Value) -> Env<'v> {
        Env::new(
            self.exec,
            input,
            self.scope,
            self.state_name,
            self.entered_millis,
        )
    }

    pub(super) fn output_path(&self, path: &IoPath, value: Value) -> Result<Value, EvalError> {
        match path {
            IoPath::Identity => Ok(value),
            IoPath::Discard => Ok(Value::Object(Map::new())),
            IoPath::Path(p) => {
                let env = self.env(&value);
                select_path(p, &value, &env)
            }
        }
    }
}

impl Exec<'_> {
    /// A JSONata state's `Output`; `None` without one, when the output is the input (Pass, Wait,
    /// Succeed), passed on without copying.
    pub(super) fn jsonata_output(
        &self,
        state: &State,
        env: &Env<'_>,
    ) -> Result<Option<Value>, EvalError> {
        state
            .output
            .as_ref()
            .map(|t| t.eval_in(env, "Output"))
            .transpose()
    }

    /// Applies ResultSelector, Assign, ResultPath, OutputPath (or Output) after Task/Parallel/Map
    /// work, or routes a failure to its catcher.
    pub(super) fn finish_work(
        &self,
        state: &State,
        work: &Work,
        input: Value,
        out: &OutCtx<'_>,
        outcome: Result<Value, (Failure, Option<usize>)>,
        entered_id: u64,
    ) -> Result<Step, Failure> {
        let fail = |e: EvalError| state_failure(&state.name, entered_id, e);
        let jsonata = state.query_language == QueryLanguage::Jsonata;
        match outcome {
            Ok(result) => {
                let selected = match &work.result_selector {
                    Some(rs) if !jsonata => {
                        let renv = out.env(&result);
                        rs.eval(&renv).map_err(fail)?
                    }
                    _ => result,
                };
                if jsonata {
                    let mut oenv = out.env(&input);
                    oenv.result = Some(&selected);
                    let assign = self.eval_assign(state, &oenv).map_err(fail)?;
                    let output = match &state.output {
                        Some(t) => t.eval_in(&oenv, "Output").map_err(fail)?,
                        None => selected.clone(),
                    };
                    return Ok(Step {
                        next: next_of(work.transition),
                        output,
                        assign,
                    });
                }
                let renv = out.env(&selected);
                let assign = self.eval_assign(state, &renv).map_err(fail)?;
                let merged = apply_result_path(&work.result_path, input, selected).map_err(fail)?;
                let output = out.output_path(&state.output_path, merged).map_err(fail)?;
                Ok(Step {
                    next: next_of(work.transition),
                    output,
                    assign,
                })
            }
            Err((f, None)) => Err(f),
            Err((f, Some(i))) => {
                let catcher = &work.catch[i];
                let error_output = f.error_output();
                if jsonata {
                    let mut cenv = out.env(&input);
                    cenv.error_output = Some(&error_output);
                    let assign = match &catcher.assign {
                        Some(t) => eval_assign_template(t, &cenv).map_err(fail)?,
                        None => Vec::new(),
                    };
                    let output = match &catcher.output {
                        Some(t) => t.eval_in(&cenv, "Output").map_err(fail)?,
                        None => error_output.clone(),
                    };
                    return Ok(Step {
                        next: Some(catcher.next),
                        output,
                        assign,
                    });
                }
                let eenv = out.env(&error_output);
                let assign = match &catcher.assign {
                    Some(t) => eval_assign_template(t, &eenv).map_err(fail)?,
                    None => Vec::new(),
                };
                let output = apply_result_path(&catcher.result_path, input, error_output.clone())
                    .map_err(fail)?;
                Ok(Step {
                    next: Some(catcher.next),
                    output,
                    assign,
                })
            }
        }
    }
}
