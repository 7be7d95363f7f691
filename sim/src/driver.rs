//! The driver model: how the real driver (`src/driver.rs`) takes in a pod's input, on
//! virtual time.
//!
//! Input — the spawn's answer, notify datagrams, output lines, probe results, the exit —
//! is buffered as it arrives, with its true arrival instant. The supervisor takes it in at
//! a wake-up, in arrival order and in a bounded batch (one pipe's worth of lines, a
//! budget of other input), each item dated by `PodMachine::input_instant`; then it
//! performs the requests (start, close); then it judges the deadlines (`Tick`). When
//! input is left it yields, and comes back after the other pods had their turn.
//!
//! Taking in input costs virtual time ([`INPUT_COST`] an item), on one clock for the whole
//! supervisor, so a flood of output shows on the clock of every pod. Output goes through
//! a pipe of [`PIPE_LINES`] lines: a process that writes faster than the supervisor reads
//! is held back (back-pressure), so what a wake-up finds buffered always fits one batch.
//! A paused supervisor does nothing until it resumes, while the processes go on and their
//! input piles up with its arrival instants.
//!
//! Whenever a deadline is judged (the machine is fed at or after its next timer), two
//! invariants are checked:
//! - **on time**: it is judged within the tolerance of its instant, or of the end of the
//!   pause it fell in: [`BATCH_COST`] per pod in the world, however much output there is;
//! - **input first**: no input is still buffered that arrived before the deadline and
//!   before the wake-up that judges it.

use std::collections::VecDeque;
use std::time::Duration;

use podvisor::core::Time;

use crate::swarm::Fault;
use crate::world::{Failure, FailureKind, World, WorldEvent};

/// Lines a stdout pipe holds: a default Linux pipe (64 KiB) of 64-byte lines. A process
/// that writes more waits until the supervisor reads.
pub const PIPE_LINES: u64 = 1024;
/// Output lines taken in per wake-up: the real driver's `OUTPUT_BUDGET` (64 KiB), one
/// pipe's worth.
pub const OUTPUT_BUDGET_LINES: u64 = PIPE_LINES;
/// Other input (datagrams, probe results, the spawn's answer, the exit) taken in per
/// wake-up: the real driver's `NOTIFY_BUDGET`.
pub const OTHER_BUDGET: u64 = 64;
/// Datagrams the notify socket holds for one pod in this model: a process whose datagram
/// finds this many waiting gets `EAGAIN` and the datagram is lost. Linux's
/// `net.unix.max_dgram_qlen` as systemd sets it; deeper than one budget, so a pause lets
/// datagrams pile up past [`OTHER_BUDGET`], and the driver takes further budgets before it
/// judges a deadline (at most [`BACKLOG_ROUNDS`] in a row).
pub const NOTIFY_QUEUE: usize = 512;
/// Budgets of other input taken in a row, with input buffered before the wake-up left,
/// before the deadlines are judged anyway: the real driver's `NOTIFY_BACKLOG_ROUNDS`.
pub const BACKLOG_ROUNDS: u32 = 16;
/// Virtual time the supervisor takes to take in one line, datagram or other input.
pub const INPUT_COST: Duration = Duration::from_nanos(500);
/// Virtual time of one full batch: the most one wake-up of one pod takes.
pub const BATCH_COST: Duration = Duration::from_nanos(500 * (OUTPUT_BUDGET_LINES + OTHER_BUDGET));

/// A deliberately wrong driver model, to show that the driver invariants catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DriverMutation {
    /// Judges the deadlines before taking in the input buffered at a wake-up.
    TimersBeforeInput,
    /// Dates input at the instant it is taken in, not with `input_instant`.
    InputAtWakeTime,
    /// Reads until nothing is left before judging the deadlines: no bound per wake-up.
    DrainUntilEmpty,
}

/// Situations of the driver model, in coverage-bit order: a writer held back by a full
/// pipe; a deadline judged while output was still waiting; input buffered during a
/// pause; input dated before a deadline that was already due when it was taken in.
pub const DRIVER_SITUATIONS: [&str; 4] = [
    "pipe-full",
    "deadline-amid-flood",
    "input-during-pause",
    "input-before-due",
];

/// One pod's input as the supervisor has not yet taken it in, and its wake-ups.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    /// Buffered input with its arrival instant, in arrival order.
    input: VecDeque<(Time, WorldEvent)>,
    /// Lines of `input` in the stdout pipe.
    piped: u64,
    /// Lines the process is writing but the full pipe holds back: `Lines` or `ReadyLine`.
    blocked: VecDeque<WorldEvent>,
    /// Requests (start, close) waiting for the next wake-up.
    pub(crate) requests: VecDeque<WorldEvent>,
    /// When the driver comes back (it yielded with input left, or waits for the end of a
    /// pause): a `Wake` is queued for then.
    pub(crate) wake_at: Option<Time>,
    /// Wake-ups in a row that ended their other-input budget with items buffered before
    /// they began, deadlines not judged: the real driver's `NOTIFY_BACKLOG_ROUNDS`.
    backlog_rounds: u32,
    /// While the deadlines are judged after such rounds: how many there were (each was a
    /// batch of input taken before the deadline, so it may be judged that much later).
    backlog_used: u32,
}

