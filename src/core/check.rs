//! [`Checker`]: an independent reference model of one pod, and the invariants of the
//! design (DESIGN.md §3) checked against a [`PodMachine`] after every step.
//!
//! The simulator, the property tests and the fuzz targets all use this one checker. It is
//! written as a plain record of what happened (when the start was asked, whether the
//! process exists, which checks succeeded, when the stop signal went out …) from which
//! the expected state, start result and end follow directly; it shares no code with the
//! machine, not even the notify datagram parser (the model reads datagrams with its own
//! [`model_datagram`]).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::event::{Action, Event, ExitStatus, Generation, GroupSignal};
use super::outcome::{CheckSet, End, StartFailure, StartResult};
use super::pod::PodMachine;
use super::spec::{Check, PodSpec, StartedBy};
use super::time::Time;
use super::State;

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
    Ready,
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
    deadline: Option<Time>,
    spawn_answered: bool,
    spawned: bool,
    started: bool,
    latched: CheckSet,
    probes_in_flight: BTreeMap<u64, usize>,
    probe_attempts_seen: u64,
    status_text: Option<String>,
    errno: Option<i32>,
    closing: bool,
    pending_grace: Option<Duration>,
    stop_sent_at: Option<Time>,
    kill_deadline: Option<Time>,
    kill_sent_at: Option<Time>,
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
            deadline: None,
            spawn_answered: false,
            spawned: false,
            started: false,
            latched: CheckSet::EMPTY,
            probes_in_flight: BTreeMap::new(),
            probe_attempts_seen: 0,
            status_text: None,
            errno: None,
            closing: false,
            pending_grace: None,
            stop_sent_at: None,
            kill_deadline: None,
            kill_sent_at: None,
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

        self.timers(now);
        // Probe attempts may start from timers that fire before the event, or because of
        // it: either state may justify one.
        let probes_before = self.probe_waitable();
        self.apply(event, now, actions);
        self.timers(now);
        self.probes_allowed = probes_before.union(self.probe_waitable());

        self.check_actions(actions, now)?;
        self.check_state(machine, now)
    }

    /// Deadlines that have passed by `now`, in the order they fall due.
    fn timers(&mut self, now: Time) {
        if self.waiting() {
            if let Some(deadline) = self.deadline {
                if deadline <= now {
                    self.expected_start = Some(Expected::TimedOut(deadline));
                    self.stop(now, self.grace);
                }
            }
        }
        if let Some(kill) = self.kill_deadline {
            if kill <= now && self.alive() && self.kill_sent_at.is_none() {
                self.kill_sent_at = Some(now);
                self.expect_kill = true;
            }
        }
    }

    fn stop(&mut self, now: Time, grace: Duration) {
        if self.start_at.is_none() {
            self.expected_end = Some(End::NeverSpawned);
            return;
        }
        if self.exited.is_some() || (self.spawn_answered && !self.spawned) {
            return;
        }
        if !self.closing {
            self.closing = true;
            if self.spawned {
                self.send_stop(now, grace);
            } else {
                self.pending_grace = Some(grace);
            }
        } else if self.stop_sent_at.is_some() {
            let shorter = now.checked_add(grace);
            self.kill_deadline = match (self.kill_deadline, shorter) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        } else {
            self.pending_grace = Some(self.pending_grace.map_or(grace, |g| g.min(grace)));
        }
    }

    fn send_stop(&mut self, now: Time, grace: Duration) {
        self.stop_sent_at = Some(now);
        self.expect_stop = true;
        self.kill_deadline = now.checked_add(grace);
    }

    // The model reads as "which event, then whether it fits"; keep that shape.
    #[allow(clippy::collapsible_match)]
    fn apply(&mut self, event: &Event<'_>, now: Time, actions: &[Action]) {
        if self.is_terminal() {
            return;
        }
        let ours = |g: &Generation| *g == self.generation;
        match *event {
            Event::Tick => {}
            Event::Start => {
                if self.start_at.is_none() {
                    self.start_at = Some(now);
                    self.deadline = self.timeout_ready.and_then(|t| now.checked_add(t));
                    self.expect_spawn = true;
                }
            }
            Event::Spawned { generation } if ours(&generation) => {
                if self.start_at.is_some() && !self.spawn_answered {
                    self.spawn_answered = true;
                    self.spawned = true;
                    if self.closing {
                        let grace = self.pending_grace.unwrap_or(self.grace);
                        self.send_stop(now, grace);
                    } else if self.started_by == StartedBy::Exec {
                        self.started = true;
                    }
                }
            }
            Event::SpawnFailed { generation, .. } if ours(&generation) => {
                if self.start_at.is_some() && !self.spawn_answered {
                    self.spawn_answered = true;
                    if self.expected_start.is_none() {
                        self.expected_start = Some(Expected::SpawnFailed);
                    }
                    self.expected_end = Some(End::NeverSpawned);
                }
            }
            Event::Notify {
                generation,
                datagram,
            } if ours(&generation) => {
                let message = model_datagram(datagram);
                if !self.alive() {
                    return;
                }
                if let Some(status) = &message.status {
                    self.status_text = Some(cut_status(status).to_owned());
                }
                if message.errno.is_some() {
                    self.errno = message.errno;
                }
                if !self.waiting() || self.closing {
                    return;
                }
                if let (Some(extend), Some(deadline)) = (message.extend, self.deadline) {
                    if let Some(extended) = now.checked_add(extend) {
                        self.deadline = Some(deadline.max(extended));
                    }
                }
                if message.ready {
                    for (i, check) in self.checks.iter().enumerate() {
                        if *check == Check::Notify {
                            self.latched.insert(i);
                        }
                    }
                }
                if message.ready || message.started {
                    self.started = true;
                }
            }
            Event::OutputLine {
                generation,
                stream,
                line,
            } if ours(&generation) => {
                if self.alive() && self.waiting() && !self.closing {
                    for (i, check) in self.checks.iter().enumerate() {
                        if let Check::Output { stream: s, text } = check {
                            let text = text.as_bytes();
                            if *s == stream && line.windows(text.len()).any(|w| w == text) {
                                self.latched.insert(i);
                            }
                        }
                    }
                }
            }
            Event::ProbeFinished {
                generation,
                attempt,
                ok,
            } if ours(&generation) => {
                // Due timers fire before the event: an attempt whose own timeout fell due
                // by now was cancelled in this very step, and its answer comes too late.
                let timed_out = actions.iter().any(|a| {
                    matches!(a, Action::CancelProbe { attempt: cancelled, .. } if *cancelled == attempt)
                });
                if !timed_out {
                    if let Some(check) = self.probes_in_flight.remove(&attempt) {
                        if ok {
                            self.latched.insert(check);
                        }
                    }
                }
            }
            Event::Exited { generation, status } if ours(&generation) => {
                if self.alive() {
                    self.exited = Some(status);
                    self.expect_sweep = true;
                    if self.expected_start.is_none() {
                        self.expected_start = Some(if self.started {
                            Expected::ExitedEarly(status)
                        } else {
                            Expected::RuntimeFailed(status)
                        });
                    }
                    self.expected_end = Some(if self.kill_sent_at.is_some() {
                        End::Killed(status)
                    } else if self.stop_sent_at.is_some() {
                        End::Closed(status)
                    } else {
                        End::Exited(status)
                    });
                }
            }
            Event::Close { grace } => {
                if self.expected_start.is_none() {
                    self.expected_start = Some(Expected::Cancelled);
                }
                self.stop(now, grace.unwrap_or(self.grace));
            }
            _ => {}
        }
        // Ready: started, every check latched, strictly before the deadline (a due
        // deadline fired in `timers` before the event).
        if self.waiting()
            && !self.closing
            && self.started
            && self.alive()
            && self.latched == CheckSet::first(self.checks.len())
        {
            self.expected_start = Some(Expected::Ready);
        }
    }

    fn violation(invariant: &'static str, message: String) -> Result<(), Violation> {
        Err(Violation { invariant, message })
    }

    fn check_actions(&mut self, actions: &[Action], now: Time) -> Result<(), Violation> {
        if self.terminal_before_step && !actions.is_empty() {
            return Self::violation(
                "no-action-after-end",
                format!("{now}: actions {actions:?} after the pod ended"),
            );
        }
        let (mut spawn, mut stop, mut kill, mut sweep) = (false, false, false, false);
        let mut last_state = None;
        for (i, action) in actions.iter().enumerate() {
            let generation = match *action {
                Action::Spawn { generation }
                | Action::StartProbe { generation, .. }
                | Action::CancelProbe { generation, .. }
                | Action::SignalGroup { generation, .. }
                | Action::SweepGroup { generation } => Some(generation),
                Action::StateChanged { .. } => None,
            };
            if generation.is_some_and(|g| g != self.generation) {
                return Self::violation(
                    "generation",
                    format!("{now}: {action:?} for a foreign generation"),
                );
            }
            match *action {
                Action::Spawn { .. } => spawn = true,
                Action::SignalGroup {
                    signal: GroupSignal::Stop,
                    ..
                } => {
                    stop = true;
                    if actions.get(i + 1)
                        != Some(&Action::SignalGroup {
                            generation: self.generation,
                            signal: GroupSignal::Continue,
                        })
                    {
                        return Self::violation(
                            "stop-then-continue",
                            format!("{now}: stop signal not followed by SIGCONT: {actions:?}"),
                        );
                    }
                }
                Action::SignalGroup {
                    signal: GroupSignal::Continue,
                    ..
                } => {}
                Action::SignalGroup {
                    signal: GroupSignal::Kill,
                    ..
                } => kill = true,
                Action::SweepGroup { .. } => sweep = true,
                Action::StartProbe { check, attempt, .. } => {
                    if !matches!(self.checks.get(check), Some(Check::Probe(_))) {
                        return Self::violation(
                            "probe",
                            format!("{now}: probe of check #{check}, which is not a probe"),
                        );
                    }
                    if !self.probes_allowed.contains(check) {
                        return Self::violation(
                            "probe",
                            format!("{now}: probe attempt {attempt} of check #{check} while not waiting on it"),
                        );
                    }
                    if attempt <= self.probe_attempts_seen {
                        return Self::violation(
                            "probe",
                            format!("{now}: probe attempt number {attempt} reused"),
                        );
                    }
                    self.probe_attempts_seen = attempt;
                    if self.probes_in_flight.values().any(|&c| c == check) {
                        return Self::violation(
                            "probe",
                            format!("{now}: two attempts of check #{check} at once"),
                        );
                    }
                    self.probes_in_flight.insert(attempt, check);
                }
                Action::CancelProbe { attempt, .. } => {
                    if self.probes_in_flight.remove(&attempt).is_none() {
                        return Self::violation(
                            "probe",
                            format!("{now}: cancel of attempt {attempt}, which is not running"),
                        );
                    }
                }
                Action::StateChanged { state } => last_state = Some(state),
            }
        }
        let expectations = [
            ("spawn", spawn, self.expect_spawn),
            ("stop-signal", stop, self.expect_stop),
            ("kill-timing", kill, self.expect_kill),
            ("sweep", sweep, self.expect_sweep),
        ];
        for (name, did, expected) in expectations {
            if did != expected {
                let (deadline, stop_at) = (self.kill_deadline, self.stop_sent_at);
                return Self::violation(
                    name,
                    format!(
                        "{now}: {} {name} action, the history {} one (stop sent {stop_at:?}, kill due {deadline:?}); actions: {actions:?}",
                        if did { "unexpected" } else { "missing" },
                        if expected { "calls for" } else { "calls for no" },
                    ),
                );
            }
        }
        if let Some(state) = last_state {
            self.last_state_changed = Some(state);
        }
        Ok(())
    }

    fn expected_state(&self) -> State {
        if self.is_terminal() {
            State::Ended
        } else if self.kill_sent_at.is_some() {
            State::Killing
        } else if self.closing {
            State::Stopping
        } else if self.expected_start == Some(Expected::Ready) {
            State::Ready
        } else if self.started {
            State::Started
        } else if self.spawned {
            State::Starting
        } else if self.start_at.is_some() {
            State::Spawning
        } else {
            State::Created
        }
    }

    fn check_state(&self, machine: &PodMachine, now: Time) -> Result<(), Violation> {
        let expected = self.expected_state();
        if machine.state() != expected {
            return Self::violation(
                "state",
                format!(
                    "{now}: machine is {:?}, the history calls for {expected:?}",
                    machine.state()
                ),
            );
        }
        if let Some(state) = self.last_state_changed {
            if state != machine.state() {
                return Self::violation(
                    "state-published",
                    format!(
                        "{now}: last published state {state:?}, machine is {:?}",
                        machine.state()
                    ),
                );
            }
        }
        self.check_start_result(machine.start_result(), now)?;
        let stats = machine.stats();
        if (stats.malformed_notify, stats.malformed_notify_fields)
            != (self.malformed_datagrams, self.malformed_lines)
        {
            return Self::violation(
                "malformed-notify",
                format!(
                    "{now}: machine counted {} malformed datagrams with {} malformed lines, the history has {} with {}",
                    stats.malformed_notify,
                    stats.malformed_notify_fields,
                    self.malformed_datagrams,
                    self.malformed_lines
                ),
            );
        }
        if machine.end() != self.expected_end {
            return Self::violation(
                "end",
                format!(
                    "{now}: machine end {:?}, the history calls for {:?}",
                    machine.end(),
                    self.expected_end
                ),
            );
        }
        if self.is_terminal() && !self.probes_in_flight.is_empty() {
            return Self::violation(
                "probe",
                format!(
                    "{now}: pod ended with probe attempts still running: {:?}",
                    self.probes_in_flight
                ),
            );
        }
        let timeout = machine.poll_timeout();
        if let Some(t) = timeout {
            if t <= now {
                return Self::violation("timer-in-past", format!("{now}: timer armed for {t}"));
            }
        }
        if self.is_terminal() && timeout.is_some() {
            return Self::violation(
                "no-timer-after-end",
                format!("{now}: timer {timeout:?} after the pod ended"),
            );
        }
        let due = if self.waiting() && !self.closing {
            self.deadline
        } else if self.alive() && self.kill_sent_at.is_none() {
            self.kill_deadline
        } else {
            None
        };
        if let Some(due) = due {
            if timeout.is_none_or(|t| t > due) {
                return Self::violation(
                    "timer-late",
                    format!("{now}: next timer {timeout:?}, but a deadline falls due at {due}"),
                );
            }
        }
        Ok(())
    }

    fn check_start_result(&self, got: Option<&StartResult>, now: Time) -> Result<(), Violation> {
        let start_at = self.start_at.unwrap_or(Time::ZERO);
        let ok = match (&self.expected_start, got) {
            (None, None) => true,
            (Some(Expected::Ready), Some(StartResult::Ready { after })) => {
                start_at.checked_add(*after).is_some_and(|t| t <= now)
                    && self
                        .deadline
                        .is_none_or(|d| start_at.checked_add(*after).is_some_and(|t| t < d))
            }
            (
                Some(Expected::SpawnFailed),
                Some(StartResult::FailedToStart(StartFailure::Spawn(_))),
            ) => true,
            (
                Some(Expected::RuntimeFailed(s)),
                Some(StartResult::FailedToStart(StartFailure::Runtime {
                    status,
                    error,
                    errno,
                })),
            ) => s == status && *error == self.status_text && *errno == self.errno,
            (Some(Expected::ExitedEarly(s)), Some(StartResult::ExitedEarly { status })) => {
                s == status
            }
            (
                Some(Expected::TimedOut(deadline)),
                Some(StartResult::TimedOut { waited, pending }),
            ) => {
                start_at.checked_add(*waited) == Some(*deadline)
                    && *pending == CheckSet::first(self.checks.len()).difference(self.latched)
            }
            (Some(Expected::Cancelled), Some(StartResult::Cancelled)) => true,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Self::violation(
                "outcome",
                format!(
                    "{now}: machine start result {got:?}, the history calls for {:?} (start {:?}, deadline {:?}, started {}, latched {:?})",
                    self.expected_start, self.start_at, self.deadline, self.started, self.latched
                ),
            )
        }
    }
}

