//! What a pod's handle and its driver share: the mailbox the handle posts requests to
//! (and a runtime thread its messages), and the state the driver publishes for handles to
//! read and wait on.

use std::collections::VecDeque;
use std::sync::{Arc, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use crate::core::{
    Action, End, Event, Generation, Health, PodMachine, StartResult, State, Time, Unhealthy,
};
use crate::events::{EventKind, EventLog};
use crate::handle::Published;
use crate::output::LastLines;
use crate::pod::HealthFailure;

pub(crate) enum Request {
    Start,
    Close(Option<Duration>),
}

/// A message from a runtime thread to its pod's driver.
pub(crate) enum ThreadMessage {
    /// A notify datagram's text.
    Notify(String),
    /// The host ended with this exit code.
    Exited(i32),
}

/// What handles see: the machine's state as of the last state change the driver has
/// fully performed (so `join` never returns before the group was swept).
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub(crate) state: State,
    pub(crate) start_result: Option<StartResult>,
    pub(crate) end: Option<End>,
    pub(crate) status_text: Option<String>,
    pub(crate) health: Option<Health>,
}

pub(crate) struct Inner {
    pub(crate) machine: PodMachine,
    pub(crate) seen: Snapshot,
    pub(crate) thread_messages: VecDeque<ThreadMessage>,
    pub(crate) requests: VecDeque<Request>,
    pub(crate) driver_waker: Option<Waker>,
    pub(crate) driver_done: bool,
    pub(crate) pid: Option<u32>,
    pub(crate) spawn_error: Option<String>,
    pub(crate) last_lines: LastLines,
    pub(crate) version: u64,
    pub(crate) leftovers: usize,
    pub(crate) notify_from_outside: u64,
    /// When the stop was published (the core's time), for the time until SIGKILL.
    pub(crate) stopped_at: Option<Time>,
    /// The last health failure's message.
    pub(crate) health_message: Option<String>,
    /// The last failed health attempt.
    pub(crate) health_failure: Option<HealthFailure>,
    /// The leader's pidfd, for a pod without a process group of its own (`foreground`):
    /// a signal from another thread never reaches a process that reused its pid.
    pub(crate) pidfd: Option<std::os::fd::OwnedFd>,
}

