//! The simulated world: a virtual clock, a time-ordered event queue, and a model of the
//! OS and of child processes, driving real `PodMachine`s through their public API with a
//! reference checker attached to each (`CheckedPod`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use podvisor::core::{
    Action, Check, CheckedPod, End, Event, ExitStatus, Generation, GroupSignal, Mutation, PodSpec,
    ProbeSchedule, SpawnError, SpawnErrorKind, StartResult, StartedBy, State, Stream, Time,
};

use crate::rng::Rng;
use crate::swarm::{Fault, Swarm, FAULTS};

/// When every fault is healed: every pod is asked to close.
pub const HEAL_AT: Duration = Duration::from_secs(40);
/// Slack for a close to finish after its grace period (the reap's latency).
pub const EPSILON: Duration = Duration::from_millis(10);
/// Steps after which a run that has not gone quiet is a livelock.
pub const MAX_STEPS: u64 = 200_000;

/// What to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The seed.
    pub seed: u64,
    /// Pods in the world.
    pub pods: usize,
    /// A deliberately wrong core, if any.
    pub mutation: Option<Mutation>,
    /// Settings to use instead of drawing them from the seed.
    pub swarm: Option<Swarm>,
    /// Keep a readable trace.
    pub trace: bool,
    /// Run a deployment world (with a deliberately wrong deployment machine, if `Some`
    /// inside) instead of independent pods.
    pub deployment: Option<Option<podvisor::core::deployment::DeploymentMutation>>,
}

/// How a run failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// An invariant broke during the run.
    Safety,
    /// After healing, something did not end in time, or the world did not go quiet.
    Liveness,
}

/// A failed run.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Which kind.
    pub kind: FailureKind,
    /// What happened.
    pub message: String,
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// The settings the world had.
    pub swarm: Swarm,
    /// `Ok`, or the first violation.
    pub result: Result<(), Failure>,
    /// A hash of every event and action, for determinism checks.
    pub trace_hash: u64,
    /// The readable trace (when asked for).
    pub trace: Vec<String>,
    /// Bit per start result reached by some pod (see [`START_RESULTS`]).
    pub start_results: u32,
    /// Bit per end reached by some pod (see [`ENDS`]).
    pub ends: u32,
    /// Bit per fault some pod got (see [`FAULTS`]).
    pub faults: u32,
    /// Steps taken.
    pub steps: u64,
    /// Deployment worlds: bit per deployment result and member state reached (see
    /// [`crate::deployment::DEPLOYMENT_OUTCOMES`]).
    pub deployment_outcomes: u32,
    /// Whether this was a deployment world.
    pub deployment: bool,
}

