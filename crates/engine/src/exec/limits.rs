//! Execution limits: the configured [`Limits`] and the payload size and nesting checks.

use super::failure::Failure;
use expressway_asl::depth::MAX_VALUE_DEPTH;
use expressway_asl::model::*;
use expressway_asl::template::json_size;
use serde_json::Value;
use std::time::Duration;

/// AWS Express limits, raisable by configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size of any state input/output and of the execution input, in UTF-8 bytes.
    pub max_payload_bytes: usize,
    /// Maximum execution duration (Express: 5 minutes).
    pub max_duration: Duration,
    /// Maximum number of log events an execution keeps (at its log level); more fails it with
    /// `States.DataLimitExceeded`. AWS caps a Standard execution's history at 25,000 events.
    pub max_events: usize,
    /// Budget of an execution's estimated live bytes: kept log events, Map items and results,
    /// iterations and branches in flight, Parallel branch outputs. More fails it with
    /// `States.DataLimitExceeded`; it also bounds how many Map iterations run at once.
    pub max_memory_bytes: usize,
}

/// Default of [`Limits::max_memory_bytes`]: 64 MiB.
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 64 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 262_144,
            max_duration: Duration::from_secs(300),
            max_events: 25_000,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
        }
    }
}

/// False for states whose output can only be a part of their (already size-checked) input.
pub(super) fn needs_size_check(state: &State) -> bool {
    if state.query_language == QueryLanguage::Jsonata {
        // without Output, a Pass, Choice, Wait or Succeed state passes its input on unchanged
        return state.output.is_some()
            || !matches!(
                state.kind,
                Kind::Pass(_) | Kind::Choice(_) | Kind::Wait(_) | Kind::Succeed
            );
    }
    match &state.kind {
        Kind::Choice(_) | Kind::Wait(_) | Kind::Succeed => false,
        Kind::Pass(p) => {
            p.parameters.is_some()
                || p.result.is_some()
                || matches!(p.result_path, ResultPath::At(_))
        }
        _ => true,
    }
}

/// Whether a value fits the payload limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fit {
    Fits,
    /// Nested deeper than [`MAX_VALUE_DEPTH`] arrays and objects.
    TooDeep,
    /// Serializes to more than the byte limit.
    TooLarge,
}

/// True when `v` nests at most [`MAX_VALUE_DEPTH`] arrays and objects (checked without recursion,
/// before anything recursive touches it).
pub(super) fn fits_depth(v: &Value) -> bool {
    expressway_asl::depth::value_depth(v, MAX_VALUE_DEPTH) <= MAX_VALUE_DEPTH
}

/// The failure of a state whose result nests deeper than [`MAX_VALUE_DEPTH`]: fatal, like the
/// payload size limit.
pub(super) fn too_deep(state: &str, variable: Option<&str>) -> Failure {
    let what = match variable {
        Some(v) => format!("assigned the variable '{v}' a value"),
        None => "returned a result".into(),
    };
    Failure {
        error: "States.DataLimitExceeded".into(),
        cause: Some(format!(
            "The state/task '{state}' {what} nested deeper than {MAX_VALUE_DEPTH} arrays/objects, the maximum nesting of a value."
        )),
        fatal: true,
        evaluation: None,
    }
}

/// Whether `v` nests at most [`MAX_VALUE_DEPTH`] levels and serializes to at most `limit` bytes,
/// in one walk.
///
/// A cheap upper bound (every string byte counted as a 6-byte escape) settles almost every case
/// without touching the bytes; only payloads near the limit are measured exactly, by serializing
/// into a counting sink (no allocation). The walk recurses, but never past the depth bound.
pub(super) fn fits(v: &Value, limit: usize) -> Fit {
    fn bound(v: &Value, budget: &mut isize, depth: usize) -> bool {
        match v {
            Value::Null | Value::Bool(_) => *budget -= 5,
            Value::Number(_) => *budget -= 32,
            Value::String(s) => *budget -= 6 * s.len() as isize + 2,
            Value::Array(a) => {
                if depth >= MAX_VALUE_DEPTH {
                    return false;
                }
                *budget -= 2 + a.len() as isize;
                for x in a {
                    if !bound(x, budget, depth + 1) {
                        return false;
                    }
                }
            }
            Value::Object(m) => {
                if depth >= MAX_VALUE_DEPTH {
                    return false;
                }
                *budget -= 2 + 2 * m.len() as isize;
                for (k, x) in m {
                    *budget -= 6 * k.len() as isize + 2;
                    if !bound(x, budget, depth + 1) {
                        return false;
                    }
                }
            }
        }
        true
    }
    let mut budget = limit as isize;
    if !bound(v, &mut budget, 0) {
        return Fit::TooDeep;
    }
    if budget >= 0 || json_size(v) <= limit {
        Fit::Fits
    } else {
        Fit::TooLarge
    }
}
