//! [`Pod`]: the handle callers hold. It only posts requests and waits on state changes;
//! the pod's driver runs on podvisor's own thread.

mod error;
pub(crate) use error::MISSING_CWD;

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{ConfigError, PodConfig};
use crate::core::{End, Health, PodMachine, StartFailure, StartResult, State};
use crate::driver::shared::{Inner, Request, Shared, Snapshot};
use crate::driver::Driver;
use crate::events::{EventLog, Events};
use crate::handle::Published;
use crate::output::LastLines;

pub use error::{FailureReason, StartError};

/// One pod: a command taken through its life on podvisor's driver thread.
///
/// Creating a pod does nothing visible; [`Pod::start`] spawns the process. Everything
/// time-related (the ready timeout, SIGKILL at the end of the grace period, reaping)
/// happens on podvisor's own thread whether or not anyone awaits this handle. The async
/// methods work under any executor (smol, tokio, `futures_lite::future::block_on`) and are
/// cancellation-safe: dropping one of their futures changes nothing about the pod. The
/// `*_blocking` methods wait on the calling thread.
///
/// Dropping a pod that has not ended kills its process group at once (SIGKILL) and reaps
/// it in the background.
///
/// # Examples
///
/// ```
/// use podvisor::{End, Pod, PodConfig, Readiness};
/// use std::time::Duration;
///
/// # futures_lite::future::block_on(async {
/// let pod = Pod::new(
///     PodConfig::new("sh")
///         .args(["-c", "echo up; exec sleep 30"])
///         .ready(Readiness::Stdout("up".into()))
///         .timeout_ready(Some(Duration::from_secs(10))),
/// )?;
/// pod.start();
/// pod.wait_ready().await?;
/// let end = pod.close().await;
/// assert!(matches!(end, End::Closed(_)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Pod {
    shared: Arc<Shared>,
    name: String,
    program: String,
    readiness: Vec<String>,
    default_grace: Duration,
    /// It leads a process group of its own (not `foreground`).
    own_group: bool,
}

impl fmt::Debug for Pod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pod")
            .field("name", &self.name)
            .field("state", &self.state())
            .field("pid", &self.pid())
            .finish()
    }
}

impl Pod {
    /// A pod for `config`, not started yet.
    pub fn new(config: PodConfig) -> Result<Pod, ConfigError> {
        Pod::in_deployment(config, None)
    }

    /// A pod whose events also go to `deployment_events`.
    pub(crate) fn in_deployment(
        config: PodConfig,
        deployment_events: Option<Arc<EventLog>>,
    ) -> Result<Pod, ConfigError> {
        let spec = config.core_spec()?;
        #[cfg(feature = "oracles")]
        let machine = PodMachine::with_mutation(spec, config.mutation);
        #[cfg(not(feature = "oracles"))]
        let machine = PodMachine::new(spec);
        let machine = machine.map_err(|error| ConfigError::Spec {
            name: config.name.clone(),
            error,
        })?;
        let shared = Arc::new(Shared {
            generation: machine.generation(),
            state: Published::new(Inner {
                seen: Snapshot {
                    state: machine.state(),
                    start_result: None,
                    end: None,
                    status_text: None,
                    health: None,
                },
                machine,
                thread_messages: VecDeque::new(),
                requests: VecDeque::new(),
                driver_waker: None,
                driver_done: false,
                pid: None,
                spawn_error: None,
                last_lines: LastLines::new(config.last_lines),
                version: 0,
                leftovers: 0,
                notify_from_outside: 0,
                stopped_at: None,
                health_message: None,
                health_failure: None,
                pidfd: None,
            }),
            events: EventLog::new(),
            deployment_events,
            name: config.name.clone(),
            stop_signal: config.stop_signal,
            watchdog_signal: config.watchdog_signal,
        });
        let pod = Pod {
            shared: shared.clone(),
            name: config.name.clone(),
            program: config.program.to_string_lossy().into_owned(),
            readiness: config.readiness.iter().map(ToString::to_string).collect(),
            default_grace: config.grace,
            own_group: config.own_group,
        };
        crate::executor::spawn(Driver::new(shared, config, Instant::now()));
        Ok(pod)
    }

