//! The Choice state.

use super::assign::eval_assign_template;
use super::dataflow::{effective_input, owned_if_new, OutCtx};
use super::failure::{state_failure, Failure};
use super::{Exec, Step};
use expressway_asl::model::*;
use expressway_asl::template::EvalError;
use serde_json::Value;

impl Exec<'_> {
    pub(super) fn run_choice(
        &self,
        state: &State,
        choice: &Choice,
        input: Value,
        out_ctx: &OutCtx<'_>,
        entered_id: u64,
    ) -> Result<Step, Failure> {
        let fail = |e: EvalError| state_failure(&state.name, entered_id, e);
        let jsonata = state.query_language == QueryLanguage::Jsonata;
        let (next, assign, eff_owned, jsonata_out) = {
            let env = out_ctx.env(&input);
            let eff = effective_input(state, &input, &env).map_err(fail)?;
            let eff_env = env.with_input(&eff);
            let mut matched = None;
            for branch in &choice.choices {
                if branch.rule.eval(&eff_env).map_err(fail)? {
                    matched = Some(branch);
                    break;
                }
            }
            let (next, assign_t, output_t) = match matched {
                Some(b) => (b.next, b.assign.as_ref().or(state.assign.as_ref()), b.output.as_ref().or(state.output.as_ref())),
                None => match choice.default {
                    Some(d) => (d, state.assign.as_ref(), state.output.as_ref()),
                    None => {
                        return Err(Failure::new(
                            "States.NoChoiceMatched",
                            Some(format!("An error occurred while executing the state '{}' (entered at the event id #{entered_id}). Failed to transition out of the state. The state does not point to a next state.", state.name)),
                        ))
                    }
                },
            };
            let assign = match assign_t {
                Some(t) => eval_assign_template(t, &eff_env).map_err(fail)?,
                None => Vec::new(),
            };
            let jsonata_out = match (jsonata, output_t) {
                (true, Some(t)) => Some(t.eval_in(&env, "Output").map_err(fail)?),
                _ => None,
            };
            (next, assign, owned_if_new(eff), jsonata_out)
        };
        let output = match jsonata_out {
            Some(o) => o,
            None if jsonata => input,
            None => out_ctx
                .output_path(&state.output_path, eff_owned.unwrap_or(input))
                .map_err(fail)?,
        };
        Ok(Step {
            next: Some(next),
            output,
            assign,
        })
    }
}
