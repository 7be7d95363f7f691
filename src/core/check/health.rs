//! The checker's model of a pod after ready: health checks and the watchdog, written out
//! from the rules (DESIGN and the health issue) apart from the machine.
//!
//! The record: when the pod became ready; for each health check the start of its last
//! attempt, when that attempt ended, its running attempt, and its run of successes and
//! failures; the watchdog's interval and deadline. From them follow when an attempt may
//! start and must have started, when the pod turns unhealthy and why, and its health.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::core::event::{Action, GroupSignal};
use crate::core::outcome::{Health, Unhealthy};
use crate::core::pod::PodMachine;
use crate::core::spec::HealthCheck;
use crate::core::time::Time;

use super::datagram::ModelDatagram;
use super::{Checker, Expected, Violation};

/// One health check's history.
#[derive(Clone, Debug, Default)]
pub(super) struct CheckHistory {
    last_start: Option<Time>,
    last_end: Option<Time>,
    run_ok: u32,
    run_failed: u32,
    passed: bool,
    /// What the check looks at changed at this instant, while no attempt ran: an attempt
    /// is due then.
    changed_at: Option<Time>,
}

/// The record of everything after ready.
#[derive(Clone, Debug, Default)]
pub(super) struct HealthModel {
    specs: Vec<HealthCheck>,
    watchdog: Option<Duration>,
    ready_at: Option<Time>,
    history: Vec<CheckHistory>,
    /// Running attempts: attempt → (check, start).
    running: BTreeMap<u64, (usize, Time)>,
    /// Attempts that timed out in this step (the machine must cancel them).
    timed_out: Vec<u64>,
    interval: Option<Duration>,
    deadline: Option<Time>,
    stopping_sent: bool,
    pub(super) unhealthy: Option<Unhealthy>,
    /// Whether attempts may start in this step (before or after its event).
    allowed: bool,
    published: Option<Health>,
}

impl HealthModel {
    pub(super) fn new(specs: &[HealthCheck], watchdog: Option<Duration>) -> HealthModel {
        HealthModel {
            specs: specs.to_vec(),
            watchdog,
            interval: watchdog,
            history: vec![CheckHistory::default(); specs.len()],
            ..HealthModel::default()
        }
    }

    /// Forgets what concerned the previous step alone.
    pub(super) fn clear_step(&mut self) {
        self.timed_out.clear();
    }

    fn monitored(&self) -> bool {
        !self.specs.is_empty() || self.watchdog.is_some()
    }

    /// When check `c` must start its next attempt, if it runs none.
    fn due(&self, c: usize) -> Option<Time> {
        if self.running.values().any(|&(check, _)| check == c) {
            return None;
        }
        let h = &self.history[c];
        let scheduled = match h.last_start {
            None => self.ready_at,
            Some(start) => {
                let next = start
                    .checked_add(self.specs[c].interval)
                    .unwrap_or(Time::MAX);
                Some(h.last_end.map_or(next, |end| next.max(end)))
            }
        };
        match (scheduled, h.changed_at) {
            (Some(due), Some(changed)) => Some(due.min(changed)),
            (due, changed) => due.or(changed),
        }
    }

    /// The health the record calls for.
    pub(super) fn expected(&self) -> Option<Health> {
        if !self.monitored() || self.ready_at.is_none() {
            return None;
        }
        Some(match self.unhealthy {
            Some(cause) => Health::Unhealthy(cause),
            None if self.history.iter().all(|h| h.passed) => Health::Healthy,
            None => Health::Starting,
        })
    }
}

impl Checker {
    /// Whether the pod is ready and not closing: the span in which health is watched.
    fn watching(&self) -> bool {
        matches!(self.expected_start, Some(Expected::Ready(_))) && !self.closing && self.alive()
    }

    /// The pod became ready at `now`.
    pub(super) fn health_ready(&mut self, now: Time) {
        if !self.health.monitored() {
            return;
        }
        self.health.ready_at = Some(now);
        if !self.health.stopping_sent {
            self.health.deadline = self.health.interval.and_then(|i| now.checked_add(i));
        }
    }

    fn turn_unhealthy(&mut self, cause: Unhealthy, now: Time) {
        if self.watching() {
            self.health.unhealthy = Some(cause);
            self.stop(now, self.grace);
        }
    }

