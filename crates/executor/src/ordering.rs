//! Which waiting records of a partition may start: the `--ordering` modes.
//!
//! * [`OrderingMode::Key`] (default, as BLUEPRINT.md promises "events with the same key run in
//!   order"): a record with key K starts only after every earlier record with key K on its
//!   partition has finished; records with other keys, and records without a key (a null Kafka
//!   key; an empty key is a key), run concurrently.
//! * [`OrderingMode::Partition`]: one execution at a time per partition, in offset order.
//! * [`OrderingMode::None`]: every record may start at once (bounded only by the in-flight
//!   limits).
//!
//! The semantics are those of Confluent's Parallel Consumer (KEY / PARTITION / UNORDERED). The
//! [`Sequencer`] keeps one queue per busy key instead of rescanning the backlog, so a record is
//! admitted and released in O(log n) however many keys wait. Ready records start lowest offset
//! first (the lowest unfinished offset is what holds the committed offset back).
//!
//! Waiting records count against the partition's backlog bounds and backpressure like any other
//! record: they are started in the offset tracker when received, so the stored offset never
//! passes them, and on revoke or shutdown they are dropped and redelivered to the next owner.

use rdkafka::message::{Message, OwnedMessage};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};

/// How executions of one partition are ordered (`serve --ordering`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrderingMode {
    /// Records with the same key run one after the other, in offset order (default).
    #[default]
    Key,
    /// One execution at a time per partition, in offset order.
    Partition,
    /// No ordering: records run concurrently.
    None,
}

impl OrderingMode {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderingMode::Key => "key",
            OrderingMode::Partition => "partition",
            OrderingMode::None => "none",
        }
    }
}

impl std::str::FromStr for OrderingMode {
    type Err = String;
    fn from_str(s: &str) -> Result<OrderingMode, String> {
        match s.to_ascii_lowercase().as_str() {
            "key" => Ok(OrderingMode::Key),
            "partition" => Ok(OrderingMode::Partition),
            "none" => Ok(OrderingMode::None),
            _ => Err(format!("unknown ordering '{s}' (key, partition, none)")),
        }
    }
}

impl std::fmt::Display for OrderingMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a started record holds on to until it finishes: the lane it keeps busy, if any.
/// Distinct keys share a lane only on a 64-bit hash collision, which serialises them (safe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Lane(u64);

/// The records of one partition that were received but not started yet.
#[derive(Debug)]
pub(crate) struct Sequencer {
    mode: OrderingMode,
    /// Records that may start now, by offset.
    ready: BTreeMap<i64, (OwnedMessage, Option<Lane>)>,
    /// Busy lanes (a record of the lane is ready or running), each with the records queued
    /// behind it in offset order.
    lanes: HashMap<Lane, VecDeque<OwnedMessage>>,
    /// Records held (ready or queued behind a lane).
    len: usize,
    /// Payload + key bytes held.
    bytes: usize,
}

impl Sequencer {
    pub(crate) fn new(mode: OrderingMode) -> Sequencer {
        Sequencer {
            mode,
            ready: BTreeMap::new(),
            lanes: HashMap::new(),
            len: 0,
            bytes: 0,
        }
    }

    /// Records held (ready or waiting for their lane).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    fn lane_of(&self, msg: &OwnedMessage) -> Option<Lane> {
        match self.mode {
            OrderingMode::None => None,
            OrderingMode::Partition => Some(Lane(0)),
            OrderingMode::Key => msg.key().map(|k| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                k.hash(&mut h);
                Lane(h.finish())
            }),
        }
    }

    /// Takes a received record (offsets arrive in increasing order per partition).
    pub(crate) fn push(&mut self, msg: OwnedMessage) {
        self.len += 1;
        self.bytes += record_size(&msg);
        let lane = self.lane_of(&msg);
        if let Some(l) = lane {
            if let Some(queue) = self.lanes.get_mut(&l) {
                queue.push_back(msg);
                return;
            }
            self.lanes.insert(l, VecDeque::new());
        }
        self.ready.insert(msg.offset(), (msg, lane));
    }

    /// The lowest-offset record that may start now, with the lane to hand back to
    /// [`Sequencer::finished`] when it is done.
    pub(crate) fn pop_ready(&mut self) -> Option<(OwnedMessage, Option<Lane>)> {
        let (_, (msg, lane)) = self.ready.pop_first()?;
        self.len -= 1;
        self.bytes -= record_size(&msg);
        Some((msg, lane))
    }

    /// A started record finished (or will never finish here): the next record of its lane, if
    /// any, becomes ready.
    pub(crate) fn finished(&mut self, lane: Option<Lane>) {
        let Some(l) = lane else { return };
        let Some(queue) = self.lanes.get_mut(&l) else {
            return;
        };
        match queue.pop_front() {
            Some(next) => {
                self.ready.insert(next.offset(), (next, Some(l)));
            }
            None => {
                self.lanes.remove(&l);
            }
        }
    }

    /// Keeps only the held records below offset `limit` (those a revoke or shutdown still runs:
    /// they sit behind a busy key, below records that already ran, so the committed offset
    /// cannot pass the finished work above them until they finish); the others are dropped and
    /// redelivered to the next owner.
    pub(crate) fn retain_below(&mut self, limit: i64) {
        let dropped: Vec<i64> = self.ready.range(limit..).map(|(o, _)| *o).collect();
        for o in dropped {
            if let Some((m, _)) = self.ready.remove(&o) {
                self.len -= 1;
                self.bytes -= record_size(&m);
            }
        }
        for q in self.lanes.values_mut() {
            while q.back().is_some_and(|m| m.offset() >= limit) {
                if let Some(m) = q.pop_back() {
                    self.len -= 1;
                    self.bytes -= record_size(&m);
                }
            }
        }
    }

    /// Drops every held record (revoke, shutdown): they are redelivered to the next owner.
    /// Lanes of running records stay busy until those finish.
    pub(crate) fn clear(&mut self) {
        self.ready.clear();
        for q in self.lanes.values_mut() {
            q.clear();
        }
        self.len = 0;
        self.bytes = 0;
    }
}

