//! [`DeploymentMachine`]: a group of pods with replicas, dependencies and restart
//! policies, as a deterministic state machine.
//!
//! # What it models
//!
//! The machine decides *when* each pod starts, restarts and closes; it does not run
//! pods. Each member (one replica of a [`PodTemplate`], named `name/i`) is modelled at
//! the level of its outcomes — started, its [`StartResult`], its [`End`] — which is
//! exactly what a pod driver (or a [`PodMachine`](crate::core::PodMachine) in the
//! simulator) reports. So the pod-level decisions (ready deadlines, SIGKILL escalation)
//! stay in one place, each pod keeps its own machine, and the deployment driver can be
//! built on [`Pod`](crate::Pod) handles. [`PodObserver`] turns a pod's observed state
//! into the events this machine takes.
//!
//! The calling rule is the pod machine's: **after every [`DeploymentMachine::handle`],
//! drain [`DeploymentMachine::poll_action`] until it returns `None`, then arm a timer for
//! [`DeploymentMachine::poll_timeout`] and call `handle(DeploymentEvent::Tick, now)` when
//! it fires.** Every event about a pod carries the member and the [`Generation`] from
//! the [`DeploymentAction::StartPod`] that started it; events about an older generation
//! are ignored and counted.
//!
//! # Policies
//!
//! - **Start order.** A member starts once every replica of each template it depends on
//!   meets the dependency's [`Condition`]; all members that are eligible at the same
//!   moment start together (in declaration order). A *re*start waits the same way, for
//!   the conditions as they hold at that moment.
//! - **Ready.** The deployment is ready once every long-running member is ready and
//!   every one-shot member has succeeded at the same moment. This is latched: later
//!   restarts show in the members' states, not in the deployment's.
//! - **Restarts.** A member that ended by itself (or failed to start) is restarted when
//!   its [`RestartPolicy`] says so, after the [`Backoff`] delay counted from its end. A
//!   one-shot member that exited 0 has succeeded and is done.
//! - **Giving up (fail fast).** A member that ends or fails to start and will *not* be
//!   restarted — policy `no`, `on-failure` after a successful exit of a long-running
//!   pod, or the restart budget spent ([`MemberState::CrashLooping`]) — takes the whole
//!   deployment down at that moment, before or after ready: nothing starts or restarts
//!   any more, and every running member is closed. [`DeploymentMachine::failure`] names
//!   the member and how it failed.
//! - **Dependents of a restarting dependency** keep running: a database restart does
//!   not bounce every web server, which are expected to reconnect. Only a dependent that
//!   itself (re)starts waits for the dependency's condition again.
//! - **Dependents of a dependency that died for good** are closed with the rest of the
//!   deployment, by the rule above.
//! - **Close** (asked for, or after a failure): no start or restart happens any more;
//!   members waiting to start or backing off end at once; a running member is asked to
//!   close as soon as every member that depends on it has ended. This closes in reverse
//!   dependency order with each level in parallel — N independent members close in one
//!   grace period. A later close may shorten the grace period, never lengthen it.
//!
//! # Examples
//!
//! ```
//! use podvisor::core::deployment::{
//!     Condition, DeploymentAction, DeploymentEvent, DeploymentMachine, DeploymentSpec,
//!     DeploymentState, MemberId, PodTemplate,
//! };
//! use podvisor::core::{Generation, StartResult, Time};
//! use std::time::Duration;
//!
//! let spec = DeploymentSpec::new()
//!     .pod(PodTemplate::new("db"))
//!     .pod(PodTemplate::new("web").depends_on("db", Condition::Ready));
//! let mut deployment = DeploymentMachine::new(spec).unwrap();
//! let (db, web) = (MemberId(0), MemberId(1));
//! let g = Generation(1);
//!
//! deployment.handle(DeploymentEvent::Start, Time::ZERO);
//! let starts: Vec<_> = std::iter::from_fn(|| deployment.poll_action())
//!     .filter(|a| matches!(a, DeploymentAction::StartPod { .. }))
//!     .collect();
//! assert_eq!(starts, [DeploymentAction::StartPod { member: db, generation: g }]);
//!
//! let ready = StartResult::Ready { after: Duration::from_millis(5) };
//! deployment.handle(DeploymentEvent::PodStartResult { member: db, generation: g, result: ready.clone() }, Time::from_millis(5));
//! assert!(std::iter::from_fn(|| deployment.poll_action())
//!     .any(|a| a == DeploymentAction::StartPod { member: web, generation: g }));
//!
//! deployment.handle(DeploymentEvent::PodStartResult { member: web, generation: g, result: ready }, Time::from_millis(9));
//! assert_eq!(deployment.state(), DeploymentState::Ready);
//! ```

