//! Process pods: preparing the command, the spawn's answer from the spawning thread, the
//! notify socket, the output pipes (forwarded with back-pressure, split into lines), the
//! process group's signals, and the exit.

use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};

use futures_lite::io::AsyncRead;

use crate::config::{Input, Output};
use crate::core::{Event, ExitStatus, Stream};
use crate::forward;
use crate::notify_socket::NotifySocket;
use crate::os;
use crate::output::{ChunkReader, LineSplitter};
use crate::Signal;

use super::Driver;

/// A child's output pipe.
type Pipe = Box<dyn AsyncRead + Send + Unpin>;

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

/// What the spawning thread answers: the child and its cgroup.
pub(super) type SpawnAnswer = io::Result<(Spawned, Option<crate::cgroup::PodCgroup>)>;

/// A child the spawning thread started: its pid, its output pipes, its exit.
pub(super) struct Spawned {
    pid: u32,
    /// Its pidfd, when the spawn made one.
    pidfd: Option<std::os::fd::OwnedFd>,
    stdout: Option<Pipe>,
    stderr: Option<Pipe>,
    status: StatusFuture,
}

impl Spawned {
    fn from_std(mut child: async_process::Child) -> Spawned {
        Spawned {
            pid: child.id(),
            pidfd: None,
            stdout: child.stdout.take().map(|p| Box::new(p) as Pipe),
            stderr: child.stderr.take().map(|p| Box::new(p) as Pipe),
            status: Box::pin(child.status()),
        }
    }

    /// A child of podvisor's own spawn: its exit is seen on its pidfd.
    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
    fn from_clone(child: os::clone::Child) -> io::Result<Spawned> {
        let pipe = |fd: Option<std::os::fd::OwnedFd>| -> io::Result<Option<Pipe>> {
            fd.map(|fd| Ok(Box::new(async_io::Async::new(std::fs::File::from(fd))?) as Pipe))
                .transpose()
        };
        let os::clone::Child {
            pid,
            pidfd,
            stdout,
            stderr,
            ..
        } = child;
        let watched = (|| {
            let exit = async_io::Async::new(pidfd.try_clone()?)?;
            Ok::<_, io::Error>((exit, pipe(stdout)?, pipe(stderr)?))
        })();
        let (exit, stdout, stderr) = match watched {
            Ok(watched) => watched,
            Err(error) => {
                // Out of descriptors, say: a child nobody would watch is not left running.
                os::clone::discard(pid, &pidfd);
                crate::reaper::release(pid);
                return Err(error);
            }
        };
        let exit = Reaped(Some(exit), pid);
        Ok(Spawned {
            pid,
            pidfd: Some(pidfd),
            stdout,
            stderr,
            status: Box::pin(async move {
                let mut exit = exit;
                let status = exit.wait().await;
                exit.0 = None;
                status
            }),
        })
    }
}

/// The pidfd of a child of podvisor's own spawn (and its pid), until its exit status is
/// taken. Dropped before that (the pod abandoned), the child is reaped by a thread of its
/// own once it ends, so that it never stays a zombie, and its pid is released to the
/// orphan reaper.
#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
struct Reaped(Option<async_io::Async<std::os::fd::OwnedFd>>, u32);

