//! [`Deployment`]: a group of pods with replicas, dependencies and restart policies, driven
//! by the core's [`DeploymentMachine`] on podvisor's own thread.
//!
//! The driver is thin: it turns what each member's [`Pod`] does into events for the
//! machine (through [`PodObserver`]), and performs what the machine asks — create and
//! start a fresh pod, close one. Every decision (start order, fail fast, restarts, close
//! order) is the machine's.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use event_listener::Event as Notifier;

use crate::config::{ConfigError, PodConfig};
use crate::core::deployment::{
    Backoff, Cause, Condition, DeploymentAction, DeploymentError, DeploymentEvent,
    DeploymentMachine, DeploymentSpec, DeploymentStartResult, DeploymentState, Failure, MemberId,
    MemberState, PodObserver, PodTemplate, RestartPolicy,
};
use crate::core::{End, SpawnError, SpawnErrorKind, StartFailure, StartResult, State, Time};
use crate::events::{EventKind, EventLog, Events};
use crate::pod::{FailureReason, Pod, StartError};

type MakeConfig = Arc<dyn Fn(&Replica) -> PodConfig + Send + Sync>;

/// One replica as its [`PodSet`] sees it while building its [`PodConfig`]: its index, its
/// name, and a free TCP port if it asks for one.
///
/// Every replica's pod also gets `PODVISOR_POD` (its name, `web/1`) and
/// `PODVISOR_REPLICA` (its index) in its environment, and `PODVISOR_PORT` once it asked
/// for a port.
#[derive(Debug)]
pub struct Replica {
    name: String,
    template: String,
    index: u32,
    port: Cell<Option<u16>>,
    ports: Arc<PortBook>,
}

/// The ports a deployment's replicas were given, so that none is given twice: the kernel
/// hands out a port it just freed again as readily as any other.
#[derive(Debug, Default)]
pub(crate) struct PortBook {
    given: Mutex<std::collections::BTreeSet<u16>>,
}

impl PortBook {
    /// Attempts at finding a port not given yet before giving up (with 0).
    const ATTEMPTS: usize = 512;

    /// A port free on 127.0.0.1 now and not given to another replica of the deployment; 0
    /// if none was found. Ports already given that the kernel offers again are held open
    /// while looking further, so the kernel moves on.
    fn give(&self) -> u16 {
        let mut given = self.given.lock().unwrap_or_else(|e| e.into_inner());
        let mut held = Vec::new();
        for _ in 0..Self::ATTEMPTS {
            let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", 0)) else {
                return 0;
            };
            let Ok(port) = listener.local_addr().map(|a| a.port()) else {
                return 0;
            };
            if given.insert(port) {
                return port;
            }
            held.push(listener);
        }
        0
    }
}

impl Replica {
    /// The replica's number, from 0.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The pod's name, `template/index`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The template's name.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// A TCP port that was free on 127.0.0.1 when first asked for, the same for every
    /// restart of this replica, and never the port of another replica of the deployment.
    /// 0 if none could be found. (Another process may take the port between the check and
    /// the pod's bind; the pod then fails to start.)
    pub fn port(&self) -> u16 {
        if let Some(port) = self.port.get() {
            return port;
        }
        let port = self.ports.give();
        self.port.set(Some(port));
        port
    }

    /// `text` with `{replica}`, `{name}` and `{port}` replaced by [`Replica::index`],
    /// [`Replica::name`] and [`Replica::port`] (a port is only allocated if `{port}`
    /// occurs).
    ///
    /// ```
    /// use podvisor::{PodConfig, PodSet};
    ///
    /// let web = PodSet::from_fn("web", |r| {
    ///     PodConfig::new("web-server").arg(r.expand("--listen=127.0.0.1:{port}"))
    ///         .arg(r.expand("--id={name}#{replica}"))
    /// })
    /// .replicas(3);
    /// ```
    pub fn expand(&self, text: &str) -> String {
        let mut out = text
            .replace("{replica}", &self.index.to_string())
            .replace("{name}", &self.name);
        if out.contains("{port}") {
            out = out.replace("{port}", &self.port().to_string());
        }
        out
    }
}

/// One pod of a [`DeploymentConfig`], possibly replicated: how to build each replica's
/// [`PodConfig`], its dependencies, and its restart policy.
#[derive(Clone)]
pub struct PodSet {
    template: PodTemplate,
    make: MakeConfig,
}

impl fmt::Debug for PodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodSet")
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

impl PodSet {
    /// Every replica runs `config` (named `name/index`).
    pub fn new(name: impl Into<String>, config: PodConfig) -> PodSet {
        PodSet::from_fn(name, move |_| config.clone())
    }