/// Start-result names, in coverage-bit order.
pub const START_RESULTS: [&str; 5] = [
    "ready",
    "failed-to-start",
    "exited-early",
    "timed-out",
    "cancelled",
];
/// End names, in coverage-bit order.
pub const ENDS: [&str; 4] = ["never-spawned", "exited", "closed", "killed"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Readiness {
    None,
    Notify,
    Output,
    Probe,
    NotifyAndProbe,
}

/// What one simulated process does.
#[derive(Debug)]
pub(crate) struct Process {
    runtime: bool,
    readiness: Readiness,
    spawn_fail: Option<SpawnErrorKind>,
    setup_crash: bool,
    started_after: Duration,
    ready_after: Option<Duration>,
    exit: Option<(Duration, ExitStatus)>,
    ignores_term: bool,
    term_delay: Duration,
    grandchildren: bool,
    malformed: bool,
    duplicate: bool,
    after_exit: bool,
    extend: Option<(Duration, Duration)>,
    flaps: bool,
    close_at: Option<(Duration, Option<Duration>)>,
    second_close: Option<(Duration, Option<Duration>)>,
    // What happened.
    alive: bool,
    ready_reached: bool,
    grandchildren_alive: bool,
    probe_count: u64,
    timer: Option<Time>,
    ended_at: Option<Time>,
}

#[derive(Clone, Debug)]
pub(crate) enum WorldEvent {
    Start,
    Close(Option<Duration>),
    SpawnAnswer,
    Started,
    Ready,
    Malformed,
    Extend(Duration),
    Exit(ExitStatus),
    LateNotify,
    ProbeAnswer {
        attempt: u64,
        ok: bool,
    },
    Tick,
    Heal,
    /// Deployment worlds: start the deployment.
    DeploymentStart,
    /// Deployment worlds: the deployment's timer.
    DeploymentTick,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One simulated world.
pub(crate) struct World {
    pub(crate) rng: Rng,
    pub(crate) swarm: Swarm,
    pub(crate) now: Time,
    pub(crate) queue: BinaryHeap<Reverse<(Time, u64, usize, u64)>>,
    pub(crate) payloads: Vec<WorldEvent>,
    pub(crate) order: u64,
    pub(crate) pods: Vec<CheckedPod>,
    pub(crate) procs: Vec<Process>,
    pub(crate) hash: u64,
    pub(crate) trace: Option<Vec<String>>,
    pub(crate) faults: u32,
    pub(crate) healed: bool,
    /// The deployment that owns the pods, in deployment worlds.
    pub(crate) deployment: Option<Box<crate::deployment::DeploymentLink>>,
}

pub(crate) fn fnv(hash: &mut u64, value: u64) {
    for byte in value.to_le_bytes() {
        *hash ^= u64::from(byte);
        *hash = hash.wrapping_mul(0x100_0000_01b3);
    }
}

impl World {
    pub(crate) fn schedule(&mut self, at: Time, pod: usize, event: WorldEvent) {
        let order = if self.swarm.has(Fault::SameInstant) {
            self.rng.next_u64()
        } else {
            self.order
        };
        self.order += 1;
        self.payloads.push(event);
        self.queue
            .push(Reverse((at, order, pod, (self.payloads.len() - 1) as u64)));
    }

    fn after(&self, d: Duration) -> Time {
        self.now.checked_add(d).unwrap_or(Time::MAX)
    }

    fn fault(&mut self, fault: Fault) -> bool {
        let hit = self.swarm.roll(fault, &mut self.rng);
        if hit {
            let i = FAULTS.iter().position(|f| *f == fault).unwrap_or(0);
            self.faults |= 1 << i;
        }
        hit
    }

    /// Draws pod `i`'s spec and process.
    /// Draws a pod's spec and process and schedules its start: at a random moment of the
    /// first second, or now when a deployment started it (`managed`; then only the
    /// deployment closes it).
    pub(crate) fn make_pod(
        &mut self,
        mutation: Option<Mutation>,
        managed: bool,
    ) -> Result<usize, Failure> {
        let rng = &mut self.rng;
        let runtime = rng.chance(25);
        let readiness = match rng.below(5) {
            0 => Readiness::None,
            1 => Readiness::Notify,
            2 => Readiness::Output,
            3 => Readiness::Probe,
            _ => Readiness::NotifyAndProbe,
        };
        let timeout = (!rng.chance(10)).then(|| ms(rng.range(500, 8_000)));
        let grace = ms(rng.range(0, 3_000));
        let mut spec = PodSpec::default()
            .timeout_ready(timeout)
            .grace(grace)
            .started_by(if runtime {
                StartedBy::Notify
            } else {
                StartedBy::Exec
            });
        let probe = Check::Probe(ProbeSchedule {
            initial_interval: ms(rng.range(5, 50)),
            max_interval: ms(rng.range(100, 1_000)),
            attempt_timeout: ms(rng.range(20, 500)),
        });
        spec = match readiness {
            Readiness::None => spec,
            Readiness::Notify => spec.check(Check::Notify),
            Readiness::Output => spec.check(Check::Output {
                stream: Stream::Stdout,
                text: "listening".into(),
            }),
            Readiness::Probe => spec.check(probe),
            Readiness::NotifyAndProbe => spec.check(Check::Notify).check(probe),
        };
        let started_after = ms(self.rng.range(0, 300));
        let mut proc = Process {
            runtime,
            readiness,
            spawn_fail: None,
            setup_crash: false,
            started_after,
            ready_after: Some(ms(self.rng.range(0, 500))),
            exit: None,
            ignores_term: false,
            term_delay: ms(self.rng.range(0, 20)),
            grandchildren: false,
            malformed: false,
            duplicate: false,
            after_exit: false,
            extend: None,
            flaps: false,
            close_at: None,
            second_close: None,
            alive: false,
            ready_reached: false,
            grandchildren_alive: false,
            probe_count: 0,
            timer: None,
            ended_at: None,
        };
        if self.fault(Fault::SpawnFailure) {
            proc.spawn_fail = Some(if self.rng.chance(50) {
                SpawnErrorKind::NotFound
            } else {
                SpawnErrorKind::PermissionDenied
            });
        }
        if runtime && self.fault(Fault::CrashInSetup) {
            proc.setup_crash = true;
        }
        if self.fault(Fault::SlowOrNeverReady) {
            proc.ready_after = if self.rng.chance(50) {
                None
            } else {
                Some(ms(self.rng.range(1_000, 12_000)))
            };
        }
        if self.fault(Fault::ExitBeforeReady) {
            let before = proc.ready_after.map_or(5_000, |r| r.as_millis() as u64);
            proc.exit = Some((ms(self.rng.range(0, before)), self.status()));
        } else if self.fault(Fault::ExitAfterReady) {
            let after = proc.ready_after.map_or(0, |r| r.as_millis() as u64);
            proc.exit = Some((ms(after + self.rng.range(1, 10_000)), self.status()));
        }
        proc.ignores_term = self.fault(Fault::IgnoreTerm);
        if self.fault(Fault::SlowExit) {
            // Sometimes within the grace period, sometimes past it.
            proc.term_delay = ms(self.rng.range(0, grace.as_millis() as u64 * 3 / 2 + 1));
        }
        proc.grandchildren = self.fault(Fault::Grandchildren);
        proc.malformed = self.fault(Fault::MalformedNotify);
        proc.duplicate = self.fault(Fault::DuplicateNotify);
        proc.after_exit = self.fault(Fault::NotifyAfterExit);
        if self.fault(Fault::ExtendTimeout) {
            proc.extend = Some((
                ms(self.rng.range(0, 3_000)),
                ms(self.rng.range(100, 10_000)),
            ));
        }
        proc.flaps = self.fault(Fault::ProbeFlaps);
        let close_grace = |rng: &mut Rng| (rng.chance(50)).then(|| ms(rng.range(0, 2_000)));
        if !managed && self.fault(Fault::EarlyClose) {
            // Before the start (0), during the spawn, or while starting; maybe twice.
            let at = ms(*[0, 0, 1, self.rng.range(0, 2_000)]
                .get(self.rng.below(4) as usize)
                .unwrap_or(&0));
            let g = close_grace(&mut self.rng);
            proc.close_at = Some((at, g));
            if self.rng.chance(50) {
                let later = at + ms(self.rng.range(0, 1_000));
                let g2 = close_grace(&mut self.rng);
                proc.second_close = Some((later, g2));
            }
        } else if self.rng.chance(40) {
            let at = ms(self.rng.range(0, 20_000));
            let g = close_grace(&mut self.rng);
            proc.close_at = Some((at, g));
        }
        let pod = CheckedPod::with_mutation(spec, mutation).map_err(|e| Failure {
            kind: FailureKind::Safety,
            message: format!("the simulator drew a spec the core rejects: {e}"),
        })?;
        let i = self.pods.len();
        self.pods.push(pod);
        if managed {
            let now = self.now;
            self.schedule(now, i, WorldEvent::Start);
            self.procs.push(proc);
            return Ok(i);
        }
        // The pod starts at a random moment of the first second.
        let start = ms(self.rng.range(0, 1_000));
        self.schedule(
            Time::ZERO.checked_add(start).unwrap_or(Time::MAX),
            i,
            WorldEvent::Start,
        );
        if let Some((at, g)) = proc.close_at {
            let at = if at.is_zero() { start } else { start + at };
            self.schedule(
                Time::ZERO.checked_add(at).unwrap_or(Time::MAX),
                i,
                WorldEvent::Close(g),
            );
        }
        if let Some((at, g)) = proc.second_close {
            self.schedule(
                Time::ZERO.checked_add(start + at).unwrap_or(Time::MAX),
                i,
                WorldEvent::Close(g),
            );
        }
        self.procs.push(proc);
        Ok(i)
    }

    fn status(&mut self) -> ExitStatus {
        match self.rng.below(4) {
            0 => ExitStatus::Code(0),
            1 => ExitStatus::Code(1),
            2 => ExitStatus::Code(self.rng.range(2, 255) as i32),
            _ => ExitStatus::Signal(11),
        }
    }

    /// The process of pod `i` was spawned at `now`: schedule what it will do.
    fn spawned(&mut self, i: usize) {
        let now = self.now;
        let at = |d: Duration| now.checked_add(d).unwrap_or(Time::MAX);
        let p = &mut self.procs[i];
        let (runtime, setup_crash, started_after, ready_after, exit) = (
            p.runtime,
            p.setup_crash,
            p.started_after,
            p.ready_after,
            p.exit,
        );
        let (malformed, duplicate, after_exit, extend) =
            (p.malformed, p.duplicate, p.after_exit, p.extend);
        if runtime {
            if setup_crash {
                self.schedule(at(started_after), i, WorldEvent::Exit(ExitStatus::Code(3)));
                return;
            }
            self.schedule(at(started_after), i, WorldEvent::Started);
        }
        let base = if runtime {
            started_after
        } else {
            Duration::ZERO
        };
        if let Some(r) = ready_after {
            self.schedule(at(base + r), i, WorldEvent::Ready);
            if duplicate {
                self.schedule(at(base + r), i, WorldEvent::Ready);
            }
        }
        if malformed {
            let d = ms(self.rng.range(0, 1_000));
            self.schedule(at(d), i, WorldEvent::Malformed);
        }
        if let Some((when, by)) = extend {
            self.schedule(at(when), i, WorldEvent::Extend(by));
        }
        if let Some((when, status)) = exit {
            self.schedule(at(base + when), i, WorldEvent::Exit(status));
            if after_exit {
                self.schedule(at(base + when + ms(1)), i, WorldEvent::LateNotify);
            }
        }
    }

    pub(crate) fn note(&mut self, text: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace.push(text());
        }
    }

    /// Delivers one world event to pod `i`.
    fn deliver(&mut self, i: usize, event: WorldEvent) -> Result<(), Failure> {
        let generation: Generation = self.pods[i].machine.generation();
        let ready_line: &[u8] = b"server listening on :8080";
        let core_event: Event<'_> = match &event {
            WorldEvent::Start => Event::Start,
            WorldEvent::Close(grace) => Event::Close { grace: *grace },
            WorldEvent::Heal => Event::Close { grace: None },
            WorldEvent::SpawnAnswer => match self.procs[i].spawn_fail {
                Some(kind) => Event::SpawnFailed {
                    generation,
                    error: SpawnError { kind, errno: None },
                },
                None => {
                    // The process exists before the core hears of it: signals the core
                    // sends in answer (a close that came during the spawn) reach it.
                    self.procs[i].alive = true;
                    self.procs[i].grandchildren_alive = self.procs[i].grandchildren;
                    Event::Spawned { generation }
                }
            },
            WorldEvent::Started => Event::Notify {
                generation,
                datagram: b"X_PODVISOR_STARTED=1",
            },
            WorldEvent::Ready => {
                self.procs[i].ready_reached = true;
                match self.procs[i].readiness {
                    Readiness::Output => Event::OutputLine {
                        generation,
                        stream: Stream::Stdout,
                        line: ready_line,
                    },
                    Readiness::Probe => Event::Tick,
                    // A process with malformed notify lines sends them beside READY=1
                    // too: the valid field must still count.
                    _ if self.procs[i].malformed => Event::Notify {
                        generation,
                        datagram: b"READY=1\nSTATUS=\xff\xfe serving\nno equals sign\nMAINPID=-5",
                    },
                    _ => Event::Notify {
                        generation,
                        datagram: b"READY=1\nSTATUS=serving",
                    },
                }
            }
            WorldEvent::Malformed => Event::Notify {
                generation,
                datagram: b"\xff\xfe garbage\nREADY\nREADY=1\0\n=1\nSTATUS=odd fields",
            },
            WorldEvent::Extend(by) => {
                let text = format!("EXTEND_TIMEOUT_USEC={}", by.as_micros());
                return self.handle(
                    i,
                    Event::Notify {
                        generation,
                        datagram: text.as_bytes(),
                    },
                    &event,
                );
            }
            WorldEvent::Exit(status) => {
                if !self.procs[i].alive {
                    return Ok(());
                }
                self.procs[i].alive = false;
                Event::Exited {
                    generation,
                    status: *status,
                }
            }
            WorldEvent::LateNotify => Event::Notify {
                generation,
                datagram: b"READY=1",
            },
            WorldEvent::ProbeAnswer { attempt, ok } => Event::ProbeFinished {
                generation,
                attempt: *attempt,
                ok: *ok,
            },
            WorldEvent::Tick => Event::Tick,
            WorldEvent::DeploymentStart | WorldEvent::DeploymentTick => Event::Tick,
        };
        self.handle(i, core_event, &event)
    }

    fn handle(&mut self, i: usize, event: Event<'_>, cause: &WorldEvent) -> Result<(), Failure> {
        let now = self.now;
        fnv(&mut self.hash, now.as_nanos());
        fnv(&mut self.hash, i as u64);
        fnv(&mut self.hash, discriminant(cause));
        self.note(|| format!("{now} pod{i} {cause:?} -> {event:?}"));
        let actions = self.pods[i].handle(event, now).map_err(|v| Failure {
            kind: FailureKind::Safety,
            message: format!("pod{i}: {v}"),
        })?;
        for action in actions {
            fnv(&mut self.hash, action_code(&action));
            self.note(|| format!("{:>14}    pod{i} {action:?}", ""));
            self.react(i, action);
        }
        if self.pods[i].machine.state() == State::Ended && self.procs[i].ended_at.is_none() {
            self.procs[i].ended_at = Some(now);
        }
        if self.deployment.is_some() {
            self.observe_for_deployment(i)?;
        }
        let timeout = self.pods[i].machine.poll_timeout();
        if timeout.is_some() && timeout != self.procs[i].timer {
            self.procs[i].timer = timeout;
            if let Some(t) = timeout {
                self.schedule(t, i, WorldEvent::Tick);
            }
        }
        Ok(())
    }

    /// The world's answer to an action.
    fn react(&mut self, i: usize, action: Action) {
        match action {
            Action::Spawn { .. } => {
                let latency = ms(self.rng.range(0, 3));
                let at = self.after(latency);
                self.schedule(at, i, WorldEvent::SpawnAnswer);
            }
            Action::StartProbe { attempt, .. } => {
                let p = &mut self.procs[i];
                p.probe_count += 1;
                let flaps = p.flaps;
                let mut ok = p.ready_reached && p.alive;
                if flaps {
                    // Refuse every third attempt even once up; hang now and then.
                    if p.probe_count % 3 == 0 {
                        ok = false;
                    }
                    if self.rng.chance(15) {
                        return;
                    }
                }
                let latency = ms(self.rng.range(0, 30));
                let at = self.after(latency);
                self.schedule(at, i, WorldEvent::ProbeAnswer { attempt, ok });
            }
            Action::CancelProbe { .. } | Action::StateChanged { .. } => {}
            Action::SignalGroup { signal, .. } => match signal {
                GroupSignal::Stop => {
                    if self.procs[i].alive && !self.procs[i].ignores_term {
                        let at = self.after(self.procs[i].term_delay);
                        self.schedule(at, i, WorldEvent::Exit(ExitStatus::Signal(15)));
                    }
                }
                GroupSignal::Continue => {}
                GroupSignal::Kill => {
                    if self.procs[i].alive {
                        let latency = ms(self.rng.range(0, 2));
                        let at = self.after(latency);
                        self.schedule(at, i, WorldEvent::Exit(ExitStatus::Signal(9)));
                    }
                }
            },
            Action::SweepGroup { .. } => self.procs[i].grandchildren_alive = false,
        }
    }
}

