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
use futures::StreamExt;
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
        let fail = |e: EvalError| state_failure(&state.name, entered_id, e);
        let jsonata = state.query_language == QueryLanguage::Jsonata;
        let outcome = {
            let env_owned = out.env(&input);
            let env = &env_owned;
            let eff = effective_input(state, &input, env).map_err(fail)?;
            let eff_env = env.with_input(&eff);
            let items_value = if let Some(items) = &map.items {
                let v = items.eval_in(&eff_env, "Items").map_err(fail)?;
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
                    Some(p) => select_path(p, &eff, &eff_env).map_err(fail)?,
                    None => eff.clone().into_owned(),
                }
            };
            let Value::Array(items) = &items_value else {
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
            };
            let max_concurrency = match &map.max_concurrency {
                Dynamic::Fixed(n) => *n as usize,
                Dynamic::Expr(e) => {
                    let v = e.eval("MaxConcurrencyPath", &eff_env).map_err(fail)?;
                    let parsed = match &v {
                        Value::Number(n) => n.as_u64(),
                        Value::String(s) => s.trim().parse::<u64>().ok(),
                        _ => None,
                    };
                    match parsed {
                    Some(n) => n as usize,
                    None => {
                        return Err(fail(EvalError::runtime(format!(
                            "The MaxConcurrencyPath field refers to value \"{}\" which is not a valid integer: {}",
                            value_text(&v),
                            e.text()
                        ))))
                    }
                }
                }
            };
            // Iterations in flight hold at most a quarter of the memory budget (declared
            // concurrency is kept below that: 4,096 at the default 64 MiB).
            let in_flight_cap = (self.memory_limit() / (4 * IN_FLIGHT_COST)).max(1) as usize;
            let limit = if max_concurrency == 0 {
                items.len().max(1)
            } else {
                max_concurrency
            }
            .min(in_flight_cap);
            // The items and the results (one slot per item, then each result) are live until
            // the state is done.
            let slot = std::mem::size_of::<Option<Value>>() as u64;
            let _items_held = self.charge(
                estimate_bytes(&items_value) + slot * items.len() as u64,
                &state.name,
            )?;
            let mut counters = vec![0u32; map.work.retry.len()];
            let mut tolerance: Option<(Option<f64>, Option<f64>)> = None;
            let outcome = loop {
                let started = self.log.emit(
                    "MapStateStarted",
                    *prev,
                    || self.now(),
                    Details::Raw(length_details(items.len())),
                );
                *prev = started;
                // AWS evaluates the tolerated-failure fields after MapStateStarted.
                let (tolerated_count, tolerated_pct) = match tolerance {
                    Some(t) => t,
                    None => {
                        let count = self
                            .tolerance(
                                &map.tolerated_failure_count,
                                "ToleratedFailureCountPath",
                                true,
                                &eff_env,
                            )
                            .map_err(fail)?;
                        let pct = self
                            .tolerance(
                                &map.tolerated_failure_percentage,
                                "ToleratedFailurePercentagePath",
                                false,
                                &eff_env,
                            )
                            .map_err(fail)?;
                        *tolerance.insert((count, pct))
                    }
                };
                let tolerant = tolerated_count.is_some() || tolerated_pct.is_some();
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
                        let item_input = match &map.item_selector {
                            Some(sel) => {
                                let mut ienv = Env::new(
                                    self,
                                    eff_ref,
                                    env.scope,
                                    &state.name,
                                    env.entered_millis,
                                );
                                ienv.map_item = Some(MapItem { index, value: item });
                                sel.eval_in(&ienv, if jsonata { "ItemSelector" } else { "" })
                                    .map_err(|e| state_failure(&state.name, entered_id, e))?
                            }
                            None => item.clone(),
                        };
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
                let mut stream = futures::stream::iter(iterations).buffer_unordered(limit);
                let mut results: Vec<Option<Value>> = vec![None; items.len()];
                // a retried attempt starts with no results
                let mut results_charge = self.charge(0, &state.name)?;
                let mut failures = 0usize;
                let mut first_failure: Option<Failure> = None;
                while let Some(r) = stream.next().await {
                    let (index, r) = r?;
                    match r {
                        Ok(v) => {
                            self.grow(&mut results_charge, estimate_bytes(&v), &state.name)?;
                            results[index] = Some(v);
                        }
                        Err(f) => {
                            if f.fatal {
                                return Err(f);
                            }
                            failures += 1;
                            let e = f.error_output();
                            self.grow(&mut results_charge, estimate_bytes(&e), &state.name)?;
                            results[index] = Some(e);
                            let exceeded = if tolerant {
                                let over_count = tolerated_count
                                    .is_some_and(|c| failures as f64 > c)
                                    || tolerated_count.is_none();
                                let over_pct = tolerated_pct.is_some_and(|p| {
                                    failures as f64 * 100.0 / items.len().max(1) as f64 > p
                                }) || tolerated_pct.is_none();
                                over_count && over_pct
                            } else {
                                true
                            };
                            if exceeded {
                                first_failure = Some(if tolerant {
                                    Failure::new("States.ExceedToleratedFailureThreshold", Some("The specified tolerated failure threshold was exceeded".into()))
                                } else {
                                    f
                                });
                                break;
                            }
                        }
                    }
                }
                drop(stream);
                *prev = self.log.peek_next_id().saturating_sub(1);
                match first_failure {
                    None => {
                        *prev = self.log.emit(
                            "MapStateSucceeded",
                            *prev,
                            || self.now(),
                            Details::Empty,
                        );
                        break Ok(Value::Array(
                            results
                                .into_iter()
                                .map(|v| v.unwrap_or(Value::Null))
                                .collect(),
                        ));
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