    /// Starts the pod without waiting. A second call does nothing.
    pub fn start(&self) {
        self.shared.request(Request::Start);
    }

    /// Starts the pod and waits until it is ready or its start failed.
    pub async fn start_and_wait(&self) -> Result<(), StartError> {
        self.start();
        self.wait_ready().await
    }

    /// Waits until the start is decided: `Ok` once ready, otherwise why not. Returns at
    /// once when it already is; on a pod nobody starts, waits until it is started or
    /// closed.
    pub async fn wait_ready(&self) -> Result<(), StartError> {
        let result = self.wait_for(|inner| inner.seen.start_result.clone()).await;
        self.start_error(result)
    }

    /// The start result as `wait_ready` would return it, without waiting: `None` while
    /// the start is undecided.
    pub fn wait_ready_nowait(&self) -> Option<Result<(), StartError>> {
        let result = self.shared.lock().seen.start_result.clone()?;
        Some(self.start_error(result))
    }

    /// Closes the pod with its configured grace period and waits until its process is
    /// reaped. Safe at any moment and any number of times, also concurrently: every call
    /// returns the same end. Before the start, the pod ends at once (`NeverSpawned`).
    pub async fn close(&self) -> End {
        self.close_with_grace(self.default_grace).await
    }

    /// Like [`Pod::close`] with another grace period. A later close may shorten the grace
    /// period of an earlier one, never lengthen it; `Duration::ZERO` kills at once.
    pub async fn close_with_grace(&self, grace: Duration) -> End {
        self.shared.request(Request::Close(Some(grace)));
        self.join().await
    }

    /// Asks the pod to close without waiting.
    pub fn close_nowait(&self, grace: Option<Duration>) {
        self.shared.request(Request::Close(grace));
    }

    /// Waits until the pod has ended (its process reaped, or never spawned) and returns how.
    /// Does not ask it to end.
    pub async fn join(&self) -> End {
        self.wait_for(|inner| inner.seen.end).await
    }

    /// Like [`Pod::join`], giving up after `timeout` (`None` then; the pod is unaffected).
    pub async fn join_timeout(&self, timeout: Duration) -> Option<End> {
        crate::handle::within(timeout, self.join()).await
    }

    /// Waits for the next state change after `seen` (a count starting at 0 before the
    /// first change), then returns the new count and the state. Any number of callers may
    /// wait at once; each sees every change at least once in the count.
    pub async fn changed(&self, seen: u64) -> (u64, State) {
        self.wait_for(|inner| (inner.version > seen).then_some((inner.version, inner.seen.state)))
            .await
    }

    async fn wait_for<T>(&self, ready: impl FnMut(&Inner) -> Option<T>) -> T {
        self.shared.state.wait_for(ready).await
    }

    /// [`Pod::start_and_wait`] on the calling thread.
    pub fn start_and_wait_blocking(&self) -> Result<(), StartError> {
        futures_lite::future::block_on(self.start_and_wait())
    }

    /// [`Pod::wait_ready`] on the calling thread.
    pub fn wait_ready_blocking(&self) -> Result<(), StartError> {
        futures_lite::future::block_on(self.wait_ready())
    }

    /// [`Pod::close`] on the calling thread.
    pub fn close_blocking(&self) -> End {
        futures_lite::future::block_on(self.close())
    }

    /// [`Pod::join`] on the calling thread.
    pub fn join_blocking(&self) -> End {
        futures_lite::future::block_on(self.join())
    }

    /// [`Pod::join_timeout`] on the calling thread.
    pub fn join_timeout_blocking(&self, timeout: Duration) -> Option<End> {
        futures_lite::future::block_on(self.join_timeout(timeout))
    }

