//! [`DeploymentChecker`]: an independent record of what happened to a deployment's pods,
//! and the invariants of the design (DESIGN.md §3.6 and the restart rules) checked against
//! a [`DeploymentMachine`] after every step.
//!
//! The model keeps, per member, only facts taken from the events and actions (is a pod
//! running, did it report started or ready, when did it end) and decides from them what
//! the machine must and must not do. It shares with the machine only the spec types and
//! the jitter draw; the delay bounds are recomputed here.

use std::time::Duration;

use super::super::check::Violation;
use super::super::event::{ExitStatus, Generation};
use super::super::outcome::{End, StartResult};
use super::super::time::Time;
use super::restart::jitter_draw;
use super::spec::{Condition, DeploymentSpec, RestartPolicy};
use super::{
    DeploymentAction, DeploymentEvent, DeploymentMachine, DeploymentMutation, DeploymentState,
    MemberId, MemberState,
};

/// What the model knows about one member.
#[derive(Clone, Debug, Default)]
struct Model {
    template: usize,
    generation: u64,
    /// A pod was asked to start and has not ended.
    running: bool,
    started: bool,
    result: Option<StartResult>,
    ready_at: Option<Time>,
    /// A one-shot pod that exited 0. Latched.
    succeeded: bool,
    close_sent: Option<Option<Duration>>,
    /// The current generation is over (failed start, or ended by itself): decided.
    decided: bool,
    /// The decision was a restart.
    restart_due: bool,
    /// The restart may not start before this (known once the pod ended).
    restart_not_before: Option<Time>,
    gave_up: bool,
    crash_looping: bool,
    since_reset: u32,
    total_restarts: u32,
    last_delay: Option<Duration>,
}

/// A reference model of a deployment plus the invariant checks.
///
/// Call [`DeploymentChecker::step`] after every `handle`, with the event, the `now`
/// given, every action drained, and the machine. It checks, among others: a pod starts
/// only when its dependencies meet their conditions, never twice at once, never after the
/// close was asked; everything eligible starts at once; on any failure every running pod
/// is closed, each only after every pod depending on it has ended; a restart happens only
/// when the policy asks for it, never before its delay, never beyond the budget; delays
/// stay within their bounds and never shrink before a reset.
#[derive(Debug)]
pub struct DeploymentChecker {
    spec: DeploymentSpec,
    members: Vec<Model>,
    members_of: Vec<Vec<usize>>,
    now: Time,
    started: bool,
    closing: bool,
    close_grace: Option<Option<Duration>>,
    ended: bool,
    state: DeploymentState,
}

fn violation(invariant: &'static str, message: String) -> Result<(), Violation> {
    Err(Violation { invariant, message })
}

impl DeploymentChecker {
    /// A checker for a machine built from `spec` (which must be valid).
    pub fn new(spec: &DeploymentSpec) -> DeploymentChecker {
        let mut members = Vec::new();
        let mut members_of = Vec::new();
        for (template, t) in spec.templates.iter().enumerate() {
            let first = members.len();
            for _ in 0..t.replicas {
                members.push(Model {
                    template,
                    ..Model::default()
                });
            }
            members_of.push((first..members.len()).collect());
        }
        DeploymentChecker {
            spec: spec.clone(),
            members,
            members_of,
            now: Time::ZERO,
            started: false,
            closing: false,
            close_grace: None,
            ended: false,
            state: DeploymentState::Created,
        }
    }

    /// Whether the deployment ended (as the machine reported it).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether member `member` has a pod that was asked to start and has not ended.
    pub fn is_running(&self, member: MemberId) -> bool {
        self.members.get(member.0).is_some_and(|m| m.running)
    }

    fn template_of(&self, i: usize) -> &super::spec::PodTemplate {
        &self.spec.templates[self.members[i].template]
    }

    /// Dependencies of member `i` as (template, condition).
    fn dependencies(&self, i: usize) -> Vec<(usize, Condition)> {
        self.template_of(i)
            .depends_on
            .iter()
            .filter_map(|d| self.spec.position(&d.on).map(|t| (t, d.condition)))
            .collect()
    }

