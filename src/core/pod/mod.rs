//! [`PodMachine`]: one pod's lifecycle as a deterministic state machine.

mod health;
mod mutation;
mod timer;

use std::collections::VecDeque;
use std::time::Duration;

use super::event::{Action, Event, ExitStatus, Generation, GroupSignal, SpawnError};
use super::notify;
use super::outcome::{CheckSet, End, Health, StartFailure, StartResult, Unhealthy};
use super::spec::{Check, PodSpec, SpecError, StartedBy, Stream};
use super::time::Time;
use super::State;

use health::HealthTimer;
pub use mutation::Mutation;
use timer::ProbeTimer;

/// Longest `STATUS=` text kept, in bytes; longer texts are cut at a character boundary.
const MAX_STATUS_LEN: usize = 4096;

/// Counters of what the machine ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events that did not fit the state or generation.
    pub ignored: u64,
    /// Notify datagrams with at least one malformed line (their valid fields were still
    /// taken).
    pub malformed_notify: u64,
    /// Malformed notify lines, each ignored on its own.
    pub malformed_notify_fields: u64,
    /// Times `handle` was given a `now` earlier than a previous one (it then uses the
    /// latest `now` it has seen).
    pub time_went_back: u64,
}

/// One pod's lifecycle: events in with the current time, actions and deadlines out.
///
/// See [the module docs](crate::core) for the calling rule. The machine is deterministic:
/// the same events at the same times give the same actions. It never panics on any input
/// sequence; events that do not fit are ignored and counted in [`Stats`].
///
/// Deadlines are strict: ready must arrive *before* `start + timeout_ready` (an event at
/// the deadline instant comes too late), and an exit at exactly the end of the grace period
/// comes after SIGKILL. Timers that are due when an event arrives fire before the event.
#[derive(Debug)]
pub struct PodMachine {
    spec: PodSpec,
    generation: Generation,
    state: State,
    now: Time,
    start_at: Option<Time>,
    ready_deadline: Option<Time>,
    kill_at: Option<Time>,
    /// Grace asked for by a close that came before the spawn answered.
    pending_grace: Option<Duration>,
    spawned: bool,
    all_checks: CheckSet,
    latched: CheckSet,
    probes: Vec<ProbeTimer>,
    next_attempt: u64,
    start_result: Option<StartResult>,
    end: Option<End>,
    status_text: Option<String>,
    errno: Option<i32>,
    main_pid: Option<u32>,
    child_stopping: bool,
    health_checks: Vec<HealthTimer>,
    health: Option<Health>,
    unhealthy: Option<Unhealthy>,
    ready_at: Option<Time>,
    watchdog_interval: Option<Duration>,
    watchdog_at: Option<Time>,
    stats: Stats,
    actions: VecDeque<Action>,
    mutation: Option<Mutation>,
}

impl PodMachine {
    /// A machine for a pod that has not started, with generation 1.
    pub fn new(spec: PodSpec) -> Result<PodMachine, SpecError> {
        PodMachine::with_generation(spec, Generation(1))
    }

    /// A machine whose spawn will carry `generation` (a restarted pod gets a new machine
    /// with the next generation).
    pub fn with_generation(spec: PodSpec, generation: Generation) -> Result<PodMachine, SpecError> {
        spec.validate()?;
        let probes = spec
            .checks
            .iter()
            .enumerate()
            .filter_map(|(check, c)| match c {
                Check::Probe(s) => Some(ProbeTimer {
                    check,
                    initial: s.initial_interval,
                    max: s.max_interval,
                    attempt_timeout: s.attempt_timeout,
                    interval: s.initial_interval,
                    next_at: None,
                    in_flight: None,
                }),
                _ => None,
            })
            .collect();
        Ok(PodMachine {
            all_checks: CheckSet::first(spec.checks.len()),
            health_checks: spec.health.iter().copied().map(HealthTimer::new).collect(),
            health: None,
            unhealthy: None,
            ready_at: None,
            watchdog_interval: spec.watchdog,
            watchdog_at: None,
            spec,
            generation,
            state: State::Created,
            now: Time::ZERO,
            start_at: None,
            ready_deadline: None,
            kill_at: None,
            pending_grace: None,
            spawned: false,
            latched: CheckSet::EMPTY,
            probes,
            next_attempt: 1,
            start_result: None,
            end: None,
            status_text: None,
            errno: None,
            main_pid: None,
            child_stopping: false,
            stats: Stats::default(),
            actions: VecDeque::with_capacity(8),
            mutation: None,
        })
    }

