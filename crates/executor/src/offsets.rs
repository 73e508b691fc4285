//! Per-partition offset tracking for at-least-once delivery with concurrent executions.
//!
//! Records of one partition are *started* in increasing offset order (Kafka delivers them that
//! way; offsets may have gaps, e.g. transaction markers or compaction) and *completed* in any
//! order. Only the contiguous completed prefix of the started offsets may be committed.
//!
//! **Invariant.** Let `s_1 < s_2 < ... < s_n` be the started offsets. After any sequence of
//! operations, [`OffsetTracker::next_to_store`] is `Some(s_k + 1)` where `k` is the largest index
//! such that `s_1..=s_k` are all completed, or `None` when `s_1` is not completed yet (or nothing
//! was started). Consequently the stored offset never passes an offset that is not completed,
//! and it never decreases.

use std::collections::VecDeque;

/// Why a tracker operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrackerError {
    /// `start` was called with an offset not above the last started one.
    #[error("offset {offset} started out of order (last started {last})")]
    NotIncreasing {
        /// The refused offset.
        offset: i64,
        /// The last started offset.
        last: i64,
    },
    /// `complete` was called for an offset that is not in flight.
    #[error("offset {0} is not in flight")]
    NotInFlight(i64),
}

/// Tracks started and completed offsets of one partition; see the module docs for the invariant.
#[derive(Debug, Default, Clone)]
pub struct OffsetTracker {
    /// Started offsets not yet popped off the completed prefix, in increasing order, with
    /// whether each has completed. The front is never completed (it is popped eagerly).
    window: VecDeque<(i64, bool)>,
    /// Last offset ever started.
    last_started: Option<i64>,
    /// Next offset to store (`last offset of the completed prefix + 1`).
    next: Option<i64>,
    /// Completed offsets still inside `window`.
    completed_in_window: usize,
}

impl OffsetTracker {
    /// An empty tracker.
    pub fn new() -> OffsetTracker {
        OffsetTracker::default()
    }

    /// Records that `offset` started. Offsets must be started in increasing order.
    pub fn start(&mut self, offset: i64) -> Result<(), TrackerError> {
        if let Some(last) = self.last_started {
            if offset <= last {
                return Err(TrackerError::NotIncreasing { offset, last });
            }
        }
        self.last_started = Some(offset);
        self.window.push_back((offset, false));
        Ok(())
    }

    /// Records that `offset` completed. Returns the new [`Self::next_to_store`] when it advanced.
    pub fn complete(&mut self, offset: i64) -> Result<Option<i64>, TrackerError> {
        let idx = self
            .window
            .binary_search_by_key(&offset, |(o, _)| *o)
            .map_err(|_| TrackerError::NotInFlight(offset))?;
        if self.window[idx].1 {
            return Err(TrackerError::NotInFlight(offset));
        }
        self.window[idx].1 = true;
        self.completed_in_window += 1;
        let mut advanced = None;
        while let Some(&(o, true)) = self.window.front() {
            self.window.pop_front();
            self.completed_in_window -= 1;
            advanced = Some(o + 1);
        }
        if advanced.is_some() {
            self.next = advanced;
        }
        Ok(advanced)
    }

    /// The offset to store (next offset to read): end of the contiguous completed prefix.
    pub fn next_to_store(&self) -> Option<i64> {
        self.next
    }

    /// Started offsets not completed yet.
    pub fn in_flight(&self) -> usize {
        self.window.len() - self.completed_in_window
    }

