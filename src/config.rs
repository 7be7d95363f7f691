//! What a pod runs and how: [`PodConfig`].

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::core::{self, Check, PodSpec, Stream};
use crate::Signal;

/// How the pod decides it is ready. Several may be given; all must succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Readiness {
    /// `READY=1` on the notify socket named by `NOTIFY_SOCKET` (systemd's protocol; works
    /// with `systemd-notify --ready`, libsystemd's `sd_notify` and the `sd-notify` crates).
    Notify,
    /// A line on standard output containing this text. Programs that block-buffer their
    /// output into a pipe (C stdio, Python) must be run unbuffered for the line to arrive
    /// in time (`PYTHONUNBUFFERED=1`, `stdbuf -oL`).
    Stdout(String),
    /// A line on standard error containing this text.
    Stderr(String),
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Readiness::Notify => write!(f, "notify (READY=1)"),
            Readiness::Stdout(text) => write!(f, "a stdout line containing {text:?}"),
            Readiness::Stderr(text) => write!(f, "a stderr line containing {text:?}"),
        }
    }
}

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
    pub(crate) started_by: core::StartedBy,
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
            started_by: core::StartedBy::Exec,
        }
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

    /// How many of the last output lines to keep (20 by default).
    pub fn last_lines(mut self, count: usize) -> Self {
        self.last_lines = count;
        self
    }

    /// The child is a runtime hosted by podvisor's child-side helper: it counts as started
    /// only when it reports so on the notify socket.
    #[doc(hidden)]
    pub fn hosted_runtime(mut self) -> Self {
        self.started_by = core::StartedBy::Notify;
        self
    }

    pub(crate) fn uses_notify(&self) -> bool {
        self.started_by == core::StartedBy::Notify || self.readiness.contains(&Readiness::Notify)
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

    /// The core's view of this configuration.
    pub(crate) fn core_spec(&self) -> Result<PodSpec, ConfigError> {
        if self.program.is_empty() {
            return Err(ConfigError::EmptyProgram {
                name: self.name.clone(),
            });
        }
        let mut spec = PodSpec::default()
            .timeout_ready(self.timeout_ready)
            .grace(self.grace)
            .started_by(self.started_by);
        for (index, readiness) in self.readiness.iter().enumerate() {
            let check = match readiness {
                Readiness::Notify => Check::Notify,
                Readiness::Stdout(text) | Readiness::Stderr(text) if text.is_empty() => {
                    return Err(ConfigError::EmptyReadyText {
                        name: self.name.clone(),
                        check: index,
                    })
                }
                Readiness::Stdout(text) => Check::Output {
                    stream: Stream::Stdout,
                    text: text.clone(),
                },
                Readiness::Stderr(text) => Check::Output {
                    stream: Stream::Stderr,
                    text: text.clone(),
                },
            };
            spec = spec.check(check);
        }
        spec.validate().map_err(|error| ConfigError::Spec {
            name: self.name.clone(),
            error,
        })?;
        Ok(spec)
    }
}

/// A [`PodConfig`] that cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The program is an empty string.
    EmptyProgram {
        /// The pod.
        name: String,
    },
    /// A stdout/stderr readiness check with an empty text would match any line.
    EmptyReadyText {
        /// The pod.
        name: String,
        /// Index of the check.
        check: usize,
    },
    /// The lifecycle core rejected the configuration.
    Spec {
        /// The pod.
        name: String,
        /// Why.
        error: core::SpecError,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::EmptyProgram { name } => {
                write!(f, "pod {name}: the program is empty; give the command to run")
            }
            ConfigError::EmptyReadyText { name, check } => write!(
                f,
                "pod {name}: readiness check #{check} has an empty text; give the text a ready line contains"
            ),
            ConfigError::Spec { name, error } => write!(f, "pod {name}: {error}"),
        }
    }
}

impl std::error::Error for ConfigError {}
