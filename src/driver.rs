//! The pod driver: a future on podvisor's driver thread that performs what the core asks
//! (spawn, signal, sweep) and feeds back what happens (spawned, notify datagrams, output
//! lines, timer ticks, the exit). It makes no decisions of its own.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::Timer;
use futures_lite::io::AsyncRead;

use crate::config::{Host, Input, Output};
use crate::core::{
    Action, Event, ExitStatus, Generation, GroupSignal, SpawnError, SpawnErrorKind, State, Stream,
    Time,
};
use crate::forward;
use crate::notify_socket::NotifySocket;
use crate::os;
use crate::output::{ChunkReader, LineSplitter};
use crate::pod::{Request, Shared, ThreadMessage};
use crate::probe::Attempt;
use crate::runtime::CancelSlot;
use crate::spawner::Answer;
use crate::{PodConfig, Signal};

/// A child's output pipe.
type Pipe = Box<dyn AsyncRead + Send + Unpin>;

/// Output bytes read per stream in one poll of a driver before it yields: a pod that
/// writes without pause must not keep the driver thread from its other pods, its timers
/// and its signals. One pipe's default capacity, so whatever was buffered when the
/// driver woke is taken in before the deadlines are judged.
const OUTPUT_BUDGET: usize = 64 * 1024;

/// Notify datagrams taken in one poll of a driver before it yields.
const NOTIFY_BUDGET: usize = 64;

/// Output read when the leader has exited, to take in what it wrote before (a pipe holds
/// at most 1 MiB unless raised); bounded because a grandchild may keep writing.
const DRAIN_BUDGET: usize = 1024 * 1024;

/// One of the child's output pipes and what was read from it but not yet forwarded.
struct OutputPipe {
    reader: ChunkReader<Pipe>,
    lines: LineSplitter,
    /// Bytes for podvisor's own stream that its writer has no room for yet; nothing more
    /// is read from the pipe until they are taken (back-pressure on this pod alone).
    unsent: Vec<u8>,
    /// The pipe reached its end; the pipe is dropped once `unsent` is taken.
    ended: bool,
}

impl OutputPipe {
    fn new(pipe: Pipe) -> OutputPipe {
        OutputPipe {
            reader: ChunkReader::new(pipe),
            lines: LineSplitter::default(),
            unsent: Vec::new(),
            ended: false,
        }
    }
}

