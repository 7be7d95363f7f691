//! What goes into the core ([`Event`]) and what comes out ([`Action`]).

use std::fmt;
use std::time::Duration;

use super::spec::Stream;
use super::State;

/// Which spawn of a pod an event or action is about.
///
/// The core issues a new generation for every spawn; drivers tag every event with the
/// generation of the process it concerns, so a late event about an old process can never
/// be mistaken for one about the current process (pids are reused, generations are not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(pub u64);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gen{}", self.0)
    }
}

/// How a process ended, as the OS reported it when it was reaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was terminated by this signal number.
    Signal(i32),
    /// It could not be ended and was given up on: a thread-hosted runtime still running
    /// when its grace period ran out (a thread cannot be killed). Its thread is left
    /// running, detached, and nothing waits for it. Reported where a process would have
    /// got SIGKILL, so a shell would show 137.
    Abandoned,
}

impl ExitStatus {
    /// True for `Code(0)`.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// As a shell shows it in `$?`: `N` for an exit code, `128 + S` for a signal.
    ///
    /// ```
    /// use podvisor::ExitStatus;
    ///
    /// assert_eq!(ExitStatus::Code(3).shell_status(), 3);
    /// assert_eq!(ExitStatus::Signal(15).shell_status(), 143);
    /// assert_eq!(ExitStatus::Abandoned.shell_status(), 137);
    /// ```
    pub fn shell_status(self) -> i32 {
        match self {
            ExitStatus::Code(code) => code,
            ExitStatus::Signal(signal) => 128 + signal,
            ExitStatus::Abandoned => 128 + 9,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(signal) => write!(f, "signal {signal}"),
            ExitStatus::Abandoned => f.write_str("abandoned, its thread left running"),
        }
    }
}

/// Why a spawn failed, as far as the core needs to tell failures apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpawnError {
    /// The kind of failure.
    pub kind: SpawnErrorKind,
    /// The OS error number, when there was one.
    pub errno: Option<i32>,
}

/// The kinds of spawn failure a caller may want to handle differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpawnErrorKind {
    /// The program was not found (`ENOENT`).
    NotFound,
    /// The program could not be executed (`EACCES`, `ENOEXEC`, …).
    PermissionDenied,
    /// Anything else: out of resources, bad working directory, a pipe or socket that
    /// could not be set up.
    Other,
}

/// An input to [`PodMachine::handle`](crate::core::PodMachine::handle).
///
/// Events about a process carry its [`Generation`]; one whose generation is not the
/// current one, or that does not fit the current state (a second exit, a probe result for
/// a cancelled attempt), is ignored and counted in
/// [`Stats::ignored`](crate::core::Stats::ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Only time has passed (a timer the caller armed from `poll_timeout` fired).
    Tick,
    /// The caller asks the pod to start. Ignored unless the pod is still `Created`.
    Start,
    /// The process was spawned: `exec` succeeded.
    Spawned {
        /// The generation from the [`Action::Spawn`].
        generation: Generation,
    },
    /// The spawn failed; there is no process.
    SpawnFailed {
        /// The generation from the [`Action::Spawn`].
        generation: Generation,
        /// Why.
        error: SpawnError,
    },
    /// A datagram arrived on the pod's notify socket (systemd `sd_notify` format).
    Notify {
        /// The process it concerns.
        generation: Generation,
        /// The raw datagram; the core parses it and ignores (and counts) malformed ones.
        datagram: &'a [u8],
    },
    /// The child wrote a line (without its line terminator).
    OutputLine {
        /// The process it concerns.
        generation: Generation,
        /// Which stream.
        stream: Stream,
        /// The line's bytes.
        line: &'a [u8],
    },
    /// A probe attempt the core asked for finished (a readiness probe's, from
    /// [`Action::StartProbe`], or a health check's, from [`Action::StartHealthProbe`]).
    ProbeFinished {
        /// The process it concerns.
        generation: Generation,
        /// The attempt, from [`Action::StartProbe`].
        attempt: u64,
        /// Whether the probe succeeded.
        ok: bool,
    },
    /// What health check `check` looks at changed: a `file:` check's file appeared or
    /// went away (the driver watches it, as it does for `file:` readiness). If the pod is
    /// ready and no attempt of the check runs, one starts now ([`Action::StartHealthProbe`])
    /// and the next is due one interval after it; otherwise nothing happens.
    HealthCheckChanged {
        /// The process it concerns.
        generation: Generation,
        /// Index of the health check.
        check: usize,
    },
    /// The leader process was reaped.
    Exited {
        /// The process it concerns.
        generation: Generation,
        /// Its status.
        status: ExitStatus,
    },
    /// The caller asks the pod to close. `grace: None` uses the spec's grace period; a
    /// later close may shorten the grace period, never lengthen it.
    Close {
        /// The grace period for this request.
        grace: Option<Duration>,
    },
}

