//! The Map state (inline): runs its item processor once per item, with bounded concurrency and
//! tolerated failures.

use super::dataflow::{effective_input, select_path, OutCtx};
use super::env::{Env, MapItem};
use super::failure::{state_failure, value_text, Failure};
use super::{Exec, Step};
use crate::budget::{estimate_bytes, IN_FLIGHT_COST};
use crate::events::Details;
use expressway_asl::model::*;
use expressway_asl::template::{to_json, EvalError, Template};
use futures::{Stream, StreamExt};
use serde_json::{Map, Value};

impl Exec<'_> {
    pub(super) async fn run_map(
        &self,
        state: &State,
        map: &MapState,
        input: Value,
        out: &OutCtx<'_>,
        entered_id: u64,
        prev: &mut u64,
    ) -> Result<Step, Failure> {
        if let Some(dm) = map.dmap.as_deref() {
            return self
                .run_distributed_map(state, map, dm, input, out, entered_id, prev)
                .await;
        }
        let fail = |e: EvalError| state_failure(&state.name, entered_id, e);
        let outcome = {
            let env_owned = out.env(&input);
            let env = &env_owned;
            let eff = effective_input(state, &input, env).map_err(fail)?;
            let eff_env = env.with_input(&eff);
            let items_value = self.map_items(state, map, &eff, &eff_env, entered_id)?;
            let Value::Array(items) = &items_value else {
                return Err(fail(EvalError::runtime("Map items must be an array")));
            };
            let max_concurrency = self.max_concurrency(state, map, &eff_env, entered_id)?;
            let limit = self.concurrency_limit(max_concurrency, items.len(), items.len().max(1));
            // The items and the results (one slot per item, then each result) are live until
            // the state is done.
            let slot = std::mem::size_of::<Option<Value>>() as u64;
            let _items_held = self.charge(
                estimate_bytes(&items_value) + slot * items.len() as u64,
                &state.name,
            )?;
            let mut counters = vec![0u32; map.work.retry.len()];
            let mut tolerance: Option<Tolerance> = None;
            let outcome = loop {
                let started = self.log.emit(
                    "MapStateStarted",
                    *prev,
                    || self.now(),
                    Details::Raw(length_details(items.len())),
                );
                *prev = started;
                // AWS evaluates the tolerated-failure fields after MapStateStarted.
                let tol = match tolerance {
                    Some(t) => t,
                    None => *tolerance.insert(self.tolerances(map, &eff_env).map_err(fail)?),
                };
                // Created lazily: only `limit` iteration futures exist at a time.
                // (indexes, not `(usize, &Value)` pairs: a closure over borrowed pairs is not
                // general enough for the boxed, `Send` interpreter future)
                let iterations = (0..items.len()).map(|index| {
                    let item = &items[index];
                    let eff_ref: &Value = &eff;
                    async move {
                        let mut lane = self.log.emit(
                            "MapIterationStarted",
                            started,
                            || self.now(),
                            Details::Raw(iteration_details(index, &state.name)),
                        );
                        let item_input =
                            self.select_item(state, map, eff_ref, env, index, item, entered_id)?;
                        let running =
                            self.charge(IN_FLIGHT_COST + estimate_bytes(&item_input), &state.name)?;
                        let r = self
                            .run_graph(
                                &map.processor,
                                item_input,
                                env.scope,
                                &mut lane,
                                None,
                                Some(index),
                            )
                            .await;
                        drop(running);
                        let ty = if r.is_ok() {
                            "MapIterationSucceeded"
                        } else {
                            "MapIterationFailed"
                        };
                        self.log.emit(
                            ty,
                            lane,
                            || self.now(),
                            Details::Raw(iteration_details(index, &state.name)),
                        );
                        Ok::<_, Failure>((index, r))
                    }
                });
                let stream = futures::stream::iter(iterations).buffer_unordered(limit);
                let collected = self
                    .collect_results(stream, items.len(), tol, &state.name)
                    .await?;
                *prev = self.log.peek_next_id().saturating_sub(1);
                match collected.first_failure {
                    None => {
                        *prev = self.log.emit(
                            "MapStateSucceeded",
                            *prev,
                            || self.now(),
                            Details::Empty,
                        );
                        break Ok(Value::Array(collected.into_values()));
                    }
                    Some(f) => {
                        if let Some(outcome) = self
                            .after_failure(&map.work, &mut counters, f, "MapStateFailed", prev)
                            .await
                        {
                            break outcome;
                        }
                    }
                }
            };
            outcome
        };
        self.finish_work(state, &map.work, input, out, outcome, entered_id)
    }

    /// The items of a Map from its effective input (`ItemsPath`, JSONata `Items`, or the input
    /// itself): always an array.
    pub(super) fn map_items(
        &self,
        state: &State,
        map: &MapState,
        eff: &Value,
        eff_env: &Env<'_>,
        entered_id: u64,
    ) -> Result<Value, Failure> {
        let fail = |e: EvalError| state_failure(&state.name, entered_id, e);
        let jsonata = state.query_language == QueryLanguage::Jsonata;
        let items_value = if let Some(items) = &map.items {
            let v = items.eval_in(eff_env, "Items").map_err(fail)?;
            if !v.is_array() {
                let text = items_text(items);
                return Err(fail(EvalError::query(format!(
                    "The JSONata expression '{text}' specified for the field 'Items' returned an unexpected result type. Expected 'array', but was '{}' for value: {}",
                    expressway_asl::jsonata::type_name(&v),
                    to_json(&v)
                ))));
            }
            v
        } else {
            match &map.items_path {
                Some(p) => select_path(p, eff, eff_env).map_err(fail)?,
                None => eff.clone(),
            }
        };
        if !items_value.is_array() {
            let detail = if jsonata {
                EvalError::query(format!(
                    "Map state input must be an array but was: {}",
                    to_json(&items_value)
                ))
            } else {
                let path = map
                    .items_path
                    .as_ref()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "$".into());
                EvalError::runtime(format!("Reference path \"{path}\" must point to array."))
            };
            return Err(fail(detail));
        }
        Ok(items_value)
    }

    /// `MaxConcurrency` / `MaxConcurrencyPath` as declared (0 = no limit).
    pub(super) fn max_concurrency(
        &self,
        state: &State,
        map: &MapState,
        eff_env: &Env<'_>,
        entered_id: u64,
    ) -> Result<usize, Failure> {
        let fail = |e: EvalError| state_failure(&state.name, entered_id, e);
        match &map.max_concurrency {
            Dynamic::Fixed(n) => Ok(*n as usize),
            Dynamic::Expr(e) => {
                let v = e.eval("MaxConcurrencyPath", eff_env).map_err(fail)?;
                let parsed = match &v {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().parse::<u64>().ok(),
                    _ => None,
                };
                match parsed {
                    Some(n) => Ok(n as usize),
                    None => Err(fail(EvalError::runtime(format!(
                        "The MaxConcurrencyPath field refers to value \"{}\" which is not a valid integer: {}",
                        value_text(&v),
                        e.text()
                    )))),
                }
            }
        }
    }

    /// How many iterations / children run at once: the declared `MaxConcurrency` (or
    /// `unlimited` for 0), below the memory cap: iterations in flight hold at most a quarter of
    /// the memory budget (4,096 at the default 64 MiB).
    pub(super) fn concurrency_limit(
        &self,
        max_concurrency: usize,
        runs: usize,
        unlimited: usize,
    ) -> usize {
        let in_flight_cap = (self.memory_limit() / (4 * IN_FLIGHT_COST)).max(1) as usize;
        let declared = if max_concurrency == 0 {
            unlimited
        } else {
            max_concurrency
        };
        declared.min(in_flight_cap).min(runs.max(1))
    }

    /// `ItemSelector` applied to one item (`$$.Map.Item.Index` / `.Value`), or the item itself.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn select_item(
        &self,
        state: &State,
        map: &MapState,
        eff: &Value,
        env: &Env<'_>,
        index: usize,
        item: &Value,
        entered_id: u64,
    ) -> Result<Value, Failure> {
        let jsonata = state.query_language == QueryLanguage::Jsonata;
        match &map.item_selector {
            Some(sel) => {
                let mut ienv = Env::new(self, eff, env.scope, &state.name, env.entered_millis);
                ienv.map_item = Some(MapItem { index, value: item });
                sel.eval_in(&ienv, if jsonata { "ItemSelector" } else { "" })
                    .map_err(|e| state_failure(&state.name, entered_id, e))
            }
            None => Ok(item.clone()),
        }
    }

    /// Evaluates `ToleratedFailureCount(Path)` / `ToleratedFailurePercentage(Path)`.
    pub(super) fn tolerances(&self, map: &MapState, env: &Env<'_>) -> Result<Tolerance, EvalError> {
        Ok(Tolerance {
            count: self.tolerance(
                &map.tolerated_failure_count,
                "ToleratedFailureCountPath",
                true,
                env,
            )?,
            pct: self.tolerance(
                &map.tolerated_failure_percentage,
                "ToleratedFailurePercentagePath",
                false,
                env,
            )?,
        })
    }

    /// Collects the results of `total` runs (iterations or children) in index order, counting
    /// failures against the tolerance; stops at the first failure over it. `Err` only for a
    /// fatal failure (no Retry or Catch applies).
    pub(super) async fn collect_results<S>(
        &self,
        stream: S,
        total: usize,
        tolerance: Tolerance,
        state_name: &str,
    ) -> Result<Collected, Failure>
    where
        S: Stream<Item = Result<(usize, Result<Value, Failure>), Failure>>,
    {
        let mut stream = std::pin::pin!(stream);
        let mut results: Vec<Option<Value>> = vec![None; total];
        let mut failed = Vec::new();
        // a retried attempt starts with no results
        let mut results_charge = self.charge(0, state_name)?;
        let mut first_failure: Option<Failure> = None;
        while let Some(r) = stream.next().await {
            let (index, r) = r?;
            match r {
                Ok(v) => {
                    self.grow(&mut results_charge, estimate_bytes(&v), state_name)?;
                    results[index] = Some(v);
                }
                Err(f) => {
                    if f.fatal {
                        return Err(f);
                    }
                    failed.push(index);
                    let e = f.error_output();
                    self.grow(&mut results_charge, estimate_bytes(&e), state_name)?;
                    results[index] = Some(e);
                    if tolerance.exceeded(failed.len(), total) {
                        first_failure = Some(tolerance.failure(f));
                        break;
                    }
                }
            }
        }
        Ok(Collected {
            results,
            failed,
            first_failure,
        })
    }

    fn tolerance(
        &self,
        d: &Option<Dynamic<f64>>,
        field: &str,
        integer: bool,
        env: &Env<'_>,
    ) -> Result<Option<f64>, EvalError> {
        let n = match d {
            None => return Ok(None),
            Some(Dynamic::Fixed(n)) => *n,
            Some(Dynamic::Expr(e)) => {
                let v = e.eval(field, env)?;
                let parsed = match &v {
                    Value::Number(n) if integer => n.as_i64().map(|i| i as f64),
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) if integer => s.trim().parse::<i64>().ok().map(|i| i as f64),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                };
                let kind = if integer { "integer" } else { "float" };
                parsed.ok_or_else(|| {
                    EvalError::runtime(format!(
                        "The {field} field refers to value \"{}\" which is not a valid {kind}: {}",
                        value_text(&v),
                        e.text()
                    ))
                })?
            }
        };
        if integer && n < 0.0 {
            return Err(EvalError::runtime(
                "ToleratedFailureCount cannot be negative.",
            ));
        }
        if !integer && !(0.0..=100.0).contains(&n) {
            return Err(EvalError::runtime(
                "ToleratedFailurePercentage must be between 0 and 100.",
            ));
        }
        Ok(Some(n))
    }
}

