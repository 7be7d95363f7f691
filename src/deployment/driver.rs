//! The deployment's driver, on podvisor's own thread: it feeds requests and its pods'
//! changes to the [`DeploymentMachine`], performs the machine's actions (build and start a
//! member's pod, close one, publish a change), and sleeps until the next request, pod
//! change or restart. It decides nothing itself.

use std::cell::Cell;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::core::deployment::{
    DeploymentAction, DeploymentEvent, DeploymentMachine, DeploymentState, PodObserver,
};
use crate::core::{End, StartFailure, StartResult, State, Time};
use crate::events::{EventKind, EventLog};
use crate::handle::Published;
use crate::pod::Pod;

use super::config::{MakeConfig, PortBook, Replica};
use super::error::DeploymentConfigError;

pub(super) enum Request {
    Start,
    Close(Option<Duration>),
    /// A request about one member (stop, start, restart).
    Member(DeploymentEvent),
}

pub(super) struct Slot {
    pub(super) pod: Option<Arc<Pod>>,
    pub(super) observer: Option<PodObserver>,
    /// The pod built at creation for the first start.
    pub(super) first: Option<Arc<Pod>>,
    pub(super) port: Option<u16>,
    pub(super) dirty: bool,
}

pub(super) struct Inner {
    pub(super) machine: DeploymentMachine,
    pub(super) slots: Vec<Slot>,
    /// The members whose `dirty` is set, in the order they changed.
    pub(super) dirty: Vec<usize>,
    /// The deployment's event stream (its pods append theirs to it too).
    pub(super) events: Arc<EventLog>,
    pub(super) ports: Arc<PortBook>,
    pub(super) requests: VecDeque<Request>,
    pub(super) work: bool,
    pub(super) driver_waker: Option<Waker>,
    pub(super) version: u64,
}