    /// One attempt of check `c` failed at `at` (the step is at `now`).
    fn health_failed(&mut self, c: usize, at: Time, now: Time) {
        let spec = self.health.specs[c];
        let ready_at = self.health.ready_at.unwrap_or(at);
        let h = &mut self.health.history[c];
        h.last_end = Some(now);
        h.run_ok = 0;
        let grace_period = !h.passed && at.saturating_duration_since(ready_at) < spec.start_period;
        if grace_period {
            return;
        }
        h.run_failed += 1;
        if h.run_failed >= spec.retries {
            let failures = h.run_failed;
            self.turn_unhealthy(Unhealthy::Check { check: c, failures }, now);
        }
    }

    /// Health deadlines due by `now`, in time order (the watchdog first on a tie, then
    /// checks by index), before the step's event.
    pub(super) fn health_timers(&mut self, now: Time) {
        loop {
            if !self.watching() {
                return;
            }
            let mut next: Option<(Time, Option<u64>)> = self.health.deadline.map(|d| (d, None));
            let mut by_check: Vec<(usize, u64, Time)> = self
                .health
                .running
                .iter()
                .map(|(&a, &(c, start))| {
                    let d = start
                        .checked_add(self.health.specs[c].timeout)
                        .unwrap_or(Time::MAX);
                    (c, a, d)
                })
                .collect();
            by_check.sort();
            for (_, attempt, d) in by_check {
                if next.is_none_or(|(t, _)| d < t) {
                    next = Some((d, Some(attempt)));
                }
            }
            match next {
                Some((at, None)) if at <= now => {
                    self.health.deadline = None;
                    let interval = self.health.interval.unwrap_or(Duration::ZERO);
                    self.turn_unhealthy(Unhealthy::Watchdog { interval }, now);
                }
                Some((at, Some(attempt))) if at <= now => {
                    let (c, _) = self.health.running.remove(&attempt).unwrap_or((0, at));
                    self.health.timed_out.push(attempt);
                    self.health_failed(c, at, now);
                }
                _ => return,
            }
        }
    }

    /// What health check `c` looks at changed at `now`: while health is watched and no
    /// attempt of it runs, one is due at once.
    pub(super) fn health_changed(&mut self, c: usize, now: Time) {
        let idle = !self.health.running.values().any(|&(check, _)| check == c);
        if self.watching() && idle && self.health.ready_at.is_some() {
            if let Some(h) = self.health.history.get_mut(c) {
                h.changed_at = Some(now);
            }
        }
    }

    /// A probe result for a health attempt; `false` if `attempt` is not one.
    pub(super) fn health_result(&mut self, attempt: u64, ok: bool, now: Time) -> bool {
        if self.health.timed_out.contains(&attempt) {
            return true;
        }
        let Some((c, _)) = self.health.running.remove(&attempt) else {
            return false;
        };
        if !self.watching() {
            return true;
        }
        if ok {
            let needed = self.health.specs[c].successes;
            let h = &mut self.health.history[c];
            h.last_end = Some(now);
            h.run_failed = 0;
            h.run_ok += 1;
            if h.run_ok >= needed {
                h.passed = true;
            }
        } else {
            self.health_failed(c, now, now);
        }
        true
    }

    /// The watchdog fields of a datagram of the pod's, while it runs.
    pub(super) fn health_notify(&mut self, message: &ModelDatagram, now: Time) {
        if self.health.watchdog.is_none() || self.closing {
            return;
        }
        if message.stopping {
            self.health.stopping_sent = true;
        }
        if self.health.stopping_sent {
            self.health.deadline = None;
            return;
        }
        let watching = self.watching();
        match message.watchdog_usec {
            Some(usec) if usec.is_zero() => {
                self.health.interval = None;
                self.health.deadline = None;
            }
            Some(usec) => {
                self.health.interval = Some(usec);
                if watching {
                    self.health.deadline = now.checked_add(usec);
                }
            }
            None => {}
        }
        if !watching {
            return;
        }
        if message.trigger {
            return self.turn_unhealthy(Unhealthy::WatchdogTrigger, now);
        }
        if message.ping {
            if let Some(interval) = self.health.interval {
                self.health.deadline = now.checked_add(interval);
            }
        }
        if let (Some(extend), Some(deadline)) = (message.extend, self.health.deadline) {
            if let Some(extended) = now.checked_add(extend) {
                self.health.deadline = Some(deadline.max(extended));
            }
        }
    }

    /// Called before and after the event: attempts may start in either span.
    pub(super) fn health_allow(&mut self, before: bool) {
        let watching = self.watching() && !self.health.specs.is_empty();
        self.health.allowed = if before {
            watching
        } else {
            self.health.allowed || watching
        };
    }

