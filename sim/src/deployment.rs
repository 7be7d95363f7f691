//! Deployment worlds: a random deployment (a dependency DAG of templates with replicas,
//! one-shot jobs, conditions and restart policies) drives the real `DeploymentMachine`,
//! with its reference checker, over real `PodMachine`s (each with its own checker) whose
//! processes are the world's seeded model. Control commands (stop a member with or without
//! its dependents, start it, restart it, close the deployment: `down`) come at random
//! times. Besides both checkers, the world checks what it can see itself: a pod starts only
//! when every pod it depends on meets the condition (a member stopped or restarted on
//! request meets none), nothing starts once the deployment closes, a member stopped on
//! request stays down until started, a stop with dependents closes the member only once
//! its dependents are down, the restart budget is never exceeded and a member gives up only
//! once it is spent (restarts on request spend none), a member stopped or restarted on
//! request never fails the deployment, and after `down` or healing, and
//! after a stop, everything concerned ends within the sum of the grace periods along the
//! dependency levels.

use std::collections::BTreeMap;
use std::time::Duration;

use podvisor::core::deployment::{
    Backoff, CheckedDeployment, Condition, DeploymentAction, DeploymentEvent, DeploymentMutation,
    DeploymentSpec, DeploymentStartResult, DeploymentState, MemberId, MemberState, PodObserver,
    PodTemplate, RestartPolicy,
};
use podvisor::core::{End, ExitStatus, Generation, Health, State, Time};

use crate::swarm::Fault;
use crate::world::{fnv, Failure, FailureKind, World, WorldEvent, EPSILON};

/// The queue's pod index for events addressed to the deployment itself.
pub const DEPLOYMENT: usize = usize::MAX;

/// What deployment worlds reach, in coverage-bit order.
pub const DEPLOYMENT_OUTCOMES: [&str; 15] = [
    "deployment-ready",
    "deployment-failed",
    "deployment-cancelled",
    "member-restarted",
    "member-backing-off",
    "member-succeeded",
    "member-crash-looping",
    "member-waiting",
    "control-stop",
    "control-start",
    "control-restart",
    "cascade-waited",
    "healthy-held-back",
    "control-down",
    "down-before-ready",
];

const STOPPED: u32 = 1 << 8;
const STARTED: u32 = 1 << 9;
const RESTARTED: u32 = 1 << 10;
const CASCADE_WAITED: u32 = 1 << 11;
const HEALTHY_HELD_BACK: u32 = 1 << 12;
const DOWN: u32 = 1 << 13;
const DOWN_BEFORE_READY: u32 = 1 << 14;

/// A control command, as `podvisor stop/start/restart/down` would send it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Stop a member; with `cascade`, its dependents first.
    Stop {
        /// The member's index.
        member: usize,
        /// Its dependents too.
        cascade: bool,
    },
    /// Start a stopped member.
    Start {
        /// The member's index.
        member: usize,
    },
    /// Restart a member and its dependents.
    Restart {
        /// The member's index.
        member: usize,
    },
    /// Close the deployment.
    Down {
        /// The grace period asked for, if any.
        grace: Option<Duration>,
    },
}

impl Command {
    /// A number for the trace hash.
    pub(crate) fn code(self) -> u64 {
        match self {
            Command::Stop { member, cascade } => member as u64 * 8 + u64::from(cascade),
            Command::Start { member } => member as u64 * 8 + 2,
            Command::Restart { member } => member as u64 * 8 + 3,
            Command::Down { grace } => 4 + grace.map_or(0, |g| g.as_millis() as u64 * 8 + 8),
        }
    }
}