pub(super) struct Shared {
    pub(super) state: Published<Inner>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock()
    }

    pub(super) fn wake_driver(&self, mut update: impl FnMut(&mut Inner)) {
        let waker = {
            let mut inner = self.lock();
            update(&mut inner);
            inner.work = true;
            inner.driver_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Builds a replica's pod: the set's config with the replica's name and environment.
pub(super) fn build_pod(
    machine: &DeploymentMachine,
    makers: &[MakeConfig],
    member: &crate::core::deployment::Member,
    port: Option<u16>,
    ports: &Arc<PortBook>,
    events: &Arc<EventLog>,
) -> Result<(Pod, Option<u16>), DeploymentConfigError> {
    let template = &machine.spec().templates[member.template()];
    let replica = Replica {
        name: member.name().to_owned(),
        template: template.name.clone(),
        index: member.replica(),
        port: Cell::new(port),
        ports: ports.clone(),
    };
    let make = &makers[member.template()];
    let config = catch_unwind(AssertUnwindSafe(|| make(&replica))).map_err(|_| {
        DeploymentConfigError::ConfigPanicked {
            member: replica.name.clone(),
        }
    })?;
    let mut config = config
        .name(replica.name.clone())
        .env("PODVISOR_POD", &replica.name)
        .env("PODVISOR_REPLICA", replica.index.to_string());
    let port = replica.port.get();
    if let Some(port) = port {
        config = config.env("PODVISOR_PORT", port.to_string());
    }
    let pod = Pod::in_deployment(config, Some(events.clone())).map_err(|error| {
        DeploymentConfigError::Pod {
            member: replica.name.clone(),
            error,
        }
    })?;
    Ok((pod, port))
}

/// Follows one pod's state changes and marks its member for the driver to look at.
async fn watch(shared: Arc<Shared>, member: usize, pod: Arc<Pod>) {
    let mut seen = 0;
    loop {
        let (version, state) = pod.changed(seen).await;
        seen = version;
        shared.wake_driver(|inner| {
            let current = inner.slots[member]
                .pod
                .as_ref()
                .is_some_and(|current| Arc::ptr_eq(current, &pod));
            if current && !std::mem::replace(&mut inner.slots[member].dirty, true) {
                inner.dirty.push(member);
            }
        });
        if state == State::Ended {
            return;
        }
    }
}

/// The deployment's driver: feeds requests and pod changes to the machine, performs its
/// actions, and sleeps until the next request, pod change or restart.
pub(super) async fn drive(shared: Arc<Shared>, makers: Vec<MakeConfig>, epoch: Instant) {
    loop {
        let now = Time::from_nanos(u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let (changed, timeout, ended) = {
            let mut guard = shared.lock();
            let inner = &mut *guard;
            inner.work = false;
            let mut events: VecDeque<DeploymentEvent> = inner
                .requests
                .drain(..)
                .map(|request| match request {
                    Request::Start => DeploymentEvent::Start,
                    Request::Close(grace) => DeploymentEvent::Close { grace },
                    Request::Member(event) => event,
                })
                .collect();
            // Only the members whose pod changed: looking at all of them on every change
            // would make starting N pods cost N².
            for i in std::mem::take(&mut inner.dirty) {
                let slot = &mut inner.slots[i];
                slot.dirty = false;
                if let (Some(pod), Some(observer)) = (&slot.pod, &mut slot.observer) {
                    // End first: a pod that has an end has its start result too.
                    let end = pod.end();
                    let result = pod.start_result();
                    let state = pod.state();
                    events.extend(observer.observe_all(state, result.as_ref(), end, pod.health()));
                }
            }
            events.push_back(DeploymentEvent::Tick);
            let mut changed = false;
            while let Some(event) = events.pop_front() {
                inner.machine.handle(event, now);
                while let Some(action) = inner.machine.poll_action() {
                    changed |= perform(&shared, inner, &makers, action, &mut events);
                }
            }
            if changed {
                inner.version += 1;
            }
            let ended = inner.machine.state() == DeploymentState::Ended;
            (changed, inner.machine.poll_timeout(), ended)
        };
        if changed {
            shared.state.notify();
        }
        if ended {
            return;
        }
        let work = std::future::poll_fn(|cx| {
            let mut inner = shared.lock();
            if inner.work {
                Poll::Ready(())
            } else {
                inner.driver_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        });
        match timeout {
            Some(at) => {
                let deadline = epoch
                    .checked_add(at.since_epoch())
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
                let timer = async {
                    async_io::Timer::at(deadline).await;
                };
                futures_lite::future::or(work, timer).await;
            }
            None => work.await,
        }
    }
}

/// Performs one action of the machine. Returns whether a state changed.
fn perform(
    shared: &Arc<Shared>,
    inner: &mut Inner,
    makers: &[MakeConfig],
    action: DeploymentAction,
    events: &mut VecDeque<DeploymentEvent>,
) -> bool {
    match action {
        DeploymentAction::StartPod { member, generation } => {
            let i = member.0;
            let pod = match inner.slots[i].first.take() {
                Some(pod) => Ok(pod),
                None => build_pod(
                    &inner.machine,
                    makers,
                    inner.machine.member(member),
                    inner.slots[i].port,
                    &inner.ports,
                    &inner.events,
                )
                .map(|(pod, port)| {
                    inner.slots[i].port = port;
                    Arc::new(pod)
                }),
            };
            match pod {
                Ok(pod) => {
                    pod.start();
                    inner.slots[i].pod = Some(pod.clone());
                    inner.slots[i].observer = Some(PodObserver::new(member, generation));
                    crate::executor::spawn(watch(shared.clone(), i, pod));
                }
                Err(error) => {
                    // A restart whose configuration no longer builds cannot spawn: a
                    // failed start, with the configuration's own message.
                    inner.slots[i].pod = None;
                    inner.slots[i].observer = None;
                    let failure = StartFailure::Config {
                        message: error.to_string(),
                    };
                    events.push_back(DeploymentEvent::PodStartResult {
                        member,
                        generation,
                        result: StartResult::FailedToStart(failure),
                    });
                    events.push_back(DeploymentEvent::PodEnded {
                        member,
                        generation,
                        end: End::NeverSpawned,
                    });
                }
            }
            false
        }
        DeploymentAction::ClosePod { member, grace, .. } => {
            if let Some(pod) = &inner.slots[member.0].pod {
                pod.close_nowait(grace);
            }
            false
        }
        DeploymentAction::MemberChanged { member, state } => {
            let m = inner.machine.member(member);
            inner.events.append(
                m.name(),
                EventKind::Member {
                    state,
                    restarts: m.restarts(),
                    end: m.end(),
                },
            );
            true
        }
        DeploymentAction::StateChanged { state } => {
            inner
                .events
                .append("deployment", EventKind::Deployment { state });
            if state == DeploymentState::Ended {
                inner.events.close();
            }
            true
        }
    }
}
