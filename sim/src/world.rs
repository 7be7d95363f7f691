//! The simulated world: a virtual clock, a time-ordered event queue, and a model of the
//! OS and of child processes, driving real `PodMachine`s through their public API with a
//! reference checker attached to each (`CheckedPod`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use podvisor::core::{
    Action, Check, CheckedPod, End, Event, ExitStatus, Generation, GroupSignal, Health,
    HealthCheck, Mutation, PodSpec, ProbeSchedule, SpawnError, SpawnErrorKind, StartResult,
    StartedBy, State, Stream, Time, Unhealthy,
};

use crate::driver::{DriverMutation, Inbox, INPUT_COST};
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
    /// A deliberately wrong driver model, if any.
    pub driver_mutation: Option<DriverMutation>,
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
    /// Bit per driver situation reached (see [`crate::driver::DRIVER_SITUATIONS`]).
    pub situations: u32,
    /// Steps taken.
    pub steps: u64,
    /// Deployment worlds: bit per deployment result and member state reached (see
    /// [`crate::deployment::DEPLOYMENT_OUTCOMES`]).
    pub deployment_outcomes: u32,
    /// Whether this was a deployment world.
    pub deployment: bool,
    /// Bit per health outcome some pod reached (see [`HEALTH_OUTCOMES`]).
    pub health: u32,
    /// Bit `s × ENDS.len() + e` per start result `s` and end `e` some pod reached both of
    /// (see [`START_RESULTS`], [`ENDS`]).
    pub pairs: u32,
    /// Per fault (see [`FAULTS`]): bit `s` per start result and bit `START_RESULTS.len() +
    /// e` per end reached by some pod that had the fault.
    pub fault_outcomes: [u16; FAULTS.len()],
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
pub const ENDS: [&str; 5] = ["never-spawned", "exited", "closed", "killed", "unhealthy"];
/// Health outcomes, in coverage-bit order: a pod became healthy; it turned unhealthy by
/// a check's failures; by the watchdog (its expiry or `WATCHDOG=trigger`).
pub const HEALTH_OUTCOMES: [&str; 3] = ["healthy", "unhealthy-check", "unhealthy-watchdog"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Readiness {
    None,
    Notify,
    Output,
    Probe,
    NotifyAndProbe,
}

/// How one health check of a process answers, from the instant the pod is ready.
#[derive(Clone, Copy, Debug, Default)]
struct CheckScript {
    /// Attempts fail until this long after ready (a slow warm-up).
    warmup: Duration,
    /// Percent of attempts that fail (flapping).
    flaky: u8,
    /// Attempts started in this span after ready hang (never answered).
    hang: Option<(Duration, Duration)>,
    /// Percent of attempts answered only at or after their timeout.
    late: u8,
    /// The check goes bad for good when the process turns sick.
    sick: bool,
    /// Once bad for good, its attempts hang rather than fail.
    sick_hangs: bool,
}

/// The process's watchdog pinger.
#[derive(Clone, Copy, Debug)]
struct Pinger {
    /// The interval the process believes in (its `WATCHDOG_USEC`).
    interval: Duration,
    /// Pings come late now and then, or stop.
    lapses: bool,
    /// Other watchdog datagrams now and then.
    notify: bool,
    /// The pinger stopped for good.
    silent: bool,
}

/// What a monitored process does once its health life (drawn, from ready) is over.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// Its sick checks fail or hang for good and its pinger stops.
    Sick,
    /// It is closed (by whoever started it).
    Close,
    /// It exits by itself.
    Exit(ExitStatus),
    /// It sends `STOPPING=1`, goes on pinging, and exits a little later.
    Stopping,
}

/// A watchdog datagram of the process's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ping {
    /// `WATCHDOG=1`.
    Alive,
    /// `WATCHDOG=2`, which is malformed.
    Malformed,
    /// `WATCHDOG=trigger`.
    Trigger,
    /// `STOPPING=1`.
    Stopping,
    /// `WATCHDOG_USEC=…`.
    Interval(Duration),
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
    /// Events of another generation arrive too.
    stale: bool,
    duplicate: bool,
    after_exit: bool,
    extend: Option<(Duration, Duration)>,
    flaps: bool,
    close_at: Option<(Duration, Option<Duration>)>,
    second_close: Option<(Duration, Option<Duration>)>,
    /// Floods of output: when, and how many lines.
    floods: Vec<(Time, u64)>,
    // What happened.
    alive: bool,
    ready_reached: bool,
    grandchildren_alive: bool,
    probe_count: u64,
    timer: Option<Time>,
    pub(crate) ended_at: Option<Time>,
    /// Health: per health check, how it answers.
    checks: Vec<CheckScript>,
    pinger: Option<Pinger>,
    /// How long after ready health stays as drawn, and what ends it.
    health_life: Duration,
    ending: Ending,
    /// When the pod became ready with health watched (its first health change).
    health_since: Option<Time>,
    /// The sick checks fail or hang for good; the pinger stopped.
    sick: bool,
    /// The faults drawn for this pod (bit per fault, see [`FAULTS`]).
    faults: u32,
}