/// What the world itself knows of one member, for its own invariants.
#[derive(Clone, Copy, Debug, Default)]
struct Watch {
    /// Stopped on request (since when): no pod of it may start until it is started.
    stopped: Option<Time>,
    /// Restarted on request: it meets no condition until its next pod starts.
    restarting: bool,
    /// Stopped with its dependents: its pod may close only once they are down.
    cascade: bool,
    /// The cascade's close did not come at once: it waits for dependents.
    cascade_waits: bool,
    /// Restarts after failures since the last reset, as the world counts them.
    spent: u32,
    /// When its current pod was reported ready.
    ready_at: Option<Time>,
    /// When its current pod was reported healthy.
    healthy_at: Option<Time>,
    /// Its current pod was asked to close: a later `ClosePod` only shortens the grace.
    closing: bool,
}

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
    /// Per member, what the world knows of it.
    watch: Vec<Watch>,
    /// Per template, the templates that depend on it, directly or not.
    dependents: Vec<Vec<usize>>,
    /// When `down` closed the deployment, and its grace.
    down: Option<(Time, Option<Duration>)>,
    /// Pods stopped on request while running: (pod index, when).
    stops: Vec<(usize, Time)>,
    /// A stop with dependents is to come soon after the first pod that depends on
    /// another starts, while that one is up.
    stop_after_dependent: bool,
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

impl DeploymentLink {
    /// Member `j`'s state.
    fn state(&self, j: usize) -> MemberState {
        self.machine.machine.member(MemberId(j)).state()
    }

    /// The members of the templates that depend on member `i`'s, directly or not.
    fn dependents_of(&self, i: usize) -> Vec<usize> {
        let machine = &self.machine.machine;
        let template = machine.member(MemberId(i)).template();
        self.dependents[template]
            .iter()
            .flat_map(|&t| machine.members_of(t).map(|m| m.0))
            .collect()
    }

    /// A stop is about to be asked for: the member (with `cascade`, its dependents too)
    /// must stay down until started, unless it is done already.
    fn expect_stop(&mut self, member: usize, cascade: bool, now: Time) {
        let mut targets = vec![member];
        if cascade {
            targets.extend(self.dependents_of(member));
        }
        for j in targets {
            let state = self.state(j);
            if matches!(
                state,
                MemberState::Succeeded | MemberState::Ended | MemberState::CrashLooping
            ) {
                continue;
            }
            let held = self.machine.machine.member(MemberId(j)).is_held();
            let watch = &mut self.watch[j];
            watch.stopped.get_or_insert(now);
            if state.is_running() {
                if j == member || !held || watch.restarting {
                    // Held anew: its pod closes after its dependents if the stop cascades,
                    // and it does not come back.
                    watch.cascade = cascade;
                    watch.restarting = false;
                }
                if let Some(&index) = self.current.get(&j) {
                    self.stops.push((index, now));
                }
            }
        }
    }

    /// A start is about to be asked for: a stopped or ended member (or a succeeded job)
    /// waits for its dependencies with a fresh budget; one whose pod still closes starts
    /// once it is down.
    fn expect_start(&mut self, member: usize) {
        let state = self.state(member);
        let held = self.machine.machine.member(MemberId(member)).is_held();
        let watch = &mut self.watch[member];
        if matches!(
            state,
            MemberState::Stopped
                | MemberState::Ended
                | MemberState::CrashLooping
                | MemberState::Succeeded
        ) {
            watch.stopped = None;
            watch.spent = 0;
            self.outcomes |= STARTED;
        } else if state.is_running() && held {
            watch.stopped = None;
            watch.restarting = true;
            watch.spent = 0;
            self.outcomes |= STARTED;
        }
    }

    /// A restart is about to be asked for: the member and its dependents that are up or
    /// on their way (not those stopped on request) start again with a fresh budget.
    fn expect_restart(&mut self, member: usize) {
        let mut targets = vec![member];
        for j in self.dependents_of(member) {
            let state = self.state(j);
            let held = self.machine.machine.member(MemberId(j)).is_held();
            if (!held || self.watch[j].restarting)
                && (state.is_running()
                    || matches!(state, MemberState::Waiting | MemberState::BackingOff))
            {
                targets.push(j);
            }
        }
        for j in targets {
            let state = self.state(j);
            let watch = &mut self.watch[j];
            watch.spent = 0;
            if state.is_running() {
                watch.stopped = None;
                watch.restarting = true;
                watch.cascade = true;
            } else if matches!(
                state,
                MemberState::Stopped | MemberState::Ended | MemberState::CrashLooping
            ) {
                watch.stopped = None;
            }
        }
    }