fn lines_of(event: &WorldEvent) -> u64 {
    match event {
        WorldEvent::Lines(n) => *n,
        WorldEvent::ReadyLine => 1,
        _ => 0,
    }
}

fn is_datagram(event: &WorldEvent) -> bool {
    matches!(
        event,
        WorldEvent::Started
            | WorldEvent::Ready
            | WorldEvent::Malformed
            | WorldEvent::Stale(1)
            | WorldEvent::Extend(_)
            | WorldEvent::LateNotify
            | WorldEvent::Watchdog(_)
    )
}

impl Inbox {
    /// Buffers input other than output lines.
    pub(crate) fn push(&mut self, at: Time, event: WorldEvent) {
        self.input.push_back((at, event));
    }

    /// The process writes `line` (`Lines(n)` or `ReadyLine`) at `at`. Returns
    /// whether the pipe is full and the writer held back.
    pub(crate) fn write(&mut self, at: Time, line: WorldEvent) -> bool {
        self.blocked.push_back(line);
        self.refill(at)
    }

    /// The process exited: what it had not yet written is never written.
    pub(crate) fn writer_gone(&mut self) {
        self.blocked.clear();
    }

    /// Moves held-back lines into the pipe as far as it has room, arriving at `at`.
    /// Returns whether some are still held back.
    fn refill(&mut self, at: Time) -> bool {
        while let Some(front) = self.blocked.front_mut() {
            let room = PIPE_LINES - self.piped;
            if room == 0 {
                break;
            }
            match front {
                WorldEvent::Lines(n) if *n > room => {
                    *n -= room;
                    self.input.push_back((at, WorldEvent::Lines(room)));
                    self.piped += room;
                }
                _ => {
                    if let Some(line) = self.blocked.pop_front() {
                        self.piped += lines_of(&line);
                        self.input.push_back((at, line));
                    }
                }
            }
        }
        !self.blocked.is_empty()
    }

    /// Whether the notify socket is full (see [`NOTIFY_QUEUE`]).
    pub(crate) fn notify_full(&self) -> bool {
        let datagrams = self.input.iter().filter(|(_, e)| is_datagram(e)).count();
        datagrams >= NOTIFY_QUEUE
    }

    fn has_input(&self) -> bool {
        !self.input.is_empty()
    }
}

impl World {
    /// How late a deadline may be judged: one full batch per pod, since each pod's driver
    /// takes at most one batch before the others get their turn.
    pub(crate) fn deadline_tolerance(&self) -> Duration {
        BATCH_COST * u32::try_from(self.pods.len()).unwrap_or(u32::MAX)
    }

    /// If the supervisor is paused at `now`, when it resumes.
    pub(crate) fn paused(&self) -> Option<Time> {
        let mut resume = self.now;
        // Pauses may overlap or touch: follow them to the end of the last one.
        while let Some(&(_, until)) = self
            .pauses
            .iter()
            .find(|(from, until)| *from <= resume && resume < *until)
        {
            resume = until;
        }
        (resume > self.now).then_some(resume)
    }

    /// The end of the last pause at or before `at` (the epoch if none).
    fn awake_since(&self, at: Time) -> Time {
        self.pauses
            .iter()
            .map(|(_, until)| *until)
            .filter(|until| *until <= at)
            .max()
            .unwrap_or(Time::ZERO)
    }

    pub(crate) fn situation(&mut self, index: usize) {
        self.situations |= 1 << index;
    }

    pub(crate) fn mark_fault(&mut self, fault: Fault) {
        self.faults |= 1 << fault as u32;
    }

    /// Pod `i` has something to do (input, a request, its timer): wake its driver now,
    /// unless it is already due to come back, or the supervisor is paused.
    pub(crate) fn poke(&mut self, i: usize) -> Result<(), Failure> {
        let paused = self.paused();
        if paused.is_some() && self.inboxes[i].has_input() {
            self.situation(2);
        }
        if self.inboxes[i].wake_at.is_some() {
            return Ok(());
        }
        if let Some(resume) = paused {
            self.inboxes[i].wake_at = Some(resume);
            self.schedule(resume, i, WorldEvent::Wake);
            let now = self.now;
            self.note(|| format!("{now} pod{i} supervisor paused until {resume}"));
            return Ok(());
        }
        self.wake(i)
    }

