//! What the core needs to know about a pod: timeouts, grace, and its readiness checks.

use std::fmt;
use std::time::Duration;

/// The most readiness checks one pod may have.
pub const MAX_CHECKS: usize = 64;

/// The default time a pod may take to become ready: 600 s, as in the lineage.
pub const DEFAULT_TIMEOUT_READY: Duration = Duration::from_secs(600);

/// The default grace period between the stop signal and SIGKILL: 10 s.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// The lifecycle-relevant part of a pod's configuration.
///
/// Drivers keep everything else (the command, its environment, the probe addresses); the
/// core refers to readiness checks by their index in [`PodSpec::checks`].
///
/// # Examples
///
/// ```
/// use podvisor::core::{Check, PodSpec, Stream};
/// use std::time::Duration;
///
/// let spec = PodSpec::default()
///     .timeout_ready(Some(Duration::from_secs(5)))
///     .grace(Duration::from_secs(2))
///     .check(Check::Notify)
///     .check(Check::Output { stream: Stream::Stdout, text: "listening".into() });
/// assert!(spec.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSpec {
    /// How long the pod may take from start to ready. `None` waits forever.
    pub timeout_ready: Option<Duration>,
    /// How long a stopped process may take to exit before its group gets SIGKILL.
    pub grace: Duration,
    /// What counts as "started".
    pub started_by: StartedBy,
    /// Readiness checks; all must succeed. Empty means ready as soon as started.
    pub checks: Vec<Check>,
    /// Health checks, run by the driver from the instant the pod is ready until it stops;
    /// the pod is closed as unhealthy when one fails past its threshold.
    pub health: Vec<HealthCheck>,
    /// The notify watchdog's interval (systemd's `WatchdogSec=`): once the pod is ready it
    /// must send `WATCHDOG=1` more often than this, or it is closed as unhealthy.
    pub watchdog: Option<Duration>,
}

impl Default for PodSpec {
    fn default() -> Self {
        PodSpec {
            timeout_ready: Some(DEFAULT_TIMEOUT_READY),
            grace: DEFAULT_GRACE,
            started_by: StartedBy::Exec,
            checks: Vec::new(),
            health: Vec::new(),
            watchdog: None,
        }
    }
}

impl PodSpec {
    /// Sets [`PodSpec::timeout_ready`].
    pub fn timeout_ready(mut self, timeout: Option<Duration>) -> Self {
        self.timeout_ready = timeout;
        self
    }

    /// Sets [`PodSpec::grace`].
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sets [`PodSpec::started_by`].
    pub fn started_by(mut self, started_by: StartedBy) -> Self {
        self.started_by = started_by;
        self
    }

    /// Adds a readiness check.
    pub fn check(mut self, check: Check) -> Self {
        self.checks.push(check);
        self
    }

    /// Adds a health check.
    pub fn health(mut self, check: HealthCheck) -> Self {
        self.health.push(check);
        self
    }

    /// Sets [`PodSpec::watchdog`].
    pub fn watchdog(mut self, interval: Option<Duration>) -> Self {
        self.watchdog = interval;
        self
    }

    /// Checks the spec is usable: at most [`MAX_CHECKS`] readiness and health checks,
    /// output checks with a non-empty text, probe schedules with non-zero intervals and
    /// timeouts, health thresholds of at least 1, a non-zero watchdog interval.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.checks.len() > MAX_CHECKS {
            return Err(SpecError::TooManyChecks {
                count: self.checks.len(),
            });
        }
        if self.health.len() > MAX_CHECKS {
            return Err(SpecError::TooManyChecks {
                count: self.health.len(),
            });
        }
        for (index, health) in self.health.iter().enumerate() {
            let bad = |what: &'static str| Err(SpecError::BadHealthCheck { check: index, what });
            if health.interval.is_zero() {
                return bad("interval is zero; expected a positive duration");
            }
            if health.timeout.is_zero() {
                return bad("timeout is zero; expected a positive duration");
            }
            if health.retries == 0 {
                return bad("retries (failures before unhealthy) is 0; expected at least 1");
            }
            if health.successes == 0 {
                return bad("successes (before healthy) is 0; expected at least 1");
            }
        }
        if self.watchdog.is_some_and(|w| w.is_zero()) {
            return Err(SpecError::ZeroWatchdog);
        }
        for (index, check) in self.checks.iter().enumerate() {
            match check {
                Check::Notify => {}
                Check::Output { text, .. } => {
                    if text.is_empty() {
                        return Err(SpecError::EmptyOutputText { check: index });
                    }
                }
                Check::Probe(schedule) => {
                    if schedule.initial_interval.is_zero() {
                        return Err(SpecError::ZeroProbeInterval { check: index });
                    }
                    if schedule.max_interval < schedule.initial_interval {
                        return Err(SpecError::ProbeCapBelowInterval {
                            check: index,
                            initial: schedule.initial_interval,
                            max: schedule.max_interval,
                        });
                    }
                    if schedule.attempt_timeout.is_zero() {
                        return Err(SpecError::ZeroProbeTimeout { check: index });
                    }
                }
            }
        }
        Ok(())
    }
}

