//! Command-line parsing (no parser crate: the grammar is small and the errors are ours).

use std::ffi::OsString;

use podvisor::core::deployment::RestartPolicy;
use podvisor::{PodConfig, Readiness, Signal};

use crate::client::{Action, ClientOptions};
use crate::duration::parse_duration;
use crate::file::{
    check_pod_name, check_suggestion, printable, signal_named, suggest, CHECK_KINDS, PULLED_KINDS,
};

/// `run`'s exit statuses, in `podvisor --help` and `podvisor run --help` alike.
macro_rules! run_exit_statuses {
    () => {
        "
Exit status: 0 closed on request after ready or exited 0 by itself; 122 closed as
unhealthy (a health check failed past its threshold, or the watchdog expired); 124
readiness timed out; 125 podvisor usage error; 126/127 command cannot be executed/not
found; 141 nobody reads podvisor's standard output any more; 1 ended before ready with
status 0; 128+N closed by signal N before ready; otherwise the command's status (N, or
128+S if killed by signal S)."
    };
}

pub const USAGE: &str = concat!(
    "\
podvisor: take a command (or a deployment of them) through its life: start, wait until it
is ready or has failed, close it gracefully, reap everything.

Usage:
  podvisor run [OPTIONS] -- COMMAND [ARGS...]
  podvisor up [--json] [--socket PATH] [FILE]  run a deployment file (default podvisor.toml)
  podvisor check [FILE]        validate a deployment file (default podvisor.toml)
  podvisor wait CHECK...       block until every check passes (tcp:, http://, file:, exec:)
  podvisor export kubernetes|compose [FILE]  the deployment as manifests or a Compose file
  podvisor ps [--json]         the members of the running deployment
  podvisor logs [NAME...] [--follow] [--tail N]  their output
  podvisor events [--json]     follow its events
  podvisor down                close it (pods in reverse dependency order)
  podvisor stop|start|restart NAME...  one member (or pod's replicas) at a time
  podvisor help [COMMAND]      (or COMMAND --help) for one command's options and an example
  podvisor --help | --version

-f/--file FILE and --socket PATH may come before up, check and the commands that talk to a
running deployment, as compose's -f: podvisor -f app.toml ps. After logs, -f is --follow
(as docker compose logs -f): podvisor -f app.toml logs -f web.

Options of run:
  --name NAME             name used in messages (default: the program's name); up to 63
                          characters of A-Z, a-z, 0-9, '_', '.' and '-'
  --ready PROBE           none (default), notify, stdout:TEXT, stderr:TEXT, tcp:HOST:PORT,
                          http://HOST:PORT/PATH, file:PATH, exec:COMMAND; repeatable, all
                          must hold
  --timeout-ready DUR     time allowed to become ready (default 600s; 0 = no limit)
  --grace DUR             time between the stop signal and SIGKILL (default 10s)
  --stop-signal SIG       signal that asks the command to stop (default TERM)
  --env KEY=VALUE         set a variable for the command (repeatable)
  --env-clear             start the command from an empty environment
  --restart POLICY        no (default), on-failure or always: restart with exponential
                          backoff (100 ms doubling to 30 s, jitter, reset after 60 s
                          ready, at most 5 restarts in a row, then give up)
  --stdin inherit|null    what the command reads (default: podvisor's input when it is a
                          pipe or a file, nothing when it is a terminal)
  --json                  report state changes as JSON lines on stderr

Durations need a unit: 250ms, 10s, 2m, 1m30s. SIGINT/SIGTERM close the command gracefully;
a second one kills its process group at once. SIGHUP, SIGUSR1, SIGUSR2 and SIGWINCH are
forwarded to the command's process group.
",
    run_exit_statuses!()
);

/// Which help text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic {
    /// Everything.
    All,
    /// `podvisor run`.
    Run,
    /// `podvisor up`.
    Up,
    /// `podvisor check`.
    Check,
    /// `podvisor wait`.
    Wait,
    /// `podvisor export`.
    Export,
    /// A command talking to a running `up`.
    Client(Action),
}

/// The help text of `topic`.
pub fn help(topic: Topic) -> &'static str {
    match topic {
        Topic::All => USAGE,
        Topic::Run => RUN_USAGE,
        Topic::Up => UP_USAGE,
        Topic::Check => CHECK_USAGE,
        Topic::Wait => WAIT_USAGE,
        Topic::Export => EXPORT_USAGE,
        Topic::Client(Action::Ps) => PS_USAGE,
        Topic::Client(Action::Logs) => LOGS_USAGE,
        Topic::Client(Action::Events) => EVENTS_USAGE,
        Topic::Client(Action::Down) => DOWN_USAGE,
        Topic::Client(Action::Stop | Action::Start | Action::Restart) => MEMBER_USAGE,
    }
}

/// Where client commands find the deployment; part of their help texts.
const PS_USAGE: &str = "\
podvisor ps: one row per member of the running deployment: name, state, health, pid,
uptime, restarts, last exit status, last health failure (failures in a row now, the
check, why).

Usage:
  podvisor ps [--json] [-f FILE | --socket PATH]

Options:
      --json              one JSON object per member: name, state, health,
                          health_check, health_failures, health_message, pid, uptime
                          (seconds), restarts, last_exit
  -f, --file FILE         the deployment's file (default podvisor.toml); it and --socket
                          may also come before the command: podvisor -f FILE COMMAND
      --socket PATH       its control socket (default: found from FILE; env PODVISOR_SOCKET)
  -h, --help              this text

Example:
  podvisor ps -f examples/podvisor.toml";

const LOGS_USAGE: &str = "\
podvisor logs: the output of the running deployment's members, each line prefixed with
[member]; the last 5000 lines of each member are kept.

Usage:
  podvisor logs [NAME...] [-f | --follow] [--tail N] [--file FILE | --socket PATH]

NAME is a member (web/0) or a pod of the file (web: all its replicas); default all.

Options:
  -f, --follow            keep printing new lines until the deployment ends (as
                          docker compose logs -f)
      --tail N            only the last N lines of each member (before following)
      --file FILE         the deployment's file (default podvisor.toml); here -f is
                          --follow, but -f FILE before the command is the file:
                          podvisor -f FILE logs -f
      --socket PATH       its control socket (default: found from FILE; env PODVISOR_SOCKET)
  -h, --help              this text

Example:
  podvisor logs web --tail 20 --follow";

const EVENTS_USAGE: &str = "\
podvisor events: follow the running deployment's events (starts, readiness, health, ends)
until it ends, as `podvisor up` reports them.

Usage:
  podvisor events [--json] [-f FILE | --socket PATH]

Options:
      --json              JSON lines, as `podvisor up --json` writes them
  -f, --file FILE         the deployment's file (default podvisor.toml); it and --socket
                          may also come before the command: podvisor -f FILE COMMAND
      --socket PATH       its control socket (default: found from FILE; env PODVISOR_SOCKET)
  -h, --help              this text

Example:
  podvisor events --json";

const DOWN_USAGE: &str = "\
podvisor down: close the running deployment gracefully, pods in reverse dependency order;
returns once it is down (podvisor up then exits 0).

Usage:
  podvisor down [-f FILE | --socket PATH]

Options:
  -f, --file FILE         the deployment's file (default podvisor.toml); it and --socket
                          may also come before the command: podvisor -f FILE COMMAND
      --socket PATH       its control socket (default: found from FILE; env PODVISOR_SOCKET)
  -h, --help              this text

Example:
  podvisor down -f examples/podvisor.toml";

const WAIT_USAGE: &str = "\
podvisor wait: block until every check passes (a server listening, a file there, a
command succeeding), as an init step or in a script.

