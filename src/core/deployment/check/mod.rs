//! [`DeploymentChecker`]: an independent record of what happened to a deployment's pods,
//! and the invariants of the design (DESIGN.md §3.6 and the restart rules) checked against
//! a [`DeploymentMachine`] after every step.
//!
//! The model keeps, per member, only facts taken from the events and actions (is a pod
//! running, did it report started or ready, when did it end) and decides from them what
//! the machine must and must not do. It shares with the machine only the spec types and
//! the jitter draw; the delay bounds are recomputed here.

mod invariants;
mod record;

use std::time::Duration;

use super::super::check::Violation;
use super::super::outcome::StartResult;
use super::super::time::Time;
use super::spec::{Condition, DeploymentSpec};
use super::{
    DeploymentAction, DeploymentEvent, DeploymentMachine, DeploymentMutation, DeploymentState,
    MemberId,
};

/// What the model knows about one member.
#[derive(Clone, Debug, Default)]
struct Model {
    template: usize,
    generation: u64,
    /// A pod was asked to start and has not ended.
    running: bool,
    started: bool,
    /// Its pod reported passing its health checks.
    healthy: bool,
    /// Its pod reported turning unhealthy (it is closing itself).
    unhealthy: bool,
    /// Stopped or restarted on request while its pod runs: (close only once its
    /// dependents are down, start again once down).
    held: Option<(bool, bool)>,
    /// Down on request: it may not start until started on request.
    stopped: bool,
    /// It may start on request (a new generation without a restart decision).
    control_start: bool,
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
        if m.held.is_some() || m.unhealthy {
            // Being stopped or restarted on request, or closing as unhealthy: it meets
            // nothing.
            return false;
        }
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
            Condition::Healthy => {
                self.meets(d, Condition::Ready)
                    && self.members[d].healthy
                    && !self.members[d].decided
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
