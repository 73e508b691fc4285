//! [`CallbackHub`]: matches callbacks to waiting tasks, whichever comes first.
//!
//! Runtime-agnostic (a mutex, a futures channel per listener, the injected [`Clock`]); the
//! transport (a Kafka topic, an HTTP call) lives elsewhere and calls [`CallbackHub::deliver`].
//!
//! * [`CallbackHub::listen`] mints the key's token with a pluggable [`TokenMinter`] and
//!   registers a listener; its stream yields the signals delivered for the token, first those
//!   that arrived before anyone listened (the early buffer). Dropping the stream unregisters.
//! * [`CallbackHub::deliver`] hands a signal to every listener of the token, or, when nobody
//!   listens yet, keeps it in the early buffer, bounded by count (the oldest entry makes room)
//!   and by age on the clock ([`HubLimits`]). It reports what it did ([`Delivery`]); entries
//!   that leave the buffer unclaimed are counted in [`CallbackHub::take_dropped`].
//!
//! Several listeners of one token (the same execution running twice in a pod, e.g. a re-run
//! after a rebalance while the abandoned run still waits) all receive each signal.

use crate::callbacks::{CallbackKey, CallbackListener, CallbackSignal, Callbacks};
use crate::runtime::{Clock, TaskError};
use futures::channel::mpsc;
use futures::Stream;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

/// Mints the task token of a waiting task attempt.
pub trait TokenMinter: Send + Sync {
    /// The token for `key`: deterministic (the same key gives the same token), so a re-run
    /// of the execution waits for the token a callback may already carry. An error fails the
    /// task with it.
    fn mint(&self, key: &CallbackKey) -> Result<String, TaskError>;
}

/// Bounds of the early buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubLimits {
    /// Signals kept for tokens nobody listens to (all tokens together); when full, the oldest
    /// entry makes room. 0 disables the buffer.
    pub max_buffered: usize,
    /// How long a signal waits for its listener: the execution time limit (a listener that
    /// has not come by then belongs to an execution that has ended).
    pub max_age: Duration,
}

impl Default for HubLimits {
    fn default() -> HubLimits {
        HubLimits {
            max_buffered: 10_000,
            max_age: crate::Limits::default().max_duration,
        }
    }
}

/// What [`CallbackHub::deliver`] did with a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to the token's listeners (how many).
    Delivered(usize),
    /// Nobody listens to the token: kept in the early buffer.
    Buffered,
    /// Nobody listens, and the early buffer is disabled (`max_buffered` 0).
    Dropped,
}

/// Signals that left the early buffer without a listener (since the last
/// [`CallbackHub::take_dropped`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Older than `max_age`.
    pub expired: u64,
    /// Pushed out by newer signals when the buffer was full.
    pub evicted: u64,
}

/// What [`CallbackHub::listen`] armed.
#[derive(Debug)]
pub struct Armed {
    /// The listener to hand to the engine.
    pub listener: CallbackListener,
    /// Kinds ([`signal_kind`]) of the buffered signals replayed into it, oldest first.
    pub replayed: Vec<&'static str>,
}

/// `success`, `failure` or `heartbeat`.
pub fn signal_kind(signal: &CallbackSignal) -> &'static str {
    match signal {
        CallbackSignal::Success(_) => "success",
        CallbackSignal::Failure(_) => "failure",
        CallbackSignal::Heartbeat => "heartbeat",
    }
}

struct Waiter {
    id: u64,
    tx: mpsc::UnboundedSender<CallbackSignal>,
}

struct Held {
    seq: u64,
    signal: CallbackSignal,
}

#[derive(Default)]
struct State {
    next_id: u64,
    next_seq: u64,
    waiters: HashMap<String, Vec<Waiter>>,
    /// Early signals per token, oldest first.
    buffer: HashMap<String, VecDeque<Held>>,
    /// Every buffered signal in arrival order: (arrival ms, seq, token). Entries of signals
    /// already replayed stay until they reach the front (skipped there).
    order: VecDeque<(i64, u64, String)>,
    buffered: usize,
    dropped: Dropped,
}

