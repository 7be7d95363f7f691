//! [`Checker`]: an independent reference model of one pod, and the invariants of the
//! design (DESIGN.md §3) checked against a [`PodMachine`] after every step.
//!
//! The simulator, the property tests and the fuzz targets all use this one checker. It is
//! written as a plain record of what happened (when the start was asked, whether the
//! process exists, which checks succeeded, when the stop signal went out …) from which
//! the expected state, start result and end follow directly; it shares no code with the
//! machine, not even the notify datagram parser (the model reads datagrams with its own
//! [`model_datagram`]).
//!
//! Deadlines are stated as properties of the record, not replayed step by step:
//!
//! - the ready deadline is `start + timeout_ready`, pushed to at least `receipt + N` by
//!   every `EXTEND_TIMEOUT_USEC=N` taken while the pod waits for ready (systemd's rule: an
//!   extension never brings the deadline closer); it never moves earlier;
//! - SIGKILL is due at the earliest of `request + grace` over every stop request (a
//!   close, the ready timeout, turning unhealthy), a request made before the stop signal
//!   could go out (before the spawn answered) counting from the stop signal; it never
//!   moves later;
//! - readiness probes follow their documented schedule (`probe.rs`): the first attempt at
//!   the started instant, each next one a doubling, capped delay after a failure, an
//!   attempt that runs past its timeout cancelled and failed.

mod datagram;
mod health;
mod invariants;
mod probe;
mod record;

use std::fmt;
use std::time::Duration;

use super::event::{Action, Event, ExitStatus, Generation};
use super::outcome::{CheckSet, End};
use super::pod::PodMachine;
use super::spec::{Check, PodSpec, StartedBy};
use super::time::Time;
use super::State;

use datagram::cut_status;
pub(crate) use datagram::model_datagram;

/// An invariant the machine broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant (a short tag such as `"outcome"`, `"kill-timing"`).
    pub invariant: &'static str,
    /// What was expected and what the machine did.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant {} violated: {}", self.invariant, self.message)
    }
}

impl std::error::Error for Violation {}

/// The start result the history calls for, without the durations.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expected {
    /// Ready, reached at this instant.
    Ready(Time),
    SpawnFailed,
    RuntimeFailed(ExitStatus),
    ExitedEarly(ExitStatus),
    TimedOut(Time),
    Cancelled,
}

/// A reference model of one pod plus the invariant checks.
///
/// Call [`Checker::step`] after every `handle`, with the event, the `now` given, every
/// action drained, and the machine.
///
/// # Examples
///
/// ```
/// use podvisor::core::{Checker, Event, PodMachine, PodSpec, Time};
///
/// let spec = PodSpec::default();
/// let mut pod = PodMachine::new(spec.clone()).unwrap();
/// let mut checker = Checker::new(&spec, pod.generation());
/// pod.handle(Event::Start, Time::ZERO);
/// let actions: Vec<_> = std::iter::from_fn(|| pod.poll_action()).collect();
/// checker.step(&Event::Start, Time::ZERO, &actions, &pod).unwrap();
/// ```
#[derive(Debug)]
pub struct Checker {
    timeout_ready: Option<Duration>,
    grace: Duration,
    started_by: StartedBy,
    checks: Vec<Check>,
    generation: Generation,

    now: Time,
    start_at: Option<Time>,
    /// `EXTEND_TIMEOUT_USEC=N` taken while waiting for ready: (receipt, N).
    extensions: Vec<(Time, Duration)>,
    spawn_answered: bool,
    spawned: bool,
    started: bool,
    latched: CheckSet,
    probes: probe::ProbeModel,
    probe_attempts_seen: u64,
    status_text: Option<String>,
    errno: Option<i32>,
    closing: bool,
    /// Every stop request: (instant, grace).
    stop_requests: Vec<(Time, Duration)>,
    stop_sent_at: Option<Time>,
    kill_sent_at: Option<Time>,
    /// The machine's ready and kill deadlines after the previous step.
    seen_ready_deadline: Option<Time>,
    seen_kill_deadline: Option<Time>,
    exited: Option<ExitStatus>,
    expected_start: Option<Expected>,
    expected_end: Option<End>,
    /// Actions the model expects in the current step.
    expect_stop: bool,
    expect_kill: bool,
    expect_sweep: bool,
    expect_spawn: bool,
    terminal_before_step: bool,
    last_state_changed: Option<State>,
    probes_allowed: CheckSet,
    /// Notify datagrams of this generation with a malformed line, and such lines.
    malformed_datagrams: u64,
    malformed_lines: u64,
    /// The machine's count of ignored input after the last step.
    ignored_seen: u64,
    /// Health checks and the watchdog.
    health: health::HealthModel,
}

impl Checker {
    /// A checker for a machine built from `spec` with `generation`.
    pub fn new(spec: &PodSpec, generation: Generation) -> Checker {
        Checker {
            timeout_ready: spec.timeout_ready,
            grace: spec.grace,
            started_by: spec.started_by,
            checks: spec.checks.clone(),
            generation,
            now: Time::ZERO,
            start_at: None,
            extensions: Vec::new(),
            spawn_answered: false,
            spawned: false,
            started: false,
            latched: CheckSet::EMPTY,
            probes: probe::ProbeModel::new(&spec.checks),
            probe_attempts_seen: 0,
            status_text: None,
            errno: None,
            closing: false,
            stop_requests: Vec::new(),
            stop_sent_at: None,
            kill_sent_at: None,
            seen_ready_deadline: None,
            seen_kill_deadline: None,
            exited: None,
            expected_start: None,
            expected_end: None,
            expect_stop: false,
            expect_kill: false,
            expect_sweep: false,
            expect_spawn: false,
            terminal_before_step: false,
            last_state_changed: None,
            probes_allowed: CheckSet::EMPTY,
            malformed_datagrams: 0,
            malformed_lines: 0,
            ignored_seen: 0,
            health: health::HealthModel::new(&spec.health, spec.watchdog),
        }
    }