#[derive(Clone, Debug)]
pub(crate) enum WorldEvent {
    Start,
    Close(Option<Duration>),
    SpawnAnswer,
    Started,
    Ready,
    Malformed,
    /// An event of another generation: 0 a spawn answer, 1 a ready datagram, 2 a health
    /// check's change.
    Stale(u64),
    /// What a health check looks at changed (a `file:` check's file, seen by inotify):
    /// the check's index, sometimes past the spec's checks.
    HealthChanged(usize),
    Extend(Duration),
    Exit(ExitStatus),
    LateNotify,
    ProbeAnswer {
        attempt: u64,
        ok: bool,
    },
    Tick,
    Heal,
    /// The process writes this many lines of output at once.
    Flood(u64),
    /// Lines of output in a pipe (input only).
    Lines(u64),
    /// The readiness line in a pipe (input only).
    ReadyLine,
    /// A driver comes back: it yielded with input left, or the supervisor resumes.
    Wake,
    /// Deployment worlds: start the deployment.
    DeploymentStart,
    /// Deployment worlds: the deployment's timer.
    DeploymentTick,
    /// The process's watchdog pinger wakes up.
    Pinger,
    /// A watchdog datagram (input only).
    Watchdog(Ping),
    /// The process's health life is over (see [`Ending`]).
    HealthEnd,
    /// Deployment worlds: a control command (stop, start, restart, down).
    Control(crate::deployment::Command),
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn plus(t: Time, d: Duration) -> Time {
    t.checked_add(d).unwrap_or(Time::MAX)
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
    /// Per pod, the input its driver has not taken in yet.
    pub(crate) inboxes: Vec<Inbox>,
    /// When the supervisor is paused: `[from, until)`.
    pub(crate) pauses: Vec<(Time, Time)>,
    pub(crate) driver_mutation: Option<DriverMutation>,
    pub(crate) situations: u32,
    /// The deployment that owns the pods, in deployment worlds.
    pub(crate) deployment: Option<Box<crate::deployment::DeploymentLink>>,
    /// Bit per health outcome reached (see [`HEALTH_OUTCOMES`]).
    pub(crate) health: u32,
    /// The faults the pod being drawn got (bit per fault, see [`FAULTS`]).
    pub(crate) pod_faults: u32,
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

    pub(crate) fn fault(&mut self, fault: Fault) -> bool {
        let hit = self.swarm.roll(fault, &mut self.rng);
        if hit {
            self.faults |= 1 << fault as u32;
            self.pod_faults |= 1 << fault as u32;
        }
        hit
    }

    /// Draws a pod's spec and process and schedules its start: at a random moment of the
    /// first second, or now when a deployment started it (`managed`; then only the
    /// deployment closes it). With `health_checked` the pod always gets health checks.
    pub(crate) fn make_pod(
        &mut self,
        mutation: Option<Mutation>,
        managed: bool,
        health_checked: bool,
    ) -> Result<usize, Failure> {
        self.pod_faults = 0;
        let swarm = self.swarm;
        let rng = &mut self.rng;
        let runtime = rng.chance(25);
        let readiness = match rng.below(5) {
            0 => Readiness::None,
            1 => Readiness::Notify,
            2 => Readiness::Output,
            3 => Readiness::Probe,
            _ => Readiness::NotifyAndProbe,
        };
        let tight = swarm.tight > 0 && rng.chance(swarm.tight);
        let timeout = (!rng.chance(10)).then(|| {
            ms(if tight {
                rng.range(350, 600)
            } else {
                rng.range(500, 8_000)
            })
        });
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
        let rng = &mut self.rng;
        if rng.chance(swarm.health) || health_checked {
            for _ in 0..rng.range(1, 2) {
                spec = spec.health(HealthCheck {
                    interval: ms(rng.range(20, 400)),
                    timeout: ms(rng.range(1, 150)),
                    retries: rng.range(1, 4) as u32,
                    successes: rng.range(1, 2) as u32,
                    start_period: if rng.chance(40) {
                        ms(rng.range(10, 600))
                    } else {
                        Duration::ZERO
                    },
                });
            }
        }
        if rng.chance(swarm.watchdog) {
            spec = spec.watchdog(Some(ms(rng.range(30, 800))));
        }
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
            stale: false,
            duplicate: false,
            after_exit: false,
            extend: None,
            flaps: false,
            close_at: None,
            second_close: None,
            floods: Vec::new(),
            alive: false,
            ready_reached: false,
            grandchildren_alive: false,
            probe_count: 0,
            timer: None,
            ended_at: None,
            checks: Vec::new(),
            pinger: None,
            health_life: Duration::ZERO,
            ending: Ending::Sick,
            health_since: None,
            sick: false,
            faults: 0,
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
        proc.stale = self.fault(Fault::StaleGeneration);
        proc.duplicate = self.fault(Fault::DuplicateNotify);
        proc.after_exit = self.fault(Fault::NotifyAfterExit);
        if self.fault(Fault::ExtendTimeout) {
            proc.extend = Some((
                ms(self.rng.range(0, 3_000)),
                ms(self.rng.range(100, 10_000)),
            ));
        }
        proc.flaps = self.fault(Fault::ProbeFlaps);
        self.draw_health(&mut proc, &spec, managed);
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
        self.inboxes.push(Inbox::default());
        // The pod starts now when a deployment started it, else at a random moment of the
        // first second.
        let start = if managed {
            self.now
        } else {
            plus(Time::ZERO, ms(self.rng.range(0, 1_000)))
        };
        self.draw_floods(&mut proc, start, timeout, grace, managed);
        self.draw_pause(&mut proc, start, timeout, grace);
        proc.faults = self.pod_faults;
        self.schedule(start, i, WorldEvent::Start);
        if managed {
            self.procs.push(proc);
            return Ok(i);
        }
        if let Some((at, g)) = proc.close_at {
            self.schedule(plus(start, at), i, WorldEvent::Close(g));
        }
        if let Some((at, g)) = proc.second_close {
            self.schedule(plus(start, at), i, WorldEvent::Close(g));
        }
        self.procs.push(proc);
        Ok(i)
    }

    /// How a monitored process's health checks answer and its watchdog pinger behaves,
    /// and what ends its health life: every monitored pod that stays ready ends a few
    /// intervals after ready (unhealthy, closed, or exiting), which keeps runs short.
    fn draw_health(&mut self, proc: &mut Process, spec: &PodSpec, managed: bool) {
        if spec.health.is_empty() && spec.watchdog.is_none() {
            return;
        }
        let degrades = self.fault(Fault::HealthDegrades);
        let chosen = self.rng.below(spec.health.len().max(1) as u64) as usize;
        for (c, check) in spec.health.iter().enumerate() {
            let mut script = CheckScript::default();
            if self.rng.chance(50) {
                let around = check.start_period.as_millis() as u64 * 2 + 100;
                script.warmup = ms(self.rng.range(0, around));
            }
            if self.fault(Fault::HealthFlaps) {
                script.flaky = self.rng.range(15, 70) as u8;
            }
            if self.fault(Fault::HealthHangs) {
                let from = self.rng.range(0, 1_500);
                script.hang = Some((ms(from), ms(from + self.rng.range(1, 1_000))));
                script.late = self.rng.range(0, 30) as u8;
            }
            script.sick = degrades && (c == chosen || self.rng.chance(50));
            script.sick_hangs = self.rng.chance(30);
            proc.checks.push(script);
        }
        if let Some(interval) = spec.watchdog {
            proc.pinger = Some(Pinger {
                interval,
                lapses: self.fault(Fault::WatchdogLapses),
                notify: self.fault(Fault::WatchdogNotify),
                silent: false,
            });
        }
        // A few attempts' or pings' worth: what matters happens in the first ones.
        let beat = spec
            .health
            .iter()
            .map(|c| c.interval)
            .chain(spec.watchdog)
            .min()
            .unwrap_or_default();
        proc.health_life = beat * self.rng.range(1, 8) as u32;
        proc.ending = match self.rng.below(3) {
            _ if degrades => Ending::Sick,
            0 if !managed => Ending::Close,
            1 if proc.pinger.is_some() => Ending::Stopping,
            _ => Ending::Exit(self.status()),
        };
    }

    /// Flood-output fault: one to three floods of thousands of lines, each aimed so that
    /// reading it spans an instant that matters while it still matters — the ready
    /// deadline, the probes before ready, the readiness line (which then sits inside the
    /// flood), SIGKILL after a close the process ignores — or at random.
    fn draw_floods(
        &mut self,
        proc: &mut Process,
        start: Time,
        timeout: Option<Duration>,
        grace: Duration,
        managed: bool,
    ) {
        if !self.fault(Fault::FloodOutput) {
            return;
        }
        let base = if proc.runtime {
            proc.started_after
        } else {
            Duration::ZERO
        };
        let ready = proc.ready_after.map(|r| plus(start, base + r));
        let deadline = timeout.map(|t| plus(start, t));
        let outlives_grace = proc.ignores_term || proc.term_delay > grace;
        let mut aims = Vec::with_capacity(4);
        let judged = deadline.filter(|d| ready.is_none_or(|r| r >= *d));
        if let Some(deadline) = judged {
            aims.push(deadline);
        }
        if let Some(ready) = ready {
            if proc.readiness == Readiness::Output {
                aims.push(ready);
            }
            if matches!(proc.readiness, Readiness::Probe | Readiness::NotifyAndProbe) {
                let probing = ready.saturating_duration_since(start);
                aims.push(plus(
                    start,
                    ms(self.rng.range(0, probing.as_millis() as u64)),
                ));
            }
        }
        if outlives_grace && !managed {
            aims.push(plus(Time::ZERO, HEAL_AT + grace));
        }
        if let Some((at, g)) = proc.close_at.filter(|_| outlives_grace) {
            aims.push(plus(start, at + g.unwrap_or(grace)));
        }
        for n in 0..self.rng.range(1, 3) {
            let lines = self.rng.range(1_500, 12_000);
            // The first flood spans the ready deadline when it will be judged.
            let pick = self.rng.below(aims.len() as u64 + 1) as usize;
            let pick = if n == 0 && judged.is_some() { 0 } else { pick };
            let aim = match aims.get(pick) {
                Some(aim) => *aim,
                None => plus(start, ms(self.rng.range(0, 5_000))),
            };
            // Reading the flood takes `lines` × INPUT_COST: start it up to that long before.
            let span = INPUT_COST.as_nanos() as u64 * lines;
            let lead = Duration::from_nanos(self.rng.range(0, span));
            let at = aim.checked_sub(lead).unwrap_or(Time::ZERO).max(start);
            proc.floods.push((at, lines));
        }
    }

    /// Supervisor-paused fault: a pause across an instant that matters — the ready
    /// deadline, SIGKILL after an early close — or at random; often with the input that
    /// decides the start (the readiness signal, or the exit) arriving during the pause,
    /// just before the deadline.
    fn draw_pause(
        &mut self,
        proc: &mut Process,
        start: Time,
        timeout: Option<Duration>,
        grace: Duration,
    ) {
        if !self.swarm.roll(Fault::SupervisorPaused, &mut self.rng) {
            return;
        }
        let deadline = timeout.map(|t| plus(start, t));
        let kill = proc
            .close_at
            .map(|(at, g)| plus(start, at + g.unwrap_or(grace)));
        let aim = match self.rng.below(3) {
            0 => deadline,
            1 => kill.or(deadline),
            _ => None,
        };
        let aim = aim.unwrap_or_else(|| plus(start, ms(self.rng.range(0, 3_000))));
        let from = aim
            .checked_sub(ms(self.rng.range(1, 1_500)))
            .unwrap_or(Time::ZERO);
        let until = plus(aim, ms(self.rng.range(1, 2_000)));
        // Healing finds the supervisor awake, so liveness keeps its bound.
        let latest = plus(Time::ZERO, HEAL_AT - Duration::from_secs(1));
        if from <= self.now || until >= latest {
            return;
        }
        self.pauses.push((from, until));
        self.mark_fault(Fault::SupervisorPaused);
        self.note(|| format!("{from} the supervisor will be paused until {until}"));
        let (Some(deadline), true) = (deadline, Some(aim) == deadline) else {
            return;
        };
        // The spawn answers within 3 ms of the start: aim 4 ms inside the window.
        let base = if proc.runtime {
            proc.started_after
        } else {
            Duration::ZERO
        };
        let (Some(lo), Some(hi)) = (
            from.checked_add(ms(4)).map(|t| t.max(plus(start, base))),
            deadline.checked_sub(ms(4)),
        ) else {
            return;
        };
        if lo >= hi {
            return;
        }
        let arrival = plus(
            lo,
            Duration::from_nanos(self.rng.below(hi.as_nanos() - lo.as_nanos())),
        );
        let after = arrival.saturating_duration_since(plus(start, base));
        match self.rng.below(4) {
            0 | 1 => proc.ready_after = Some(after),
            2 => {
                // Before it is ready: the exit decides the start.
                proc.exit = Some((after, self.status()));
                proc.ready_after = proc.ready_after.filter(|r| *r > after);
            }
            _ => {}
        }
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
    fn spawned(&mut self, i: usize, now: Time) {
        let at = |d: Duration| now.checked_add(d).unwrap_or(Time::MAX);
        for (when, lines) in std::mem::take(&mut self.procs[i].floods) {
            self.schedule(when.max(now), i, WorldEvent::Flood(lines));
        }
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
        if self.procs[i].stale {
            for kind in 0..3 {
                let d = ms(self.rng.range(0, 1_000));
                self.schedule(at(d), i, WorldEvent::Stale(kind));
            }
        }
        if let Some((when, by)) = extend {
            self.schedule(at(when), i, WorldEvent::Extend(by));
        }
        if let Some(pinger) = self.procs[i].pinger {
            // Pinging begins up to one interval before the process is ready.
            let ready = match self.procs[i].readiness {
                Readiness::None => Some(base),
                _ => ready_after.map(|r| base + r),
            };
            if let Some(ready) = ready {
                let lead = ms(self.rng.range(0, pinger.interval.as_millis() as u64));
                self.schedule(at(ready.saturating_sub(lead)), i, WorldEvent::Pinger);
            }
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

    /// An event for pod `i` happens at `at`: the process model moves on (it exists, is
    /// ready, writes, exits), and whatever the supervisor learns from it is buffered for
    /// its driver, which is then woken.
    pub(crate) fn arrive(&mut self, i: usize, at: Time, event: WorldEvent) -> Result<(), Failure> {
        let inbox = &mut self.inboxes[i];
        match event {
            WorldEvent::Wake => inbox.wake_at = None,
            WorldEvent::Tick => {}
            WorldEvent::Start | WorldEvent::Close(_) | WorldEvent::Heal => {
                inbox.requests.push_back(event)
            }
            WorldEvent::SpawnAnswer => {
                if self.procs[i].spawn_fail.is_none() {
                    // The process exists before the core hears of it: signals the core
                    // sends in answer (a close that came during the spawn) reach it.
                    self.procs[i].alive = true;
                    self.procs[i].grandchildren_alive = self.procs[i].grandchildren;
                    self.spawned(i, at);
                }
                self.inboxes[i].push(at, event);
            }
            WorldEvent::Ready => {
                self.procs[i].ready_reached = true;
                match self.procs[i].readiness {
                    // A probe finds out by itself.
                    Readiness::Probe => return Ok(()),
                    Readiness::Output => {
                        if inbox.write(at, WorldEvent::ReadyLine) {
                            self.note(|| {
                                format!("{at} pod{i} readiness line held back by a full pipe")
                            });
                        }
                    }
                    _ => inbox.push(at, event),
                }
            }
            WorldEvent::Pinger => return self.ping(i, at),
            WorldEvent::HealthEnd => return self.health_end(i, at),
            WorldEvent::Flood(lines) => {
                if !self.procs[i].alive {
                    return Ok(());
                }
                self.note(|| format!("{at} pod{i} writes {lines} lines"));
                if self.inboxes[i].write(at, WorldEvent::Lines(lines)) {
                    self.situation(0);
                }
            }
            WorldEvent::Exit(_) => {
                if !self.procs[i].alive {
                    return Ok(());
                }
                self.procs[i].alive = false;
                inbox.writer_gone();
                inbox.push(at, event);
            }
            _ => inbox.push(at, event),
        }
        self.poke(i)
    }

    /// Feeds what `event` tells the supervisor to pod `i`'s machine at `at`.
    pub(crate) fn feed(&mut self, i: usize, event: &WorldEvent, at: Time) -> Result<(), Failure> {
        let generation: Generation = self.pods[i].machine.generation();
        let ready_line: &[u8] = b"server listening on :8080";
        let core_event: Event<'_> = match event {
            WorldEvent::Start => Event::Start,
            WorldEvent::Close(grace) => Event::Close { grace: *grace },
            WorldEvent::Heal => Event::Close { grace: None },
            WorldEvent::SpawnAnswer => match self.procs[i].spawn_fail {
                Some(kind) => Event::SpawnFailed {
                    generation,
                    error: SpawnError { kind, errno: None },
                },
                None => Event::Spawned { generation },
            },
            WorldEvent::Started => Event::Notify {
                generation,
                datagram: b"X_PODVISOR_STARTED=1",
            },
            // A process with malformed notify lines sends them beside READY=1 too: the
            // valid field must still count.
            WorldEvent::Ready if self.procs[i].malformed => Event::Notify {
                generation,
                datagram: b"READY=1\nSTATUS=\xff\xfe serving\nno equals sign\nMAINPID=-5",
            },
            WorldEvent::Ready => Event::Notify {
                generation,
                datagram: b"READY=1\nSTATUS=serving",
            },
            WorldEvent::ReadyLine => Event::OutputLine {
                generation,
                stream: Stream::Stdout,
                line: ready_line,
            },
            // A run of lines that do not match stands for all of them.
            WorldEvent::Lines(_) => Event::OutputLine {
                generation,
                stream: Stream::Stdout,
                line: b"GET /health 200 0.3ms",
            },
            WorldEvent::Stale(0) => Event::Spawned {
                generation: Generation(generation.0 + 1),
            },
            WorldEvent::Stale(2) => Event::HealthCheckChanged {
                generation: Generation(generation.0 + 1),
                check: 0,
            },
            WorldEvent::HealthChanged(check) => Event::HealthCheckChanged {
                generation,
                check: *check,
            },
            WorldEvent::Stale(_) => Event::Notify {
                generation: Generation(generation.0 + 1),
                datagram: b"READY=1\nX_PODVISOR_STARTED=1",
            },
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
                    event,
                    at,
                );
            }
            WorldEvent::Exit(status) => Event::Exited {
                generation,
                status: *status,
            },
            WorldEvent::LateNotify => Event::Notify {
                generation,
                datagram: b"READY=1",
            },
            WorldEvent::Watchdog(ping) => {
                let datagram: &[u8] = match ping {
                    Ping::Alive => b"WATCHDOG=1",
                    Ping::Malformed => b"WATCHDOG=2",
                    Ping::Trigger => b"WATCHDOG=trigger",
                    Ping::Stopping => b"STOPPING=1",
                    Ping::Interval(usec) => {
                        let text = format!("WATCHDOG_USEC={}", usec.as_micros());
                        return self.handle(
                            i,
                            Event::Notify {
                                generation,
                                datagram: text.as_bytes(),
                            },
                            event,
                            at,
                        );
                    }
                };
                Event::Notify {
                    generation,
                    datagram,
                }
            }
            WorldEvent::ProbeAnswer { attempt, ok } => Event::ProbeFinished {
                generation,
                attempt: *attempt,
                ok: *ok,
            },
            WorldEvent::Tick
            | WorldEvent::Wake
            | WorldEvent::Flood(_)
            | WorldEvent::DeploymentStart
            | WorldEvent::DeploymentTick
            | WorldEvent::Pinger
            | WorldEvent::HealthEnd
            | WorldEvent::Control(_) => Event::Tick,
        };
        self.handle(i, core_event, event, at)
    }

    fn handle(
        &mut self,
        i: usize,
        event: Event<'_>,
        cause: &WorldEvent,
        now: Time,
    ) -> Result<(), Failure> {
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
                    if p.probe_count.is_multiple_of(3) {
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
            Action::StartHealthProbe { check, attempt, .. } => {
                self.answer_health(i, check, attempt)
            }
            Action::HealthChanged { health } => self.health_changed(i, health),
            Action::CancelProbe { .. }
            | Action::CancelHealthProbe { .. }
            | Action::StateChanged { .. } => {}
            other @ Action::SignalGroup { .. } | other @ Action::SweepGroup { .. } => {
                self.react_to_group(i, other)
            }
            other => unreachable!("an action the simulator does not model: {other:?}"),
        }
    }

    /// The world's answer to a health attempt: ok or failed after a latency, or never.
    fn answer_health(&mut self, i: usize, check: usize, attempt: u64) {
        let now = self.now;
        let timeout = self.pods[i].machine.spec().health[check].timeout;
        let timeout_ms = timeout.as_millis() as u64;
        let p = &self.procs[i];
        let script = p.checks.get(check).copied().unwrap_or_default();
        let since = now.saturating_duration_since(p.health_since.unwrap_or(now));
        let (alive, sick) = (p.alive, p.sick && script.sick);
        let ok = if !alive {
            // Nothing listens any more: refused at once.
            false
        } else {
            let hangs = if sick {
                script.sick_hangs
            } else {
                script.hang.is_some_and(|(a, b)| a <= since && since < b)
            };
            if hangs {
                return;
            }
            !sick && since >= script.warmup && !self.rng.chance(script.flaky)
        };
        let latency = if alive && self.rng.chance(script.late) {
            ms(self.rng.range(timeout_ms, timeout_ms * 2))
        } else {
            ms(self.rng.range(0, timeout_ms))
        };
        let at = self.after(latency);
        self.schedule(at, i, WorldEvent::ProbeAnswer { attempt, ok });
    }

    /// The pod's health changed: the first change starts the process's health life.
    fn health_changed(&mut self, i: usize, health: Health) {
        self.health |= match health {
            Health::Healthy => 1,
            Health::Unhealthy(Unhealthy::Check { .. }) => 2,
            Health::Unhealthy(Unhealthy::Watchdog { .. } | Unhealthy::WatchdogTrigger) => 4,
            _ => 0,
        };
        if self.procs[i].health_since.is_none() {
            self.procs[i].health_since = Some(self.now);
            let life = self.procs[i].health_life;
            let at = self.after(life);
            self.schedule(at, i, WorldEvent::HealthEnd);
            // Half the health-checked pods watch a file that changes a few times in their
            // health life (and after it): each change asks for an attempt at once.
            let checks = self.pods[i].machine.spec().health.len();
            if checks > 0 && self.rng.chance(50) {
                let life_ms = life.as_millis() as u64;
                for _ in 0..self.rng.range(1, 3) {
                    let check = self.rng.below(checks as u64 + 1) as usize;
                    let delay = ms(self.rng.range(0, life_ms + life_ms / 2 + 1));
                    let when = self.after(delay);
                    self.schedule(when, i, WorldEvent::HealthChanged(check));
                }
            }
        }
    }

    /// The pinger of pod `i`'s process wakes at `at`: it sends a watchdog datagram and
    /// plans the next one.
    fn ping(&mut self, i: usize, at: Time) -> Result<(), Failure> {
        let p = &mut self.procs[i];
        let Some(mut pinger) = p.pinger else {
            return Ok(());
        };
        if !p.alive || p.sick || pinger.silent || pinger.interval.is_zero() {
            return Ok(());
        }
        let rng = &mut self.rng;
        let every = pinger.interval.as_millis() as u64;
        let mut ping = Ping::Alive;
        let mut extend = None;
        if pinger.notify && rng.chance(12) {
            ping = Ping::Trigger;
        } else if pinger.notify && rng.chance(25) {
            match rng.below(5) {
                0 => ping = Ping::Malformed,
                1 => {
                    let usec = if rng.chance(10) {
                        Duration::ZERO
                    } else {
                        ms(rng.range(30, 800))
                    };
                    ping = Ping::Interval(usec);
                }
                2 => extend = Some(ms(rng.range(every, every * 4))),
                3 => ping = Ping::Trigger,
                4 if rng.chance(40) => ping = Ping::Stopping,
                _ => {}
            }
        }
        if let Ping::Interval(usec) = ping {
            pinger.interval = usec;
        }
        let every = pinger.interval.as_millis() as u64;
        let mut next = match extend {
            Some(by) => ms(by.as_millis() as u64 * rng.range(50, 120) / 100),
            None => ms(every * rng.range(30, 90) / 100),
        };
        if pinger.lapses && rng.chance(15) {
            // Late: at the deadline instant, or past it.
            next = ms(every + rng.range(0, 1) * rng.range(0, every / 2));
        }
        if pinger.lapses && rng.chance(4) {
            pinger.silent = true;
        }
        p.pinger = Some(pinger);
        let input = match extend {
            Some(by) => WorldEvent::Extend(by),
            None => WorldEvent::Watchdog(ping),
        };
        if self.inboxes[i].notify_full() {
            self.note(|| format!("{at} pod{i} watchdog datagram lost: the notify socket is full"));
        } else {
            self.inboxes[i].push(at, input);
        }
        if !pinger.silent && !pinger.interval.is_zero() {
            self.schedule(plus(at, next.max(ms(1))), i, WorldEvent::Pinger);
        }
        self.poke(i)
    }

    /// The health life of pod `i`'s process is over at `at`.
    fn health_end(&mut self, i: usize, at: Time) -> Result<(), Failure> {
        let p = &mut self.procs[i];
        if !p.alive {
            return Ok(());
        }
        match p.ending {
            Ending::Sick => {
                p.sick = true;
                Ok(())
            }
            Ending::Exit(status) => {
                self.schedule(at, i, WorldEvent::Exit(status));
                Ok(())
            }
            Ending::Close => {
                self.inboxes[i].requests.push_back(WorldEvent::Close(None));
                self.poke(i)
            }
            Ending::Stopping => {
                self.inboxes[i].push(at, WorldEvent::Watchdog(Ping::Stopping));
                let exit = plus(at, ms(self.rng.range(0, 300)));
                self.schedule(exit, i, WorldEvent::Exit(ExitStatus::Code(0)));
                self.poke(i)
            }
        }
    }

    /// The world's answer to a signal or a sweep of the group.
    fn react_to_group(&mut self, i: usize, action: Action) {
        match action {
            Action::SignalGroup { signal, .. } => match signal {
                GroupSignal::Stop | GroupSignal::Watchdog => {
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
                        // A pod that ignored the stop and is given up on at once stands for
                        // a thread-hosted runtime ignoring its cancel: the driver abandons
                        // the thread (no RNG draw of its own, so seeds keep their worlds).
                        let status = if self.procs[i].ignores_term && latency.is_zero() {
                            ExitStatus::Abandoned
                        } else {
                            ExitStatus::Signal(9)
                        };
                        self.schedule(at, i, WorldEvent::Exit(status));
                    }
                }
            },
            Action::SweepGroup { .. } => self.procs[i].grandchildren_alive = false,
            _ => {}
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
        WorldEvent::Stale(kind) => 19 + kind * 32,
        WorldEvent::Extend(d) => 7 + d.as_nanos() as u64 * 16,
        WorldEvent::Exit(_) => 8,
        WorldEvent::LateNotify => 9,
        WorldEvent::ProbeAnswer { attempt, ok } => 10 + attempt * 32 + u64::from(*ok) * 16,
        WorldEvent::Tick => 11,
        WorldEvent::Heal => 12,
        WorldEvent::DeploymentStart => 13,
        WorldEvent::DeploymentTick => 14,
        WorldEvent::Flood(n) => 15 + n * 32,
        WorldEvent::Lines(n) => 16 + n * 32,
        WorldEvent::ReadyLine => 17,
        WorldEvent::Wake => 18,
        WorldEvent::Pinger => 20,
        WorldEvent::HealthEnd => 21,
        WorldEvent::HealthChanged(check) => 24 + 32 * *check as u64,
        WorldEvent::Control(command) => 23 + 32 * command.code(),
        WorldEvent::Watchdog(ping) => {
            22 + 32
                * match ping {
                    Ping::Alive => 0,
                    Ping::Malformed => 1,
                    Ping::Trigger => 2,
                    Ping::Stopping => 3,
                    Ping::Interval(d) => 4 + d.as_micros() as u64 * 8,
                }
        }
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
        Action::StartHealthProbe { attempt, .. } => 107 + attempt * 1000,
        Action::CancelHealthProbe { attempt, .. } => 108 + attempt * 1000,
        Action::HealthChanged { health } => 109 + health.name().len() as u64 * 1000,
        other => unreachable!("an action the simulator does not model: {other:?}"),
    }
}

fn start_index(result: &StartResult) -> usize {
    match result {
        StartResult::Ready { .. } => 0,
        StartResult::FailedToStart(_) => 1,
        StartResult::ExitedEarly { .. } => 2,
        StartResult::TimedOut { .. } => 3,
        StartResult::Cancelled => 4,
        other => unreachable!("a start result the simulator does not model: {other:?}"),
    }
}

fn end_index(end: End) -> usize {
    match end {
        End::NeverSpawned => 0,
        End::Exited(_) => 1,
        End::Closed(_) => 2,
        End::Killed(_) => 3,
        End::Unhealthy { .. } => 4,
        other => unreachable!("an end the simulator does not model: {other:?}"),
    }
}

/// The faults that touch every pod of a world, not only the one drawn with them: the
/// order of same-instant events and a paused supervisor (and, in deployment worlds, a
/// deployment closed early).
const WORLD_WIDE: u32 = fault_bit(Fault::SameInstant) | fault_bit(Fault::SupervisorPaused);

const fn fault_bit(fault: Fault) -> u32 {
    1 << fault as u32
}

/// Runs one seed.
pub fn run(config: &RunConfig) -> RunReport {
    let mut rng = Rng::new(config.seed);
    let swarm = config.swarm.unwrap_or_else(|| match config.deployment {
        Some(_) => Swarm::draw_deployment(&mut rng),
        None => Swarm::draw(&mut rng),
    });
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
        inboxes: Vec::with_capacity(config.pods),
        pauses: Vec::new(),
        driver_mutation: config.driver_mutation,
        situations: 0,
        health: 0,
        pod_faults: 0,
    };
    if swarm.has(Fault::SameInstant) {
        world.mark_fault(Fault::SameInstant);
    }
    let mut steps = 0;
    let result = (|| {
        match &config.deployment {
            None => {
                for _ in 0..config.pods.max(1) {
                    world.make_pod(config.mutation, false, false)?;
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
                if let Some(resume) = world.paused() {
                    world.schedule(resume, pod, event);
                    continue;
                }
                world.deliver_to_deployment(event)?;
                continue;
            }
            world.arrive(pod, at, event)?;
        }
        if world.deployment.is_some() {
            return world.deployment_liveness(heal_at);
        }
        // Liveness after healing: every pod ended, within its grace (+ε) of the heal, and
        // the close and the kill each within the deadline tolerance.
        let tolerance = world.deadline_tolerance();
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
                .checked_add(pod.machine.spec().grace + EPSILON + tolerance * 2)
                .unwrap_or(Time::MAX);
            if proc.ended_at.is_some_and(|t| t > bound) {
                return Err(Failure {
                    kind: FailureKind::Liveness,
                    message: format!(
                        "pod{i} ended at {:?}, later than heal + grace + ε + 2 × tolerance = {bound}",
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
    let mut pairs = 0;
    let mut fault_outcomes = [0u16; FAULTS.len()];
    let world_wide = world.faults
        & if config.deployment.is_some() {
            WORLD_WIDE | fault_bit(Fault::EarlyClose)
        } else {
            WORLD_WIDE
        };
    for (pod, proc) in world.pods.iter().zip(&world.procs) {
        let start = pod.machine.start_result().map(start_index);
        let end = pod.machine.end().map(end_index);
        let mut outcomes = 0u16;
        if let Some(s) = start {
            start_results |= 1 << s;
            outcomes |= 1 << s;
        }
        if let Some(e) = end {
            ends |= 1 << e;
            outcomes |= 1 << (START_RESULTS.len() + e);
        }
        if let (Some(s), Some(e)) = (start, end) {
            pairs |= 1 << (s * ENDS.len() + e);
        }
        let mut faults = proc.faults | world_wide;
        while faults != 0 {
            fault_outcomes[faults.trailing_zeros() as usize] |= outcomes;
            faults &= faults - 1;
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
        situations: world.situations,
        steps,
        deployment_outcomes: world.deployment.as_ref().map_or(0, |d| d.outcomes()),
        deployment: config.deployment.is_some(),
        health: world.health,
        pairs,
        fault_outcomes,
    }
}
