//! The pod driver: a future on podvisor's driver thread that performs what the core asks
//! (spawn, signal, sweep) and feeds back what happens (spawned, notify datagrams, output
//! lines, timer ticks, the exit). It makes no decisions of its own.
//!
//! This file holds the loop (feeding events, performing actions, the timer and the probes);
//! the hosts live apart: [`process`] for a child process (spawn, notify socket, output,
//! signals, exit), [`thread`] for a runtime on a thread. [`shared`] is the mailbox and
//! published state that the pod's handle and this driver share; the handle imports the
//! driver, never the other way round.

mod process;
pub(crate) mod shared;
mod spawn;
mod thread;

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::Timer;

use crate::pod::MISSING_CWD;

use crate::config::Host;
use crate::core::{
    Action, Event, Generation, GroupSignal, SpawnError, SpawnErrorKind, State, Stream, Time,
};
use crate::notify_socket::NotifySocket;
use crate::os;
use crate::probe::Attempt;
use crate::runtime::CancelSlot;
use crate::spawner::Answer;
use crate::{PodConfig, Signal};
use process::{Lines, OutputPipe, StatusFuture, OUTPUT_BUDGET};
use shared::{Request, Shared};
use spawn::{prepare, spawn_process, SpawnAnswer, SpawnPlan};

pub(crate) struct Driver {
    shared: Arc<Shared>,
    config: PodConfig,
    epoch: Instant,
    status: Option<StatusFuture>,
    exit_waker: process::ExitWaker,
    /// Notify budgets taken in a row with datagrams left, the deadlines not judged.
    notify_backlog_rounds: u32,
    notify: Option<NotifySocket>,
    stdout: Option<OutputPipe>,
    stderr: Option<OutputPipe>,
    /// Reused buffer for the lines of one chunk.
    lines: Lines,
    timer: Timer,
    timer_at: Option<Instant>,
    pgid: Option<u32>,
    /// The process group the keeper was told of (to kill should podvisor die).
    keeper_group: Option<u32>,
    /// The pod's cgroup, when cgroups can be used here.
    cgroup: Option<crate::cgroup::PodCgroup>,
    /// The runtime of a thread pod, for cancelling it.
    thread: Option<Arc<CancelSlot>>,
    /// Put before forwarded lines.
    prefix: String,
    /// A process being spawned on the spawning thread, for this generation.
    spawning: Option<(Generation, Answer<SpawnAnswer>)>,
    /// Probe attempts in flight: (attempt number, attempt).
    probes: Vec<(u64, Attempt)>,
    /// When this poll began reading the notify socket and the pipes: input buffered by
    /// then has been taken in.
    inputs_read_at: Time,
    /// Each readiness check's probe, parsed once (an HTTP target is not parsed again for
    /// every attempt); `None` for checks the child pushes (notify, output lines).
    compiled: Vec<Option<crate::probe::Probe>>,
    /// Each health check's probe, parsed once.
    health: Vec<Option<crate::probe::Probe>>,
    /// Health attempts in flight: (attempt number, check).
    health_attempts: Vec<(u64, usize)>,
    /// Each health check as written, for its failures.
    health_written: Vec<String>,
    /// Each `file:` health check's watch on its file, armed when an attempt starts and
    /// none is armed, dropped once the pod is no longer ready; a change it sees is
    /// reported to the core ([`Event::HealthCheckChanged`]).
    health_watches: Vec<Option<Pin<Box<dyn Future<Output = ()> + Send>>>>,
}

impl Driver {
    pub(crate) fn new(shared: Arc<Shared>, config: PodConfig, epoch: Instant) -> Driver {
        let compiled = config.readiness.iter().map(|r| r.probe()).collect();
        let health: Vec<_> = config.health.iter().map(|r| r.probe()).collect();
        Driver {
            compiled,
            health_written: config.health.iter().map(|h| h.as_written()).collect(),
            health_watches: config.health.iter().map(|_| None).collect(),
            health,
            health_attempts: Vec::new(),
            thread: None,
            prefix: config.get_prefix(),
            shared,
            config,
            epoch,
            status: None,
            exit_waker: process::ExitWaker::default(),
            notify_backlog_rounds: 0,
            notify: None,
            stdout: None,
            stderr: None,
            lines: Lines::default(),
            timer: Timer::never(),
            timer_at: None,
            pgid: None,
            keeper_group: None,
            cgroup: None,
            spawning: None,
            probes: Vec::new(),
            inputs_read_at: Time::ZERO,
        }
    }

