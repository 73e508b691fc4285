//! The Wait state.

use super::dataflow::{effective_input, owned_if_new, select_path, OutCtx};
use super::env::Env;
use super::failure::{state_failure, value_text, Failure};
use super::{next_of, Exec, Step};
use expressway_asl::model::*;
use expressway_asl::template::{to_json, EvalError};
use expressway_asl::timestamp::parse_timestamp;
use serde_json::Value;
use std::time::Duration;

impl Exec<'_> {
    pub(super) async fn run_wait(
        &self,
        state: &State,
        wait: &Wait,
        input: Value,
        out_ctx: &OutCtx<'_>,
        entered_id: u64,
    ) -> Result<Step, Failure> {
        let fail = |e: EvalError| state_failure(&state.name, entered_id, e);
        let jsonata = state.query_language == QueryLanguage::Jsonata;
        let (assign, eff_owned, jsonata_out) = {
            let env = out_ctx.env(&input);
            let eff = effective_input(state, &input, &env).map_err(fail)?;
            let eff_env = env.with_input(&eff);
            let delay = self.wait_delay(&wait.wait_for, &eff_env).map_err(fail)?;
            if !delay.is_zero() {
                self.rt.clock.sleep(delay).await;
            }
            let assign = self.eval_assign(state, &eff_env).map_err(fail)?;
            let jsonata_out = if jsonata {
                self.jsonata_output(state, &env).map_err(fail)?
            } else {
                None
            };
            (assign, owned_if_new(eff), jsonata_out)
        };
        let output = match jsonata_out {
            Some(o) => o,
            None => out_ctx
                .output_path(&state.output_path, eff_owned.unwrap_or(input))
                .map_err(fail)?,
        };
        Ok(Step {
            next: next_of(wait.transition),
            output,
            assign,
        })
    }

    fn wait_delay(&self, wait_for: &WaitFor, env: &Env<'_>) -> Result<Duration, EvalError> {
        let now = self.now();
        let until = |ts: &str, err: &dyn Fn() -> EvalError| -> Result<Duration, EvalError> {
            let t = parse_timestamp(ts).ok_or_else(err)?;
            let target = t.timestamp_millis();
            if target - now > i32::MAX as i64 * 1000 {
                return Err(EvalError::runtime("Wait state delay is too long."));
            }
            Ok(Duration::from_millis((target - now).max(0) as u64))
        };
        match wait_for {
            WaitFor::Seconds(s) => Ok(Duration::from_secs(*s)),
            WaitFor::Timestamp(ts) => until(ts, &|| {
                EvalError::runtime("The Timestamp field cannot be parsed")
            }),
            WaitFor::SecondsPath(p) => {
                let v = select_path(p, env.input, env).map_err(|_| {
                    EvalError::runtime(format!(
                        "The SecondsPath parameter does not reference an input value: {p}"
                    ))
                })?;
                let text = value_text(&v);
                match v.as_i64() {
                    Some(n) if n < 0 => Err(EvalError::runtime(format!(
                        "The SecondsPath parameter references a negative value: {p} == {text}"
                    ))),
                    Some(n) if v.is_i64() || v.is_u64() => Ok(Duration::from_secs(n as u64)),
                    _ => Err(EvalError::runtime(format!(
                        "The SecondsPath parameter cannot be parsed as a long value: {p} == {text}"
                    ))),
                }
            }
            WaitFor::TimestampPath(p) => {
                let v = select_path(p, env.input, env).map_err(|_| {
                    EvalError::runtime(format!(
                        "The TimestampPath parameter does not reference an input value: {p}"
                    ))
                })?;
                let bad = || {
                    EvalError::runtime(format!("The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {p} == {}", value_text(&v)))
                };
                match &v {
                    Value::String(s) => until(s, &bad),
                    _ => Err(bad()),
                }
            }
            WaitFor::SecondsExpr(e) => {
                let v = e.eval("Seconds", env)?;
                match v.as_u64() {
                    Some(n) => Ok(Duration::from_secs(n)),
                    None => Err(EvalError::query(format!("The JSONata expression '{}' specified for the field 'Seconds' returned an unexpected result type. Expected 'integer', but was '{}' for value: {}", e.text(), expressway_asl::jsonata::type_name(&v), to_json(&v)))),
                }
            }
            WaitFor::TimestampExpr(e) => {
                let v = e.eval("Timestamp", env)?;
                let text = value_text(&v);
                let bad = || {
                    EvalError::query(format!("The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format string: {text}"))
                };
                match &v {
                    Value::String(s) => until(s, &bad),
                    _ => Err(bad()),
                }
            }
        }
    }
}