/// State shared by a pod's handle and its driver.
pub(crate) struct Shared {
    pub(crate) state: Published<Inner>,
    pub(crate) generation: Generation,
    /// The pod's own event stream.
    pub(crate) events: Arc<EventLog>,
    /// The event stream of the deployment the pod belongs to, if any.
    pub(crate) deployment_events: Option<Arc<EventLog>>,
    pub(crate) name: String,
    pub(crate) stop_signal: crate::Signal,
    pub(crate) watchdog_signal: crate::Signal,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock()
    }

    pub(crate) fn generation(&self) -> Generation {
        self.generation
    }

    /// Feeds one event to the machine and returns the actions for the driver to perform,
    /// in order; `StateChanged` is performed by [`Shared::publish`].
    pub(crate) fn handle(&self, event: Event<'_>, now: Time) -> Vec<Action> {
        let mut inner = self.lock();
        inner.machine.handle(event, now);
        std::iter::from_fn(|| inner.machine.poll_action()).collect()
    }

    /// The stream of events the pod's output is ordered against: its deployment's, or
    /// its own.
    pub(crate) fn outer_events(&self) -> &Arc<EventLog> {
        self.deployment_events.as_ref().unwrap_or(&self.events)
    }

    /// Makes `state` (and the outcome so far) visible to handles and wakes their waiters.
    /// Appends an event to the pod's stream (and its deployment's).
    pub(crate) fn append(&self, kind: EventKind) {
        if let Some(log) = &self.deployment_events {
            log.append(&self.name, kind.clone());
        }
        self.events.append(&self.name, kind);
    }

    /// The event for a move to `state` (published, so a state seen once).
    fn transition(&self, inner: &mut Inner, state: State) -> Option<EventKind> {
        let now = inner.machine.now();
        match state {
            State::Ready => match inner.machine.start_result() {
                Some(StartResult::Ready { after }) => Some(EventKind::Ready { after: *after }),
                _ => None,
            },
            State::Stopping => {
                inner.stopped_at = Some(now);
                let grace = inner
                    .machine
                    .kill_deadline()
                    .map_or(inner.machine.spec().grace, |at| {
                        at.saturating_duration_since(now)
                    });
                let not_ready_after = match inner.machine.start_result() {
                    Some(StartResult::TimedOut { waited, .. }) => Some(*waited),
                    _ => None,
                };
                let signal = match inner.machine.health() {
                    Some(Health::Unhealthy(
                        Unhealthy::Watchdog { .. } | Unhealthy::WatchdogTrigger,
                    )) => self.watchdog_signal,
                    _ => self.stop_signal,
                };
                Some(EventKind::Stopping {
                    signal,
                    grace,
                    not_ready_after,
                })
            }
            State::Killing => Some(EventKind::Killing {
                after: inner
                    .stopped_at
                    .map_or(Duration::ZERO, |at| now.saturating_duration_since(at)),
            }),
            State::Ended => {
                let end = inner.machine.end().unwrap_or(End::NeverSpawned);
                Some(EventKind::Ended {
                    start: inner.machine.start_result().cloned(),
                    end,
                    health_failure: match end {
                        End::Unhealthy { cause, .. } => {
                            unhealthy_by(cause, inner.health_failure.as_ref())
                        }
                        _ => None,
                    },
                })
            }
            _ => None,
        }
    }

    pub(crate) fn publish(&self, state: State) {
        {
            let mut inner = self.lock();
            if inner.seen.state != state {
                if let Some(kind) = self.transition(&mut inner, state) {
                    self.append(kind);
                }
                if state == State::Ended {
                    self.events.close();
                }
            }
            inner.seen = Snapshot {
                state,
                start_result: inner.machine.start_result().cloned(),
                end: if state == State::Ended {
                    inner.machine.end()
                } else {
                    None
                },
                status_text: inner.machine.status_text().map(str::to_owned),
                health: inner.seen.health,
            };
            inner.version += 1;
        }
        self.state.notify();
    }

    /// Makes a new health visible and appends it to the event stream; an unhealthy pod's
    /// event carries the failed attempt that made it so, or the watchdog's cause.
    pub(crate) fn publish_health(&self, health: Health) {
        let (message, failure) = {
            let mut inner = self.lock();
            inner.seen.health = Some(health);
            let failure = match health {
                Health::Unhealthy(cause) => {
                    let failure = unhealthy_by(cause, inner.health_failure.as_ref());
                    inner.health_message = Some(match &failure {
                        Some(failure) => failure.message.clone(),
                        None => cause.to_string(),
                    });
                    failure
                }
                _ => None,
            };
            inner.version += 1;
            let message = failure.as_ref().map(|f| f.message.clone());
            (message, failure)
        };
        self.append(EventKind::Health {
            health,
            message,
            failure,
        });
        self.state.notify();
    }

    /// Records a health attempt's result, after the core counted it: check `index` (as
    /// `check` is written) passed, or failed with `message`. A failure that did not make
    /// the pod unhealthy is appended to the event stream (the `unhealthy` event carries
    /// the one that did).
    pub(crate) fn health_attempt_ended(
        &self,
        index: usize,
        check: &str,
        result: Result<(), String>,
    ) {
        let failure = {
            let mut inner = self.lock();
            let failures = inner.machine.health_failures(index);
            let message = match result {
                Ok(()) => {
                    if let Some(last) = inner.health_failure.as_mut().filter(|f| f.index == index) {
                        last.failures = failures;
                    }
                    return;
                }
                Err(message) => message,
            };
            let failure = HealthFailure {
                index,
                check: check.to_string(),
                message: message.clone(),
                failures,
                retries: inner
                    .machine
                    .spec()
                    .health
                    .get(index)
                    .map_or(0, |h| h.retries),
            };
            inner.health_message = Some(message);
            inner.health_failure = Some(failure.clone());
            inner.version += 1;
            let made_unhealthy = matches!(
                inner.machine.health(),
                Some(Health::Unhealthy(Unhealthy::Check { check, .. })) if check == index
            );
            (!made_unhealthy).then_some(failure)
        };
        if let Some(failure) = failure {
            self.append(EventKind::HealthCheckFailed(failure));
        }
        self.state.notify();
    }

    /// Makes a new status text visible (it is not a state change).
    pub(crate) fn publish_status(&self) {
        let mut inner = self.lock();
        inner.seen.status_text = inner.machine.status_text().map(str::to_owned);
    }

    pub(crate) fn poll_timeout(&self) -> Option<Time> {
        self.lock().machine.poll_timeout()
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.lock().machine.state() == State::Ended
    }

    pub(crate) fn take_requests(&self) -> Vec<Request> {
        self.lock().requests.drain(..).collect()
    }

    pub(crate) fn set_driver_waker(&self, waker: &Waker) {
        let mut inner = self.lock();
        if !inner
            .driver_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(waker))
        {
            inner.driver_waker = Some(waker.clone());
        }
    }

    pub(crate) fn mark_driver_done(&self) {
        self.lock().driver_done = true;
        self.state.notify();
    }

    pub(crate) fn set_pidfd(&self, pidfd: std::os::fd::OwnedFd) {
        self.lock().pidfd = Some(pidfd);
    }

    pub(crate) fn set_pid(&self, pid: u32) {
        self.lock().pid = Some(pid);
        self.append(EventKind::Started { pid });
    }

    pub(crate) fn set_spawn_error(&self, message: String) {
        self.lock().spawn_error = Some(message);
    }

    pub(crate) fn set_leftovers(&self, count: usize) {
        self.lock().leftovers = count;
    }

    pub(crate) fn count_notify_from_outside(&self) {
        self.lock().notify_from_outside += 1;
    }

    pub(crate) fn push_lines<'a>(&self, lines: impl Iterator<Item = &'a [u8]>) {
        let mut inner = self.lock();
        for line in lines {
            inner.last_lines.push(line);
        }
    }

    /// See [`PodMachine::input_instant`].
    pub(crate) fn input_instant(&self, now: Time) -> Time {
        self.lock().machine.input_instant(now)
    }

    /// Queues a message from a runtime thread and wakes the driver.
    pub(crate) fn push_thread_message(&self, message: ThreadMessage) {
        let waker = {
            let mut inner = self.lock();
            inner.thread_messages.push_back(message);
            inner.driver_waker.clone()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub(crate) fn take_thread_messages(&self) -> Vec<ThreadMessage> {
        self.lock().thread_messages.drain(..).collect()
    }

    pub(crate) fn request(&self, request: Request) {
        let waker = {
            let mut inner = self.lock();
            inner.requests.push_back(request);
            inner.driver_waker.clone()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The failed attempt that made a pod unhealthy, when a health check did.
fn unhealthy_by(cause: Unhealthy, last: Option<&HealthFailure>) -> Option<HealthFailure> {
    match cause {
        Unhealthy::Check { check, .. } => last.filter(|f| f.index == check).cloned(),
        _ => None,
    }
}
