//! The Distributed Map state: one Map Run per attempt, with AWS's events (MapStateStarted,
//! MapRunStarted {mapRunArn}, MapRunSucceeded / MapRunFailed {error, cause}, MapStateSucceeded /
//! MapStateFailed; the children's events are in their own executions).

use super::batcher::{batches, BatchLimits};
use super::children::InProcess;
use super::reader::ReadCtx;
use super::writer::{ChildRecord, ChildStatus};
use crate::budget::{estimate_bytes, IN_FLIGHT_COST};
use crate::events::Details;
use crate::exec::dataflow::{effective_input, OutCtx};
use crate::exec::env::Env;
use crate::exec::failure::{state_failure, value_text, Failure};
use crate::exec::map::Tolerance;
use crate::exec::{Exec, Step};
use crate::map_runs::{
    processor_of, ChildExecution, ChildExecutionType, ChildExecutions, MapRunId,
    DEFAULT_DISTRIBUTED_CONCURRENCY,
};
use expressway_asl::model::*;
use expressway_asl::template::EvalError;
use futures::StreamExt;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// What one Map Run needs besides the state.
struct RunCtx<'a> {
    state: &'a State,
    map: &'a MapState,
    dm: &'a DistributedConfig,
    eff: &'a Value,
    env: &'a Env<'a>,
    eff_env: &'a Env<'a>,
    entered_id: u64,
    children: &'a Arc<dyn ChildExecutions>,
    max_concurrency: usize,
}