    /// One wake-up of pod `i`'s driver: input first, then requests, then deadlines.
    fn wake(&mut self, i: usize) -> Result<(), Failure> {
        let began = self.now;
        if self.driver_mutation == Some(DriverMutation::TimersBeforeInput) {
            self.tick_if_due(i, began)?;
        }
        self.take_input(i, began)?;
        // Input that was buffered when the driver woke is left (the budget ran out): it
        // is taken in before requests are fed and deadlines judged (a request's event
        // would judge them too), for a bounded number of rounds.
        let backlog = self.inboxes[i]
            .input
            .iter()
            .any(|(arrival, event)| *arrival <= began && lines_of(event) == 0);
        if backlog && self.inboxes[i].backlog_rounds < BACKLOG_ROUNDS {
            self.inboxes[i].backlog_rounds += 1;
        } else {
            let used = std::mem::take(&mut self.inboxes[i].backlog_rounds);
            self.inboxes[i].backlog_used = used;
            let judged = self.requests_then_deadlines(i, began);
            self.inboxes[i].backlog_used = 0;
            judged?;
        }
        if self.inboxes[i].has_input() {
            // Input is left: come back after the other pods had their turn.
            let now = self.now;
            self.inboxes[i].wake_at = Some(now);
            self.schedule(now, i, WorldEvent::Wake);
        }
        Ok(())
    }

    /// Feeds the waiting requests, then judges the deadlines.
    fn requests_then_deadlines(&mut self, i: usize, began: Time) -> Result<(), Failure> {
        while let Some(request) = self.inboxes[i].requests.pop_front() {
            let now = self.now;
            self.judged(i, now, began)?;
            self.feed(i, &request, now)?;
        }
        self.tick_if_due(i, began)
    }

    /// Takes in what was buffered when the driver woke at `began`, within the budgets,
    /// each item dated by the core.
    fn take_input(&mut self, i: usize, began: Time) -> Result<(), Failure> {
        let drain = self.driver_mutation == Some(DriverMutation::DrainUntilEmpty);
        let (mut lines, mut others) = (OUTPUT_BUDGET_LINES, OTHER_BUDGET);
        while let Some((arrival, event)) = self.inboxes[i].input.front() {
            let n = lines_of(event);
            if !drain && (*arrival > began || (n > 0 && n > lines) || (n == 0 && others == 0)) {
                break;
            }
            let now = self.now;
            let at = if self.driver_mutation == Some(DriverMutation::InputAtWakeTime) {
                now
            } else {
                self.pods[i].machine.input_instant(now)
            };
            if at < now {
                self.situation(3);
            }
            // Judged with the item still buffered: dating it at or after a due deadline
            // judges that deadline before it.
            self.judged(i, at, began)?;
            let Some((_, event)) = self.inboxes[i].input.pop_front() else {
                break;
            };
            self.inboxes[i].piped -= n;
            if n == 0 {
                others -= 1;
            } else {
                lines = lines.saturating_sub(n);
            }
            self.feed(i, &event, at)?;
            let cost = INPUT_COST * u32::try_from(n.max(1)).unwrap_or(u32::MAX);
            self.now = self.now.checked_add(cost).unwrap_or(Time::MAX);
            // The writer fills the room just made.
            let now = self.now;
            if self.inboxes[i].refill(now) {
                self.situation(0);
            }
        }
        Ok(())
    }

    /// Feeds `Tick` if a deadline of pod `i` is due.
    fn tick_if_due(&mut self, i: usize, began: Time) -> Result<(), Failure> {
        let now = self.now;
        if self.pods[i]
            .machine
            .poll_timeout()
            .is_some_and(|due| due <= now)
        {
            self.judged(i, now, began)?;
            self.feed(i, &WorldEvent::Tick, now)?;
        }
        Ok(())
    }

    /// Pod `i` is about to be fed at `at` in a wake-up that began at `began`. If that
    /// judges a due deadline, checks that it is on time and that the input that arrived
    /// before it was taken in first.
    fn judged(&mut self, i: usize, at: Time, began: Time) -> Result<(), Failure> {
        let Some(due) = self.pods[i].machine.poll_timeout() else {
            return Ok(());
        };
        if due > at {
            return Ok(());
        }
        let inbox = &self.inboxes[i];
        if inbox.piped > 0 || !inbox.blocked.is_empty() {
            self.situation(1);
        }
        let inbox = &self.inboxes[i];
        let from = due.max(self.awake_since(at));
        let late = at.saturating_duration_since(from);
        let tolerance = self.deadline_tolerance() * (1 + inbox.backlog_used);
        if late > tolerance {
            return Err(Failure {
                kind: FailureKind::Safety,
                message: format!(
                    "pod{i}: the deadline due at {due} was judged at {at}, {late:?} late \
                     (tolerance {tolerance:?}: one batch of input per pod; awake since {})",
                    self.awake_since(at)
                ),
            });
        }
        let before = due.min(began);
        if let Some((arrival, event)) = inbox.input.iter().find(|(a, _)| *a < before) {
            return Err(Failure {
                kind: FailureKind::Safety,
                message: format!(
                    "pod{i}: the deadline due at {due} was judged at {at} while input that \
                     arrived at {arrival} ({event:?}), before it and before the wake-up at \
                     {began}, was still buffered"
                ),
            });
        }
        Ok(())
    }
}
