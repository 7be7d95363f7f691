//! [`Readiness`]: how a pod tells it is ready, or healthy, and the probes behind the
//! checks podvisor pulls.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How the pod decides it is ready. Several may be given; all must succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Readiness {
    /// `READY=1` on the notify socket named by `NOTIFY_SOCKET` (systemd's protocol; works
    /// with `systemd-notify --ready`, libsystemd's `sd_notify` and the `sd-notify` crates).
    ///
    /// **Who may notify** is decided by the sender's credentials (`SCM_CREDENTIALS`), not
    /// by file modes — systemd's `NotifyAccess=all` limited to the pod's own processes. A
    /// datagram counts when its sender is the pod's leader, a process in the leader's
    /// process group, a descendant of the leader (followed up the parent chain, so one
    /// that left the group with `setsid` still counts), or a process in the pod's cgroup
    /// where pods get one (so a daemon that double-forked away still counts); a pid of
    /// podvisor's own is taken as well (only a privileged sender can claim it: `systemd-notify` run as root reports
    /// its parent's pid, and a leader's parent is podvisor). Everything else — another
    /// process, pid 0 (a sender in a PID namespace not visible to podvisor), a sender that
    /// is already gone and reaped when the datagram is read, an orphan reparented away
    /// from a pod without a cgroup — is ignored and counted in
    /// [`Pod::notify_counters`](crate::Pod::notify_counters). A sender other than the
    /// leader must still be running when podvisor reads its datagram: `systemd-notify`
    /// waits for that (`BARRIER=1`), a fire-and-forget sender that exits at once may lose
    /// the race, as under systemd.
    ///
    /// The socket lives in a directory of its own with an unpredictable name
    /// (`podvisor-<pid>-<start time>-<random>`) under `$XDG_RUNTIME_DIR` or the temporary
    /// directory (as root, whichever other users may pass through comes first); the
    /// directory is 0711 and the socket 0777, so a pod that drops its privileges can still
    /// notify. It is removed when the pod ends (before the end is published) or fails to
    /// spawn; directories left by a podvisor that died are removed by the next one.
    ///
    /// Within a datagram, each line is a field: a malformed line (not UTF-8, a NUL byte,
    /// no `=`, a bad number such as `MAINPID=-5`) is ignored and counted, the valid fields
    /// are still taken.
    Notify,
    /// A line on standard output containing this text. Programs that block-buffer their
    /// output into a pipe (C stdio, Python) must be run unbuffered for the line to arrive
    /// in time (`PYTHONUNBUFFERED=1`, `stdbuf -oL`).
    Stdout(String),
    /// A line on standard error containing this text.
    Stderr(String),
    /// A TCP connection to `host:port` succeeds (every resolved address is tried).
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// An HTTP GET of `http://HOST[:PORT][/PATH]` answers 2xx or 3xx.
    Http(String),
    /// The file exists.
    File(PathBuf),
    /// The command, run through `sh -c` in its own process group, exits 0.
    Exec(String),
}

/// The kinds of health check, as an error lists them.
const HEALTH_KINDS: &str =
    "expected tcp:HOST:PORT, http://HOST:PORT/PATH, exec:COMMAND or file:PATH";

impl std::str::FromStr for Readiness {
    type Err = String;

    /// Parses `notify`, `stdout:TEXT`, `stderr:TEXT`, `tcp:HOST:PORT`,
    /// `http://HOST:PORT/PATH`, `file:PATH` or `exec:COMMAND`.
    ///
    /// ```
    /// use podvisor::Readiness;
    ///
    /// assert_eq!("tcp:localhost:6379".parse(), Ok(Readiness::Tcp { host: "localhost".into(), port: 6379 }));
    /// assert_eq!("stdout:Listening on".parse(), Ok(Readiness::Stdout("Listening on".into())));
    /// assert!("tcp:6379".parse::<Readiness>().unwrap_err().contains("HOST:PORT"));
    /// ```
    fn from_str(text: &str) -> Result<Readiness, String> {
        Readiness::parse_as(
            text,
            "readiness check",
            "expected notify, stdout:TEXT, stderr:TEXT, tcp:HOST:PORT, http://HOST:PORT/PATH, file:PATH or exec:COMMAND",
        )
    }
}

