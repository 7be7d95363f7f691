//! The pure lifecycle core: state machines that take events with the current time and
//! emit actions and deadlines.
//!
//! Nothing in here reads a clock, does IO, spawns a thread or awaits. The one rule for
//! callers, written down once: **after every [`PodMachine::handle`], drain
//! [`PodMachine::poll_action`] until it returns `None`, then arm a timer for
//! [`PodMachine::poll_timeout`] and call `handle(Event::Tick, now)` when it fires.**
//!
//! # Examples
//!
//! A pod whose process is ready at once and exits by itself:
//!
//! ```
//! use podvisor::core::{Action, End, Event, ExitStatus, PodMachine, PodSpec, State, Time};
//!
//! let mut pod = PodMachine::new(PodSpec::default()).unwrap();
//! pod.handle(Event::Start, Time::ZERO);
//! let Some(Action::Spawn { generation }) = pod.poll_action() else { panic!() };
//! assert_eq!(pod.poll_action(), Some(Action::StateChanged { state: State::Spawning }));
//!
//! pod.handle(Event::Spawned { generation }, Time::from_millis(1));
//! assert_eq!(pod.state(), State::Ready);
//! while pod.poll_action().is_some() {}
//!
//! pod.handle(Event::Exited { generation, status: ExitStatus::Code(0) }, Time::from_secs(3));
//! assert_eq!(pod.end(), Some(End::Exited(ExitStatus::Code(0))));
//! assert_eq!(pod.state(), State::Ended);
//! ```

#[cfg(feature = "oracles")]
mod check;
pub mod deployment;
mod event;
pub mod notify;
mod outcome;
mod pod;
mod spec;
mod time;

#[cfg(feature = "oracles")]
pub(crate) use check::model_datagram;
#[cfg(feature = "oracles")]
pub use check::{CheckedPod, Checker, Violation};
pub use event::{Action, Event, ExitStatus, Generation, GroupSignal, SpawnError, SpawnErrorKind};
pub use outcome::{CheckSet, End, Health, StartFailure, StartResult, Unhealthy};
#[cfg(feature = "oracles")]
pub use pod::Mutation;
pub use pod::{PodMachine, Stats};
pub use spec::{
    Check, HealthCheck, PodSpec, ProbeSchedule, SpecError, StartedBy, Stream, DEFAULT_GRACE,
    DEFAULT_TIMEOUT_READY, MAX_CHECKS,
};
pub use time::Time;

/// Where a pod is in its life.
///
/// ```text
/// Created ─► Spawning ─► Starting ─► Started ─► Ready
///                 │          │          │         │
///                 └──────────┴──── Stopping ◄─────┘ (close, or ready timed out)
///                                     │
///                                  Killing (grace period over)
///   any of them ─────────────────► Ended (process reaped, or never spawned)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum State {
    /// Not started yet.
    Created,
    /// The spawn was asked for; no answer yet.
    Spawning,
    /// The process runs but has not reported that it started (child-hosted runtimes only).
    Starting,
    /// Started; waiting for the readiness checks.
    Started,
    /// Ready.
    Ready,
    /// The stop signal was sent (or will be, as soon as the spawn answers); the grace
    /// period runs.
    Stopping,
    /// SIGKILL was sent; waiting for the reap.
    Killing,
    /// Terminal: the process was reaped or never existed. Nothing happens any more.
    Ended,
}

impl State {
    /// A short lowercase name, for logs and traces.
    pub fn name(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Spawning => "spawning",
            State::Starting => "starting",
            State::Started => "started",
            State::Ready => "ready",
            State::Stopping => "stopping",
            State::Killing => "killing",
            State::Ended => "ended",
        }
    }

    /// True while the pod waits for its start result.
    pub fn is_waiting_ready(self) -> bool {
        matches!(self, State::Spawning | State::Starting | State::Started)
    }
}
