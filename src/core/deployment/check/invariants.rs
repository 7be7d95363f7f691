//! The deployment checker's invariants: each action the machine asks for, and its state
//! after every step, judged against the record.

use crate::core::check::Violation;
use crate::core::deployment::{DeploymentAction, DeploymentMachine, DeploymentState, MemberId};
use crate::core::outcome::StartResult;
use crate::core::time::Time;

use super::{violation, DeploymentChecker, Model};

impl DeploymentChecker {
    pub(super) fn check_action(
        &mut self,
        action: &DeploymentAction,
        now: Time,
    ) -> Result<(), Violation> {
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
                if m.stopped || m.held.is_some() {
                    return violation(
                        "stopped-stays-stopped",
                        format!("{member} started at {now} though it was stopped on request"),
                    );
                }
                if m.generation > 0 && !m.control_start {
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
                let held = m.held;
                if !self.closing && held.is_none() {
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
                // Order matters for the first request to close; a later one only shortens
                // the grace of a pod already closing (one stopped on request without its
                // dependents may close before them).
                let first = self.members[i].close_sent.is_none();
                let ordered = first && (self.closing || held.is_some_and(|(after, _)| after));
                if let Some(d) = self
                    .dependents(i)
                    .into_iter()
                    .find(|&d| ordered && self.members[d].running)
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
    pub(super) fn up(&self, i: usize) -> bool {
        let m = &self.members[i];
        if m.stopped && !m.running {
            // Stopped on request: the deployment does not wait for it.
            true
        } else if self.template_of(i).one_shot {
            m.succeeded
        } else {
            m.running
                && m.close_sent.is_none()
                && !m.unhealthy
                && matches!(m.result, Some(StartResult::Ready { .. }))
        }
    }

    pub(super) fn check_state(
        &self,
        machine: &DeploymentMachine,
        now: Time,
    ) -> Result<(), Violation> {
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
            } else if m.running
                && m.close_sent.is_none()
                && m.held.is_some_and(|(after, _)| {
                    !after || self.dependents(i).iter().all(|&d| !self.members[d].running)
                })
            {
                return violation(
                    "stop-on-request",
                    format!(
                        "{} was stopped on request and its dependents are down at {now}, but it was not asked to close",
                        member.name()
                    ),
                );
            } else if self.started
                && !m.running
                && !m.succeeded
                && !m.gave_up
                && !m.stopped
                && (m.generation == 0
                    || m.control_start
                    || m.restart_not_before.is_some_and(|t| t <= now))
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