    fn now(&self) -> Time {
        let nanos = self.epoch.elapsed().as_nanos();
        Time::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Feeds `event` and performs the actions it causes, including the events those
    /// actions produce (a spawn's answer).
    fn feed(&mut self, event: Event<'_>) {
        let now = self.now();
        self.feed_at(event, now);
    }

    /// Feeds input taken in from the pod (output, datagrams, probe results, the exit),
    /// dated as the core decides for input found on a late wake-up.
    fn feed_input(&mut self, event: Event<'_>) {
        let now = self.shared.input_instant(self.now());
        self.feed_at(event, now);
    }

    fn feed_at(&mut self, event: Event<'_>, now: Time) {
        let is_notify = matches!(event, Event::Notify { .. });
        let actions = self.shared.handle(event, now);
        self.perform_all(actions);
        if is_notify {
            self.shared.publish_status();
        }
    }

    fn perform_all(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            let more = match action {
                Action::Spawn { generation } => {
                    let answer = self.spawn(generation);
                    let now = self.now();
                    match answer {
                        // A process: the answer comes from the spawning thread.
                        None => Vec::new(),
                        Some(Ok(())) => self.shared.handle(Event::Spawned { generation }, now),
                        Some(Err(error)) => self
                            .shared
                            .handle(Event::SpawnFailed { generation, error }, now),
                    }
                }
                Action::SignalGroup { signal, generation } if self.thread.is_some() => {
                    self.signal_thread(signal, generation)
                }
                Action::SignalGroup { signal, .. } => {
                    let signal = match signal {
                        GroupSignal::Stop => self.config.stop_signal,
                        GroupSignal::Watchdog => self.config.watchdog_signal,
                        GroupSignal::Continue => Signal::CONT,
                        _ => Signal::KILL,
                    };
                    self.signal_group(signal);
                    Vec::new()
                }
                Action::SweepGroup { .. } => {
                    // Record what outlived the leader (orphaned zombies excepted), then kill
                    // it: the group, and the cgroup with whatever left the group.
                    let group = self.pgid.filter(|_| self.config.own_group);
                    let mut left: Vec<u32> = match group.filter(|&g| os::group_exists(g)) {
                        Some(pgid) => os::group_members(pgid),
                        None => Vec::new(),
                    };
                    if let Some(cgroup) = &self.cgroup {
                        left.extend(cgroup.members());
                        left.sort_unstable();
                        left.dedup();
                    }
                    if !left.is_empty() {
                        self.shared.set_leftovers(left.len());
                    }
                    // The leader is reaped by now: only a group outlives it. A pod without
                    // a group of its own (`foreground`) is swept through its cgroup alone;
                    // its pid may already belong to another process.
                    if self.config.own_group {
                        self.signal_group(Signal::KILL);
                    }
                    if let Some(cgroup) = &self.cgroup {
                        cgroup.kill();
                    }
                    if let Some(pgid) = self.keeper_group.take() {
                        crate::keeper::forget_group(pgid);
                    }
                    Vec::new()
                }
                Action::StartProbe { check, attempt, .. } => {
                    if let Some(probe) = self.compiled.get(check).and_then(Option::as_ref) {
                        self.probes.push((attempt, probe.ready_attempt()));
                    }
                    Vec::new()
                }
                Action::CancelProbe { attempt, .. } => {
                    // Dropping an attempt cancels it (a probe command's group is killed).
                    self.probes.retain(|(a, _)| *a != attempt);
                    Vec::new()
                }
                Action::StartHealthProbe { check, attempt, .. } => {
                    if let Some(probe) = self.health.get(check).and_then(Option::as_ref) {
                        self.probes.push((attempt, probe.attempt()));
                        self.health_attempts.push((attempt, check));
                        if let (crate::probe::Probe::File(path), Some(slot @ None)) =
                            (probe, self.health_watches.get_mut(check))
                        {
                            *slot = Some(crate::probe::watch_file(path.clone(), path.exists()));
                        }
                    }
                    Vec::new()
                }
                Action::CancelHealthProbe {
                    check,
                    attempt,
                    timed_out,
                    ..
                } => {
                    self.probes.retain(|(a, _)| *a != attempt);
                    self.health_attempts.retain(|(a, _)| *a != attempt);
                    if !timed_out {
                        continue;
                    }
                    let timeout = self.config.health_schedule.timeout;
                    let message = match &self.config.health[check] {
                        crate::Readiness::Tcp { host, port } => {
                            format!("connecting to {host}:{port}: no answer within {timeout:?}")
                        }
                        crate::Readiness::Http(url) => {
                            format!("GET {url}: no answer within {timeout:?}")
                        }
                        crate::Readiness::Exec(command) => {
                            format!("`{command}` still running after {timeout:?}; killed")
                        }
                        other => format!("{other}: no answer within {timeout:?}"),
                    };
                    // The core counted it when it cancelled it.
                    let written = self.health_written.get(check).map_or("", String::as_str);
                    self.shared
                        .health_attempt_ended(check, written, Err(message));
                    Vec::new()
                }
                Action::HealthChanged { health } => {
                    self.shared.publish_health(health);
                    Vec::new()
                }
                Action::StateChanged { state } => {
                    if matches!(state, State::Stopping | State::Killing | State::Ended) {
                        // Health is watched while ready only.
                        self.health_watches.iter_mut().for_each(|w| *w = None);
                    }
                    if state == State::Ended {
                        // Nothing is read after the end: remove the notify socket and its
                        // directory before anyone can learn of the end (and exit).
                        self.notify = None;
                    }
                    self.shared.publish(state);
                    Vec::new()
                }
            };
            queue.extend(more);
        }
    }

