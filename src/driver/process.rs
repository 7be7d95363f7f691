//! Process pods: preparing the command, the spawn's answer from the spawning thread, the
//! notify socket, the output pipes (forwarded with back-pressure, split into lines), the
//! process group's signals, and the exit.

use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::AsyncRead;

use crate::config::Output;
use crate::core::{Event, ExitStatus, Stream};
use crate::forward;
use crate::notify_socket::NotifySocket;
use crate::os;
use crate::output::{ChunkReader, LineSplitter};
use crate::Signal;

use super::spawn::Spawned;
use super::Driver;

/// A child's output pipe.
pub(super) type Pipe = Box<dyn AsyncRead + Send + Unpin>;

/// Output bytes read per stream in one poll of a driver before it yields: a pod that
/// writes without pause must not keep the driver thread from its other pods, its timers
/// and its signals. One pipe's default capacity, so whatever was buffered when the
/// driver woke is taken in before the deadlines are judged.
pub(super) const OUTPUT_BUDGET: usize = 64 * 1024;

/// Notify datagrams taken in one poll of a driver before it yields.
const NOTIFY_BUDGET: usize = 64;

/// Output read when the leader has exited, to take in what it wrote before (a pipe holds
/// at most 1 MiB unless raised); bounded because a grandchild may keep writing.
const DRAIN_BUDGET: usize = 1024 * 1024;

/// One of the child's output pipes and what was read from it but not yet forwarded.
pub(super) struct OutputPipe {
    reader: ChunkReader<Pipe>,
    lines: LineSplitter,
    /// Bytes for podvisor's own stream that its writer has no room for yet; nothing more
    /// is read from the pipe until they are taken (back-pressure on this pod alone).
    unsent: Vec<u8>,
    /// How many lifecycle events had been appended when `unsent` was read (see
    /// [`forward::After`]).
    unsent_after: u64,
    /// How much of `unsent` is counted as queued already ([`forward::Sink::reserve`]).
    reserved: usize,
    /// The pipe reached its end; the pipe is dropped once `unsent` is taken.
    ended: bool,
}

impl OutputPipe {
    fn new(pipe: Pipe) -> OutputPipe {
        OutputPipe {
            reader: ChunkReader::new(pipe),
            lines: LineSplitter::default(),
            unsent: Vec::new(),
            unsent_after: 0,
            reserved: 0,
            ended: false,
        }
    }
}

/// Lines split from one chunk, in one buffer.
#[derive(Default)]
pub(super) struct Lines {
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

pub(super) type StatusFuture =
    Pin<Box<dyn Future<Output = io::Result<std::process::ExitStatus>> + Send>>;

/// Environment variables a pod never inherits: they describe podvisor's own supervisor.
const SUPERVISOR_VARS: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
];
const SUPERVISOR_PREFIXES: &[&str] = &["LISTEN_", "WATCHDOG_"];