Usage:
  podvisor wait [--timeout DUR] CHECK...

CHECK is tcp:HOST:PORT, http://HOST:PORT/PATH (2xx or 3xx), file:PATH or exec:COMMAND;
each is tried every 10 ms at first, backing off to 500 ms. Exit status: 0 once all pass;
124 when --timeout ran out first (the failing checks are named); 125 for a bad check.

Options:
  -t, --timeout DUR       give up after this long (default: wait for ever)
  -h, --help              this text

Example:
  podvisor wait --timeout 30s tcp:db:5432 http://127.0.0.1:8080/health";

const EXPORT_USAGE: &str = "\
podvisor export: write a deployment file as Kubernetes manifests or a Compose file, with
readiness, health checks, grace periods, replicas and dependency order carried over.

Usage:
  podvisor export kubernetes [FILE] [--namespace NS] [--kube-version V]
                             [--podvisor-image IMAGE] [--kubectl-image IMAGE]
  podvisor export compose [FILE] [--podvisor-image IMAGE]

FILE defaults to podvisor.toml. Every pod needs an `image` key. The output goes to
standard output; what could only be approximated is said on standard error. Where the
orchestrator cannot see what a pod relies on (notify or output-line readiness, the
watchdog), podvisor runs inside the container, copied from --podvisor-image, and answers
the probes on /readyz and /livez (port 8558); init containers wait for dependencies with
`podvisor wait`. The README has the whole mapping.

Options:
      --namespace NS      the namespace of every object (default: none, kubectl's own)
      --kube-version V    the cluster's version, MAJOR.MINOR (default 1.30); 1.33 or later
                          carries stop_signal as lifecycle.stopSignal
      --podvisor-image IMAGE  an image with podvisor at /usr/local/bin/podvisor, for the
                          pods that need it (an error names them when it is missing)
      --kubectl-image IMAGE  runs `kubectl wait` for a job others wait for
                          (default registry.k8s.io/kubectl:v1.30.0)
  -h, --help              this text

Exit status: 0 written; 125 for a bad file or option (nothing written).

Example:
  podvisor export kubernetes examples/podvisor.toml --podvisor-image ghcr.io/me/podvisor:0.1";

/// `export`'s options; help when asked for.
fn parse_export(args: Vec<OsString>) -> Result<Command, String> {
    use crate::export::{Options, Target, DEFAULT_KUBECTL_IMAGE, DEFAULT_KUBE_VERSION};
    let mut iter = args.into_iter();
    let target = match iter.next().as_ref().map(text).transpose()? {
        Some("-h" | "--help") => return Ok(Command::Help(Topic::Export)),
        Some("kubernetes" | "k8s") => Target::Kubernetes,
        Some("compose") => Target::Compose,
        Some(other) => {
            return Err(format!(
                "export: unknown target {other:?}; expected kubernetes or compose{}",
                suggestion(other, &["kubernetes", "compose"])
            ))
        }
        None => {
            return Err(
                "export needs a target: kubernetes or compose; see podvisor export --help".into(),
            )
        }
    };
    let mut options = Options {
        target,
        file: std::path::PathBuf::from("podvisor.toml"),
        namespace: None,
        kube_version: DEFAULT_KUBE_VERSION,
        podvisor_image: None,
        kubectl_image: DEFAULT_KUBECTL_IMAGE.to_string(),
    };
    let mut files = Vec::new();
    let kubernetes_only = ["--namespace", "--kube-version", "--kubectl-image"];
    while let Some(arg) = iter.next() {
        let arg = text(&arg)?.to_string();
        let (option, inline) = match arg.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let known = [
            "--namespace",
            "--kube-version",
            "--podvisor-image",
            "--kubectl-image",
            "--help",
        ];
        match option.as_str() {
            "-h" | "--help" => return Ok(Command::Help(Topic::Export)),
            flag if known.contains(&flag) => {
                if target == Target::Compose && kubernetes_only.contains(&flag) {
                    return Err(format!(
                        "export compose: {flag} is for export kubernetes only"
                    ));
                }
                let value = match inline {
                    Some(v) => v,
                    None => iter
                        .next()
                        .ok_or_else(|| format!("{flag} needs a value"))
                        .and_then(|v| text(&v).map(str::to_string))?,
                };
                if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(format!(
                        "{flag}: {value:?} is empty or has spaces; expected a name"
                    ));
                }
                match flag {
                    "--namespace" => {
                        let ok = value.len() <= 63
                            && value.starts_with(|c: char| {
                                c.is_ascii_lowercase() || c.is_ascii_digit()
                            })
                            && value
                                .ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                            && value
                                .chars()
                                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                        if !ok {
                            return Err(format!("--namespace: {value:?} is not a namespace name; expected up to 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit"));
                        }
                        options.namespace = Some(value);
                    }
                    "--kube-version" => {
                        let trimmed = value.strip_prefix('v').unwrap_or(&value);
                        let mut parts = trimmed.split('.');
                        let parsed = match (parts.next(), parts.next(), parts.next(), parts.next())
                        {
                            (Some(major), Some(minor), _, None) => {
                                major.parse::<u32>().ok().zip(minor.parse::<u32>().ok())
                            }
                            _ => None,
                        };
                        options.kube_version = parsed.filter(|&(major, _)| major == 1).ok_or_else(|| {
                            format!("--kube-version: {value:?} is not a Kubernetes version; expected MAJOR.MINOR such as 1.30")
                        })?;
                    }
                    "--podvisor-image" => options.podvisor_image = Some(value),
                    _ => options.kubectl_image = value,
                }
            }
            flag if flag.starts_with('-') => {
                return Err(format!(
                    "unknown option {flag:?} for export{}; see podvisor export --help",
                    suggestion(flag, &known)
                ))
            }
            _ => files.push(OsString::from(arg)),
        }
    }
    options.file = parse_file_arg("export", files)?;
    Ok(Command::Export(Box::new(options)))
}

/// `wait`'s options; help when asked for.
fn parse_wait(args: Vec<OsString>) -> Result<Command, String> {
    let mut checks = Vec::new();
    let mut timeout = None;
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        let arg = text(&arg)?.to_string();
        let (option, inline) = match arg.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match option.as_str() {
            "-h" | "--help" => return Ok(Command::Help(Topic::Wait)),
            "-t" | "--timeout" => {
                let value = match inline {
                    Some(v) => v,
                    None => iter
                        .next()
                        .ok_or_else(|| "--timeout needs a value: DUR".to_string())
                        .and_then(|v| text(&v).map(str::to_string))?,
                };
                let d = parse_duration(&value).map_err(|e| format!("--timeout: {e}"))?;
                timeout = (!d.is_zero()).then_some(d);
            }
            flag if flag.starts_with('-') => {
                return Err(format!(
                    "unknown option {flag:?} for wait{}; see podvisor wait --help",
                    suggestion(flag, &["--timeout", "--help"])
                ))
            }
            _ => {
                let check = Readiness::parse_pulled(&arg)
                    .map_err(|e| format!("wait: {}", check_suggestion(&arg, PULLED_KINDS, e)))?;
                checks.push(check);
            }
        }
    }
    if checks.is_empty() {
        return Err("wait needs at least one CHECK; see podvisor wait --help".into());
    }
    Ok(Command::Wait { checks, timeout })
}

const MEMBER_USAGE: &str = "\
podvisor stop|start|restart: stop, start or restart members of the running deployment.