impl State {
    /// Removes the buffered signal `(seq, token)` if it is still held; returns whether it was.
    fn remove_front(&mut self, seq: u64, token: &str) -> bool {
        let Some(q) = self.buffer.get_mut(token) else {
            return false;
        };
        if q.front().map(|h| h.seq) != Some(seq) {
            return false;
        }
        q.pop_front();
        if q.is_empty() {
            self.buffer.remove(token);
        }
        self.buffered -= 1;
        true
    }

    fn prune(&mut self, now_ms: i64, limits: &HubLimits) {
        let max_age_ms = i64::try_from(limits.max_age.as_millis()).unwrap_or(i64::MAX);
        let horizon = now_ms.saturating_sub(max_age_ms);
        while self.order.front().is_some_and(|(at, _, _)| *at <= horizon) {
            let Some((_, seq, token)) = self.order.pop_front() else {
                break;
            };
            if self.remove_front(seq, &token) {
                self.dropped.expired += 1;
            }
        }
        while self.buffered > limits.max_buffered {
            let Some((_, seq, token)) = self.order.pop_front() else {
                break;
            };
            if self.remove_front(seq, &token) {
                self.dropped.evicted += 1;
            }
        }
        // Replayed entries are skipped lazily; keep the queue from growing past the live ones.
        if self.order.len() > 2 * self.buffered + 1024 {
            let buffer = &self.buffer;
            self.order.retain(|(_, seq, token)| {
                buffer
                    .get(token)
                    .is_some_and(|q| q.iter().any(|h| h.seq == *seq))
            });
        }
    }
}

/// Matches callbacks to listeners; see the module documentation.
pub struct CallbackHub {
    clock: Arc<dyn Clock>,
    limits: HubLimits,
    state: Mutex<State>,
}

impl std::fmt::Debug for CallbackHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackHub")
            .field("limits", &self.limits)
            .field("waiting", &self.waiting())
            .field("buffered", &self.buffered())
            .finish()
    }
}