/// The moment a pod counts as started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StartedBy {
    /// A command is started once `exec` succeeded.
    Exec,
    /// A child-hosted runtime is started once it reports `X_PODVISOR_STARTED=1` (or
    /// `READY=1`) on the notify socket, after its setup succeeded. An exit before that is
    /// [`FailedToStart`](crate::core::StartResult::FailedToStart).
    Notify,
}

/// Which output stream of the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One readiness check. Each latches on its first success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// `READY=1` on the pod's notify socket (pushed by the child).
    Notify,
    /// A line on the given stream that contains `text` (pushed by the child).
    Output {
        /// Which stream is watched.
        stream: Stream,
        /// The text a line must contain.
        text: String,
    },
    /// An attempt the driver performs (TCP connect, HTTP GET, file, command), scheduled by
    /// the core: the first at once when the pod has started, then after each failure a
    /// delay that doubles from `initial_interval` up to `max_interval`.
    Probe(ProbeSchedule),
}

/// When probe attempts run and how long each may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProbeSchedule {
    /// Delay after the first failed attempt.
    pub initial_interval: Duration,
    /// The delay doubles after each failure up to this cap.
    pub max_interval: Duration,
    /// An attempt still running after this long is cancelled and counts as a failure.
    pub attempt_timeout: Duration,
}

impl Default for ProbeSchedule {
    /// 10 ms first delay, doubling to 1 s, 1 s per attempt.
    fn default() -> Self {
        ProbeSchedule {
            initial_interval: Duration::from_millis(10),
            max_interval: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(1),
        }
    }
}

/// One health check: an attempt the driver performs (TCP connect, HTTP GET, file, command)
/// from the instant the pod is ready until it stops.
///
/// The first attempt starts when the pod becomes ready, each next one `interval` after
/// the previous one started (or when it finishes, if it took longer: at most one attempt
/// of a check runs at a time). An attempt still running after `timeout` is cancelled and
/// counts as a failure. `retries` consecutive failures make the pod unhealthy; it is then
/// closed the usual way. A check passes for the first time after `successes`
/// consecutive successes. Failures within `start_period` after ready do not count, until
/// the check first succeeds (Docker's rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HealthCheck {
    /// Time between the starts of two attempts.
    pub interval: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Consecutive failures that make the pod unhealthy.
    pub retries: u32,
    /// Consecutive successes before the check first passes.
    pub successes: u32,
    /// Time after ready during which failures do not count.
    pub start_period: Duration,
}

impl Default for HealthCheck {
    /// Every 10 s, 5 s per attempt, 3 failures, 1 success, no start period.
    fn default() -> Self {
        HealthCheck {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            retries: 3,
            successes: 1,
            start_period: Duration::ZERO,
        }
    }
}

/// A [`PodSpec`] the core cannot work with.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecError {
    /// More than [`MAX_CHECKS`] readiness checks.
    TooManyChecks {
        /// How many were given.
        count: usize,
    },
    /// An output check whose text is empty would match every line.
    EmptyOutputText {
        /// Index of the check.
        check: usize,
    },
    /// A probe whose retry interval is zero would spin.
    ZeroProbeInterval {
        /// Index of the check.
        check: usize,
    },
    /// A probe whose interval cap is below its first interval.
    ProbeCapBelowInterval {
        /// Index of the check.
        check: usize,
        /// The first interval.
        initial: Duration,
        /// The cap.
        max: Duration,
    },
    /// A probe whose attempt timeout is zero could never succeed.
    ZeroProbeTimeout {
        /// Index of the check.
        check: usize,
    },
    /// A health check with a setting that cannot work.
    BadHealthCheck {
        /// Index of the health check.
        check: usize,
        /// Which setting, and what was expected.
        what: &'static str,
    },
    /// A watchdog interval of zero would expire at once.
    ZeroWatchdog,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::TooManyChecks { count } => write!(
                f,
                "{count} readiness or health checks given, at most {MAX_CHECKS} of each are supported"
            ),
            SpecError::EmptyOutputText { check } => write!(
                f,
                "readiness check #{check}: output text is empty; give the text a ready line contains"
            ),
            SpecError::ZeroProbeInterval { check } => write!(
                f,
                "readiness check #{check}: probe interval is zero; expected a positive duration"
            ),
            SpecError::ProbeCapBelowInterval { check, initial, max } => write!(
                f,
                "readiness check #{check}: probe interval cap {max:?} is below the first interval {initial:?}"
            ),
            SpecError::ZeroProbeTimeout { check } => write!(
                f,
                "readiness check #{check}: probe attempt timeout is zero; expected a positive duration"
            ),
            SpecError::BadHealthCheck { check, what } => {
                write!(f, "health check #{check}: {what}")
            }
            SpecError::ZeroWatchdog => write!(
                f,
                "the watchdog interval is zero; expected a positive duration"
            ),
        }
    }
}

impl std::error::Error for SpecError {}