    fn meets(&self, d: usize, condition: Condition) -> bool {
        let m = &self.members[d];
        if m.succeeded {
            return true;
        }
        match condition {
            Condition::Started => {
                m.running
                    && m.close_sent.is_none()
                    && (m.started || matches!(m.result, Some(StartResult::Ready { .. })))
                    && m.result.as_ref().is_none_or(StartResult::is_ready)
            }
            Condition::Ready => {
                m.running
                    && m.close_sent.is_none()
                    && matches!(m.result, Some(StartResult::Ready { .. }))
            }
            Condition::Succeeded => false,
        }
    }

    fn dependencies_met(&self, i: usize) -> bool {
        self.dependencies(i)
            .into_iter()
            .all(|(t, c)| self.members_of[t].iter().all(|&d| self.meets(d, c)))
    }

    /// Members of templates that depend on member `i`'s template.
    fn dependents(&self, i: usize) -> Vec<usize> {
        let name = &self.template_of(i).name;
        self.spec
            .templates
            .iter()
            .enumerate()
            .filter(|(_, t)| t.depends_on.iter().any(|d| &d.on == name))
            .flat_map(|(t, _)| self.members_of[t].iter().copied())
            .collect()
    }

    /// Records one step and checks every invariant.
    pub fn step(
        &mut self,
        event: &DeploymentEvent,
        now: Time,
        actions: &[DeploymentAction],
        machine: &DeploymentMachine,
    ) -> Result<(), Violation> {
        // Like the machine, the model keeps the latest time it has seen.
        self.now = self.now.max(now);
        let now = self.now;
        if self.ended && !actions.is_empty() {
            return violation(
                "after-end",
                format!("actions after the deployment ended: {actions:?}"),
            );
        }
        let was_closing = self.closing;
        let mut expect_failure_of = None;
        self.apply(event, now, machine, &mut expect_failure_of)?;
        for action in actions {
            self.check_action(action, now)?;
        }
        if let Some(i) = expect_failure_of {
            if !was_closing {
                let named = machine.failure().map(|f| f.member);
                if named != Some(MemberId(i)) || !self.closing {
                    return violation(
                        "fail-fast",
                        format!(
                            "{} gave up at {now}, but the deployment is {:?} with failure {:?}",
                            machine.member(MemberId(i)).name(),
                            machine.state(),
                            machine.failure()
                        ),
                    );
                }
            }
        }
        self.check_state(machine, now)
    }