impl Driver {
    pub(super) fn signal_group(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            // ESRCH (group gone) is not an error; anything else cannot be acted on here.
            // A pod sharing podvisor's group (`foreground`) is signalled alone.
            let _ = os::signal_pod(pgid, self.config.own_group, signal);
        }
    }

    /// The command to spawn, with its environment and notify socket.
    pub(super) fn prepare_command(&mut self) -> io::Result<std::process::Command> {
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
        if let Some(watchdog) = config.watchdog {
            command.env("WATCHDOG_USEC", watchdog.as_micros().to_string());
        }
        Ok(command)
    }

    /// Feeds the spawning thread's answer once it is there. Returns whether it was.
    pub(super) fn poll_spawn(&mut self, cx: &mut Context<'_>) -> bool {
        let Some((generation, answer)) = &self.spawning else {
            return false;
        };
        let generation = *generation;
        let Poll::Ready(result) = answer.poll(cx) else {
            return false;
        };
        self.spawning = None;
        match result.and_then(|(born, cgroup)| Ok((born.watch()?, cgroup))) {
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
    pub(super) fn adopt(&mut self, child: Spawned, cgroup: Option<crate::cgroup::PodCgroup>) {
        let pid = child.pid;
        if let Some(socket) = self.notify.as_mut() {
            socket.set_pod(pid, cgroup.as_ref().map(|c| c.procs_path()));
        }
        self.pgid = Some(pid);
        self.cgroup = cgroup;
        if self.config.own_group {
            // The keeper kills the group if podvisor dies, unless the cgroup's kill reaches
            // all of the pod at once anyway.
            let contained = self.cgroup.is_some() && crate::cgroup::PodCgroup::kill_is_atomic();
            if !contained {
                crate::keeper::watch_group(pid);
                self.keeper_group = Some(pid);
            }
        } else if let Some(pidfd) = child.pidfd.or_else(|| os::pidfd(pid)) {
            // Not reaped yet: only this driver reaps it, later.
            self.shared.set_pidfd(pidfd);
        }
        self.shared.set_pid(pid);
        self.stdout = child.stdout.map(OutputPipe::new);
        self.stderr = child.stderr.map(OutputPipe::new);
        self.status = Some(child.status);
        self.exit_waker = ExitWaker::default();
    }

    /// Takes the datagrams waiting on the notify socket, at most [`NOTIFY_BUDGET`], into
    /// `datagrams` (fed by [`Self::feed_notify`] once the pipes are read); sets `more` if
    /// it stopped with some left. Returns whether any arrived.
    pub(super) fn receive_notify(
        &mut self,
        cx: &mut Context<'_>,
        more: &mut bool,
        datagrams: &mut Vec<Vec<u8>>,
    ) -> bool {
        if self.spawning.is_some() {
            // Datagrams wait in the socket until the spawn's answer says who the pod is:
            // the child may send before its spawn has returned.
            return false;
        }
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
                    datagrams.push(datagram.bytes.to_vec());
                    progressed = true;
                }
                Poll::Ready(Err(_)) | Poll::Pending => return progressed,
            }
        }
        *more = true;
        progressed
    }

    /// Feeds datagrams taken by [`Self::receive_notify`]. They are taken before the pipes
    /// are read and fed after: what the pod wrote before a datagram was in a pipe when the
    /// datagram was taken, so its lines come first (`READY=1` never overtakes the line
    /// printed before it).
    pub(super) fn feed_notify(&mut self, datagrams: Vec<Vec<u8>>) {
        let generation = self.shared.generation();
        for datagram in datagrams {
            self.feed_input(Event::Notify {
                generation,
                datagram: &datagram,
            });
        }
    }

    /// Counts the bytes of `stream` read but not queued yet as queued (see
    /// [`forward::Sink::reserve`]).
    fn reserve_unsent(&mut self, stream: Stream) {
        let sink = forward::sink(self.config.forward_stream(stream));
        if let Some(pipe) = self.pipe(stream) {
            let new = pipe.unsent.len().saturating_sub(pipe.reserved);
            sink.reserve(new);
            pipe.reserved += new;
        }
    }

    pub(super) fn pipe(&mut self, stream: Stream) -> Option<&mut OutputPipe> {
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
    pub(super) fn poll_output(
        &mut self,
        cx: &mut Context<'_>,
        stream: Stream,
        budget: &mut usize,
        force: bool,
    ) -> bool {
        let sink = forward::sink(self.config.forward_stream(stream));
        let log = self.shared.outer_events().clone();
        let mut progressed = false;
        loop {
            let Some(pipe) = self.pipe(stream) else {
                return progressed;
            };
            if !pipe.unsent.is_empty() {
                let after = || {
                    Some(forward::After {
                        log: log.clone(),
                        count: pipe.unsent_after,
                        deadline: std::time::Instant::now() + forward::ORDER_LIMIT,
                    })
                };
                if force {
                    sink.send_now(&pipe.unsent, pipe.reserved, after());
                } else if sink
                    .poll_send(cx, &pipe.unsent, pipe.reserved, after)
                    .is_pending()
                {
                    return progressed;
                }
                pipe.unsent.clear();
                pipe.reserved = 0;
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
            // Output read from here on comes after the events appended so far.
            pipe.unsent_after = log.count();
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
    pub(super) fn take_lines(&mut self, stream: Stream, lines: &Lines, prefixed: bool) {
        self.reserve_unsent(stream);
        if lines.ends.is_empty() {
            return;
        }
        // Only the newest lines are kept: skip the others without building them.
        let skip = lines.ends.len().saturating_sub(self.config.last_lines);
        self.shared.push_lines(lines.iter().skip(skip));
        if let Some(tap) = &self.config.tap {
            for line in lines.iter() {
                (tap.0)(stream, line);
            }
        }
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
        // What was read counts as queued before the readiness checks see its lines: the
        // event they may cause comes after this output, on the terminal too.
        self.reserve_unsent(stream);
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
    pub(super) fn drain_buffered(&mut self) {
        let mut datagrams = Vec::new();
        for _ in 0..NOTIFY_BUDGET {
            let Some(Ok(Some(datagram))) = self.notify.as_mut().map(|s| s.try_recv()) else {
                break;
            };
            if !datagram.from_pod {
                self.shared.count_notify_from_outside();
                continue;
            }
            datagrams.push(datagram.bytes.to_vec());
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for stream in [Stream::Stdout, Stream::Stderr] {
            let mut budget = DRAIN_BUDGET;
            self.poll_output(&mut cx, stream, &mut budget, true);
            let sink = forward::sink(self.config.forward_stream(stream));
            let log = self.shared.outer_events().clone();
            if let Some(pipe) = self.pipe(stream) {
                let after = forward::After {
                    log,
                    count: pipe.unsent_after,
                    deadline: std::time::Instant::now() + forward::ORDER_LIMIT,
                };
                sink.send_now(&pipe.unsent, pipe.reserved, Some(after));
                pipe.unsent.clear();
                pipe.reserved = 0;
            }
        }
        self.feed_notify(datagrams);
    }

    pub(super) fn poll_exit(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(status) = self.status.as_mut() else {
            return false;
        };
        // Polling the exit costs a `wait4`: only when the reaper said something changed
        // (or on the first poll), not on every wake-up of the driver.
        let Some(waker) = self.exit_waker.take_due(cx.waker()) else {
            return false;
        };
        let Poll::Ready(result) = status.as_mut().poll(&mut Context::from_waker(&waker)) else {
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
}

/// Wakes the driver when the exit future's waker fires, and remembers that it did, so the
/// future is polled only then.
#[derive(Default)]
pub(super) struct ExitWaker(std::sync::Arc<ExitWake>);

#[derive(Default)]
struct ExitWake {
    /// Not woken since the last poll.
    quiet: std::sync::atomic::AtomicBool,
    driver: std::sync::Mutex<Option<std::task::Waker>>,
}

impl std::task::Wake for ExitWake {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.quiet
            .store(false, std::sync::atomic::Ordering::Release);
        let driver = crate::handle::lock(&self.driver).clone();
        if let Some(driver) = driver {
            driver.wake();
        }
    }
}

impl ExitWaker {
    /// The waker to poll the exit future with, if it is due for a poll.
    fn take_due(&self, driver: &std::task::Waker) -> Option<std::task::Waker> {
        {
            let mut slot = crate::handle::lock(&self.0.driver);
            if !slot.as_ref().is_some_and(|w| w.will_wake(driver)) {
                *slot = Some(driver.clone());
            }
        }
        if self.0.quiet.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return None;
        }
        Some(std::task::Waker::from(self.0.clone()))
    }
}
