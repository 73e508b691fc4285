//! Cooperative scheduling: an execution gives control back to its runtime regularly, so that a
//! Pass/Choice loop (which never awaits anything) cannot starve timers, signals, health checks or
//! other executions on the same worker thread, and can be timed out and cancelled.
//!
//! The interpreter counts units of work (state transitions, retry attempts, Map results) and
//! yields once every [`YIELD_EVERY`] of them. Executions with fewer transitions never yield.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

/// Units of work between two yields. A transition costs ~0.7 µs in the engine benchmark (logs
/// OFF), so an execution runs ~25 µs at a time, well inside tokio's guidance of 10-100 µs
/// between awaits; the yield itself costs one re-poll of the execution's future.
pub(crate) const YIELD_EVERY: u64 = 32;

/// Counts work and says when to yield. Shared by an execution's branches and iterations (they
/// run on one task, so one counter paces them all).
#[derive(Debug, Default)]
pub(crate) struct Pacer(AtomicU64);

impl Pacer {
    /// Records one unit of work; `Some(yield)` every [`YIELD_EVERY`] units.
    pub(crate) fn tick(&self) -> Option<YieldNow> {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        n.is_multiple_of(YIELD_EVERY).then(YieldNow::default)
    }
}

/// Completes on its second poll, waking its task from the first: the task goes to the back of
/// the runtime's queue. Works on any executor (tokio, `futures::executor`).
#[derive(Debug, Default)]
pub(crate) struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_once_every_n_ticks() {
        let p = Pacer::default();
        let yields = (0..YIELD_EVERY * 3).filter(|_| p.tick().is_some()).count();
        assert_eq!(yields, 3);
    }

    #[test]
    fn yield_now_is_pending_once_and_wakes_its_task() {
        let mut y = YieldNow::default();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut y).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut y).poll(&mut cx).is_ready());
    }
}