    /// Sends `signal` to the pod's process group, if its process is running (between the
    /// spawn and the reap); otherwise does nothing and returns `Ok(false)`.
    pub fn signal(&self, signal: crate::Signal) -> std::io::Result<bool> {
        let inner = self.shared.lock();
        let running = matches!(
            inner.seen.state,
            State::Starting | State::Started | State::Ready | State::Stopping | State::Killing
        );
        match (running, inner.pid) {
            (true, Some(pid)) => match (&inner.pidfd, self.own_group) {
                // No group: the leader alone, through its pidfd where there is one.
                (Some(pidfd), false) => crate::os::signal_pidfd(pidfd, signal),
                _ => crate::os::signal_pod(pid, self.own_group, signal).map(|()| true),
            },
            _ => Ok(false),
        }
    }

    /// The pod's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state, start result, end and pid, read together (the separate accessors may
    /// each see a different moment of a pod that is changing).
    pub fn status(&self) -> PodStatus {
        let inner = self.shared.lock();
        PodStatus {
            state: inner.seen.state,
            start_result: inner.seen.start_result.clone(),
            end: inner.seen.end,
            pid: inner.pid,
            health: inner.seen.health,
            health_message: inner.health_message.clone(),
            health_failure: inner.health_failure.clone(),
        }
    }

    /// The pod's events from its creation on, in order (see [`crate::events`]): started,
    /// ready, stopping, killing, ended. The stream ends after the pod's end.
    pub fn events(&self) -> Events {
        self.shared.events.subscribe()
    }

    /// The pod's health once it is ready, when it has health checks or a watchdog.
    pub fn health(&self) -> Option<Health> {
        self.shared.lock().seen.health
    }

    /// Whether the pod has health checks.
    pub(crate) fn has_health_checks(&self) -> bool {
        !self.shared.lock().machine.spec().health.is_empty()
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.shared.lock().seen.state
    }

    /// How the start went, once decided.
    pub fn start_result(&self) -> Option<StartResult> {
        self.shared.lock().seen.start_result.clone()
    }

    /// How the process ended, once it has.
    pub fn end(&self) -> Option<End> {
        self.shared.lock().seen.end
    }

    /// The process id (also its process group id), once spawned. Kept after the exit.
    pub fn pid(&self) -> Option<u32> {
        self.shared.lock().pid
    }

    /// The last lines the pod wrote on its captured or forwarded streams.
    pub fn last_lines(&self) -> Vec<String> {
        self.shared.lock().last_lines.to_vec()
    }

    /// How many processes of the pod's group were still running (not zombies) when its
    /// leader was reaped; they were then killed with SIGKILL. Zero until the pod ended.
    pub fn leftovers(&self) -> usize {
        self.shared.lock().leftovers
    }

    /// The last `STATUS=` text the pod sent on its notify socket.
    pub fn status_text(&self) -> Option<String> {
        self.shared.lock().seen.status_text.clone()
    }

    /// What was ignored on the pod's notify socket so far: datagrams from processes that
    /// are not the pod's, and malformed lines (see [`NotifyCounters`]).
    pub fn notify_counters(&self) -> NotifyCounters {
        let inner = self.shared.lock();
        let stats = inner.machine.stats();
        NotifyCounters {
            from_outside: inner.notify_from_outside,
            malformed_datagrams: stats.malformed_notify,
            malformed_lines: stats.malformed_notify_fields,
        }
    }

