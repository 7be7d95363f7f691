//! The deployment file of `podvisor up` / `podvisor check`: TOML with one `[pod.NAME]`
//! table per pod. Every error names the file, line and column, the key, and what was
//! expected.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use podvisor::core::deployment::{Condition, DeploymentSpec, PodTemplate, RestartPolicy};
use podvisor::{PodConfig, Readiness, Signal};
use serde::Deserialize;
use toml::Spanned;

use crate::dotenv::{self, Vars};
use crate::duration::parse_duration;

/// The largest deployment file read: 1 MiB.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// The most replicas of one pod: each is a process with its own descriptors and memory,
/// and a typo such as `replicas = 1000000000` must be refused, not attempted.
pub const MAX_REPLICAS: u32 = 10_000;

/// At most this many pods in a deployment, all replicas counted (each holds about four
/// descriptors and a thread's share of the driver).
pub const MAX_PODS: u64 = 100_000;

/// A problem with the deployment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for FileError {
    /// Control characters (a file name's, a key's quoted by the TOML parser) are shown
    /// escaped: they never reach the terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = printable(&self.path);
        let message = printable(&self.message);
        if self.line == 0 {
            write!(f, "{path}: {message}")
        } else {
            write!(f, "{path}:{}:{}: {message}", self.line, self.column)
        }
    }
}

/// `text` with its control characters escaped as Rust does (`\u{1b}`, `\n`).
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// The longest pod name: a DNS label's length, short enough for every message and prefix.
pub const MAX_NAME_CHARS: usize = 63;

/// Checks a pod's name: 1 to 63 characters of `A-Z a-z 0-9 _ . -`, so that it can be
/// printed anywhere as it is. The error quotes the name (escaped, shortened).
pub fn check_pod_name(name: &str) -> Result<(), String> {
    const EXPECTED: &str = "expected 1 to 63 characters of A-Z, a-z, 0-9, '_', '.' and '-'";
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    let shown = || {
        let mut shown = format!(
            "{:?}",
            name.chars().take(MAX_NAME_CHARS + 1).collect::<String>()
        );
        if name.chars().nth(MAX_NAME_CHARS + 1).is_some() {
            shown.push('…');
        }
        shown
    };
    if name.is_empty() {
        return Err(format!("pod name \"\" is empty; {EXPECTED}"));
    }
    if let Some(bad) = name.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "pod name {}: {bad:?} is not allowed; {EXPECTED}",
            shown()
        ));
    }
    if name.len() > MAX_NAME_CHARS {
        return Err(format!(
            "pod name {} has {} characters; {EXPECTED}",
            shown(),
            name.len()
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a path or an array of paths")]
enum PathOrPaths {
    One(String),
    Many(Vec<String>),
}

/// A string, or an array of strings each with its place in the file; `M` says what
/// was expected, for the error when it is neither.
enum StringOrList<M> {
    One(String),
    Many(Vec<Spanned<String>>),
    /// Never built: it only ties `M` to the type.
    #[allow(dead_code)]
    Never(std::marker::PhantomData<M>, std::convert::Infallible),
}

/// What a [`StringOrList`] stands for, as its error says it.
trait Expecting {
    const EXPECTING: &'static str;
}

/// `ready` and `health`: a check, or an array of them.
struct Checks;

impl Expecting for Checks {
    const EXPECTING: &'static str = "a readiness check string or an array of them";
}

/// `command`: an array (the program and its arguments, executed directly) or a string
/// (run by `sh -c`, so it may use the shell's syntax).
struct Command;

impl Expecting for Command {
    const EXPECTING: &'static str =
        "an array of strings (the program first) or a string run by sh -c";
}

type OneOrMany = StringOrList<Checks>;
type CommandValue = StringOrList<Command>;

impl<'de, M: Expecting> Deserialize<'de> for StringOrList<M> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<M>(std::marker::PhantomData<M>);
        impl<'de, M: Expecting> serde::de::Visitor<'de> for Visitor<M> {
            type Value = StringOrList<M>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(M::EXPECTING)
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(StringOrList::One(text.to_string()))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut elements = Vec::new();
                while let Some(element) = seq.next_element::<Spanned<String>>()? {
                    elements.push(element);
                }
                Ok(StringOrList::Many(elements))
            }
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

/// `error` (of reading `given`) with "did you mean" added when `given` is close to one
/// of `known`.
pub fn suggest(given: &str, known: &[&str], error: String) -> String {
    match crate::args::did_you_mean(given, known) {
        Some(close) => format!("{error}; did you mean {close}?"),
        None => error,
    }
}

/// The conditions of `depends_on`, for suggestions.
const CONDITIONS: &[&str] = &[
    "started",
    "ready",
    "healthy",
    "succeeded",
    "service_started",
    "service_healthy",
    "service_completed_successfully",
];

/// A signal by name (`TERM`, `SIGTERM`, a number), with "did you mean" when the name is
/// close to a known one (`TREM`).
pub fn signal_named(text: &str) -> Result<Signal, String> {
    Signal::from_name(text).map_err(|e| {
        let Some((_, names)) = e.split_once("expected one of ") else {
            return e.clone();
        };
        let names: Vec<&str> = names.split(", ").collect();
        let upper = text.trim().to_ascii_uppercase();
        suggest(
            upper.strip_prefix("SIG").unwrap_or(&upper),
            &names,
            e.clone(),
        )
    })
}

/// The kinds of readiness check, for a suggestion when one is misspelt (`tpc:`).
pub const CHECK_KINDS: &[&str] = &["tcp", "http", "https", "file", "exec", "stdout", "stderr"];

/// The kinds of check podvisor makes itself (health checks, `podvisor wait`).
pub const PULLED_KINDS: &[&str] = &["tcp", "http", "https", "file", "exec"];

/// `error` (of parsing `check`) with "did you mean" added when the check's kind is close
/// to one of `kinds`.
pub fn check_suggestion(check: &str, kinds: &[&str], error: String) -> String {
    let Some((kind, _)) = check.split_once(':') else {
        return error;
    };
    if CHECK_KINDS.contains(&kind) {
        return error;
    }
    match crate::args::did_you_mean(kind, kinds) {
        Some(close) => format!("{error}; did you mean {close}:?"),
        None => error,
    }
}

#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a duration such as \"250ms\", \"10s\", \"1m30s\", or 0"
)]
enum DurationValue {
    Text(String),
    Number(i64),
}

#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "an array of pod names, or a table of pod name = \"started\" | \"ready\" | \"succeeded\""
)]
enum DependsOn {
    Names(Vec<String>),
    Conditions(BTreeMap<String, String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPod {
    command: Option<Spanned<CommandValue>>,
    ready: Option<Spanned<OneOrMany>>,
    ready_interval: Option<Spanned<DurationValue>>,
    ready_timeout: Option<Spanned<DurationValue>>,
    health: Option<Spanned<OneOrMany>>,
    health_interval: Option<Spanned<DurationValue>>,
    health_timeout: Option<Spanned<DurationValue>>,
    health_retries: Option<Spanned<i64>>,
    health_successes: Option<Spanned<i64>>,
    health_start_period: Option<Spanned<DurationValue>>,
    watchdog: Option<Spanned<DurationValue>>,
    watchdog_signal: Option<Spanned<String>>,
    timeout_ready: Option<Spanned<DurationValue>>,
    grace: Option<Spanned<DurationValue>>,
    stop_signal: Option<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, Spanned<String>>,
    env_file: Option<Spanned<PathOrPaths>>,
    cwd: Option<Spanned<String>>,
    depends_on: Option<Spanned<DependsOn>>,
    replicas: Option<Spanned<i64>>,
    log_lines: Option<Spanned<i64>>,
    restart: Option<Spanned<String>>,
    #[serde(default)]
    oneshot: bool,
    image: Option<Spanned<String>>,
    ports: Option<Spanned<Vec<Spanned<i64>>>>,
}

/// One pod of the file: its place in the deployment and how to build each replica's
/// configuration (`{replica}` and `{port}` are filled per replica).
#[derive(Debug)]
pub struct PlannedPod {
    pub template: PodTemplate,
    command: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
    ready: Vec<String>,
    timeout_ready: Option<Duration>,
    ready_interval: Option<Duration>,
    ready_timeout: Option<Duration>,
    health: Vec<String>,
    health_interval: Option<Duration>,
    health_timeout: Option<Duration>,
    health_retries: Option<u32>,
    health_successes: Option<u32>,
    health_start_period: Option<Duration>,
    watchdog: Option<Duration>,
    watchdog_signal: Option<Signal>,
    grace: Option<Duration>,
    stop_signal: Option<Signal>,
    /// Output lines kept for `podvisor logs`, per member.
    pub log_lines: usize,
    /// The container image for `podvisor export` (ignored by `up`).
    pub(crate) image: Option<String>,
    /// The ports the pod listens on, for `podvisor export` (ignored by `up`).
    pub(crate) ports: Vec<u16>,
    /// The `env_file` paths whose variables are in `env`.
    pub(crate) env_files: Vec<String>,
}

/// What `podvisor export` reads of a pod: the file as written, interpolated.
impl PlannedPod {
    pub(crate) fn command(&self) -> &[String] {
        &self.command
    }
    pub(crate) fn env(&self) -> &[(String, String)] {
        &self.env
    }
    pub(crate) fn cwd(&self) -> Option<&str> {
        self.cwd.as_deref()
    }
    pub(crate) fn ready(&self) -> &[String] {
        &self.ready
    }
    pub(crate) fn health(&self) -> &[String] {
        &self.health
    }
    /// `timeout_ready` as given (`Some(ZERO)` for no limit).
    pub(crate) fn timeout_ready(&self) -> Option<Duration> {
        self.timeout_ready
    }
    pub(crate) fn ready_interval(&self) -> Option<Duration> {
        self.ready_interval
    }
    pub(crate) fn ready_timeout(&self) -> Option<Duration> {
        self.ready_timeout
    }
    pub(crate) fn health_interval(&self) -> Option<Duration> {
        self.health_interval
    }
    pub(crate) fn health_timeout(&self) -> Option<Duration> {
        self.health_timeout
    }
    pub(crate) fn health_retries(&self) -> Option<u32> {
        self.health_retries
    }
    pub(crate) fn health_successes(&self) -> Option<u32> {
        self.health_successes
    }
    pub(crate) fn health_start_period(&self) -> Option<Duration> {
        self.health_start_period
    }
    pub(crate) fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }
    pub(crate) fn watchdog_signal(&self) -> Option<Signal> {
        self.watchdog_signal
    }
    pub(crate) fn grace(&self) -> Option<Duration> {
        self.grace
    }
    pub(crate) fn stop_signal(&self) -> Option<Signal> {
        self.stop_signal
    }
}

impl PlannedPod {
    /// The configuration of one replica; `fill` replaces the placeholders (`{replica}`,
    /// `{name}`, `{port}`) in every string.
    pub fn config(&self, fill: impl Fn(&str) -> String) -> Result<PodConfig, String> {
        let mut command = self.command.iter().map(|s| fill(s));
        let program = command.next().unwrap_or_default();
        let mut config = PodConfig::new(program)
            .args(command)
            .name(self.template.name.clone())
            .stdout(podvisor::Output::Forward)
            .stderr(podvisor::Output::Forward);
        for (key, value) in &self.env {
            config = config.env(key, fill(value));
        }
        if let Some(cwd) = &self.cwd {
            config = config.cwd(fill(cwd));
        }
        for check in &self.ready {
            let readiness: Readiness =
                fill(check).parse().map_err(|e| format!("key ready: {e}"))?;
            config = config.ready(readiness);
        }
        if let Some(interval) = self.ready_interval {
            config = config.ready_interval(interval);
        }
        if let Some(timeout) = self.ready_timeout {
            config = config.ready_timeout(timeout);
        }
        for check in &self.health {
            let text = fill(check);
            let check = Readiness::parse_health(&text).map_err(|e| format!("key health: {e}"))?;
            config = config.health(check);
        }
        if let Some(interval) = self.health_interval {
            config = config.health_interval(interval);
        }
        if let Some(timeout) = self.health_timeout {
            config = config.health_timeout(timeout);
        }
        if let Some(retries) = self.health_retries {
            config = config.health_retries(retries);
        }
        if let Some(successes) = self.health_successes {
            config = config.health_successes(successes);
        }
        if let Some(period) = self.health_start_period {
            config = config.health_start_period(period);
        }
        if let Some(watchdog) = self.watchdog {
            config = config.watchdog(watchdog);
        }
        if let Some(signal) = self.watchdog_signal {
            config = config.watchdog_signal(signal);
        }
        if let Some(t) = self.timeout_ready {
            config = config.timeout_ready((!t.is_zero()).then_some(t));
        }
        if let Some(g) = self.grace {
            config = config.grace(g);
        }
        if let Some(s) = self.stop_signal {
            config = config.stop_signal(s);
        }
        Ok(config)
    }
}

/// The whole file.
#[derive(Debug)]
pub struct Plan {
    pub pods: Vec<PlannedPod>,
}

struct Locator<'a> {
    path: &'a str,
    text: &'a str,
    /// The deployment file's directory, when it is a file: relative paths are resolved
    /// from it, and directories and programs are checked to exist.
    dir: Option<&'a Path>,
    /// Variables for `$VAR` interpolation.
    vars: &'a Vars,
    /// For `podvisor export`: paths are kept as written (they name places in an image),
    /// nothing is looked up on this machine.
    export: bool,
}