    /// After a command: members whose cascade close did not come at once wait for their
    /// dependents.
    fn note_cascades(&mut self) {
        for watch in &mut self.watch {
            if watch.cascade {
                watch.cascade_waits = true;
            }
        }
    }

    /// The world's own count of restarts after failures: a member's restarts since its
    /// last reset (a stable run, a start or restart on request) never exceed the budget,
    /// and it gives up only once they reach it.
    fn check_budget(
        &mut self,
        member: MemberId,
        state: MemberState,
        now: Time,
    ) -> Result<(), Failure> {
        if !matches!(state, MemberState::BackingOff | MemberState::CrashLooping) {
            return Ok(());
        }
        let machine = &self.machine.machine;
        let m = machine.member(member);
        let backoff = machine.spec().templates[m.template()].backoff;
        let watch = &mut self.watch[member.0];
        if watch
            .ready_at
            .is_some_and(|t| now.saturating_duration_since(t) >= backoff.reset_after)
        {
            watch.spent = 0;
        }
        if state == MemberState::BackingOff {
            watch.spent += 1;
            if backoff.budget.is_some_and(|b| watch.spent > b) {
                return Err(safety(format!(
                    "{now}: {} restarts for the {}th time since its last reset; its budget is {:?}",
                    m.name(),
                    watch.spent,
                    backoff.budget
                )));
            }
        } else if backoff.budget.is_none_or(|b| watch.spent < b) {
            return Err(safety(format!(
                "{now}: {} gave up (crash-looping) after {} restarts since its last reset; its budget is {:?}",
                m.name(),
                watch.spent,
                backoff.budget
            )));
        }
        Ok(())
    }
}

