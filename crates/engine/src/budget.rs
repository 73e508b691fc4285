//! Per-execution budgets: how many log events an execution may keep and how many bytes of live
//! state (kept events, Map items and results, iterations and branches in flight, Parallel branch
//! outputs) it may hold, so that one runaway execution fails instead of exhausting its pod.
//!
//! Bytes are *estimates* of heap use ([`estimate_bytes`]): cheap enough to compute for every kept
//! event and every Map result, and proportional to what the values really occupy.

use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which budget an execution exceeded (the `budget` label of
/// `expressway_execution_budget_exceeded_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// More log events kept than [`crate::Limits::max_events`].
    Events,
    /// More estimated live bytes than [`crate::Limits::max_memory_bytes`].
    Memory,
}

impl Budget {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Budget::Events => "events",
            Budget::Memory => "memory",
        }
    }
}

/// What one Map iteration or Parallel branch in flight costs besides its input: its boxed
/// interpreter futures, variable scope and bookkeeping (measured order of magnitude).
pub(crate) const IN_FLIGHT_COST: u64 = 4 * 1024;

/// What one kept event costs besides its details (the `Event` record and its slot).
pub(crate) const EVENT_COST: u64 = 64;

/// Size of a `serde_json::Value` slot (inline in its parent array or map entry).
const SLOT: u64 = std::mem::size_of::<Value>() as u64;

/// Estimated heap bytes of a value: a slot per node, string bytes, a map entry's key and hash.
/// Iterative, so arbitrarily deep values cannot overflow the stack.
pub(crate) fn estimate_bytes(v: &Value) -> u64 {
    let mut total = 0u64;
    let mut stack: Vec<&Value> = Vec::new();
    let mut next = Some(v);
    while let Some(v) = next.take().or_else(|| stack.pop()) {
        total += SLOT;
        match v {
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
            Value::String(s) => total += s.len() as u64,
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(m) => {
                for (k, x) in m {
                    // the key's String header and bytes, the entry's hash and index slot
                    total += 24 + k.len() as u64 + 16;
                    stack.push(x);
                }
            }
        }
    }
    total
}

/// Live bytes held by one execution, shared by its branches and iterations.
#[derive(Debug, Default)]
pub(crate) struct LiveBytes(AtomicU64);

impl LiveBytes {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Adds `bytes` until the returned guard is dropped; `Err` (nothing held) when that would
    /// bring the total with `also` (e.g. the kept events' bytes) above `limit`.
    pub(crate) fn charge(&self, bytes: u64, also: u64, limit: u64) -> Result<Charge<'_>, u64> {
        let total = self.0.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total.saturating_add(also) > limit {
            self.0.fetch_sub(bytes, Ordering::Relaxed);
            return Err(total.saturating_add(also));
        }
        Ok(Charge { live: self, bytes })
    }
}

/// Bytes charged to an execution's [`LiveBytes`], released on drop (also when the future
/// holding it is cancelled).
#[derive(Debug)]
pub(crate) struct Charge<'a> {
    live: &'a LiveBytes,
    bytes: u64,
}

impl Charge<'_> {
    /// Adds `bytes` to this charge (same check as [`LiveBytes::charge`]).
    pub(crate) fn grow(&mut self, bytes: u64, also: u64, limit: u64) -> Result<(), u64> {
        let total = self.live.0.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.bytes += bytes;
        if total.saturating_add(also) > limit {
            return Err(total.saturating_add(also));
        }
        Ok(())
    }
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        self.live.0.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn estimates_count_slots_strings_and_keys() {
        assert_eq!(estimate_bytes(&json!(null)), SLOT);
        assert_eq!(estimate_bytes(&json!("abcd")), SLOT + 4);
        assert_eq!(estimate_bytes(&json!([1, 2])), 3 * SLOT);
        assert_eq!(estimate_bytes(&json!({"ab": 1})), 2 * SLOT + 24 + 2 + 16);
    }

    #[test]
    fn deep_values_are_estimated_without_recursion() {
        let mut v = json!(0);
        for _ in 0..200_000 {
            v = Value::Array(vec![v]);
        }
        assert_eq!(estimate_bytes(&v), 200_001 * SLOT);
        // dropping it is recursive in serde_json: take it apart iteratively
        while let Value::Array(mut a) = v {
            v = a.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn charges_are_refused_over_the_limit_and_released_on_drop() {
        let live = LiveBytes::default();
        let a = live.charge(60, 0, 100).expect("fits");
        assert_eq!(live.charge(30, 20, 100).err(), Some(110));
        assert_eq!(live.get(), 60, "a refused charge holds nothing");
        let mut b = live.charge(30, 0, 100).expect("fits");
        assert_eq!(b.grow(20, 0, 100), Err(110));
        drop(a);
        drop(b);
        assert_eq!(live.get(), 0);
    }
}
