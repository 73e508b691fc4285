//! What an execution needs from the outside world: time, randomness and task dispatch.
//!
//! The engine never reads a clock or draws randomness itself. Production passes [`TokioClock`] and
//! [`OsEntropy`]; tests pass tokio's paused clock (virtual time) or fixed sources, so Waits, retries
//! and timeouts run instantly and deterministically.

use futures::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Wall-clock time and sleeping.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;
    /// Completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// A source of random numbers.
pub trait Entropy: Send + Sync {
    /// A uniformly distributed 64-bit value.
    fn next_u64(&self) -> u64;
}

/// A task failure as the state machine sees it (`Error` / `Cause`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    /// The error name Retry and Catch match.
    pub error: String,
    /// Human text.
    pub cause: Option<String>,
}

impl TaskError {
    /// A failure with a cause.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> TaskError {
        TaskError {
            error: error.into(),
            cause: Some(cause.into()),
        }
    }
}

/// One invocation of a Task state's resource.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    /// The `Resource` ARN.
    pub resource: String,
    /// The effective parameters (after InputPath / Parameters or Arguments).
    pub input: Value,
    /// The Task state's name.
    pub state_name: String,
    /// The execution ARN.
    pub execution_arn: String,
    /// 0 for the first attempt, then 1, 2, ... for retries.
    pub attempt: u32,
    /// Where the state runs among Parallel branches and Map items
    /// ([`CallbackKey::scope`](crate::CallbackKey::scope): `""` at the top level, `"1/17"`, ...).
    pub scope: String,
    /// The state's TimeoutSeconds, if any (the engine enforces it too).
    pub timeout: Option<Duration>,
    /// Derived from (execution ARN, state name, attempt); stable across redeliveries of one start event.
    pub idempotency_key: String,
}

/// Dispatches Task states to their resources.
pub trait TaskDispatcher: Send + Sync {
    /// Runs one task attempt.
    fn invoke(&self, request: TaskRequest) -> BoxFuture<'static, Result<Value, TaskError>>;
}

/// The environment one execution runs in.
#[derive(Clone)]
pub struct Runtime {
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Randomness (UUIDs, MathRandom, jitter).
    pub entropy: Arc<dyn Entropy>,
    /// Task resources.
    pub tasks: Arc<dyn TaskDispatcher>,
    /// Task tokens and callbacks for `.waitForTaskToken`; without them such a Task fails with
    /// `States.Runtime`.
    pub callbacks: Option<Arc<dyn crate::callbacks::Callbacks>>,
    /// Where Distributed Map children run; `None` runs them in this process.
    pub map_children: Option<Arc<dyn crate::map_runs::ChildExecutions>>,
}

/// Formats 128 random bits as a v4 UUID.
pub fn uuid_v4(entropy: &dyn Entropy) -> String {
    let a = entropy.next_u64();
    let b = entropy.next_u64();
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    format_uuid(&bytes)
}

/// Formats 16 bytes as a hyphenated UUID.
pub fn format_uuid(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// SplitMix64: a small, fast, seedable generator (used for seeded MathRandom and tests).
#[derive(Debug)]
pub struct SplitMix64(std::sync::atomic::AtomicU64);

impl SplitMix64 {
    /// A generator with the given seed.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(std::sync::atomic::AtomicU64::new(seed))
    }
    /// One step of SplitMix64 from `state`.
    pub fn mix(state: u64) -> u64 {
        let mut z = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Entropy for SplitMix64 {
    fn next_u64(&self) -> u64 {
        let s = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed);
        SplitMix64::mix(s)
    }
}

/// A dispatcher that knows no resources: every Task fails with `States.TaskFailed`.
#[derive(Debug, Default)]
pub struct NoTasks;

impl TaskDispatcher for NoTasks {
    fn invoke(&self, request: TaskRequest) -> BoxFuture<'static, Result<Value, TaskError>> {
        Box::pin(async move {
            Err(TaskError::new(
                "States.TaskFailed",
                format!(
                    "No handler is registered for resource '{}'",
                    request.resource
                ),
            ))
        })
    }
}

#[cfg(feature = "tokio")]
mod tokio_impl {
    use super::*;

    /// The real clock; under `tokio::time::pause()` it is virtual (sleeps advance time instantly).
    #[derive(Debug, Clone)]
    pub struct TokioClock {
        base_millis: i64,
        base_instant: tokio::time::Instant,
    }

    impl TokioClock {
        /// Anchors tokio's monotonic clock to the current wall-clock time.
        pub fn new() -> TokioClock {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            TokioClock::starting_at(now)
        }
        /// Anchors tokio's monotonic clock to the given wall-clock time (tests).
        pub fn starting_at(epoch_millis: i64) -> TokioClock {
            TokioClock {
                base_millis: epoch_millis,
                base_instant: tokio::time::Instant::now(),
            }
        }
    }

    impl Default for TokioClock {
        fn default() -> Self {
            TokioClock::new()
        }
    }

    impl Clock for TokioClock {
        fn now_millis(&self) -> i64 {
            self.base_millis + self.base_instant.elapsed().as_millis() as i64
        }
        fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
            Box::pin(tokio::time::sleep(duration))
        }
    }

    /// Randomness from the operating system's generator (seeded once per thread).
    #[derive(Debug, Default, Clone, Copy)]
    pub struct OsEntropy;

    impl Entropy for OsEntropy {
        fn next_u64(&self) -> u64 {
            rand::random()
        }
    }
}

#[cfg(feature = "tokio")]
pub use tokio_impl::{OsEntropy, TokioClock};
