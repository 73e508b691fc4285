//! The Parallel state: runs its branches concurrently on the same input.

use super::dataflow::{effective_input, work_input, OutCtx};
use super::failure::{state_failure, Failure};
use super::{Exec, Step};
use crate::budget::{estimate_bytes, IN_FLIGHT_COST};
use crate::events::Details;
use expressway_asl::model::*;
use expressway_asl::template::EvalError;
use futures::future;
use serde_json::Value;

impl Exec<'_> {
    pub(super) async fn run_parallel(
        &self,
        state: &State,
        par: &Parallel,
        input: Value,
        out: &OutCtx<'_>,
        entered_id: u64,
        prev: &mut u64,
    ) -> Result<Step, Failure> {
        let fail = |e: EvalError| state_failure(&state.name, entered_id, e);
        let jsonata = state.query_language == QueryLanguage::Jsonata;
        let outcome = {
            let env_owned = out.env(&input);
            let env = &env_owned;
            let eff = effective_input(state, &input, env).map_err(fail)?;
            let eff_env = env.with_input(&eff);
            let branch_input = work_input(&par.work, jsonata, &eff, &eff_env).map_err(fail)?;
            let branch_cost = IN_FLIGHT_COST + estimate_bytes(&branch_input);
            let mut counters = vec![0u32; par.work.retry.len()];
            let outcome = loop {
                let started =
                    self.log
                        .emit("ParallelStateStarted", *prev, || self.now(), Details::Empty);
                *prev = started;
                let branches = par
                    .branches
                    .iter()
                    .enumerate()
                    .map(|(branch, g)| {
                        let branch_input = branch_input.clone();
                        async move {
                            let running = self.charge(branch_cost, &state.name)?;
                            let mut lane = started;
                            let v = self
                                .run_graph(
                                    g,
                                    branch_input,
                                    env.scope,
                                    &mut lane,
                                    None,
                                    Some(branch),
                                )
                                .await?;
                            drop(running);
                            // the output is held until every branch is done
                            let held = self.charge(estimate_bytes(&v), &state.name)?;
                            Ok::<_, Failure>((v, lane, held))
                        }
                    })
                    .collect::<Vec<_>>();
                match future::try_join_all(branches).await {
                    Ok(results) => {
                        if let Some(last) = results.iter().map(|(_, l, _)| *l).max() {
                            *prev = last;
                        }
                        *prev = self.log.emit(
                            "ParallelStateSucceeded",
                            *prev,
                            || self.now(),
                            Details::Empty,
                        );
                        break Ok(Value::Array(
                            results.into_iter().map(|(v, _, _held)| v).collect(),
                        ));
                    }
                    Err(f) => {
                        *prev = self.log.peek_next_id().saturating_sub(1);
                        if f.fatal {
                            return Err(f);
                        }
                        if let Some(outcome) = self
                            .after_failure(&par.work, &mut counters, f, "ParallelStateFailed", prev)
                            .await
                        {
                            break outcome;
                        }
                    }
                }
            };
            outcome
        };
        self.finish_work(state, &par.work, input, out, outcome, entered_id)
    }
}
