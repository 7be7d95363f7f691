//! Deployment worlds: a random deployment (a dependency DAG of templates with replicas,
//! one-shot jobs, conditions and restart policies) drives the real `DeploymentMachine`,
//! with its reference checker, over real `PodMachine`s (each with its own checker) whose
//! processes are the world's seeded model. Besides both checkers, the world checks what it
//! can see itself: a pod starts only when every pod it depends on meets the condition,
//! nothing starts once the deployment closes, and after healing everything ends within the
//! sum of the grace periods along the dependency levels.

use std::collections::BTreeMap;
use std::time::Duration;

use podvisor::core::deployment::{
    Backoff, CheckedDeployment, Condition, DeploymentAction, DeploymentEvent, DeploymentMutation,
    DeploymentSpec, DeploymentStartResult, DeploymentState, MemberId, MemberState, PodObserver,
    PodTemplate, RestartPolicy,
};
use podvisor::core::{End, ExitStatus, Generation, State, Time};

use crate::world::{fnv, Failure, FailureKind, World, WorldEvent, EPSILON};

/// The queue's pod index for events addressed to the deployment itself.
pub const DEPLOYMENT: usize = usize::MAX;

/// What deployment worlds reach, in coverage-bit order.
pub const DEPLOYMENT_OUTCOMES: [&str; 8] = [
    "deployment-ready",
    "deployment-failed",
    "deployment-cancelled",
    "member-restarted",
    "member-backing-off",
    "member-succeeded",
    "member-crash-looping",
    "member-waiting",
];

/// A deployment machine linked to the world's pods.
#[derive(Debug)]
pub struct DeploymentLink {
    machine: CheckedDeployment,
    /// Pod index → the member and deployment generation it runs, and its observer.
    owners: BTreeMap<usize, (MemberId, Generation, PodObserver)>,
    /// Member → its current pod index.
    current: BTreeMap<usize, usize>,
    timer: Option<Time>,
    /// Per template, the longest grace period of its pods.
    template_grace: Vec<Duration>,
    ended_at: Option<Time>,
    outcomes: u32,
}