impl Readiness {
    /// Parses a health check: `tcp:HOST:PORT`, `http://HOST:PORT/PATH`, `exec:COMMAND` or
    /// `file:PATH`. Errors name it a health check and list only these kinds; `notify`,
    /// `stdout:` and `stderr:` are refused (they can only say ready).
    ///
    /// ```
    /// use podvisor::Readiness;
    ///
    /// assert_eq!(Readiness::parse_health("exec:true"), Ok(Readiness::Exec("true".into())));
    /// let error = Readiness::parse_health("bogus:x").unwrap_err();
    /// assert!(error.contains("expected tcp:HOST:PORT, http://HOST:PORT/PATH, exec:COMMAND or file:PATH"));
    /// assert!(Readiness::parse_health("notify").unwrap_err().contains("can only say ready"));
    /// ```
    pub fn parse_health(text: &str) -> Result<Readiness, String> {
        Readiness::parse_pulled_as(text, "health check", || {
            format!("{text:?} can only say ready; a health check is tcp:HOST:PORT, http://HOST:PORT/PATH, exec:COMMAND or file:PATH")
        })
    }

    /// Parses a check podvisor makes itself, from outside any pod (what `podvisor wait`
    /// takes): `tcp:HOST:PORT`, `http://HOST:PORT/PATH`, `exec:COMMAND` or `file:PATH`.
    /// `notify`, `stdout:` and `stderr:` are refused: only a pod reports those.
    ///
    /// ```
    /// use podvisor::Readiness;
    ///
    /// assert_eq!(Readiness::parse_pulled("file:/run/ok"), Ok(Readiness::File("/run/ok".into())));
    /// let error = Readiness::parse_pulled("bogus:x").unwrap_err();
    /// assert_eq!(error, "check \"bogus:x\" has an unknown kind \"bogus\"; expected tcp:HOST:PORT, http://HOST:PORT/PATH, exec:COMMAND or file:PATH");
    /// assert!(Readiness::parse_pulled("notify").unwrap_err().contains("reported by a pod itself"));
    /// ```
    pub fn parse_pulled(text: &str) -> Result<Readiness, String> {
        Readiness::parse_pulled_as(text, "check", || {
            format!("{text:?} is reported by a pod itself; {HEALTH_KINDS}")
        })
    }

    /// A check podvisor makes itself, called `noun` in errors; `pushed` says why a check
    /// only a pod reports is refused.
    fn parse_pulled_as(
        text: &str,
        noun: &str,
        pushed: impl FnOnce() -> String,
    ) -> Result<Readiness, String> {
        let check = Readiness::parse_as(text, noun, HEALTH_KINDS)?;
        if matches!(
            check,
            Readiness::Notify | Readiness::Stdout(_) | Readiness::Stderr(_)
        ) {
            return Err(pushed());
        }
        Ok(check)
    }

    /// The check as it is written on a command line or in a file, which parses back to
    /// it: `tcp:[::1]:80`, `http://127.0.0.1:8080/healthz`, `exec:COMMAND`, `file:PATH`.
    ///
    /// ```
    /// use podvisor::Readiness;
    ///
    /// for text in ["notify", "stdout:up", "tcp:[::1]:80", "http://127.0.0.1:8080/healthz", "exec:true", "file:/run/ok"] {
    ///     let check: Readiness = text.parse().unwrap();
    ///     assert_eq!(check.as_written(), text);
    /// }
    /// ```
    pub fn as_written(&self) -> String {
        match self {
            Readiness::Notify => "notify".to_string(),
            Readiness::Stdout(text) => format!("stdout:{text}"),
            Readiness::Stderr(text) => format!("stderr:{text}"),
            Readiness::Tcp { host, port } if host.contains(':') => format!("tcp:[{host}]:{port}"),
            Readiness::Tcp { host, port } => format!("tcp:{host}:{port}"),
            Readiness::Http(url) => url.clone(),
            Readiness::File(path) => format!("file:{}", path.display()),
            Readiness::Exec(command) => format!("exec:{command}"),
        }
    }

