//! [`Deployment`]: the handle callers hold. It posts requests to the deployment's driver
//! and waits on the state it publishes; [`MemberStatus`] is one member as seen at one
//! moment.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::deployment::{
    Cause, DeploymentEvent, DeploymentMachine, DeploymentSpec, DeploymentStartResult,
    DeploymentState, MemberId, MemberState,
};
use crate::core::{End, StartResult, Unhealthy};
use crate::events::{EventLog, Events};
use crate::handle::Published;

use super::config::{DeploymentConfig, MakeConfig, PortBook};
use super::driver::{build_pod, drive, Inner, Request, Shared, Slot};
use super::error::{
    ControlError, DeploymentConfigError, DeploymentFailure, DeploymentStartError, FailureDetails,
    MemberControl,
};

/// A member of a deployment as seen at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberStatus {
    /// Its name, `template/replica`.
    pub name: String,
    /// Its state.
    pub state: MemberState,
    /// How many times its restart policy restarted it (Docker's `RestartCount`); starts
    /// and restarts on request do not count.
    pub restarts: u64,
    /// The process id of its current or last pod, once spawned.
    pub pid: Option<u32>,
    /// The start result of its current or last pod.
    pub start_result: Option<StartResult>,
    /// How its current or last pod ended.
    pub end: Option<End>,
    /// How the last of its pods that ended ended, kept while a new pod runs.
    pub last_end: Option<End>,
    /// The health of its current or last pod, once ready, when it has health checks or a
    /// watchdog.
    pub health: Option<crate::core::Health>,
    /// The last health failure of its current or last pod.
    pub health_message: Option<String>,
    /// The last failed health attempt of its current or last pod (see
    /// [`PodStatus::health_failure`](crate::PodStatus::health_failure)).
    pub health_failure: Option<crate::HealthFailure>,
}

/// A group of pods started in dependency order, restarted by their policies, and closed
/// in reverse dependency order; see [`core::deployment`](crate::core::deployment) for the
/// rules.
///
/// Same shape as [`Pod`](crate::Pod): creating it validates everything and starts nothing; the work
/// happens on podvisor's own thread whether or not anyone awaits the handle; the async
/// methods are cancellation-safe and work under any executor; the `*_blocking` methods
/// wait on the calling thread. Dropping a deployment that has not ended closes it with a
/// zero grace period (SIGKILL, still in reverse dependency order) in the background.
///
/// # Examples
///
/// ```
/// use podvisor::core::deployment::{Condition, DeploymentState};
/// use podvisor::{Deployment, DeploymentConfig, PodConfig, PodSet, Readiness};
///
/// let db = PodConfig::new("sh")
///     .args(["-c", "echo db up; exec sleep 30"])
///     .ready(Readiness::Stdout("db up".into()));
/// let web = PodConfig::new("sh").args(["-c", "exec sleep 30"]);
/// let deployment = Deployment::new(
///     DeploymentConfig::new()
///         .pod(PodSet::new("db", db))
///         .pod(PodSet::new("web", web).replicas(2).depends_on("db", Condition::Ready)),
/// )?;
/// deployment.start_and_wait_blocking()?;
/// assert_eq!(deployment.state(), DeploymentState::Ready);
/// deployment.close_blocking()?;
/// assert_eq!(deployment.state(), DeploymentState::Ended);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Deployment {
    shared: Arc<Shared>,
}

impl fmt::Debug for Deployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deployment")
            .field("state", &self.state())
            .field("members", &self.members())
            .finish()
    }
}