fn discriminant(event: &WorldEvent) -> u64 {
    match event {
        WorldEvent::Start => 1,
        WorldEvent::Close(g) => 2 + g.map_or(0, |g| g.as_nanos() as u64) * 16,
        WorldEvent::SpawnAnswer => 3,
        WorldEvent::Started => 4,
        WorldEvent::Ready => 5,
        WorldEvent::Malformed => 6,
        WorldEvent::Extend(d) => 7 + d.as_nanos() as u64 * 16,
        WorldEvent::Exit(_) => 8,
        WorldEvent::LateNotify => 9,
        WorldEvent::ProbeAnswer { attempt, ok } => 10 + attempt * 32 + u64::from(*ok) * 16,
        WorldEvent::Tick => 11,
        WorldEvent::Heal => 12,
        WorldEvent::DeploymentStart => 13,
        WorldEvent::DeploymentTick => 14,
    }
}

fn action_code(action: &Action) -> u64 {
    match action {
        Action::Spawn { .. } => 101,
        Action::StartProbe { attempt, .. } => 102 + attempt * 1000,
        Action::CancelProbe { attempt, .. } => 103 + attempt * 1000,
        Action::SignalGroup { signal, .. } => 104 + *signal as u64 * 1000,
        Action::SweepGroup { .. } => 105,
        Action::StateChanged { state } => 106 + *state as u64 * 1000,
    }
}