/// A signal the core asks the driver to send to the pod's process group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupSignal {
    /// The pod's configured stop signal (SIGTERM by default).
    Stop,
    /// The pod's watchdog signal (SIGABRT by default), sent instead of the stop signal
    /// when the watchdog expired or was triggered; the grace period and SIGKILL follow as
    /// after a stop signal.
    Watchdog,
    /// SIGCONT, sent right after the stop signal so a stopped process can act on it.
    Continue,
    /// SIGKILL.
    Kill,
}

/// An output of [`PodMachine::poll_action`](crate::core::PodMachine::poll_action): what the
/// driver must do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Spawn the process in its own process group, then report [`Event::Spawned`] or
    /// [`Event::SpawnFailed`] with this generation.
    Spawn {
        /// The generation to report back.
        generation: Generation,
    },
    /// Run one attempt of readiness check `check` (a [`Check::Probe`](crate::core::Check::Probe));
    /// report [`Event::ProbeFinished`] with this attempt number.
    StartProbe {
        /// The process it concerns.
        generation: Generation,
        /// Index of the check in the spec.
        check: usize,
        /// Attempt number, unique within the pod.
        attempt: u64,
    },
    /// Abandon a probe attempt (it timed out, or the pod no longer needs it). Its result,
    /// if one still arrives, is ignored.
    CancelProbe {
        /// The process it concerns.
        generation: Generation,
        /// Index of the check in the spec.
        check: usize,
        /// Attempt number.
        attempt: u64,
    },
    /// Run one attempt of health check `check` (an index in
    /// [`PodSpec::health`](crate::core::PodSpec::health)); report
    /// [`Event::ProbeFinished`] with this attempt number.
    StartHealthProbe {
        /// The process it concerns.
        generation: Generation,
        /// Index of the health check.
        check: usize,
        /// Attempt number, unique within the pod.
        attempt: u64,
    },
    /// Abandon a health check attempt (it timed out, or the pod is stopping); kill an
    /// `exec:` attempt's process group. Its result, if one still arrives, is ignored.
    CancelHealthProbe {
        /// The process it concerns.
        generation: Generation,
        /// Index of the health check.
        check: usize,
        /// Attempt number.
        attempt: u64,
        /// It ran past its timeout and counts as a failed attempt (otherwise the pod is
        /// stopping and it counts for nothing).
        timed_out: bool,
    },
    /// The pod's health changed; publish it.
    HealthChanged {
        /// The new health.
        health: super::outcome::Health,
    },
    /// Send a signal to the process group.
    SignalGroup {
        /// The process it concerns.
        generation: Generation,
        /// Which signal.
        signal: GroupSignal,
    },
    /// The leader was reaped: SIGKILL whatever is left of its process group (orphaned
    /// grandchildren) and release the pod's resources.
    SweepGroup {
        /// The process it concerns.
        generation: Generation,
    },
    /// The pod's state changed; wake whoever waits on it.
    StateChanged {
        /// The new state.
        state: State,
    },
}
