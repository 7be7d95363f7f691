//! [`Backoff`]: the delays between one pod's restarts, and when to give up.

use std::fmt;
use std::time::Duration;

/// The delays between restarts of one pod, and when to give up.
///
/// The `n`-th restart since the last reset (`n = 0` for the first) waits
///
/// ```text
/// b(n)     = min(max, initial · 2ⁿ)
/// delay(n) = min(max, b(n) + ⌊b(n) · jitter_percent/100 · u⌋)     u ∈ [0, 1)
/// ```
///
/// counted from the moment the previous process ended, where `u` is drawn from the
/// deployment's seed, the member and its restart number over its whole life (SplitMix64:
/// the same seed gives every pod the same delays in every run). Because
/// `b(n+1) = 2·b(n)` until the cap and the jitter adds less than `b(n)`, a delay is never
/// shorter than the one before it until a reset; at the cap the jitter stops.
///
/// A pod that was ready for at least `reset_after` before it ended counts as having run
/// stably: its count restarts from 0. When a restart is due and `budget` restarts have
/// already happened since the last reset, the pod is not restarted but marked
/// crash-looping, and the deployment goes down.
///
/// # Examples
///
/// ```
/// use podvisor::core::deployment::Backoff;
/// use std::time::Duration;
///
/// let backoff = Backoff::default();
/// assert_eq!(backoff.delay(0, 0), Duration::from_millis(100));
/// assert_eq!(backoff.delay(3, 0), Duration::from_millis(800));
/// assert_eq!(backoff.delay(30, u64::MAX), Duration::from_secs(30));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backoff {
    /// The delay before the first restart (before jitter). Positive.
    pub initial: Duration,
    /// The cap. At least `initial`.
    pub max: Duration,
    /// At most this many percent of the delay is added at random. At most 100.
    pub jitter_percent: u8,
    /// Being ready this long before ending resets the count of restarts.
    pub reset_after: Duration,
    /// Restarts allowed without a reset; `None` for no limit.
    pub budget: Option<u32>,
}

impl Default for Backoff {
    /// 100 ms doubling to 30 s, 10 % jitter, reset after 60 s ready, 5 restarts.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            jitter_percent: 10,
            reset_after: Duration::from_secs(60),
            budget: Some(5),
        }
    }
}

impl Backoff {
    /// The delay of the `n`-th restart since the last reset, given the jitter draw `draw`
    /// (any `u64`; the top 53 bits make `u`). See the type's docs for the formula.
    pub fn delay(&self, n: u32, draw: u64) -> Duration {
        let max = u128::from(duration_nanos(self.max));
        let mut base = u128::from(duration_nanos(self.initial)).min(max);
        // After 64 doublings any positive delay exceeds every u64 cap.
        for _ in 0..n.min(64) {
            base = base.saturating_mul(2).min(max);
        }
        let u = u128::from(draw >> 11); // 53 bits
        let jitter = base * u128::from(self.jitter_percent.min(100)) * u / (100u128 << 53);
        let nanos = (base + jitter).min(max);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Checks the settings: positive `initial`, `max ≥ initial`, `jitter_percent ≤ 100`.
    pub fn validate(&self) -> Result<(), BackoffError> {
        if self.initial.is_zero() {
            return Err(BackoffError::ZeroInitial);
        }
        if self.max < self.initial {
            return Err(BackoffError::CapBelowInitial {
                initial: self.initial,
                max: self.max,
            });
        }
        if self.jitter_percent > 100 {
            return Err(BackoffError::JitterOver100 {
                percent: self.jitter_percent,
            });
        }
        Ok(())
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (about 584 years).
fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A [`Backoff`] the core cannot work with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackoffError {
    /// A zero first delay would restart a crashing pod in a busy loop.
    ZeroInitial,
    /// The cap is below the first delay.
    CapBelowInitial {
        /// The first delay.
        initial: Duration,
        /// The cap.
        max: Duration,
    },
    /// More than 100 % jitter.
    JitterOver100 {
        /// The percentage given.
        percent: u8,
    },
}

impl fmt::Display for BackoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackoffError::ZeroInitial => write!(
                f,
                "the first restart delay is zero; expected a positive duration"
            ),
            BackoffError::CapBelowInitial { initial, max } => write!(
                f,
                "the restart delay cap {max:?} is below the first delay {initial:?}"
            ),
            BackoffError::JitterOver100 { percent } => {
                write!(f, "restart jitter is {percent}%; expected at most 100%")
            }
        }
    }
}