impl Locator<'_> {
    fn at(&self, span: Range<usize>, message: String) -> FileError {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(start, |i| start - i - 1) + 1;
        FileError {
            path: self.path.to_string(),
            line,
            column,
            message,
        }
    }

    fn whole(&self, message: String) -> FileError {
        FileError {
            path: self.path.to_string(),
            line: 0,
            column: 0,
            message,
        }
    }
}

/// Reads and checks `path`. At most [`MAX_FILE_BYTES`] are read, whatever `path` is (a
/// device such as `/dev/zero` or a pipe has no size to look at first).
pub fn load(path: &Path) -> Result<Plan, Vec<FileError>> {
    load_as(path, false)
}

/// Reads and checks `path` for `podvisor export`: as [`load`], but a pod's `cwd` is kept
/// as written and must be absolute (it names a directory in the image), and programs are
/// not looked for on this machine.
pub fn load_for_export(path: &Path) -> Result<Plan, Vec<FileError>> {
    load_as(path, true)
}

fn load_as(path: &Path, export: bool) -> Result<Plan, Vec<FileError>> {
    let shown = path.display().to_string();
    let whole = |message: String| FileError {
        path: shown.clone(),
        line: 0,
        column: 0,
        message,
    };
    let cannot_read = |e: std::io::Error| whole(format!("cannot read the deployment file: {e}"));
    let too_large = || {
        whole(format!(
            "the deployment file is larger than 1 MiB; expected at most {MAX_FILE_BYTES} bytes"
        ))
    };
    let file = File::open(path).map_err(cannot_read).map_err(|e| vec![e])?;
    if file
        .metadata()
        .is_ok_and(|m| m.is_file() && m.len() > MAX_FILE_BYTES as u64)
    {
        return Err(vec![too_large()]);
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| vec![cannot_read(e)])?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(vec![too_large()]);
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let prefix = std::str::from_utf8(&e.as_bytes()[..valid]).unwrap_or_default();
        let no_vars = Vars::new();
        let at = Locator {
            path: &shown,
            text: prefix,
            dir: None,
            vars: &no_vars,
            export: false,
        };
        vec![at.at(
            valid..valid,
            "the deployment file is not valid UTF-8 here; expected UTF-8 text (TOML)".into(),
        )]
    })?;
    let dir = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    parse_mode(&shown, &text, dir.as_deref(), export)
}

/// Parses and checks a deployment file's text.
#[cfg(test)]
fn parse(path: &str, text: &str) -> Result<Plan, FileError> {
    parse_in(path, text, None)
}

/// Parses and checks a deployment file's text; with `dir` (the file's directory), relative
/// paths are resolved from it, a pod's `cwd` defaults to it, and the directories and
/// programs are checked to exist.
#[cfg(test)]
fn parse_in(path: &str, text: &str, dir: Option<&Path>) -> Result<Plan, FileError> {
    parse_all(path, text, dir).map_err(|mut errors| errors.swap_remove(0))
}

/// An "unknown field `X`, expected one of `a`, `b`" message with "did you mean" added when
/// one of the expected names is close to X.
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((given, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match crate::args::did_you_mean(given, &known) {
        Some(close) => format!("{message}; did you mean `{close}`?"),
        None => message.to_string(),
    }
}

/// Writes each of `errors` on a line of its own, then how many there were.
pub fn report(errors: &[FileError]) {
    for error in errors {
        say!("podvisor: {error}");
    }
    if errors.len() > 1 {
        let more = if errors.len() >= MAX_ERRORS {
            " (the first ones only)"
        } else {
            ""
        };
        say!("podvisor: {} errors{more}", errors.len());
    }
}

/// At most this many errors of one file are reported.
pub const MAX_ERRORS: usize = 50;

/// Like [`parse_in`], with every pod's error (the first of each pod), then the
/// deployment's own if every pod was understood. Never empty on `Err`.
#[cfg(test)]
pub fn parse_all(path: &str, text: &str, dir: Option<&Path>) -> Result<Plan, Vec<FileError>> {
    parse_mode(path, text, dir, false)
}

/// [`parse_all`], or with `export` the checks of [`load_for_export`].
pub fn parse_mode(
    path: &str,
    text: &str,
    dir: Option<&Path>,
    export: bool,
) -> Result<Plan, Vec<FileError>> {
    let vars = variables(dir).map_err(|e| vec![e])?;
    let at = Locator {
        path,
        text,
        dir,
        vars: &vars,
        export,
    };
    let mut errors = Vec::new();
    let Some(entries) = raw_pods(&at, &mut errors) else {
        return Err(errors);
    };
    let mut spec = DeploymentSpec::new();
    let mut pods = Vec::new();
    let mut headers: BTreeMap<String, Range<usize>> = BTreeMap::new();
    // Where each pod's `depends_on` is: the deployment's dependency errors point there.
    let mut dependency_keys: BTreeMap<String, Range<usize>> = BTreeMap::new();
    // Pods whose keys could not all be read stand in as bare templates: a problem that
    // involves one is not reported (it would only repeat what is missing).
    let mut unread: Vec<String> = Vec::new();
    // Pods with an error of their own: whether they are one-shot or health-checked is
    // not known for sure.
    let mut broken: Vec<String> = Vec::new();
    let mut total: u64 = 0;
    for pod in entries {
        if errors.len() >= MAX_ERRORS {
            break;
        }
        let RawEntry {
            name,
            span,
            raw,
            command_seen,
            set_aside,
        } = pod;
        if let Err(e) = check_pod_name(&name) {
            errors.push(at.at(span, e));
            continue;
        }
        headers.insert(name.clone(), span.clone());
        let Some(raw) = raw else {
            spec = spec.pod(PodTemplate::new(name.clone()));
            unread.push(name);
            continue;
        };
        if let Some(depends_on) = &raw.depends_on {
            dependency_keys.insert(name.clone(), depends_on.span());
        }
        let (template, planned) =
            plan_pod(&at, &name, span.clone(), command_seen, raw, &mut errors);
        spec = spec.pod(template);
        let Some(planned) = planned.filter(|_| !set_aside) else {
            broken.push(name);
            continue;
        };
        total += u64::from(planned.template.replicas);
        if total > MAX_PODS {
            errors.push(at.at(
                span,
                format!(
                    "pod {name}: the deployment has {total} pods with this one's replicas; \
                     expected at most {MAX_PODS} in all"
                ),
            ));
            return Err(errors);
        }
        pods.push(planned);
    }
    use podvisor::core::deployment::DeploymentError as E;
    for problem in spec.problems() {
        if errors.len() >= MAX_ERRORS {
            break;
        }
        let involved = involved_pods(&problem);
        if involved.iter().any(|p| unread.iter().any(|u| u == p))
            || matches!(problem, E::NoPods) && !errors.is_empty()
        {
            continue;
        }
        if let E::HealthyNeedsChecks { dependency, .. }
        | E::SucceededNeedsOneShot { dependency, .. } = &problem
        {
            if broken.contains(dependency) {
                continue;
            }
        }
        let about_dependencies = matches!(
            problem,
            E::Cycle { .. }
                | E::UnknownDependency { .. }
                | E::DuplicateDependency { .. }
                | E::SucceededNeedsOneShot { .. }
                | E::HealthyNeedsChecks { .. }
        );
        let place = involved.first().and_then(|&pod| {
            let key = about_dependencies
                .then(|| dependency_keys.get(pod))
                .flatten();
            key.or_else(|| headers.get(pod)).cloned()
        });
        let mut message = problem.to_string();
        if let E::UnknownDependency {
            dependency, known, ..
        } = &problem
        {
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            if let Some(close) = crate::args::did_you_mean(dependency, &known) {
                message.push_str(&format!("; did you mean {close:?}?"));
            }
        }
        errors.push(match place {
            Some(span) => at.at(span, message),
            None => at.whole(message),
        });
    }
    // In the order of the file, as a reader goes through it.
    errors.sort_by_key(|e| (e.line, e.column));
    errors.truncate(MAX_ERRORS);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Plan { pods })
}

