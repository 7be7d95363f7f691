//! What a pod runs and how: [`PodConfig`].

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::core::{self, HealthCheck, ProbeSchedule, Stream};
use crate::Signal;

mod compile;
mod error;
mod readiness;

pub use error::ConfigError;
pub use readiness::Readiness;

/// How often a probe of a target on this machine is tried.
const LOCAL_PROBE_INTERVAL: Duration = Duration::from_millis(15);

/// What happens to one of the child's output streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// Read it and keep only the last lines (for error reports). The default.
    Capture,
    /// Read it, keep the last lines, and copy each line to podvisor's own stream prefixed
    /// with `[name] `.
    Forward,
    /// Let the child write straight to podvisor's own stream. No lines are kept, and a
    /// readiness check on this stream then forwards instead.
    Inherit,
    /// Send it to `/dev/null`. A readiness check on this stream then captures instead.
    Discard,
}

/// What the child reads on standard input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    /// `/dev/null`, the default: a background process group reading a terminal would be
    /// stopped by SIGTTIN.
    Null,
    /// podvisor's own standard input.
    Inherit,
}

/// Everything needed to run one pod: the command, its environment and I/O, readiness,
/// timeouts and how to stop it.
///
/// # Examples
///
/// ```
/// use podvisor::{PodConfig, Readiness, Signal};
/// use std::time::Duration;
///
/// let config = PodConfig::new("redis-server")
///     .args(["--port", "6380"])
///     .name("cache")
///     .env("LC_ALL", "C")
///     .ready(Readiness::Stdout("Ready to accept connections".into()))
///     .timeout_ready(Some(Duration::from_secs(10)))
///     .grace(Duration::from_secs(3))
///     .stop_signal(Signal::INT);
/// assert_eq!(config.get_name(), "cache");
/// ```
#[derive(Clone, Debug)]
pub struct PodConfig {
    pub(crate) name: String,
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) env_clear: bool,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) readiness: Vec<Readiness>,
    pub(crate) timeout_ready: Option<Duration>,
    pub(crate) grace: Duration,
    pub(crate) stop_signal: Signal,
    pub(crate) stdin: Input,
    pub(crate) stdout: Output,
    pub(crate) stderr: Output,
    pub(crate) last_lines: usize,
    /// The readiness probes' schedule, when set; otherwise chosen per target.
    pub(crate) ready_schedule: Option<ProbeSchedule>,
    /// The readiness probes' attempt timeout, when set.
    pub(crate) ready_timeout: Option<Duration>,
    /// Health checks (probe kinds only) and their common schedule.
    pub(crate) health: Vec<Readiness>,
    pub(crate) health_schedule: HealthCheck,
    pub(crate) watchdog: Option<Duration>,
    pub(crate) watchdog_signal: Signal,
    /// The pod leads a process group of its own (the default), rather than sharing
    /// podvisor's (`foreground`).
    pub(crate) own_group: bool,
    pub(crate) started_by: core::StartedBy,
    pub(crate) prefix: Option<String>,
    /// Both streams are forwarded to podvisor's standard output.
    pub(crate) forward_to_stdout: bool,
    pub(crate) death_signal: bool,
    pub(crate) host: Host,
    pub(crate) tap: Option<OutputTap>,
    /// A deliberate bug in the pod's core (tests only).
    #[cfg(feature = "oracles")]
    pub(crate) mutation: Option<core::Mutation>,
}

/// A function given every line the child writes on a captured or forwarded stream; see
/// [`PodConfig::output_tap`].
#[derive(Clone)]
pub(crate) struct OutputTap(pub(crate) std::sync::Arc<TapFn>);

type TapFn = dyn Fn(core::Stream, &[u8]) + Send + Sync;

impl fmt::Debug for OutputTap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OutputTap")
    }
}

/// What a pod runs.
#[derive(Clone)]
pub(crate) enum Host {
    /// A child process running the program.
    Command,
    /// A runtime on a thread of its own.
    Thread(crate::runtime::RuntimeFactory),
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Command => write!(f, "Command"),
            Host::Thread(_) => write!(f, "Thread"),
        }
    }
}

