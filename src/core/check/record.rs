//! How the pod checker's record follows what happened: the facts each event and action
//! adds (the start asked, the process alive, the checks met, the stop sent), and the
//! model's own timers.

use std::time::Duration;

use crate::core::event::{Action, Event, Generation};
use crate::core::outcome::{CheckSet, End};
use crate::core::spec::{Check, StartedBy};
use crate::core::time::Time;

use super::{cut_status, model_datagram, Checker, Expected};

impl Checker {
    /// Deadlines that have passed by `now`, in the order they fall due.
    pub(super) fn timers(&mut self, now: Time) {
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
        self.health_timers(now);
    }

    pub(super) fn stop(&mut self, now: Time, grace: Duration) {
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

    pub(super) fn send_stop(&mut self, now: Time, grace: Duration) {
        self.stop_sent_at = Some(now);
        self.expect_stop = true;
        self.kill_deadline = now.checked_add(grace);
    }

    // The model reads as "which event, then whether it fits"; keep that shape.
    #[allow(clippy::collapsible_match)]
    pub(super) fn apply(&mut self, event: &Event<'_>, now: Time, actions: &[Action]) {
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
                self.health_notify(&message, now);
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
                if self.health_result(attempt, ok, now) {
                    return;
                }
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
                    let killed = self.kill_sent_at.is_some();
                    self.expected_end = Some(if let Some(cause) = self.health.unhealthy {
                        End::Unhealthy {
                            cause,
                            status,
                            killed,
                        }
                    } else if killed {
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
            self.expected_start = Some(Expected::Ready(now));
            self.health_ready(now);
        }
    }
}