mod check;
mod restart;
mod spec;

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use super::event::{ExitStatus, Generation};
use super::outcome::{End, StartFailure, StartResult};
use super::time::Time;
use super::State;
use restart::{wants_restart, Restarts, Verdict};

pub use check::{CheckedDeployment, DeploymentChecker};
pub use restart::jitter_draw;
pub use spec::{
    Backoff, BackoffError, Condition, Dependency, DeploymentError, DeploymentSpec, PodTemplate,
    RestartPolicy,
};

/// A member of a deployment: an index into [`DeploymentMachine::members`], in declaration
/// order of the templates, replicas in order (`db/0`, `web/0`, `web/1`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(pub usize);

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "member#{}", self.0)
    }
}

/// Where one member of a deployment is.
///
/// ```text
/// Waiting ─► Starting ─► Started ─► Ready ─────────────┐
///    ▲          │           │         │                │ (ended by itself)
///    │          └───────────┴─────────┴─► Stopping ─►  ├─► Succeeded   one-shot, exit 0
///    │                    (close, failed start)        ├─► BackingOff ─┐ restart due
///    └─────────────────────────────────────────────────│───────────────┘
///                                                       ├─► CrashLooping (budget spent)
///                                                       └─► Ended
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum MemberState {
    /// Not running: waiting for the deployment's start or for its dependencies.
    Waiting,
    /// Its pod was asked to start; it has not reported started.
    Starting,
    /// Its pod started; not ready yet.
    Started,
    /// Its pod is ready.
    Ready,
    /// Its pod is ending: it was asked to close, or its start failed.
    Stopping,
    /// Its pod ended; it starts again when the backoff delay is over.
    BackingOff,
    /// A one-shot pod that exited 0. Done.
    Succeeded,
    /// Its pod ended and it gave up restarting it: the restart budget is spent.
    CrashLooping,
    /// Gone for good: closed, ended without a restart, or never started before the close.
    Ended,
}

impl MemberState {
    /// A short lowercase name, for logs and traces.
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Waiting => "waiting",
            MemberState::Starting => "starting",
            MemberState::Started => "started",
            MemberState::Ready => "ready",
            MemberState::Stopping => "stopping",
            MemberState::BackingOff => "backing-off",
            MemberState::Succeeded => "succeeded",
            MemberState::CrashLooping => "crash-looping",
            MemberState::Ended => "ended",
        }
    }

    /// True while the member's pod may have a process: starting, started, ready or
    /// stopping.
    pub fn is_running(self) -> bool {
        matches!(
            self,
            MemberState::Starting
                | MemberState::Started
                | MemberState::Ready
                | MemberState::Stopping
        )
    }

    /// True once nothing more will happen to the member unless it is restarted from
    /// `BackingOff`: `Succeeded`, `CrashLooping` or `Ended`.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MemberState::Succeeded | MemberState::CrashLooping | MemberState::Ended
        )
    }
}

/// Where the deployment as a whole is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DeploymentState {
    /// Not started.
    Created,
    /// Starting members; not every one is ready yet.
    Starting,
    /// Every member was ready (or succeeded) at once. Members may restart from here on.
    Ready,
    /// Closing (asked for, or after a failure): members close in reverse dependency order.
    Stopping,
    /// Terminal: every member has ended (or succeeded, or never started).
    Ended,
}

impl DeploymentState {
    /// A short lowercase name, for logs and traces.
    pub fn name(self) -> &'static str {
        match self {
            DeploymentState::Created => "created",
            DeploymentState::Starting => "starting",
            DeploymentState::Ready => "ready",
            DeploymentState::Stopping => "stopping",
            DeploymentState::Ended => "ended",
        }
    }
}

