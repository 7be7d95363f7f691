//! How a pod's start went and how its process ended.

use std::fmt;
use std::time::Duration;

use super::event::{ExitStatus, SpawnError};

/// How a start ended. Set once per generation, never changed afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartResult {
    /// All readiness checks succeeded before the deadline.
    Ready {
        /// Time from start to ready.
        after: Duration,
    },
    /// The pod never got going.
    FailedToStart(StartFailure),
    /// The pod started, then its process ended before it was ready.
    ExitedEarly {
        /// How it ended.
        status: ExitStatus,
    },
    /// Neither ready nor ended when the deadline passed; the pod is then closed.
    TimedOut {
        /// Time from start to the deadline (longer than `timeout_ready` if the child
        /// extended it).
        waited: Duration,
        /// The checks that had not succeeded.
        pending: CheckSet,
    },
    /// Closed before it was ready.
    Cancelled,
}

impl StartResult {
    /// True for [`StartResult::Ready`].
    pub fn is_ready(&self) -> bool {
        matches!(self, StartResult::Ready { .. })
    }

    /// A short name of the variant (`"ready"`, `"failed-to-start"`, …), for logs and traces.
    pub fn name(&self) -> &'static str {
        match self {
            StartResult::Ready { .. } => "ready",
            StartResult::FailedToStart(_) => "failed-to-start",
            StartResult::ExitedEarly { .. } => "exited-early",
            StartResult::TimedOut { .. } => "timed-out",
            StartResult::Cancelled => "cancelled",
        }
    }
}

/// Why a pod failed to start.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartFailure {
    /// The process could not be spawned.
    Spawn(SpawnError),
    /// A child-hosted runtime ended before it reported it had started (its setup failed).
    Runtime {
        /// How the process ended.
        status: ExitStatus,
        /// The last `STATUS=` text it sent, which the runtime host fills with its error.
        error: Option<String>,
        /// The last `ERRNO=` it sent.
        errno: Option<i32>,
    },
    /// Its configuration could not be built, so nothing was spawned: a deployment
    /// member's restart whose configuration function now fails or panics.
    Config {
        /// What was wrong, as the configuration's error says it.
        message: String,
    },
}

/// How the process of a generation ended. Set once, when the pod reaches
/// [`State::Ended`](crate::core::State::Ended).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum End {
    /// There never was a process (spawn failed, or closed before spawning).
    NeverSpawned,
    /// It exited by itself (no close was asked).
    Exited(ExitStatus),
    /// It exited within the grace period after the stop signal.
    Closed(ExitStatus),
    /// It got SIGKILL when the grace period ran out.
    Killed(ExitStatus),
    /// It was closed because it became unhealthy after ready: a health check failed past
    /// its threshold, or the watchdog expired or was triggered.
    Unhealthy {
        /// What made it unhealthy.
        cause: Unhealthy,
        /// How it ended.
        status: ExitStatus,
        /// Whether it needed SIGKILL at the end of the grace period.
        killed: bool,
    },
}

impl End {
    /// A short name of the variant, for logs and traces.
    pub fn name(&self) -> &'static str {
        match self {
            End::NeverSpawned => "never-spawned",
            End::Exited(_) => "exited",
            End::Closed(_) => "closed",
            End::Killed(_) => "killed",
            End::Unhealthy { .. } => "unhealthy",
        }
    }

    /// The exit status, if there was a process.
    pub fn status(&self) -> Option<ExitStatus> {
        match *self {
            End::NeverSpawned => None,
            End::Exited(s) | End::Closed(s) | End::Killed(s) => Some(s),
            End::Unhealthy { status, .. } => Some(status),
        }
    }
}

/// Why a ready pod became unhealthy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unhealthy {
    /// Health check `check` failed `failures` times in a row.
    Check {
        /// Index of the health check in [`PodSpec::health`](crate::core::PodSpec::health).
        check: usize,
        /// Consecutive failures counted.
        failures: u32,
    },
    /// No `WATCHDOG=1` came within the watchdog interval.
    Watchdog {
        /// The interval in force when it expired.
        interval: Duration,
    },
    /// The pod sent `WATCHDOG=trigger`.
    WatchdogTrigger,
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unhealthy::Check { check, failures } => {
                write!(f, "health check #{check} failed {failures} times in a row")
            }
            Unhealthy::Watchdog { interval } => {
                write!(
                    f,
                    "no WATCHDOG=1 within the watchdog interval of {interval:?}"
                )
            }
            Unhealthy::WatchdogTrigger => write!(f, "the pod sent WATCHDOG=trigger"),
        }
    }
}

/// A ready pod's health, when it has health checks or a watchdog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Health {
    /// Not every health check has passed yet.
    Starting,
    /// Every health check has passed at least once, and none has failed past its
    /// threshold since.
    Healthy,
    /// Unhealthy: the pod is being closed.
    Unhealthy(Unhealthy),
}

impl Health {
    /// A short lowercase name: `starting`, `healthy` or `unhealthy`.
    pub fn name(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy(_) => "unhealthy",
        }
    }
}