    /// The signal the stop must be.
    pub(super) fn stop_kind(&self) -> GroupSignal {
        match self.health.unhealthy {
            Some(Unhealthy::Watchdog { .. } | Unhealthy::WatchdogTrigger) => GroupSignal::Watchdog,
            _ => GroupSignal::Stop,
        }
    }

    /// One health action of the machine's.
    pub(super) fn health_action(&mut self, action: &Action, now: Time) -> Result<(), Violation> {
        match *action {
            Action::StartHealthProbe { check, attempt, .. } => {
                if check >= self.health.specs.len() || !self.health.allowed {
                    return Self::violation(
                        "health",
                        format!("{now}: health attempt {attempt} of check #{check} while not watching health"),
                    );
                }
                if attempt <= self.probe_attempts_seen {
                    return Self::violation(
                        "health",
                        format!("{now}: attempt number {attempt} reused"),
                    );
                }
                self.probe_attempts_seen = attempt;
                match self.health.due(check) {
                    None => {
                        return Self::violation(
                            "health",
                            format!("{now}: two attempts of health check #{check} at once"),
                        )
                    }
                    Some(due) if due > now => {
                        return Self::violation(
                            "health-schedule",
                            format!(
                                "{now}: health check #{check} attempt before it is due at {due}"
                            ),
                        )
                    }
                    Some(_) => {}
                }
                self.health.running.insert(attempt, (check, now));
                self.health.history[check].last_start = Some(now);
                self.health.history[check].last_end = None;
                self.health.history[check].changed_at = None;
            }
            Action::CancelHealthProbe { attempt, .. } => {
                let timed_out = self.health.timed_out.contains(&attempt);
                if self.health.running.remove(&attempt).is_none() && !timed_out {
                    return Self::violation(
                        "health",
                        format!("{now}: cancel of health attempt {attempt}, which is not running"),
                    );
                }
                self.health.timed_out.retain(|&a| a != attempt);
            }
            Action::HealthChanged { health } => self.health.published = Some(health),
            _ => {}
        }
        Ok(())
    }

    /// The health invariants after a step.
    pub(super) fn check_health(&self, machine: &PodMachine, now: Time) -> Result<(), Violation> {
        if let Some(&attempt) = self.health.timed_out.first() {
            return Self::violation(
                "health",
                format!("{now}: health attempt {attempt} timed out but was not cancelled"),
            );
        }
        let expected = self.health.expected();
        if machine.health() != expected {
            return Self::violation(
                "health",
                format!(
                    "{now}: machine health {:?}, the history calls for {expected:?}",
                    machine.health()
                ),
            );
        }
        if self.health.published != machine.health() {
            return Self::violation(
                "health-published",
                format!(
                    "{now}: last published health {:?}, machine has {:?}",
                    self.health.published,
                    machine.health()
                ),
            );
        }
        if !self.watching() {
            if !self.health.running.is_empty() {
                return Self::violation(
                    "health",
                    format!(
                        "{now}: health attempts {:?} still running after ready ended",
                        self.health.running
                    ),
                );
            }
            return Ok(());
        }
        let mut due = self.health.deadline;
        for c in 0..self.health.specs.len() {
            if let Some(next) = self.health.due(c) {
                if next <= now {
                    return Self::violation(
                        "health-schedule",
                        format!("{now}: health check #{c} was due at {next} and did not start"),
                    );
                }
                due = Some(due.map_or(next, |d| d.min(next)));
            }
        }
        for &(c, start) in self.health.running.values() {
            let d = start
                .checked_add(self.health.specs[c].timeout)
                .unwrap_or(Time::MAX);
            due = Some(due.map_or(d, |x| x.min(d)));
        }
        if machine.watchdog_deadline() != self.health.deadline {
            return Self::violation(
                "watchdog",
                format!(
                    "{now}: machine's watchdog deadline {:?}, the history calls for {:?}",
                    machine.watchdog_deadline(),
                    self.health.deadline
                ),
            );
        }
        if let Some(due) = due {
            if machine.poll_timeout().is_none_or(|t| t > due) {
                return Self::violation(
                    "timer-late",
                    format!(
                        "{now}: next timer {:?}, but a health deadline falls due at {due}",
                        machine.poll_timeout()
                    ),
                );
            }
        }
        Ok(())
    }
}