    /// Parses any kind of check; errors call it `noun` and end with `expected`.
    fn parse_as(text: &str, noun: &str, expected: &str) -> Result<Readiness, String> {
        let nonempty = |kind: &str, value: &str| {
            if value.is_empty() {
                Err(format!("{noun} {text:?}: {kind} needs a value after ':'"))
            } else {
                Ok(value.to_string())
            }
        };
        if text == "notify" {
            return Ok(Readiness::Notify);
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            crate::probe::HttpTarget::parse(text).map_err(|e| format!("{noun} {e}"))?;
            return Ok(Readiness::Http(text.to_string()));
        }
        let Some((kind, value)) = text.split_once(':') else {
            return Err(format!("{noun} {text:?} is not understood; {expected}"));
        };
        match kind {
            "stdout" => Ok(Readiness::Stdout(nonempty(kind, value)?)),
            "stderr" => Ok(Readiness::Stderr(nonempty(kind, value)?)),
            "file" => Ok(Readiness::File(PathBuf::from(nonempty(kind, value)?))),
            "exec" => Ok(Readiness::Exec(nonempty(kind, value)?)),
            "tcp" => {
                let (host, port) = crate::probe::split_host_port(value, None)
                    .map_err(|e| format!("{noun} {text:?}: {e}"))?;
                Ok(Readiness::Tcp { host, port })
            }
            _ => Err(format!(
                "{noun} {text:?} has an unknown kind {kind:?}; {expected}"
            )),
        }
    }
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Readiness::Notify => write!(f, "notify (READY=1)"),
            Readiness::Stdout(text) => write!(f, "a stdout line containing {text:?}"),
            Readiness::Stderr(text) => write!(f, "a stderr line containing {text:?}"),
            Readiness::Tcp { host, port } => write!(f, "a TCP connection to {host}:{port}"),
            Readiness::Http(url) => write!(f, "HTTP GET {url} answering 2xx/3xx"),
            Readiness::File(path) => write!(f, "file {} to exist", path.display()),
            Readiness::Exec(command) => write!(f, "command `{command}` to exit 0"),
        }
    }
}

impl Readiness {
    /// Tries a pulled check once (`tcp:`, `http://`, `file:`, `exec:`), on the calling
    /// thread, for at most `timeout`: `Ok`, or why it did not pass. `notify`, `stdout:` and
    /// `stderr:` are pushed by a pod and cannot be tried from outside: an error says so.
    ///
    /// ```
    /// use podvisor::Readiness;
    /// use std::time::Duration;
    ///
    /// let check: Readiness = "file:/".parse().unwrap();
    /// assert_eq!(check.check_once(Duration::from_secs(1)), Ok(()));
    /// let refused: Readiness = "tcp:127.0.0.1:1".parse().unwrap();
    /// assert!(refused.check_once(Duration::from_secs(1)).is_err());
    /// ```
    pub fn check_once(&self, timeout: Duration) -> Result<(), String> {
        let Some(probe) = self.probe() else {
            return Err(format!(
                "{self} is reported by a pod itself and cannot be checked from outside; expected tcp:, http://, file: or exec:"
            ));
        };
        futures_lite::future::block_on(crate::handle::within(timeout, probe.attempt()))
            .unwrap_or_else(|| Err(format!("no answer within {timeout:?}")))
    }

    /// The probe behind a pulled check.
    pub(crate) fn probe(&self) -> Option<crate::probe::Probe> {
        use crate::probe::{HttpTarget, Probe};
        match self {
            Readiness::Tcp { host, port } => Some(Probe::Tcp {
                host: host.clone(),
                port: *port,
            }),
            Readiness::Http(url) => HttpTarget::parse(url).ok().map(Probe::Http),
            Readiness::File(path) => Some(Probe::File(path.clone())),
            Readiness::Exec(command) => Some(Probe::Exec(command.clone())),
            Readiness::Notify | Readiness::Stdout(_) | Readiness::Stderr(_) => None,
        }
    }
}