impl DeploymentLink {
    /// The coverage bits reached (see [`DEPLOYMENT_OUTCOMES`]).
    pub fn outcomes(&self) -> u32 {
        let mut bits = self.outcomes;
        match self.machine.machine.start_result() {
            Some(DeploymentStartResult::Ready { .. }) => bits |= 1,
            Some(DeploymentStartResult::Failed(_)) => bits |= 2,
            Some(DeploymentStartResult::Cancelled) => bits |= 4,
            None => {}
        }
        if self
            .machine
            .machine
            .members()
            .iter()
            .any(|m| m.restarts() > 0)
        {
            bits |= 8;
        }
        bits
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn safety(message: String) -> Failure {
    Failure {
        kind: FailureKind::Safety,
        message,
    }
}

impl World {
    /// Draws a deployment and schedules its start.
    pub(crate) fn make_deployment(
        &mut self,
        mutation: Option<DeploymentMutation>,
    ) -> Result<(), Failure> {
        let templates = self.rng.range(1, 5) as usize;
        let mut spec = DeploymentSpec::new().seed(self.rng.next_u64());
        let mut one_shot = Vec::new();
        for t in 0..templates {
            let mut template =
                PodTemplate::new(format!("t{t}")).replicas(self.rng.range(1, 3) as u32);
            let is_one_shot = self.rng.chance(25);
            if is_one_shot {
                template = template.one_shot();
            }
            let policies: &[RestartPolicy] = if is_one_shot {
                &[RestartPolicy::No, RestartPolicy::OnFailure]
            } else {
                &[
                    RestartPolicy::No,
                    RestartPolicy::OnFailure,
                    RestartPolicy::Always,
                ]
            };
            template = template.restart(policies[self.rng.below(policies.len() as u64) as usize]);
            let initial = self.rng.range(10, 300);
            template = template.backoff(Backoff {
                initial: ms(initial),
                max: ms(self.rng.range(initial, 3_000)),
                jitter_percent: self.rng.range(0, 50) as u8,
                reset_after: ms(self.rng.range(100, 5_000)),
                budget: self.rng.chance(80).then(|| self.rng.range(0, 4) as u32),
            });
            for (u, &dependency_one_shot) in one_shot.iter().enumerate() {
                if self.rng.chance(45) {
                    let conditions: &[Condition] = if dependency_one_shot {
                        &[Condition::Succeeded, Condition::Ready, Condition::Started]
                    } else {
                        &[Condition::Ready, Condition::Started]
                    };
                    let condition = conditions[self.rng.below(conditions.len() as u64) as usize];
                    template = template.depends_on(format!("t{u}"), condition);
                }
            }
            one_shot.push(is_one_shot);
            spec = spec.pod(template);
        }
        let machine = CheckedDeployment::with_mutation(spec, mutation).map_err(|e| {
            safety(format!(
                "the simulator drew a deployment the core rejects: {e}"
            ))
        })?;
        self.deployment = Some(Box::new(DeploymentLink {
            machine,
            owners: BTreeMap::new(),
            current: BTreeMap::new(),
            timer: None,
            template_grace: vec![Duration::ZERO; templates],
            ended_at: None,
            outcomes: 0,
        }));
        let start = ms(self.rng.range(0, 500));
        self.schedule(
            Time::ZERO.checked_add(start).unwrap_or(Time::MAX),
            DEPLOYMENT,
            WorldEvent::DeploymentStart,
        );
        Ok(())
    }

    /// An event addressed to the deployment.
    pub(crate) fn deliver_to_deployment(&mut self, event: WorldEvent) -> Result<(), Failure> {
        let event = match event {
            WorldEvent::DeploymentStart => DeploymentEvent::Start,
            WorldEvent::Heal => DeploymentEvent::Close { grace: None },
            _ => DeploymentEvent::Tick,
        };
        self.deploy(event)
    }

    /// Reports what pod `i` reached to the deployment.
    pub(crate) fn observe_for_deployment(&mut self, i: usize) -> Result<(), Failure> {
        let Some(mut link) = self.deployment.take() else {
            return Ok(());
        };
        let events = match link.owners.get_mut(&i) {
            Some((_, _, observer)) => {
                let pod = &self.pods[i].machine;
                observer.observe_all(pod.state(), pod.start_result(), pod.end(), pod.health())
            }
            None => Vec::new(),
        };
        self.deployment = Some(link);
        for event in events {
            self.deploy(event)?;
        }
        Ok(())
    }

    /// Feeds the deployment one event and carries out its actions.
    fn deploy(&mut self, event: DeploymentEvent) -> Result<(), Failure> {
        let Some(mut link) = self.deployment.take() else {
            return Ok(());
        };
        let result = self.deploy_with(&mut link, event);
        self.deployment = Some(link);
        result
    }

    fn deploy_with(
        &mut self,
        link: &mut DeploymentLink,
        event: DeploymentEvent,
    ) -> Result<(), Failure> {
        let now = self.now;
        fnv(&mut self.hash, now.as_nanos());
        fnv(&mut self.hash, 0xdeb1);
        self.note(|| format!("{now} deployment {event:?}"));
        let actions = link
            .machine
            .handle(event, now)
            .map_err(|v| safety(format!("deployment: {v}")))?;
        let state = link.machine.machine.state();
        for action in actions {
            self.note(|| format!("{:>14}    deployment {action:?}", ""));
            match action {
                DeploymentAction::StartPod { member, generation } => {
                    fnv(
                        &mut self.hash,
                        0x5a + member.0 as u64 * 7 + generation.0 * 131,
                    );
                    if matches!(state, DeploymentState::Stopping | DeploymentState::Ended) {
                        return Err(safety(format!(
                            "{now}: the deployment started {} (generation {}) while closing",
                            link.machine.machine.member(member).name(),
                            generation.0
                        )));
                    }
                    if let Some(problem) = self.unmet_dependency(link, member) {
                        return Err(safety(format!("{now}: {problem}")));
                    }
                    let index = self.make_pod(None, true)?;
                    let template = link.machine.machine.member(member).template();
                    let grace = self.pods[index].machine.spec().grace;
                    link.template_grace[template] = link.template_grace[template].max(grace);
                    link.owners.insert(
                        index,
                        (member, generation, PodObserver::new(member, generation)),
                    );
                    link.current.insert(member.0, index);
                }
                DeploymentAction::ClosePod {
                    member,
                    generation,
                    grace,
                } => {
                    fnv(
                        &mut self.hash,
                        0xc1 + member.0 as u64 * 7 + generation.0 * 131,
                    );
                    if let Some(&index) = link.current.get(&member.0) {
                        if link
                            .owners
                            .get(&index)
                            .is_some_and(|(_, g, _)| *g == generation)
                        {
                            self.schedule(now, index, WorldEvent::Close(grace));
                        }
                    }
                }
                DeploymentAction::MemberChanged { state, .. } => {
                    fnv(&mut self.hash, 0xaa + state as u64);
                    link.outcomes |= match state {
                        MemberState::BackingOff => 16,
                        MemberState::Succeeded => 32,
                        MemberState::CrashLooping => 64,
                        MemberState::Waiting => 128,
                        _ => 0,
                    };
                }
                DeploymentAction::StateChanged { state } => {
                    fnv(&mut self.hash, 0xbb + state as u64);
                    if state == DeploymentState::Ended && link.ended_at.is_none() {
                        link.ended_at = Some(now);
                    }
                }
            }
        }
        let timeout = link.machine.machine.poll_timeout();
        if timeout.is_some() && timeout != link.timer {
            link.timer = timeout;
            if let Some(t) = timeout {
                self.schedule(t, DEPLOYMENT, WorldEvent::DeploymentTick);
            }
        }
        Ok(())
    }

    /// Why `member` may not start now, judged from the world's own pods: every replica of
    /// each template it depends on must meet the condition (a succeeded one-shot meets all).
    fn unmet_dependency(&self, link: &DeploymentLink, member: MemberId) -> Option<String> {
        let machine = &link.machine.machine;
        let spec = machine.spec();
        let me = machine.member(member);
        for dependency in &spec.templates[me.template()].depends_on {
            let Some(t) = spec.position(&dependency.on) else {
                return Some(format!(
                    "{} depends on unknown {}",
                    me.name(),
                    dependency.on
                ));
            };
            let one_shot = spec.templates[t].one_shot;
            for other in machine.members_of(t) {
                let name = machine.member(other).name().to_string();
                let Some(&index) = link.current.get(&other.0) else {
                    return Some(format!(
                        "{} started before {name}, on which it depends, ever ran",
                        me.name()
                    ));
                };
                let pod = &self.pods[index].machine;
                let succeeded = one_shot && pod.end() == Some(End::Exited(ExitStatus::Code(0)));
                let met = succeeded
                    || match dependency.condition {
                        Condition::Started => matches!(pod.state(), State::Started | State::Ready),
                        Condition::Ready => pod.state() == State::Ready,
                        Condition::Succeeded => false,
                        other => {
                            unreachable!("a condition the simulator does not model: {other:?}")
                        }
                    };
                if !met {
                    return Some(format!(
                        "{} started while {name} was {:?} (condition {})",
                        me.name(),
                        pod.state(),
                        dependency.condition
                    ));
                }
            }
        }
        None
    }

    /// After healing and quiet: the deployment and every pod ended, within the sum over
    /// the templates of their longest grace period (+ε and twice the deadline tolerance
    /// each) after the heal.
    pub(crate) fn deployment_liveness(&self, heal_at: Time) -> Result<(), Failure> {
        let Some(link) = &self.deployment else {
            return Ok(());
        };
        let liveness = |message: String| Failure {
            kind: FailureKind::Liveness,
            message,
        };
        if link.machine.machine.state() != DeploymentState::Ended {
            return Err(liveness(format!(
                "the deployment is {:?} after healing and the world went quiet",
                link.machine.machine.state()
            )));
        }
        for (i, pod) in self.pods.iter().enumerate() {
            if pod.machine.state() != State::Ended {
                return Err(liveness(format!(
                    "pod{i} is {:?} after the deployment ended",
                    pod.machine.state()
                )));
            }
        }
        // Per level: its grace, ε, and the close and the kill each within the tolerance.
        let tolerance = self.deadline_tolerance();
        let budget: Duration = link
            .template_grace
            .iter()
            .map(|g| *g + EPSILON + tolerance * 2)
            .sum();
        let bound = heal_at.checked_add(budget + EPSILON).unwrap_or(Time::MAX);
        if link.ended_at.is_some_and(|t| t > bound) {
            return Err(liveness(format!(
                "the deployment ended at {:?}, later than heal + Σ grace + ε = {bound}",
                link.ended_at
            )));
        }
        Ok(())
    }
}
