//! [`DeploymentMachine`]: the deployment's state machine (start order, readiness, restarts,
//! fail fast, close order); the rules are in [the module docs](crate::core::deployment).

mod census;
mod close;
mod control;
mod mutation;

pub use mutation::DeploymentMutation;

use std::collections::VecDeque;
use std::time::Duration;

use crate::core::event::{ExitStatus, Generation};
use crate::core::outcome::{End, StartResult};
use crate::core::time::Time;

use super::member::{Held, Member};
use super::restart::{wants_restart, Restarts, Verdict};
use census::Census;

use super::spec::{Condition, DeploymentError, DeploymentSpec};

use super::vocabulary::{
    Cause, DeploymentAction, DeploymentEvent, DeploymentStartResult, DeploymentState,
    DeploymentStats, Failure, MemberId, MemberState,
};

/// A group of pods with replicas, dependencies and restart policies: events in with the
/// current time, actions and deadlines out.
///
/// See [the module docs](crate::core::deployment) for the calling rule and the policies. Deterministic: the
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
    /// Counts of the members' states, kept with every change.
    census: Census,
    state: DeploymentState,
    now: Time,
    start_at: Option<Time>,
    start_result: Option<DeploymentStartResult>,
    failure: Option<Failure>,
    close_grace: Option<Duration>,
    /// Whether `close_grace` came from a close after a plain one: it then caps the
    /// members' own graces instead of replacing them.
    close_grace_caps: bool,
    actions: VecDeque<DeploymentAction>,
    stats: DeploymentStats,
    mutation: Option<DeploymentMutation>,
}

impl DeploymentMachine {
    /// A machine for `spec`, validated first.
    pub fn new(spec: DeploymentSpec) -> Result<DeploymentMachine, DeploymentError> {
        DeploymentMachine::build(spec, None)
    }

    /// A deliberately wrong machine. Tests only.
    #[cfg(feature = "oracles")]
    #[doc(hidden)]
    pub fn with_mutation(
        spec: DeploymentSpec,
        mutation: Option<DeploymentMutation>,
    ) -> Result<DeploymentMachine, DeploymentError> {
        DeploymentMachine::build(spec, mutation)
    }