    /// A deliberately wrong machine. Tests only.
    #[cfg(feature = "oracles")]
    #[doc(hidden)]
    pub fn with_mutation(
        spec: PodSpec,
        mutation: Option<Mutation>,
    ) -> Result<PodMachine, SpecError> {
        let mut machine = PodMachine::new(spec)?;
        machine.mutation = mutation;
        Ok(machine)
    }

    /// The spec.
    pub fn spec(&self) -> &PodSpec {
        &self.spec
    }

    /// The generation this machine's process carries.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// How the start went, once decided.
    pub fn start_result(&self) -> Option<&StartResult> {
        self.start_result.as_ref()
    }

    /// How the process ended, once the pod is [`State::Ended`].
    pub fn end(&self) -> Option<End> {
        self.end
    }

    /// The instant the start was asked for.
    pub fn started_at(&self) -> Option<Time> {
        self.start_at
    }

    /// The ready deadline, while the pod waits for ready and has one.
    pub fn ready_deadline(&self) -> Option<Time> {
        self.ready_deadline
    }

    /// The instant SIGKILL is due, while the grace period runs.
    pub fn kill_deadline(&self) -> Option<Time> {
        self.kill_at
    }

    /// The readiness checks that have succeeded.
    pub fn latched_checks(&self) -> CheckSet {
        self.latched
    }

    /// The readiness checks still waited on.
    pub fn pending_checks(&self) -> CheckSet {
        self.all_checks.difference(self.latched)
    }

    /// The last `STATUS=` text the child sent.
    pub fn status_text(&self) -> Option<&str> {
        self.status_text.as_deref()
    }

    /// The last `ERRNO=` the child sent.
    pub fn errno(&self) -> Option<i32> {
        self.errno
    }

    /// The last `MAINPID=` the child sent.
    pub fn main_pid(&self) -> Option<u32> {
        self.main_pid
    }

    /// Whether the child reported `STOPPING=1`.
    pub fn child_stopping(&self) -> bool {
        self.child_stopping
    }

    /// The pod's health once it is ready, when it has health checks or a watchdog.
    pub fn health(&self) -> Option<Health> {
        self.health
    }

    /// When the watchdog expires, while it is armed.
    pub fn watchdog_deadline(&self) -> Option<Time> {
        self.watchdog_at
    }