#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
impl Reaped {
    async fn wait(&mut self) -> io::Result<std::process::ExitStatus> {
        let Some(fd) = &self.0 else {
            return Err(io::Error::other("the exit status was taken already"));
        };
        loop {
            if let Some(status) = os::clone::try_wait(std::os::fd::AsFd::as_fd(fd.get_ref()))? {
                return Ok(status);
            }
            fd.readable().await?;
        }
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
impl Drop for Reaped {
    fn drop(&mut self) {
        let Some(fd) = self.0.take() else { return };
        let pid = self.1;
        let Ok(fd) = fd.into_inner() else { return };
        let reaped = os::clone::try_wait(std::os::fd::AsFd::as_fd(&fd));
        if matches!(reaped, Ok(None)) {
            let _ = std::thread::Builder::new()
                .name("podvisor-reap".into())
                .spawn(move || {
                    let _ = rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::empty());
                    let _ = rustix::process::waitid(
                        rustix::process::WaitId::PidFd(std::os::fd::AsFd::as_fd(&fd)),
                        rustix::process::WaitIdOptions::EXITED,
                    );
                    crate::reaper::release(pid);
                });
        } else {
            crate::reaper::release(pid);
        }
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
    pub(super) fn adopt(&mut self, child: Spawned, cgroup: Option<crate::cgroup::PodCgroup>) {
        let pid = child.pid;
        if let Some(socket) = self.notify.as_mut() {
            socket.set_pod(pid, cgroup.as_ref().map(|c| c.procs_path()));
        }
        self.pgid = Some(pid);
        self.cgroup = cgroup;
        if self.config.own_group {
            crate::keeper::watch_group(pid);
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

    /// Feeds the datagrams waiting on the notify socket, at most [`NOTIFY_BUDGET`]; sets
    /// `more` if it stopped with some left. Returns whether any arrived.
    pub(super) fn poll_notify(&mut self, cx: &mut Context<'_>, more: &mut bool) -> bool {
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

/// How one spawn is made (on the spawning thread).
pub(super) struct SpawnPlan {
    pub(super) command: std::process::Command,
    pub(super) env_clear: bool,
    pub(super) death_signal: bool,
    pub(super) stdin: Input,
    pub(super) stdout: Output,
    pub(super) stderr: Output,
    /// The leader learns its own pid (`WATCHDOG_PID`).
    pub(super) own_pid: bool,
    pub(super) own_group: bool,
}

/// On the spawning thread: the pod's cgroup, then the child, born in it by podvisor's own
/// spawn where it can be (see `os::clone`), otherwise forked by the standard library and
/// joining it before exec. The child is registered as one podvisor waits for itself
/// before the orphan reaper can look at it. `PODVISOR_SPAWN=std` always uses the standard
/// library.
pub(super) fn spawn_process(plan: SpawnPlan) -> SpawnAnswer {
    let SpawnPlan {
        mut command,
        env_clear,
        death_signal,
        stdin,
        stdout,
        stderr,
        own_pid,
        own_group,
    } = plan;
    crate::keeper::ensure();
    let cgroup = crate::cgroup::PodCgroup::new();
    let exec = os::ExecPlan::new(&command, env_clear, own_pid);
    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
    if let Some(exec) = exec.as_ref().filter(|_| own_spawn()) {
        use std::os::unix::ffi::OsStrExt;
        let cwd = match command.get_current_dir() {
            Some(dir) => std::ffi::CString::new(dir.as_os_str().as_bytes()).ok(),
            None => None,
        };
        if cwd.is_some() || command.get_current_dir().is_none() {
            let stdio = |output: Output| match output {
                Output::Capture | Output::Forward => os::clone::Stdio::Pipe,
                Output::Inherit => os::clone::Stdio::Inherit,
                Output::Discard => os::clone::Stdio::Null,
            };
            let request = os::clone::Request {
                plan: exec,
                stdin: match stdin {
                    Input::Null => os::clone::Stdio::Null,
                    Input::Inherit => os::clone::Stdio::Inherit,
                },
                stdout: stdio(stdout),
                stderr: stdio(stderr),
                cwd: cwd.as_deref(),
                own_group,
                death_signal,
                cgroup: cgroup.as_ref().map(|c| c.dir_fd()),
            };
            let spawned = crate::reaper::spawn_claimed(
                || os::clone::spawn(&request),
                |child| child.as_ref().map(|c| c.pid),
            )?;
            if let Some(child) = spawned {
                let cgroup = cgroup.filter(|_| child.in_cgroup);
                return Ok((Spawned::from_clone(child)?, cgroup));
            }
        }
    }
    os::prepare_command(
        &mut command,
        death_signal,
        cgroup
            .as_ref()
            .map(|c| std::os::fd::AsRawFd::as_raw_fd(&c.procs())),
        exec.filter(|_| own_pid),
        own_group,
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
    let child = crate::reaper::spawn_claimed(|| command.spawn(), |child| Some(child.id()))?;
    // Joining happens in the child, which cannot report a failure (a delegation that does
    // not reach podvisor's own cgroup, say): a pod outside its cgroup must not be taken
    // for contained.
    let cgroup = cgroup.filter(|c| c.holds(child.id()));
    Ok((Spawned::from_std(child), cgroup))
}

/// Whether podvisor's own spawn is used (`PODVISOR_SPAWN=std` turns it off).
#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
fn own_spawn() -> bool {
    static OWN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OWN.get_or_init(|| {
        std::env::var_os("PODVISOR_SPAWN").is_none_or(|v| v != "std") && kernel_has_clone3()
    })
}

/// Linux 5.7 or later: `CLONE_INTO_CGROUP`, and a `clone3` that places the child's stack
/// right (unpatched 5.3 and 5.4 did not).
#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
fn kernel_has_clone3() -> bool {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (5, 7)
}

fn stdio(output: Output) -> Stdio {
    match output {
        Output::Capture | Output::Forward => Stdio::piped(),
        Output::Inherit => Stdio::inherit(),
        Output::Discard => Stdio::null(),
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