impl CallbackHub {
    /// A hub measuring buffer ages on `clock`.
    pub fn new(clock: Arc<dyn Clock>, limits: HubLimits) -> Arc<CallbackHub> {
        Arc::new(CallbackHub {
            clock,
            limits,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned lock still holds consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bounds of the early buffer.
    pub fn limits(&self) -> HubLimits {
        self.limits
    }

    /// Mints `key`'s token with `minter` and starts listening for it.
    pub fn listen(
        self: &Arc<Self>,
        key: &CallbackKey,
        minter: &dyn TokenMinter,
    ) -> Result<Armed, TaskError> {
        let token = minter.mint(key)?;
        Ok(self.listen_token(token))
    }

    /// Starts listening for `token`: buffered signals for it are replayed first (and leave
    /// the buffer).
    pub fn listen_token(self: &Arc<Self>, token: String) -> Armed {
        let (tx, rx) = mpsc::unbounded();
        let now = self.clock.now_millis();
        let mut st = self.lock();
        st.prune(now, &self.limits);
        let mut replayed = Vec::new();
        if let Some(held) = st.buffer.remove(&token) {
            st.buffered -= held.len();
            for h in held {
                replayed.push(signal_kind(&h.signal));
                // The receiver is alive (held below), so this cannot fail.
                let _ = tx.unbounded_send(h.signal);
            }
        }
        st.next_id += 1;
        let id = st.next_id;
        st.waiters
            .entry(token.clone())
            .or_default()
            .push(Waiter { id, tx });
        drop(st);
        let registration = Registration {
            hub: self.clone(),
            token: token.clone(),
            id,
            rx,
        };
        Armed {
            listener: CallbackListener {
                token,
                signals: Box::pin(registration),
            },
            replayed,
        }
    }

    /// Hands `signal` to `token`'s listeners, or buffers it when there are none.
    pub fn deliver(&self, token: &str, signal: CallbackSignal) -> Delivery {
        let now = self.clock.now_millis();
        let mut st = self.lock();
        st.prune(now, &self.limits);
        if let Some(waiters) = st.waiters.get_mut(token) {
            waiters.retain(|w| !w.tx.is_closed());
            let mut sent = 0;
            for w in waiters.iter() {
                if w.tx.unbounded_send(signal.clone()).is_ok() {
                    sent += 1;
                }
            }
            if waiters.is_empty() {
                st.waiters.remove(token);
            }
            if sent > 0 {
                return Delivery::Delivered(sent);
            }
        }
        if self.limits.max_buffered == 0 {
            return Delivery::Dropped;
        }
        st.next_seq += 1;
        let seq = st.next_seq;
        st.buffer
            .entry(token.to_string())
            .or_default()
            .push_back(Held { seq, signal });
        st.order.push_back((now, seq, token.to_string()));
        st.buffered += 1;
        st.prune(now, &self.limits);
        Delivery::Buffered
    }

    /// Drops buffered signals older than the age bound now (also done by every `listen` and
    /// `deliver`); call it periodically so the counts stay current.
    pub fn expire(&self) {
        let now = self.clock.now_millis();
        self.lock().prune(now, &self.limits);
    }

    /// Signals that left the buffer unclaimed since the last call.
    pub fn take_dropped(&self) -> Dropped {
        std::mem::take(&mut self.lock().dropped)
    }

    /// Registered listeners (all tokens).
    pub fn waiting(&self) -> usize {
        self.lock().waiters.values().map(Vec::len).sum()
    }

    /// Signals in the early buffer.
    pub fn buffered(&self) -> usize {
        self.lock().buffered
    }

    fn unregister(&self, token: &str, id: u64) {
        let mut st = self.lock();
        if let Some(waiters) = st.waiters.get_mut(token) {
            waiters.retain(|w| w.id != id);
            if waiters.is_empty() {
                st.waiters.remove(token);
            }
        }
    }

    /// A [`Callbacks`] that mints with `minter` and waits on this hub.
    pub fn bind(self: &Arc<Self>, minter: Arc<dyn TokenMinter>) -> HubCallbacks {
        HubCallbacks {
            hub: self.clone(),
            minter,
        }
    }
}

/// A listener's stream; unregisters on drop.
struct Registration {
    hub: Arc<CallbackHub>,
    token: String,
    id: u64,
    rx: mpsc::UnboundedReceiver<CallbackSignal>,
}

impl Stream for Registration {
    type Item = CallbackSignal;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<CallbackSignal>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(&self.token, self.id);
    }
}

/// [`CallbackHub::bind`]: the hub as the engine's [`Callbacks`].
#[derive(Clone)]
pub struct HubCallbacks {
    hub: Arc<CallbackHub>,
    minter: Arc<dyn TokenMinter>,
}

impl std::fmt::Debug for HubCallbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubCallbacks")
            .field("hub", &self.hub)
            .finish()
    }
}