impl PodConfig {
    /// A pod running `program` (looked up in `PATH` like `std::process::Command`), named
    /// after it, ready as soon as it runs, with a 600 s ready timeout, a 10 s grace period
    /// and SIGTERM as its stop signal.
    pub fn new(program: impl Into<OsString>) -> PodConfig {
        let program = program.into();
        let name = PathBuf::from(&program)
            .file_name()
            .map_or_else(|| "pod".to_string(), |n| n.to_string_lossy().into_owned());
        PodConfig {
            name,
            program,
            args: Vec::new(),
            env: Vec::new(),
            env_clear: false,
            cwd: None,
            readiness: Vec::new(),
            timeout_ready: Some(core::DEFAULT_TIMEOUT_READY),
            grace: core::DEFAULT_GRACE,
            stop_signal: Signal::TERM,
            stdin: Input::Null,
            stdout: Output::Capture,
            stderr: Output::Capture,
            last_lines: 20,
            ready_schedule: None,
            ready_timeout: None,
            health: Vec::new(),
            health_schedule: HealthCheck::default(),
            watchdog: None,
            watchdog_signal: Signal::ABRT,
            own_group: true,
            started_by: core::StartedBy::Exec,
            prefix: None,
            forward_to_stdout: false,
            tap: None,
            death_signal: true,
            host: Host::Command,
            #[cfg(feature = "oracles")]
            mutation: None,
        }
    }

    /// Runs the pod on a deliberately wrong core, for proving that a test catches the
    /// bug against a real process. Tests only.
    #[cfg(feature = "oracles")]
    #[doc(hidden)]
    pub fn mutation(mut self, mutation: core::Mutation) -> Self {
        self.mutation = Some(mutation);
        self
    }

    /// The pod's name, used in messages and as the prefix of forwarded lines.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The pod's name.
    pub fn get_name(&self) -> &str {
        &self.name
    }

    /// The program.
    pub fn get_program(&self) -> &std::ffi::OsStr {
        &self.program
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the child (podvisor's own environment is never
    /// changed).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Starts the child from an empty environment instead of podvisor's.
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self
    }

    /// The child's working directory.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Adds a readiness check. With none, the pod is ready as soon as it runs.
    pub fn ready(mut self, readiness: Readiness) -> Self {
        self.readiness.push(readiness);
        self
    }

    /// How long the pod may take to become ready; `None` waits forever. When it runs out
    /// the pod is closed and its start result is `TimedOut`.
    pub fn timeout_ready(mut self, timeout: Option<Duration>) -> Self {
        self.timeout_ready = timeout;
        self
    }

    /// Time between the stop signal and SIGKILL.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The signal that asks the pod to stop (SIGTERM by default).
    pub fn stop_signal(mut self, signal: Signal) -> Self {
        self.stop_signal = signal;
        self
    }

    /// The grace period.
    pub fn get_grace(&self) -> Duration {
        self.grace
    }

    /// The stop signal.
    pub fn get_stop_signal(&self) -> Signal {
        self.stop_signal
    }

    /// Standard input.
    pub fn stdin(mut self, input: Input) -> Self {
        self.stdin = input;
        self
    }

    /// Standard output.
    pub fn stdout(mut self, output: Output) -> Self {
        self.stdout = output;
        self
    }

    /// Standard error.
    pub fn stderr(mut self, output: Output) -> Self {
        self.stderr = output;
        self
    }

    /// The text put before each forwarded line ([`Output::Forward`]); `[name] ` unless set.
    pub fn forward_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Forwards the child's standard error ([`Output::Forward`]) to podvisor's standard
    /// output too, in the order the driver read it, so that podvisor's standard error
    /// carries podvisor's own lines only (what the `podvisor` command does with `--json`).
    /// Off by default: each stream goes to its own.
    pub fn forward_to_stdout(mut self, on: bool) -> Self {
        self.forward_to_stdout = on;
        self
    }

    /// podvisor's own stream that forwarded output of `stream` goes to.
    pub(crate) fn forward_stream(&self, stream: Stream) -> Stream {
        if self.forward_to_stdout {
            Stream::Stdout
        } else {
            stream
        }
    }

    pub(crate) fn get_prefix(&self) -> String {
        self.prefix
            .clone()
            .unwrap_or_else(|| format!("[{}] ", self.name))
    }

    /// Whether the kernel kills the pod's leader (SIGKILL) if the supervising process dies
    /// without closing it (Linux `PR_SET_PDEATHSIG`; on by default). Only the leader gets
    /// it, not its own children. Turning it off lets the spawn use `posix_spawn` instead of
    /// `fork`, about 0.2 ms faster.
    pub fn kill_on_supervisor_death(mut self, on: bool) -> Self {
        self.death_signal = on;
        self
    }

    /// How often the readiness probes (`tcp:`, `http://`, `file:`, `exec:`) try: every
    /// `interval` (the first retry after at most 10 ms). By default a target on this machine
    /// (`localhost`, `127.0.0.0/8`, `::1`) is tried every 15 ms, so a server is seen ready
    /// within milliseconds of listening however late it starts, for a fraction of a percent
    /// of a core; other targets back off from 10 ms, doubling to 1 s. Each attempt may take
    /// up to 1 s.
    ///
    /// ```
    /// use podvisor::{PodConfig, Readiness};
    /// use std::time::Duration;
    ///
    /// let config = PodConfig::new("db")
    ///     .ready("tcp:db.internal:5432".parse().unwrap())
    ///     .ready_interval(Duration::from_millis(250));
    /// ```
    pub fn ready_interval(mut self, interval: Duration) -> Self {
        self.ready_schedule = Some(ProbeSchedule {
            initial_interval: interval.min(Duration::from_millis(10)),
            max_interval: interval,
            attempt_timeout: ProbeSchedule::default().attempt_timeout,
        });
        self
    }

    /// How long one attempt of a readiness probe may take (1 s by default).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = Some(timeout);
        self
    }

