//! Time as the core sees it: a number the caller passes in.

use std::fmt;
use std::time::Duration;

/// A point on the caller's monotonic clock, in nanoseconds since an epoch the caller
/// chooses.
///
/// The core never reads a clock: drivers convert their `Instant`s to `Time` against an
/// epoch they pick once, and the simulator counts virtual nanoseconds from zero. All
/// arithmetic is checked; a deadline that would overflow is treated as "never".
///
/// # Examples
///
/// ```
/// use podvisor::core::Time;
/// use std::time::Duration;
///
/// let t = Time::from_millis(1_500);
/// assert_eq!(t.checked_add(Duration::from_millis(500)), Some(Time::from_secs(2)));
/// assert_eq!(Time::from_secs(2).saturating_duration_since(t), Duration::from_millis(500));
/// assert_eq!(Time::MAX.checked_add(Duration::from_nanos(1)), None);
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(u64);

impl Time {
    /// The epoch.
    pub const ZERO: Time = Time(0);
    /// The latest representable instant (about 584 years after the epoch).
    pub const MAX: Time = Time(u64::MAX);

    /// A time `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Time {
        Time(nanos)
    }

    /// A time `millis` milliseconds after the epoch (saturating).
    pub const fn from_millis(millis: u64) -> Time {
        Time(millis.saturating_mul(1_000_000))
    }

    /// A time `secs` seconds after the epoch (saturating).
    pub const fn from_secs(secs: u64) -> Time {
        Time(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The time since the epoch as a `Duration`.
    pub const fn since_epoch(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// `self + d`, or `None` if that is not representable.
    pub fn checked_add(self, d: Duration) -> Option<Time> {
        let nanos = u64::try_from(d.as_nanos()).ok()?;
        self.0.checked_add(nanos).map(Time)
    }

    /// `self - d`, or `None` if that would fall before the epoch.
    pub fn checked_sub(self, d: Duration) -> Option<Time> {
        let nanos = u64::try_from(d.as_nanos()).ok()?;
        self.0.checked_sub(nanos).map(Time)
    }

    /// The duration from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Time {
    /// Seconds since the epoch with nanosecond precision, e.g. `t=1.500000000s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "t={}.{:09}s",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}
