//! The pod checker's invariants: the actions the machine asks for, its state, start result
//! and end after every step, judged against the record.

use crate::core::event::{Action, GroupSignal};
use crate::core::outcome::{CheckSet, StartFailure, StartResult};
use crate::core::pod::PodMachine;
use crate::core::time::Time;
use crate::core::State;

use super::{Checker, Expected, Violation};

impl Checker {
    pub(super) fn violation(invariant: &'static str, message: String) -> Result<(), Violation> {
        Err(Violation { invariant, message })
    }

    pub(super) fn check_actions(&mut self, actions: &[Action], now: Time) -> Result<(), Violation> {
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
                | Action::SweepGroup { generation }
                | Action::StartHealthProbe { generation, .. }
                | Action::CancelHealthProbe { generation, .. } => Some(generation),
                Action::StateChanged { .. } | Action::HealthChanged { .. } => None,
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
                    signal: signal @ (GroupSignal::Stop | GroupSignal::Watchdog),
                    ..
                } => {
                    stop = true;
                    if signal != self.stop_kind() {
                        return Self::violation(
                            "stop-signal",
                            format!(
                                "{now}: {signal:?} sent, the history calls for {:?}",
                                self.stop_kind()
                            ),
                        );
                    }
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
                Action::StartProbe { .. } | Action::CancelProbe { .. } => {
                    self.probe_action(action, now)?
                }
                Action::StateChanged { state } => last_state = Some(state),
                Action::StartHealthProbe { .. }
                | Action::CancelHealthProbe { .. }
                | Action::HealthChanged { .. } => self.health_action(action, now)?,
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
                let (deadline, stop_at) = (self.kill_instant(), self.stop_sent_at);
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

    pub(super) fn expected_state(&self) -> State {
        if self.is_terminal() {
            State::Ended
        } else if self.kill_sent_at.is_some() {
            State::Killing
        } else if self.closing {
            State::Stopping
        } else if matches!(self.expected_start, Some(Expected::Ready(_))) {
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

    pub(super) fn check_state(&self, machine: &PodMachine, now: Time) -> Result<(), Violation> {
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
        let probe_due = self.check_probes(now)?;
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
        let deadline = if self.waiting() && !self.closing {
            self.ready_deadline()
                .map(|t| (t, "the ready deadline".to_owned()))
        } else if self.alive() && self.kill_sent_at.is_none() {
            self.kill_instant().map(|t| (t, "SIGKILL".to_owned()))
        } else {
            None
        };
        let due = match (deadline, probe_due) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
        if let Some((due, what)) = due {
            if timeout.is_none_or(|t| t > due) {
                return Self::violation(
                    "timer-late",
                    format!("{now}: next timer {timeout:?}, but {what} falls due at {due}"),
                );
            }
        }
        Ok(())
    }

    /// The ready deadline and the SIGKILL instant the machine holds, against the record's:
    /// the ready deadline never moves earlier, SIGKILL never later, and each is the one the
    /// record calls for.
    pub(super) fn check_deadlines(
        &mut self,
        machine: &PodMachine,
        now: Time,
    ) -> Result<(), Violation> {
        let (ready, kill) = (machine.ready_deadline(), machine.kill_deadline());
        let (seen_ready, seen_kill) = (self.seen_ready_deadline, self.seen_kill_deadline);
        self.seen_ready_deadline = ready;
        self.seen_kill_deadline = kill;
        if let (Some(before), Some(after)) = (seen_ready, ready) {
            if after < before {
                return Self::violation(
                    "ready-deadline",
                    format!("{now}: the ready deadline moved earlier, from {before} to {after}"),
                );
            }
        }
        if let (Some(before), Some(after)) = (seen_kill, kill) {
            if after > before {
                return Self::violation(
                    "kill-deadline",
                    format!("{now}: SIGKILL moved later, from {before} to {after}"),
                );
            }
        }
        let expected_ready = if self.waiting() && !self.closing {
            self.ready_deadline()
        } else {
            None
        };
        if ready != expected_ready {
            return Self::violation(
                "ready-deadline",
                format!(
                    "{now}: machine's ready deadline {ready:?}, the history calls for {expected_ready:?} (start {:?} + {:?}, extensions {:?})",
                    self.start_at, self.timeout_ready, self.extensions
                ),
            );
        }
        let expected_kill = if self.alive() && self.kill_sent_at.is_none() {
            self.kill_instant()
        } else {
            None
        };
        if kill != expected_kill {
            return Self::violation(
                "kill-deadline",
                format!(
                    "{now}: machine's SIGKILL instant {kill:?}, the history calls for {expected_kill:?} (stop sent {:?}, requests {:?})",
                    self.stop_sent_at, self.stop_requests
                ),
            );
        }
        Ok(())
    }

    pub(super) fn check_start_result(
        &self,
        got: Option<&StartResult>,
        now: Time,
    ) -> Result<(), Violation> {
        let start_at = self.start_at.unwrap_or(Time::ZERO);
        let ok = match (&self.expected_start, got) {
            (None, None) => true,
            // Exactly the time from the start to the instant readiness was reached, and
            // before the deadline.
            (Some(Expected::Ready(at)), Some(StartResult::Ready { after })) => {
                start_at.checked_add(*after) == Some(*at)
                    && self.ready_deadline().is_none_or(|d| *at < d)
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
                    self.expected_start, self.start_at, self.ready_deadline(), self.started, self.latched
                ),
            )
        }
    }
}
