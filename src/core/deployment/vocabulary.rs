//! The deployment core's vocabulary: members and their states, the deployment's state, the
//! events the machine takes and the actions it asks for, and how a deployment failed.

use std::fmt;
use std::time::Duration;

use crate::core::event::{ExitStatus, Generation};
use crate::core::outcome::{End, StartFailure, StartResult};

use super::spec::RestartPolicy;

/// A member of a deployment: an index into [`DeploymentMachine::members`](crate::core::deployment::DeploymentMachine::members), in declaration
/// order of the templates, replicas in order (`db/0`, `web/0`, `web/1`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(pub usize);

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "member#{}", self.0)
    }
}

/// Where one member of a deployment is.
///
/// ```text
/// Waiting ─► Starting ─► Started ─► Ready ─────────────┐
///    ▲          │           │         │                │ (ended by itself)
///    │          └───────────┴─────────┴─► Stopping ─►  ├─► Succeeded   one-shot, exit 0
///    │                    (close, failed start)        ├─► BackingOff ─┐ restart due
///    └─────────────────────────────────────────────────│───────────────┘
///                                                       ├─► CrashLooping (budget spent)
///                                                       └─► Ended
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum MemberState {
    /// Not running: waiting for the deployment's start or for its dependencies.
    Waiting,
    /// Its pod was asked to start; it has not reported started.
    Starting,
    /// Its pod started; not ready yet.
    Started,
    /// Its pod is ready.
    Ready,
    /// Its pod is ending: it was asked to close, or its start failed.
    Stopping,
    /// Its pod ended; it starts again when the backoff delay is over.
    BackingOff,
    /// A one-shot pod that exited 0. Done.
    Succeeded,
    /// Its pod ended and it gave up restarting it: the restart budget is spent.
    CrashLooping,
    /// Gone for good: closed, ended without a restart, or never started before the close.
    Ended,
    /// Stopped on request ([`DeploymentEvent::StopMember`]); it stays down until started
    /// again.
    Stopped,
}

impl MemberState {
    /// A short lowercase name, for logs and traces.
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Waiting => "waiting",
            MemberState::Starting => "starting",
            MemberState::Started => "started",
            MemberState::Ready => "ready",
            MemberState::Stopping => "stopping",
            MemberState::BackingOff => "backing-off",
            MemberState::Succeeded => "succeeded",
            MemberState::CrashLooping => "crash-looping",
            MemberState::Ended => "ended",
            MemberState::Stopped => "stopped",
        }
    }

    /// True while the member's pod may have a process: starting, started, ready or
    /// stopping.
    pub fn is_running(self) -> bool {
        matches!(
            self,
            MemberState::Starting
                | MemberState::Started
                | MemberState::Ready
                | MemberState::Stopping
        )
    }

    /// True once nothing more will happen to the member unless it is restarted from
    /// `BackingOff`: `Succeeded`, `CrashLooping` or `Ended`.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MemberState::Succeeded | MemberState::CrashLooping | MemberState::Ended
        )
    }
}

/// Where the deployment as a whole is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DeploymentState {
    /// Not started.
    Created,
    /// Starting members; not every one is ready yet.
    Starting,
    /// Every member was ready (or succeeded) at once. Members may restart from here on.
    Ready,
    /// Closing (asked for, or after a failure): members close in reverse dependency order.
    Stopping,
    /// Terminal: every member has ended (or succeeded, or never started).
    Ended,
}

impl DeploymentState {
    /// A short lowercase name, for logs and traces.
    pub fn name(self) -> &'static str {
        match self {
            DeploymentState::Created => "created",
            DeploymentState::Starting => "starting",
            DeploymentState::Ready => "ready",
            DeploymentState::Stopping => "stopping",
            DeploymentState::Ended => "ended",
        }
    }
}