Usage:
  podvisor stop|start|restart NAME... [-f FILE | --socket PATH]

NAME is a member (web/0) or a pod of the file (web: all its replicas).

stop closes the members and keeps them down (not restarted, not a failure) until start;
the running members that depend on them are stopped first, in reverse dependency order.
start starts stopped members once their dependencies meet their conditions, with a fresh
restart budget. restart stops the members and their running dependents, then starts them
all again (dependencies first); it spends no restart budget.

Options:
  -f, --file FILE         the deployment's file (default podvisor.toml); it and --socket
                          may also come before the command: podvisor -f FILE COMMAND
      --socket PATH       its control socket (default: found from FILE; env PODVISOR_SOCKET)
      --no-deps           stop only: leave the members that depend on them running
  -h, --help              this text

Example:
  podvisor restart web/1";

const RUN_USAGE: &str = concat!(
    "\
podvisor run: take one command through its life: start it, wait until it is ready, close it
gracefully on SIGINT/SIGTERM (a second one kills), reap everything.

Usage:
  podvisor run [OPTIONS] -- COMMAND [ARGS...]

Options:
  -n, --name NAME         name used in messages (default: the program's name)
  -r, --ready PROBE       none (default), notify, stdout:TEXT, stderr:TEXT, tcp:HOST:PORT,
                          http://HOST:PORT/PATH, file:PATH, exec:COMMAND; repeatable, all
                          must hold
  -t, --timeout-ready DUR time allowed to become ready (default 600s; 0 = no limit)
      --ready-interval DUR how often a tcp/http/file/exec check is tried (default: every
                          15ms for this machine's addresses, backing off to 1s for others)
      --ready-timeout DUR time one attempt of such a check may take (default 1s)
      --health CHECK      after ready, a tcp:, http://, exec: or file: check that must keep
                          passing (repeatable); when it fails --health-retries times in a
                          row the command is closed as unhealthy
      --health-interval DUR  time between health attempts (default 10s)
      --health-timeout DUR   time one health attempt may take (default 5s)
      --health-retries N     failures in a row that make it unhealthy (default 3)
      --health-successes N   passes in a row before a check first counts as passed
                             (default 1)
      --health-start-period DUR  failures this soon after ready do not count (default 0)
      --watchdog DUR      the command must send WATCHDOG=1 (sd_notify) more often than this
                          once ready (systemd's WatchdogSec=)
      --watchdog-signal SIG  sent when the watchdog expires (default ABRT)
  -g, --grace DUR         time between the stop signal and SIGKILL (default 10s)
  -s, --stop-signal SIG   signal that asks the command to stop (default TERM)
  -e, --env KEY=VALUE     set a variable for the command (repeatable)
      --env-clear         start the command from an empty environment
      --restart POLICY    no (default), on-failure or always
      --stdin inherit|null  what the command reads (default: podvisor's input when it is
                          a pipe or a file, nothing when it is a terminal; inherit of a
                          terminal needs --foreground)
      --foreground        for interactive commands: the command stays in podvisor's process
                          group and has the terminal as input, output and error (an
                          stdout:/stderr: check reads that stream through a pipe); Ctrl-C
                          is the command's to handle, Ctrl-Z stops it and podvisor together
      --json              report events as JSON lines on stderr; the command's output and
                          error go to stdout
      --serve-health ADDR answer HTTP GET /readyz (200 once ready, 503 before, when
                          unhealthy or stopping) and /livez (200 from start until
                          unhealthy or stopping) on IP:PORT, for an orchestrator's probes
  -h, --help              this text
",
    run_exit_statuses!(),
    "

Example:
  podvisor run -n web -r http://127.0.0.1:8000/ -g 5s -- python3 -m http.server 8000"
);

const UP_USAGE: &str = "\
podvisor up: run a deployment file: pods started in dependency order, closed in reverse
order on SIGINT/SIGTERM or when a pod that is neither one-shot nor restarted ends.

Usage:
  podvisor up [--json] [--socket PATH] [FILE]      FILE defaults to podvisor.toml

While it runs, `podvisor ps`, `logs`, `events`, `down`, `stop`, `start` and `restart`
talk to it through its control socket: in $XDG_RUNTIME_DIR/podvisor/ (or
/tmp/podvisor-UID/), a directory only its user can enter, named after FILE's path. A
second `up` of the same FILE is refused (status 125).

Options:
      --json              report events as JSON lines on stderr
      --socket PATH       serve the control socket at PATH instead (env PODVISOR_SOCKET)
  -f, --file FILE         the same as FILE; it and --socket may also come before up
  -h, --help              this text

Example:
  podvisor up examples/podvisor.toml";

const CHECK_USAGE: &str = "\
podvisor check: validate a deployment file without running anything; every error names
the file, line and column, the key and what was expected.

Usage:
  podvisor check [FILE]            FILE defaults to podvisor.toml
  podvisor check -f FILE           the same, as compose's -f (also before check)

Options:
  -f, --file FILE         the deployment file, the same as FILE
  -h, --help              this text

Example:
  podvisor check examples/podvisor.toml";

/// The closest of `known` to `given`, if it is close enough to be a likely typo: edits
/// counted as insertions, deletions, substitutions and swaps of two neighbours (`wbe` is
/// one edit from `web`).
pub fn did_you_mean<'a>(given: &str, known: &[&'a str]) -> Option<&'a str> {
    let distance = |a: &str, b: &str| {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        // Optimal string alignment: the rows for a[..i-1], a[..i] as they are filled.
        let mut before: Vec<usize> = Vec::new();
        let mut previous: Vec<usize> = (0..=b.len()).collect();
        for i in 1..=a.len() {
            let mut row = vec![i; b.len() + 1];
            for j in 1..=b.len() {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                row[j] = (previous[j - 1] + cost)
                    .min(row[j - 1] + 1)
                    .min(previous[j] + 1);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    row[j] = row[j].min(before[j - 2] + 1);
                }
            }
            before = std::mem::replace(&mut previous, row);
        }
        previous[b.len()]
    };
    known
        .iter()
        .map(|k| (distance(given, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn suggestion(given: &str, known: &[&str]) -> String {
    did_you_mean(given, known).map_or(String::new(), |k| format!("; did you mean {k}?"))
}

const RUN_OPTIONS: &[&str] = &[
    "--name",
    "--ready",
    "--timeout-ready",
    "--ready-interval",
    "--ready-timeout",
    "--health",
    "--health-interval",
    "--health-timeout",
    "--health-retries",
    "--health-successes",
    "--health-start-period",
    "--watchdog",
    "--watchdog-signal",
    "--grace",
    "--stop-signal",
    "--env",
    "--env-clear",
    "--restart",
    "--stdin",
    "--foreground",
    "--serve-health",
    "--json",
    "--help",
];

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Print the usage: of everything, or of one subcommand.
    Help(Topic),
    /// Print the version.
    Version,
    /// Run one pod.
    Run(Box<RunOptions>),
    /// Check a deployment file.
    Check(std::path::PathBuf),
    /// Run a deployment file.
    Up {
        file: std::path::PathBuf,
        json: bool,
        socket: Option<std::path::PathBuf>,
    },
    /// Talk to a running deployment.
    Client(ClientOptions),
    /// Wait until checks pass.
    Wait {
        checks: Vec<Readiness>,
        timeout: Option<std::time::Duration>,
    },
    /// Export a deployment file.
    Export(Box<crate::export::Options>),
}

/// Every command, for suggestions.
const COMMANDS: &[&str] = &[
    "run", "up", "check", "wait", "export", "ps", "logs", "events", "down", "stop", "start",
    "restart", "help",
];

const CLIENTS: &[(&str, Action)] = &[
    ("ps", Action::Ps),
    ("logs", Action::Logs),
    ("events", Action::Events),
    ("down", Action::Down),
    ("stop", Action::Stop),
    ("start", Action::Start),
    ("restart", Action::Restart),
];

/// `podvisor run`'s options.
#[derive(Debug)]
pub struct RunOptions {
    pub config: PodConfig,
    pub json: bool,
    pub restart: RestartPolicy,
    /// The command shares podvisor's process group and terminal (`--foreground`).
    pub foreground: bool,
    /// Where to answer `/readyz` and `/livez` (`--serve-health ADDR`).
    pub serve_health: Option<std::net::SocketAddr>,
}

fn text(arg: &OsString) -> Result<&str, String> {
    arg.to_str()
        .ok_or_else(|| format!("argument {arg:?} is not valid UTF-8"))
}

/// `-f/--file FILE` and `--socket PATH` given before the command, as compose's `-f`:
/// taken off the front of `args`, as `--file`, FILE, `--socket`, PATH pairs.
fn leading_options(
    args: &mut std::iter::Peekable<std::vec::IntoIter<OsString>>,
) -> Result<Vec<OsString>, String> {
    let mut taken = Vec::new();
    while let Some(arg) = args.peek().and_then(|a| a.to_str()).map(str::to_string) {
        let (option, inline) = match arg.split_once('=') {
            Some((o @ ("--file" | "--socket"), v)) => (o.to_string(), Some(OsString::from(v))),
            _ => (arg.clone(), None),
        };
        let option = match option.as_str() {
            "-f" | "--file" => "--file",
            "--socket" => "--socket",
            _ => break,
        };
        args.next();
        let value = match inline {
            Some(value) => value,
            None => args.next().ok_or_else(|| {
                format!(
                    "{arg} needs a value: {}",
                    if option == "--file" { "FILE" } else { "PATH" }
                )
            })?,
        };
        taken.push(OsString::from(option));
        taken.push(value);
    }
    Ok(taken)
}

/// Parses the arguments after the program name.
pub fn parse(args: Vec<OsString>) -> Result<Command, String> {
    let mut args = args.into_iter().peekable();
    let leading = leading_options(&mut args)?;
    let Some(first) = args.next() else {
        let after = if leading.is_empty() {
            ""
        } else {
            " after the options"
        };
        return Err(format!("missing command{after}; expected run, up, check, wait, export, ps, logs, events, down, stop, start or restart"));
    };
    if !leading.is_empty() {
        // Before the command as after it: the command's own options read them.
        let command = text(&first)?.to_string();
        let rest: Vec<OsString> = args.collect();
        let is_client = CLIENTS.iter().any(|(name, _)| *name == command);
        return match command.as_str() {
            "up" => parse([vec![first], leading, rest].concat()),
            _ if is_client => parse([vec![first], leading, rest].concat()),
            "check" => {
                let mut file = Vec::new();
                for pair in leading.chunks(2) {
                    if pair[0] == "--socket" {
                        return Err("check has no control socket; --socket goes with up and the commands that talk to it".into());
                    }
                    file = vec![pair[1].clone()];
                }
                parse([vec![first], file, rest].concat())
            }
            "help" | "-h" | "--help" | "-V" | "--version" => parse([vec![first], rest].concat()),
            other => Err(format!(
                "-f/--file and --socket before the command go with up, check, ps, logs, events, down, stop, start and restart, not {other:?}; give {other} its own arguments after it"
            )),
        };
    }
    match text(&first)? {
        "-h" | "--help" => Ok(Command::Help(Topic::All)),
        "help" => match args.next().as_ref().map(text).transpose()? {
            None => Ok(Command::Help(Topic::All)),
            Some("run") => Ok(Command::Help(Topic::Run)),
            Some("up") => Ok(Command::Help(Topic::Up)),
            Some("check") => Ok(Command::Help(Topic::Check)),
            Some("wait") => Ok(Command::Help(Topic::Wait)),
            Some("export") => Ok(Command::Help(Topic::Export)),
            Some(other) => match CLIENTS.iter().find(|(name, _)| *name == other) {
                Some((_, action)) => Ok(Command::Help(Topic::Client(*action))),
                None => Err(format!(
                    "no help on {other:?}; expected one of {}{}",
                    COMMANDS[..COMMANDS.len() - 1].join(", "),
                    suggestion(other, COMMANDS)
                )),
            },
        },
        "-V" | "--version" => Ok(Command::Version),
        "run" => parse_run(args.collect()).map(|o| match o {
            Some(o) => Command::Run(Box::new(o)),
            None => Command::Help(Topic::Run),
        }),
        "wait" => parse_wait(args.collect()),
        "export" => parse_export(args.collect()),
        "check" => {
            let rest: Vec<OsString> = args.collect();
            if rest.iter().any(|a| a == "-h" || a == "--help") {
                return Ok(Command::Help(Topic::Check));
            }
            let options = file_command_options("check", rest)?;
            parse_file_arg("check", options.files).map(Command::Check)
        }
        "up" => {
            let rest: Vec<OsString> = args.collect();
            if rest.iter().any(|a| a == "-h" || a == "--help") {
                return Ok(Command::Help(Topic::Up));
            }
            let FileCommandOptions {
                files,
                json,
                socket,
            } = file_command_options("up", rest)?;
            if socket.as_ref().is_some_and(|s| s.as_os_str().is_empty()) {
                return Err("--socket: expected a path".into());
            }
            parse_file_arg("up", files).map(|file| Command::Up { file, json, socket })
        }
        other => match CLIENTS.iter().find(|(name, _)| *name == other) {
            Some((_, action)) => parse_client(*action, args.collect()),
            None => Err(format!(
                "unknown command {other:?}; expected one of {}{}",
                COMMANDS[..COMMANDS.len() - 1].join(", "),
                suggestion(other, COMMANDS)
            )),
        },
    }
}

/// The options of a command that talks to a running deployment.
fn parse_client(action: Action, args: Vec<OsString>) -> Result<Command, String> {
    let command = action.name();
    let mut options = ClientOptions {
        action,
        file: "podvisor.toml".into(),
        socket: None,
        json: false,
        follow: false,
        tail: None,
        names: Vec::new(),
        no_deps: false,
    };
    let mut known = vec!["--file", "--socket", "--help"];
    match action {
        Action::Ps | Action::Events => known.push("--json"),
        Action::Logs => known.extend(["--follow", "--tail"]),
        Action::Stop => known.push("--no-deps"),
        _ => {}
    }
    let mut iter = args.into_iter();
    let mut only_names = false;
    while let Some(arg) = iter.next() {
        let arg = text(&arg)?.to_string();
        if only_names || !arg.starts_with('-') || arg == "-" {
            options.names.push(arg);
            continue;
        }
        let (option, inline) = match arg.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        // `logs -f` follows, as `docker compose logs -f`; elsewhere `-f` is the file.
        let option = match option.as_str() {
            "-f" if action == Action::Logs => "--follow".to_string(),
            "-f" => "--file".to_string(),
            _ => option,
        };
        let mut value = |what: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => iter
                    .next()
                    .ok_or_else(|| format!("{option} needs a value: {what}"))
                    .and_then(|v| text(&v).map(str::to_string)),
            }
        };
        match option.as_str() {
            "--" => only_names = true,
            "-h" | "--help" => return Ok(Command::Help(Topic::Client(action))),
            "--file" => options.file = value("FILE")?.into(),
            "--socket" => {
                let path = value("PATH")?;
                if path.is_empty() {
                    return Err("--socket: expected a path".into());
                }
                options.socket = Some(path.into());
            }
            "--json" if known.contains(&"--json") => options.json = true,
            "--follow" if action == Action::Logs => options.follow = true,
            "--no-deps" if action == Action::Stop => options.no_deps = true,
            "--tail" if action == Action::Logs => {
                let text = value("N")?;
                options.tail = Some(text.parse().map_err(|_| {
                    format!("--tail {text:?}: expected a whole number of 0 or more")
                })?);
            }
            other => {
                return Err(format!(
                    "unknown option {other:?} for {command}{}; see podvisor {command} --help",
                    suggestion(other, &known)
                ))
            }
        }
        if inline.is_some() && matches!(option.as_str(), "--json" | "--follow" | "--no-deps") {
            return Err(format!("{option} takes no value"));
        }
    }
    for name in &options.names {
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(format!(
                "{command}: {} is not a member name",
                printable(name)
            ));
        }
    }
    match action {
        Action::Ps | Action::Events | Action::Down if !options.names.is_empty() => Err(format!(
            "{command} takes no NAME; unexpected argument {:?}",
            options.names[0]
        )),
        Action::Stop | Action::Start | Action::Restart if options.names.is_empty() => Err(format!(
            "{command} needs at least one NAME (a member like web/0, or a pod like web)"
        )),
        _ => Ok(Command::Client(options)),
    }
}