/// What the model takes from one notify datagram.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ModelDatagram {
    pub(crate) ready: bool,
    pub(crate) started: bool,
    pub(crate) stopping: bool,
    pub(crate) barrier: bool,
    pub(crate) status: Option<String>,
    pub(crate) errno: Option<i32>,
    pub(crate) main_pid: Option<u32>,
    pub(crate) extend: Option<Duration>,
    pub(crate) malformed: u64,
}

/// The design's rule for notify datagrams (DESIGN §4 and §6), written out apart from the
/// machine's parser: the datagram is cut at every `\n`; an empty piece is nothing; a piece
/// is one field `KEY=VALUE`, split at its first `=`, with a non-empty key, no NUL byte and
/// valid UTF-8, whose value is a number where the key is `ERRNO` (i32), `MAINPID` (u32) or
/// `EXTEND_TIMEOUT_USEC` (u64, microseconds). Any other piece is malformed: counted, and
/// without effect. Flags are set by the value `1` only; the last valid `STATUS=` wins.
pub(crate) fn model_datagram(datagram: &[u8]) -> ModelDatagram {
    let mut model = ModelDatagram::default();
    let mut rest = datagram;
    while !rest.is_empty() {
        let (piece, after) = match rest.iter().position(|&b| b == b'\n') {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &[][..]),
        };
        rest = after;
        if piece.is_empty() {
            continue;
        }
        let Some(eq) = piece.iter().position(|&b| b == b'=') else {
            model.malformed += 1;
            continue;
        };
        if eq == 0 || piece.contains(&0) {
            model.malformed += 1;
            continue;
        }
        let (Ok(key), Ok(value)) = (
            String::from_utf8(piece[..eq].to_vec()),
            String::from_utf8(piece[eq + 1..].to_vec()),
        ) else {
            model.malformed += 1;
            continue;
        };
        let valid = match key.as_str() {
            "READY" => {
                model.ready = model.ready || value == "1";
                true
            }
            "X_PODVISOR_STARTED" => {
                model.started = model.started || value == "1";
                true
            }
            "STOPPING" => {
                model.stopping = model.stopping || value == "1";
                true
            }
            "BARRIER" => {
                model.barrier = model.barrier || value == "1";
                true
            }
            "STATUS" => {
                model.status = Some(value);
                true
            }
            "ERRNO" => value.parse::<i32>().map(|n| model.errno = Some(n)).is_ok(),
            "MAINPID" => value
                .parse::<u32>()
                .map(|n| model.main_pid = Some(n))
                .is_ok(),
            "EXTEND_TIMEOUT_USEC" => value
                .parse::<u64>()
                .map(|n| model.extend = Some(Duration::from_micros(n)))
                .is_ok(),
            _ => true,
        };
        if !valid {
            model.malformed += 1;
        }
    }
    model
}

/// The first 4096 bytes of `status`, cut back to a character boundary.
fn cut_status(status: &str) -> &str {
    let mut end = 0;
    for (i, c) in status.char_indices() {
        if i + c.len_utf8() > 4096 {
            break;
        }
        end = i + c.len_utf8();
    }
    &status[..end]
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