/// An input to [`DeploymentMachine::handle`](crate::core::deployment::DeploymentMachine::handle).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeploymentEvent {
    /// Only time has passed (the timer armed from `poll_timeout` fired).
    Tick,
    /// Start the deployment. Ignored unless it is `Created`.
    Start,
    /// Close the deployment. `grace: None` leaves each pod its own grace period; a later
    /// close may shorten the grace period, never lengthen it.
    Close {
        /// The grace period passed to every pod's close.
        grace: Option<Duration>,
    },
    /// The member's pod reported it started (for a command: exec succeeded).
    PodStarted {
        /// Which member.
        member: MemberId,
        /// The generation from [`DeploymentAction::StartPod`].
        generation: Generation,
    },
    /// The member's pod decided its start result. `Ready` implies started.
    PodStartResult {
        /// Which member.
        member: MemberId,
        /// The generation from [`DeploymentAction::StartPod`].
        generation: Generation,
        /// The pod's start result.
        result: StartResult,
    },
    /// Stop one member on request: its pod is closed and it stays down (not restarted, not
    /// a failure) until [`DeploymentEvent::StartMember`]. With `cascade`, the running
    /// members that depend on it (directly or not), also those being restarted, are
    /// stopped too, first, in reverse dependency order. Ignored while the deployment is closing; nothing to do for a
    /// member that is down already.
    StopMember {
        /// Which member.
        member: MemberId,
        /// Stop its dependents first.
        cascade: bool,
    },
    /// Start a member that was stopped on request (or had ended, gave up restarting, or is a
    /// one-shot job that succeeded: it runs again) once
    /// its dependencies meet their conditions, with a fresh restart budget. A stopped member
    /// whose pod is still closing starts once it is down, with a fresh budget too (a restart
    /// its failure had scheduled before the stop never happens). Ignored while the deployment is
    /// closing; nothing to do for a member that runs.
    StartMember {
        /// Which member.
        member: MemberId,
    },
    /// Stop a member and the running members that depend on it (dependents first), then
    /// start them all again (the member first, each once its dependencies meet their
    /// conditions). Not a failure: no restart budget is spent, the backoff is reset.
    RestartMember {
        /// Which member.
        member: MemberId,
    },
    /// The member's pod turned unhealthy: it is closing itself; it meets no dependency
    /// condition any more.
    PodUnhealthy {
        /// Which member.
        member: MemberId,
        /// The generation from [`DeploymentAction::StartPod`].
        generation: Generation,
    },
    /// The member's pod passed its health checks for the first time.
    PodHealthy {
        /// Which member.
        member: MemberId,
        /// The generation from [`DeploymentAction::StartPod`].
        generation: Generation,
    },
    /// The member's pod ended (its process reaped, or never spawned).
    PodEnded {
        /// Which member.
        member: MemberId,
        /// The generation from [`DeploymentAction::StartPod`].
        generation: Generation,
        /// How.
        end: End,
    },
}

/// An output of [`DeploymentMachine::poll_action`](crate::core::deployment::DeploymentMachine::poll_action): what the driver must do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeploymentAction {
    /// Create and start a fresh pod for the member; report its events with `generation`.
    StartPod {
        /// Which member.
        member: MemberId,
        /// A new generation (1 for the first start, one more for every restart).
        generation: Generation,
    },
    /// Close the member's pod (asked again, with a shorter grace, if a later close
    /// shortens it).
    ClosePod {
        /// Which member.
        member: MemberId,
        /// The pod's generation.
        generation: Generation,
        /// The grace period; `None` for the pod's own.
        grace: Option<Duration>,
    },
    /// A member's state changed; wake whoever waits on it.
    MemberChanged {
        /// Which member.
        member: MemberId,
        /// Its new state.
        state: MemberState,
    },
    /// The deployment's state changed; wake whoever waits on it.
    StateChanged {
        /// The new state.
        state: DeploymentState,
    },
}

/// How the deployment's start went. Set once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeploymentStartResult {
    /// Every member was ready (or succeeded) at once.
    Ready {
        /// Time from start to ready.
        after: Duration,
    },
    /// A member failed before that, and the deployment was closed.
    Failed(Failure),
    /// The deployment was closed before it was ready.
    Cancelled,
}

impl DeploymentStartResult {
    /// True for [`DeploymentStartResult::Ready`].
    pub fn is_ready(&self) -> bool {
        matches!(self, DeploymentStartResult::Ready { .. })
    }
}

/// What a member did that took the deployment down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Its start failed (failed to start, exited early, timed out; or `Cancelled` when
    /// something other than the deployment closed it).
    Start(StartResult),
    /// It ended after it was ready (or a one-shot pod exited with a failure).
    Ended(End),
}