/// A set of readiness-check indices (at most [`MAX_CHECKS`](crate::core::MAX_CHECKS)).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CheckSet(u64);

impl CheckSet {
    /// The empty set.
    pub const EMPTY: CheckSet = CheckSet(0);

    /// The set `{0, 1, …, n-1}`.
    pub fn first(n: usize) -> CheckSet {
        if n >= 64 {
            CheckSet(u64::MAX)
        } else {
            CheckSet((1u64 << n) - 1)
        }
    }

    /// Adds `index`.
    pub fn insert(&mut self, index: usize) {
        debug_assert!(index < 64);
        self.0 |= 1u64 << (index & 63);
    }

    /// Whether `index` is in the set.
    pub fn contains(self, index: usize) -> bool {
        index < 64 && self.0 & (1u64 << index) != 0
    }

    /// Elements of `self` or of `other`.
    pub fn union(self, other: CheckSet) -> CheckSet {
        CheckSet(self.0 | other.0)
    }

    /// Elements of `self` not in `other`.
    pub fn difference(self, other: CheckSet) -> CheckSet {
        CheckSet(self.0 & !other.0)
    }

    /// True if empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of elements.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The indices, in increasing order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..64).filter(move |i| self.0 & (1u64 << i) != 0)
    }
}

impl fmt::Debug for CheckSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: ExitStatus = ExitStatus::Code(3);

    #[test]
    fn start_results_are_named_and_only_ready_is_ready() {
        let pending = CheckSet::first(1);
        let cases = [
            (
                StartResult::Ready {
                    after: Duration::ZERO,
                },
                "ready",
                true,
            ),
            (
                StartResult::FailedToStart(StartFailure::Runtime {
                    status: STATUS,
                    error: None,
                    errno: None,
                }),
                "failed-to-start",
                false,
            ),
            (
                StartResult::ExitedEarly { status: STATUS },
                "exited-early",
                false,
            ),
            (
                StartResult::TimedOut {
                    waited: Duration::from_secs(1),
                    pending,
                },
                "timed-out",
                false,
            ),
            (StartResult::Cancelled, "cancelled", false),
        ];
        for (result, name, ready) in cases {
            assert_eq!(result.name(), name);
            assert_eq!(result.is_ready(), ready, "{result:?}");
        }
    }

    #[test]
    fn ends_are_named_and_keep_their_status() {
        let unhealthy = End::Unhealthy {
            cause: Unhealthy::WatchdogTrigger,
            status: ExitStatus::Signal(6),
            killed: false,
        };
        let cases = [
            (End::NeverSpawned, "never-spawned", None),
            (End::Exited(STATUS), "exited", Some(STATUS)),
            (
                End::Closed(ExitStatus::Code(0)),
                "closed",
                Some(ExitStatus::Code(0)),
            ),
            (
                End::Killed(ExitStatus::Signal(9)),
                "killed",
                Some(ExitStatus::Signal(9)),
            ),
            (unhealthy, "unhealthy", Some(ExitStatus::Signal(6))),
        ];
        for (end, name, status) in cases {
            assert_eq!(end.name(), name);
            assert_eq!(end.status(), status, "{end:?}");
        }
    }

    #[test]
    fn health_is_named_and_unhealthy_causes_are_said() {
        assert_eq!(Health::Starting.name(), "starting");
        assert_eq!(Health::Healthy.name(), "healthy");
        assert_eq!(
            Health::Unhealthy(Unhealthy::WatchdogTrigger).name(),
            "unhealthy"
        );
        assert_eq!(
            Unhealthy::Check {
                check: 1,
                failures: 3
            }
            .to_string(),
            "health check #1 failed 3 times in a row"
        );
        assert!(Unhealthy::Watchdog {
            interval: Duration::from_secs(2)
        }
        .to_string()
        .contains("2s"));
        assert_eq!(
            Unhealthy::WatchdogTrigger.to_string(),
            "the pod sent WATCHDOG=trigger"
        );
    }

    #[test]
    fn check_sets_hold_what_is_put_in() {
        assert!(CheckSet::EMPTY.is_empty());
        assert!(CheckSet::first(0).is_empty());
        let three = CheckSet::first(3);
        assert_eq!(three.len(), 3);
        assert_eq!(three.iter().collect::<Vec<_>>(), [0, 1, 2]);
        assert!(three.contains(2) && !three.contains(3) && !three.contains(64));
        assert_eq!(CheckSet::first(64).len(), 64);
        assert_eq!(CheckSet::first(70).len(), 64);
        let mut odd = CheckSet::EMPTY;
        odd.insert(1);
        odd.insert(63);
        assert!(!odd.is_empty());
        assert_eq!(odd.len(), 2);
        assert_eq!(odd.iter().collect::<Vec<_>>(), [1, 63]);
        assert_eq!(three.union(odd).iter().collect::<Vec<_>>(), [0, 1, 2, 63]);
        assert_eq!(three.difference(odd).iter().collect::<Vec<_>>(), [0, 2]);
        assert_eq!(format!("{odd:?}"), "{1, 63}");
    }
}
