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
    Action, Event, ExitStatus, Generation, GroupSignal, SpawnError, SpawnErrorKind, Stream, Time,
};
use crate::notify_socket::NotifySocket;
use crate::os;
use crate::output::LineReader;
use crate::pod::{Request, Shared, ThreadMessage};
use crate::probe::Attempt;
use crate::runtime::CancelSlot;
use crate::{PodConfig, Signal};

/// A child's output pipe.
type Pipe = Box<dyn AsyncRead + Send + Unpin>;

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
    stdout: Option<LineReader<Pipe>>,
    stderr: Option<LineReader<Pipe>>,
    timer: Timer,
    timer_at: Option<Instant>,
    pgid: Option<u32>,
    /// The runtime of a thread pod, for cancelling it.
    thread: Option<Arc<CancelSlot>>,
    /// Put before forwarded lines.
    prefix: String,
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
            timer: Timer::never(),
            timer_at: None,
            pgid: None,
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
                        Ok(()) => self.shared.handle(Event::Spawned { generation }, now),
                        Err(error) => self
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
                    // Record what outlived the leader (orphaned zombies excepted), then kill it.
                    if let Some(pgid) = self.pgid.filter(|&g| os::group_exists(g)) {
                        self.shared.set_leftovers(os::group_members(pgid).len());
                    }
                    self.signal_group(Signal::KILL);
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

    fn spawn(&mut self, _generation: Generation) -> Result<(), SpawnError> {
        match self.try_spawn() {
            Ok(()) => Ok(()),
            Err(error) => {
                let kind = match error.kind() {
                    io::ErrorKind::NotFound => SpawnErrorKind::NotFound,
                    io::ErrorKind::PermissionDenied => SpawnErrorKind::PermissionDenied,
                    _ => SpawnErrorKind::Other,
                };
                let errno = error.raw_os_error();
                self.shared.set_spawn_error(error.to_string());
                Err(SpawnError { kind, errno })
            }
        }
    }

    fn try_spawn(&mut self) -> io::Result<()> {
        if let Host::Thread(factory) = &self.config.host {
            let factory = factory.clone();
            return self.spawn_thread(factory);
        }
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
        os::prepare_command(&mut command, config.death_signal);
        let mut command = async_process::Command::from(command);
        command.stdin(match config.stdin {
            Input::Null => Stdio::null(),
            Input::Inherit => Stdio::inherit(),
        });
        command.stdout(stdio(config.output(Stream::Stdout)));
        command.stderr(stdio(config.output(Stream::Stderr)));
        // podvisor reaps and kills through the core's actions, never implicitly on drop.
        command.kill_on_drop(false);
        let mut child = command.spawn()?;
        self.pgid = Some(child.id());
        self.shared.set_pid(child.id());
        self.stdout = child
            .stdout
            .take()
            .map(|p| LineReader::new(Box::new(p) as Pipe));
        self.stderr = child
            .stderr
            .take()
            .map(|p| LineReader::new(Box::new(p) as Pipe));
        self.status = Some(Box::pin(child.status()));
        Ok(())
    }

    /// Feeds every datagram waiting on the notify socket. Returns whether any arrived.
    fn poll_notify(&mut self, cx: &mut Context<'_>) -> bool {
        let generation = self.shared.generation();
        let mut progressed = false;
        loop {
            let Some(socket) = self.notify.as_mut() else {
                return progressed;
            };
            match socket.poll_recv(cx) {
                Poll::Ready(Ok(datagram)) => {
                    let datagram = datagram.to_vec();
                    self.feed(Event::Notify {
                        generation,
                        datagram: &datagram,
                    });
                    progressed = true;
                }
                Poll::Ready(Err(_)) | Poll::Pending => return progressed,
            }
        }
    }

    /// Feeds every line waiting on `stream`. Returns whether any arrived.
    fn poll_output(&mut self, cx: &mut Context<'_>, stream: Stream) -> bool {
        let generation = self.shared.generation();
        let watched = self.config.watches(stream);
        let forward = self.config.output(stream) == Output::Forward;
        let mut progressed = false;
        loop {
            let reader = match stream {
                Stream::Stdout => self.stdout.as_mut(),
                Stream::Stderr => self.stderr.as_mut(),
            };
            let Some(reader) = reader else {
                return progressed;
            };
            let line = match reader.poll_line(cx) {
                Poll::Ready(Some(line)) => line.to_vec(),
                Poll::Ready(None) => {
                    match stream {
                        Stream::Stdout => self.stdout = None,
                        Stream::Stderr => self.stderr = None,
                    }
                    return progressed;
                }
                Poll::Pending => return progressed,
            };
            progressed = true;
            if forward {
                forward_line(&self.prefix, stream, &line);
            }
            self.shared.push_line(&line);
            if watched {
                self.feed(Event::OutputLine {
                    generation,
                    stream,
                    line: &line,
                });
            }
        }
    }

    /// What is already buffered when the leader exits still counts (a `READY=1` sent just
    /// before exiting): drain it without waiting.
    fn drain_buffered(&mut self) {
        let generation = self.shared.generation();
        while let Some(Ok(Some(datagram))) = self.notify.as_mut().map(|s| s.try_recv()) {
            let datagram = datagram.to_vec();
            self.feed(Event::Notify {
                generation,
                datagram: &datagram,
            });
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while self.poll_output(&mut cx, Stream::Stdout) {}
        while self.poll_output(&mut cx, Stream::Stderr) {}
    }

    fn poll_exit(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(status) = self.status.as_mut() else {
            return false;
        };
        let Poll::Ready(result) = status.as_mut().poll(cx) else {
            return false;
        };
        self.status = None;
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
        self.feed(Event::Exited { generation, status });
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
            self.feed(Event::ProbeFinished {
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

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.shared.set_driver_waker(cx.waker());
        loop {
            let mut progressed = false;
            for request in this.shared.take_requests() {
                progressed = true;
                let event = match request {
                    Request::Start => Event::Start,
                    Request::Close(grace) => Event::Close { grace },
                };
                this.feed(event);
            }
            progressed |= this.poll_notify(cx);
            progressed |= this.poll_output(cx, Stream::Stdout);
            progressed |= this.poll_output(cx, Stream::Stderr);
            progressed |= this.poll_probes(cx);
            progressed |= this.poll_thread();
            progressed |= this.poll_exit(cx);
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
            if !progressed {
                return Poll::Pending;
            }
        }
    }
}

fn stdio(output: Output) -> Stdio {
    match output {
        Output::Capture | Output::Forward => Stdio::piped(),
        Output::Inherit => Stdio::inherit(),
        Output::Discard => Stdio::null(),
    }
}

fn forward_line(prefix: &str, stream: Stream, line: &[u8]) {
    use std::io::Write;
    let mut text = Vec::with_capacity(prefix.len() + line.len() + 1);
    text.extend_from_slice(prefix.as_bytes());
    text.extend_from_slice(line);
    text.push(b'\n');
    // Losing a forwarded line (closed terminal) must not disturb the pod.
    let _ = match stream {
        Stream::Stdout => std::io::stdout().lock().write_all(&text),
        Stream::Stderr => std::io::stderr().lock().write_all(&text),
    };
}