/// The tolerated failures of one Map attempt.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tolerance {
    count: Option<f64>,
    pct: Option<f64>,
}

impl Tolerance {
    /// `failures` of `total` runs are more than tolerated (any failure without a tolerance).
    fn exceeded(&self, failures: usize, total: usize) -> bool {
        if self.count.is_none() && self.pct.is_none() {
            return true;
        }
        let over_count = self.count.is_none_or(|c| failures as f64 > c);
        let over_pct = self
            .pct
            .is_none_or(|p| failures as f64 * 100.0 / total.max(1) as f64 > p);
        over_count && over_pct
    }

    /// The failure a Map fails with: the run's own, or the threshold's when one was set.
    fn failure(&self, f: Failure) -> Failure {
        if self.count.is_some() || self.pct.is_some() {
            Failure::new(
                "States.ExceedToleratedFailureThreshold",
                Some("The specified tolerated failure threshold was exceeded".into()),
            )
        } else {
            f
        }
    }
}

/// The results of one Map attempt.
pub(super) struct Collected {
    /// One slot per run, in index order: its output, its error output, or `None` (not run).
    pub(super) results: Vec<Option<Value>>,
    /// The indexes of the failed runs, in completion order.
    pub(super) failed: Vec<usize>,
    /// Set when the failures exceeded the tolerance.
    pub(super) first_failure: Option<Failure>,
}

impl Collected {
    pub(super) fn into_values(self) -> Vec<Value> {
        self.results
            .into_iter()
            .map(|v| v.unwrap_or(Value::Null))
            .collect()
    }
}

fn items_text(t: &Template) -> String {
    match t {
        Template::Expr(e, _) => e.text().to_string(),
        Template::Const(v) => to_json(v),
        _ => String::from("Items"),
    }
}

fn length_details(len: usize) -> Value {
    let mut m = Map::new();
    m.insert("length".into(), Value::from(len));
    Value::Object(m)
}

fn iteration_details(index: usize, name: &str) -> Value {
    let mut m = Map::new();
    m.insert("index".into(), Value::from(index));
    m.insert("name".into(), Value::String(name.to_string()));
    Value::Object(m)
}