/// An input to [`DeploymentMachine::handle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeploymentEvent {
    /// Only time has passed (the timer armed from `poll_timeout` fired).
    Tick,
    /// Start the deployment. Ignored unless it is `Created`.
    Start,
    /// Close the deployment. `grace: None` leaves each pod its own grace period; a later
    /// close may shorten the grace period, never lengthen it.
    Close {
        /// The grace period passed to every pod's close.
        grace: Option<Duration>,
    },
    /// The member's pod reported it started (for a command: exec succeeded).
    PodStarted {
        /// Which member.
        member: MemberId,
        /// The generation from [`DeploymentAction::StartPod`].
        generation: Generation,
    },
    /// The member's pod decided its start result. `Ready` implies started.
    PodStartResult {
        /// Which member.
        member: MemberId,
        /// The generation from [`DeploymentAction::StartPod`].
        generation: Generation,
        /// The pod's start result.
        result: StartResult,
    },
    /// The member's pod ended (its process reaped, or never spawned).
    PodEnded {
        /// Which member.
        member: MemberId,
        /// The generation from [`DeploymentAction::StartPod`].
        generation: Generation,
        /// How.
        end: End,
    },
}

/// An output of [`DeploymentMachine::poll_action`]: what the driver must do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeploymentAction {
    /// Create and start a fresh pod for the member; report its events with `generation`.
    StartPod {
        /// Which member.
        member: MemberId,
        /// A new generation (1 for the first start, one more for every restart).
        generation: Generation,
    },
    /// Close the member's pod (asked again, with a shorter grace, if a later close
    /// shortens it).
    ClosePod {
        /// Which member.
        member: MemberId,
        /// The pod's generation.
        generation: Generation,
        /// The grace period; `None` for the pod's own.
        grace: Option<Duration>,
    },
    /// A member's state changed; wake whoever waits on it.
    MemberChanged {
        /// Which member.
        member: MemberId,
        /// Its new state.
        state: MemberState,
    },
    /// The deployment's state changed; wake whoever waits on it.
    StateChanged {
        /// The new state.
        state: DeploymentState,
    },
}

/// How the deployment's start went. Set once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeploymentStartResult {
    /// Every member was ready (or succeeded) at once.
    Ready {
        /// Time from start to ready.
        after: Duration,
    },
    /// A member failed before that, and the deployment was closed.
    Failed(Failure),
    /// The deployment was closed before it was ready.
    Cancelled,
}

impl DeploymentStartResult {
    /// True for [`DeploymentStartResult::Ready`].
    pub fn is_ready(&self) -> bool {
        matches!(self, DeploymentStartResult::Ready { .. })
    }
}

/// What a member did that took the deployment down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Its start failed (failed to start, exited early, timed out; or `Cancelled` when
    /// something other than the deployment closed it).
    Start(StartResult),
    /// It ended after it was ready (or a one-shot pod exited with a failure).
    Ended(End),
}

impl Cause {
    /// Whether the restart policy `on-failure` counts this as a failure: every failed
    /// start, and every end but exit code 0.
    pub fn is_failure(&self) -> bool {
        match self {
            Cause::Start(result) => !result.is_ready(),
            Cause::Ended(end) => *end != End::Exited(ExitStatus::Code(0)),
        }
    }
}

/// The member whose failure took the deployment down, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The member.
    pub member: MemberId,
    /// Its name (`web/1`).
    pub name: String,
    /// What it did.
    pub cause: Cause,
    /// Its restart policy.
    pub restart: RestartPolicy,
    /// `Some(n)` when it was not restarted because its budget of `n` restarts since the
    /// last reset was spent: it is crash-looping.
    pub crash_looping_after: Option<u32>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.name;
        match &self.cause {
            Cause::Start(StartResult::FailedToStart(StartFailure::Spawn(error))) => write!(
                f,
                "pod {name} failed to start: its process could not be spawned ({:?}{})",
                error.kind,
                error
                    .errno
                    .map_or(String::new(), |e| format!(", errno {e}"))
            )?,
            Cause::Start(StartResult::FailedToStart(StartFailure::Runtime {
                status,
                error,
                ..
            })) => {
                write!(
                    f,
                    "pod {name} failed to start: it ended ({status}) before it reported started"
                )?;
                if let Some(error) = error {
                    write!(f, ": {error}")?;
                }
            }
            Cause::Start(StartResult::ExitedEarly { status }) => {
                write!(f, "pod {name} exited before it was ready ({status})")?
            }
            Cause::Start(StartResult::TimedOut { waited, .. }) => {
                write!(f, "pod {name} was not ready after {waited:?}")?
            }
            Cause::Start(StartResult::Cancelled) => write!(
                f,
                "pod {name} was closed before it was ready, by something other than the deployment"
            )?,
            Cause::Start(StartResult::Ready { .. }) => write!(f, "pod {name} was ready")?,
            Cause::Ended(End::Exited(status)) => {
                write!(f, "pod {name} ended by itself ({status})")?
            }
            Cause::Ended(End::Closed(status) | End::Killed(status)) => write!(
                f,
                "pod {name} was stopped by something other than the deployment ({status})"
            )?,
            Cause::Ended(End::NeverSpawned) => write!(f, "pod {name} ended without a process")?,
        }
        match self.crash_looping_after {
            Some(n) => write!(
                f,
                "; it is crash-looping: {n} restarts since it last ran stably, and no more are allowed"
            ),
            None => write!(f, "; restart policy {} does not restart it", self.restart),
        }
    }
}