/// The options of `check` and `up`, which read a deployment file.
struct FileCommandOptions {
    /// FILE and every `-f/--file FILE`, in order (more than one is an error).
    files: Vec<OsString>,
    json: bool,
    socket: Option<std::path::PathBuf>,
}

/// Reads `-f/--file FILE` and FILE for `check` and `up`, and `--json` and `--socket PATH`
/// for `up`. An argument that starts with `-` and is no option of `command` is an unknown
/// option, never taken as FILE; after `--` every argument is FILE.
fn file_command_options(command: &str, args: Vec<OsString>) -> Result<FileCommandOptions, String> {
    let known: &[&str] = if command == "up" {
        &["--file", "--json", "--socket", "--help"]
    } else {
        &["--file", "--help"]
    };
    let mut options = FileCommandOptions {
        files: Vec::new(),
        json: false,
        socket: None,
    };
    let mut iter = args.into_iter();
    let mut only_files = false;
    while let Some(arg) = iter.next() {
        let Some(flag) = arg
            .to_str()
            .filter(|a| !only_files && a.starts_with('-') && *a != "-")
        else {
            options.files.push(arg);
            continue;
        };
        let (option, inline) = match flag.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o, Some(OsString::from(v))),
            _ => (flag, None),
        };
        let option = if option == "-f" { "--file" } else { option };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| iter.next())
                .ok_or_else(|| format!("{flag} needs a value: {what}"))
        };
        match option {
            "--" => only_files = true,
            "--file" => options.files.push(value("FILE")?),
            "--socket" if known.contains(&"--socket") => {
                options.socket = Some(value("PATH")?.into());
            }
            "--json" if known.contains(&"--json") && inline.is_none() => options.json = true,
            "--json" if known.contains(&"--json") => return Err("--json takes no value".into()),
            other => {
                return Err(format!(
                    "unknown option {other:?} for {command}{}; see podvisor {command} --help",
                    suggestion(other, known)
                ))
            }
        }
    }
    Ok(options)
}

