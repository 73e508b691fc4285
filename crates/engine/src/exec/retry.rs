//! Retry and Catch: matching a failure against a state's retriers and catchers.

use super::failure::Failure;
use super::Exec;
use crate::events::Details;
use expressway_asl::model::*;
use serde_json::Value;
use std::time::Duration;

pub(super) enum Decision {
    Retry(Duration),
    Catch(usize),
    Fail,
}

fn error_matches(names: &[String], error: &str) -> bool {
    names.iter().any(|n| {
        n == error
            || (n == "States.ALL"
                && error != "States.Runtime"
                && error != "States.DataLimitExceeded")
            || (n == "States.TaskFailed"
                && error != "States.Timeout"
                && !error.starts_with("States."))
    })
}

impl Exec<'_> {
    pub(super) fn decide(&self, work: &Work, counters: &mut [u32], f: &Failure) -> Decision {
        if f.fatal {
            return Decision::Fail;
        }
        for (i, r) in work.retry.iter().enumerate() {
            if error_matches(&r.error_equals, &f.error) {
                if counters[i] < r.max_attempts {
                    let mut delay = r.interval_seconds * r.backoff_rate.powi(counters[i] as i32);
                    if let Some(max) = r.max_delay_seconds {
                        delay = delay.min(max);
                    }
                    if r.jitter_full {
                        let unit = (self.rt.entropy.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                        delay *= unit;
                    }
                    counters[i] += 1;
                    return Decision::Retry(Duration::from_secs_f64(delay.max(0.0)));
                }
                break;
            }
        }
        for (i, c) in work.catch.iter().enumerate() {
            if error_matches(&c.error_equals, &f.error) {
                return Decision::Catch(i);
            }
        }
        Decision::Fail
    }

    /// After a failed Parallel/Map attempt: waits and returns `None` to retry, or emits the state's
    /// `...StateFailed` event and returns the outcome (caught or not).
    pub(super) async fn after_failure(
        &self,
        work: &Work,
        counters: &mut [u32],
        f: Failure,
        failed_event: &'static str,
        prev: &mut u64,
    ) -> Option<Result<Value, (Failure, Option<usize>)>> {
        let caught = match self.decide(work, counters, &f) {
            Decision::Retry(d) => {
                if !d.is_zero() {
                    self.rt.clock.sleep(d).await;
                }
                self.pace().await;
                return None;
            }
            Decision::Catch(i) => Some(i),
            Decision::Fail => None,
        };
        *prev = self
            .log
            .emit(failed_event, *prev, || self.now(), Details::Empty);
        Some(Err((f, caught)))
    }
}