impl std::error::Error for Failure {}

/// Counters of input the machine ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeploymentStats {
    /// Events about an unknown member, another generation, or a pod that already ended.
    pub ignored: u64,
    /// Times `handle` was given a `now` earlier than a previous one.
    pub time_went_back: u64,
}

/// A deliberately wrong variant of the machine, for proving that the checker catches
/// bugs. Never use outside tests.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeploymentMutation {
    /// A `Ready` dependency is taken as met once the dependency started.
    ReadyMeansStarted,
    /// Every member is asked to close at once, ignoring dependency order.
    CloseAllAtOnce,
    /// Restarts that were due keep happening after the close.
    RestartAfterClose,
    /// The restart budget is ignored.
    IgnoreBudget,
}

/// One member: a replica of a template, with the history of its current generation.
#[derive(Clone, Debug)]
pub struct Member {
    name: String,
    template: usize,
    replica: u32,
    state: MemberState,
    generation: Generation,
    started: bool,
    start_result: Option<StartResult>,
    end: Option<End>,
    ready_at: Option<Time>,
    close_sent: bool,
    verdict: Option<Verdict>,
    restarts: Restarts,
    restart_at: Option<Time>,
}

impl Member {
    /// Its name, `template/replica`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The index of its template in [`DeploymentSpec::templates`].
    pub fn template(&self) -> usize {
        self.template
    }

    /// Its replica number.
    pub fn replica(&self) -> u32 {
        self.replica
    }

    /// Its state.
    pub fn state(&self) -> MemberState {
        self.state
    }

    /// The generation of its current or last pod; `Generation(0)` before the first start.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Whether its current pod reported started.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// The start result of its current or last pod.
    pub fn start_result(&self) -> Option<&StartResult> {
        self.start_result.as_ref()
    }

    /// How its current or last pod ended.
    pub fn end(&self) -> Option<End> {
        self.end
    }

    /// How many times it was restarted.
    pub fn restarts(&self) -> u64 {
        self.generation.0.saturating_sub(1)
    }

    /// Restarts scheduled since it last ran stably (the count the budget limits).
    pub fn restarts_since_reset(&self) -> u32 {
        self.restarts.since_reset
    }

    /// The delay of the last restart scheduled since it last ran stably.
    pub fn last_delay(&self) -> Option<Duration> {
        self.restarts.last_delay
    }

    /// When it restarts, while `BackingOff`.
    pub fn restart_at(&self) -> Option<Time> {
        self.restart_at
    }
}

/// A group of pods with replicas, dependencies and restart policies: events in with the
/// current time, actions and deadlines out.
///
/// See [the module docs](self) for the calling rule and the policies. Deterministic: the
/// same events at the same times give the same actions. Never panics on any input; events
/// that do not fit are ignored and counted in [`DeploymentStats`].
#[derive(Debug)]
pub struct DeploymentMachine {
    spec: DeploymentSpec,
    /// Per template: its members' indices.
    members_of: Vec<std::ops::Range<usize>>,
    /// Per template: the templates it depends on, with the condition.
    depends_on: Vec<Vec<(usize, Condition)>>,
    /// Per template: the templates that depend on it.
    dependents: Vec<Vec<usize>>,
    members: Vec<Member>,
    state: DeploymentState,
    now: Time,
    start_at: Option<Time>,
    start_result: Option<DeploymentStartResult>,
    failure: Option<Failure>,
    close_grace: Option<Duration>,
    actions: VecDeque<DeploymentAction>,
    stats: DeploymentStats,
    mutation: Option<DeploymentMutation>,
}

impl DeploymentMachine {
    /// A machine for `spec`, validated first.
    pub fn new(spec: DeploymentSpec) -> Result<DeploymentMachine, DeploymentError> {
        DeploymentMachine::with_mutation(spec, None)
    }

