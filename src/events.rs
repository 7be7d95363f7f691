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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use event_listener::Event as Notifier;

use crate::core::deployment::{DeploymentState, MemberState};
use crate::core::{End, Health, StartResult, Stream};
use crate::pod::HealthFailure;
use crate::Signal;

/// Equal when they say the same: where forwarded output stood is not part of it.
impl PartialEq for LifecycleEvent {
    fn eq(&self, other: &LifecycleEvent) -> bool {
        self.seq == other.seq
            && self.at == other.at
            && self.wall == other.wall
            && self.source == other.source
            && self.kind == other.kind
    }
}

/// Events kept for subscribers that are behind.
pub const CAPACITY: usize = 16 * 1024;

/// One transition of a pod or a deployment.
#[derive(Clone, Debug)]
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
    /// How many bytes had been queued for podvisor's standard output and error by the
    /// forwarding of pods' output when it happened (see [`Events::order_output`]).
    pub(crate) output_at: [u64; 2],
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
    /// How many events were ever appended (the next one's `seq`), for the forwarding of
    /// output, which reads it without the lock.
    count: AtomicU64,
    /// The subscriber that orders forwarded output after its lines, if one does.
    order: Mutex<Order>,
    order_changed: Condvar,
}

impl Order {
    /// Output read after the first `seq` events waits: an ordering subscriber writes where
    /// it goes (`reaches` its stream) and has not dealt with them all.
    fn holds(&self, seq: u64, reaches: impl Fn(Stream) -> bool) -> bool {
        self.stream.is_some_and(reaches) && self.dealt < seq
    }
}