fn record_size(m: &OwnedMessage) -> usize {
    m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rdkafka::Timestamp;

    fn rec(offset: i64, key: Option<&str>) -> OwnedMessage {
        OwnedMessage::new(
            Some(b"{}".to_vec()),
            key.map(|k| k.as_bytes().to_vec()),
            "t".into(),
            Timestamp::NotAvailable,
            0,
            offset,
            None,
        )
    }

    fn offsets_ready(s: &mut Sequencer) -> Vec<(i64, Option<Lane>)> {
        let mut out = Vec::new();
        while let Some((m, l)) = s.pop_ready() {
            out.push((m.offset(), l));
        }
        out
    }

    #[test]
    fn same_key_waits_for_the_earlier_record_other_keys_and_keyless_do_not() {
        let mut s = Sequencer::new(OrderingMode::Key);
        s.push(rec(0, Some("a")));
        s.push(rec(1, Some("a")));
        s.push(rec(2, Some("b")));
        s.push(rec(3, None));
        s.push(rec(4, None));
        let first = offsets_ready(&mut s);
        assert_eq!(
            first.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![0, 2, 3, 4]
        );
        assert_eq!(s.len(), 1, "offset 1 waits behind offset 0");
        // Keyless and other-key completions release nothing.
        s.finished(first[1].1);
        s.finished(first[2].1);
        assert!(s.pop_ready().is_none());
        s.finished(first[0].1);
        let (m, _) = s.pop_ready().unwrap();
        assert_eq!(m.offset(), 1);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn an_empty_key_is_a_key() {
        let mut s = Sequencer::new(OrderingMode::Key);
        s.push(rec(0, Some("")));
        s.push(rec(1, Some("")));
        assert_eq!(offsets_ready(&mut s).len(), 1);
    }

    #[test]
    fn partition_mode_runs_one_at_a_time_and_none_runs_all() {
        let mut p = Sequencer::new(OrderingMode::Partition);
        let mut n = Sequencer::new(OrderingMode::None);
        for (i, k) in [Some("a"), Some("b"), None].into_iter().enumerate() {
            p.push(rec(i as i64, k));
            n.push(rec(i as i64, k));
        }
        let (m, lane) = p.pop_ready().unwrap();
        assert_eq!(m.offset(), 0);
        assert!(p.pop_ready().is_none());
        p.finished(lane);
        assert_eq!(p.pop_ready().unwrap().0.offset(), 1);
        assert_eq!(offsets_ready(&mut n).len(), 3);
    }

    #[test]
    fn clear_drops_held_records_and_keeps_running_lanes_busy() {
        let mut s = Sequencer::new(OrderingMode::Key);
        s.push(rec(0, Some("a")));
        let (_, lane) = s.pop_ready().unwrap();
        s.push(rec(1, Some("a")));
        s.clear();
        assert_eq!((s.len(), s.bytes()), (0, 0));
        // A record of the same key received after the clear (redelivery on a new assignment
        // uses a new sequencer; within one it must still wait for the running one).
        s.push(rec(2, Some("a")));
        assert!(s.pop_ready().is_none());
        s.finished(lane);
        assert_eq!(s.pop_ready().unwrap().0.offset(), 2);
    }

    proptest! {
        /// Against a direct model: with records finishing in arbitrary order, a record starts
        /// only when every earlier record of its key has finished, every record starts
        /// eventually, and keyless records are never held back.
        #[test]
        fn key_order_matches_the_model(
            keys in prop::collection::vec(prop::option::of(0u8..4), 1..60),
            picks in prop::collection::vec(any::<prop::sample::Index>(), 0..200),
        ) {
            let mut s = Sequencer::new(OrderingMode::Key);
            for (i, k) in keys.iter().enumerate() {
                s.push(rec(i as i64, k.map(|k| ["a", "b", "c", "d"][k as usize])));
            }
            let mut finished = vec![false; keys.len()];
            let mut started = vec![false; keys.len()];
            let mut running: Vec<(i64, Option<Lane>)> = Vec::new();
            let admit = |ready: Vec<(i64, Option<Lane>)>,
                             finished: &[bool],
                             started: &mut [bool],
                             running: &mut Vec<(i64, Option<Lane>)>|
             -> Result<(), TestCaseError> {
                for (o, lane) in ready {
                    let ou = o as usize;
                    prop_assert!(!started[ou], "offset {o} started twice");
                    if let Some(k) = keys[ou] {
                        for e in 0..ou {
                            if keys[e] == Some(k) {
                                prop_assert!(finished[e], "offset {o} started before {e} finished");
                            }
                        }
                    }
                    started[ou] = true;
                    running.push((o, lane));
                }
                Ok(())
            };
            admit(offsets_ready(&mut s), &finished, &mut started, &mut running)?;
            for (o, k) in keys.iter().enumerate() {
                if k.is_none() {
                    prop_assert!(started[o], "keyless offset {o} was held back");
                }
            }
            let mut picks = picks.into_iter();
            while !running.is_empty() {
                let i = picks.next().map_or(0, |p| p.index(running.len()));
                let (o, lane) = running.swap_remove(i);
                finished[o as usize] = true;
                s.finished(lane);
                admit(offsets_ready(&mut s), &finished, &mut started, &mut running)?;
            }
            prop_assert!(started.iter().all(|s| *s), "every record started");
            prop_assert_eq!(s.len(), 0);
        }
    }
}
