//! The checker's model of readiness probes, written from the schedule as documented on
//! `Check::Probe` and `ProbeSchedule`, apart from the machine (which keeps a doubling
//! interval per probe):
//!
//! - the first attempt starts at the instant the pod started;
//! - an attempt still running `attempt_timeout` after it started is cancelled and counts
//!   as a failure;
//! - after the k-th failure of a check, its next attempt starts `initial_interval` ×
//!   2^(k−1) after that failure, but never more than `max_interval` after it;
//! - all this only while the pod waits for ready, is not closing, and the check has not
//!   succeeded.
//!
//! From the record (the start instant, each check's failures and the last one's instant,
//! the running attempts) follow when an attempt may start and when it must have.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::core::event::Action;
use crate::core::spec::{Check, ProbeSchedule};
use crate::core::time::Time;

use super::{Checker, Violation};

/// One probe check's failures: how many, and when the last one was.
#[derive(Clone, Copy, Debug, Default)]
struct Failures {
    count: u32,
    last: Option<Time>,
}

/// The record of every readiness probe.
#[derive(Clone, Debug, Default)]
pub(super) struct ProbeModel {
    /// Each readiness check's schedule; `None` for checks that are not probes.
    schedules: Vec<Option<ProbeSchedule>>,
    failures: Vec<Failures>,
    /// Running attempts: attempt → (check, start).
    running: BTreeMap<u64, (usize, Time)>,
    /// Attempts that timed out in this step (the machine must cancel them).
    timed_out: Vec<u64>,
    /// The instant the pod started: every probe's first attempt falls due then.
    started_at: Option<Time>,
}

/// The delay between a check's `failures`-th failure and its next attempt.
fn retry_delay(schedule: &ProbeSchedule, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1);
    2u32.checked_pow(doublings)
        .and_then(|factor| schedule.initial_interval.checked_mul(factor))
        .map_or(schedule.max_interval, |d| d.min(schedule.max_interval))
}

impl ProbeModel {
    pub(super) fn new(checks: &[Check]) -> ProbeModel {
        ProbeModel {
            schedules: checks
                .iter()
                .map(|c| match c {
                    Check::Probe(s) => Some(*s),
                    _ => None,
                })
                .collect(),
            failures: vec![Failures::default(); checks.len()],
            ..ProbeModel::default()
        }
    }

    /// Forgets what concerned the previous step alone.
    pub(super) fn clear_step(&mut self) {
        self.timed_out.clear();
    }

    /// The pod started at `now`.
    pub(super) fn started(&mut self, now: Time) {
        self.started_at.get_or_insert(now);
    }

    fn running_attempt(&self, c: usize) -> Option<(u64, Time)> {
        self.running
            .iter()
            .find(|(_, &(check, _))| check == c)
            .map(|(&attempt, &(_, start))| (attempt, start))
    }

    /// When check `c`'s next attempt is due, if it is a probe that runs no attempt now
    /// (`None` too when that instant is past the end of time). Whether the pod still waits
    /// on it is the caller's question.
    fn due(&self, c: usize) -> Option<Time> {
        let schedule = self.schedules.get(c).copied().flatten()?;
        if self.running_attempt(c).is_some() {
            return None;
        }
        let failures = self.failures[c];
        match failures.last {
            None => self.started_at,
            Some(at) => at.checked_add(retry_delay(&schedule, failures.count)),
        }
    }

    /// When an attempt of check `c` that started at `start` times out.
    fn timeout(&self, c: usize, start: Time) -> Time {
        self.schedules[c]
            .and_then(|s| start.checked_add(s.attempt_timeout))
            .unwrap_or(Time::MAX)
    }

    fn failed(&mut self, c: usize, now: Time) {
        let f = &mut self.failures[c];
        f.count = f.count.saturating_add(1);
        f.last = Some(now);
    }
}

impl Checker {
    /// Attempts of the checks still waited on whose timeout fell due by `now`: cancelled
    /// and failed at `now`.
    pub(super) fn probe_timers(&mut self, now: Time) {
        let waited = self.probe_waitable();
        let due: Vec<(u64, usize)> = self
            .probes
            .running
            .iter()
            .filter(|(_, &(c, start))| waited.contains(c) && self.probes.timeout(c, start) <= now)
            .map(|(&attempt, &(c, _))| (attempt, c))
            .collect();
        for (attempt, c) in due {
            self.probes.running.remove(&attempt);
            self.probes.timed_out.push(attempt);
            self.probes.failed(c, now);
        }
    }