/// `[FILE]`, `podvisor.toml` by default.
fn parse_file_arg(command: &str, args: Vec<OsString>) -> Result<std::path::PathBuf, String> {
    let mut args = args.into_iter();
    let file = args
        .next()
        .map_or_else(|| "podvisor.toml".into(), std::path::PathBuf::from);
    if let Some(extra) = args.next() {
        return Err(format!(
            "{command} takes one FILE; unexpected argument {extra:?}"
        ));
    }
    Ok(file)
}

/// What the command reads when `--stdin` is not given: podvisor's own input when it is a
/// pipe or a file, as `timeout(1)` passes it on; nothing when it is a terminal (the pod
/// runs in a process group of its own, and one that reads the terminal is stopped by
/// SIGTTIN).
fn default_stdin() -> podvisor::Input {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        podvisor::Input::Null
    } else {
        podvisor::Input::Inherit
    }
}

/// Refuses tuning that would be silently ignored: readiness tuning without a check it
/// tunes (tcp:, http://, file:, exec:), health tuning without a health check, a watchdog
/// signal without a watchdog.
fn tuning_needs_its_check(
    ready: &[Readiness],
    health: bool,
    watchdog: bool,
    ready_tuning: &[(&str, bool)],
    health_tuning: &[(&str, bool)],
    watchdog_signal: bool,
) -> Result<(), String> {
    let pulled = ready.iter().any(|r| {
        matches!(
            r,
            Readiness::Tcp { .. } | Readiness::Http(_) | Readiness::File(_) | Readiness::Exec(_)
        )
    });
    let given = |tuning: &[(&str, bool)]| {
        tuning
            .iter()
            .find(|(_, given)| *given)
            .map(|(flag, _)| flag.to_string())
    };
    if let Some(flag) = given(ready_tuning).filter(|_| !pulled) {
        return Err(format!(
            "{flag} needs a tcp:, http://, file: or exec: --ready check; it only tunes how those are tried (add one, or leave {flag} out)"
        ));
    }
    if let Some(flag) = given(health_tuning).filter(|_| !health) {
        return Err(format!(
            "{flag} needs a --health check; without one there is nothing to tune (add --health CHECK, or leave {flag} out)"
        ));
    }
    if watchdog_signal && !watchdog {
        return Err("--watchdog-signal needs --watchdog; it is only sent when the watchdog expires (add --watchdog DUR, or leave --watchdog-signal out)".into());
    }
    Ok(())
}