impl Cause {
    /// Whether the restart policy `on-failure` counts this as a failure: every failed
    /// start, and every end but exit code 0.
    pub fn is_failure(&self) -> bool {
        match self {
            Cause::Start(result) => !result.is_ready(),
            Cause::Ended(end) => *end != End::Exited(ExitStatus::Code(0)),
        }
    }
}

/// The member whose failure took the deployment down, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The member.
    pub member: MemberId,
    /// Its name (`web/1`).
    pub name: String,
    /// What it did.
    pub cause: Cause,
    /// Its restart policy.
    pub restart: RestartPolicy,
    /// `Some(n)` when it was not restarted because its budget of `n` restarts since the
    /// last reset was spent: it is crash-looping.
    pub crash_looping_after: Option<u32>,
}

impl Failure {
    /// The failure's text with `why` in place of the unhealthy cause (which names a health
    /// check by its index only): the failed attempt, with the check and its message.
    pub fn with_unhealthy_cause<'a>(&'a self, why: &'a dyn fmt::Display) -> impl fmt::Display + 'a {
        FailureText {
            failure: self,
            why_unhealthy: Some(why),
        }
    }
}

/// A [`Failure`]'s text, maybe with a fuller unhealthy cause.
struct FailureText<'a> {
    failure: &'a Failure,
    why_unhealthy: Option<&'a dyn fmt::Display>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        FailureText {
            failure: self,
            why_unhealthy: None,
        }
        .fmt(f)
    }
}

impl fmt::Display for FailureText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failure = self.failure;
        let name = &failure.name;
        match &failure.cause {
            Cause::Start(StartResult::FailedToStart(StartFailure::Spawn(error))) => write!(
                f,
                "pod {name} failed to start: its process could not be spawned ({:?}{})",
                error.kind,
                error
                    .errno
                    .map_or(String::new(), |e| format!(", errno {e}"))
            )?,
            Cause::Start(StartResult::FailedToStart(StartFailure::Runtime {
                status,
                error,
                ..
            })) => {
                write!(
                    f,
                    "pod {name} failed to start: it ended ({status}) before it reported started"
                )?;
                if let Some(error) = error {
                    write!(f, ": {error}")?;
                }
            }
            Cause::Start(StartResult::FailedToStart(StartFailure::Config { message })) => write!(
                f,
                "pod {name} failed to start: its configuration could not be built: {message}"
            )?,
            Cause::Start(StartResult::ExitedEarly { status }) => {
                write!(f, "pod {name} exited before it was ready ({status})")?
            }
            Cause::Start(StartResult::TimedOut { waited, .. }) => {
                write!(f, "pod {name} was not ready after {waited:?}")?
            }
            Cause::Start(StartResult::Cancelled) => write!(
                f,
                "pod {name} was closed before it was ready, by something other than the deployment"
            )?,
            Cause::Start(StartResult::Ready { .. }) => write!(f, "pod {name} was ready")?,
            Cause::Ended(End::Exited(status)) => {
                write!(f, "pod {name} ended by itself ({status})")?
            }
            Cause::Ended(End::Closed(status) | End::Killed(status)) => write!(
                f,
                "pod {name} was stopped by something other than the deployment ({status})"
            )?,
            Cause::Ended(End::NeverSpawned) => write!(f, "pod {name} ended without a process")?,
            Cause::Ended(End::Unhealthy {
                cause,
                status,
                killed,
            }) => {
                let how = if *killed { "killed" } else { "closed" };
                match self.why_unhealthy {
                    Some(why) => write!(
                        f,
                        "pod {name} was unhealthy ({why}) and was {how} ({status})"
                    )?,
                    None => write!(
                        f,
                        "pod {name} was unhealthy ({cause}) and was {how} ({status})"
                    )?,
                }
            }
        }
        match failure.crash_looping_after {
            Some(n) => write!(
                f,
                "; it is crash-looping: {n} restarts since it last ran stably, and no more are allowed"
            ),
            None => write!(f, "; restart policy {} does not restart it", failure.restart),
        }
    }
}

impl std::error::Error for Failure {}

/// Counters of input the machine ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeploymentStats {
    /// Events about an unknown member, another generation, or a pod that already ended.
    pub ignored: u64,
    /// Times `handle` was given a `now` earlier than a previous one.
    pub time_went_back: u64,
}
