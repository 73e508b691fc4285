//! The Pass, Succeed and Fail states.

use super::dataflow::{apply_result_path, effective_input, owned_if_new, OutCtx};
use super::env::Env;
use super::failure::{state_failure, Failure};
use super::{next_of, Exec, Step};
use expressway_asl::model::*;
use expressway_asl::template::{to_json, EvalError, ValueExpr};
use serde_json::Value;
use std::borrow::Cow;

impl Exec<'_> {
    pub(super) fn run_pass(
        &self,
        state: &State,
        pass: &Pass,
        input: Value,
        out_ctx: &OutCtx<'_>,
        entered_id: u64,
    ) -> Result<Step, Failure> {
        let fail = |e: EvalError| state_failure(&state.name, entered_id, e);
        let jsonata = state.query_language == QueryLanguage::Jsonata;
        // `result: None` means "the result is the effective input, which is the input itself".
        let (result, assign, jsonata_out) = {
            let env = out_ctx.env(&input);
            let eff = effective_input(state, &input, &env).map_err(fail)?;
            let eff_env = env.with_input(&eff);
            let result = match (&pass.parameters, &pass.result) {
                (Some(p), _) => Some(
                    p.eval_in(&eff_env, if jsonata { "Arguments" } else { "" })
                        .map_err(fail)?,
                ),
                (None, Some(r)) => Some(r.clone()),
                (None, None) => None,
            };
            let assign = match &state.assign {
                Some(_) => {
                    let target = result.as_ref().unwrap_or(&eff);
                    self.eval_assign(state, &env.with_input(target))
                        .map_err(fail)?
                }
                None => Vec::new(),
            };
            let jsonata_out = if jsonata {
                self.jsonata_output(state, &env).map_err(fail)?
            } else {
                None
            };
            let result = match (result, eff) {
                (Some(r), _) => Some(r),
                (None, Cow::Owned(v)) => Some(v),
                (None, Cow::Borrowed(_)) => None,
            };
            (result, assign, jsonata_out)
        };
        let output = match jsonata_out {
            Some(o) => o,
            None => {
                let merged = match result {
                    Some(r) => apply_result_path(&pass.result_path, input, r).map_err(fail)?,
                    None => match &pass.result_path {
                        ResultPath::At(_) => {
                            let r = input.clone();
                            apply_result_path(&pass.result_path, input, r).map_err(fail)?
                        }
                        _ => input,
                    },
                };
                out_ctx
                    .output_path(&state.output_path, merged)
                    .map_err(fail)?
            }
        };
        Ok(Step {
            next: next_of(pass.transition),
            output,
            assign,
        })
    }

    pub(super) fn run_succeed(
        &self,
        state: &State,
        input: Value,
        out_ctx: &OutCtx<'_>,
        entered_id: u64,
    ) -> Result<Step, Failure> {
        let fail = |e: EvalError| state_failure(&state.name, entered_id, e);
        let jsonata = state.query_language == QueryLanguage::Jsonata;
        let (eff_owned, jsonata_out) = {
            let env = out_ctx.env(&input);
            if jsonata {
                (None, self.jsonata_output(state, &env).map_err(fail)?)
            } else {
                (
                    owned_if_new(effective_input(state, &input, &env).map_err(fail)?),
                    None,
                )
            }
        };
        let output = match jsonata_out {
            Some(o) => o,
            None => out_ctx
                .output_path(&state.output_path, eff_owned.unwrap_or(input))
                .map_err(fail)?,
        };
        Ok(Step {
            next: None,
            output,
            assign: Vec::new(),
        })
    }

    pub(super) fn run_fail(
        &self,
        state: &State,
        f: &Fail,
        input: Value,
        out_ctx: &OutCtx<'_>,
        entered_id: u64,
    ) -> Result<Step, Failure> {
        let fail = |e: EvalError| state_failure(&state.name, entered_id, e);
        let env = out_ctx.env(&input);
        let eff = effective_input(state, &input, &env).map_err(fail)?;
        let eff_env = env.with_input(&eff);
        let error = self
            .dynamic_string(&f.error, "ErrorPath", "Error", &eff_env)
            .map_err(fail)?;
        let cause = self
            .dynamic_string(&f.cause, "CausePath", "Cause", &eff_env)
            .map_err(fail)?;
        Err(Failure::new(error.unwrap_or_default(), cause))
    }

    fn dynamic_string(
        &self,
        d: &Option<Dynamic<String>>,
        path_field: &str,
        field: &str,
        env: &Env<'_>,
    ) -> Result<Option<String>, EvalError> {
        match d {
            None => Ok(None),
            Some(Dynamic::Fixed(s)) => Ok(Some(s.clone())),
            Some(Dynamic::Expr(e)) => {
                let name = if matches!(e, ValueExpr::Jsonata(_)) {
                    field
                } else {
                    path_field
                };
                match e.eval(name, env)? {
                    Value::String(s) => Ok(Some(s)),
                    other => Ok(Some(to_json(&other))),
                }
            }
        }
    }
}
