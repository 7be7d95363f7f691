//! The pod machine after ready: health checks (their schedule, thresholds and start
//! period) and the notify watchdog.

use std::time::Duration;

use crate::core::event::Action;
use crate::core::notify::NotifyMessage;
use crate::core::outcome::{Health, Unhealthy};
use crate::core::spec::HealthCheck;
use crate::core::time::Time;
use crate::core::State;

use super::{Mutation, PodMachine};

/// One health check's schedule and counters.
#[derive(Clone, Copy, Debug)]
pub(super) struct HealthTimer {
    pub(super) spec: HealthCheck,
    /// When the next attempt starts, if none runs.
    pub(super) next_at: Option<Time>,
    /// The running attempt: its number, its deadline, when it started.
    pub(super) in_flight: Option<(u64, Time, Time)>,
    pub(super) failures: u32,
    pub(super) successes: u32,
    /// The check has passed at least once (which also ends its start period).
    pub(super) passed: bool,
}

impl HealthTimer {
    pub(super) fn new(spec: HealthCheck) -> HealthTimer {
        HealthTimer {
            spec,
            next_at: None,
            in_flight: None,
            failures: 0,
            successes: 0,
            passed: false,
        }
    }
}

impl PodMachine {
    /// The pod became ready: health checks start, the watchdog is armed.
    pub(super) fn start_health(&mut self, now: Time) {
        if self.health_checks.is_empty() && self.spec.watchdog.is_none() {
            return;
        }
        self.ready_at = Some(now);
        for check in &mut self.health_checks {
            check.next_at = Some(now);
        }
        if let Some(interval) = self.watchdog_interval.filter(|_| !self.child_stopping) {
            self.watchdog_at = now.checked_add(interval);
        }
        let health = if self.health_checks.is_empty() {
            Health::Healthy
        } else {
            Health::Starting
        };
        self.set_health(health);
    }

    fn set_health(&mut self, health: Health) {
        if self.health != Some(health) {
            self.health = Some(health);
            self.actions.push_back(Action::HealthChanged { health });
        }
    }

    /// Cancels every running health attempt and disarms the watchdog.
    pub(super) fn stop_health(&mut self) {
        let generation = self.generation;
        for (check, timer) in self.health_checks.iter_mut().enumerate() {
            timer.next_at = None;
            if let Some((attempt, _, _)) = timer.in_flight.take() {
                self.actions.push_back(Action::CancelHealthProbe {
                    generation,
                    check,
                    attempt,
                    timed_out: false,
                });
            }
        }
        self.watchdog_at = None;
    }

    /// Starts an attempt of health check `check` at `now`.
    pub(super) fn start_health_attempt(&mut self, check: usize, now: Time) {
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        let timer = &mut self.health_checks[check];
        timer.next_at = None;
        let deadline = now.checked_add(timer.spec.timeout).unwrap_or(Time::MAX);
        timer.in_flight = Some((attempt, deadline, now));
        self.actions.push_back(Action::StartHealthProbe {
            generation: self.generation,
            check,
            attempt,
        });
    }

    /// Consecutive failures of health check `check` counted so far (0 once it passes, and
    /// while failures fall in its start period).
    pub fn health_failures(&self, check: usize) -> u32 {
        self.health_checks.get(check).map_or(0, |t| t.failures)
    }

    /// What health check `check` looks at changed at `now`: an attempt starts at once,
    /// while health is watched and none of it runs.
    pub(super) fn health_check_changed(&mut self, check: usize, now: Time) {
        let waiting = self
            .health_checks
            .get(check)
            .is_some_and(|t| t.next_at.is_some());
        if self.state == State::Ready && waiting {
            self.start_health_attempt(check, now);
        }
    }

    /// The health attempt numbered `attempt`, if one runs.
    pub(super) fn health_attempt(&self, attempt: u64) -> Option<usize> {
        self.health_checks
            .iter()
            .position(|t| matches!(t.in_flight, Some((a, _, _)) if a == attempt))
    }

    /// Health check `check`'s running attempt ended at `at` (`ok`, or failed: an error
    /// or its timeout); the next one is scheduled from `now`.
    pub(super) fn health_result(&mut self, check: usize, ok: bool, at: Time, now: Time) {
        let ready_at = self.ready_at.unwrap_or(at);
        let mutation = self.mutation;
        let timer = &mut self.health_checks[check];
        let Some((_, _, started)) = timer.in_flight.take() else {
            return;
        };
        let next = started
            .checked_add(timer.spec.interval)
            .unwrap_or(Time::MAX);
        timer.next_at = Some(next.max(now));
        if ok {
            timer.failures = 0;
            timer.successes = timer.successes.saturating_add(1);
            if timer.successes >= timer.spec.successes {
                timer.passed = true;
            }
            if self.health == Some(Health::Starting) && self.health_checks.iter().all(|t| t.passed)
            {
                self.set_health(Health::Healthy);
            }
            return;
        }
        timer.successes = 0;
        let in_start_period = !timer.passed
            && ready_at
                .checked_add(timer.spec.start_period)
                .is_some_and(|end| at < end)
            && mutation != Some(Mutation::StartPeriodIgnored);
        if in_start_period {
            return;
        }
        timer.failures = timer.failures.saturating_add(1);
        let threshold = if mutation == Some(Mutation::HealthThresholdOffByOne) {
            timer.spec.retries.saturating_sub(1).max(1)
        } else {
            timer.spec.retries
        };
        if timer.failures >= threshold {
            let failures = timer.failures;
            self.become_unhealthy(Unhealthy::Check { check, failures }, now);
        }
    }

    /// The pod is unhealthy: it is closed the usual way (the watchdog signal instead of
    /// the stop signal when the watchdog decided).
    pub(super) fn become_unhealthy(&mut self, cause: Unhealthy, now: Time) {
        if self.state != State::Ready {
            return;
        }
        self.unhealthy = Some(cause);
        self.set_health(Health::Unhealthy(cause));
        self.begin_stop(now, self.spec.grace, false);
    }

    /// The watchdog fields of a datagram that arrived at `now`.
    pub(super) fn watchdog_notify(&mut self, message: &NotifyMessage<'_>, now: Time) {
        if self.spec.watchdog.is_none() {
            return;
        }
        if message.stopping || self.child_stopping {
            self.watchdog_at = None;
            return;
        }
        let ready = self.state == State::Ready;
        if let Some(interval) = message.watchdog_interval {
            if interval.is_zero() {
                self.watchdog_interval = None;
                self.watchdog_at = None;
            } else {
                self.watchdog_interval = Some(interval);
                if ready {
                    self.watchdog_at = now.checked_add(interval);
                }
            }
        }
        if !ready {
            return;
        }
        if message.watchdog_trigger {
            return self.become_unhealthy(Unhealthy::WatchdogTrigger, now);
        }
        let Some(interval) = self.watchdog_interval else {
            return;
        };
        let rearm = message.watchdog
            || (self.mutation == Some(Mutation::WatchdogRearmedByMalformed)
                && message.malformed > 0);
        if rearm {
            self.watchdog_at = now.checked_add(interval);
        }
        if let (Some(extend), Some(at)) = (message.extend_timeout, self.watchdog_at) {
            if let Some(extended) = now.checked_add(extend) {
                self.watchdog_at = Some(at.max(extended));
            }
        }
    }

    /// The watchdog expired at `at`.
    pub(super) fn watchdog_expired(&mut self, now: Time) {
        self.watchdog_at = None;
        let interval = self.watchdog_interval.unwrap_or(Duration::ZERO);
        self.become_unhealthy(Unhealthy::Watchdog { interval }, now);
    }
}