/// The pods a validation error is about, the one it is reported at first.
fn involved_pods(error: &podvisor::core::deployment::DeploymentError) -> Vec<&str> {
    use podvisor::core::deployment::DeploymentError as E;
    match error {
        E::DuplicateName { name } | E::SlashInName { name } => vec![name],
        E::UnknownDependency { pod, .. } => vec![pod],
        E::DuplicateDependency { pod, dependency }
        | E::SucceededNeedsOneShot { pod, dependency }
        | E::HealthyNeedsChecks { pod, dependency } => vec![pod, dependency],
        E::ZeroReplicas { pod }
        | E::OneShotRestartsAlways { pod }
        | E::BareNameNeedsOneReplica { pod, .. }
        | E::Backoff { pod, .. } => vec![pod],
        E::Cycle { pods } => pods.iter().map(String::as_str).collect(),
        _ => Vec::new(),
    }
}

/// A pod table of the file, its keys read.
struct RawEntry {
    name: String,
    /// The table's span (its header).
    span: Range<usize>,
    /// `None` when some key could not be set aside to read the rest.
    raw: Option<RawPod>,
    /// Whether the table has a `command` key (read or not).
    command_seen: bool,
    /// Whether a key was reported and left out: what the pod is is not known for sure.
    set_aside: bool,
}

/// Every pod table of the file, in declaration order, each with its header's span and
/// its keys understood, or `None` where a key could not be; every problem is in
/// `errors`. `None` when the file is not TOML or has no `[pod.NAME]` tables at all.
///
/// Pods are read one by one, and a key that cannot be read is reported and set aside so
/// that the rest of its pod is still read: one run of `check` finds every such key.
fn raw_pods(at: &Locator<'_>, errors: &mut Vec<FileError>) -> Option<Vec<RawEntry>> {
    let (document, syntax) = toml::de::DeTable::parse_recoverable(at.text);
    if !syntax.is_empty() {
        // Past a syntax error the shape of the rest is a guess, and the errors that follow
        // mostly echo it: the first alone.
        let e = &syntax[0];
        let mut message = e.message().trim_end().to_string();
        if syntax.len() > 1 {
            message.push_str("; the rest of the file is checked once this is fixed");
        }
        errors.push(match e.span() {
            Some(span) => at.at(span, message),
            None => at.whole(message),
        });
        return None;
    }
    let mut pods = None;
    for (key, value) in document.into_inner() {
        if key.get_ref().as_ref() == "pod" {
            pods = Some(value);
        } else {
            let message = with_suggestion(&format!(
                "unknown field `{}`, expected `pod`",
                printable(key.get_ref())
            ));
            errors.push(at.at(key.span(), message));
        }
    }
    let Some(pods) = pods else {
        if errors.is_empty() {
            errors.push(
                at.whole("no pods; expected at least one [pod.NAME] table with a command".into()),
            );
        }
        return None;
    };
    let pods_span = pods.span();
    let toml::de::DeValue::Table(pods) = pods.into_inner() else {
        errors.push(at.at(
            pods_span,
            "key pod: expected tables of pods ([pod.NAME]), not a single value".into(),
        ));
        return None;
    };
    let mut read = Vec::with_capacity(pods.len());
    // In the order of the file: the first errors reported are the first ones in it.
    let mut pods: Vec<_> = pods.into_iter().collect();
    pods.sort_by_key(|(_, value)| value.span().start);
    for (name, value) in pods {
        if errors.len() >= MAX_ERRORS {
            break;
        }
        let name = name.into_inner().into_owned();
        let span = value.span();
        let toml::de::DeValue::Table(mut table) = value.into_inner() else {
            errors.push(at.at(
                span,
                format!(
                    "pod {}: expected a table of keys ([pod.{}] with a command), not a single value",
                    printable(&name),
                    printable(&name)
                ),
            ));
            continue;
        };
        let mut command_seen = table.contains_key("command");
        let mut set_aside = interpolate_table(at, &name, &mut table, errors);
        let raw = loop {
            let value = Spanned::new(span.clone(), toml::de::DeValue::Table(table.clone()));
            let e = match RawPod::deserialize(toml::de::ValueDeserializer::from(value)) {
                Ok(raw) => break Some(raw),
                Err(e) => e,
            };
            let message = e
                .message()
                .trim_end()
                .replace("expected i64", "expected a whole number");
            let message = message.as_str();
            let at_span = e.span().unwrap_or_else(|| span.clone());
            // The key the error is in, set aside before reading the pod again.
            let culprit = table
                .iter()
                .find(|(k, v)| {
                    let whole = k.span().start..v.span().end.max(k.span().end);
                    whole.contains(&at_span.start)
                })
                .map(|(k, _)| k.get_ref().to_string());
            let shown = printable(&name);
            match culprit {
                Some(key) => {
                    let text = if message.starts_with("unknown field") {
                        let message = with_suggestion(message);
                        // A misspelt command is reported as such, not also as missing.
                        command_seen |= message.ends_with("did you mean `command`?");
                        format!("pod {shown}: {message}")
                    } else {
                        format!("pod {shown}: key {}: {message}", printable(&key))
                    };
                    errors.push(at.at(at_span, text));
                    table.remove(key.as_str());
                    set_aside = true;
                    if errors.len() >= MAX_ERRORS {
                        break None;
                    }
                }
                None => {
                    errors.push(at.at(at_span, format!("pod {shown}: {message}")));
                    break None;
                }
            }
        };
        read.push(RawEntry {
            name,
            span,
            raw,
            command_seen,
            set_aside,
        });
    }
    if read.is_empty() && errors.is_empty() {
        errors.push(
            at.whole("no pods; expected at least one [pod.NAME] table with a command".into()),
        );
    }
    Some(read)
}

