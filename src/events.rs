//! The ordered event stream: every transition of a pod or a deployment, in the order it
//! happened, with a sequence number and its time.
//!
//! Snapshots ([`Pod::status`](crate::Pod::status), [`Deployment::members`]) say what a pod
//! is *now*; several changes between two looks are coalesced into the last one, so history
//! cannot be rebuilt from them. The event stream is the history: each subscriber
//! ([`Pod::events`](crate::Pod::events), [`Deployment::events`]) sees every event, in
//! order, never coalesced. Events are appended on podvisor's driver thread at the moment
//! the transition is made, so the events of all pods of a deployment are in their true
//! order with each other too.
//!
//! The stream keeps the last [`CAPACITY`] events. A subscriber that falls further behind
//! is never waited for: it gets one [`EventKind::Lagged`] saying how many it missed, then
//! continues with the oldest event still kept. Pods' output lines are not events (they
//! have their own bounded buffer), so a pod that floods its output cannot push lifecycle
//! events out.
//!
//! [`Deployment::members`]: crate::Deployment::members
//! [`Deployment::events`]: crate::Deployment::events

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use event_listener::Event as Notifier;

use crate::core::deployment::{DeploymentState, MemberState};
use crate::core::{End, Health, StartResult};
use crate::pod::HealthFailure;
use crate::Signal;

/// Events kept for subscribers that are behind.
pub const CAPACITY: usize = 16 * 1024;

/// One transition of a pod or a deployment.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LifecycleEvent {
    /// Its place in the stream: 0, 1, 2, … with no gaps (a [`EventKind::Lagged`] marker
    /// has the number of the first event after the gap).
    pub seq: u64,
    /// When it happened, since the pod or deployment was created (monotonic).
    pub at: Duration,
    /// When it happened, by the wall clock (for display).
    pub wall: SystemTime,
    /// The pod's name (`web/0` in a deployment), or `deployment` for the deployment's own
    /// events.
    pub source: String,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// The pod's process was spawned.
    Started {
        /// Its process id (also its process group).
        pid: u32,
    },
    /// The pod became ready.
    Ready {
        /// Time from the start to ready.
        after: Duration,
    },
    /// The pod is being stopped: the stop signal went to its process group (or, before
    /// its spawn answered, will go).
    Stopping {
        /// The stop signal.
        signal: Signal,
        /// Time until SIGKILL, if the pod is still running then.
        grace: Duration,
        /// Set when the stop is because it was not ready in time: how long it waited.
        not_ready_after: Option<Duration>,
    },
    /// SIGKILL went to the pod's process group.
    Killing {
        /// Time since the stop signal.
        after: Duration,
    },
    /// The pod ended.
    Ended {
        /// How its start went.
        start: Option<StartResult>,
        /// How it ended.
        end: End,
        /// For a pod that ended unhealthy because a health check failed: its last failed
        /// attempt (the check, why, how many in a row).
        health_failure: Option<HealthFailure>,
    },
    /// The pod's health changed (after ready, with health checks or a watchdog).
    Health {
        /// The new health.
        health: Health,
        /// The failure that explains it, for `unhealthy` by a health check.
        message: Option<String>,
        /// The failed attempt that made it unhealthy, when a health check did.
        failure: Option<HealthFailure>,
    },
    /// An attempt of a health check failed and the pod stays up (yet): one event per
    /// failed attempt, each saying how many failures in a row the check has now. The
    /// failure that makes the pod unhealthy is not one: the [`EventKind::Health`] event
    /// carries it.
    HealthCheckFailed(HealthFailure),
    /// A deployment member's state changed.
    Member {
        /// Its new state.
        state: MemberState,
        /// How many times its restart policy restarted it (restarts on request do not
        /// count).
        restarts: u64,
        /// How its last pod ended, if it did.
        end: Option<End>,
    },
    /// The deployment's state changed.
    Deployment {
        /// Its new state.
        state: DeploymentState,
    },
    /// This subscriber fell more than [`CAPACITY`] events behind: this many were dropped
    /// for it.
    Lagged {
        /// How many events it missed.
        missed: u64,
    },
}

/// The events of one pod or deployment, shared by the driver that appends and the
/// subscribers that read.
#[derive(Debug)]
pub(crate) struct EventLog {
    inner: Mutex<LogInner>,
    appended: Notifier,
    epoch: Instant,
}

#[derive(Debug, Default)]
struct LogInner {
    events: VecDeque<LifecycleEvent>,
    /// The sequence number of `events[0]`.
    first: u64,
    /// No more events will come.
    closed: bool,
}