impl Deployment {
    /// A deployment for `config`, not started. Validates the deployment's shape and builds
    /// every replica's first pod (so a bad pod configuration is reported here).
    pub fn new(config: DeploymentConfig) -> Result<Deployment, DeploymentConfigError> {
        let seed = config.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        // Whether a set's pods have health checks (for `healthy` dependencies) shows in
        // the pods built below; until then every set is taken for checked.
        let templates: Vec<_> = config
            .sets
            .iter()
            .map(|s| s.template.clone().health_checked(true))
            .collect();
        let spec = DeploymentSpec { templates, seed };
        let machine = DeploymentMachine::new(spec).map_err(DeploymentConfigError::Deployment)?;
        let makers: Vec<MakeConfig> = config.sets.iter().map(|s| s.make.clone()).collect();
        let mut slots = Vec::with_capacity(machine.members().len());
        let ports = Arc::new(PortBook::default());
        let events = EventLog::new();
        let mut checked = vec![false; config.sets.len()];
        for member in machine.members() {
            let (pod, port) = build_pod(&machine, &makers, member, None, &ports, &events)?;
            checked[member.template()] |= pod.has_health_checks();
            slots.push(Slot {
                pod: None,
                observer: None,
                first: Some(Arc::new(pod)),
                port,
                dirty: false,
            });
        }
        let spec = DeploymentSpec {
            templates: config
                .sets
                .iter()
                .zip(checked)
                .map(|(s, checked)| s.template.clone().health_checked(checked))
                .collect(),
            seed,
        };
        let machine = DeploymentMachine::new(spec).map_err(DeploymentConfigError::Deployment)?;
        let shared = Arc::new(Shared {
            state: Published::new(Inner {
                machine,
                slots,
                dirty: Vec::new(),
                events,
                ports,
                requests: VecDeque::new(),
                work: false,
                driver_waker: None,
                version: 0,
            }),
        });
        crate::executor::spawn(drive(shared.clone(), makers, Instant::now()));
        Ok(Deployment { shared })
    }

    /// Starts the deployment without waiting. A second call does nothing.
    pub fn start(&self) {
        self.shared
            .wake_driver(|inner| inner.requests.push_back(Request::Start));
    }

    /// Starts the deployment and waits until it is ready or its start failed.
    pub async fn start_and_wait(&self) -> Result<(), DeploymentStartError> {
        self.start();
        self.wait_ready().await
    }

    /// Waits until the start is decided: `Ok` once every member was ready (one-shot
    /// members: succeeded) at once; otherwise the failure that closed the deployment, or
    /// `Cancelled`. Returns at once when it already is decided.
    pub async fn wait_ready(&self) -> Result<(), DeploymentStartError> {
        let result = self
            .wait_for(|inner| inner.machine.start_result().cloned())
            .await;
        self.start_error(result)
    }

    /// The start result as `wait_ready` would return it, without waiting: `None` while
    /// undecided.
    pub fn wait_ready_nowait(&self) -> Option<Result<(), DeploymentStartError>> {
        let result = self.shared.lock().machine.start_result().cloned()?;
        Some(self.start_error(result))
    }

    /// Closes the deployment with each pod's own grace period and waits until it ended.
    /// `Ok` unless a member failure had already taken it down. Safe at any moment and any
    /// number of times.
    pub async fn close(&self) -> Result<(), DeploymentFailure> {
        self.close_nowait(None);
        self.join().await
    }

    /// Like [`Deployment::close`] with one grace period for every pod. A later close may
    /// shorten it, never lengthen it.
    pub async fn close_with_grace(&self, grace: Duration) -> Result<(), DeploymentFailure> {
        self.close_nowait(Some(grace));
        self.join().await
    }

    /// Asks the deployment to close without waiting.
    pub fn close_nowait(&self, grace: Option<Duration>) {
        self.shared
            .wake_driver(|inner| inner.requests.push_back(Request::Close(grace)));
    }