    /// Completed offsets above the first pending one (not part of the completed prefix yet),
    /// in increasing order.
    pub fn completed_above_prefix(&self) -> impl Iterator<Item = i64> + '_ {
        self.window
            .iter()
            .filter(|(_, done)| *done)
            .map(|(o, _)| *o)
    }

    /// The lowest started offset that has not completed.
    pub fn first_pending(&self) -> Option<i64> {
        self.window.front().map(|(o, _)| *o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn completed_offsets_above_a_hole_are_listed() {
        let mut t = OffsetTracker::new();
        for o in [3, 4, 5, 7, 8] {
            t.start(o).expect("increasing");
        }
        t.complete(4).expect("in flight");
        t.complete(7).expect("in flight");
        assert_eq!(t.completed_above_prefix().collect::<Vec<_>>(), vec![4, 7]);
        t.complete(3).expect("in flight");
        assert_eq!(t.first_pending(), Some(5));
        assert_eq!(t.completed_above_prefix().collect::<Vec<_>>(), vec![7]);
    }

    #[test]
    fn in_order_completion_advances_each_time() {
        let mut t = OffsetTracker::new();
        assert_eq!(t.next_to_store(), None);
        for o in 0..3 {
            t.start(o).expect("increasing");
        }
        assert_eq!(t.in_flight(), 3);
        assert_eq!(t.complete(0), Ok(Some(1)));
        assert_eq!(t.complete(1), Ok(Some(2)));
        assert_eq!(t.complete(2), Ok(Some(3)));
        assert_eq!(t.in_flight(), 0);
        assert_eq!(t.next_to_store(), Some(3));
    }

    #[test]
    fn out_of_order_completion_waits_for_the_head() {
        let mut t = OffsetTracker::new();
        for o in 10..15 {
            t.start(o).expect("increasing");
        }
        assert_eq!(t.complete(12), Ok(None));
        assert_eq!(t.complete(14), Ok(None));
        assert_eq!(t.complete(11), Ok(None));
        assert_eq!(t.next_to_store(), None, "10 is still running");
        assert_eq!(t.first_pending(), Some(10));
        assert_eq!(t.complete(10), Ok(Some(13)));
        assert_eq!(t.first_pending(), Some(13));
        assert_eq!(t.complete(13), Ok(Some(15)));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn gaps_in_offsets_are_skipped() {
        let mut t = OffsetTracker::new();
        t.start(3).expect("ok");
        t.start(7).expect("ok");
        assert_eq!(t.complete(3), Ok(Some(4)));
        assert_eq!(t.complete(7), Ok(Some(8)));
    }

    #[test]
    fn refuses_bad_calls() {
        let mut t = OffsetTracker::new();
        t.start(5).expect("ok");
        assert_eq!(
            t.start(5),
            Err(TrackerError::NotIncreasing { offset: 5, last: 5 })
        );
        assert_eq!(t.complete(4), Err(TrackerError::NotInFlight(4)));
        t.start(6).expect("ok");
        assert_eq!(t.complete(6), Ok(None));
        assert_eq!(t.complete(6), Err(TrackerError::NotInFlight(6)));
        assert_eq!(t.complete(5), Ok(Some(7)));
        assert_eq!(t.complete(5), Err(TrackerError::NotInFlight(5)));
    }

    /// Started offsets (increasing, with gaps) and a completion order (a permutation).
    fn scenario() -> impl Strategy<Value = (Vec<i64>, Vec<usize>)> {
        prop::collection::vec(1i64..4, 0..60).prop_flat_map(|gaps| {
            let offsets: Vec<i64> = gaps
                .iter()
                .scan(-1i64, |acc, g| {
                    *acc += g;
                    Some(*acc)
                })
                .collect();
            let order: Vec<usize> = (0..offsets.len()).collect();
            (Just(offsets), Just(order).prop_shuffle())
        })
    }

    proptest! {
        /// The tracker agrees with a direct model of the invariant after every step, while
        /// starts and completions interleave.
        #[test]
        fn matches_the_model((offsets, order) in scenario(), interleave in 0usize..60) {
            let mut t = OffsetTracker::new();
            let mut started = 0usize;
            let mut done = vec![false; offsets.len()];
            let mut last_next: Option<i64> = None;
            for (step, &i) in order.iter().enumerate() {
                // Start everything up to i (and a few more, depending on `interleave`).
                let want = (i + 1).max((step + interleave).min(offsets.len()));
                while started < want {
                    t.start(offsets[started]).expect("increasing");
                    started += 1;
                }
                t.complete(offsets[i]).expect("in flight");
                done[i] = true;
                // Model: end of the contiguous completed prefix of the started offsets.
                let k = done[..started].iter().take_while(|d| **d).count();
                let model = if k == 0 { None } else { Some(offsets[k - 1] + 1) };
                prop_assert_eq!(t.next_to_store(), model);
                prop_assert_eq!(t.in_flight(), started - done[..started].iter().filter(|d| **d).count());
                // Never passes an incomplete offset, never goes back.
                if let (Some(n), Some(p)) = (t.next_to_store(), t.first_pending()) {
                    prop_assert!(n <= p);
                }
                prop_assert!(t.next_to_store() >= last_next);
                last_next = t.next_to_store();
            }
            if !offsets.is_empty() {
                prop_assert_eq!(t.next_to_store(), Some(offsets[offsets.len() - 1] + 1));
                prop_assert_eq!(t.in_flight(), 0);
            }
        }
    }
}