    /// A deliberately wrong machine. Tests only.
    #[doc(hidden)]
    pub fn with_mutation(
        spec: DeploymentSpec,
        mutation: Option<DeploymentMutation>,
    ) -> Result<DeploymentMachine, DeploymentError> {
        spec.validate()?;
        let mut members = Vec::new();
        let mut members_of = Vec::new();
        for (template, t) in spec.templates.iter().enumerate() {
            let first = members.len();
            for replica in 0..t.replicas {
                members.push(Member {
                    name: format!("{}/{replica}", t.name),
                    template,
                    replica,
                    state: MemberState::Waiting,
                    generation: Generation(0),
                    started: false,
                    start_result: None,
                    end: None,
                    ready_at: None,
                    close_sent: false,
                    verdict: None,
                    restarts: Restarts::default(),
                    restart_at: None,
                });
            }
            members_of.push(first..members.len());
        }
        let depends_on: Vec<Vec<(usize, Condition)>> = spec
            .templates
            .iter()
            .map(|t| {
                t.depends_on
                    .iter()
                    .filter_map(|d| spec.position(&d.on).map(|i| (i, d.condition)))
                    .collect()
            })
            .collect();
        let mut dependents = vec![Vec::new(); spec.templates.len()];
        for (template, deps) in depends_on.iter().enumerate() {
            for &(on, _) in deps {
                dependents[on].push(template);
            }
        }
        Ok(DeploymentMachine {
            spec,
            members_of,
            depends_on,
            dependents,
            members,
            state: DeploymentState::Created,
            now: Time::ZERO,
            start_at: None,
            start_result: None,
            failure: None,
            close_grace: None,
            actions: VecDeque::new(),
            stats: DeploymentStats::default(),
            mutation,
        })
    }

    /// The spec.
    pub fn spec(&self) -> &DeploymentSpec {
        &self.spec
    }

    /// The deployment's state.
    pub fn state(&self) -> DeploymentState {
        self.state
    }

    /// How the start went, once decided.
    pub fn start_result(&self) -> Option<&DeploymentStartResult> {
        self.start_result.as_ref()
    }

    /// The member failure that took the deployment down, before or after it was ready.
    /// `None` while it runs, and when it was closed on request.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// Every member, in [`MemberId`] order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// One member. Panics if `id` is out of range.
    pub fn member(&self, id: MemberId) -> &Member {
        &self.members[id.0]
    }

    /// The member named `name` (`web/1`).
    pub fn find(&self, name: &str) -> Option<MemberId> {
        self.members
            .iter()
            .position(|m| m.name == name)
            .map(MemberId)
    }