    /// The answer to a readiness attempt at `now`. An answer to an attempt that is not
    /// running (timed out, or of a check no longer waited on, which the machine cancels in
    /// this step) changes nothing.
    pub(super) fn probe_result(&mut self, attempt: u64, ok: bool, now: Time) {
        let Some(&(c, _)) = self.probes.running.get(&attempt) else {
            return;
        };
        if !self.probe_waitable().contains(c) {
            return;
        }
        self.probes.running.remove(&attempt);
        if ok {
            self.latched.insert(c);
        } else {
            self.probes.failed(c, now);
        }
    }

    /// A probe action of the machine's.
    pub(super) fn probe_action(&mut self, action: &Action, now: Time) -> Result<(), Violation> {
        match *action {
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
                if self.probes.running_attempt(check).is_some() {
                    return Self::violation(
                        "probe",
                        format!("{now}: two attempts of check #{check} at once"),
                    );
                }
                match self.probes.due(check) {
                    Some(due) if due <= now => {}
                    due => {
                        let failures = self.probes.failures[check].count;
                        return Self::violation(
                            "probe-schedule",
                            format!(
                                "{now}: probe attempt {attempt} of check #{check} before its next probe attempt is due at {due:?} (after {failures} failures)"
                            ),
                        );
                    }
                }
                self.probes.running.insert(attempt, (check, now));
            }
            Action::CancelProbe { check, attempt, .. } => {
                if let Some(i) = self.probes.timed_out.iter().position(|&a| a == attempt) {
                    self.probes.timed_out.remove(i);
                    return Ok(());
                }
                let waited = self.probe_waitable().contains(check);
                match self.probes.running.get(&attempt) {
                    Some(&(c, _)) if c == check && !waited => {
                        self.probes.running.remove(&attempt);
                    }
                    Some(_) => {
                        return Self::violation(
                            "probe",
                            format!("{now}: cancel of attempt {attempt} of check #{check}, which neither timed out nor is no longer waited on"),
                        )
                    }
                    None => {
                        return Self::violation(
                            "probe",
                            format!("{now}: cancel of attempt {attempt}, which is not running"),
                        )
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The probe invariants after a step; returns the earliest probe instant the machine
    /// must wake for, with what it is.
    pub(super) fn check_probes(&self, now: Time) -> Result<Option<(Time, String)>, Violation> {
        if let Some(&attempt) = self.probes.timed_out.first() {
            return Err(Violation {
                invariant: "probe",
                message: format!("{now}: probe attempt {attempt} timed out but was not cancelled"),
            });
        }
        let waited = self.probe_waitable();
        if let Some((attempt, (c, _))) = self
            .probes
            .running
            .iter()
            .find(|(_, (c, _))| !waited.contains(*c))
        {
            return Err(Violation {
                invariant: "probe",
                message: format!(
                    "{now}: probe attempt {attempt} of check #{c} still running after the wait for it ended"
                ),
            });
        }
        let mut next: Option<(Time, String)> = None;
        let mut consider = |at: Time, what: String| {
            if next.as_ref().is_none_or(|(t, _)| at < *t) {
                next = Some((at, what));
            }
        };
        for c in 0..self.checks.len() {
            if !waited.contains(c) {
                continue;
            }
            if let Some((attempt, start)) = self.probes.running_attempt(c) {
                consider(
                    self.probes.timeout(c, start),
                    format!("probe attempt {attempt}'s timeout"),
                );
            } else if let Some(due) = self.probes.due(c) {
                if due <= now {
                    return Err(Violation {
                        invariant: "probe-schedule",
                        message: format!(
                            "{now}: check #{c}'s next probe attempt was due at {due} and did not start (after {} failures)",
                            self.probes.failures[c].count
                        ),
                    });
                }
                consider(due, format!("check #{c}'s next probe attempt"));
            }
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_from_the_first_up_to_the_cap() {
        let s = ProbeSchedule {
            initial_interval: Duration::from_millis(10),
            max_interval: Duration::from_millis(70),
            attempt_timeout: Duration::from_secs(1),
        };
        let delays: Vec<u64> = (1..=6)
            .map(|k| retry_delay(&s, k).as_millis() as u64)
            .collect();
        assert_eq!(delays, [10, 20, 40, 70, 70, 70]);
        assert_eq!(retry_delay(&s, u32::MAX), Duration::from_millis(70));
    }
}