    /// Stops the members named `name` — one replica (`web/1`) or every replica of a pod
    /// (`web`) — and keeps them down (not restarted, not a failure) until
    /// [`start_member`](Deployment::start_member). With `with_dependents`, the running
    /// members that depend on them are stopped first, in reverse dependency order. Says,
    /// per member, whether it was already down, and lists after it the dependents it stops
    /// too ([`MemberControl::Dependent`]); the stop itself happens on podvisor's thread
    /// (watch [`members`](Deployment::members) or the event stream).
    ///
    /// ```
    /// use podvisor::{Deployment, DeploymentConfig, MemberControl, PodConfig, PodSet};
    ///
    /// let deployment = Deployment::new(
    ///     DeploymentConfig::new().pod(PodSet::new("web", PodConfig::new("sleep").arg("30"))),
    /// )
    /// .unwrap();
    /// deployment.start_and_wait_blocking().unwrap();
    /// let done = deployment.stop_member("web", true).unwrap();
    /// assert_eq!(done, [("web/0".to_string(), MemberControl::Done)]);
    /// assert!(deployment.start_member("nope").is_err());
    /// deployment.close_blocking().unwrap();
    /// ```
    pub fn stop_member(
        &self,
        name: &str,
        with_dependents: bool,
    ) -> Result<Vec<(String, MemberControl)>, ControlError> {
        self.control(name, with_dependents, |member, m| {
            let down = !m.state().is_running()
                && !matches!(m.state(), MemberState::Waiting | MemberState::BackingOff)
                || m.is_held() && !m.state().is_running();
            let answer = if down {
                MemberControl::AlreadyStopped
            } else {
                MemberControl::Done
            };
            (
                answer,
                DeploymentEvent::StopMember {
                    member,
                    cascade: with_dependents,
                },
            )
        })
    }

    /// Starts the members named `name` that were stopped (or had ended): each starts once
    /// its dependencies meet their conditions, with a fresh restart budget. Says, per
    /// member, whether it was already running.
    pub fn start_member(&self, name: &str) -> Result<Vec<(String, MemberControl)>, ControlError> {
        self.control(name, false, |member, m| {
            let stopped = matches!(
                m.state(),
                MemberState::Stopped
                    | MemberState::Ended
                    | MemberState::CrashLooping
                    | MemberState::Succeeded
            ) || m.is_held();
            let answer = if stopped {
                MemberControl::Done
            } else {
                MemberControl::AlreadyRunning
            };
            (answer, DeploymentEvent::StartMember { member })
        })
    }

    /// Restarts the members named `name`: they and the running members that depend on
    /// them are stopped (dependents first) and started again (dependencies first). Not a
    /// failure: no restart budget is spent and the backoff is reset. The answer lists the
    /// dependents restarted with each member after it ([`MemberControl::Dependent`]).
    pub fn restart_member(&self, name: &str) -> Result<Vec<(String, MemberControl)>, ControlError> {
        self.control(name, true, |member, _| {
            (
                MemberControl::Done,
                DeploymentEvent::RestartMember { member },
            )
        })
    }

    fn control(
        &self,
        name: &str,
        with_dependents: bool,
        request: impl Fn(MemberId, &crate::core::deployment::Member) -> (MemberControl, DeploymentEvent),
    ) -> Result<Vec<(String, MemberControl)>, ControlError> {
        let (answers, events) = {
            let inner = self.shared.lock();
            let machine = &inner.machine;
            if matches!(
                machine.state(),
                DeploymentState::Stopping | DeploymentState::Ended
            ) {
                return Err(ControlError::Closing);
            }
            let ids: Vec<MemberId> =
                match machine.find(name) {
                    Some(id) => vec![id],
                    None => {
                        let template = machine.spec().position(name).ok_or_else(|| {
                            ControlError::UnknownName {
                                name: name.to_string(),
                                known: machine
                                    .members()
                                    .iter()
                                    .map(|m| m.name().to_string())
                                    .collect(),
                            }
                        })?;
                        machine.members_of(template).collect()
                    }
                };
            let mut answers = Vec::new();
            let mut events = Vec::new();
            for &id in &ids {
                let m = machine.member(id);
                let (answer, event) = request(id, m);
                answers.push((m.name().to_string(), answer));
                events.push(event);
                if with_dependents && answer == MemberControl::Done {
                    for dependent in machine.stopped_with(id) {
                        let name = machine.member(dependent).name();
                        if !ids.contains(&dependent) && !answers.iter().any(|(n, _)| n == name) {
                            answers.push((name.to_string(), MemberControl::Dependent));
                        }
                    }
                }
            }
            (answers, events)
        };
        self.shared.wake_driver(|inner| {
            inner
                .requests
                .extend(events.iter().cloned().map(Request::Member))
        });
        Ok(answers)
    }