impl Exec<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(in crate::exec) async fn run_distributed_map(
        &self,
        state: &State,
        map: &MapState,
        dm: &DistributedConfig,
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
            let from_input = match &dm.item_reader {
                None => match self.map_items(state, map, &eff, &eff_env, entered_id)? {
                    Value::Array(a) => a,
                    _ => return Err(fail(EvalError::runtime("Map items must be an array"))),
                },
                Some(_) => Vec::new(),
            };
            let max_concurrency = self.max_concurrency(state, map, &eff_env, entered_id)?;
            let scope = env.scope.path();
            let children: Arc<dyn ChildExecutions> = match &self.rt.map_children {
                Some(c) => c.clone(),
                None => Arc::new(InProcess {
                    processor: Arc::new(processor_of(state).ok_or_else(|| {
                        fail(EvalError::runtime("The Map state is not a Distributed Map"))
                    })?),
                    runtime: self.rt.clone(),
                    limits: self.req.limits,
                    state_machine_name: self.req.state_machine_name.clone(),
                    role_arn: self.req.role_arn.clone(),
                }),
            };
            let rc = RunCtx {
                state,
                map,
                dm,
                eff: &eff,
                env,
                eff_env: &eff_env,
                entered_id,
                children: &children,
                max_concurrency,
            };
            let mut counters = vec![0u32; map.work.retry.len()];
            let mut tolerance: Option<Tolerance> = None;
            let mut attempt = 0u32;
            loop {
                let cx = ReadCtx {
                    state_name: &state.name,
                    scope: &scope,
                    attempt,
                };
                let read = match &dm.item_reader {
                    None => Ok(Vec::new()),
                    Some(r) => {
                        let params = match &r.parameters {
                            Some(t) => t
                                .eval_in(
                                    &eff_env,
                                    if jsonata { "ItemReader/Arguments" } else { "" },
                                )
                                .map_err(fail)?,
                            None => Value::Object(Map::new()),
                        };
                        let max_items = self
                            .dynamic_count(&r.config.max_items, "MaxItemsPath", &eff_env)
                            .map_err(fail)?;
                        self.read_items(&cx, r, params, max_items).await
                    }
                };
                let (read_items, reader_failed) = match read {
                    Ok(v) => (v, None),
                    Err(f) => (Vec::new(), Some(f)),
                };
                let items: &[Value] = if dm.item_reader.is_some() {
                    &read_items
                } else {
                    &from_input
                };
                let started = self.log.emit(
                    "MapStateStarted",
                    *prev,
                    || self.now(),
                    Details::Raw(serde_json::json!({"length": items.len()})),
                );
                *prev = started;
                // AWS evaluates the tolerated-failure fields after MapStateStarted.
                let tol = match tolerance {
                    Some(t) => t,
                    None => *tolerance.insert(self.tolerances(map, &eff_env).map_err(fail)?),
                };
                let run = MapRunId::new(
                    &self.req.state_machine_arn,
                    &self.req.state_machine_name,
                    &self.req.execution_arn,
                    &state.name,
                    map.label.as_deref(),
                    &scope,
                    attempt,
                );
                let run_started = self.log.emit(
                    "MapRunStarted",
                    started,
                    || self.now(),
                    Details::Raw(serde_json::json!({"mapRunArn": run.arn})),
                );
                let result = match reader_failed {
                    Some(f) => Err(f),
                    None => self.map_run(&rc, &cx, items, &run, tol).await?,
                };
                attempt += 1;
                match result {
                    Ok(v) => {
                        let done = self.log.emit(
                            "MapRunSucceeded",
                            run_started,
                            || self.now(),
                            Details::Empty,
                        );
                        // AWS: MapStateSucceeded and MapStateExited both follow MapRunSucceeded
                        self.log
                            .emit("MapStateSucceeded", done, || self.now(), Details::Empty);
                        *prev = done;
                        break Ok(v);
                    }
                    Err(f) => {
                        *prev = self.log.emit(
                            "MapRunFailed",
                            run_started,
                            || self.now(),
                            Details::Failure {
                                error: Some(f.error.as_str()).filter(|e| !e.is_empty()),
                                cause: f.cause.as_deref(),
                                resource: None,
                            },
                        );
                        if let Some(outcome) = self
                            .after_failure(&map.work, &mut counters, f, "MapStateFailed", prev)
                            .await
                        {
                            break outcome;
                        }
                    }
                }
            }
        };
        self.finish_work(state, &map.work, input, out, outcome, entered_id)
    }

    /// `MaxItems(Path)`, `MaxItemsPerBatch(Path)`, `MaxInputBytesPerBatch(Path)`.
    fn dynamic_count(
        &self,
        d: &Option<Dynamic<u64>>,
        field: &str,
        env: &Env<'_>,
    ) -> Result<Option<u64>, EvalError> {
        match d {
            None => Ok(None),
            Some(Dynamic::Fixed(n)) => Ok(Some(*n)),
            Some(Dynamic::Expr(e)) => {
                let v = e.eval(field, env)?;
                let parsed = match &v {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().parse::<u64>().ok(),
                    _ => None,
                };
                parsed.map(Some).ok_or_else(|| {
                    EvalError::runtime(format!(
                        "The {field} field refers to value \"{}\" which is not a valid integer: {}",
                        value_text(&v),
                        e.text()
                    ))
                })
            }
        }
    }

    /// One Map Run over `items`: the children, then the writer. `Err` for a fatal failure;
    /// `Ok(Err)` when the run failed (tolerance exceeded, writer failed).
    async fn map_run(
        &self,
        rc: &RunCtx<'_>,
        cx: &ReadCtx<'_>,
        items: &[Value],
        run: &MapRunId,
        tol: Tolerance,
    ) -> Result<Result<Value, Failure>, Failure> {
        let state = rc.state;
        let fail = |e: EvalError| state_failure(&state.name, rc.entered_id, e);
        let jsonata = state.query_language == QueryLanguage::Jsonata;
        let mut selected = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            selected.push(self.select_item(
                state,
                rc.map,
                rc.eff,
                rc.env,
                index,
                item,
                rc.entered_id,
            )?);
        }
        let inputs = match &rc.dm.item_batcher {
            None => selected,
            Some(b) => {
                let limits = BatchLimits {
                    max_items: self
                        .dynamic_count(&b.max_items_per_batch, "MaxItemsPerBatchPath", rc.eff_env)
                        .map_err(fail)?,
                    max_bytes: self
                        .dynamic_count(
                            &b.max_input_bytes_per_batch,
                            "MaxInputBytesPerBatchPath",
                            rc.eff_env,
                        )
                        .map_err(fail)?,
                };
                let batch_input = match &b.batch_input {
                    Some(t) => Some(
                        t.eval_in(
                            rc.eff_env,
                            if jsonata {
                                "ItemBatcher/BatchInput"
                            } else {
                                ""
                            },
                        )
                        .map_err(fail)?,
                    ),
                    None => None,
                };
                batches(selected, limits, batch_input.as_ref())
            }
        };
        let slot = std::mem::size_of::<Option<Value>>() as u64;
        let _inputs_held = self.charge(
            inputs.iter().map(estimate_bytes).sum::<u64>() + slot * inputs.len() as u64,
            &state.name,
        )?;
        let execution_type = match rc.dm.execution_type {
            ExecutionType::Standard => ChildExecutionType::Standard,
            ExecutionType::Express => ChildExecutionType::Express,
        };
        let ids: Vec<(String, String)> = (0..inputs.len())
            .map(|i| run.child(i, execution_type))
            .collect();
        let limit = self.concurrency_limit(
            rc.max_concurrency,
            inputs.len(),
            DEFAULT_DISTRIBUTED_CONCURRENCY,
        );
        let times = Mutex::new(vec![(0i64, 0i64); inputs.len()]);
        let runs = (0..inputs.len()).map(|index| {
            let (inputs, ids, times) = (&inputs, &ids, &times);
            async move {
                let child = ChildExecution {
                    map_run_arn: run.arn.clone(),
                    parent_execution_arn: self.req.execution_arn.clone(),
                    state_machine_arn: self.req.state_machine_arn.clone(),
                    state_name: state.name.clone(),
                    scope: cx.scope.to_string(),
                    attempt: cx.attempt,
                    index,
                    execution_name: ids[index].0.clone(),
                    execution_arn: ids[index].1.clone(),
                    input: inputs[index].clone(),
                    execution_type,
                };
                let running =
                    self.charge(IN_FLIGHT_COST + estimate_bytes(&child.input), &state.name)?;
                let start = self.now();
                let r = rc
                    .children
                    .run(child)
                    .await
                    .map_err(|e| Failure::new(e.error, e.cause));
                drop(running);
                if let Ok(mut t) = times.lock() {
                    t[index] = (start, self.now());
                }
                Ok::<_, Failure>((index, r))
            }
        });
        let stream = futures::stream::iter(runs).buffer_unordered(limit);
        let collected = self
            .collect_results(stream, inputs.len(), tol, &state.name)
            .await?;
        let written = match &rc.dm.result_writer {
            None => None,
            Some(w) => {
                let params = match &w.parameters {
                    Some(t) => Some(
                        t.eval_in(
                            rc.eff_env,
                            if jsonata {
                                "ResultWriter/Arguments"
                            } else {
                                ""
                            },
                        )
                        .map_err(fail)?,
                    ),
                    None => None,
                };
                let times = times.into_inner().unwrap_or_else(|p| p.into_inner());
                let failed: HashSet<usize> = collected.failed.iter().copied().collect();
                let records: Vec<ChildRecord<'_>> = (0..inputs.len())
                    .map(|i| ChildRecord {
                        name: &ids[i].0,
                        arn: &ids[i].1,
                        input: &inputs[i],
                        result: collected.results[i].as_ref(),
                        status: if failed.contains(&i) {
                            ChildStatus::Failed
                        } else if collected.results[i].is_some() {
                            ChildStatus::Succeeded
                        } else {
                            ChildStatus::Pending
                        },
                        times: times[i],
                    })
                    .collect();
                Some(self.write_results(cx, w, params, run, &records).await)
            }
        };
        let mut collected = collected;
        Ok(match (collected.first_failure.take(), written) {
            // the threshold's failure wins over a writer's
            (Some(f), _) => Err(f),
            (None, Some(r)) => r,
            (None, None) => Ok(Value::Array(collected.into_values())),
        })
    }
}