/// What the subscriber that orders output ([`Events::order_output`]) has done.
#[derive(Debug, Default)]
struct Order {
    /// The stream its lines go to; `None` without such a subscriber.
    stream: Option<Stream>,
    /// It has come back for the event after every event before this `seq`.
    dealt: u64,
    /// Which subscriber it is (each one that asks gets a new number).
    owner: u64,
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
            count: AtomicU64::new(0),
            order: Mutex::new(Order::default()),
            order_changed: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        crate::handle::lock(&self.inner)
    }

    /// Appends an event from `source` happening now.
    pub(crate) fn append(&self, source: &str, kind: EventKind) {
        // Where forwarded output stands, read before the event is counted (and output
        // reads the count before it is queued): of an event and a chunk of output, at
        // most one is seen by the other as coming first, so neither waits for the other.
        let output_at = crate::forward::positions();
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
                output_at,
            });
            self.count.store(seq + 1, Ordering::SeqCst);
        }
        self.appended.notify(usize::MAX);
    }

    /// How many events were ever appended: output read now comes after all of them.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    fn order(&self) -> std::sync::MutexGuard<'_, Order> {
        crate::handle::lock(&self.order)
    }

    /// Waits until the subscriber that orders output has dealt with every event before
    /// `seq` (at once if none does, or if `reaches` says its stream is not where this
    /// output goes), until `deadline` at the latest.
    pub(crate) fn wait_dealt(&self, seq: u64, deadline: Instant, reaches: impl Fn(Stream) -> bool) {
        let mut order = self.order();
        while order.holds(seq, &reaches) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            order = self
                .order_changed
                .wait_timeout(order, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Whether output after the first `seq` events is held now (see [`EventLog::wait_dealt`]).
    pub(crate) fn holds(&self, seq: u64, reaches: impl Fn(Stream) -> bool) -> bool {
        self.order().holds(seq, reaches)
    }

    /// Makes the subscriber writing to `stream`, which has handed out the events before
    /// `next`, the one that orders output; returns its number.
    fn start_ordering(&self, stream: Stream, next: u64) -> u64 {
        let mut order = self.order();
        order.owner += 1;
        order.stream = Some(stream);
        order.dealt = next;
        order.owner
    }

    /// Subscriber `owner` has dealt with every event before `next`.
    fn deal(&self, owner: u64, next: u64) {
        let mut order = self.order();
        if order.owner != owner || order.dealt >= next {
            return;
        }
        order.dealt = next;
        drop(order);
        self.order_changed.notify_all();
    }

    /// Subscriber `owner` is gone: output waits for nobody.
    fn stop_ordering(&self, owner: u64) {
        let mut order = self.order();
        if order.owner == owner {
            order.stream = None;
        }
        drop(order);
        self.order_changed.notify_all();
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
            orders: 0,
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
    /// This subscriber's number as the one that orders forwarded output after its lines
    /// (0: it does not).
    orders: u64,
}

impl Events {
    /// Makes this subscriber the one whose lines forwarded output is ordered after: it
    /// writes a line for some events to podvisor's own `stream` with
    /// [`forward::write_event_line`](crate::forward::write_event_line), and output that
    /// reaches the same file (that stream, or the other one when both reach the same file
    /// or terminal) and was read after an event waits until this subscriber comes back
    /// for the event after it — at most [`forward::ORDER_LIMIT`](crate::forward::ORDER_LIMIT)
    /// — so that a pod's first output never comes before the line about its start. The
    /// line itself waits for the output read before its event. One subscriber per stream
    /// of events orders output; the last to ask is the one. Dropping it ends the ordering.
    /// Keep asking for events while it orders: output read after an event it has not come
    /// back for waits the whole limit, chunk after chunk, which slows every pod's
    /// forwarding.
    pub fn order_output(mut self, stream: Stream) -> Events {
        self.orders = self.log.start_ordering(stream, self.next);
        self
    }

    /// The next event if there is one already; `None` if not (yet, or ever).
    pub fn try_next(&mut self) -> Option<LifecycleEvent> {
        if self.orders != 0 {
            // Coming back means every event handed out so far is dealt with.
            self.log.deal(self.orders, self.next);
        }
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
                output_at: crate::forward::positions(),
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

impl Drop for Events {
    fn drop(&mut self) {
        if self.orders != 0 {
            self.log.stop_ordering(self.orders);
        }
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

    /// How long `wait_dealt(seq)` took, with a generous deadline.
    fn wait_dealt(log: &EventLog, seq: u64, reaches: bool) -> Duration {
        let begin = Instant::now();
        log.wait_dealt(seq, begin + Duration::from_secs(30), |_| reaches);
        begin.elapsed()
    }

    #[test]
    fn output_waits_for_the_ordering_subscriber_to_come_back_after_the_events_before_it() {
        let log = EventLog::new();
        log.append("p", ready(0));
        // Nobody orders output: nothing waits.
        assert!(wait_dealt(&log, 1, true) < Duration::from_secs(10));
        let mut events = log.subscribe().order_output(Stream::Stderr);
        log.append("p", ready(1));
        assert_eq!(log.count(), 2);
        // Output to another file does not wait.
        assert!(wait_dealt(&log, 2, false) < Duration::from_secs(10));
        // Output read after both events waits until the subscriber has taken both and
        // comes back for a third.
        let came_back = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waiter = {
            let (log, came_back) = (log.clone(), came_back.clone());
            std::thread::spawn(move || {
                wait_dealt(&log, 2, true);
                came_back.load(Ordering::SeqCst)
            })
        };
        assert_eq!(events.try_next().map(|e| e.seq), Some(0));
        assert_eq!(events.try_next().map(|e| e.seq), Some(1));
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "output went ahead of the second event's line"
        );
        came_back.store(true, Ordering::SeqCst);
        assert_eq!(events.try_next(), None);
        assert!(
            waiter.join().unwrap(),
            "output went ahead before the subscriber came back"
        );
        // Output read after the first event only needs the first dealt with.
        assert!(wait_dealt(&log, 1, true) < Duration::from_secs(10));
    }

    #[test]
    fn output_stops_waiting_when_the_ordering_subscriber_is_dropped_or_at_the_deadline() {
        let log = EventLog::new();
        let events = log.subscribe().order_output(Stream::Stdout);
        log.append("p", ready(0));
        let begin = Instant::now();
        log.wait_dealt(1, begin + Duration::from_millis(100), |_| true);
        assert!(begin.elapsed() >= Duration::from_millis(100));
        let waiter = {
            let log = log.clone();
            std::thread::spawn(move || wait_dealt(&log, 1, true))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished());
        drop(events);
        assert!(waiter.join().unwrap() < Duration::from_secs(10));
        // A new ordering subscriber starts from where it subscribed; dropping an older
        // one does not end its ordering.
        let older = log.subscribe().order_output(Stream::Stdout);
        let mut newer = log.subscribe().order_output(Stream::Stdout);
        drop(older);
        log.append("p", ready(1));
        let waiter = {
            let log = log.clone();
            std::thread::spawn(move || wait_dealt(&log, 2, true))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished());
        while newer.try_next().is_some() {}
        assert!(waiter.join().unwrap() < Duration::from_secs(10));
    }

    #[test]
    fn an_event_knows_how_much_output_was_queued_before_it() {
        let log = EventLog::new();
        let mut events = log.subscribe();
        log.append("p", ready(0));
        // A blank line on the test's standard error.
        crate::forward::sink(Stream::Stderr).send_now(b"\n", 0, None);
        log.append("p", ready(1));
        let first = events.try_next().unwrap().output_at;
        let second = events.try_next().unwrap().output_at;
        assert_eq!(first[0], second[0]);
        assert!(second[1] > first[1], "{first:?} {second:?}");
    }
}
