//! Nesting bounds for everything a definition (or a value built at run time) can nest.
//!
//! Every recursive parser and walker that external input reaches is bounded here, so a hostile or
//! careless definition gets a diagnostic instead of a stack overflow (which aborts the process, not
//! just the request):
//!
//! - definition JSON: [`MAX_JSON_DEPTH`] nested arrays/objects, Jackson's default
//!   (`StreamReadConstraints.DEFAULT_MAX_DEPTH`, 1000 since Jackson 2.15), with Jackson's message;
//! - JSONPath: [`MAX_PATH_DEPTH`] nested filters, parentheses and `!`, and [`MAX_PATH_SEGMENTS`]
//!   segments (the evaluator recurses once per segment);
//! - JSONata: the parser's own bound (`expressway_jsonata::MAX_PARSE_DEPTH`);
//! - intrinsic functions: 10 nested calls (AWS's limit, in `intrinsic.rs`).
//!
//! Walkers over already-bounded trees (validation, the loader, templates, Choice rules) run on a
//! stack of at least [`STACK_RED_ZONE`] bytes ([`with_stack`]), so a legitimate definition just under
//! the bounds also works on small thread stacks (tokio's workers have 2 MiB).

use std::fmt;

/// Maximum nesting of arrays and objects in a definition (Jackson's default).
pub const MAX_JSON_DEPTH: usize = 1000;

/// Maximum nesting of filters, parentheses and `!` in one JSONPath.
pub const MAX_PATH_DEPTH: usize = 100;

/// Maximum number of segments (`.a`, `[0]`, `[?(...)]`, ...) in one JSONPath, filters included.
pub const MAX_PATH_SEGMENTS: usize = 1000;

/// Maximum nesting of arrays and objects in a value an execution builds at run time (a state's
/// output, a variable, the execution input). Values reach recursive code (clone, drop,
/// serialization, JSONPath and template evaluation) on tokio's 2 MiB worker stacks, so a
/// definition that nests a little more on every loop iteration (a Pass state wrapping `$` in a
/// Choice loop, a JSONata `$reduce` wrapping its accumulator) must stop here with a States error
/// instead of overflowing the stack. Above every static source of nesting: start events nest at
/// most 128 levels (serde_json's bound) and definitions 1000 (Jackson's).
pub const MAX_VALUE_DEPTH: usize = 1000;

/// Stack a bounded walk may need at most; [`with_stack`] makes sure this much is left.
pub const STACK_RED_ZONE: usize = 4 * 1024 * 1024;

/// Size of the stack segment [`with_stack`] allocates when less than the red zone is left.
const STACK_SEGMENT: usize = 16 * 1024 * 1024;

/// Runs `f` with at least [`STACK_RED_ZONE`] bytes of stack: on the current stack when that much is
/// left, else on a freshly allocated segment. For the entry points of bounded recursive walks.
pub fn with_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(STACK_RED_ZONE, STACK_SEGMENT, f)
}

/// A nesting bound was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("nested deeper than {max} levels")]
pub struct TooDeep {
    /// The bound that was exceeded.
    pub max: usize,
}

/// The nesting depth of a recursive parser: [`Depth::enter`] on the way down (fails beyond the
/// bound), [`Depth::leave`] on the way back up.
#[derive(Clone, Copy)]
pub(crate) struct Depth {
    current: usize,
    max: usize,
}

impl Depth {
    /// A counter at depth 0 with bound `max`.
    pub(crate) fn new(max: usize) -> Depth {
        Depth { current: 0, max }
    }

    /// One level down; `Err` when that passes the bound (the level is not entered then).
    pub(crate) fn enter(&mut self) -> Result<(), TooDeep> {
        if self.current >= self.max {
            return Err(TooDeep { max: self.max });
        }
        self.current += 1;
        Ok(())
    }

    /// One level back up.
    pub(crate) fn leave(&mut self) {
        self.current = self.current.saturating_sub(1);
    }
}

impl fmt::Debug for Depth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Depth({}/{})", self.current, self.max)
    }
}

/// The deepest nesting of arrays and objects in JSON text (strings skipped; the text need not be
/// valid). Iterative and allocation-free: the cheap pre-check before a recursive parse.
pub fn json_text_depth(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut in_string = false;
    let mut escaped = false;
    for &b in text.as_bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The nesting depth of a value (a scalar is 0, `[]` is 1), computed without recursion; stops
/// counting once it passes `limit` (returns `limit + 1` then).
pub fn value_depth(v: &serde_json::Value, limit: usize) -> usize {
    use serde_json::Value;
    let mut max = 0usize;
    let mut stack: Vec<(&Value, usize)> = vec![(v, 1)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(a) => {
                if d > limit {
                    return limit + 1;
                }
                max = max.max(d);
                stack.extend(a.iter().map(|c| (c, d + 1)));
            }
            Value::Object(m) => {
                if d > limit {
                    return limit + 1;
                }
                max = max.max(d);
                stack.extend(m.values().map(|c| (c, d + 1)));
            }
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn depth_counter_stops_at_the_bound() {
        let mut d = Depth::new(2);
        assert_eq!(d.enter(), Ok(()));
        assert_eq!(d.enter(), Ok(()));
        assert_eq!(d.enter(), Err(TooDeep { max: 2 }));
        d.leave();
        assert_eq!(d.enter(), Ok(()));
    }

    #[test]
    fn text_depth_skips_strings() {
        assert_eq!(json_text_depth(r#"{"a": [1, {"b": "[[[\"]]]"}]}"#), 3);
        assert_eq!(json_text_depth("1"), 0);
        assert_eq!(json_text_depth(&"[".repeat(100_000)), 100_000);
    }

    #[test]
    fn value_depth_counts_containers() {
        assert_eq!(value_depth(&json!(1), 10), 0);
        assert_eq!(value_depth(&json!([]), 10), 1);
        assert_eq!(value_depth(&json!({"a": [1, {"b": {}}]}), 10), 4);
        assert_eq!(value_depth(&json!({"a": [1, {"b": {}}]}), 2), 3);
    }
}
