//! The pod machine's deadlines: the ready deadline, SIGKILL at the end of the grace
//! period, and each probe's next attempt and attempt timeout; which is due first, and what
//! firing it does.

use std::time::Duration;

use crate::core::event::{Action, GroupSignal};
use crate::core::outcome::StartResult;
use crate::core::time::Time;
use crate::core::State;

use super::PodMachine;

/// One in-flight or scheduled probe check.
#[derive(Clone, Copy, Debug)]
pub(super) struct ProbeTimer {
    pub(super) check: usize,
    pub(super) initial: Duration,
    pub(super) max: Duration,
    pub(super) attempt_timeout: Duration,
    /// The delay before the next attempt after a failure.
    pub(super) interval: Duration,
    pub(super) next_at: Option<Time>,
    pub(super) in_flight: Option<(u64, Time)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    Ready,
    Kill,
    ProbeNext(usize),
    ProbeDeadline(usize),
    Watchdog,
    HealthNext(usize),
    HealthDeadline(usize),
}

impl PodMachine {
    pub(super) fn next_timer(&self) -> Option<(Time, Timer)> {
        let mut best: Option<(Time, Timer)> = None;
        let mut consider = |t: Option<Time>, timer: Timer| {
            if let Some(t) = t {
                if best.is_none_or(|(b, _)| t < b) {
                    best = Some((t, timer));
                }
            }
        };
        consider(self.ready_deadline, Timer::Ready);
        consider(self.kill_at, Timer::Kill);
        consider(self.watchdog_at, Timer::Watchdog);
        for (i, probe) in self.probes.iter().enumerate() {
            consider(probe.in_flight.map(|(_, d)| d), Timer::ProbeDeadline(i));
            consider(probe.next_at, Timer::ProbeNext(i));
        }
        for (i, check) in self.health_checks.iter().enumerate() {
            consider(check.in_flight.map(|(_, d, _)| d), Timer::HealthDeadline(i));
            consider(check.next_at, Timer::HealthNext(i));
        }
        best
    }

    /// Fires every timer due by `now`. The ready and kill deadlines go first: they decide
    /// about what happened before them, and no event can have arrived between a probe
    /// timer that is overdue and `now`, so starting a probe at `now` when the deadline has
    /// also passed would only start an attempt to cancel it.
    pub(super) fn fire_due(&mut self, now: Time) {
        loop {
            let decision = match (self.ready_deadline, self.kill_at) {
                (Some(t), _) if t <= now => Some((t, Timer::Ready)),
                (_, Some(t)) if t <= now => Some((t, Timer::Kill)),
                _ => None,
            };
            match decision.or_else(|| self.next_timer().filter(|&(at, _)| at <= now)) {
                Some((at, timer)) => self.fire(timer, at, now),
                None => break,
            }
        }
    }

    fn fire(&mut self, timer: Timer, at: Time, now: Time) {
        match timer {
            Timer::Ready => {
                self.ready_deadline = None;
                let waited = at.saturating_duration_since(self.start_at.unwrap_or(at));
                self.start_result = Some(StartResult::TimedOut {
                    waited,
                    pending: self.pending_checks(),
                });
                self.begin_stop(now, self.spec.grace, false);
            }
            Timer::Kill => {
                self.kill_at = None;
                self.actions.push_back(Action::SignalGroup {
                    generation: self.generation,
                    signal: GroupSignal::Kill,
                });
                self.set_state(State::Killing);
            }
            Timer::ProbeNext(i) => {
                let attempt = self.next_attempt;
                self.next_attempt += 1;
                let probe = &mut self.probes[i];
                probe.next_at = None;
                // The attempt's own deadline counts from when it really starts.
                let deadline = now.checked_add(probe.attempt_timeout).unwrap_or(Time::MAX);
                probe.in_flight = Some((attempt, deadline));
                self.actions.push_back(Action::StartProbe {
                    generation: self.generation,
                    check: probe.check,
                    attempt,
                });
            }
            Timer::ProbeDeadline(i) => {
                let probe = &mut self.probes[i];
                if let Some((attempt, _)) = probe.in_flight.take() {
                    self.actions.push_back(Action::CancelProbe {
                        generation: self.generation,
                        check: probe.check,
                        attempt,
                    });
                }
                self.schedule_retry(i, now);
            }
            Timer::Watchdog => self.watchdog_expired(now),
            Timer::HealthNext(i) => self.start_health_attempt(i, now),
            Timer::HealthDeadline(i) => {
                if let Some((attempt, _, _)) = self.health_checks[i].in_flight {
                    self.actions.push_back(Action::CancelHealthProbe {
                        generation: self.generation,
                        check: i,
                        attempt,
                        timed_out: true,
                    });
                }
                self.health_result(i, false, at, now);
            }
        }
    }
}
