//! How the deployment checker's record follows the machine: the facts each event and
//! action adds, and what the restart policy calls for when a member's generation is over.

use crate::core::check::Violation;
use crate::core::deployment::restart::jitter_draw;
use crate::core::deployment::{
    DeploymentEvent, DeploymentMachine, DeploymentState, MemberId, MemberState, RestartPolicy,
};
use crate::core::event::{ExitStatus, Generation};
use crate::core::outcome::{End, StartResult};
use crate::core::time::Time;

use super::{violation, DeploymentChecker, Model};

impl DeploymentChecker {
    pub(super) fn apply(
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
            DeploymentEvent::StopMember { member, cascade } => {
                if member.0 < self.members.len() && !self.closing && !self.ended {
                    self.control_stop(member.0, *cascade, false);
                }
            }
            DeploymentEvent::RestartMember { member } => {
                if member.0 < self.members.len() && !self.closing && !self.ended {
                    self.control_stop(member.0, true, true);
                }
            }
            DeploymentEvent::StartMember { member } => {
                if member.0 < self.members.len() && !self.closing && !self.ended {
                    let m = &mut self.members[member.0];
                    if m.running {
                        if let Some((_, again)) = &mut m.held {
                            *again = true;
                            m.since_reset = 0;
                            m.last_delay = None;
                        }
                    } else if m.stopped || m.gave_up || m.succeeded {
                        m.stopped = false;
                        m.gave_up = false;
                        m.succeeded = false;
                        m.crash_looping = false;
                        m.control_start = true;
                        m.since_reset = 0;
                        m.last_delay = None;
                        m.restart_due = false;
                    }
                }
            }
            DeploymentEvent::PodUnhealthy { member, generation } => {
                if let Some(m) = self.members.get_mut(member.0) {
                    if ours(m, *generation) {
                        m.unhealthy = true;
                        m.healthy = false;
                    }
                }
            }
            DeploymentEvent::PodHealthy { member, generation } => {
                if let Some(m) = self.members.get_mut(member.0) {
                    if ours(m, *generation) {
                        m.healthy = true;
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
                if m.close_sent.is_none() && m.held.is_none() && !self.closing && !one_shot_done {
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
                if let (Some((_, again)), false) = (m.held, self.closing) {
                    // Down on request: no decision.
                    m.held = None;
                    if again {
                        m.control_start = true;
                    } else {
                        m.stopped = true;
                    }
                } else if m.close_sent.is_some() || self.closing {
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

    /// A stop on request of member `i` (with `cascade`, of the members that depend on it,
    /// transitively, that are up or on their way); with `again`, each starts again once
    /// down, with a fresh budget.
    fn control_stop(&mut self, i: usize, cascade: bool, again: bool) {
        let mut members = vec![i];
        if cascade {
            // Every template that depends on this one, directly or not.
            let mut templates = vec![self.members[i].template];
            let mut k = 0;
            while k < templates.len() {
                let on = &self.spec.templates[templates[k]].name;
                k += 1;
                let next: Vec<usize> = self
                    .spec
                    .templates
                    .iter()
                    .enumerate()
                    .filter(|(t, tpl)| {
                        !templates.contains(t) && tpl.depends_on.iter().any(|d| &d.on == on)
                    })
                    .map(|(t, _)| t)
                    .collect();
                templates.extend(next);
            }
            for &t in &templates[1..] {
                for &d in &self.members_of[t] {
                    let m = &self.members[d];
                    // One stopped on request stays so; one being restarted is held anew.
                    let on_its_way = m.held.is_none_or(|(_, again)| again)
                        && (m.running || !(m.stopped || m.succeeded || m.gave_up));
                    if on_its_way {
                        members.push(d);
                    }
                }
            }
        }
        for j in members {
            let m = &mut self.members[j];
            if again {
                m.since_reset = 0;
                m.last_delay = None;
            }
            if m.running {
                m.held = Some((cascade, again));
            } else if m.succeeded && !again {
            } else if again {
                m.succeeded = false;
                m.stopped = false;
                m.gave_up = false;
                m.crash_looping = false;
                m.restart_due = false;
                m.restart_not_before = None;
                m.control_start = true;
            } else if !m.stopped {
                m.stopped = true;
                m.restart_due = false;
                m.restart_not_before = None;
            }
        }
    }

    /// Member `i`'s generation is over by itself: what the policy calls for, checked
    /// against the delay the machine chose.
    pub(super) fn decide(
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
}