/// Replaces the variables in every string of a pod's table, before any key is read (as
/// compose interpolates the whole file): durations, signals, checks, dependencies alike.
/// Table keys are names and stay as written. A key with a string that cannot be
/// interpolated is reported at that string and left out; whether one was.
fn interpolate_table(
    at: &Locator<'_>,
    pod: &str,
    table: &mut toml::de::DeTable<'_>,
    errors: &mut Vec<FileError>,
) -> bool {
    fn walk(
        vars: &Vars,
        key: &str,
        value: &mut Spanned<toml::de::DeValue<'_>>,
    ) -> Result<(), (Range<usize>, String, String)> {
        use toml::de::DeValue;
        let span = value.span();
        match value.get_mut() {
            DeValue::String(text) if text.contains('$') => {
                let replaced =
                    dotenv::interpolate(text, vars).map_err(|e| (span, key.to_string(), e))?;
                *text = replaced.into();
            }
            DeValue::Array(items) => {
                for item in items.iter_mut() {
                    walk(vars, key, item)?;
                }
            }
            DeValue::Table(table) => {
                for (name, item) in table.iter_mut() {
                    walk(vars, &format!("{key}.{}", name.get_ref()), item)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    let mut failed = Vec::new();
    for (key, value) in table.iter_mut() {
        if let Err((span, path, e)) = walk(at.vars, key.get_ref(), value) {
            let message = format!("pod {}: key {}: {e}", printable(pod), printable(&path));
            errors.push(at.at(span, message));
            failed.push(key.get_ref().to_string());
        }
    }
    for key in &failed {
        table.remove(key.as_str());
    }
    !failed.is_empty()
}

fn duration(
    at: &Locator<'_>,
    pod: &str,
    key: &str,
    value: Spanned<DurationValue>,
) -> Result<Duration, FileError> {
    let span = value.span();
    let text = match value.into_inner() {
        DurationValue::Text(text) => text,
        DurationValue::Number(n) => n.to_string(),
    };
    parse_duration(&text).map_err(|e| at.at(span, format!("pod {pod}: key {key}: {e}")))
}

/// The most output lines kept per member for `podvisor logs`.
const MAX_LOG_LINES: usize = 100_000;

/// What a string with a NUL byte was expected to be: a C string cannot hold one, so no
/// program, argument, variable or path can.
const NO_NUL: &str = "expected text without NUL (\\u0000)";

/// The variables for interpolation: a `.env` file beside the deployment file, overridden
/// by podvisor's own environment (compose's rule).
fn variables(dir: Option<&Path>) -> Result<Vars, FileError> {
    let mut vars = Vars::new();
    if let Some(dir) = dir {
        let path = dir.join(".env");
        let read = std::fs::read_to_string(&path);
        if let Err(e) = &read {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(FileError {
                    path: path.display().to_string(),
                    line: 0,
                    column: 0,
                    message: format!("cannot read the .env file beside the deployment file: {e}"),
                });
            }
        }
        if let Ok(text) = read {
            let pairs = dotenv::parse(&text).map_err(|(line, message)| FileError {
                path: path.display().to_string(),
                line,
                column: 1,
                message: format!("{message}; expected KEY=VALUE lines"),
            })?;
            vars.extend(pairs);
        }
    }
    for (key, value) in std::env::vars_os() {
        if let (Some(key), Some(value)) = (key.to_str(), value.to_str()) {
            vars.insert(key.to_string(), value.to_string());
        }
    }
    Ok(vars)
}

/// The pod's working directory resolved from the file's directory `dir` (its default),
/// checked to exist, with its program checked to be found.
fn resolve_cwd(
    at: &Locator<'_>,
    name: &str,
    dir: &Path,
    cwd: Option<Spanned<String>>,
    command: &[Spanned<String>],
    command_span: &Range<usize>,
    env: &[(String, String)],
) -> Result<String, FileError> {
    let (resolved, span) = match &cwd {
        Some(given) => (dir.join(given.get_ref()), given.span()),
        None => (dir.to_path_buf(), command_span.clone()),
    };
    let shown = resolved.display().to_string();
    // Placeholders are filled per replica: what they make is checked when the pod starts.
    if !shown.contains('{') && !resolved.is_dir() {
        let relative = cwd.as_ref().is_none_or(|c| !c.get_ref().starts_with('/'));
        let note = if relative {
            format!(
                " (a relative cwd is resolved from the deployment file's directory {})",
                dir.display()
            )
        } else {
            String::new()
        };
        return Err(at.at(
            span,
            format!(
                "pod {name}: key cwd: directory {shown} does not exist; expected an existing \
                 directory{note}"
            ),
        ));
    }
    let program = command.first().map_or("", |p| p.get_ref().as_str());
    if !shown.contains('{') && !program.contains('{') {
        let found = if program.contains('/') {
            is_executable(&resolved.join(program))
        } else {
            let path = env
                .iter()
                .rev()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| std::ffi::OsString::from(v))
                .or_else(|| std::env::var_os("PATH"))
                .unwrap_or_default();
            std::env::split_paths(&path).any(|d| is_executable(&d.join(program)))
        };
        if !found {
            let how = if program.contains('/') {
                format!("a program path with / is resolved from the pod's cwd {shown}")
            } else {
                "it is looked up in PATH".to_string()
            };
            return Err(at.at(
                command.first().map_or(command_span.clone(), |p| p.span()),
                format!(
                    "pod {name}: key command: program {program:?} is not found or not \
                     executable; expected an executable program ({how})"
                ),
            ));
        }
    }
    Ok(shown)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Plans one pod, every problem of it in `errors`: the plan if it had none, and in
/// any case its template as far as it was understood (for the deployment's checks).
/// `header` is the span of its table, `command_seen` whether a `command` key was there
/// (one that could not be read was reported already).
fn plan_pod(
    at: &Locator<'_>,
    name: &str,
    header: Range<usize>,
    command_seen: bool,
    raw: RawPod,
    errors: &mut Vec<FileError>,
) -> (PodTemplate, Option<PlannedPod>) {
    let before = errors.len();
    // A key's value, or its error noted and the key left out.
    macro_rules! note {
        ($result:expr) => {
            match $result {
                Ok(value) => Some(value),
                Err(e) => {
                    errors.push(e);
                    None
                }
            }
        };
    }
    let command_span = raw.command.as_ref().map_or(header, Spanned::span);
    let (command, shell) = match raw.command.map(Spanned::into_inner) {
        None => {
            if !command_seen {
                errors.push(at.at(
                    command_span.clone(),
                    format!(
                        "pod {name}: key command is missing; expected command = [\"program\", \"arg\", ...] (executed directly) or command = \"a shell line\" (run by sh -c)"
                    ),
                ));
            }
            (None, false)
        }
        Some(StringOrList::Many(command)) => (Some(command), false),
        Some(StringOrList::One(line)) => {
            let span = command_span.clone();
            let command = vec![
                Spanned::new(span.clone(), "sh".to_string()),
                Spanned::new(span.clone(), "-c".to_string()),
                Spanned::new(span, line),
            ];
            (Some(command), true)
        }
    };
    let command = command.and_then(|command| {
        if shell && command[2].get_ref().trim().is_empty() {
            errors.push(at.at(
                command_span.clone(),
                format!("pod {name}: key command: expected a non-empty command line"),
            ));
            return None;
        }
        if command.first().is_none_or(|p| p.get_ref().is_empty()) {
            errors.push(at.at(
                command_span.clone(),
                format!(
                    "pod {name}: key command: expected a non-empty array of strings, the program first"
                ),
            ));
            return None;
        }
        if let Some(i) = command.iter().position(|e| e.get_ref().contains('\0')) {
            errors.push(at.at(
                command[i].span(),
                format!(
                    "pod {name}: key command: element {} contains a NUL byte; {NO_NUL}",
                    i + 1
                ),
            ));
            return None;
        }
        Some(command)
    });
    let mut env = Vec::with_capacity(raw.env.len());
    let mut env_files = Vec::new();
    if let Some(files) = raw.env_file {
        let span = files.span();
        let files = match files.into_inner() {
            PathOrPaths::One(one) => vec![one],
            PathOrPaths::Many(many) => many,
        };
        for file in files {
            let path = match at.dir {
                Some(dir) => dir.join(&file),
                None => PathBuf::from(&file),
            };
            let read = std::fs::read_to_string(&path).map_err(|e| {
                at.at(
                    span.clone(),
                    format!(
                        "pod {name}: key env_file: cannot read {}: {e}; expected a .env file (relative to the deployment file's directory)",
                        path.display()
                    ),
                )
            });
            let Some(text) = note!(read) else {
                continue;
            };
            let pairs = dotenv::parse(&text).map_err(|(line, message)| {
                at.at(
                    span.clone(),
                    format!(
                        "pod {name}: key env_file: {}:{line}: {message}; expected KEY=VALUE lines",
                        path.display()
                    ),
                )
            });
            let Some(pairs) = note!(pairs) else {
                continue;
            };
            env.extend(pairs);
            env_files.push(file);
        }
    }
    for (key, value) in raw.env {
        let problem = if key.get_ref().is_empty() {
            Some("is empty")
        } else if key.get_ref().contains('=') {
            Some("contains '='")
        } else if key.get_ref().contains('\0') {
            Some("contains a NUL byte")
        } else {
            None
        };
        if let Some(problem) = problem {
            errors.push(at.at(
                key.span(),
                format!(
                    "pod {name}: key env: variable name {:?} {problem}; expected a non-empty name without '=' or NUL",
                    key.get_ref()
                ),
            ));
            continue;
        }
        if value.get_ref().contains('\0') {
            errors.push(at.at(
                value.span(),
                format!(
                    "pod {name}: key env.{}: the value contains a NUL byte; {NO_NUL}",
                    key.get_ref()
                ),
            ));
            continue;
        }
        env.push((key.into_inner(), value.into_inner()));
    }
    let mut cwd = None;
    let mut cwd_broken = false;
    if let Some(path) = raw.cwd {
        if path.get_ref().contains('\0') {
            errors.push(at.at(
                path.span(),
                format!("pod {name}: key cwd: the path contains a NUL byte; {NO_NUL}"),
            ));
            cwd_broken = true;
        } else {
            cwd = Some(path);
        }
    }
    let cwd = match at.dir {
        _ if cwd_broken => None,
        _ if at.export => match cwd {
            Some(path) if !path.get_ref().starts_with('/') => {
                errors.push(at.at(
                    path.span(),
                    format!(
                        "pod {name}: key cwd: {:?} is relative, which cannot be exported; expected an absolute directory in the image",
                        path.get_ref()
                    ),
                ));
                None
            }
            other => other.map(Spanned::into_inner),
        },
        // Where the program is looked for depends on the command: checked with it.
        Some(dir) => match &command {
            Some(command) => note!(resolve_cwd(
                at,
                name,
                dir,
                cwd,
                command,
                &command_span,
                &env,
            )),
            None => None,
        },
        None => cwd.map(Spanned::into_inner),
    };
    let command: Vec<String> = command
        .unwrap_or_default()
        .into_iter()
        .map(Spanned::into_inner)
        .collect();
    let mut planned = PlannedPod {
        template: PodTemplate::new(name),
        command,
        env,
        cwd,
        ready: Vec::new(),
        timeout_ready: None,
        ready_interval: None,
        ready_timeout: None,
        health: Vec::new(),
        health_interval: None,
        health_timeout: None,
        health_retries: None,
        health_successes: None,
        health_start_period: None,
        watchdog: None,
        watchdog_signal: None,
        grace: None,
        stop_signal: None,
        log_lines: crate::logbook::KEPT,
        image: None,
        ports: Vec::new(),
        env_files,
    };
    // Placeholders filled as for a first replica, to check what they make.
    let trial = |s: &str| {
        s.replace("{replica}", "0")
            .replace("{name}", name)
            .replace("{port}", "1")
    };
    // A check or an array of them, each checked on its own and reported at its place; a
    // relative `file:` path is resolved from the deployment file's directory. `None`
    // when one was bad.
    let check_list = |key: &str, value: Spanned<OneOrMany>, errors: &mut Vec<FileError>| {
        let span = value.span();
        let (checks, numbered) = match value.into_inner() {
            OneOrMany::One(one) => (vec![Spanned::new(span, one)], false),
            OneOrMany::Many(many) => {
                let numbered = many.len() > 1;
                (many, numbered)
            }
        };
        let before = errors.len();
        let mut kept = Vec::with_capacity(checks.len());
        for (i, check) in checks.into_iter().enumerate() {
            let which = if numbered {
                format!("check {}: ", i + 1)
            } else {
                String::new()
            };
            let text = check.get_ref();
            let problem = if text.contains('\0') {
                Some(format!("{which}contains a NUL byte; {NO_NUL}"))
            } else if key == "health" {
                Readiness::parse_health(&trial(text))
                    .err()
                    .map(|e| format!("{which}{}", check_suggestion(text, PULLED_KINDS, e)))
            } else {
                trial(text)
                    .parse::<Readiness>()
                    .err()
                    .map(|e| format!("{which}{}", check_suggestion(text, CHECK_KINDS, e)))
            };
            if let Some(problem) = problem {
                errors.push(at.at(check.span(), format!("pod {name}: key {key}: {problem}")));
                continue;
            }
            let text = check.into_inner();
            kept.push(match (text.strip_prefix("file:"), at.dir) {
                (Some(path), Some(dir)) if !at.export && !path.starts_with('/') => {
                    format!("file:{}", dir.join(path).display())
                }
                _ => text,
            });
        }
        (errors.len() == before).then_some(kept)
    };
    let positive = |key: &str, value: Spanned<DurationValue>| {
        let span = value.span();
        let d = duration(at, name, key, value)?;
        if d.is_zero() {
            return Err(at.at(
                span,
                format!("pod {name}: key {key}: expected a duration of at least 1ms"),
            ));
        }
        Ok(d)
    };
    // Tuning keys that need a check (or the watchdog) to tune, read before they are taken.
    let ready_tuning = [
        (
            "ready_interval",
            raw.ready_interval.as_ref().map(Spanned::span),
        ),
        (
            "ready_timeout",
            raw.ready_timeout.as_ref().map(Spanned::span),
        ),
    ];
    let health_tuning = [
        (
            "health_interval",
            raw.health_interval.as_ref().map(Spanned::span),
        ),
        (
            "health_timeout",
            raw.health_timeout.as_ref().map(Spanned::span),
        ),
        (
            "health_retries",
            raw.health_retries.as_ref().map(Spanned::span),
        ),
        (
            "health_successes",
            raw.health_successes.as_ref().map(Spanned::span),
        ),
        (
            "health_start_period",
            raw.health_start_period.as_ref().map(Spanned::span),
        ),
    ];
    let watchdog_signal_span = raw
        .watchdog_signal
        .as_ref()
        .filter(|_| raw.watchdog.is_none())
        .map(Spanned::span);
    // `None` when the key could not be read (its error says enough).
    let mut pulled_ready = Some(false);
    let mut health_checks = Some(0);
    let ready_span = raw.ready.as_ref().map(Spanned::span);
    if let Some(ready) = raw.ready {
        pulled_ready = None;
        if let Some(checks) = check_list("ready", ready, errors) {
            planned.ready = checks.into_iter().filter(|c| c != "none").collect();
            pulled_ready = Some(planned.ready.iter().any(|c| {
                ["tcp:", "http://", "https://", "file:", "exec:"]
                    .iter()
                    .any(|kind| c.starts_with(kind))
            }));
        }
    }
    if let Some(value) = raw.ready_interval {
        planned.ready_interval = note!(positive("ready_interval", value));
    }
    if let Some(value) = raw.ready_timeout {
        planned.ready_timeout = note!(positive("ready_timeout", value));
    }
    let health_span = raw.health.as_ref().map(Spanned::span);
    if let Some(health) = raw.health {
        let checks = check_list("health", health, errors);
        health_checks = checks.as_ref().map(Vec::len);
        planned.health = checks.unwrap_or_default();
    }
    if let Some(value) = raw.health_interval {
        planned.health_interval = note!(positive("health_interval", value));
    }
    if let Some(value) = raw.health_timeout {
        planned.health_timeout = note!(positive("health_timeout", value));
    }
    if let Some(value) = raw.health_start_period {
        planned.health_start_period = note!(duration(at, name, "health_start_period", value));
    }
    if let Some(retries) = raw.health_retries {
        let span = retries.span();
        let n = note!(u32::try_from(*retries.get_ref())
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                at.at(
                    span,
                    format!(
                        "pod {name}: key health_retries: {} is not a count of failures; expected a whole number of at least 1",
                        retries.get_ref()
                    ),
                )
            }));
        planned.health_retries = n;
    }
    if let Some(successes) = raw.health_successes {
        let span = successes.span();
        let n = note!(u32::try_from(*successes.get_ref())
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                at.at(
                    span,
                    format!(
                        "pod {name}: key health_successes: {} is not a count of successes; expected a whole number of at least 1",
                        successes.get_ref()
                    ),
                )
            }));
        planned.health_successes = n;
    }
    if let Some(lines) = raw.log_lines {
        let span = lines.span();
        let n = note!(usize::try_from(*lines.get_ref())
            .ok()
            .filter(|&n| n <= MAX_LOG_LINES)
            .ok_or_else(|| {
                at.at(
                    span,
                    format!(
                        "pod {name}: key log_lines: expected a whole number from 0 to {MAX_LOG_LINES}, got {}",
                        lines.get_ref()
                    ),
                )
            }));
        planned.log_lines = n.unwrap_or(planned.log_lines);
    }
    if let Some(value) = raw.watchdog {
        planned.watchdog = note!(positive("watchdog", value));
    }
    if let Some(signal) = raw.watchdog_signal {
        let span = signal.span();
        planned.watchdog_signal = note!(signal_named(signal.get_ref())
            .map_err(|e| at.at(span, format!("pod {name}: key watchdog_signal: {e}"))));
    }
    if let Some(value) = raw.timeout_ready {
        planned.timeout_ready = note!(duration(at, name, "timeout_ready", value));
    }
    if let Some(value) = raw.grace {
        planned.grace = note!(duration(at, name, "grace", value));
    }
    if let Some(signal) = raw.stop_signal {
        let span = signal.span();
        planned.stop_signal = note!(signal_named(signal.get_ref())
            .map_err(|e| at.at(span, format!("pod {name}: key stop_signal: {e}"))));
    }
    // Tuning that nothing would use: reported at its key, when its value was read.
    let tuned = |key: &str| match key {
        "ready_interval" => planned.ready_interval.is_some(),
        "ready_timeout" => planned.ready_timeout.is_some(),
        "health_interval" => planned.health_interval.is_some(),
        "health_timeout" => planned.health_timeout.is_some(),
        "health_retries" => planned.health_retries.is_some(),
        "health_successes" => planned.health_successes.is_some(),
        "health_start_period" => planned.health_start_period.is_some(),
        _ => planned.watchdog_signal.is_some(),
    };
    if pulled_ready == Some(false) {
        for (key, span) in ready_tuning {
            if let Some(span) = span.filter(|_| tuned(key)) {
                errors.push(at.at(
                    span,
                    format!("pod {name}: key {key}: needs a tcp:, http://, file: or exec: ready check; it only tunes how those are tried (add one to ready, or leave {key} out)"),
                ));
            }
        }
    }
    if health_checks == Some(0) {
        for (key, span) in health_tuning {
            if let Some(span) = span.filter(|_| tuned(key)) {
                errors.push(at.at(
                    span,
                    format!("pod {name}: key {key}: needs a health check; without one there is nothing to tune (add health = \"CHECK\", or leave {key} out)"),
                ));
            }
        }
    }
    if let Some(span) = watchdog_signal_span.filter(|_| tuned("watchdog_signal")) {
        errors.push(at.at(
            span,
            format!("pod {name}: key watchdog_signal: needs a watchdog; it is only sent when the watchdog expires (add watchdog = \"DUR\", or leave watchdog_signal out)"),
        ));
    }
    // The whole configuration, as a first replica's (each check was checked already).
    if errors.len() == before {
        if let Err(e) = planned.config(trial) {
            let span = if e.starts_with("key health") {
                health_span.unwrap_or(command_span)
            } else {
                ready_span.unwrap_or(command_span)
            };
            errors.push(at.at(span, format!("pod {name}: {e}")));
        }
    }
    let mut template = PodTemplate::new(name);
    if let Some(replicas) = raw.replicas {
        let span = replicas.span();
        let n = note!(u32::try_from(*replicas.get_ref())
            .ok()
            .filter(|&n| (1..=MAX_REPLICAS).contains(&n))
            .ok_or_else(|| {
                at.at(
                    span,
                    format!(
                        "pod {name}: key replicas: expected a whole number from 1 to {MAX_REPLICAS}, got {}",
                        replicas.get_ref()
                    ),
                )
            }));
        if let Some(n) = n {
            template = template.replicas(n);
        }
    }
    if raw.oneshot {
        template = template.one_shot();
    }
    if let Some(restart) = raw.restart {
        let span = restart.span();
        let policy: Option<RestartPolicy> = note!(restart.get_ref().parse().map_err(|e| {
            let e = suggest(restart.get_ref(), &["no", "on-failure", "always"], e);
            at.at(span, format!("pod {name}: key restart: {e}"))
        }));
        if let Some(policy) = policy {
            template = template.restart(policy);
        }
    }
    if let Some(depends_on) = raw.depends_on {
        let span = depends_on.span();
        match depends_on.into_inner() {
            DependsOn::Names(names) => {
                for dependency in names {
                    template = template.depends_on(dependency, Condition::Ready);
                }
            }
            DependsOn::Conditions(map) => {
                for (dependency, condition) in map {
                    let span = span.clone();
                    let condition: Option<Condition> = note!(condition.parse().map_err(|e| {
                        let e = suggest(&condition, CONDITIONS, e);
                        at.at(
                            span,
                            format!("pod {name}: key depends_on.{dependency}: {e}"),
                        )
                    }));
                    if let Some(condition) = condition {
                        template = template.depends_on(dependency, condition);
                    }
                }
            }
        }
    }
    if let Some(image) = raw.image {
        let span = image.span();
        {
            let image = image.into_inner();
            if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
                errors.push(at.at(
                    span,
                    format!(
                        "pod {name}: key image: {image:?} is not an image reference; expected a name such as \"redis:7\" or \"registry.example/app@sha256:...\", without spaces"
                    ),
                ));
            } else {
                planned.image = Some(image);
            }
        }
    }
    if let Some(ports) = raw.ports {
        for port in ports.into_inner() {
            let span = port.span();
            let n = note!(u16::try_from(*port.get_ref())
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| {
                    at.at(
                        span.clone(),
                        format!(
                            "pod {name}: key ports: {} is not a port; expected a whole number from 1 to 65535",
                            port.get_ref()
                        ),
                    )
                }));
            let Some(n) = n else {
                continue;
            };
            if planned.ports.contains(&n) {
                errors.push(at.at(
                    span,
                    format!(
                        "pod {name}: key ports: port {n} is listed twice; expected each port once"
                    ),
                ));
                continue;
            }
            planned.ports.push(n);
        }
    }
    let template = template.health_checked(!planned.health.is_empty());
    planned.template = template.clone();
    (template, (errors.len() == before).then_some(planned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> FileError {
        parse("podvisor.toml", text).unwrap_err()
    }

    #[test]
    fn a_full_file_parses_in_declaration_order() {
        let plan = parse(
            "f.toml",
            r#"
[pod.web]
command = ["python3", "-m", "http.server", "{port}"]
ready = ["http://127.0.0.1:{port}/", "stdout:Serving"]
depends_on = { db = "ready", migrate = "succeeded" }
replicas = 3
restart = "on-failure"
grace = "2s"
timeout_ready = 0
stop_signal = "INT"
env = { MODE = "prod" }

[pod.db]
command = ["redis-server"]

[pod.migrate]
command = ["true"]
oneshot = true
"#,
        )
        .unwrap();
        let names: Vec<&str> = plan.pods.iter().map(|p| p.template.name.as_str()).collect();
        assert_eq!(names, vec!["web", "db", "migrate"]);
        assert_eq!(plan.pods[0].template.replicas, 3);
        assert_eq!(plan.pods[0].template.restart, RestartPolicy::OnFailure);
        assert!(plan.pods[2].template.one_shot);
    }

    /// 20 000 pods, each depending on the one before, in well under the size limit:
    /// parsing and validation must stay linear (the duplicate-name and dependency
    /// lookups used to compare every pod with every other). No timing assertion; the
    /// figures are measured with the release build.
    #[test]
    fn twenty_thousand_pods_in_a_chain_parse() {
        let mut text = String::from("[pod.p0]\ncommand=[\"x\"]\n");
        for i in 1..20_000 {
            text.push_str(&format!(
                "[pod.p{i}]\ncommand=[\"x\"]\ndepends_on=[\"p{}\"]\n",
                i - 1
            ));
        }
        assert!(text.len() <= MAX_FILE_BYTES, "{}", text.len());
        let plan = parse("big.toml", &text).unwrap();
        assert_eq!(plan.pods.len(), 20_000);
        assert_eq!(plan.pods[19_999].template.depends_on[0].on, "p19998");
    }

    #[test]
    fn paths_are_resolved_from_the_files_directory_and_checked() {
        let dir = std::env::temp_dir().join(format!("podvisor-file-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let script = dir.join("data/app.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ok = parse_in(
            "f.toml",
            "[pod.a]\ncommand = [\"./app.sh\"]\ncwd = \"data\"\n[pod.b]\ncommand = \"echo hi\"\n",
            Some(&dir),
        )
        .unwrap();
        assert_eq!(
            ok.pods[0].cwd.as_deref(),
            Some(dir.join("data").to_str().unwrap())
        );
        // Without a cwd, the file's directory.
        assert_eq!(ok.pods[1].cwd.as_deref(), Some(dir.to_str().unwrap()));
        let cases = [
            (
                "[pod.a]\ncommand = [\"true\"]\ncwd = \"missing\"\n",
                (3, 7),
                "key cwd: directory",
            ),
            (
                "[pod.a]\ncommand = [\"./nope.sh\"]\ncwd = \"data\"\n",
                (2, 12),
                "program \"./nope.sh\" is not found",
            ),
            (
                "[pod.a]\ncommand = [\"podvisor-no-such-program\"]\n",
                (2, 12),
                "it is looked up in PATH",
            ),
            (
                "[pod.a]\ncommand = [\"true\"]\nenv = { PATH = \"/nonexistent\" }\n",
                (2, 12),
                "is not found",
            ),
        ];
        for (text, (line, column), expected) in cases {
            let error = parse_in("f.toml", text, Some(&dir)).unwrap_err();
            assert!(error.message.contains(expected), "{text}: {error}");
            assert_eq!((error.line, error.column), (line, column), "{error}");
        }
        // Placeholders are left for the start.
        assert!(parse_in(
            "f.toml",
            "[pod.a]\ncommand = [\"true\"]\ncwd = \"run-{replica}\"\n",
            Some(&dir)
        )
        .is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every string of the file is interpolated before it is read, as compose does:
    /// durations, signals, the restart policy, checks, dependency names and conditions.
    #[test]
    fn every_string_of_the_file_is_interpolated() {
        let dir = std::env::temp_dir().join(format!("podvisor-every-var-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".env"), "PODVISOR_T_GRACE=3s\nPODVISOR_T_DEP=w\n").unwrap();
        let text = "[pod.w]\ncommand = [\"true\"]\n\
            [pod.a]\ncommand = [\"true\"]\n\
            grace = \"${PODVISOR_T_GRACE}\"\n\
            timeout_ready = \"${PODVISOR_T_UNSET_TR:-5s}\"\n\
            restart = \"${PODVISOR_T_UNSET_RESTART:-on-failure}\"\n\
            stop_signal = \"${PODVISOR_T_UNSET_SIG:-INT}\"\n\
            ready = [\"${PODVISOR_T_UNSET_READY:-stdout:up}\"]\n\
            depends_on = { w = \"${PODVISOR_T_UNSET_COND:-service_started}\" }\n\
            [pod.b]\ncommand = [\"true\"]\ndepends_on = [\"$PODVISOR_T_DEP\"]\n";
        let plan = parse_in("f.toml", text, Some(&dir)).unwrap();
        let a = &plan.pods[1];
        assert_eq!(a.grace, Some(Duration::from_secs(3)));
        assert_eq!(a.timeout_ready, Some(Duration::from_secs(5)));
        assert_eq!(a.template.restart, RestartPolicy::OnFailure);
        assert_eq!(a.stop_signal, Some(Signal::from_name("INT").unwrap()));
        assert_eq!(a.ready, ["stdout:up"]);
        assert_eq!(a.template.depends_on[0].condition, Condition::Started);
        assert_eq!(plan.pods[2].template.depends_on[0].on, "w");
        // An error stays at its string, naming the key.
        for (text, (line, column), expected) in [
            (
                "[pod.a]\ncommand = [\"true\"]\ngrace = \"${PODVISOR_T_UNSET_G:?give a grace}\"\n",
                (3, 9),
                "pod a: key grace: variable PODVISOR_T_UNSET_G is not set: give a grace",
            ),
            (
                "[pod.w]\ncommand = [\"true\"]\n[pod.a]\ncommand = [\"true\"]\n\
                 depends_on = { w = \"$PODVISOR_T_UNSET_C\" }\n",
                (5, 20),
                "pod a: key depends_on.w: variable PODVISOR_T_UNSET_C is not set",
            ),
        ] {
            let errors = parse_all("f.toml", text, Some(&dir)).unwrap_err();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].message.contains(expected),
                "{text}: {}",
                errors[0]
            );
            assert_eq!(
                (errors[0].line, errors[0].column),
                (line, column),
                "{}",
                errors[0]
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Each ready and health check is checked on its own, at its place, beside the pod's
    /// other errors.
    #[test]
    fn every_bad_check_is_reported_at_its_place() {
        let text = "[pod.a]\ncommand = [\"x\"]\n\
                    ready = [\"notify\", \"tpc:127.0.0.1:1\"]\n\
                    health = \"htp://x\"\n\
                    env = { \"A=B\" = \"x\" }\n\
                    stop_signal = \"TREM\"\n";
        let errors = parse_all("f.toml", text, None).unwrap_err();
        let got: Vec<(usize, usize, &str)> = errors
            .iter()
            .map(|e| (e.line, e.column, e.message.as_str()))
            .collect();
        let expect = [
            (3, 20, "pod a: key ready: check 2:"),
            (4, 10, "pod a: key health:"),
            (5, 9, "pod a: key env:"),
            (6, 15, "pod a: key stop_signal:"),
        ];
        assert_eq!(got.len(), expect.len(), "{got:#?}");
        for (got, expect) in got.iter().zip(expect) {
            assert!(
                got.0 == expect.0 && got.1 == expect.1 && got.2.starts_with(expect.2),
                "{got:?} is not {expect:?}"
            );
        }
    }

    /// A relative `file:` check names a file from the deployment file's directory, as a
    /// relative cwd or env_file does; an absolute one, and any in an export, as written.
    #[test]
    fn a_relative_file_check_is_resolved_from_the_file_directory() {
        let dir = std::env::temp_dir().join(format!("podvisor-file-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = "[pod.a]\ncommand = [\"true\"]\n\
                    ready = [\"file:run/ready-{replica}\", \"file:/abs/x\"]\n\
                    health = \"file:ok\"\n";
        let plan = parse_in("f.toml", text, Some(&dir)).unwrap();
        let expected = format!("file:{}", dir.join("run/ready-{replica}").display());
        assert_eq!(plan.pods[0].ready, [expected.as_str(), "file:/abs/x"]);
        assert_eq!(
            plan.pods[0].health,
            [format!("file:{}", dir.join("ok").display())]
        );
        let plan = parse_mode("f.toml", text, Some(&dir), true).unwrap();
        assert_eq!(
            plan.pods[0].ready,
            ["file:run/ready-{replica}", "file:/abs/x"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A misspelt value gets the close one; a missing absolute cwd is not explained as a
    /// relative one.
    #[test]
    fn misspelt_values_get_a_suggestion() {
        for (text, expected) in [
            ("[pod.a]\ncommand = [\"x\"]\nrestart = \"alwys\"\n", "did you mean always?"),
            ("[pod.a]\ncommand = [\"x\"]\nstop_signal = \"TREM\"\n", "did you mean TERM?"),
            ("[pod.a]\ncommand = [\"x\"]\nready = \"tpc:127.0.0.1:1\"\n", "did you mean tcp:?"),
            (
                "[pod.db]\ncommand = [\"x\"]\n[pod.a]\ncommand = [\"x\"]\ndepends_on = [\"dbb\"]\n",
                "did you mean \"db\"?",
            ),
            (
                "[pod.db]\ncommand = [\"x\"]\n[pod.a]\ncommand = [\"x\"]\ndepends_on = { db = \"redy\" }\n",
                "did you mean ready?",
            ),
        ] {
            let e = error(text);
            assert!(e.message.ends_with(expected), "{text}: {e}");
        }
        let dir = std::env::temp_dir();
        let e = parse_in(
            "f.toml",
            "[pod.a]\ncommand = [\"true\"]\ncwd = \"/nonexistent-podvisor-dir\"\n",
            Some(&dir),
        )
        .unwrap_err();
        assert!(e.message.contains("does not exist"), "{e}");
        assert!(!e.message.contains("a relative cwd"), "{e}");
    }

    #[test]
    fn variables_env_files_and_dollar_dollar() {
        let dir = std::env::temp_dir().join(format!("podvisor-vars-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(".env"),
            "PODVISOR_TEST_FROM_DOTENV=dotenv\nPATH=/overridden-by-the-environment\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("app.env"),
            "# settings\nA=from-file\nB=\"two words\"\n",
        )
        .unwrap();
        let text = "[pod.a]\n\
            command = [\"sh\", \"-c\", \"echo $$HOME ${PODVISOR_TEST_FROM_DOTENV} ${PODVISOR_TEST_UNSET:-dflt}\"]\n\
            env_file = \"app.env\"\n\
            env = { B = \"table wins\", C = \"$PODVISOR_TEST_FROM_DOTENV\" }\n";
        let plan = parse_in("f.toml", text, Some(&dir)).unwrap();
        let pod = &plan.pods[0];
        assert_eq!(pod.command[2], "echo $HOME dotenv dflt");
        let env: Vec<(&str, &str)> = pod
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("A", "from-file"),
                ("B", "two words"),
                ("B", "table wins"),
                ("C", "dotenv")
            ]
        );
        for (text, (line, column), expected) in [
            (
                "[pod.a]\ncommand = [\"echo\", \"$PODVISOR_TEST_UNSET\"]\n",
                (2, 20),
                "pod a: key command: variable PODVISOR_TEST_UNSET is not set",
            ),
            (
                "[pod.a]\ncommand = [\"true\"]\nenv = { X = \"${NEED:?set NEED to the token}\" }\n",
                (3, 13),
                "key env.X: variable NEED is not set: set NEED to the token",
            ),
            (
                "[pod.a]\ncommand = [\"true\"]\nenv_file = \"missing.env\"\n",
                (3, 12),
                "key env_file: cannot read",
            ),
            (
                "[pod.a]\ncommand = \"echo $1\"\n",
                (2, 11),
                "write $$ for a literal $",
            ),
        ] {
            let error = parse_in("f.toml", text, Some(&dir)).unwrap_err();
            assert!(error.message.contains(expected), "{text}: {error}");
            assert_eq!((error.line, error.column), (line, column), "{error}");
        }
        std::fs::write(dir.join("bad.env"), "A=1\noops\n").unwrap();
        let error = parse_in(
            "f.toml",
            "[pod.a]\ncommand = [\"true\"]\nenv_file = [\"app.env\", \"bad.env\"]\n",
            Some(&dir),
        )
        .unwrap_err();
        assert!(error.message.contains("bad.env:2:"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_mistyped_key_gets_a_suggestion() {
        let error = parse("f.toml", "[pod.a]\ncomand = [\"x\"]\n").unwrap_err();
        assert!(
            error.message.ends_with("did you mean `command`?"),
            "{error}"
        );
        let error = parse("f.toml", "[pods.a]\ncommand = [\"x\"]\n").unwrap_err();
        assert!(error.message.ends_with("did you mean `pod`?"), "{error}");
        let error = parse("f.toml", "[pod.a]\ncommand = [\"x\"]\nzzzzzz = 1\n").unwrap_err();
        assert!(!error.message.contains("did you mean"), "{error}");
    }

    #[test]
    fn check_reports_every_pods_error_in_one_run() {
        let text = "[pod.a]\ncommand = [\"x\"]\ngrace = \"10\"\n\
                    [pod.b]\ncommand = [\"x\"]\n\
                    [pod.c]\ncommand = [\"x\"]\nreplicas = 0\n\
                    [pod.d]\ncommand = [\"x\"]\ndepends_on = [\"nobody\"]\n";
        let errors = parse_all("f.toml", text, None).unwrap_err();
        let lines: Vec<(usize, &str)> = errors
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert_eq!(lines.len(), 3, "{errors:?}");
        assert!(
            lines[0].0 == 3 && lines[0].1.contains("key grace"),
            "{lines:?}"
        );
        assert!(
            lines[1].0 == 8 && lines[1].1.contains("key replicas"),
            "{lines:?}"
        );
        // The deployment's own errors beside the pods' (at the pod's depends_on).
        assert!(
            lines[2].0 == 11 && lines[2].1.contains("\"nobody\""),
            "{lines:?}"
        );
        // Many broken pods: the first MAX_ERRORS.
        let many: String = (0..200)
            .map(|i| format!("[pod.p{i}]\ncommand = [\"x\"]\nreplicas = 0\n"))
            .collect();
        assert_eq!(
            parse_all("f.toml", &many, None).unwrap_err().len(),
            MAX_ERRORS
        );
    }

    /// Keys that cannot be read at all (unknown, or of the wrong type) are set aside and
    /// the rest of the file is still checked: several in one pod, in several pods, beside
    /// values that are wrong, and the file's own stray keys, each once, in file order.
    #[test]
    fn keys_that_cannot_be_read_do_not_hide_the_other_errors() {
        let text = "top = 1\n\
                    [pod.a]\ncommand = [\"x\"]\nfoo = 1\ngrace = \"10\"\nreplicas = \"x\"\n\
                    [pod.b]\ncommand = 3\nbar = 2\n\
                    [pod.c]\ncmd = [\"x\"]\n\
                    [pod.d]\ncommand = \"true\"\nrestart = \"sometimes\"\n\
                    depends_on = { a = \"healthy\", nobody = \"ready\", e = \"started\" }\n\
                    [pod.e]\ncommand = [\"x\"]\ndepends_on = [\"d\"]\n";
        let errors = parse_all("f.toml", text, None).unwrap_err();
        let got: Vec<(usize, usize, &str)> = errors
            .iter()
            .map(|e| (e.line, e.column, e.message.as_str()))
            .collect();
        let expect: [(usize, usize, &str); 11] = [
            (1, 1, "unknown field `top`, expected `pod`"),
            (4, 1, "pod a: unknown field `foo`"),
            (5, 9, "pod a: key grace: duration \"10\" has no unit"),
            (
                6,
                12,
                "pod a: key replicas: invalid type: string \"x\", expected a whole number",
            ),
            (8, 11, "pod b: key command: invalid type: integer `3`"),
            (9, 1, "pod b: unknown field `bar`"),
            (10, 1, "pod c: key command is missing; expected command = ["),
            (11, 1, "pod c: unknown field `cmd`"),
            (14, 11, "pod d: key restart: unknown policy \"sometimes\""),
            (15, 14, "pod \"d\" depends on \"nobody\""),
            (15, 14, "dependency cycle: d → e → d"),
        ];
        assert_eq!(got.len(), expect.len(), "{got:#?}");
        for (got, expect) in got.iter().zip(expect) {
            assert!(
                got.0 == expect.0 && got.1 == expect.1 && got.2.starts_with(expect.2),
                "{got:?} is not {expect:?}"
            );
        }
        // `healthy` on the broken pod a is not judged: whether a has checks is not known.
        assert!(!got.iter().any(|e| e.2.contains("healthy")), "{got:#?}");
        // A misspelt command is not also reported missing.
        let errors = parse_all("f.toml", "[pod.a]\ncomand = [\"x\"]\n", None).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        // A syntax error: the first, alone, and where it is.
        let errors =
            parse_all("f.toml", "[pod.a]\ncommand = [\"x\"\n[pod.b\nx=\n", None).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!((errors[0].line, errors[0].column), (3, 1), "{errors:?}");
        assert!(
            errors[0]
                .message
                .ends_with("the rest of the file is checked once this is fixed"),
            "{errors:?}"
        );
        // `pod` that is not a table of tables.
        let errors = parse_all("f.toml", "pod = 3\n", None).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .message
                .starts_with("key pod: expected tables of pods"),
            "{errors:?}"
        );
        let errors = parse_all("f.toml", "[pod]\na = 3\n", None).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .message
                .starts_with("pod a: expected a table of keys"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_command_string_runs_under_sh() {
        let plan = parse(
            "f.toml",
            "[pod.a]\ncommand = \"python3 app.py --port {port} | tee log\"\n",
        )
        .unwrap();
        assert_eq!(
            plan.pods[0].command,
            ["sh", "-c", "python3 app.py --port {port} | tee log"]
        );
        let config = plan.pods[0]
            .config(|s| s.replace("{port}", "8080"))
            .unwrap();
        assert_eq!(config.get_program(), "sh");
        for (text, expected) in [
            (
                "[pod.a]\ncommand = \"  \"\n",
                "expected a non-empty command line",
            ),
            ("[pod.a]\ncommand = 3\n", "or a string run by sh -c"),
            ("[pod.a]\ncommand = \"a\\u0000b\"\n", "contains a NUL byte"),
        ] {
            let error = parse("f.toml", text).unwrap_err();
            assert!(error.message.contains(expected), "{text}: {error}");
            assert_eq!(error.line, 2, "{error}");
        }
    }

    #[test]
    fn compose_condition_names_are_understood() {
        let plan = parse(
            "f.toml",
            "[pod.db]\ncommand = [\"x\"]\nhealth = \"tcp:127.0.0.1:1\"\n\
             [pod.job]\ncommand = [\"x\"]\noneshot = true\n\
             [pod.web]\ncommand = [\"x\"]\n\
             depends_on = { db = \"service_healthy\", job = \"service_completed_successfully\" }\n\
             [pod.side]\ncommand = [\"x\"]\ndepends_on = { db = \"service_started\" }\n",
        )
        .unwrap();
        let conditions: Vec<Condition> = plan
            .pods
            .iter()
            .flat_map(|p| p.template.depends_on.iter().map(|d| d.condition))
            .collect();
        assert_eq!(
            conditions,
            [Condition::Healthy, Condition::Succeeded, Condition::Started]
        );
        let error = parse(
            "f.toml",
            "[pod.db]\ncommand = [\"x\"]\n[pod.web]\ncommand = [\"x\"]\ndepends_on = { db = \"service_up\" }\n",
        )
        .unwrap_err();
        assert!(error.message.contains("service_healthy"), "{error}");
    }

    #[test]
    fn ten_thousand_replicas_is_the_most() {
        // Eleven pods of 10000 replicas: the eleventh passes the total.
        let text: String = (0..11)
            .map(|i| format!("[pod.p{i}]\ncommand = [\"x\"]\nreplicas = 10000\n"))
            .collect();
        let error = parse("f.toml", &text).unwrap_err();
        assert_eq!((error.line, error.column), (31, 1), "{error}");
        assert!(
            error
                .message
                .contains("pod p10: the deployment has 110000 pods")
                && error.message.contains("at most 100000 in all"),
            "{error}"
        );
        let plan = parse("f.toml", "[pod.a]\ncommand = [\"x\"]\nreplicas = 10000\n").unwrap();
        assert_eq!(plan.pods[0].template.replicas, MAX_REPLICAS);
        assert_eq!(MAX_REPLICAS, 10_000);
    }

    #[test]
    fn pod_names_are_up_to_63_characters_of_a_safe_set() {
        let longest = "a".repeat(63);
        let text =
            format!("[pod.{longest}]\ncommand = [\"x\"]\n[pod.\"A-Z_0.9\"]\ncommand = [\"x\"]\n");
        let plan = parse("f.toml", &text).unwrap();
        assert_eq!(plan.pods[0].template.name, longest);
        let cases = [
            // Terminal escape codes must not reach the terminal, even in the error.
            ("[pod.\"a\\u001b[31mred\"]\ncommand = [\"x\"]\n", "pod name \"a\\u{1b}[31mred\": '\\u{1b}' is not allowed"),
            ("[pod.\"a\\u009b31m\"]\ncommand = [\"x\"]\n", "'\\u{9b}' is not allowed"),
            ("[pod.\"a b\"]\ncommand = [\"x\"]\n", "pod name \"a b\": ' ' is not allowed"),
            ("[pod.\"a/b\"]\ncommand = [\"x\"]\n", "'/' is not allowed"),
            ("[pod.\"caf\u{e9}\"]\ncommand = [\"x\"]\n", "'\u{e9}' is not allowed"),
            ("[pod.\"\"]\ncommand = [\"x\"]\n", "pod name \"\" is empty"),
            ("[pod.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\ncommand = [\"x\"]\n", "has 64 characters"),
        ];
        for (text, needle) in cases {
            let e = error(text);
            let shown = e.to_string();
            assert_eq!((e.line, e.column), (1, 1), "{text:?}: {shown}");
            assert!(shown.starts_with("podvisor.toml:1:1: "), "{shown}");
            assert!(shown.contains(needle), "{text:?}: {shown}");
            assert!(
                shown.contains("expected 1 to 63 characters of A-Z, a-z, 0-9, '_', '.' and '-'"),
                "{shown}"
            );
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
        }
        // A very long name is shortened in the message.
        let long = format!("[pod.{}]\ncommand = [\"x\"]\n", "b".repeat(100_000));
        let shown = error(&long).to_string();
        assert!(
            shown.len() < 400 && shown.contains("has 100000 characters"),
            "{shown}"
        );
    }

    #[test]
    fn control_characters_in_any_message_are_escaped() {
        // An unknown key is named by the TOML parser's own message.
        let e = error("[pod.a]\ncommand = [\"x\"]\n\"\\u001b[2J\" = 1\n");
        let shown = e.to_string();
        assert_eq!(e.line, 3, "{shown}");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains("\\u{1b}[2J"), "{shown:?}");
        let e = FileError {
            path: "a\u{1b}]0;title\u{7}.toml".into(),
            line: 0,
            column: 0,
            message: "tab\tnew\nline\u{9b}".into(),
        };
        assert_eq!(
            e.to_string(),
            "a\\u{1b}]0;title\\u{7}.toml: tab\\tnew\\nline\\u{9b}"
        );
    }

    #[test]
    fn nul_bytes_and_bad_environment_names_are_refused() {
        let cases = [
            (
                "[pod.a]\ncommand = [\"x\\u0000y\"]\n",
                2,
                12,
                "pod a: key command: element 1 contains a NUL byte",
            ),
            (
                "[pod.a]\ncommand = [\"x\", \"--flag\",\n  \"a\\u0000\"]\n",
                3,
                3,
                "pod a: key command: element 3 contains a NUL byte",
            ),
            (
                "[pod.a]\ncommand = [\"x\"]\nenv = { \"A=B\" = \"x\" }\n",
                3,
                9,
                "pod a: key env: variable name \"A=B\" contains '='",
            ),
            (
                "[pod.a]\ncommand = [\"x\"]\nenv = { \"\" = \"x\" }\n",
                3,
                9,
                "pod a: key env: variable name \"\" is empty",
            ),
            (
                "[pod.a]\ncommand = [\"x\"]\n[pod.a.env]\n\"A\\u0000\" = \"x\"\n",
                4,
                1,
                "pod a: key env: variable name \"A\\0\" contains a NUL byte",
            ),
            (
                "[pod.a]\ncommand = [\"x\"]\nenv = { A = \"x\\u0000\" }\n",
                3,
                13,
                "pod a: key env.A: the value contains a NUL byte",
            ),
            (
                "[pod.a]\ncommand = [\"x\"]\ncwd = \"/tmp\\u0000\"\n",
                3,
                7,
                "pod a: key cwd: the path contains a NUL byte",
            ),
            (
                "[pod.a]\ncommand = [\"x\"]\nready = [\"notify\", \"exec:true\\u0000\"]\n",
                3,
                20,
                "pod a: key ready: check 2: contains a NUL byte",
            ),
        ];
        for (text, line, column, needle) in cases {
            let e = error(text);
            let shown = e.to_string();
            assert_eq!((e.line, e.column), (line, column), "{text:?}: {shown}");
            assert!(shown.contains(needle), "{text:?}: {shown}");
            assert!(!shown.contains('\0'), "{shown:?}");
        }
        // A value may hold '=' and a name anything else.
        let plan = parse(
            "f.toml",
            "[pod.a]\ncommand = [\"x\"]\nenv = { A = \"B=x\", \"a.b-c\" = \"\" }\n",
        )
        .unwrap();
        let config = plan.pods[0].config(str::to_string).unwrap();
        assert!(
            format!("{config:?}").contains(r#"("A", "B=x")"#),
            "{config:?}"
        );
    }

    #[test]
    fn every_kind_of_error_names_file_line_column_key_and_expectation() {
        let cases = [
            ("[pod.a]\ncommand = [\"x\"]\ngrace = \"10\"\n", 3, "key grace", "did you mean 10s?"),
            ("[pod.a]\ncommand = [\"x\"]\ngrace = \"0.1ms\"\n", 3, "pod a: key grace", "smallest duration is 1ms"),
            ("[pod.a]\ncommand = [\"x\"]\ntimeout_ready = \"1e-9s\"\n", 3, "key timeout_ready", "unknown unit"),
            ("[pod.a]\ncommand = [\"x\"]\nready_interval = 0\n", 3, "key ready_interval", "at least 1ms"),
            ("[pod.a]\ncommand = [\"x\"]\ntimeout_ready = \"0.0000000001s\"\n", 3, "pod a: key timeout_ready", "smallest duration is 1ms"),
            ("[pod.a]\ncommand = [\"x\"]\ncolour = \"red\"\n", 3, "colour", "expected"),
            ("[pod.a]\n", 1, "command", "missing"),
            ("[pod.a]\ncommand = []\n", 2, "key command", "non-empty"),
            ("[pod.a]\ncommand = [\"x\"]\nready = \"tcp:80\"\n", 3, "key ready", "HOST:PORT"),
            ("[pod.a]\ncommand = [\"x\"]\nreplicas = 0\n", 3, "key replicas", "from 1 to 10000, got 0"),
            ("[pod.a]\ncommand = [\"x\"]\nreplicas = 10001\n", 3, "pod a: key replicas", "from 1 to 10000, got 10001"),
            ("[pod.a]\ncommand = [\"x\"]\nreplicas = 1000000000\n", 3, "key replicas", "from 1 to 10000"),
            ("[pod.a]\ncommand = [\"x\"]\nreplicas = -1\n", 3, "key replicas", "from 1 to 10000"),
            ("[pod.a]\ncommand = [\"x\"]\nrestart = \"sometimes\"\n", 3, "key restart", "on-failure"),
            ("[pod.a]\ncommand = [\"x\"]\nstop_signal = \"TREM\"\n", 3, "key stop_signal", "unknown signal"),
            ("[pod.a]\ncommand = [\"x\"]\ndepends_on = { b = \"soon\" }\n[pod.b]\ncommand = [\"y\"]\n", 3, "depends_on.b", "expected started"),
            ("[pod.a]\ncommand = [\"x\"]\ndepends_on = [\"zz\"]\n", 3, "zz", ""),
            ("[pod.a]\ncommand = [\"x\"]\ndepends_on = [\"b\"]\n[pod.b]\ncommand = [\"y\"]\ndepends_on = [\"a\"]\n", 3, "a", "b"),
            ("[pod.a]\ncommand = 3\n", 2, "", "or a string run by sh -c"),
            ("[pod.a\ncommand = [\"x\"]\n", 1, "", ""),
        ];
        for (text, line, needle1, needle2) in cases {
            let e = error(text);
            let shown = e.to_string();
            assert_eq!(e.line, line, "{text:?}: {shown}");
            assert!(
                shown.starts_with(&format!("podvisor.toml:{line}:")),
                "{shown}"
            );
            assert!(
                shown.contains(needle1) && shown.contains(needle2),
                "{text:?}: {shown}"
            );
        }
        assert!(error("").to_string().contains("no pods"));
    }
}