    fn start_error(&self, result: StartResult) -> Result<(), StartError> {
        let inner = self.shared.lock();
        let name = self.name.clone();
        let last_lines = inner.last_lines.to_vec();
        Err(match result {
            StartResult::Ready { .. } => return Ok(()),
            StartResult::FailedToStart(StartFailure::Spawn(error)) => StartError::FailedToStart {
                name,
                program: self.program.clone(),
                reason: FailureReason::Spawn {
                    kind: error.kind,
                    message: inner
                        .spawn_error
                        .clone()
                        .unwrap_or_else(|| "spawn failed".into()),
                },
                last_lines,
            },
            StartResult::FailedToStart(StartFailure::Runtime { status, error, .. }) => {
                StartError::FailedToStart {
                    name,
                    program: self.program.clone(),
                    reason: FailureReason::Runtime { status, error },
                    last_lines,
                }
            }
            StartResult::FailedToStart(StartFailure::Config { message }) => {
                StartError::FailedToStart {
                    name,
                    program: self.program.clone(),
                    reason: FailureReason::Config { message },
                    last_lines,
                }
            }
            StartResult::ExitedEarly { status } => StartError::ExitedEarly {
                name,
                status,
                last_lines,
            },
            StartResult::TimedOut { waited, pending } => StartError::TimedOut {
                name,
                waited,
                waiting_for: pending
                    .iter()
                    .filter_map(|i| self.readiness.get(i).cloned())
                    .collect(),
                last_lines,
            },
            StartResult::Cancelled => StartError::Cancelled { name },
        })
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if self.end().is_none() {
            self.shared.request(Request::Close(Some(Duration::ZERO)));
        }
    }
}

/// One consistent look at a pod: see [`Pod::status`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PodStatus {
    /// The state.
    pub state: State,
    /// How the start went, once decided.
    pub start_result: Option<StartResult>,
    /// How the process ended, once it has.
    pub end: Option<End>,
    /// The process id, once spawned.
    pub pid: Option<u32>,
    /// Its health once it is ready, when it has health checks or a watchdog.
    pub health: Option<Health>,
    /// The last health check failure, or why it became unhealthy.
    pub health_message: Option<String>,
    /// The last failed health check attempt: which check, why, and how many failures in
    /// a row it has now (0 once the check passed again). Kept after the check recovers.
    pub health_failure: Option<HealthFailure>,
}

/// A failed attempt of a health check, as [`PodStatus::health_failure`] and the event
/// stream ([`EventKind::HealthCheckFailed`](crate::events::EventKind::HealthCheckFailed))
/// report it.
///
/// Its `Display` is one line: `health check http://127.0.0.1:8080/healthz failed 2 times
/// in a row: GET http://127.0.0.1:8080/healthz: no answer within 5s`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthFailure {
    /// Index of the check among the pod's health checks.
    pub index: usize,
    /// The check as written (`http://127.0.0.1:8080/healthz`, `file:/run/ok`).
    pub check: String,
    /// Why the attempt failed.
    pub message: String,
    /// Consecutive failures of this check counted now: 0 within the start period (not
    /// counted) or once the check passed again.
    pub failures: u32,
    /// Failures in a row that make the pod unhealthy (`health_retries`).
    pub retries: u32,
}

impl std::fmt::Display for HealthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let HealthFailure {
            check,
            message,
            failures,
            ..
        } = self;
        match failures {
            0 => write!(f, "health check {check} failed (not counted): {message}"),
            1 => write!(f, "health check {check} failed once: {message}"),
            n => write!(
                f,
                "health check {check} failed {n} times in a row: {message}"
            ),
        }
    }
}

/// What a pod's notify socket ignored: see [`Pod::notify_counters`].
///
/// A datagram is taken only from the pod's own processes, told by the sender's
/// credentials (see [`Readiness::Notify`](crate::Readiness::Notify)); within a datagram,
/// a malformed line is ignored on its own and the valid fields are still taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotifyCounters {
    /// Datagrams dropped because their sender is not one of the pod's processes.
    pub from_outside: u64,
    /// Datagrams taken in which at least one line was malformed.
    pub malformed_datagrams: u64,
    /// Malformed lines ignored (not UTF-8, a NUL byte, no `=`, a bad number).
    pub malformed_lines: u64,
}