fn start_bit(result: &StartResult) -> u32 {
    1 << START_RESULTS
        .iter()
        .position(|n| *n == result.name())
        .unwrap_or(0)
}

fn end_bit(end: End) -> u32 {
    1 << ENDS.iter().position(|n| *n == end.name()).unwrap_or(0)
}

/// Runs one seed.
pub fn run(config: &RunConfig) -> RunReport {
    let mut rng = Rng::new(config.seed);
    let swarm = config.swarm.unwrap_or_else(|| Swarm::draw(&mut rng));
    let mut world = World {
        rng,
        swarm,
        now: Time::ZERO,
        queue: BinaryHeap::new(),
        payloads: Vec::new(),
        order: 0,
        pods: Vec::with_capacity(config.pods),
        procs: Vec::with_capacity(config.pods),
        hash: 0xcbf2_9ce4_8422_2325,
        trace: config.trace.then(Vec::new),
        faults: 0,
        healed: false,
        deployment: None,
    };
    if swarm.has(Fault::SameInstant) {
        let i = FAULTS
            .iter()
            .position(|f| *f == Fault::SameInstant)
            .unwrap_or(0);
        world.faults |= 1 << i;
    }
    let mut steps = 0;
    let result = (|| {
        match &config.deployment {
            None => {
                for _ in 0..config.pods.max(1) {
                    world.make_pod(config.mutation, false)?;
                }
            }
            Some(mutation) => world.make_deployment(*mutation)?,
        }
        let heal_at = Time::ZERO.checked_add(HEAL_AT).unwrap_or(Time::MAX);
        loop {
            let next = world.queue.peek().map(|Reverse((t, ..))| *t);
            if !world.healed && next.is_none_or(|t| t >= heal_at) {
                world.healed = true;
                world.now = world.now.max(heal_at);
                if world.deployment.is_some() {
                    world.schedule(heal_at, crate::deployment::DEPLOYMENT, WorldEvent::Heal);
                } else {
                    for i in 0..world.pods.len() {
                        world.schedule(heal_at, i, WorldEvent::Heal);
                    }
                }
                continue;
            }
            let Some(Reverse((at, _, pod, payload))) = world.queue.pop() else {
                break;
            };
            steps += 1;
            if steps > MAX_STEPS {
                return Err(Failure {
                    kind: FailureKind::Liveness,
                    message: format!(
                        "the world did not go quiet after {MAX_STEPS} steps (livelock)"
                    ),
                });
            }
            world.now = world.now.max(at);
            let event = world.payloads[payload as usize].clone();
            if pod == crate::deployment::DEPLOYMENT {
                world.deliver_to_deployment(event)?;
                continue;
            }
            let spawn_answer = matches!(event, WorldEvent::SpawnAnswer);
            world.deliver(pod, event)?;
            if spawn_answer && world.procs[pod].spawn_fail.is_none() {
                world.spawned(pod);
            }
        }
        if world.deployment.is_some() {
            return world.deployment_liveness(heal_at);
        }
        // Liveness after healing: every pod ended, within its grace (+ε) of the heal.
        for (i, pod) in world.pods.iter().enumerate() {
            let proc = &world.procs[i];
            if pod.machine.state() != State::Ended {
                return Err(Failure {
                    kind: FailureKind::Liveness,
                    message: format!(
                        "pod{i} is {:?} after healing and the world went quiet; it never ended",
                        pod.machine.state()
                    ),
                });
            }
            let bound = heal_at
                .checked_add(pod.machine.spec().grace + EPSILON)
                .unwrap_or(Time::MAX);
            if proc.ended_at.is_some_and(|t| t > bound) {
                return Err(Failure {
                    kind: FailureKind::Liveness,
                    message: format!(
                        "pod{i} ended at {:?}, later than heal + grace + ε = {bound}",
                        proc.ended_at
                    ),
                });
            }
            if proc.grandchildren_alive {
                return Err(Failure {
                    kind: FailureKind::Liveness,
                    message: format!("pod{i}'s grandchildren were never swept"),
                });
            }
        }
        Ok(())
    })();
    let mut start_results = 0;
    let mut ends = 0;
    for pod in &world.pods {
        if let Some(result) = pod.machine.start_result() {
            start_results |= start_bit(result);
        }
        if let Some(end) = pod.machine.end() {
            ends |= end_bit(end);
        }
    }
    RunReport {
        seed: config.seed,
        swarm,
        result,
        trace_hash: world.hash,
        trace: world.trace.unwrap_or_default(),
        start_results,
        ends,
        faults: world.faults,
        steps,
        deployment_outcomes: world.deployment.as_ref().map_or(0, |d| d.outcomes()),
        deployment: config.deployment.is_some(),
    }
}