/// Lines split from one chunk, in one buffer.
#[derive(Default)]
struct Lines {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Lines {
    fn push(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.ends.push(self.bytes.len());
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(a, &b)| &self.bytes[a..b])
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// What the spawning thread answers: the child and its cgroup.
type SpawnAnswer = io::Result<(async_process::Child, Option<crate::cgroup::PodCgroup>)>;

type StatusFuture = Pin<Box<dyn Future<Output = io::Result<std::process::ExitStatus>> + Send>>;

/// Environment variables a pod never inherits: they describe podvisor's own supervisor.
const SUPERVISOR_VARS: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
];
const SUPERVISOR_PREFIXES: &[&str] = &["LISTEN_", "WATCHDOG_"];

pub(crate) struct Driver {
    shared: Arc<Shared>,
    config: PodConfig,
    epoch: Instant,
    status: Option<StatusFuture>,
    notify: Option<NotifySocket>,
    stdout: Option<OutputPipe>,
    stderr: Option<OutputPipe>,
    /// Reused buffer for the lines of one chunk.
    lines: Lines,
    timer: Timer,
    timer_at: Option<Instant>,
    pgid: Option<u32>,
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
}

impl Driver {
    pub(crate) fn new(shared: Arc<Shared>, config: PodConfig, epoch: Instant) -> Driver {
        Driver {
            thread: None,
            prefix: config.get_prefix(),
            shared,
            config,
            epoch,
            status: None,
            notify: None,
            stdout: None,
            stderr: None,
            lines: Lines::default(),
            timer: Timer::never(),
            timer_at: None,
            pgid: None,
            cgroup: None,
            spawning: None,
            probes: Vec::new(),
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
                        GroupSignal::Continue => Signal::CONT,
                        GroupSignal::Kill => Signal::KILL,
                    };
                    self.signal_group(signal);
                    Vec::new()
                }
                Action::SweepGroup { .. } => {
                    // Record what outlived the leader (orphaned zombies excepted), then kill
                    // it: the group, and the cgroup with whatever left the group.
                    let mut left: Vec<u32> = match self.pgid.filter(|&g| os::group_exists(g)) {
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
                    self.signal_group(Signal::KILL);
                    if let Some(cgroup) = &self.cgroup {
                        cgroup.kill();
                    }
                    if let Some(pgid) = self.pgid {
                        crate::keeper::forget_group(pgid);
                    }
                    Vec::new()
                }
                Action::StartProbe { check, attempt, .. } => {
                    if let Some(probe) = self.config.readiness.get(check).and_then(|r| r.probe()) {
                        self.probes.push((attempt, probe.attempt()));
                    }
                    Vec::new()
                }
                Action::CancelProbe { attempt, .. } => {
                    // Dropping an attempt cancels it (a probe command's group is killed).
                    self.probes.retain(|(a, _)| *a != attempt);
                    Vec::new()
                }
                Action::StateChanged { state } => {
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

    /// A thread cannot be signalled: the stop signal becomes `cancel` (called on a thread
    /// of its own, as it may block), and SIGKILL abandons the thread, which is reported as
    /// killed and left running detached.
    fn signal_thread(&mut self, signal: GroupSignal, generation: Generation) -> Vec<Action> {
        match signal {
            GroupSignal::Stop => {
                if let Some(slot) = self.thread.clone() {
                    let shared = self.shared.clone();
                    let _ = std::thread::Builder::new()
                        .name(format!("podvisor-cancel-{}", self.config.name))
                        .spawn(move || {
                            slot.cancel(&|m| {
                                shared.push_thread_message(ThreadMessage::Notify(m.to_string()))
                            })
                        });
                }
                Vec::new()
            }
            GroupSignal::Continue => Vec::new(),
            GroupSignal::Kill => {
                let now = self.now();
                self.shared.handle(
                    Event::Exited {
                        generation,
                        status: ExitStatus::Signal(9),
                    },
                    now,
                )
            }
        }
    }

    fn poll_thread(&mut self) -> bool {
        let messages = self.shared.take_thread_messages();
        let generation = self.shared.generation();
        for message in &messages {
            match message {
                ThreadMessage::Notify(text) => self.feed(Event::Notify {
                    generation,
                    datagram: text.as_bytes(),
                }),
                ThreadMessage::Exited(code) => self.feed(Event::Exited {
                    generation,
                    status: ExitStatus::Code(*code),
                }),
            }
        }
        !messages.is_empty()
    }

    fn spawn_thread(&mut self, factory: crate::runtime::RuntimeFactory) -> io::Result<()> {
        let slot = Arc::new(CancelSlot::default());
        self.thread = Some(slot.clone());
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name(format!("podvisor-runtime-{}", self.config.name))
            .spawn(move || {
                let for_report = shared.clone();
                let report: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(move |m: &str| {
                    for_report.push_thread_message(ThreadMessage::Notify(m.to_string()))
                });
                let code = crate::runtime::host(&factory, &slot, report);
                shared.push_thread_message(ThreadMessage::Exited(code));
            })?;
        Ok(())
    }

    fn signal_group(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            // ESRCH (group gone) is not an error; anything else cannot be acted on here.
            let _ = os::signal_group(pgid, signal);
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
                let (death_signal, stdin) = (config.death_signal, config.stdin);
                let (stdout, stderr) =
                    (config.output(Stream::Stdout), config.output(Stream::Stderr));
                let answer = Answer::spawn(move || {
                    spawn_process(command, death_signal, stdin, stdout, stderr)
                });
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
        self.shared.set_spawn_error(error.to_string());
        SpawnError { kind, errno }
    }

    /// The command to spawn, with its environment and notify socket.
    fn prepare_command(&mut self) -> io::Result<std::process::Command> {
        let config = &self.config;
        let mut command = std::process::Command::new(&config.program);
        command.args(&config.args);
        if config.env_clear {
            command.env_clear();
        } else {
            for (key, _) in std::env::vars_os() {
                let key_str = key.to_string_lossy();
                if SUPERVISOR_VARS.contains(&key_str.as_ref())
                    || SUPERVISOR_PREFIXES.iter().any(|p| key_str.starts_with(p))
                {
                    command.env_remove(&key);
                }
            }
        }
        command.envs(config.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &config.cwd {
            command.current_dir(dir);
        }
        if config.uses_notify() {
            let socket = NotifySocket::bind()?;
            command.env("NOTIFY_SOCKET", socket.path());
            self.notify = Some(socket);
        }
        Ok(command)
    }

    /// Feeds the spawning thread's answer once it is there. Returns whether it was.
    fn poll_spawn(&mut self, cx: &mut Context<'_>) -> bool {
        let Some((generation, answer)) = &self.spawning else {
            return false;
        };
        let generation = *generation;
        let Poll::Ready(result) = answer.poll(cx) else {
            return false;
        };
        self.spawning = None;
        match result {
            Ok((child, cgroup)) => {
                self.adopt(child, cgroup);
                self.feed(Event::Spawned { generation });
            }
            Err(error) => {
                let error = self.spawn_failed(error);
                self.feed(Event::SpawnFailed { generation, error });
            }
        }
        true
    }

    /// Takes over a child the spawning thread started.
    fn adopt(&mut self, mut child: async_process::Child, cgroup: Option<crate::cgroup::PodCgroup>) {
        if let Some(socket) = self.notify.as_mut() {
            socket.set_pod(child.id(), cgroup.as_ref().map(|c| c.procs_path()));
        }
        self.pgid = Some(child.id());
        self.cgroup = cgroup;
        crate::keeper::watch_group(child.id());
        self.shared.set_pid(child.id());
        self.stdout = child
            .stdout
            .take()
            .map(|p| OutputPipe::new(Box::new(p) as Pipe));
        self.stderr = child
            .stderr
            .take()
            .map(|p| OutputPipe::new(Box::new(p) as Pipe));
        self.status = Some(Box::pin(child.status()));
    }

    /// Feeds the datagrams waiting on the notify socket, at most [`NOTIFY_BUDGET`]; sets
    /// `more` if it stopped with some left. Returns whether any arrived.
    fn poll_notify(&mut self, cx: &mut Context<'_>, more: &mut bool) -> bool {
        if self.spawning.is_some() {
            // Datagrams wait in the socket until the spawn's answer says who the pod is:
            // the child may send before its spawn has returned.
            return false;
        }
        let generation = self.shared.generation();
        let mut progressed = false;
        for _ in 0..NOTIFY_BUDGET {
            let Some(socket) = self.notify.as_mut() else {
                return progressed;
            };
            match socket.poll_recv(cx) {
                Poll::Ready(Ok(datagram)) if !datagram.from_pod => {
                    self.shared.count_notify_from_outside();
                    progressed = true;
                }
                Poll::Ready(Ok(datagram)) => {
                    let datagram = datagram.bytes.to_vec();
                    self.feed_input(Event::Notify {
                        generation,
                        datagram: &datagram,
                    });
                    progressed = true;
                }
                Poll::Ready(Err(_)) | Poll::Pending => return progressed,
            }
        }
        *more = true;
        progressed
    }

    fn pipe(&mut self, stream: Stream) -> Option<&mut OutputPipe> {
        match stream {
            Stream::Stdout => self.stdout.as_mut(),
            Stream::Stderr => self.stderr.as_mut(),
        }
    }

    /// Reads `stream` until it has nothing more, `budget` bytes are read, or its forwarded
    /// bytes find no room; each chunk is forwarded and its lines go to the last lines and
    /// the readiness checks. With `force`, forwarded bytes are queued whatever the room
    /// (the leader exited: what it wrote must not be lost). Returns whether anything
    /// happened; leaves `budget` at 0 if it stopped because of it.
    fn poll_output(
        &mut self,
        cx: &mut Context<'_>,
        stream: Stream,
        budget: &mut usize,
        force: bool,
    ) -> bool {
        let sink = forward::sink(stream);
        let mut progressed = false;
        loop {
            let Some(pipe) = self.pipe(stream) else {
                return progressed;
            };
            if !pipe.unsent.is_empty() {
                if force {
                    sink.send_now(&pipe.unsent);
                } else if sink.poll_send(cx, &pipe.unsent).is_pending() {
                    return progressed;
                }
                pipe.unsent.clear();
                progressed = true;
            }
            if pipe.ended {
                match stream {
                    Stream::Stdout => self.stdout = None,
                    Stream::Stderr => self.stderr = None,
                }
                return progressed;
            }
            if *budget == 0 {
                return progressed;
            }
            let mut lines = std::mem::take(&mut self.lines);
            let forward = self.config.output(stream) == Output::Forward;
            let raw = forward && self.prefix.is_empty();
            let Some(pipe) = self.pipe(stream) else {
                return progressed;
            };
            let OutputPipe {
                reader,
                lines: splitter,
                unsent,
                ..
            } = pipe;
            let read = reader.poll_chunk(cx, |chunk| {
                if raw {
                    unsent.extend_from_slice(chunk);
                }
                splitter.push(chunk, &mut |line| lines.push(line));
                chunk.len()
            });
            match read {
                Poll::Ready(Some(n)) => *budget = budget.saturating_sub(n),
                Poll::Ready(None) => {
                    pipe.ended = true;
                    pipe.lines.finish(&mut |line| lines.push(line));
                }
                Poll::Pending => {
                    self.lines = lines;
                    return progressed;
                }
            }
            progressed = true;
            self.take_lines(stream, &lines, forward && !raw);
            lines.clear();
            self.lines = lines;
        }
    }

    /// Hands the lines of one chunk to their consumers.
    fn take_lines(&mut self, stream: Stream, lines: &Lines, prefixed: bool) {
        if lines.ends.is_empty() {
            return;
        }
        // Only the newest lines are kept: skip the others without building them.
        let skip = lines.ends.len().saturating_sub(self.config.last_lines);
        self.shared.push_lines(lines.iter().skip(skip));
        if prefixed {
            let prefix = self.prefix.clone();
            if let Some(pipe) = self.pipe(stream) {
                for line in lines.iter() {
                    pipe.unsent.extend_from_slice(prefix.as_bytes());
                    pipe.unsent.extend_from_slice(line);
                    pipe.unsent.push(b'\n');
                }
            }
        }
        if self.config.watches(stream) {
            let generation = self.shared.generation();
            for line in lines.iter() {
                self.feed_input(Event::OutputLine {
                    generation,
                    stream,
                    line,
                });
            }
        }
    }

    /// What is already buffered when the leader exits still counts (a `READY=1` sent just
    /// before exiting), and what it wrote is forwarded: take it in without waiting.
    fn drain_buffered(&mut self) {
        let generation = self.shared.generation();
        for _ in 0..NOTIFY_BUDGET {
            let Some(Ok(Some(datagram))) = self.notify.as_mut().map(|s| s.try_recv()) else {
                break;
            };
            if !datagram.from_pod {
                self.shared.count_notify_from_outside();
                continue;
            }
            let datagram = datagram.bytes.to_vec();
            self.feed_input(Event::Notify {
                generation,
                datagram: &datagram,
            });
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for stream in [Stream::Stdout, Stream::Stderr] {
            let mut budget = DRAIN_BUDGET;
            self.poll_output(&mut cx, stream, &mut budget, true);
            if let Some(pipe) = self.pipe(stream) {
                forward::sink(stream).send_now(&pipe.unsent);
                pipe.unsent.clear();
            }
        }
    }

    fn poll_exit(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(status) = self.status.as_mut() else {
            return false;
        };
        let Poll::Ready(result) = status.as_mut().poll(cx) else {
            return false;
        };
        self.status = None;
        if let Some(pid) = self.pgid {
            crate::reaper::release(pid);
        }
        self.drain_buffered();
        let status = match result {
            Ok(status) => match (status.code(), status.signal()) {
                (Some(code), _) => ExitStatus::Code(code),
                (None, Some(signal)) => ExitStatus::Signal(signal),
                (None, None) => ExitStatus::Code(-1),
            },
            // The reaper failed to wait; nothing more can be learned about the process.
            Err(_) => ExitStatus::Code(-1),
        };
        let generation = self.shared.generation();
        self.feed_input(Event::Exited { generation, status });
        true
    }

    fn poll_probes(&mut self, cx: &mut Context<'_>) -> bool {
        let mut finished = Vec::new();
        self.probes
            .retain_mut(|(attempt, future)| match future.as_mut().poll(cx) {
                Poll::Ready(ok) => {
                    finished.push((*attempt, ok));
                    false
                }
                Poll::Pending => true,
            });
        let generation = self.shared.generation();
        for (attempt, ok) in &finished {
            self.feed_input(Event::ProbeFinished {
                generation,
                attempt: *attempt,
                ok: *ok,
            });
        }
        !finished.is_empty()
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
            self.timer_at = None;
            self.feed(Event::Tick);
            return true;
        }
        false
    }
}

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
        for _ in 0..PASSES {
            let mut more = false;
            // The spawn's answer first (the notify socket needs to know the pod's pid);
            // then input: what was buffered when the driver woke is taken in before the
            // deadlines are judged.
            let mut progressed = this.poll_spawn(cx);
            progressed |= this.poll_notify(cx, &mut more);
            progressed |= this.poll_output(cx, Stream::Stdout, &mut budget[0], false);
            progressed |= this.poll_output(cx, Stream::Stderr, &mut budget[1], false);
            progressed |= this.poll_probes(cx);
            progressed |= this.poll_thread();
            progressed |= this.poll_exit(cx);
            for request in this.shared.take_requests() {
                progressed = true;
                let event = match request {
                    Request::Start => Event::Start,
                    Request::Close(grace) => Event::Close { grace },
                };
                this.feed(event);
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
            progressed |= this.poll_timer(cx);
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

/// On the spawning thread: the pod's cgroup, then fork and exec. The child is registered
/// as one podvisor waits for itself before the orphan reaper can look at it.
fn spawn_process(
    command: std::process::Command,
    death_signal: bool,
    stdin: Input,
    stdout: Output,
    stderr: Output,
) -> io::Result<(async_process::Child, Option<crate::cgroup::PodCgroup>)> {
    let mut command = command;
    crate::keeper::ensure();
    let cgroup = crate::cgroup::PodCgroup::new();
    os::prepare_command(
        &mut command,
        death_signal,
        cgroup
            .as_ref()
            .map(|c| std::os::fd::AsRawFd::as_raw_fd(&c.procs())),
    );
    let mut command = async_process::Command::from(command);
    command.stdin(match stdin {
        Input::Null => Stdio::null(),
        Input::Inherit => Stdio::inherit(),
    });
    command.stdout(self::stdio(stdout));
    command.stderr(self::stdio(stderr));
    // podvisor reaps and kills through the core's actions, never implicitly on drop.
    command.kill_on_drop(false);
    let child = crate::reaper::spawn_claimed(|| command.spawn())?;
    Ok((child, cgroup))
}

fn stdio(output: Output) -> Stdio {
    match output {
        Output::Capture | Output::Forward => Stdio::piped(),
        Output::Inherit => Stdio::inherit(),
        Output::Discard => Stdio::null(),
    }
}