    /// The watchdog interval in force (the spec's, or the last `WATCHDOG_USEC=`).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_interval
    }

    /// Counters of ignored input.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The latest `now` the machine has seen.
    pub fn now(&self) -> Time {
        self.now
    }

    /// The next action to perform, or `None` when there is nothing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest instant at which the machine wants `handle(Event::Tick, t)`, if any.
    /// Always later than the `now` of the last `handle`.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.next_timer().map(|(t, _)| t)
    }

    /// The instant at which to feed input the driver took in at `now` — output lines,
    /// datagrams, probe results, the leader's exit. When a deadline is already due at
    /// `now`, the driver woke late (a supervisor that was stopped, or starved of CPU):
    /// input found buffered then may have arrived before that deadline, and its arrival
    /// time is unknown. It is given the benefit of the doubt: dated just before the
    /// earliest due deadline, so it is taken in before that deadline is judged. Otherwise
    /// it is `now`.
    ///
    /// ```
    /// use podvisor::core::{Event, PodMachine, PodSpec, Check, Time};
    /// use std::time::Duration;
    ///
    /// let spec = PodSpec::default()
    ///     .check(Check::Notify)
    ///     .timeout_ready(Some(Duration::from_secs(1)));
    /// let mut pod = PodMachine::new(spec).unwrap();
    /// pod.handle(Event::Start, Time::ZERO);
    /// let deadline = pod.poll_timeout().unwrap();
    /// let late = Time::from_nanos(5_000_000_000);
    /// assert_eq!(pod.input_instant(late), Time::from_nanos(deadline.as_nanos() - 1));
    /// assert_eq!(pod.input_instant(Time::from_nanos(1)), Time::from_nanos(1));
    /// ```
    pub fn input_instant(&self, now: Time) -> Time {
        match self.poll_timeout() {
            Some(due) if due <= now => due
                .checked_sub(std::time::Duration::from_nanos(1))
                .map_or(self.now, |before| before.max(self.now)),
            _ => now,
        }
    }

    /// Feeds one event at `now`. Timers due at or before `now` fire first, in time order.
    pub fn handle(&mut self, event: Event<'_>, now: Time) {
        let now = if now < self.now {
            self.stats.time_went_back += 1;
            self.now
        } else {
            now
        };
        self.now = now;
        self.fire_due(now);
        match event {
            Event::Tick => {}
            Event::Start => self.on_start(now),
            Event::Spawned { generation } if self.current_or_mutated(generation) => {
                self.on_spawned(now)
            }
            Event::SpawnFailed { generation, error } if self.current(generation) => {
                self.on_spawn_failed(error)
            }
            Event::Notify {
                generation,
                datagram,
            } if self.current_or_mutated(generation) => self.on_notify(datagram, now),
            Event::OutputLine {
                generation,
                stream,
                line,
            } if self.current(generation) => self.on_output(stream, line, now),
            Event::ProbeFinished {
                generation,
                attempt,
                ok,
            } if self.current(generation) => self.on_probe_finished(attempt, ok, now),
            Event::HealthCheckChanged { generation, check } if self.current(generation) => {
                self.health_check_changed(check, now)
            }
            Event::Exited { generation, status } if self.current(generation) => {
                self.on_exited(status)
            }
            Event::Close { grace } => {
                let grace = grace.unwrap_or(self.spec.grace);
                self.begin_stop(now, grace, true);
            }
            _ => self.stats.ignored += 1,
        }
        self.fire_due(now);
    }

    fn current(&self, generation: Generation) -> bool {
        generation == self.generation
    }

    /// [`PodMachine::current`], unless a mutation accepts any generation.
    fn current_or_mutated(&self, generation: Generation) -> bool {
        self.current(generation) || self.mutation == Some(Mutation::ForeignSpawnedOrNotify)
    }

    fn set_state(&mut self, state: State) {
        if self.state != state {
            self.state = state;
            self.actions.push_back(Action::StateChanged { state });
        }
    }

    fn ignore(&mut self) {
        self.stats.ignored += 1;
    }

    fn on_start(&mut self, now: Time) {
        if self.state != State::Created {
            return self.ignore();
        }
        self.start_at = Some(now);
        if self.mutation != Some(Mutation::DeadlineFromSpawn) {
            self.ready_deadline = self.spec.timeout_ready.and_then(|t| now.checked_add(t));
        }
        self.actions.push_back(Action::Spawn {
            generation: self.generation,
        });
        self.set_state(State::Spawning);
    }

    fn on_spawned(&mut self, now: Time) {
        if self.spawned || !matches!(self.state, State::Spawning | State::Stopping) {
            return self.ignore();
        }
        self.spawned = true;
        if self.mutation == Some(Mutation::DeadlineFromSpawn) && self.state == State::Spawning {
            self.ready_deadline = self.spec.timeout_ready.and_then(|t| now.checked_add(t));
        }
        if self.state == State::Stopping {
            // A close (or the ready timeout) came while the spawn was under way.
            let grace = self.pending_grace.take().unwrap_or(self.spec.grace);
            self.send_stop(now, grace);
        } else if self.spec.started_by == StartedBy::Exec {
            self.on_started(now);
        } else {
            self.set_state(State::Starting);
        }
    }

    fn on_spawn_failed(&mut self, error: SpawnError) {
        if self.spawned || !matches!(self.state, State::Spawning | State::Stopping) {
            return self.ignore();
        }
        if self.start_result.is_none() {
            self.start_result = Some(StartResult::FailedToStart(StartFailure::Spawn(error)));
        }
        self.finish(End::NeverSpawned);
    }

    fn on_started(&mut self, now: Time) {
        self.set_state(State::Started);
        if self.pending_checks().is_empty() {
            return self.on_ready(now);
        }
        let latched = self.latched;
        for probe in &mut self.probes {
            if !latched.contains(probe.check) {
                probe.next_at = Some(now);
            }
        }
    }

    fn on_ready(&mut self, now: Time) {
        let mut after = now.saturating_duration_since(self.start_at.unwrap_or(now));
        if self.mutation == Some(Mutation::ReadyAfterZero) {
            after = std::time::Duration::ZERO;
        }
        self.start_result = Some(StartResult::Ready { after });
        self.ready_deadline = None;
        self.stop_probes();
        self.set_state(State::Ready);
        self.start_health(now);
    }

    fn latch(&mut self, check: usize, now: Time) {
        self.latched.insert(check);
        if self.state == State::Started && self.pending_checks().is_empty() {
            self.on_ready(now);
        }
    }

    fn on_notify(&mut self, datagram: &[u8], now: Time) {
        let message = notify::parse(datagram);
        if message.malformed > 0 {
            self.stats.malformed_notify += 1;
            self.stats.malformed_notify_fields += u64::from(message.malformed);
        }
        if !self.spawned || self.state == State::Ended {
            return self.ignore();
        }
        if let Some(status) = message.status {
            let mut cut = status.len().min(MAX_STATUS_LEN);
            while !status.is_char_boundary(cut) {
                cut -= 1;
            }
            self.status_text = Some(status[..cut].to_owned());
        }
        if let Some(errno) = message.errno {
            self.errno = Some(errno);
        }
        if let Some(pid) = message.main_pid {
            self.main_pid = Some(pid);
        }
        self.child_stopping |= message.stopping;
        self.watchdog_notify(&message, now);
        if !matches!(self.state, State::Starting | State::Started) {
            return;
        }
        if let (Some(extend), Some(deadline)) = (message.extend_timeout, self.ready_deadline) {
            let from = if self.mutation == Some(Mutation::ExtensionCountsFromStart) {
                self.start_at.unwrap_or(now)
            } else {
                now
            };
            if let Some(extended) = from.checked_add(extend) {
                self.ready_deadline = Some(deadline.max(extended));
            }
        }
        if message.ready {
            for index in 0..self.spec.checks.len() {
                if self.spec.checks[index] == Check::Notify {
                    self.latched.insert(index);
                }
            }
        }
        if self.state == State::Starting && (message.started || message.ready) {
            self.on_started(now);
        } else if self.state == State::Started && self.pending_checks().is_empty() {
            self.on_ready(now);
        }
    }

    fn on_output(&mut self, stream: Stream, line: &[u8], now: Time) {
        if !matches!(self.state, State::Starting | State::Started) {
            return;
        }
        for index in 0..self.spec.checks.len() {
            if self.latched.contains(index) {
                continue;
            }
            if let Check::Output { stream: s, text } = &self.spec.checks[index] {
                if *s == stream && contains(line, text.as_bytes()) {
                    self.latch(index, now);
                }
            }
        }
    }

    fn on_probe_finished(&mut self, attempt: u64, ok: bool, now: Time) {
        if let Some(check) = self.health_attempt(attempt) {
            return self.health_result(check, ok, now, now);
        }
        let Some(i) = self
            .probes
            .iter()
            .position(|p| matches!(p.in_flight, Some((a, _)) if a == attempt))
        else {
            return self.ignore();
        };
        let probe = &mut self.probes[i];
        probe.in_flight = None;
        if ok {
            let check = probe.check;
            self.latch(check, now);
        } else {
            self.schedule_retry(i, now);
        }
    }

    /// After a failed attempt of probe `i` at `now`: the next one after the current delay,
    /// which then doubles up to the cap.
    fn schedule_retry(&mut self, i: usize, now: Time) {
        if self.mutation == Some(Mutation::NeverRetriesProbe) {
            return;
        }
        let probe = &mut self.probes[i];
        probe.next_at = now.checked_add(probe.interval);
        probe.interval = (probe.interval * 2).min(probe.max).max(probe.initial);
    }

    fn on_exited(&mut self, status: ExitStatus) {
        if !self.spawned || self.state == State::Ended {
            return self.ignore();
        }
        let end = match self.state {
            State::Starting => {
                self.start_result = Some(StartResult::FailedToStart(StartFailure::Runtime {
                    status,
                    error: self.status_text.clone(),
                    errno: self.errno,
                }));
                End::Exited(status)
            }
            State::Started => {
                self.start_result = Some(
                    if self.mutation == Some(Mutation::ExitedEarlyAsFailedToStart) {
                        StartResult::FailedToStart(StartFailure::Runtime {
                            status,
                            error: None,
                            errno: None,
                        })
                    } else {
                        StartResult::ExitedEarly { status }
                    },
                );
                End::Exited(status)
            }
            State::Ready => End::Exited(status),
            State::Stopping => {
                if self.mutation == Some(Mutation::MissedReap) {
                    return;
                }
                match self.unhealthy {
                    Some(cause) => End::Unhealthy {
                        cause,
                        status,
                        killed: false,
                    },
                    None => End::Closed(status),
                }
            }
            State::Killing => match self.unhealthy {
                Some(cause) => End::Unhealthy {
                    cause,
                    status,
                    killed: true,
                },
                None => End::Killed(status),
            },
            State::Created | State::Spawning | State::Ended => return self.ignore(),
        };
        self.actions.push_back(Action::SweepGroup {
            generation: self.generation,
        });
        self.finish(end);
    }

    fn finish(&mut self, end: End) {
        self.stop_probes();
        self.stop_health();
        self.ready_deadline = None;
        self.kill_at = None;
        self.pending_grace = None;
        self.end = Some(end);
        self.set_state(State::Ended);
    }

    /// Close (`requested`) or ready timeout (not requested).
    fn begin_stop(&mut self, now: Time, grace: Duration, requested: bool) {
        if requested && self.start_result.is_none() && self.state != State::Ended {
            self.start_result = Some(StartResult::Cancelled);
        }
        match self.state {
            State::Created => self.finish(End::NeverSpawned),
            State::Spawning => {
                self.ready_deadline = None;
                self.pending_grace = Some(grace);
                self.set_state(State::Stopping);
            }
            State::Starting | State::Started | State::Ready => {
                self.ready_deadline = None;
                self.stop_probes();
                self.stop_health();
                self.send_stop(now, grace);
            }
            State::Stopping => {
                if self.spawned {
                    let shortened = now.checked_add(grace);
                    self.kill_at = match (self.kill_at, shortened) {
                        (Some(_), Some(b))
                            if self.mutation == Some(Mutation::LaterCloseMovesKill) =>
                        {
                            Some(b)
                        }
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                } else {
                    self.pending_grace = Some(self.pending_grace.map_or(grace, |g| g.min(grace)));
                }
            }
            State::Killing | State::Ended => {}
        }
    }

    fn send_stop(&mut self, now: Time, grace: Duration) {
        let generation = self.generation;
        let signal = match self.unhealthy {
            Some(Unhealthy::Watchdog { .. } | Unhealthy::WatchdogTrigger) => GroupSignal::Watchdog,
            _ => GroupSignal::Stop,
        };
        self.actions
            .push_back(Action::SignalGroup { generation, signal });
        self.actions.push_back(Action::SignalGroup {
            generation,
            signal: GroupSignal::Continue,
        });
        self.kill_at = now.checked_add(grace);
        let early = match self.mutation {
            Some(Mutation::KillOneTickEarly) => Some(1),
            Some(Mutation::KillOneMsEarly) => Some(1_000_000),
            _ => None,
        };
        if let Some(early) = early {
            self.kill_at = self
                .kill_at
                .map(|t| Time::from_nanos(t.as_nanos().saturating_sub(early)).max(now));
        }
        self.set_state(State::Stopping);
    }

    fn stop_probes(&mut self) {
        let generation = self.generation;
        for probe in &mut self.probes {
            probe.next_at = None;
            if let Some((attempt, _)) = probe.in_flight.take() {
                self.actions.push_back(Action::CancelProbe {
                    generation,
                    check: probe.check,
                    attempt,
                });
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