impl Callbacks for HubCallbacks {
    fn listen(&self, key: CallbackKey) -> Result<CallbackListener, TaskError> {
        self.hub
            .listen(&key, self.minter.as_ref())
            .map(|armed| armed.listener)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use futures::future::BoxFuture;
    use futures::{FutureExt as _, StreamExt as _};
    use serde_json::json;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// A clock the test moves by hand.
    #[derive(Default)]
    struct ManualClock(AtomicI64);

    impl ManualClock {
        fn advance(&self, d: Duration) {
            self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
        }
    }

    impl Clock for ManualClock {
        fn now_millis(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
        fn sleep(&self, _: Duration) -> BoxFuture<'static, ()> {
            Box::pin(futures::future::pending())
        }
    }

    /// Tokens `tok:<arn>:<state>:<scope>:<attempt>`.
    struct PlainMinter;

    impl TokenMinter for PlainMinter {
        fn mint(&self, k: &CallbackKey) -> Result<String, TaskError> {
            Ok(format!(
                "tok:{}:{}:{}:{}",
                k.execution_arn, k.state_name, k.scope, k.attempt
            ))
        }
    }

    fn key(attempt: u32) -> CallbackKey {
        CallbackKey {
            execution_arn: "arn:x".into(),
            state_name: "Charge".into(),
            scope: "0".into(),
            attempt,
        }
    }

    fn hub(limits: HubLimits) -> (Arc<CallbackHub>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        (CallbackHub::new(clock.clone(), limits), clock)
    }

    fn success(n: i64) -> CallbackSignal {
        CallbackSignal::Success(json!({ "n": n }))
    }

    /// The next signal if one is ready now.
    fn ready(l: &mut CallbackListener) -> Option<CallbackSignal> {
        l.signals.next().now_or_never().flatten()
    }

    #[test]
    fn listen_then_callback() {
        let (hub, _) = hub(HubLimits::default());
        let mut armed = hub.listen(&key(0), &PlainMinter).unwrap();
        assert_eq!(armed.listener.token, "tok:arn:x:Charge:0:0");
        assert!(armed.replayed.is_empty());
        assert_eq!(ready(&mut armed.listener), None);
        assert_eq!(hub.waiting(), 1);
        assert_eq!(
            hub.deliver("tok:arn:x:Charge:0:0", success(1)),
            Delivery::Delivered(1)
        );
        assert_eq!(ready(&mut armed.listener), Some(success(1)));
        // Another attempt's token is another key.
        assert_eq!(
            hub.deliver("tok:arn:x:Charge:0:1", success(2)),
            Delivery::Buffered
        );
        assert_eq!(ready(&mut armed.listener), None);
    }

    #[test]
    fn early_callback_then_listen() {
        let (hub, clock) = hub(HubLimits::default());
        assert_eq!(
            hub.deliver("tok:arn:x:Charge:0:0", CallbackSignal::Heartbeat),
            Delivery::Buffered
        );
        clock.advance(Duration::from_secs(10));
        assert_eq!(
            hub.deliver("tok:arn:x:Charge:0:0", success(7)),
            Delivery::Buffered
        );
        assert_eq!(hub.buffered(), 2);
        let mut armed = hub.listen(&key(0), &PlainMinter).unwrap();
        assert_eq!(armed.replayed, vec!["heartbeat", "success"]);
        assert_eq!(ready(&mut armed.listener), Some(CallbackSignal::Heartbeat));
        assert_eq!(ready(&mut armed.listener), Some(success(7)));
        assert_eq!(hub.buffered(), 0, "replayed signals leave the buffer");
        // Nothing expires later: it was claimed.
        clock.advance(Duration::from_secs(3600));
        hub.expire();
        assert_eq!(hub.take_dropped(), Dropped::default());
    }

    #[test]
    fn heartbeat_then_success() {
        let (hub, _) = hub(HubLimits::default());
        let mut armed = hub.listen(&key(0), &PlainMinter).unwrap();
        let t = armed.listener.token.clone();
        assert_eq!(
            hub.deliver(&t, CallbackSignal::Heartbeat),
            Delivery::Delivered(1)
        );
        assert_eq!(
            hub.deliver(&t, CallbackSignal::Heartbeat),
            Delivery::Delivered(1)
        );
        let failure = CallbackSignal::Failure(TaskError::new("Declined", "card"));
        assert_eq!(hub.deliver(&t, failure.clone()), Delivery::Delivered(1));
        assert_eq!(ready(&mut armed.listener), Some(CallbackSignal::Heartbeat));
        assert_eq!(ready(&mut armed.listener), Some(CallbackSignal::Heartbeat));
        assert_eq!(ready(&mut armed.listener), Some(failure));
    }

    #[test]
    fn drop_then_callback_is_buffered_and_expires() {
        let (hub, clock) = hub(HubLimits {
            max_buffered: 100,
            max_age: Duration::from_secs(300),
        });
        let armed = hub.listen(&key(0), &PlainMinter).unwrap();
        let t = armed.listener.token.clone();
        drop(armed);
        assert_eq!(hub.waiting(), 0, "dropping the listener unregisters");
        assert_eq!(hub.deliver(&t, success(1)), Delivery::Buffered);
        clock.advance(Duration::from_secs(299));
        hub.expire();
        assert_eq!(hub.buffered(), 1);
        assert_eq!(hub.take_dropped(), Dropped::default());
        clock.advance(Duration::from_secs(1));
        hub.expire();
        assert_eq!(hub.buffered(), 0);
        assert_eq!(
            hub.take_dropped(),
            Dropped {
                expired: 1,
                evicted: 0
            }
        );
        assert_eq!(hub.take_dropped(), Dropped::default(), "counted once");
        // A listener after the expiry gets nothing.
        let mut again = hub.listen(&key(0), &PlainMinter).unwrap();
        assert!(again.replayed.is_empty());
        assert_eq!(ready(&mut again.listener), None);
    }

    #[test]
    fn buffer_bound_keeps_the_newest() {
        let (hub, clock) = hub(HubLimits {
            max_buffered: 3,
            max_age: Duration::from_secs(300),
        });
        for n in 0..5 {
            clock.advance(Duration::from_millis(1));
            assert_eq!(
                hub.deliver(&format!("t{n}"), success(n)),
                Delivery::Buffered
            );
        }
        assert_eq!(hub.buffered(), 3);
        assert_eq!(
            hub.take_dropped(),
            Dropped {
                expired: 0,
                evicted: 2
            }
        );
        assert!(
            hub.listen_token("t0".into()).replayed.is_empty(),
            "the oldest went first"
        );
        assert!(hub.listen_token("t1".into()).replayed.is_empty());
        let mut armed = hub.listen_token("t4".into());
        assert_eq!(ready(&mut armed.listener), Some(success(4)));
        // Disabled buffer.
        let (off, _) = self::hub(HubLimits {
            max_buffered: 0,
            max_age: Duration::from_secs(1),
        });
        assert_eq!(off.deliver("t", success(1)), Delivery::Dropped);
    }

    #[test]
    fn replayed_entries_are_not_counted_as_expired_and_the_order_queue_stays_bounded() {
        let (hub, clock) = hub(HubLimits {
            max_buffered: 10,
            max_age: Duration::from_secs(1),
        });
        for n in 0..5000 {
            let t = format!("t{n}");
            hub.deliver(&t, success(n));
            drop(hub.listen_token(t));
        }
        assert!(
            hub.lock().order.len() <= 1024 + 20,
            "{}",
            hub.lock().order.len()
        );
        clock.advance(Duration::from_secs(2));
        hub.expire();
        assert_eq!(hub.take_dropped(), Dropped::default());
        assert!(hub.lock().order.is_empty());
    }

    #[test]
    fn every_listener_of_a_token_gets_each_signal() {
        let (hub, _) = hub(HubLimits::default());
        let mut a = hub.listen(&key(0), &PlainMinter).unwrap();
        let mut b = hub.listen(&key(0), &PlainMinter).unwrap();
        let t = a.listener.token.clone();
        assert_eq!(hub.deliver(&t, success(1)), Delivery::Delivered(2));
        assert_eq!(ready(&mut a.listener), Some(success(1)));
        assert_eq!(ready(&mut b.listener), Some(success(1)));
        drop(a);
        assert_eq!(hub.deliver(&t, success(2)), Delivery::Delivered(1));
        assert_eq!(ready(&mut b.listener), Some(success(2)));
    }

    #[test]
    fn a_minter_error_fails_the_listen_and_bind_is_the_engines_callbacks() {
        struct Refuse;
        impl TokenMinter for Refuse {
            fn mint(&self, _: &CallbackKey) -> Result<String, TaskError> {
                Err(TaskError::new("States.Runtime", "token too long"))
            }
        }
        let (hub, _) = hub(HubLimits::default());
        let e = hub.listen(&key(0), &Refuse).unwrap_err();
        assert_eq!(e.error, "States.Runtime");
        assert_eq!(hub.waiting(), 0);
        let callbacks: Arc<dyn Callbacks> = Arc::new(hub.bind(Arc::new(PlainMinter)));
        let mut l = callbacks.listen(key(3)).unwrap();
        assert_eq!(hub.deliver(&l.token, success(3)), Delivery::Delivered(1));
        assert_eq!(l.signals.next().now_or_never().flatten(), Some(success(3)));
    }
}