    /// Whether the model has reached the terminal state.
    pub fn is_terminal(&self) -> bool {
        self.expected_end.is_some()
    }

    /// The instant SIGKILL was sent, if it was.
    pub fn kill_sent_at(&self) -> Option<Time> {
        self.kill_sent_at
    }

    /// The instant the stop signal was sent, if it was.
    pub fn stop_sent_at(&self) -> Option<Time> {
        self.stop_sent_at
    }

    /// The probe checks an attempt may be started for now.
    fn probe_waitable(&self) -> CheckSet {
        if !self.waiting() || self.closing || !self.started {
            return CheckSet::EMPTY;
        }
        CheckSet::first(self.checks.len()).difference(self.latched)
    }

    fn waiting(&self) -> bool {
        self.start_at.is_some() && self.expected_start.is_none()
    }

    fn alive(&self) -> bool {
        self.spawned && self.exited.is_none()
    }

    /// Records one step and checks every invariant.
    pub fn step(
        &mut self,
        event: &Event<'_>,
        now: Time,
        actions: &[Action],
        machine: &PodMachine,
    ) -> Result<(), Violation> {
        self.terminal_before_step = self.is_terminal();
        self.expect_stop = false;
        self.expect_kill = false;
        self.expect_sweep = false;
        self.expect_spawn = false;
        self.health.clear_step();
        self.probes.clear_step();
        self.now = self.now.max(now);
        let now = self.now;
        if let Event::Notify {
            generation,
            datagram,
        } = *event
        {
            // Counted whatever the state: malformed lines are never acted on.
            if generation == self.generation {
                let malformed = model_datagram(datagram).malformed;
                if malformed > 0 {
                    self.malformed_datagrams += 1;
                    self.malformed_lines += malformed;
                }
            }
        }

        // Health attempts fall due on timers, which may fire before a deadline that ends
        // the watch in the same step.
        self.health_allow(true);
        self.timers(now);
        // Probe attempts may start from timers that fire before the event, or because of
        // it: either state may justify one.
        let probes_before = self.probe_waitable();
        self.apply(event, now);
        self.timers(now);
        self.probes_allowed = probes_before.union(self.probe_waitable());
        self.health_allow(false);

        // Input about another generation's process is ignored, and counted so: the
        // machine acts on it in no way (its effects would show only later, if at all).
        let ignored = machine.stats().ignored;
        if let Some(generation) = event_generation(event).filter(|&g| g != self.generation) {
            if ignored != self.ignored_seen + 1 {
                return Self::violation(
                    "foreign-generation",
                    format!(
                        "{now}: {event:?} is about {generation}, not this pod's {}, and was taken in (ignored count {} -> {ignored})",
                        self.generation, self.ignored_seen
                    ),
                );
            }
        }
        self.ignored_seen = ignored;

        self.check_actions(actions, now)?;
        self.check_deadlines(machine, now)?;
        self.check_state(machine, now)?;
        self.check_health(machine, now)
    }
}

/// The generation an event reports about, for events that carry one.
fn event_generation(event: &Event<'_>) -> Option<Generation> {
    match *event {
        Event::Spawned { generation }
        | Event::SpawnFailed { generation, .. }
        | Event::Notify { generation, .. }
        | Event::OutputLine { generation, .. }
        | Event::ProbeFinished { generation, .. }
        | Event::HealthCheckChanged { generation, .. }
        | Event::Exited { generation, .. } => Some(generation),
        Event::Tick | Event::Start | Event::Close { .. } => None,
    }
}

/// A [`PodMachine`] with a [`Checker`] attached: every `handle` drains the actions and
/// checks every invariant.
///
/// # Examples
///
/// ```
/// use podvisor::core::{Action, CheckedPod, Event, PodSpec, Time};
///
/// let mut pod = CheckedPod::new(PodSpec::default()).unwrap();
/// let actions = pod.handle(Event::Start, Time::ZERO).unwrap();
/// assert!(matches!(actions[0], Action::Spawn { .. }));
/// ```
#[derive(Debug)]
pub struct CheckedPod {
    /// The machine under test.
    pub machine: PodMachine,
    /// The reference model.
    pub checker: Checker,
}

impl CheckedPod {
    /// A checked machine for `spec`.
    pub fn new(spec: PodSpec) -> Result<CheckedPod, super::SpecError> {
        CheckedPod::with_mutation(spec, None)
    }

    /// A checked, deliberately wrong machine. Tests only.
    #[doc(hidden)]
    pub fn with_mutation(
        spec: PodSpec,
        mutation: Option<super::Mutation>,
    ) -> Result<CheckedPod, super::SpecError> {
        let machine = PodMachine::with_mutation(spec.clone(), mutation)?;
        let checker = Checker::new(&spec, machine.generation());
        Ok(CheckedPod { machine, checker })
    }

    /// Feeds `event` at `now`, drains the actions, checks the invariants and returns the
    /// actions.
    pub fn handle(&mut self, event: Event<'_>, now: Time) -> Result<Vec<Action>, Violation> {
        self.machine.handle(event, now);
        let actions: Vec<Action> = std::iter::from_fn(|| self.machine.poll_action()).collect();
        self.checker.step(&event, now, &actions, &self.machine)?;
        Ok(actions)
    }

    /// Feeds `Tick` at the machine's next deadline, if it has one.
    pub fn advance_to_timeout(&mut self) -> Option<Result<Vec<Action>, Violation>> {
        let at = self.machine.poll_timeout()?;
        Some(self.handle(Event::Tick, at))
    }
}