    /// Adds a health check, run from the instant the pod is ready until it stops:
    /// `tcp:`, `http://`, `exec:` or `file:` (the same syntax as readiness). When one fails
    /// [`health_retries`](PodConfig::health_retries) times in a row the pod is unhealthy:
    /// it is closed the usual way and ends [`End::Unhealthy`](crate::End::Unhealthy).
    ///
    /// ```
    /// use podvisor::PodConfig;
    /// use std::time::Duration;
    ///
    /// let config = PodConfig::new("web")
    ///     .ready("tcp:127.0.0.1:8080".parse().unwrap())
    ///     .health("http://127.0.0.1:8080/health".parse().unwrap())
    ///     .health_interval(Duration::from_secs(5))
    ///     .health_retries(2);
    /// ```
    pub fn health(mut self, check: Readiness) -> Self {
        self.health.push(check);
        self
    }

    /// Time between the starts of two attempts of each health check (10 s by default).
    pub fn health_interval(mut self, interval: Duration) -> Self {
        self.health_schedule.interval = interval;
        self
    }

    /// How long one health attempt may take before it counts as failed (5 s by default);
    /// an `exec:` attempt that runs over is killed with its process group.
    pub fn health_timeout(mut self, timeout: Duration) -> Self {
        self.health_schedule.timeout = timeout;
        self
    }

    /// Consecutive failures of one health check that make the pod unhealthy (3 by
    /// default).
    pub fn health_retries(mut self, retries: u32) -> Self {
        self.health_schedule.retries = retries;
        self
    }

    /// Consecutive successes before a health check first passes (1 by default).
    pub fn health_successes(mut self, successes: u32) -> Self {
        self.health_schedule.successes = successes;
        self
    }

    /// Time after ready during which health failures do not count, until a check first
    /// succeeds (0 by default).
    pub fn health_start_period(mut self, period: Duration) -> Self {
        self.health_schedule.start_period = period;
        self
    }

    /// The notify watchdog (systemd's `WatchdogSec=`): the pod gets a notify socket,
    /// `WATCHDOG_USEC` and `WATCHDOG_PID` (the leader's pid: `sd_watchdog_enabled()`
    /// ignores the watchdog in any other process, so a wrapper script must `exec` the
    /// program). Once ready it must send `WATCHDOG=1` more often than `interval`; when it
    /// does not, or sends `WATCHDOG=trigger`, it is unhealthy: it gets the watchdog signal
    /// (SIGABRT unless [`watchdog_signal`](PodConfig::watchdog_signal) says otherwise),
    /// then the grace period and SIGKILL. `WATCHDOG_USEC=N` changes the interval (0 turns
    /// the watchdog off), `EXTEND_TIMEOUT_USEC=N` pushes the deadline to at least now + N,
    /// `STOPPING=1` turns it off. Process pods only.
    pub fn watchdog(mut self, interval: Duration) -> Self {
        self.watchdog = Some(interval);
        self
    }