    fn apply(
        &mut self,
        event: &DeploymentEvent,
        now: Time,
        machine: &DeploymentMachine,
        expect_failure_of: &mut Option<usize>,
    ) -> Result<(), Violation> {
        let ours = |m: &Model, generation: Generation| {
            m.generation == generation.0 && m.running && generation.0 > 0
        };
        match event {
            DeploymentEvent::Tick => {}
            DeploymentEvent::Start => {
                if self.state == DeploymentState::Created {
                    self.started = true;
                }
            }
            DeploymentEvent::Close { grace } => {
                if !self.closing {
                    self.closing = true;
                    self.close_grace = Some(*grace);
                } else if let Some(g) = grace {
                    let shorter = match self.close_grace {
                        Some(Some(c)) => *g < c,
                        _ => true,
                    };
                    if shorter {
                        self.close_grace = Some(Some(*g));
                    }
                }
            }
            DeploymentEvent::PodStarted { member, generation } => {
                if let Some(m) = self.members.get_mut(member.0) {
                    if ours(m, *generation) {
                        m.started = true;
                    }
                }
            }
            DeploymentEvent::PodStartResult {
                member,
                generation,
                result,
            } => {
                let i = member.0;
                let Some(m) = self.members.get_mut(i) else {
                    return Ok(());
                };
                if !ours(m, *generation) || m.result.is_some() {
                    return Ok(());
                }
                m.result = Some(result.clone());
                if result.is_ready() {
                    m.ready_at = Some(now);
                    return Ok(());
                }
                let one_shot_done = self.spec.templates[m.template].one_shot
                    && matches!(result, StartResult::ExitedEarly { status } if status.success());
                if m.close_sent.is_none() && !self.closing && !one_shot_done {
                    self.decide(i, true, now, machine, expect_failure_of)?;
                }
            }
            DeploymentEvent::PodEnded {
                member,
                generation,
                end,
            } => {
                let i = member.0;
                let Some(m) = self.members.get_mut(i) else {
                    return Ok(());
                };
                if !ours(m, *generation) {
                    return Ok(());
                }
                m.running = false;
                let one_shot = self.spec.templates[m.template].one_shot;
                if m.close_sent.is_some() || self.closing {
                    // Closed: no decision to take.
                } else if m.decided {
                    if m.restart_due {
                        m.restart_not_before = Some(
                            now.checked_add(m.last_delay.unwrap_or_default())
                                .unwrap_or(Time::MAX),
                        );
                    }
                } else if one_shot && *end == End::Exited(ExitStatus::Code(0)) {
                    m.succeeded = true;
                } else {
                    let failed = *end != End::Exited(ExitStatus::Code(0));
                    self.decide(i, failed, now, machine, expect_failure_of)?;
                    let m = &mut self.members[i];
                    if m.restart_due {
                        m.restart_not_before = Some(
                            now.checked_add(m.last_delay.unwrap_or_default())
                                .unwrap_or(Time::MAX),
                        );
                    }
                }
                let m = &self.members[i];
                if m.crash_looping && machine.member(*member).state() != MemberState::CrashLooping {
                    return violation(
                        "crash-looping",
                        format!(
                            "{} spent its restart budget and ended at {now}, but its state is {:?}",
                            machine.member(*member).name(),
                            machine.member(*member).state()
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// Member `i`'s generation is over by itself: what the policy calls for, checked
    /// against the delay the machine chose.
    fn decide(
        &mut self,
        i: usize,
        failed: bool,
        now: Time,
        machine: &DeploymentMachine,
        expect_failure_of: &mut Option<usize>,
    ) -> Result<(), Violation> {
        let template = self.template_of(i).clone();
        let seed = self.spec.seed;
        let m = &mut self.members[i];
        m.decided = true;
        let wanted = match template.restart {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Always => true,
        };
        if !wanted {
            m.gave_up = true;
            *expect_failure_of = Some(i);
            return Ok(());
        }
        let backoff = template.backoff;
        if m.ready_at
            .is_some_and(|at| now.saturating_duration_since(at) >= backoff.reset_after)
        {
            m.since_reset = 0;
            m.last_delay = None;
        }
        if backoff.budget.is_some_and(|b| m.since_reset >= b) {
            m.gave_up = true;
            m.crash_looping = true;
            *expect_failure_of = Some(i);
            return Ok(());
        }
        // Bounds of the delay, computed independently of `Backoff::delay`.
        let mut base = backoff.initial.min(backoff.max);
        for _ in 0..m.since_reset.min(64) {
            base = base.checked_mul(2).unwrap_or(backoff.max).min(backoff.max);
        }
        let jitter_max = base.as_nanos() * u128::from(backoff.jitter_percent) / 100;
        let upper = (base.as_nanos() + jitter_max).min(backoff.max.as_nanos());
        let delay = machine.member(MemberId(i)).last_delay();
        let name = machine.member(MemberId(i)).name().to_owned();
        let Some(delay) = delay else {
            return violation(
                "backoff",
                format!("{name} is to be restarted at {now}, but the machine chose no delay"),
            );
        };
        if delay < base || delay.as_nanos() > upper {
            return violation(
                "backoff",
                format!(
                    "{name}: restart #{} since the last reset waits {delay:?}, expected between {base:?} and {upper}ns",
                    m.since_reset
                ),
            );
        }
        if m.last_delay.is_some_and(|last| delay < last) {
            return violation(
                "backoff-shrinks",
                format!(
                    "{name}: restart delay shrank from {:?} to {delay:?} without a reset",
                    m.last_delay
                ),
            );
        }
        // Determinism: the machine must use the seeded draw for this restart.
        let expected = backoff.delay(m.since_reset, jitter_draw(seed, i, m.total_restarts));
        if delay != expected {
            return violation(
                "backoff-seed",
                format!("{name}: restart delay {delay:?} is not the seeded {expected:?}"),
            );
        }
        m.last_delay = Some(delay);
        m.since_reset += 1;
        m.total_restarts += 1;
        m.restart_due = true;
        Ok(())
    }

    fn check_action(&mut self, action: &DeploymentAction, now: Time) -> Result<(), Violation> {
        match *action {
            DeploymentAction::StartPod { member, generation } => {
                let i = member.0;
                if i >= self.members.len() {
                    return violation("start", format!("unknown member {member} started"));
                }
                if !self.started {
                    return violation("start", format!("{member} started before the deployment"));
                }
                if self.closing {
                    return violation(
                        "restart-after-close",
                        format!("{member} started at {now}, after the close was asked"),
                    );
                }
                let m = &self.members[i];
                if m.running {
                    return violation(
                        "overlap",
                        format!("{member} started at {now} while its previous pod runs"),
                    );
                }
                if generation.0 != m.generation + 1 {
                    return violation(
                        "generation",
                        format!(
                            "{member} started with {generation}, expected gen{}",
                            m.generation + 1
                        ),
                    );
                }
                if m.generation > 0 {
                    if !m.restart_due {
                        return violation(
                            "restart-policy",
                            format!(
                                "{member} restarted at {now} though its policy or budget says no"
                            ),
                        );
                    }
                    if m.restart_not_before.is_none_or(|t| now < t) {
                        return violation(
                            "backoff-early",
                            format!(
                                "{member} restarted at {now}, before its delay ran out ({:?})",
                                m.restart_not_before
                            ),
                        );
                    }
                    let budget = self.template_of(i).backoff.budget;
                    if budget.is_some_and(|b| m.since_reset > b) {
                        return violation(
                            "budget",
                            format!(
                                "{member}: {} restarts since the last reset, budget {budget:?}",
                                m.since_reset
                            ),
                        );
                    }
                }
                if !self.dependencies_met(i) {
                    return violation(
                        "dependency-order",
                        format!("{member} started at {now} before its dependencies met their conditions"),
                    );
                }
                let m = &mut self.members[i];
                *m = Model {
                    template: m.template,
                    generation: generation.0,
                    running: true,
                    since_reset: m.since_reset,
                    total_restarts: m.total_restarts,
                    last_delay: m.last_delay,
                    ..Model::default()
                };
            }
            DeploymentAction::ClosePod {
                member,
                generation,
                grace,
            } => {
                let i = member.0;
                let Some(m) = self.members.get(i) else {
                    return violation("close", format!("unknown member {member} closed"));
                };
                if !m.running || m.generation != generation.0 {
                    return violation(
                        "close",
                        format!("{member} {generation} asked to close, but that pod does not run"),
                    );
                }
                if !self.closing {
                    return violation(
                        "close",
                        format!("{member} asked to close while the deployment is not closing"),
                    );
                }
                if let Some(previous) = m.close_sent {
                    let shorter = match (previous, grace) {
                        (Some(p), Some(g)) => g < p,
                        (None, Some(_)) => true,
                        _ => false,
                    };
                    if !shorter {
                        return violation(
                            "close",
                            format!("{member} asked to close again without a shorter grace ({previous:?} then {grace:?})"),
                        );
                    }
                }
                if let Some(d) = self
                    .dependents(i)
                    .into_iter()
                    .find(|&d| self.members[d].running)
                {
                    return violation(
                        "close-order",
                        format!("{member} asked to close at {now} while its dependent member#{d} still runs"),
                    );
                }
                self.members[i].close_sent = Some(grace);
            }
            DeploymentAction::MemberChanged { .. } => {}
            DeploymentAction::StateChanged { state } => {
                if state <= self.state {
                    return violation(
                        "deployment-state",
                        format!("deployment state went from {:?} to {state:?}", self.state),
                    );
                }
                self.state = state;
                match state {
                    DeploymentState::Stopping => self.closing = true,
                    DeploymentState::Ended => {
                        self.ended = true;
                        if let Some(i) = self.members.iter().position(|m| m.running) {
                            return violation(
                                "ended",
                                format!("the deployment ended at {now} while member#{i} runs"),
                            );
                        }
                    }
                    DeploymentState::Ready => {
                        let down = (0..self.members.len()).find(|&i| !self.up(i));
                        if let Some(i) = down {
                            return violation(
                                "ready",
                                format!("the deployment is ready at {now} but member#{i} is not"),
                            );
                        }
                    }
                    DeploymentState::Created | DeploymentState::Starting => {}
                }
            }
        }
        Ok(())
    }

    /// A member counts for the deployment's readiness: a ready long-running pod, or a
    /// succeeded one-shot.
    fn up(&self, i: usize) -> bool {
        let m = &self.members[i];
        if self.template_of(i).one_shot {
            m.succeeded
        } else {
            m.running
                && m.close_sent.is_none()
                && matches!(m.result, Some(StartResult::Ready { .. }))
        }
    }

    fn check_state(&self, machine: &DeploymentMachine, now: Time) -> Result<(), Violation> {
        if let Some(t) = machine.poll_timeout() {
            if t <= now {
                return violation("timer", format!("timer armed at {t}, not after now {now}"));
            }
        }
        if machine.state() != self.state {
            return violation(
                "deployment-state",
                format!(
                    "the machine is {:?} but its state changes said {:?}",
                    machine.state(),
                    self.state
                ),
            );
        }
        for (i, m) in self.members.iter().enumerate() {
            let member = machine.member(MemberId(i));
            if member.state().is_running() != m.running {
                return violation(
                    "member-running",
                    format!(
                        "{} is {:?} but the model says running = {}",
                        member.name(),
                        member.state(),
                        m.running
                    ),
                );
            }
            let budget = self.template_of(i).backoff.budget;
            if budget.is_some_and(|b| member.restarts_since_reset() > b) {
                return violation(
                    "budget",
                    format!(
                        "{}: {} restarts since the last reset, budget {budget:?}",
                        member.name(),
                        member.restarts_since_reset()
                    ),
                );
            }
            if self.closing {
                // Every running pod whose dependents have ended must have been asked to close.
                if m.running
                    && m.close_sent.is_none()
                    && self.dependents(i).iter().all(|&d| !self.members[d].running)
                {
                    return violation(
                        "close-all",
                        format!(
                            "the deployment is closing at {now} but {} was not asked to close",
                            member.name()
                        ),
                    );
                }
            } else if self.started
                && !m.running
                && !m.succeeded
                && !m.gave_up
                && (m.generation == 0 || m.restart_not_before.is_some_and(|t| t <= now))
                && self.dependencies_met(i)
            {
                return violation(
                    "start-eligible",
                    format!(
                        "{} may start at {now} but was not started ({:?})",
                        member.name(),
                        member.state()
                    ),
                );
            }
        }
        if !self.closing
            && self.state == DeploymentState::Starting
            && (0..self.members.len()).all(|i| self.up(i))
        {
            {
                return violation(
                    "ready",
                    format!("every member is up at {now} but the deployment is not ready"),
                );
            }
        }
        Ok(())
    }
}

/// A machine and its checker, stepped together.
#[derive(Debug)]
pub struct CheckedDeployment {
    /// The machine under test.
    pub machine: DeploymentMachine,
    /// The reference model.
    pub checker: DeploymentChecker,
}

impl CheckedDeployment {
    /// A checked machine for `spec`.
    pub fn new(spec: DeploymentSpec) -> Result<CheckedDeployment, super::DeploymentError> {
        CheckedDeployment::with_mutation(spec, None)
    }

    /// A checked, deliberately wrong machine. Tests only.
    #[doc(hidden)]
    pub fn with_mutation(
        spec: DeploymentSpec,
        mutation: Option<DeploymentMutation>,
    ) -> Result<CheckedDeployment, super::DeploymentError> {
        let machine = DeploymentMachine::with_mutation(spec.clone(), mutation)?;
        let checker = DeploymentChecker::new(&spec);
        Ok(CheckedDeployment { machine, checker })
    }

    /// Feeds `event` at `now`, drains the actions, checks the invariants and returns the
    /// actions.
    pub fn handle(
        &mut self,
        event: DeploymentEvent,
        now: Time,
    ) -> Result<Vec<DeploymentAction>, Violation> {
        self.machine.handle(event.clone(), now);
        let actions: Vec<DeploymentAction> =
            std::iter::from_fn(|| self.machine.poll_action()).collect();
        self.checker.step(&event, now, &actions, &self.machine)?;
        Ok(actions)
    }

    /// Feeds `Tick` at the machine's next deadline, if it has one.
    pub fn advance_to_timeout(&mut self) -> Option<Result<Vec<DeploymentAction>, Violation>> {
        let at = self.machine.poll_timeout()?;
        Some(self.handle(DeploymentEvent::Tick, at))
    }
}