    /// Waits until the deployment has ended (every member's process reaped) without
    /// asking it to. `Err` if a member failure took it down.
    pub async fn join(&self) -> Result<(), DeploymentFailure> {
        self.wait_for(|inner| (inner.machine.state() == DeploymentState::Ended).then_some(()))
            .await;
        match self.failure() {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }

    /// Like [`Deployment::join`], giving up after `timeout` (`None` then; the deployment
    /// is unaffected).
    pub async fn join_timeout(&self, timeout: Duration) -> Option<Result<(), DeploymentFailure>> {
        crate::handle::within(timeout, self.join()).await
    }

    /// Waits for the next change of the deployment's state or of any member's state
    /// after `seen` (a count starting at 0), then returns the new count and the
    /// deployment's state. Look at [`Deployment::members`] for the members'.
    pub async fn changed(&self, seen: u64) -> (u64, DeploymentState) {
        self.wait_for(|inner| {
            (inner.version > seen).then(|| (inner.version, inner.machine.state()))
        })
        .await
    }

    async fn wait_for<T>(&self, ready: impl FnMut(&Inner) -> Option<T>) -> T {
        self.shared.state.wait_for(ready).await
    }

    /// [`Deployment::start_and_wait`] on the calling thread.
    pub fn start_and_wait_blocking(&self) -> Result<(), DeploymentStartError> {
        futures_lite::future::block_on(self.start_and_wait())
    }

    /// [`Deployment::wait_ready`] on the calling thread.
    pub fn wait_ready_blocking(&self) -> Result<(), DeploymentStartError> {
        futures_lite::future::block_on(self.wait_ready())
    }

    /// [`Deployment::close`] on the calling thread.
    pub fn close_blocking(&self) -> Result<(), DeploymentFailure> {
        futures_lite::future::block_on(self.close())
    }

    /// [`Deployment::close_with_grace`] on the calling thread.
    pub fn close_with_grace_blocking(&self, grace: Duration) -> Result<(), DeploymentFailure> {
        futures_lite::future::block_on(self.close_with_grace(grace))
    }

    /// [`Deployment::join`] on the calling thread.
    pub fn join_blocking(&self) -> Result<(), DeploymentFailure> {
        futures_lite::future::block_on(self.join())
    }

    /// [`Deployment::join_timeout`] on the calling thread.
    pub fn join_timeout_blocking(
        &self,
        timeout: Duration,
    ) -> Option<Result<(), DeploymentFailure>> {
        futures_lite::future::block_on(self.join_timeout(timeout))
    }

    /// The deployment's events from its creation on, in order (see [`crate::events`]):
    /// its pods' (started, ready, stopping, killing, ended), its members' state changes
    /// and its own, in the order they happened. The stream ends after the deployment's
    /// end.
    pub fn events(&self) -> Events {
        self.shared.lock().events.subscribe()
    }

    /// The instant the deployment was created: its events' [`at`](crate::events::LifecycleEvent::at)
    /// count from it, so a caller's own lines can be timed on the same clock.
    ///
    /// ```
    /// use podvisor::{Deployment, DeploymentConfig, PodConfig, PodSet};
    ///
    /// let deployment =
    ///     Deployment::new(DeploymentConfig::new().pod(PodSet::new("a", PodConfig::new("true"))))?;
    /// assert!(deployment.epoch() <= std::time::Instant::now());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn epoch(&self) -> Instant {
        self.shared.lock().events.epoch()
    }