    /// Starts the pod's runtime: a thread pod at once (`Some` answer); a process on the
    /// spawning thread (`None`: [`Driver::poll_spawn`] feeds the answer), unless preparing
    /// it already failed.
    fn spawn(&mut self, generation: Generation) -> Option<Result<(), SpawnError>> {
        let prepared = match &self.config.host {
            Host::Thread(factory) => {
                let factory = factory.clone();
                return Some(self.spawn_thread(factory).map_err(|e| self.spawn_failed(e)));
            }
            Host::Command => self.prepare_command(),
        };
        match prepared {
            Ok(command) => {
                let config = &self.config;
                let plan = SpawnPlan {
                    command,
                    env_clear: config.env_clear,
                    death_signal: config.death_signal,
                    stdin: config.stdin,
                    stdout: config.output(Stream::Stdout),
                    stderr: config.output(Stream::Stderr),
                    // The leader learns its own pid for the watchdog (systemd's
                    // WATCHDOG_PID).
                    own_pid: config.watchdog.is_some(),
                    own_group: config.own_group,
                };
                let answer = Answer::staged(move || prepare(plan), spawn_process);
                self.spawning = Some((generation, answer));
                None
            }
            Err(error) => Some(Err(self.spawn_failed(error))),
        }
    }

    fn spawn_failed(&mut self, error: io::Error) -> SpawnError {
        // No process will use the notify socket: remove it and its directory now.
        self.notify = None;
        let kind = match error.kind() {
            io::ErrorKind::NotFound => SpawnErrorKind::NotFound,
            io::ErrorKind::PermissionDenied => SpawnErrorKind::PermissionDenied,
            _ => SpawnErrorKind::Other,
        };
        let errno = error.raw_os_error();
        // ENOENT names no file: the program and the working directory are the suspects.
        // A directory removed since the configuration was checked is named.
        let message = match &self.config.cwd {
            Some(dir) if kind == SpawnErrorKind::NotFound && !dir.is_dir() => format!(
                "{MISSING_CWD} {:?} does not exist ({error})",
                dir.display().to_string()
            ),
            _ => error.to_string(),
        };
        self.shared.set_spawn_error(message);
        SpawnError { kind, errno }
    }

    fn poll_probes(&mut self, cx: &mut Context<'_>) -> bool {
        let mut finished = Vec::new();
        self.probes
            .retain_mut(|(attempt, future)| match future.as_mut().poll(cx) {
                Poll::Ready(result) => {
                    finished.push((*attempt, result));
                    false
                }
                Poll::Pending => true,
            });
        let generation = self.shared.generation();
        let any = !finished.is_empty();
        // A readiness check that passed: what the pod wrote before it (a server's
        // "listening on …") is read first, so its lines come before `ready`.
        let ready = finished.iter().any(|(attempt, result)| {
            result.is_ok() && !self.health_attempts.iter().any(|&(a, _)| a == *attempt)
        });
        if ready {
            for stream in [Stream::Stdout, Stream::Stderr] {
                let mut budget = OUTPUT_BUDGET;
                self.poll_output(cx, stream, &mut budget, false);
            }
        }
        for (attempt, result) in finished {
            let event = Event::ProbeFinished {
                generation,
                attempt,
                ok: result.is_ok(),
            };
            let health = self.health_attempts.iter().position(|&(a, _)| a == attempt);
            let Some(index) = health else {
                self.feed_input(event);
                continue;
            };
            let (_, check) = self.health_attempts.swap_remove(index);
            // The core counts the result first; it is recorded (and a failure appended to
            // the event stream) before the actions it caused are performed, so a failure
            // comes before the `unhealthy` it leads to.
            let now = self.shared.input_instant(self.now());
            let actions = self.shared.handle(event, now);
            let written = self.health_written.get(check).map_or("", String::as_str);
            self.shared.health_attempt_ended(check, written, result);
            self.perform_all(actions);
        }
        any
    }