// Percent chances in the deployments drawn, set so that each row of the coverage table is
// reached in at least 5 % of the seeds: a template is a one-shot job; a long-running one
// is health-checked; it depends on an earlier template (more often on a health-checked
// one, mostly with `healthy`); the world gets control commands; a stop is with dependents,
// and then mostly of a member others depend on; a stop with dependents follows the first
// start of a pod that depends on another.
const HEALTH_CHECKED: u8 = 65;
const ONE_SHOT: u8 = 35;
const DEPENDS: u8 = 45;
const DEPENDS_ON_CHECKED: u8 = 80;
const CASCADE_ON_DEPENDED: u8 = 90;
const COMMANDS: u8 = 85;
const CASCADE: u8 = 70;
const STOP_AFTER_DEPENDENT: u8 = 30;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn plus_ms(t: Time, n: u64) -> Time {
    t.checked_add(ms(n)).unwrap_or(Time::MAX)
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
        let mut checked = Vec::new();
        for t in 0..templates {
            let mut template =
                PodTemplate::new(format!("t{t}")).replicas(self.rng.range(1, 3) as u32);
            let is_one_shot = self.rng.chance(ONE_SHOT);
            if is_one_shot {
                template = template.one_shot();
            }
            // Its pods all get health checks, so others may wait until they are healthy.
            let health_checked = !is_one_shot && self.rng.chance(HEALTH_CHECKED);
            template = template.health_checked(health_checked);
            // A long-running template gives up at once (`no`) less often than it restarts.
            let policy = match self.rng.below(if is_one_shot { 2 } else { 5 }) {
                0 => RestartPolicy::No,
                1 | 2 => RestartPolicy::OnFailure,
                _ => RestartPolicy::Always,
            };
            template = template.restart(policy);
            let initial = self.rng.range(10, 300);
            template = template.backoff(Backoff {
                initial: ms(initial),
                max: ms(self.rng.range(initial, 3_000)),
                jitter_percent: self.rng.range(0, 50) as u8,
                reset_after: ms(self.rng.range(100, 5_000)),
                budget: self.rng.chance(80).then(|| self.rng.range(0, 4) as u32),
            });
            for (u, &dependency_one_shot) in one_shot.iter().enumerate() {
                // Mostly on a health-checked template, which makes `healthy` conditions.
                if self.rng.chance(if checked[u] {
                    DEPENDS_ON_CHECKED
                } else {
                    DEPENDS
                }) {
                    let conditions: &[Condition] = if dependency_one_shot {
                        &[Condition::Succeeded, Condition::Ready, Condition::Started]
                    } else if checked[u] {
                        &[
                            Condition::Healthy,
                            Condition::Healthy,
                            Condition::Healthy,
                            Condition::Ready,
                        ]
                    } else {
                        &[Condition::Ready, Condition::Started]
                    };
                    let condition = conditions[self.rng.below(conditions.len() as u64) as usize];
                    template = template.depends_on(format!("t{u}"), condition);
                }
            }
            one_shot.push(is_one_shot);
            checked.push(health_checked);
            spec = spec.pod(template);
        }
        let mut dependents = vec![Vec::new(); templates];
        for t in (0..templates).rev() {
            for dependency in &spec.templates[t].depends_on {
                if let Some(on) = spec.position(&dependency.on) {
                    let mut more = vec![t];
                    more.extend(dependents[t].iter().copied());
                    for d in more {
                        if !dependents[on].contains(&d) {
                            dependents[on].push(d);
                        }
                    }
                }
            }
        }
        let machine = CheckedDeployment::with_mutation(spec, mutation).map_err(|e| {
            safety(format!(
                "the simulator drew a deployment the core rejects: {e}"
            ))
        })?;
        let members = machine.machine.members().len();
        self.deployment = Some(Box::new(DeploymentLink {
            machine,
            owners: BTreeMap::new(),
            current: BTreeMap::new(),
            timer: None,
            template_grace: vec![Duration::ZERO; templates],
            ended_at: None,
            outcomes: 0,
            watch: vec![Watch::default(); members],
            dependents,
            down: None,
            stops: Vec::new(),
            stop_after_dependent: false,
        }));
        let start = ms(self.rng.range(0, 500));
        self.schedule(
            Time::ZERO.checked_add(start).unwrap_or(Time::MAX),
            DEPLOYMENT,
            WorldEvent::DeploymentStart,
        );
        let mut commands = self.draw_commands(start, members);
        self.draw_early_close(start, &mut commands);
        // A stop at a random time mostly finds the dependents still waiting.
        let follow = self.rng.chance(STOP_AFTER_DEPENDENT);
        if let Some(link) = &mut self.deployment {
            link.stop_after_dependent = follow;
        }
        for (at, command) in commands {
            let at = Time::ZERO.checked_add(at).unwrap_or(Time::MAX);
            self.schedule(at, DEPLOYMENT, WorldEvent::Control(command));
        }
        Ok(())
    }

    /// Early close: `down` while the deployment starts — before its start, at the same
    /// instant, while its first pods spawn, or while members start and wait for their
    /// dependencies — and maybe `down` again a little later, with its own grace (which may
    /// shorten the first one's, never lengthen it).
    fn draw_early_close(&mut self, start: Duration, commands: &mut Vec<(Duration, Command)>) {
        if !self.fault(Fault::EarlyClose) {
            return;
        }
        let rng = &mut self.rng;
        let at = match rng.below(4) {
            0 => ms(rng.range(0, start.as_millis() as u64)),
            1 => start,
            2 => start + ms(rng.range(0, 5)),
            _ => start + ms(rng.range(0, 2_000)),
        };
        let draw_grace =
            |rng: &mut crate::rng::Rng| rng.chance(50).then(|| ms(rng.range(0, 2_000)));
        let grace = draw_grace(rng);
        commands.push((at, Command::Down { grace }));
        if rng.chance(50) {
            let later = at + ms(rng.range(0, 1_000));
            commands.push((
                later,
                Command::Down {
                    grace: draw_grace(rng),
                },
            ));
        }
    }

    /// Control commands at random times, mostly while the deployment starts and runs:
    /// stops (often followed by a start of the same member), restarts, and maybe `down`.
    fn draw_commands(&mut self, start: Duration, members: usize) -> Vec<(Duration, Command)> {
        let mut commands = Vec::new();
        if !self.rng.chance(COMMANDS) {
            return commands;
        }
        // The members others depend on: a stop with dependents is mostly of one of them.
        let depended_on: Vec<usize> = self.deployment.as_ref().map_or(Vec::new(), |link| {
            (0..members)
                .filter(|&j| {
                    let template = link.machine.machine.member(MemberId(j)).template();
                    !link.dependents[template].is_empty()
                })
                .collect()
        });
        let rng = &mut self.rng;
        for _ in 0..rng.range(1, 4) {
            let at = start
                + ms(if rng.chance(80) {
                    rng.range(0, 2_500)
                } else {
                    rng.range(0, 20_000)
                });
            let member = rng.below(members as u64) as usize;
            match rng.below(10) {
                0..=4 => {
                    let cascade = rng.chance(CASCADE);
                    let member = match depended_on.len() as u64 {
                        n if cascade && n > 0 && rng.chance(CASCADE_ON_DEPENDED) => {
                            depended_on[rng.below(n) as usize]
                        }
                        _ => member,
                    };
                    commands.push((at, Command::Stop { member, cascade }));
                    if rng.chance(60) {
                        let later = at + ms(rng.range(0, 3_000));
                        commands.push((later, Command::Start { member }));
                    }
                }
                5 => commands.push((at, Command::Start { member })),
                _ => commands.push((at, Command::Restart { member })),
            }
        }
        if rng.chance(20) {
            let at = start + ms(rng.range(0, 6_000));
            let grace = rng.chance(50).then(|| ms(rng.range(0, 2_000)));
            commands.push((at, Command::Down { grace }));
        }
        commands
    }

    /// An event addressed to the deployment.
    pub(crate) fn deliver_to_deployment(&mut self, event: WorldEvent) -> Result<(), Failure> {
        let event = match event {
            WorldEvent::DeploymentStart => DeploymentEvent::Start,
            WorldEvent::Heal => DeploymentEvent::Close { grace: None },
            WorldEvent::Control(command) => return self.control(command),
            _ => DeploymentEvent::Tick,
        };
        self.deploy(event)
    }

    /// A control command: what the world expects of it is noted first (from the members'
    /// states before it), then the deployment gets it.
    fn control(&mut self, command: Command) -> Result<(), Failure> {
        let Some(mut link) = self.deployment.take() else {
            return Ok(());
        };
        let now = self.now;
        let machine = &link.machine.machine;
        let closing = matches!(
            machine.state(),
            DeploymentState::Stopping | DeploymentState::Ended
        );
        let event = match command {
            Command::Stop { member, cascade } => DeploymentEvent::StopMember {
                member: MemberId(member),
                cascade,
            },
            Command::Start { member } => DeploymentEvent::StartMember {
                member: MemberId(member),
            },
            Command::Restart { member } => DeploymentEvent::RestartMember {
                member: MemberId(member),
            },
            Command::Down { grace } => DeploymentEvent::Close { grace },
        };
        if !closing {
            match command {
                Command::Stop { member, cascade } => link.expect_stop(member, cascade, now),
                Command::Start { member } => link.expect_start(member),
                Command::Restart { member } => link.expect_restart(member),
                Command::Down { grace } => {
                    link.down = Some((now, grace));
                    link.outcomes |= DOWN;
                    if machine.start_result().is_none() {
                        link.outcomes |= DOWN_BEFORE_READY;
                    }
                }
            }
        }
        let result = self.deploy_with(&mut link, event);
        link.note_cascades();
        self.deployment = Some(link);
        result
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
        for event in &events {
            let (member, generation, ready) = match event {
                DeploymentEvent::PodStartResult {
                    member,
                    generation,
                    result,
                } if result.is_ready() => (*member, *generation, true),
                DeploymentEvent::PodHealthy { member, generation } => (*member, *generation, false),
                _ => continue,
            };
            if link.machine.machine.member(member).generation() == generation {
                let watch = &mut link.watch[member.0];
                if ready {
                    watch.ready_at = Some(self.now);
                } else {
                    watch.healthy_at = Some(self.now);
                }
            }
        }
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
                    let watch = &mut link.watch[member.0];
                    if let Some(at) = watch.stopped {
                        return Err(safety(format!(
                            "{now}: {} started (generation {}), but it was stopped on request at {at} and never started since",
                            link.machine.machine.member(member).name(),
                            generation.0
                        )));
                    }
                    if watch.restarting {
                        link.outcomes |= RESTARTED;
                    }
                    *watch = Watch {
                        spent: watch.spent,
                        ..Watch::default()
                    };
                    if self.held_back_by_health(link, member) {
                        link.outcomes |= HEALTHY_HELD_BACK;
                    }
                    let template = link.machine.machine.member(member).template();
                    let health_checked =
                        link.machine.machine.spec().templates[template].health_checked;
                    let index = self.make_pod(None, true, health_checked)?;
                    let grace = self.pods[index].machine.spec().grace;
                    link.template_grace[template] = link.template_grace[template].max(grace);
                    link.owners.insert(
                        index,
                        (member, generation, PodObserver::new(member, generation)),
                    );
                    link.current.insert(member.0, index);
                    self.stop_after_dependent(link, template);
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
                    let watch = &mut link.watch[member.0];
                    // A close asked again (a later `down` shortens the grace) is not the
                    // close a stop with dependents waits for.
                    let first = !std::mem::replace(&mut watch.closing, true);
                    // After a plain `down`, a pod's own grace may only be shortened: its
                    // first close never asks for more.
                    if let (true, Some((_, None)), Some(asked)) = (first, link.down, grace) {
                        if let Some(&index) = link.current.get(&member.0) {
                            let own = self.pods[index].machine.spec().grace;
                            if asked > own {
                                return Err(safety(format!(
                                    "{now}: after a plain down, {} was first asked to close with a grace of {asked:?}, longer than its own {own:?}",
                                    link.machine.machine.member(member).name()
                                )));
                            }
                        }
                    }
                    if first && std::mem::take(&mut watch.cascade) {
                        if std::mem::take(&mut watch.cascade_waits) {
                            link.outcomes |= CASCADE_WAITED;
                        }
                        if let Some(problem) = self.dependent_up(link, member) {
                            return Err(safety(format!(
                                "{now}: {} was stopped with its dependents, but its pod was closed while {problem}",
                                link.machine.machine.member(member).name()
                            )));
                        }
                    }
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
                DeploymentAction::MemberChanged { member, state } => {
                    fnv(&mut self.hash, 0xaa + state as u64);
                    link.outcomes |= match state {
                        MemberState::BackingOff => 16,
                        MemberState::Succeeded => 32,
                        MemberState::CrashLooping => 64,
                        MemberState::Waiting => 128,
                        MemberState::Stopped => STOPPED,
                        _ => 0,
                    };
                    link.check_budget(member, state, now)?;
                }
                DeploymentAction::StateChanged { state } => {
                    fnv(&mut self.hash, 0xbb + state as u64);
                    if let Some(failure) = link.machine.machine.failure() {
                        let watch = &link.watch[failure.member.0];
                        if state == DeploymentState::Stopping
                            && (watch.restarting || watch.stopped.is_some())
                        {
                            return Err(safety(format!(
                                "{now}: the deployment failed because of {}, which was {} on request: {failure}",
                                failure.name,
                                if watch.restarting { "restarting" } else { "stopped" }
                            )));
                        }
                    }
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

    /// A pod of `template` started: if a stop with dependents is to follow the first
    /// dependent's start and `template` depends on another, that one (its first member) is
    /// stopped with its dependents soon, and maybe started again later.
    fn stop_after_dependent(&mut self, link: &mut DeploymentLink, template: usize) {
        if !link.stop_after_dependent {
            return;
        }
        let machine = &link.machine.machine;
        let spec = machine.spec();
        let Some(member) = spec.templates[template]
            .depends_on
            .first()
            .and_then(|d| spec.position(&d.on))
            .and_then(|t| machine.members_of(t).next())
        else {
            return;
        };
        link.stop_after_dependent = false;
        let member = member.0;
        let at = plus_ms(self.now, self.rng.range(0, 400));
        self.schedule(
            at,
            DEPLOYMENT,
            WorldEvent::Control(Command::Stop {
                member,
                cascade: true,
            }),
        );
        if self.rng.chance(60) {
            let later = plus_ms(at, self.rng.range(0, 3_000));
            self.schedule(
                later,
                DEPLOYMENT,
                WorldEvent::Control(Command::Start { member }),
            );
        }
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
                let watch = &link.watch[other.0];
                if watch.stopped.is_some() || watch.restarting {
                    return Some(format!(
                        "{} started while {name}, on which it depends, was {} on request",
                        me.name(),
                        if watch.restarting {
                            "restarting"
                        } else {
                            "stopped"
                        }
                    ));
                }
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
                        Condition::Healthy => {
                            pod.state() == State::Ready && pod.health() == Some(Health::Healthy)
                        }
                        Condition::Succeeded => false,
                        other => {
                            unreachable!("a condition the simulator does not model: {other:?}")
                        }
                    };
                if !met {
                    return Some(format!(
                        "{} started while {name} was {:?}, health {:?} (condition {})",
                        me.name(),
                        pod.state(),
                        pod.health(),
                        dependency.condition
                    ));
                }
            }
        }
        None
    }

    /// Whether `member` waited on a `healthy` dependency that was ready before it was
    /// healthy.
    fn held_back_by_health(&self, link: &DeploymentLink, member: MemberId) -> bool {
        let machine = &link.machine.machine;
        let spec = machine.spec();
        spec.templates[machine.member(member).template()]
            .depends_on
            .iter()
            .filter(|d| d.condition == Condition::Healthy)
            .filter_map(|d| spec.position(&d.on))
            .flat_map(|t| machine.members_of(t))
            .any(|d| {
                let watch = &link.watch[d.0];
                matches!((watch.ready_at, watch.healthy_at), (Some(r), Some(h)) if h > r)
            })
    }

    /// A member of a template that depends directly on `member`'s whose pod has not
    /// ended, if any.
    fn dependent_up(&self, link: &DeploymentLink, member: MemberId) -> Option<String> {
        let machine = &link.machine.machine;
        let spec = machine.spec();
        let name = &spec.templates[machine.member(member).template()].name;
        for (t, template) in spec.templates.iter().enumerate() {
            if !template.depends_on.iter().any(|d| &d.on == name) {
                continue;
            }
            for d in machine.members_of(t) {
                if let Some(&index) = link.current.get(&d.0) {
                    let state = self.pods[index].machine.state();
                    if state != State::Ended {
                        return Some(format!(
                            "{}, which depends on it, was {state:?}",
                            machine.member(d).name()
                        ));
                    }
                }
            }
        }
        None
    }

    /// How long the supervisor is paused after `t`, at most.
    fn paused_after(&self, t: Time) -> Duration {
        self.pauses
            .iter()
            .filter(|(_, until)| *until > t)
            .map(|(from, until)| until.saturating_duration_since((*from).max(t)))
            .sum()
    }

    /// After healing and quiet: the deployment and every pod ended, within the sum over
    /// the templates of their longest grace period (+ε and twice the deadline tolerance
    /// each) after `down`, or else the heal; and each pod stopped on request within as
    /// long after the stop (plus, for both, any pause of the supervisor in between).
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
        // Per level: its grace (or the longer one `down` asked for), ε, and the close and
        // the kill each within the tolerance.
        let tolerance = self.deadline_tolerance();
        let (close_at, down_grace) = link.down.unwrap_or((heal_at, None));
        let budget: Duration = link
            .template_grace
            .iter()
            .map(|g| (*g).max(down_grace.unwrap_or_default()) + EPSILON + tolerance * 2)
            .sum();
        let within = |t: Time| {
            t.checked_add(budget + EPSILON + self.paused_after(t))
                .unwrap_or(Time::MAX)
        };
        let bound = within(close_at);
        if link.ended_at.is_some_and(|t| t > bound) {
            return Err(liveness(format!(
                "the deployment ended at {:?}, later than {} at {close_at} + Σ grace + ε = {bound}",
                link.ended_at,
                if link.down.is_some() { "down" } else { "heal" }
            )));
        }
        for &(index, at) in &link.stops {
            let ended = self.procs[index].ended_at;
            if ended.is_some_and(|t| t > within(at)) {
                return Err(liveness(format!(
                    "pod{index}, stopped on request at {at}, ended at {ended:?}, later than Σ grace + ε = {} after",
                    within(at)
                )));
            }
        }
        Ok(())
    }
}