    /// The deployment's state.
    pub fn state(&self) -> DeploymentState {
        self.shared.lock().machine.state()
    }

    /// Every member, in order (`db/0`, `web/0`, `web/1`, …), as of now, all read at one
    /// moment.
    pub fn members(&self) -> Vec<MemberStatus> {
        let inner = self.shared.lock();
        (0..inner.slots.len())
            .map(|i| member_status(&inner, i))
            .collect()
    }

    /// Sends `signal` to the process group of every member whose pod is running; returns
    /// how many were signalled. Members between pods (waiting, backing off) or ended are
    /// skipped. Errors of single pods (a group that just ended) are ignored.
    pub fn signal(&self, signal: crate::Signal) -> usize {
        let pods: Vec<_> = {
            let inner = self.shared.lock();
            inner
                .slots
                .iter()
                .filter_map(|slot| slot.pod.clone())
                .collect()
        };
        pods.iter()
            .filter(|pod| pod.signal(signal).unwrap_or(false))
            .count()
    }

    /// The member named `name` (`web/1`), as of now.
    pub fn member(&self, name: &str) -> Option<MemberStatus> {
        let inner = self.shared.lock();
        let id = inner.machine.find(name)?;
        Some(member_status(&inner, id.0))
    }

    /// The last output lines of the member named `name`'s current or last pod.
    pub fn last_lines(&self, name: &str) -> Vec<String> {
        let pod = {
            let inner = self.shared.lock();
            inner
                .machine
                .find(name)
                .and_then(|id| inner.slots[id.0].pod.clone())
        };
        pod.map(|pod| pod.last_lines()).unwrap_or_default()
    }

    /// The member failure that took the deployment down, if one did.
    pub fn failure(&self) -> Option<DeploymentFailure> {
        let (failure, pod) = {
            let inner = self.shared.lock();
            let failure = inner.machine.failure()?.clone();
            let pod = inner.slots[failure.member.0].pod.clone();
            (failure, pod)
        };
        let start_error = match (&failure.cause, &pod) {
            (Cause::Start(_), Some(pod)) => pod.wait_ready_nowait().and_then(Result::err),
            _ => None,
        };
        let health_failure = match (&failure.cause, &pod) {
            (
                Cause::Ended(End::Unhealthy {
                    cause: Unhealthy::Check { check, .. },
                    ..
                }),
                Some(pod),
            ) => pod.status().health_failure.filter(|f| f.index == *check),
            _ => None,
        };
        let last_lines = pod.map(|pod| pod.last_lines()).unwrap_or_default();
        Some(DeploymentFailure(Box::new(FailureDetails {
            failure,
            start_error,
            last_lines,
            health_failure,
        })))
    }

    fn start_error(&self, result: DeploymentStartResult) -> Result<(), DeploymentStartError> {
        match result {
            DeploymentStartResult::Ready { .. } => Ok(()),
            DeploymentStartResult::Cancelled => Err(DeploymentStartError::Cancelled),
            DeploymentStartResult::Failed(_) => Err(self.failure().map_or(
                DeploymentStartError::Cancelled,
                DeploymentStartError::Failed,
            )),
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if self.state() != DeploymentState::Ended {
            self.close_nowait(Some(Duration::ZERO));
        }
    }
}

fn member_status(inner: &Inner, i: usize) -> MemberStatus {
    let member = inner.machine.member(MemberId(i));
    let status = inner.slots[i].pod.as_ref().map(|pod| pod.status());
    MemberStatus {
        name: member.name().to_owned(),
        state: member.state(),
        restarts: member.restarts(),
        pid: inner.slots[i].pod.as_ref().and_then(|pod| pod.pid()),
        start_result: member.start_result().cloned(),
        end: member.end(),
        last_end: member.last_end(),
        health: status.as_ref().and_then(|s| s.health),
        health_message: status.as_ref().and_then(|s| s.health_message.clone()),
        health_failure: status.and_then(|s| s.health_failure),
    }
}
