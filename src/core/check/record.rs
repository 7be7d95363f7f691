//! How the pod checker's record follows what happened: the facts each event and action
//! adds (the start asked, the process alive, the checks met, the stop sent), and the
//! model's own timers.

use std::time::Duration;

use crate::core::event::{Event, Generation};
use crate::core::outcome::{CheckSet, End};
use crate::core::spec::{Check, StartedBy};
use crate::core::time::Time;

use super::{cut_status, model_datagram, Checker, Expected};

impl Checker {
    /// The ready deadline the record calls for: `timeout_ready` after the start, pushed to
    /// at least `receipt + N` by each `EXTEND_TIMEOUT_USEC=N` taken while waiting (an
    /// extension past the end of time is none); no deadline without a timeout.
    pub(super) fn ready_deadline(&self) -> Option<Time> {
        let base = self.start_at?.checked_add(self.timeout_ready?)?;
        Some(
            self.extensions
                .iter()
                .filter_map(|&(receipt, by)| receipt.checked_add(by))
                .fold(base, Time::max),
        )
    }

    /// The instant SIGKILL is due once the stop signal went out: the earliest over every
    /// stop request of its grace after the request, or after the stop signal for a request
    /// made before the signal could go out (while the spawn was under way).
    pub(super) fn kill_instant(&self) -> Option<Time> {
        let sent = self.stop_sent_at?;
        self.stop_requests
            .iter()
            .filter_map(|&(at, grace)| at.max(sent).checked_add(grace))
            .min()
    }

    /// Deadlines that have passed by `now`, in the order they fall due.
    pub(super) fn timers(&mut self, now: Time) {
        if self.waiting() {
            if let Some(deadline) = self.ready_deadline() {
                if deadline <= now {
                    self.expected_start = Some(Expected::TimedOut(deadline));
                    self.stop(now, self.grace);
                }
            }
        }
        if let Some(kill) = self.kill_instant() {
            if kill <= now && self.alive() && self.kill_sent_at.is_none() {
                self.kill_sent_at = Some(now);
                self.expect_kill = true;
            }
        }
        self.health_timers(now);
        self.probe_timers(now);
    }

    /// A request to stop at `now` with `grace`: a close, the ready timeout, turning
    /// unhealthy.
    pub(super) fn stop(&mut self, now: Time, grace: Duration) {
        if self.start_at.is_none() {
            self.expected_end = Some(End::NeverSpawned);
            return;
        }
        if self.exited.is_some() || (self.spawn_answered && !self.spawned) {
            return;
        }
        self.stop_requests.push((now, grace));
        if !self.closing {
            self.closing = true;
            if self.spawned {
                self.send_stop(now);
            }
        }
    }

    pub(super) fn send_stop(&mut self, now: Time) {
        self.stop_sent_at = Some(now);
        self.expect_stop = true;
    }

    /// The pod reached "started" at `now`.
    fn mark_started(&mut self, now: Time) {
        self.started = true;
        self.probes.started(now);
    }

    // The model reads as "which event, then whether it fits"; keep that shape.
    #[allow(clippy::collapsible_match)]
    pub(super) fn apply(&mut self, event: &Event<'_>, now: Time) {
        if self.is_terminal() {
            return;
        }
        let ours = |g: &Generation| *g == self.generation;
        match *event {
            Event::Tick => {}
            Event::Start => {
                if self.start_at.is_none() {
                    self.start_at = Some(now);
                    self.expect_spawn = true;
                }
            }
            Event::Spawned { generation } if ours(&generation) => {
                if self.start_at.is_some() && !self.spawn_answered {
                    self.spawn_answered = true;
                    self.spawned = true;
                    if self.closing {
                        self.send_stop(now);
                    } else if self.started_by == StartedBy::Exec {
                        self.mark_started(now);
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
                if let Some(extend) = message.extend {
                    self.extensions.push((now, extend));
                }
                if message.ready {
                    for (i, check) in self.checks.iter().enumerate() {
                        if *check == Check::Notify {
                            self.latched.insert(i);
                        }
                    }
                }
                if (message.ready || message.started) && !self.started {
                    self.mark_started(now);
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
                // Due timers fired before the event: an attempt whose own timeout fell due
                // by now was cancelled in this very step, and its answer comes too late.
                self.probe_result(attempt, ok, now);
            }
            Event::HealthCheckChanged { generation, check } if ours(&generation) => {
                self.health_changed(check, now);
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