    /// Each replica runs the config `make` builds for it, for its first start and for
    /// every restart. Use [`Replica::expand`] for `{replica}` and `{port}` placeholders.
    /// The config's name is replaced by the replica's name.
    pub fn from_fn(
        name: impl Into<String>,
        make: impl Fn(&Replica) -> PodConfig + Send + Sync + 'static,
    ) -> PodSet {
        PodSet {
            template: PodTemplate::new(name),
            make: Arc::new(make),
        }
    }

    /// How many replicas (1 by default).
    pub fn replicas(mut self, replicas: u32) -> Self {
        self.template.replicas = replicas;
        self
    }

    /// Starts (and restarts) replicas only once every replica of `on` meets `condition`.
    pub fn depends_on(mut self, on: impl Into<String>, condition: Condition) -> Self {
        self.template = self.template.depends_on(on, condition);
        self
    }

    /// Marks it a one-shot job (a migration): expected to exit 0, which neither stops the
    /// deployment nor counts as a failure.
    pub fn one_shot(mut self) -> Self {
        self.template.one_shot = true;
        self
    }

    /// When a replica that ended by itself is started again (`No` by default).
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.template.restart = policy;
        self
    }

    /// The delays between restarts and the restart budget.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.template.backoff = backoff;
        self
    }
}

/// Everything needed to run a [`Deployment`]: its pods and the jitter seed.
#[derive(Clone, Debug, Default)]
pub struct DeploymentConfig {
    sets: Vec<PodSet>,
    seed: Option<u64>,
}

impl DeploymentConfig {
    /// An empty deployment.
    pub fn new() -> DeploymentConfig {
        DeploymentConfig::default()
    }

    /// Adds a pod set.
    pub fn pod(mut self, set: PodSet) -> Self {
        self.sets.push(set);
        self
    }

    /// The seed of the restart jitter. By default one is drawn from the clock, so that
    /// deployments started together do not restart in lockstep.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

/// A [`DeploymentConfig`] that cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeploymentConfigError {
    /// The shape of the deployment is wrong (cycle, unknown dependency, …).
    Deployment(DeploymentError),
    /// A replica's pod configuration is wrong.
    Pod {
        /// The replica.
        member: String,
        /// What is wrong.
        error: ConfigError,
    },
    /// Building a replica's configuration panicked.
    ConfigPanicked {
        /// The replica.
        member: String,
    },
}

impl fmt::Display for DeploymentConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeploymentConfigError::Deployment(error) => write!(f, "{error}"),
            DeploymentConfigError::Pod { member, error } => write!(f, "pod {member}: {error}"),
            DeploymentConfigError::ConfigPanicked { member } => {
                write!(f, "pod {member}: building its configuration panicked")
            }
        }
    }
}

impl std::error::Error for DeploymentConfigError {}

/// The member failure that took a deployment down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentFailure(Box<FailureDetails>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct FailureDetails {
    failure: Failure,
    start_error: Option<StartError>,
    last_lines: Vec<String>,
}

impl DeploymentFailure {
    /// What the core recorded: the member, what it did, its restart policy, whether it is
    /// crash-looping.
    pub fn failure(&self) -> &Failure {
        &self.0.failure
    }

    /// The member's name (`web/1`).
    pub fn member(&self) -> &str {
        &self.0.failure.name
    }

    /// What the member did.
    pub fn cause(&self) -> &Cause {
        &self.0.failure.cause
    }

    /// `Some(n)` when the member is crash-looping: its budget of `n` restarts was spent.
    pub fn crash_looping_after(&self) -> Option<u32> {
        self.0.failure.crash_looping_after
    }

    /// The pod's own account of its failed start (program, spawn error, readiness checks
    /// it waited for), when the failure was a start.
    pub fn start_error(&self) -> Option<&StartError> {
        self.0.start_error.as_ref()
    }

    /// The pod's last output lines.
    pub fn last_lines(&self) -> &[String] {
        &self.0.last_lines
    }
}

impl fmt::Display for DeploymentFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let details = &self.0;
        write!(f, "deployment stopped: {}", details.failure)?;
        if let Some(StartError::FailedToStart {
            program,
            reason: FailureReason::Spawn { message, .. },
            ..
        }) = &details.start_error
        {
            write!(f, " (program {program:?}: {message})")?;
        }
        if !details.last_lines.is_empty() {
            write!(f, "; last output of {}:", details.failure.name)?;
            for line in &details.last_lines {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for DeploymentFailure {}

/// Why a deployment did not become ready.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeploymentStartError {
    /// A member failed; everything was closed.
    Failed(DeploymentFailure),
    /// It was closed before it was ready.
    Cancelled,
}

impl fmt::Display for DeploymentStartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeploymentStartError::Failed(failure) => write!(f, "{failure}"),
            DeploymentStartError::Cancelled => {
                write!(f, "the deployment was closed before it was ready")
            }
        }
    }
}