    /// Reports what the `file:` health checks' watches saw.
    fn poll_health_watches(&mut self, cx: &mut Context<'_>) -> bool {
        let mut changed = Vec::new();
        for (check, slot) in self.health_watches.iter_mut().enumerate() {
            if let Some(watch) = slot {
                if watch.as_mut().poll(cx).is_ready() {
                    *slot = None;
                    changed.push(check);
                }
            }
        }
        let generation = self.shared.generation();
        for &check in &changed {
            self.feed_input(Event::HealthCheckChanged { generation, check });
        }
        !changed.is_empty()
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = self
            .shared
            .poll_timeout()
            .and_then(|t| self.epoch.checked_add(t.since_epoch()));
        if deadline != self.timer_at {
            self.timer_at = deadline;
            match deadline {
                Some(at) => self.timer.set_at(at),
                None => self.timer = Timer::never(),
            }
        }
        if deadline.is_some() && Pin::new(&mut self.timer).poll(cx).is_ready() {
            // A deadline is judged only on input read after it fell due: if podvisor was
            // stopped or descheduled between this poll's reads and now, what the pod sent
            // meanwhile is read first (the next poll, at once).
            if self
                .shared
                .poll_timeout()
                .is_some_and(|due| due > self.inputs_read_at)
            {
                // The timer fired once; the next poll arms it again (due, so at once).
                self.timer_at = None;
                cx.waker().wake_by_ref();
                return false;
            }
            self.timer_at = None;
            self.feed(Event::Tick);
            return true;
        }
        false
    }
}

/// Notify budgets taken in a row before the deadlines are judged though datagrams are
/// left (16 × 64 datagrams: more than a socket queue holds with systemd's 512).
const NOTIFY_BACKLOG_ROUNDS: u32 = 16;

/// Passes over a driver's sources in one poll before it yields to the other pods.
const PASSES: usize = 8;

impl Future for Driver {
    type Output = ();

    /// One poll takes in a bounded amount of input, then judges the deadlines; if input
    /// is left, the driver wakes itself and yields, so that a pod writing without pause
    /// delays neither its own timers nor any other pod.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.shared.set_driver_waker(cx.waker());
        let mut budget = [OUTPUT_BUDGET, OUTPUT_BUDGET];
        for pass in 0..PASSES {
            let mut more = false;
            // The spawn's answer first (the notify socket needs to know the pod's pid);
            // then input: what was buffered when the driver woke is taken in before the
            // deadlines are judged.
            let spawned = this.poll_spawn(cx);
            let mut progressed = spawned;
            // The socket and pipes are read once per wake-up (and when they just came):
            // a read that finds nothing registers for the next wake-up, so reading them
            // again in later passes would only cost system calls.
            if pass == 0 || spawned {
                // What is buffered now is read below.
                this.inputs_read_at = this.now();
                // Datagrams are taken first and fed after the pipes are read: the lines
                // a pod wrote before a datagram come before it.
                let mut datagrams = Vec::new();
                progressed |= this.receive_notify(cx, &mut more, &mut datagrams);
                progressed |= this.poll_output(cx, Stream::Stdout, &mut budget[0], false);
                progressed |= this.poll_output(cx, Stream::Stderr, &mut budget[1], false);
                this.feed_notify(datagrams);
            }
            progressed |= this.poll_probes(cx);
            progressed |= this.poll_health_watches(cx);
            progressed |= this.poll_thread();
            progressed |= this.poll_exit(cx);
            // Datagrams still queued may be pings that came before a deadline now due:
            // they are taken in first (dated before it, see `input_instant`), before
            // requests (whose events judge the deadlines too) and timers, for up to
            // `NOTIFY_BACKLOG_ROUNDS` budgets in a row — deeper than the kernel's socket
            // queue, yet bounded, so a flood cannot hold a deadline off for ever.
            let backlog = more && this.notify_backlog_rounds < NOTIFY_BACKLOG_ROUNDS;
            if backlog {
                this.notify_backlog_rounds += 1;
            } else {
                this.notify_backlog_rounds = 0;
                for request in this.shared.take_requests() {
                    progressed = true;
                    let event = match request {
                        Request::Start => Event::Start,
                        Request::Close(grace) => Event::Close { grace },
                    };
                    this.feed(event);
                }
            }
            if this.shared.is_ended() {
                // The sweep already went out; release the socket and pipes.
                this.notify = None;
                this.stdout = None;
                this.stderr = None;
                this.probes.clear();
                this.shared.mark_driver_done();
                return Poll::Ready(());
            }
            if !backlog {
                progressed |= this.poll_timer(cx);
            }
            let exhausted = budget.contains(&0);
            if more || exhausted {
                break;
            }
            if !progressed {
                return Poll::Pending;
            }
        }
        // Input is left: come back after the other pods had their turn.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