/// `run`'s options; `None` when help was asked for.
fn parse_run(args: Vec<OsString>) -> Result<Option<RunOptions>, String> {
    let mut name = None;
    let mut ready: Vec<Readiness> = Vec::new();
    let mut none = false;
    let mut timeout_ready = Some(podvisor::core::DEFAULT_TIMEOUT_READY);
    let mut grace = podvisor::core::DEFAULT_GRACE;
    let mut stop_signal = Signal::TERM;
    let mut env: Vec<(String, OsString)> = Vec::new();
    let mut env_clear = false;
    let mut json = false;
    let mut restart = RestartPolicy::No;
    let mut stdin: Option<podvisor::Input> = None;
    let mut ready_interval = None;
    let mut ready_timeout = None;
    let mut health: Vec<podvisor::Readiness> = Vec::new();
    let mut health_interval = None;
    let mut health_timeout = None;
    let mut health_retries = None;
    let mut health_successes = None;
    let mut health_start_period = None;
    let mut watchdog = None;
    let mut watchdog_signal = None;
    let mut foreground = false;
    let mut serve_health = None;
    let positive = |option: &str, text: String| -> Result<std::time::Duration, String> {
        let d = parse_duration(&text).map_err(|e| format!("{option}: {e}"))?;
        if d.is_zero() {
            return Err(format!("{option}: expected a duration of at least 1ms"));
        }
        Ok(d)
    };
    let mut iter = args.into_iter();
    let mut command: Vec<OsString> = Vec::new();
    while let Some(arg) = iter.next() {
        let flag = match arg.to_str() {
            Some(flag) => flag.to_string(),
            None => {
                command.push(arg);
                break;
            }
        };
        if flag == "--" {
            break;
        }
        if !flag.starts_with('-') || flag == "-" {
            command.push(arg);
            break;
        }
        // --option=value or --option value
        let (option, inline) = match flag.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o.to_string(), Some(v.to_string())),
            _ => (flag.clone(), None),
        };
        // Short flags stand for their long names.
        let option = match option.as_str() {
            "-n" => "--name".to_string(),
            "-r" => "--ready".to_string(),
            "-t" => "--timeout-ready".to_string(),
            "-g" => "--grace".to_string(),
            "-s" => "--stop-signal".to_string(),
            "-e" => "--env".to_string(),
            _ => option,
        };
        let mut value = |what: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => iter
                    .next()
                    .ok_or_else(|| format!("{option} needs a value: {what}"))
                    .and_then(|v| text(&v).map(str::to_string)),
            }
        };
        match option.as_str() {
            "--name" => {
                let given = value("NAME")?;
                check_pod_name(&given).map_err(|e| format!("--name: {e}"))?;
                name = Some(given);
            }
            "--ready" => {
                let probe = value("PROBE")?;
                if probe == "none" {
                    none = true;
                } else {
                    ready.push(probe.parse().map_err(|e| {
                        format!("--ready: {}", check_suggestion(&probe, CHECK_KINDS, e))
                    })?);
                }
            }
            "--timeout-ready" => {
                let d =
                    parse_duration(&value("DUR")?).map_err(|e| format!("--timeout-ready: {e}"))?;
                timeout_ready = (!d.is_zero()).then_some(d);
            }
            "--grace" => {
                grace = parse_duration(&value("DUR")?).map_err(|e| format!("--grace: {e}"))?
            }
            "--stop-signal" => {
                stop_signal =
                    signal_named(&value("SIG")?).map_err(|e| format!("--stop-signal: {e}"))?
            }
            "--env" => {
                let pair = value("KEY=VALUE")?;
                match pair.split_once('=') {
                    Some((key, v)) if !key.is_empty() => env.push((key.to_string(), v.into())),
                    _ => {
                        return Err(format!(
                            "--env {pair:?}: expected KEY=VALUE with a non-empty KEY"
                        ))
                    }
                }
            }
            "--env-clear" => env_clear = true,
            "--restart" => {
                let text = value("no|on-failure|always")?;
                restart = text.parse().map_err(|e| {
                    format!(
                        "--restart: {}",
                        suggest(&text, &["no", "on-failure", "always"], e)
                    )
                })?;
            }
            "--ready-interval" => {
                let d =
                    parse_duration(&value("DUR")?).map_err(|e| format!("--ready-interval: {e}"))?;
                if d.is_zero() {
                    return Err("--ready-interval: expected a duration of at least 1ms".into());
                }
                ready_interval = Some(d);
            }
            "--ready-timeout" => ready_timeout = Some(positive(&option, value("DUR")?)?),
            "--health" => {
                let text = value("CHECK")?;
                let check = podvisor::Readiness::parse_health(&text).map_err(|e| {
                    format!("--health: {}", check_suggestion(&text, PULLED_KINDS, e))
                })?;
                health.push(check);
            }
            "--health-interval" => health_interval = Some(positive(&option, value("DUR")?)?),
            "--health-timeout" => health_timeout = Some(positive(&option, value("DUR")?)?),
            "--health-start-period" => {
                let text = value("DUR")?;
                health_start_period =
                    Some(parse_duration(&text).map_err(|e| format!("{option}: {e}"))?);
            }
            "--health-retries" => health_retries = Some(count(&option, &value("N")?)?),
            "--health-successes" => health_successes = Some(count(&option, &value("N")?)?),
            "--watchdog" => watchdog = Some(positive(&option, value("DUR")?)?),
            "--watchdog-signal" => {
                watchdog_signal = Some(
                    signal_named(&value("SIG")?).map_err(|e| format!("--watchdog-signal: {e}"))?,
                )
            }
            "--stdin" => {
                stdin = Some(match value("inherit|null")?.as_str() {
                    "inherit" => podvisor::Input::Inherit,
                    "null" => podvisor::Input::Null,
                    other => {
                        return Err(format!(
                            "--stdin: unknown input {other:?}; expected inherit or null"
                        ))
                    }
                })
            }
            "--json" => json = true,
            "--foreground" => foreground = true,
            "--serve-health" => {
                let text = value("ADDR")?;
                let address = text.parse::<std::net::SocketAddr>().map_err(|_| {
                    format!("--serve-health {text:?}: expected IP:PORT, such as 0.0.0.0:8081")
                })?;
                serve_health = Some(address);
            }
            "-h" | "--help" => return Ok(None),
            other => {
                return Err(format!(
                    "unknown option {other:?} for run{}; see podvisor run --help",
                    suggestion(other, RUN_OPTIONS)
                ))
            }
        }
        if inline.is_some() && matches!(option.as_str(), "--env-clear" | "--json" | "--foreground")
        {
            return Err(format!("{option} takes no value"));
        }
    }
    command.extend(iter);
    if none && !ready.is_empty() {
        return Err("--ready none cannot be combined with other --ready checks".into());
    }
    tuning_needs_its_check(
        &ready,
        !health.is_empty(),
        watchdog.is_some(),
        &[
            ("--ready-interval", ready_interval.is_some()),
            ("--ready-timeout", ready_timeout.is_some()),
        ],
        &[
            ("--health-interval", health_interval.is_some()),
            ("--health-timeout", health_timeout.is_some()),
            ("--health-retries", health_retries.is_some()),
            ("--health-successes", health_successes.is_some()),
            ("--health-start-period", health_start_period.is_some()),
        ],
        watchdog_signal.is_some(),
    )?;
    // A command in a process group of its own that reads the terminal is stopped by
    // SIGTTIN, and would wait for ever, silently.
    if stdin == Some(podvisor::Input::Inherit)
        && !foreground
        && std::io::IsTerminal::is_terminal(&std::io::stdin())
    {
        return Err(
            "--stdin inherit: podvisor's input is a terminal, which the command can \
            read only in the foreground; add --foreground"
                .into(),
        );
    }
    let mut command = command.into_iter();
    let program = command
        .next()
        .ok_or("missing COMMAND; usage: podvisor run [OPTIONS] -- COMMAND [ARGS...]")?;
    let mut config = PodConfig::new(program).args(command);
    match name {
        Some(name) => config = config.name(name),
        None => {
            // The program's file name, which may hold anything: shown escaped.
            let default = printable(config.get_name()).into_owned();
            config = config.name(default);
        }
    }
    for check in ready {
        config = config.ready(check);
    }
    for (key, value) in env {
        config = config.env(key, value);
    }
    if env_clear {
        config = config.env_clear();
    }
    if let Some(interval) = ready_interval {
        config = config.ready_interval(interval);
    }
    if let Some(timeout) = ready_timeout {
        config = config.ready_timeout(timeout);
    }
    for check in health {
        config = config.health(check);
    }
    if let Some(interval) = health_interval {
        config = config.health_interval(interval);
    }
    if let Some(timeout) = health_timeout {
        config = config.health_timeout(timeout);
    }
    if let Some(retries) = health_retries {
        config = config.health_retries(retries);
    }
    if let Some(successes) = health_successes {
        config = config.health_successes(successes);
    }
    if let Some(period) = health_start_period {
        config = config.health_start_period(period);
    }
    if let Some(interval) = watchdog {
        config = config.watchdog(interval);
    }
    if let Some(signal) = watchdog_signal {
        config = config.watchdog_signal(signal);
    }
    let terminal_output = if foreground && !json {
        podvisor::Output::Inherit
    } else {
        podvisor::Output::Forward
    };
    let config = config
        .timeout_ready(timeout_ready)
        .grace(grace)
        .stop_signal(stop_signal)
        .stdin(stdin.unwrap_or(if foreground {
            podvisor::Input::Inherit
        } else {
            default_stdin()
        }))
        // In the foreground the command writes to the terminal itself, as if run
        // directly (an output readiness check still reads its stream through a pipe);
        // with `--json` its streams go to podvisor's standard output instead.
        .stdout(terminal_output)
        .stderr(terminal_output)
        .forward_prefix("")
        // `--json`: standard error carries the events alone.
        .forward_to_stdout(json)
        .foreground(foreground);
    Ok(Some(RunOptions {
        config,
        json,
        restart,
        foreground,
        serve_health,
    }))
}

