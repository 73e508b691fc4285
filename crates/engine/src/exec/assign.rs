//! Variables: evaluating `Assign` and AWS's limits on assigned values.

use super::env::Env;
use super::Exec;
use expressway_asl::model::*;
use expressway_asl::template::{json_size, EvalError, Template};
use serde_json::Value;
use std::sync::atomic::Ordering;

impl Exec<'_> {
    pub(super) fn eval_assign(
        &self,
        state: &State,
        env: &Env<'_>,
    ) -> Result<Vec<(String, Value)>, EvalError> {
        match &state.assign {
            Some(t) => eval_assign_template(t, env),
            None => Ok(Vec::new()),
        }
    }
}

/// AWS's variable limits: 256 KiB per variable and per Assign, 10 MiB per execution.
const MAX_VARIABLE_BYTES: usize = 262_144;
const MAX_EXECUTION_VARIABLE_BYTES: u64 = 10 * 1024 * 1024;

pub(super) fn eval_assign_template(
    t: &Template,
    env: &Env<'_>,
) -> Result<Vec<(String, Value)>, EvalError> {
    let assigned: Vec<(String, Value)> = match t.eval_in(env, "Assign")? {
        Value::Object(m) => m.into_iter().collect(),
        _ => return Ok(Vec::new()),
    };
    let (mut total, mut replaced) = (0usize, 0u64);
    for (k, v) in &assigned {
        let size = json_size(v);
        if size > MAX_VARIABLE_BYTES {
            return Err(EvalError::data_limit(format!(
                "The value assigned to the variable '{k}' is {size} bytes, more than the maximum of {MAX_VARIABLE_BYTES} bytes."
            )));
        }
        total += size;
        replaced += env.scope.get(k).map(|o| json_size(o) as u64).unwrap_or(0);
    }
    if total > MAX_VARIABLE_BYTES {
        return Err(EvalError::data_limit(format!(
            "The variables assigned by this state are {total} bytes in all, more than the maximum of {MAX_VARIABLE_BYTES} bytes."
        )));
    }
    let current = env.exec.variable_bytes.load(Ordering::Relaxed);
    if current + total as u64 - replaced.min(current) > MAX_EXECUTION_VARIABLE_BYTES {
        return Err(EvalError::data_limit(format!(
            "The variables of this execution would be more than the maximum of {MAX_EXECUTION_VARIABLE_BYTES} bytes in all."
        )));
    }
    Ok(assigned)
}