impl EventLog {
    pub(crate) fn new() -> Arc<EventLog> {
        Arc::new(EventLog {
            inner: Mutex::new(LogInner::default()),
            appended: Notifier::new(),
            epoch: Instant::now(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        crate::handle::lock(&self.inner)
    }

    /// Appends an event from `source` happening now.
    pub(crate) fn append(&self, source: &str, kind: EventKind) {
        {
            let mut inner = self.lock();
            if inner.closed {
                return;
            }
            let seq = inner.first + inner.events.len() as u64;
            if inner.events.len() == CAPACITY {
                inner.events.pop_front();
                inner.first += 1;
            }
            inner.events.push_back(LifecycleEvent {
                seq,
                at: self.epoch.elapsed(),
                wall: SystemTime::now(),
                source: source.to_owned(),
                kind,
            });
        }
        self.appended.notify(usize::MAX);
    }

    /// The instant the events' `at` counts from.
    pub(crate) fn epoch(&self) -> Instant {
        self.epoch
    }

    /// No more events will be appended; subscribers end after the last one.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.appended.notify(usize::MAX);
    }

    /// A subscriber from the oldest event kept.
    pub(crate) fn subscribe(self: &Arc<Self>) -> Events {
        let next = self.lock().first;
        Events {
            log: self.clone(),
            next,
        }
    }
}

/// A subscription to a pod's or a deployment's events: each call to [`Events::next`] gives
/// the next event in order, from the oldest one still kept when it subscribed.
///
/// # Examples
///
/// ```
/// use podvisor::events::EventKind;
/// use podvisor::{Pod, PodConfig};
///
/// # futures_lite::future::block_on(async {
/// let pod = Pod::new(PodConfig::new("true"))?;
/// let mut events = pod.events();
/// pod.start();
/// let mut kinds = Vec::new();
/// while let Some(event) = events.next().await {
///     kinds.push(event.kind);
/// }
/// assert!(matches!(kinds.first(), Some(EventKind::Started { .. })));
/// assert!(matches!(kinds.last(), Some(EventKind::Ended { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct Events {
    log: Arc<EventLog>,
    next: u64,
}

impl Events {
    /// The next event if there is one already; `None` if not (yet, or ever).
    pub fn try_next(&mut self) -> Option<LifecycleEvent> {
        let inner = self.log.lock();
        if self.next < inner.first {
            let missed = inner.first - self.next;
            self.next = inner.first;
            return Some(LifecycleEvent {
                seq: inner.first,
                at: self.log.epoch.elapsed(),
                wall: SystemTime::now(),
                source: String::new(),
                kind: EventKind::Lagged { missed },
            });
        }
        let index = usize::try_from(self.next - inner.first).ok()?;
        let event = inner.events.get(index)?.clone();
        self.next += 1;
        Some(event)
    }

    /// Waits for the next event; `None` once the pod or deployment has ended and every
    /// event was read. Cancellation-safe: dropping the future loses no event.
    pub async fn next(&mut self) -> Option<LifecycleEvent> {
        loop {
            let listener = self.log.appended.listen();
            if let Some(event) = self.try_next() {
                return Some(event);
            }
            if self.log.lock().closed {
                return self.try_next();
            }
            listener.await;
        }
    }

    /// [`Events::next`] on the calling thread.
    pub fn next_blocking(&mut self) -> Option<LifecycleEvent> {
        futures_lite::future::block_on(self.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(ms: u64) -> EventKind {
        EventKind::Ready {
            after: Duration::from_millis(ms),
        }
    }

    #[test]
    fn every_subscriber_sees_every_event_in_order() {
        let log = EventLog::new();
        let mut early = log.subscribe();
        for i in 0..100 {
            log.append("p", ready(i));
        }
        let mut late = log.subscribe();
        log.close();
        log.append("p", ready(999));
        for events in [&mut early, &mut late] {
            let seen: Vec<u64> = std::iter::from_fn(|| events.next_blocking())
                .map(|e| e.seq)
                .collect();
            assert_eq!(seen, (0..100).collect::<Vec<u64>>());
        }
    }

    #[test]
    fn a_slow_subscriber_gets_one_lagged_marker_and_goes_on() {
        let log = EventLog::new();
        let mut slow = log.subscribe();
        let total = CAPACITY as u64 + 10;
        for i in 0..total {
            log.append("p", ready(i));
        }
        log.close();
        let first = slow.next_blocking().unwrap();
        assert_eq!(first.kind, EventKind::Lagged { missed: 10 });
        assert_eq!(first.seq, 10);
        let rest: Vec<u64> = std::iter::from_fn(|| slow.next_blocking())
            .map(|e| e.seq)
            .collect();
        assert_eq!(rest, (10..total).collect::<Vec<u64>>());
    }

    #[test]
    fn a_waiting_subscriber_wakes_on_append_and_ends_on_close() {
        let log = EventLog::new();
        let mut events = log.subscribe();
        let writer = log.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            writer.append("p", ready(1));
            writer.close();
        });
        assert_eq!(events.next_blocking().map(|e| e.kind), Some(ready(1)));
        assert_eq!(events.next_blocking(), None);
        thread.join().unwrap();
    }
}