    /// Runs the pod in podvisor's own process group instead of a group of its own, as GNU
    /// `timeout --foreground` does: on a terminal it then reads the terminal and gets its
    /// signals (Ctrl-C, Ctrl-Z stopping it and podvisor together, window changes) as if run
    /// directly. Its signals (stop, SIGKILL) go to its leader alone, and what it started is
    /// swept through its cgroup where pods get one (not through a process group). Process
    /// pods only.
    pub fn foreground(mut self, on: bool) -> Self {
        self.own_group = !on;
        self
    }

    /// The signal sent when the watchdog expires (SIGABRT by default).
    pub fn watchdog_signal(mut self, signal: Signal) -> Self {
        self.watchdog_signal = signal;
        self
    }

    /// Calls `tap` with every line the child writes on a stream that is captured or
    /// forwarded (without its terminator; lines longer than 4096 bytes come in pieces), as
    /// it is read. It is called on podvisor's driver thread, which reads every pod: it must
    /// return at once (queue the line, never wait for a reader).
    pub fn output_tap(mut self, tap: impl Fn(core::Stream, &[u8]) + Send + Sync + 'static) -> Self {
        self.tap = Some(OutputTap(std::sync::Arc::new(tap)));
        self
    }

    /// How many of the last output lines to keep (20 by default).
    pub fn last_lines(mut self, count: usize) -> Self {
        self.last_lines = count;
        self
    }

    /// The child is a runtime hosted by [`runtime::serve`](crate::runtime::serve): it counts
    /// as started only when it reports so on the notify socket (an exit before that is
    /// `FailedToStart` with the child's error text), and is ready on `READY=1` unless other
    /// readiness checks are given.
    pub fn hosted_runtime(mut self) -> Self {
        self.started_by = core::StartedBy::Notify;
        if self.readiness.is_empty() {
            self.readiness.push(Readiness::Notify);
        }
        self
    }

    /// A pod hosting a runtime on a thread of its own (see [`crate::runtime`] for the
    /// contract). `make` builds the runtime on that thread; a failure there counts as a
    /// setup failure. The pod has the same states and outcomes as a process pod: the stop
    /// signal becomes [`Runtime::cancel`](crate::runtime::Runtime::cancel), and a runtime
    /// still running when the grace period ends is reported `Killed` and left detached.
    ///
    /// ```
    /// use podvisor::runtime::{Runtime, RuntimeContext, RuntimeError};
    /// use podvisor::{End, ExitStatus, Pod, PodConfig};
    ///
    /// struct Idle;
    /// impl Runtime for Idle {
    ///     fn setup(&self, _: &RuntimeContext) -> Result<(), RuntimeError> { Ok(()) }
    ///     fn run_forever(&self, ctx: &RuntimeContext) -> Result<(), RuntimeError> {
    ///         ctx.wait_cancelled();
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let pod = Pod::new(PodConfig::thread("idle", || Ok(Idle))).unwrap();
    /// pod.start_and_wait_blocking().unwrap();
    /// assert_eq!(pod.close_blocking(), End::Closed(ExitStatus::Code(0)));
    /// ```
    pub fn thread<R, F>(name: impl Into<String>, make: F) -> PodConfig
    where
        R: crate::runtime::Runtime,
        F: Fn() -> Result<R, crate::runtime::RuntimeError> + Send + Sync + 'static,
    {
        let name = name.into();
        let mut config = PodConfig::new(name.clone()).name(name).hosted_runtime();
        config.host = Host::Thread(std::sync::Arc::new(move || {
            make().map(|r| Box::new(r) as Box<dyn crate::runtime::Runtime>)
        }));
        config
    }

    pub(crate) fn uses_notify(&self) -> bool {
        if matches!(self.host, Host::Thread(_)) {
            return false;
        }
        self.started_by == core::StartedBy::Notify
            || self.readiness.contains(&Readiness::Notify)
            || self.watchdog.is_some()
    }

    pub(crate) fn watches(&self, stream: Stream) -> bool {
        self.readiness.iter().any(|r| {
            matches!(
                (r, stream),
                (Readiness::Stdout(_), Stream::Stdout) | (Readiness::Stderr(_), Stream::Stderr)
            )
        })
    }

    /// The effective handling of `stream` given the readiness checks.
    pub(crate) fn output(&self, stream: Stream) -> Output {
        let configured = match stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        };
        match (configured, self.watches(stream)) {
            (Output::Inherit, true) => Output::Forward,
            (Output::Discard, true) => Output::Capture,
            (other, _) => other,
        }
    }
}