    fn build(
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
                    name: if t.bare_name {
                        t.name.clone()
                    } else {
                        format!("{}/{replica}", t.name)
                    },
                    template,
                    replica,
                    state: MemberState::Waiting,
                    generation: Generation(0),
                    started: false,
                    healthy: false,
                    start_result: None,
                    end: None,
                    last_end: None,
                    policy_restarts: 0,
                    ready_at: None,
                    close_sent: false,
                    verdict: None,
                    restarts: Restarts::default(),
                    restart_at: None,
                    held: None,
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
            census: Census::of(&members, &spec),
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
            close_grace_caps: false,
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
            DeploymentEvent::StopMember { member, cascade } => {
                if member.0 < self.members.len() && !self.closing() {
                    self.stop_member(member.0, cascade, false);
                } else {
                    self.stats.ignored += 1;
                }
            }
            DeploymentEvent::StartMember { member } => {
                if member.0 < self.members.len() && !self.closing() {
                    self.start_on_request(member.0);
                } else {
                    self.stats.ignored += 1;
                }
            }
            DeploymentEvent::RestartMember { member } => {
                if member.0 < self.members.len() && !self.closing() {
                    self.stop_member(member.0, true, true);
                } else {
                    self.stats.ignored += 1;
                }
            }
            DeploymentEvent::PodUnhealthy { member, generation } => {
                if let Some(i) = self.current(member, generation) {
                    self.members[i].healthy = false;
                    if matches!(
                        self.members[i].state,
                        MemberState::Starting | MemberState::Started | MemberState::Ready
                    ) {
                        // It closes itself; its end decides what comes next.
                        self.set_member(i, MemberState::Stopping);
                    }
                }
            }
            DeploymentEvent::PodHealthy { member, generation } => {
                if let Some(i) = self.current(member, generation) {
                    self.members[i].healthy = true;
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
        debug_assert_eq!(
            self.census,
            Census::of(&self.members, &self.spec),
            "the census kept with every change is the members' own"
        );
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

    /// Holds member `i` (a stop or restart on request) or lets it go.
    fn set_held(&mut self, i: usize, held: Option<Held>) {
        self.census.held -= usize::from(self.members[i].held.is_some());
        self.census.held += usize::from(held.is_some());
        self.members[i].held = held;
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
            let template = self.members[i].template;
            let one_shot = self.spec.templates[template].one_shot;
            self.census
                .add(self.members[i].state, template, one_shot, usize::MAX);
            self.census.add(state, template, one_shot, 1);
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
        if close_sent || m.held.is_some() || self.closing() {
            // Stopping on request or closing: its end is not a failure.
            return;
        }
        let one_shot_done = self.spec.templates[template].one_shot
            && matches!(result, StartResult::ExitedEarly { status } if status.success());
        let give_up = if one_shot_done {
            None
        } else {
            self.generation_over(i, Cause::Start(result), now)
        };
        // The member's change comes before the deployment's close that it causes.
        self.set_member(i, MemberState::Stopping);
        if let Some((cause, after)) = give_up {
            self.fail(i, cause, after);
        }
    }

    fn on_pod_ended(&mut self, i: usize, end: End, now: Time) {
        self.members[i].end = Some(end);
        self.members[i].last_end = Some(end);
        if let Some(held) = self.members[i].held {
            if !self.closing() {
                // Down on request: not a failure, no restart decision.
                if held.then_start {
                    // Restarted on request: it says it stopped before it waits to start.
                    self.set_held(i, None);
                    self.set_member(i, MemberState::Stopped);
                    return self.set_member(i, MemberState::Waiting);
                }
                if self.mutation == Some(DeploymentMutation::StoppedComesBack) {
                    self.set_held(i, None);
                    return self.set_member(i, MemberState::Waiting);
                }
                return self.set_member(i, MemberState::Stopped);
            }
        }
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
        let give_up = if m.verdict.is_none() {
            self.generation_over(i, Cause::Ended(end), now)
        } else {
            None
        };
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
        // The member's end comes before the deployment's close that it causes.
        if let Some((cause, after)) = give_up {
            self.fail(i, cause, after);
        }
    }

    /// Member `i`'s current generation is over (failed start, or ended by itself): decide
    /// whether it comes back. If not, returns the cause and the crash-looping count to
    /// give up on the deployment with ([`fail`](Self::fail)), which the caller does once
    /// the member's own state is set.
    fn generation_over(
        &mut self,
        i: usize,
        cause: Cause,
        now: Time,
    ) -> Option<(Cause, Option<u32>)> {
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
        match verdict {
            Verdict::GiveUp { crash_looping } => {
                Some((cause, crash_looping.then_some(m.restarts.since_reset)))
            }
            _ => None,
        }
    }

    /// Restarts whose delay is over become eligible to start.
    fn fire_due(&mut self, now: Time) {
        if self.census.backing_off == 0 {
            return;
        }
        for i in 0..self.members.len() {
            let m = &self.members[i];
            if m.state != MemberState::BackingOff || m.restart_at.is_none_or(|t| t > now) {
                continue;
            }
            self.members[i].restart_at = None;
            self.members[i].policy_restarts += 1;
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
                if self.census.held > 0 {
                    self.close_held();
                }
                if self.census.waiting > 0 {
                    // Whether a template's dependencies are met is the same for all its
                    // members: asked once per template.
                    let mut met: Vec<Option<bool>> = vec![None; self.spec.templates.len()];
                    for i in 0..self.members.len() {
                        if self.members[i].state == MemberState::Waiting
                            && self.members[i].held.is_none()
                        {
                            let template = self.members[i].template;
                            let ready =
                                *met[template].get_or_insert_with(|| self.dependencies_met(i));
                            if ready {
                                self.start_member(i);
                            }
                        }
                    }
                }
                let all_up = self.census.up == self.members.len();
                if self.state == DeploymentState::Starting && all_up {
                    let after = now.saturating_duration_since(self.start_at.unwrap_or(now));
                    self.start_result = Some(DeploymentStartResult::Ready { after });
                    self.set_state(DeploymentState::Ready);
                }
                if self.census.succeeded == self.members.len() {
                    // Only one-shot jobs, all done: nothing is left to run.
                    self.set_state(DeploymentState::Ended);
                }
            }
            DeploymentState::Stopping => {
                for i in 0..self.members.len() {
                    let m = &self.members[i];
                    if m.state.is_running() && !m.close_sent && self.dependents_down(i) {
                        self.members[i].close_sent = true;
                        let generation = self.members[i].generation;
                        if self.close_grace_caps {
                            // Its own grace, then the cap: a pod takes a later close only
                            // when it shortens its grace.
                            self.actions.push_back(DeploymentAction::ClosePod {
                                member: MemberId(i),
                                generation,
                                grace: None,
                            });
                        }
                        self.actions.push_back(DeploymentAction::ClosePod {
                            member: MemberId(i),
                            generation,
                            grace: self.close_grace,
                        });
                        self.set_member(i, MemberState::Stopping);
                    }
                }
                if self.census.running == 0 {
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
        m.healthy = false;
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
                    // A dependency being stopped or restarted on request meets nothing.
                    .all(|d| {
                        d.held.is_none()
                            && match condition {
                                Condition::Started => matches!(
                                    d.state,
                                    MemberState::Started
                                        | MemberState::Ready
                                        | MemberState::Succeeded
                                ),
                                Condition::Ready if ready_means_started => matches!(
                                    d.state,
                                    MemberState::Started
                                        | MemberState::Ready
                                        | MemberState::Succeeded
                                ),
                                Condition::Ready => {
                                    matches!(d.state, MemberState::Ready | MemberState::Succeeded)
                                }
                                Condition::Healthy => {
                                    (d.state == MemberState::Ready && d.healthy)
                                        || d.state == MemberState::Succeeded
                                }
                                Condition::Succeeded => d.state == MemberState::Succeeded,
                            }
                    })
            })
    }

    /// Whether every member that depends on member `i` has no process any more.
    fn dependents_down(&self, i: usize) -> bool {
        if self.mutation == Some(DeploymentMutation::CloseAllAtOnce) {
            return true;
        }
        self.dependents[self.members[i].template]
            .iter()
            .all(|&t| self.census.running_of[t] == 0)
    }
}