/// A count given to `option`: a whole number of at least 1.
fn count(option: &str, text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| format!("{option} {text:?}: expected a whole number of at least 1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_and_the_socket_may_come_before_the_command() {
        let client = |args: &[&str]| match parsed(args) {
            Ok(Command::Client(options)) => options,
            other => panic!("{args:?}: {other:?}"),
        };
        let options = client(&["--file", "x.toml", "ps", "--json"]);
        assert_eq!((options.file, options.json), ("x.toml".into(), true));
        let options = client(&["-f", "x.toml", "--socket=/tmp/s", "stop", "web"]);
        assert_eq!(options.socket, Some("/tmp/s".into()));
        assert_eq!(
            (options.file, options.names),
            ("x.toml".into(), vec!["web".into()])
        );
        // After the command still wins, as the later one.
        assert_eq!(
            client(&["-f", "a.toml", "logs", "--file", "b.toml"]).file,
            std::path::PathBuf::from("b.toml")
        );
        match parsed(&["--file=x.toml", "up", "--json"]).unwrap() {
            Command::Up { file, json, .. } => assert_eq!((file, json), ("x.toml".into(), true)),
            other => panic!("{other:?}"),
        }
        match parsed(&["-f", "x.toml", "check"]).unwrap() {
            Command::Check(file) => assert_eq!(file, std::path::PathBuf::from("x.toml")),
            other => panic!("{other:?}"),
        }
        for (args, needle) in [
            (
                &["-f", "a.toml", "check", "b.toml"][..],
                "check takes one FILE",
            ),
            (&["-f", "a.toml", "up", "b.toml"], "up takes one FILE"),
            (
                &["--socket", "/tmp/s", "check"],
                "check has no control socket",
            ),
            (&["-f", "a.toml", "run", "--", "true"], "not \"run\""),
            (&["-f"], "-f needs a value: FILE"),
            (&["--socket", "/tmp/s"], "missing command after the options"),
        ] {
            let message = parsed(args).unwrap_err();
            assert!(message.contains(needle), "{args:?}: {message}");
        }
    }

    /// `check` reads `-f/--file` as `up` and the client commands do; an unknown option is
    /// reported as one, never taken as FILE; `logs -f` follows, as compose's.
    #[test]
    fn check_takes_the_file_option_and_unknown_options_are_not_files() {
        for args in [
            &["check", "-f", "x.toml"][..],
            &["check", "--file", "x.toml"],
            &["check", "--file=x.toml"],
            &["check", "x.toml"],
        ] {
            match parsed(args) {
                Ok(Command::Check(file)) => assert_eq!(file, std::path::PathBuf::from("x.toml")),
                other => panic!("{args:?}: {other:?}"),
            }
        }
        assert!(help(Topic::Check).contains("-f, --file FILE"));
        for (args, needle) in [
            (
                &["check", "--flie", "x.toml"][..],
                "unknown option \"--flie\" for check; did you mean --file?",
            ),
            (
                &["up", "--fiel", "x.toml"],
                "unknown option \"--fiel\" for up; did you mean --file?",
            ),
            (&["check", "-f"], "-f needs a value: FILE"),
            (&["check", "-f", "a.toml", "b.toml"], "check takes one FILE"),
        ] {
            let message = parsed(args).unwrap_err();
            assert!(message.contains(needle), "{args:?}: {message}");
        }
        match parsed(&["logs", "-f", "web"]) {
            Ok(Command::Client(options)) => {
                assert!(options.follow);
                assert_eq!(options.names, ["web"]);
                assert_eq!(options.file, std::path::PathBuf::from("podvisor.toml"));
            }
            other => panic!("{other:?}"),
        }
        match parsed(&["-f", "a.toml", "logs", "-f"]) {
            Ok(Command::Client(options)) => {
                assert!(options.follow);
                assert_eq!(options.file, std::path::PathBuf::from("a.toml"));
            }
            other => panic!("{other:?}"),
        }
        assert!(help(Topic::Client(Action::Logs)).contains("-f, --follow"));
    }

    #[test]
    fn suggestions_forgive_one_swap_of_neighbours() {
        assert_eq!(did_you_mean("wbe", &["db", "web"]), Some("web"));
        assert_eq!(did_you_mean("sotp", &["start", "stop"]), Some("stop"));
        assert_eq!(did_you_mean("webb", &["web"]), Some("web"));
        assert_eq!(did_you_mean("xyz", &["web"]), None);
    }
    use std::time::Duration;

    fn run(args: &[&str]) -> Result<RunOptions, String> {
        let mut all = vec![OsString::from("run")];
        all.extend(args.iter().map(OsString::from));
        match parse(all)? {
            Command::Run(options) => Ok(*options),
            other => panic!("{other:?}"),
        }
    }

    fn parsed(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn every_subcommand_has_its_own_help() {
        for (args, topic) in [
            (&["run", "--help"][..], Topic::Run),
            (&["run", "-h"], Topic::Run),
            (&["up", "--help"], Topic::Up),
            (&["up", "x.toml", "-h"], Topic::Up),
            (&["check", "--help"], Topic::Check),
            (&["help", "run"], Topic::Run),
            (&["help", "check"], Topic::Check),
            (&["help"], Topic::All),
            (&["--help"], Topic::All),
        ] {
            match parsed(args) {
                Ok(Command::Help(t)) => assert_eq!(t, topic, "{args:?}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
        assert!(help(Topic::Run).contains("Example:"));
        assert!(help(Topic::Up).starts_with("podvisor up:"));
        assert!(parsed(&["help", "rn"])
            .unwrap_err()
            .contains("did you mean run?"));
    }

    #[test]
    fn mistyped_commands_and_flags_get_a_suggestion() {
        assert!(parsed(&["chek"])
            .unwrap_err()
            .contains("did you mean check?"));
        assert!(parsed(&["run", "--grase", "1s", "x"])
            .unwrap_err()
            .contains("did you mean --grace?"));
        assert!(parsed(&["run", "--timeout-redy", "1s", "x"])
            .unwrap_err()
            .contains("did you mean --timeout-ready?"));
        assert!(parsed(&["up", "--jsn"])
            .unwrap_err()
            .contains("did you mean --json?"));
        // Nothing close: no suggestion.
        let far = parsed(&["frobnicate"]).unwrap_err();
        assert!(!far.contains("did you mean"), "{far}");
    }

    #[test]
    fn short_flags_are_the_long_ones() {
        let options = run(&[
            "-n", "web", "-r", "notify", "-t", "5s", "-g", "2s", "-s", "INT", "-e", "A=1", "--",
            "true",
        ])
        .unwrap();
        assert_eq!(options.config.get_name(), "web");
        assert_eq!(options.config.get_grace(), Duration::from_secs(2));
        assert_eq!(options.config.get_stop_signal(), Signal::INT);
    }

    #[test]
    fn options_and_command() {
        let options = run(&[
            "--name",
            "web",
            "--grace=2s",
            "--json",
            "--",
            "sleep",
            "--help",
        ])
        .unwrap();
        assert_eq!(options.config.get_name(), "web");
        assert_eq!(options.config.get_grace(), Duration::from_secs(2));
        assert!(options.json);
        assert_eq!(options.config.get_program(), "sleep");
        let options = run(&["--ready", "tcp:localhost:80", "--ready", "notify", "true"]).unwrap();
        assert_eq!(options.config.get_program(), "true");
    }

    #[test]
    fn names_follow_the_pod_name_rule_and_a_default_name_is_made_printable() {
        let longest = "a".repeat(63);
        let options = run(&["--name", &longest, "x"]).unwrap();
        assert_eq!(options.config.get_name(), longest);
        let options = run(&["--name", "web-1.a_b", "x"]).unwrap();
        assert_eq!(options.config.get_name(), "web-1.a_b");
        // Without --name, the program's file name, whatever it is, escaped.
        let options = run(&["--", "/bin/odd\u{1b}[2Jname"]).unwrap();
        assert_eq!(options.config.get_name(), "odd\\u{1b}[2Jname");
        let options = run(&["--", "/usr/bin/my program"]).unwrap();
        assert_eq!(options.config.get_name(), "my program");
    }

    #[test]
    fn env_splits_at_the_first_equals_sign() {
        // The name ends at the first '=': a name can never hold one.
        let options = run(&["--env", "A=B=x", "--env=C=", "y"]).unwrap();
        let shown = format!("{:?}", options.config);
        assert!(
            shown.contains(r#"("A", "B=x")"#) && shown.contains(r#"("C", "")"#),
            "{shown}"
        );
    }

    #[test]
    fn errors_are_specific() {
        let cases: &[(&[&str], &str)] = &[
            (&["--grace", "10", "--", "x"], "did you mean 10s?"),
            (&["--timeout-ready"], "needs a value"),
            (
                &["--timeout-ready", "0.0000000001s", "x"],
                "--timeout-ready: duration \"0.0000000001s\" is under 1ms",
            ),
            (
                &["--grace=0.5ms", "x"],
                "--grace: duration \"0.5ms\" is under 1ms",
            ),
            (&["--ready", "tcp:80", "x"], "--ready"),
            (
                &["--ready", "none", "--ready", "notify", "x"],
                "cannot be combined",
            ),
            (&["--stop-signal", "TREM", "x"], "unknown signal"),
            // Misspelt values get a suggestion, as in a deployment file.
            (&["--stop-signal", "TREM", "x"], "did you mean TERM?"),
            (
                &["--watchdog", "1s", "--watchdog-signal", "ABTR", "x"],
                "--watchdog-signal: unknown signal \"ABTR\"",
            ),
            (
                &["--watchdog", "1s", "--watchdog-signal", "ABTR", "x"],
                "did you mean ABRT?",
            ),
            (&["--ready", "tpc:127.0.0.1:1", "x"], "did you mean tcp:?"),
            (&["--health", "exce:true", "x"], "did you mean exec:?"),
            (&["--restart", "alwys", "x"], "did you mean always?"),
            (&["--env", "=x", "y"], "KEY=VALUE"),
            (&["--env", "A", "y"], "expected KEY=VALUE with a non-empty KEY"),
            (&["--bogus", "x"], "unknown option \"--bogus\""),
            (&["--json=yes", "x"], "takes no value"),
            (&["--name", "x"], "missing COMMAND"),
            (&["--restart", "sometimes", "x"], "unknown policy"),
            (
                &["--name", "web\u{1b}[31m", "x"],
                "--name: pod name \"web\\u{1b}[31m\": '\\u{1b}' is not allowed; expected 1 to 63 characters",
            ),
            (&["--name", "my web", "x"], "' ' is not allowed"),
            (&["--name=", "x"], "is empty"),
            (
                &["--name", &"n".repeat(64), "x"],
                "has 64 characters; expected 1 to 63",
            ),
        ];
        for (args, needle) in cases {
            let error = run(args).unwrap_err();
            assert!(error.contains(needle), "{args:?}: {error}");
        }
        // A health check is never suggested a kind only a pod reports.
        let error = run(&["--health", "stdot:x", "x"]).unwrap_err();
        assert!(
            error.contains("unknown kind \"stdot\"") && !error.contains("did you mean"),
            "{error}"
        );
        assert!(parse(vec![]).unwrap_err().contains("missing command"));
        assert!(parse(vec!["stp".into()])
            .unwrap_err()
            .contains("unknown command \"stp\"; expected one of run, up, check, wait, export, ps"));
    }

    #[test]
    fn client_commands() {
        let client = |args: &[&str]| match parsed(args) {
            Ok(Command::Client(options)) => Ok(options),
            Ok(other) => panic!("{args:?}: {other:?}"),
            Err(e) => Err(e),
        };
        let options = client(&[
            "logs", "web", "db/0", "--tail", "5", "--follow", "--file", "x.toml",
        ])
        .unwrap();
        assert_eq!(options.names, ["web", "db/0"]);
        assert_eq!((options.tail, options.follow), (Some(5), true));
        assert_eq!(options.file, std::path::PathBuf::from("x.toml"));
        let options = client(&["ps", "--json", "--socket=/tmp/s"]).unwrap();
        assert!(options.json);
        assert_eq!(options.socket, Some("/tmp/s".into()));
        assert_eq!(client(&["restart", "web"]).unwrap().action, Action::Restart);
        for (args, needle) in [
            (&["stop"][..], "stop needs at least one NAME"),
            (&["ps", "web"], "ps takes no NAME"),
            (
                &["logs", "--tail", "x"],
                "--tail \"x\": expected a whole number",
            ),
            (&["logs", "--tial", "3"], "did you mean --tail?"),
            (&["logs", "--json"], "unknown option \"--json\" for logs"),
            (&["down", "--socket"], "--socket needs a value"),
            (&["down", "--socket="], "--socket: expected a path"),
            (&["ps", "--json=1"], "takes no value"),
            (&["events", "--follow"], "unknown option"),
        ] {
            let error = client(args).unwrap_err();
            assert!(error.contains(needle), "{args:?}: {error}");
        }
        match parsed(&["up", "--socket", "/tmp/s", "--json", "f.toml"]).unwrap() {
            Command::Up { file, json, socket } => {
                assert_eq!(file, std::path::PathBuf::from("f.toml"));
                assert!(json);
                assert_eq!(socket, Some("/tmp/s".into()));
            }
            other => panic!("{other:?}"),
        }
        assert!(parsed(&["up", "--socket"])
            .unwrap_err()
            .contains("needs a value"));
        for (args, topic) in [
            (&["ps", "--help"][..], Topic::Client(Action::Ps)),
            (&["help", "logs"], Topic::Client(Action::Logs)),
            (&["restart", "-h"], Topic::Client(Action::Restart)),
        ] {
            match parsed(args) {
                Ok(Command::Help(t)) => assert_eq!(t, topic, "{args:?}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
    }
}