impl std::error::Error for DeploymentStartError {}

/// A member of a deployment as seen at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberStatus {
    /// Its name, `template/replica`.
    pub name: String,
    /// Its state.
    pub state: MemberState,
    /// How many times it was restarted.
    pub restarts: u64,
    /// The process id of its current or last pod, once spawned.
    pub pid: Option<u32>,
    /// The start result of its current or last pod.
    pub start_result: Option<StartResult>,
    /// How its current or last pod ended.
    pub end: Option<End>,
}

enum Request {
    Start,
    Close(Option<Duration>),
}

struct Slot {
    pod: Option<Arc<Pod>>,
    observer: Option<PodObserver>,
    /// The pod built at creation for the first start.
    first: Option<Arc<Pod>>,
    port: Option<u16>,
    dirty: bool,
}

struct Inner {
    machine: DeploymentMachine,
    slots: Vec<Slot>,
    /// The members whose `dirty` is set, in the order they changed.
    dirty: Vec<usize>,
    /// The deployment's event stream (its pods append theirs to it too).
    events: Arc<EventLog>,
    ports: Arc<PortBook>,
    requests: VecDeque<Request>,
    work: bool,
    driver_waker: Option<Waker>,
    version: u64,
}

struct Shared {
    inner: Mutex<Inner>,
    changed: Notifier,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update is complete before anything that could panic; the data stays usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_driver(&self, mut update: impl FnMut(&mut Inner)) {
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

/// A group of pods started in dependency order, restarted by their policies, and closed
/// in reverse dependency order; see [`core::deployment`](crate::core::deployment) for the
/// rules.
///
/// Same shape as [`Pod`]: creating it validates everything and starts nothing; the work
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
        let spec = DeploymentSpec {
            templates: config.sets.iter().map(|s| s.template.clone()).collect(),
            seed,
        };
        let machine = DeploymentMachine::new(spec).map_err(DeploymentConfigError::Deployment)?;
        let makers: Vec<MakeConfig> = config.sets.iter().map(|s| s.make.clone()).collect();
        let mut slots = Vec::with_capacity(machine.members().len());
        let ports = Arc::new(PortBook::default());
        let events = EventLog::new();
        for member in machine.members() {
            let (pod, port) = build_pod(&machine, &makers, member, None, &ports, &events)?;
            slots.push(Slot {
                pod: None,
                observer: None,
                first: Some(Arc::new(pod)),
                port,
                dirty: false,
            });
        }
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
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
            changed: Notifier::new(),
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
        let join = async { Some(self.join().await) };
        let timer = async {
            async_io::Timer::after(timeout).await;
            None
        };
        futures_lite::future::or(join, timer).await
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

    async fn wait_for<T>(&self, mut ready: impl FnMut(&Inner) -> Option<T>) -> T {
        loop {
            // Listen before looking, so a change between the look and the wait is not lost.
            let listener = self.shared.changed.listen();
            if let Some(value) = ready(&self.shared.lock()) {
                return value;
            }
            listener.await;
        }
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
        let last_lines = pod.map(|pod| pod.last_lines()).unwrap_or_default();
        Some(DeploymentFailure(Box::new(FailureDetails {
            failure,
            start_error,
            last_lines,
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
    MemberStatus {
        name: member.name().to_owned(),
        state: member.state(),
        restarts: member.restarts(),
        pid: inner.slots[i].pod.as_ref().and_then(|pod| pod.pid()),
        start_result: member.start_result().cloned(),
        end: member.end(),
    }
}

/// Builds a replica's pod: the set's config with the replica's name and environment.
fn build_pod(
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
async fn drive(shared: Arc<Shared>, makers: Vec<MakeConfig>, epoch: Instant) {
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
                    events.extend(observer.observe(state, result.as_ref(), end));
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
            shared.changed.notify(usize::MAX);
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
                Err(_) => {
                    // A restart whose configuration no longer builds cannot spawn.
                    inner.slots[i].pod = None;
                    inner.slots[i].observer = None;
                    let error = SpawnError {
                        kind: SpawnErrorKind::Other,
                        errno: None,
                    };
                    events.push_back(DeploymentEvent::PodStartResult {
                        member,
                        generation,
                        result: StartResult::FailedToStart(StartFailure::Spawn(error)),
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