    /// The members of template `template`.
    pub fn members_of(&self, template: usize) -> impl Iterator<Item = MemberId> + '_ {
        self.members_of
            .get(template)
            .cloned()
            .unwrap_or(0..0)
            .map(MemberId)
    }

    /// Counters of ignored input.
    pub fn stats(&self) -> DeploymentStats {
        self.stats
    }

    /// The latest `now` the machine has seen.
    pub fn now(&self) -> Time {
        self.now
    }

    /// The next action to perform, or `None` when there is nothing to do.
    pub fn poll_action(&mut self) -> Option<DeploymentAction> {
        self.actions.pop_front()
    }

    /// The earliest instant at which the machine wants `handle(DeploymentEvent::Tick, t)`:
    /// the next restart. Always later than the `now` of the last `handle`.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.members
            .iter()
            .filter(|m| m.state == MemberState::BackingOff)
            .filter_map(|m| m.restart_at)
            .min()
    }

    /// Feeds one event at `now`. Restarts due at or before `now` fall due first.
    pub fn handle(&mut self, event: DeploymentEvent, now: Time) {
        let now = if now < self.now {
            self.stats.time_went_back += 1;
            self.now
        } else {
            now
        };
        self.now = now;
        self.fire_due(now);
        match event {
            DeploymentEvent::Tick => {}
            DeploymentEvent::Start => self.on_start(now),
            DeploymentEvent::Close { grace } => self.on_close(grace),
            DeploymentEvent::PodStarted { member, generation } => {
                if let Some(i) = self.current(member, generation) {
                    self.on_pod_started(i);
                }
            }
            DeploymentEvent::PodStartResult {
                member,
                generation,
                result,
            } => {
                if let Some(i) = self.current(member, generation) {
                    self.on_pod_start_result(i, result, now);
                }
            }
            DeploymentEvent::PodEnded {
                member,
                generation,
                end,
            } => {
                if let Some(i) = self.current(member, generation) {
                    self.on_pod_ended(i, end, now);
                }
            }
        }
        self.progress(now);
    }

    /// The member's index if the event is about its live pod; otherwise counts it ignored.
    fn current(&mut self, member: MemberId, generation: Generation) -> Option<usize> {
        match self.members.get(member.0) {
            Some(m) if m.generation == generation && generation.0 > 0 && m.end.is_none() => {
                Some(member.0)
            }
            _ => {
                self.stats.ignored += 1;
                None
            }
        }
    }

    fn closing(&self) -> bool {
        matches!(
            self.state,
            DeploymentState::Stopping | DeploymentState::Ended
        )
    }

    fn set_state(&mut self, state: DeploymentState) {
        if self.state != state {
            self.state = state;
            self.actions
                .push_back(DeploymentAction::StateChanged { state });
        }
    }

    fn set_member(&mut self, i: usize, state: MemberState) {
        if self.members[i].state != state {
            self.members[i].state = state;
            self.actions.push_back(DeploymentAction::MemberChanged {
                member: MemberId(i),
                state,
            });
        }
    }

    fn on_start(&mut self, now: Time) {
        if self.state != DeploymentState::Created {
            return;
        }
        self.start_at = Some(now);
        self.set_state(DeploymentState::Starting);
    }

    fn on_close(&mut self, grace: Option<Duration>) {
        match self.state {
            DeploymentState::Ended => {}
            DeploymentState::Stopping => {
                let Some(grace) = grace else { return };
                if self.close_grace.is_some_and(|g| g <= grace) {
                    return;
                }
                // Shorten: the members already closing are asked again.
                self.close_grace = Some(grace);
                for i in 0..self.members.len() {
                    let m = &self.members[i];
                    if m.close_sent && m.end.is_none() {
                        self.actions.push_back(DeploymentAction::ClosePod {
                            member: MemberId(i),
                            generation: m.generation,
                            grace: Some(grace),
                        });
                    }
                }
            }
            DeploymentState::Created | DeploymentState::Starting | DeploymentState::Ready => {
                self.begin_close(grace)
            }
        }
    }

    fn begin_close(&mut self, grace: Option<Duration>) {
        if self.start_result.is_none() {
            self.start_result = Some(DeploymentStartResult::Cancelled);
        }
        self.close_grace = grace;
        for i in 0..self.members.len() {
            match self.members[i].state {
                MemberState::Waiting => self.set_member(i, MemberState::Ended),
                MemberState::BackingOff
                    if self.mutation != Some(DeploymentMutation::RestartAfterClose) =>
                {
                    self.members[i].restart_at = None;
                    self.set_member(i, MemberState::Ended);
                }
                _ => {}
            }
        }
        self.set_state(DeploymentState::Stopping);
    }

    /// Gives up on the deployment because of member `i`: the first failure is recorded and
    /// everything closes. Nothing happens if it is closing already.
    fn fail(&mut self, i: usize, cause: Cause, crash_looping_after: Option<u32>) {
        if self.closing() {
            return;
        }
        let m = &self.members[i];
        let failure = Failure {
            member: MemberId(i),
            name: m.name.clone(),
            cause,
            restart: self.spec.templates[m.template].restart,
            crash_looping_after,
        };
        if self.start_result.is_none() {
            self.start_result = Some(DeploymentStartResult::Failed(failure.clone()));
        }
        self.failure = Some(failure);
        self.begin_close(None);
    }

    fn on_pod_started(&mut self, i: usize) {
        self.members[i].started = true;
        if self.members[i].state == MemberState::Starting {
            self.set_member(i, MemberState::Started);
        }
    }

    fn on_pod_start_result(&mut self, i: usize, result: StartResult, now: Time) {
        let m = &mut self.members[i];
        if m.start_result.is_some() {
            self.stats.ignored += 1;
            return;
        }
        m.start_result = Some(result.clone());
        if result.is_ready() {
            m.started = true;
            m.ready_at = Some(now);
            if matches!(m.state, MemberState::Starting | MemberState::Started) {
                self.set_member(i, MemberState::Ready);
            }
            return;
        }
        let (close_sent, template) = (m.close_sent, m.template);
        if close_sent || self.closing() {
            return;
        }
        let one_shot_done = self.spec.templates[template].one_shot
            && matches!(result, StartResult::ExitedEarly { status } if status.success());
        if !one_shot_done {
            self.generation_over(i, Cause::Start(result), now);
        }
        self.set_member(i, MemberState::Stopping);
    }

    fn on_pod_ended(&mut self, i: usize, end: End, now: Time) {
        self.members[i].end = Some(end);
        let crash_looping = |m: &Member| {
            matches!(
                m.verdict,
                Some(Verdict::GiveUp {
                    crash_looping: true
                })
            )
        };
        if self.members[i].close_sent || self.closing() {
            let state = if crash_looping(&self.members[i]) {
                MemberState::CrashLooping
            } else {
                MemberState::Ended
            };
            return self.set_member(i, state);
        }
        let m = &self.members[i];
        if self.spec.templates[m.template].one_shot
            && m.verdict.is_none()
            && end == End::Exited(ExitStatus::Code(0))
        {
            return self.set_member(i, MemberState::Succeeded);
        }
        if m.verdict.is_none() {
            self.generation_over(i, Cause::Ended(end), now);
        }
        let closing = self.closing();
        let m = &mut self.members[i];
        match m.verdict {
            Some(Verdict::Restart(delay)) if !closing => {
                m.restart_at = Some(now.checked_add(delay).unwrap_or(Time::MAX));
                self.set_member(i, MemberState::BackingOff);
            }
            _ => {
                let state = if crash_looping(m) {
                    MemberState::CrashLooping
                } else {
                    MemberState::Ended
                };
                self.set_member(i, state);
            }
        }
    }

    /// Member `i`'s current generation is over (failed start, or ended by itself): decide
    /// whether it comes back, and give up on the deployment if not.
    fn generation_over(&mut self, i: usize, cause: Cause, now: Time) {
        let seed = self.spec.seed;
        let m = &mut self.members[i];
        let template = &self.spec.templates[m.template];
        let verdict = if wants_restart(template.restart, cause.is_failure()) {
            let mut backoff = template.backoff;
            if self.mutation == Some(DeploymentMutation::IgnoreBudget) {
                backoff.budget = None;
            }
            let ready_for = m.ready_at.map(|at| now.saturating_duration_since(at));
            m.restarts.next(&backoff, seed, i, ready_for)
        } else {
            Verdict::GiveUp {
                crash_looping: false,
            }
        };
        m.verdict = Some(verdict);
        if let Verdict::GiveUp { crash_looping } = verdict {
            let after = crash_looping.then_some(m.restarts.since_reset);
            self.fail(i, cause, after);
        }
    }

    /// Restarts whose delay is over become eligible to start.
    fn fire_due(&mut self, now: Time) {
        for i in 0..self.members.len() {
            let m = &self.members[i];
            if m.state != MemberState::BackingOff || m.restart_at.is_none_or(|t| t > now) {
                continue;
            }
            self.members[i].restart_at = None;
            if self.closing() {
                // Only reachable with the RestartAfterClose mutation.
                self.start_member(i);
            } else {
                self.set_member(i, MemberState::Waiting);
            }
        }
    }

    /// Starts what may start, closes what may close, and moves the deployment's state.
    fn progress(&mut self, now: Time) {
        match self.state {
            DeploymentState::Created | DeploymentState::Ended => {}
            DeploymentState::Starting | DeploymentState::Ready => {
                for i in 0..self.members.len() {
                    if self.members[i].state == MemberState::Waiting && self.dependencies_met(i) {
                        self.start_member(i);
                    }
                }
                let all_up = self.members.iter().all(|m| {
                    m.state == MemberState::Succeeded
                        || (m.state == MemberState::Ready
                            && !self.spec.templates[m.template].one_shot)
                });
                if self.state == DeploymentState::Starting && all_up {
                    let after = now.saturating_duration_since(self.start_at.unwrap_or(now));
                    self.start_result = Some(DeploymentStartResult::Ready { after });
                    self.set_state(DeploymentState::Ready);
                }
                if self
                    .members
                    .iter()
                    .all(|m| m.state == MemberState::Succeeded)
                {
                    // Only one-shot jobs, all done: nothing is left to run.
                    self.set_state(DeploymentState::Ended);
                }
            }
            DeploymentState::Stopping => {
                for i in 0..self.members.len() {
                    let m = &self.members[i];
                    if m.state.is_running() && !m.close_sent && self.dependents_down(i) {
                        self.members[i].close_sent = true;
                        self.actions.push_back(DeploymentAction::ClosePod {
                            member: MemberId(i),
                            generation: self.members[i].generation,
                            grace: self.close_grace,
                        });
                        self.set_member(i, MemberState::Stopping);
                    }
                }
                if self.members.iter().all(|m| !m.state.is_running()) {
                    self.set_state(DeploymentState::Ended);
                }
            }
        }
    }

    fn start_member(&mut self, i: usize) {
        let m = &mut self.members[i];
        m.generation = Generation(m.generation.0 + 1);
        m.started = false;
        m.start_result = None;
        m.end = None;
        m.ready_at = None;
        m.close_sent = false;
        m.verdict = None;
        m.restart_at = None;
        self.actions.push_back(DeploymentAction::StartPod {
            member: MemberId(i),
            generation: m.generation,
        });
        self.set_member(i, MemberState::Starting);
    }

    /// Whether every dependency of member `i` meets its condition now.
    fn dependencies_met(&self, i: usize) -> bool {
        let ready_means_started = self.mutation == Some(DeploymentMutation::ReadyMeansStarted);
        self.depends_on[self.members[i].template]
            .iter()
            .all(|&(on, condition)| {
                self.members[self.members_of[on].clone()]
                    .iter()
                    .all(|d| match condition {
                        Condition::Started => matches!(
                            d.state,
                            MemberState::Started | MemberState::Ready | MemberState::Succeeded
                        ),
                        Condition::Ready if ready_means_started => matches!(
                            d.state,
                            MemberState::Started | MemberState::Ready | MemberState::Succeeded
                        ),
                        Condition::Ready => {
                            matches!(d.state, MemberState::Ready | MemberState::Succeeded)
                        }
                        Condition::Succeeded => d.state == MemberState::Succeeded,
                    })
            })
    }

    /// Whether every member that depends on member `i` has no process any more.
    fn dependents_down(&self, i: usize) -> bool {
        if self.mutation == Some(DeploymentMutation::CloseAllAtOnce) {
            return true;
        }
        self.dependents[self.members[i].template].iter().all(|&t| {
            self.members[self.members_of[t].clone()]
                .iter()
                .all(|d| !d.state.is_running())
        })
    }
}

/// Turns what a driver sees of one pod (its state, start result and end, looked at any
/// number of times) into the [`DeploymentEvent`]s for it, each reported once.
///
/// # Examples
///
/// ```
/// use podvisor::core::deployment::{DeploymentEvent, MemberId, PodObserver};
/// use podvisor::core::{End, ExitStatus, Generation, StartResult, State};
/// use std::time::Duration;
///
/// let (member, generation) = (MemberId(0), Generation(1));
/// let mut observer = PodObserver::new(member, generation);
/// let ready = StartResult::Ready { after: Duration::ZERO };
/// let events = observer.observe(State::Ready, Some(&ready), None);
/// assert_eq!(events.len(), 2); // started, then the start result
/// assert!(observer.observe(State::Ready, Some(&ready), None).is_empty());
/// let end = End::Exited(ExitStatus::Code(0));
/// assert_eq!(
///     observer.observe(State::Ended, Some(&ready), Some(end)),
///     [DeploymentEvent::PodEnded { member, generation, end }]
/// );
/// ```
#[derive(Clone, Debug)]
pub struct PodObserver {
    member: MemberId,
    generation: Generation,
    started: bool,
    result: bool,
    ended: bool,
}

impl PodObserver {
    /// An observer of the pod started for `member` with `generation`.
    pub fn new(member: MemberId, generation: Generation) -> PodObserver {
        PodObserver {
            member,
            generation,
            started: false,
            result: false,
            ended: false,
        }
    }

    /// The events not reported yet, in order: started, start result, end.
    pub fn observe(
        &mut self,
        state: State,
        start_result: Option<&StartResult>,
        end: Option<End>,
    ) -> Vec<DeploymentEvent> {
        let (member, generation) = (self.member, self.generation);
        let mut events = Vec::new();
        let started = matches!(state, State::Started | State::Ready)
            || matches!(
                start_result,
                Some(StartResult::Ready { .. } | StartResult::ExitedEarly { .. })
            );
        if started && !self.started {
            self.started = true;
            events.push(DeploymentEvent::PodStarted { member, generation });
        }
        if let Some(result) = start_result.filter(|_| !self.result) {
            self.result = true;
            events.push(DeploymentEvent::PodStartResult {
                member,
                generation,
                result: result.clone(),
            });
        }
        if let Some(end) = end.filter(|_| !self.ended) {
            self.ended = true;
            events.push(DeploymentEvent::PodEnded {
                member,
                generation,
                end,
            });
        }
        events
    }

    /// Whether the end was reported.
    pub fn ended(&self) -> bool {
        self.ended
    }
}
