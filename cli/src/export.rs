//! `podvisor export kubernetes|compose`: a deployment file as Kubernetes manifests or a
//! Compose file, with readiness, health, grace periods, replicas and dependency order
//! carried over. Where the orchestrator has no mechanism for what a pod relies on (notify
//! or output-line readiness, the watchdog, several checks), podvisor runs inside the
//! container and answers the orchestrator's probes on `/readyz` and `/livez`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use podvisor::core::deployment::{Condition, RestartPolicy};
use podvisor::Readiness;

use crate::duration::format_duration;
use crate::file::{Plan, PlannedPod};
use crate::report::quote;

/// What `podvisor export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A multi-document YAML stream of Kubernetes objects.
    Kubernetes,
    /// A Compose file.
    Compose,
}

/// `podvisor export`'s options.
#[derive(Debug)]
pub struct Options {
    /// Kubernetes or Compose.
    pub target: Target,
    /// The deployment file.
    pub file: std::path::PathBuf,
    /// `--namespace`: the objects' namespace (Kubernetes).
    pub namespace: Option<String>,
    /// `--kube-version MAJOR.MINOR` (Kubernetes).
    pub kube_version: (u32, u32),
    /// `--podvisor-image`: the image holding podvisor at [`PODVISOR_IN_IMAGE`].
    pub podvisor_image: Option<String>,
    /// `--kubectl-image`: runs `kubectl wait` for a `succeeded` dependency (Kubernetes).
    pub kubectl_image: String,
}

/// The Kubernetes version assumed without `--kube-version`.
pub const DEFAULT_KUBE_VERSION: (u32, u32) = (1, 30);

/// The first version with `lifecycle.stopSignal`.
const STOP_SIGNAL_VERSION: (u32, u32) = (1, 33);

/// The first version with the `apps.kubernetes.io/pod-index` label on a StatefulSet's pods.
const POD_INDEX_VERSION: (u32, u32) = (1, 28);

/// The image `kubectl wait` runs from without `--kubectl-image`.
pub const DEFAULT_KUBECTL_IMAGE: &str = "registry.k8s.io/kubectl:v1.30.0";

/// Where `--podvisor-image` holds the podvisor binary.
pub const PODVISOR_IN_IMAGE: &str = "/usr/local/bin/podvisor";

/// Where the binary is copied for the pod's own container.
const PODVISOR_IN_POD: &str = "/podvisor/podvisor";

/// The port podvisor inside a container answers `/readyz` and `/livez` on.
pub const HEALTH_PORT: u16 = 8558;

/// The container port `{port}` stands for when the pod lists no `ports`.
pub const DEFAULT_PORT: u16 = 8080;

/// The probe period for readiness when the file gives none.
const READY_PERIOD: Duration = Duration::from_secs(1);

/// A finished export: the text for stdout and the warnings for stderr.
#[derive(Debug)]
pub struct Export {
    /// The manifests or the Compose file.
    pub text: String,
    /// What was done in place of what has no equivalent, one line each.
    pub warnings: Vec<String>,
}

/// Exports `plan`; every error names the pod and key (or option) it is about.
pub fn export(plan: &Plan, options: &Options) -> Result<Export, Vec<String>> {
    let pods = analyse(plan, options)?;
    let mut warnings = Vec::new();
    for pod in &pods {
        warnings.extend(pod.notes.iter().cloned());
        for file in &pod.pod.env_files {
            warnings.push(format!(
                "pod {}: key env_file: the variables of {file} are written into the output as plain values; keep it as secret as the file",
                pod.name
            ));
        }
    }
    let text = match options.target {
        Target::Kubernetes => kubernetes(&pods, options, &mut warnings)?,
        Target::Compose => compose(&pods, options, &mut warnings)?,
    };
    Ok(Export { text, warnings })
}

// ---------------------------------------------------------------------------------------
// What each pod needs, whatever the target.

/// A readiness or health check, with `{port}` and `{name}` filled.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Check {
    Tcp {
        host: String,
        port: u16,
    },
    Http {
        https: bool,
        host: String,
        port: u16,
        path: String,
    },
    Exec(String),
    File(String),
    /// notify, stdout:, stderr:: only podvisor sees these.
    Reported(String),
}

impl Check {
    /// Whether the check asks the pod's own machine.
    fn is_local(&self) -> bool {
        match self {
            Check::Tcp { host, .. } | Check::Http { host, .. } => is_loopback(host),
            _ => false,
        }
    }

    fn is_network(&self) -> bool {
        matches!(self, Check::Tcp { .. } | Check::Http { .. })
    }

    /// The check as podvisor reads it, with the host replaced by `host` if given.
    fn text(&self, host: Option<&str>) -> String {
        match self {
            Check::Tcp { host: h, port } => {
                format!("tcp:{}:{port}", bracket(host.unwrap_or(h)))
            }
            Check::Http {
                https,
                host: h,
                port,
                path,
            } => format!(
                "{}://{}:{port}{path}",
                if *https { "https" } else { "http" },
                bracket(host.unwrap_or(h))
            ),
            Check::Exec(command) => format!("exec:{command}"),
            Check::File(path) => format!("file:{path}"),
            Check::Reported(text) => text.clone(),
        }
    }

    /// A shell command that passes when the check does, for an exec probe or a Compose
    /// health check, if there is one without podvisor.
    fn shell(&self) -> Option<String> {
        match self {
            Check::Exec(command) => Some(command.clone()),
            Check::File(path) => Some(format!("test -e {}", shell_quote(path))),
            _ => None,
        }
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// `text` quoted for `sh`.
fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c))
    {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Splits `http[s]://HOST[:PORT][/PATH]` (already checked by podvisor's parser).
fn parse_http(url: &str) -> Option<Check> {
    let (https, rest) = match url.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, url.strip_prefix("http://")?),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let default = if https { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default,
        };
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), port.parse().ok()?),
            None => (authority.to_string(), default),
        }
    };
    Some(Check::Http {
        https,
        host,
        port,
        path: path.to_string(),
    })
}

/// One pod of the file, read for export.
struct Pod<'a> {
    pod: &'a PlannedPod,
    /// The name in the file.
    name: &'a str,
    /// The name as a Kubernetes object or Compose service name.
    id: String,
    /// What `{port}` stands for.
    port: u16,
    /// Where podvisor inside the container answers: [`HEALTH_PORT`], or the next port the
    /// pod does not use itself.
    health_port: u16,
    /// The container's ports: `ports`, `{port}`'s, and the local checks'.
    ports: Vec<u16>,
    /// `{replica}` appears somewhere.
    uses_replica: bool,
    ready: Vec<Check>,
    health: Vec<Check>,
    /// Warnings about the pod, whatever the target.
    notes: Vec<String>,
    /// Why podvisor must run inside the container on Kubernetes (empty: it need not).
    inside_kubernetes: Vec<String>,
    /// Why podvisor must run inside the container under Compose.
    inside_compose: Vec<String>,
}

impl Pod<'_> {
    fn inside(&self, target: Target) -> &[String] {
        match target {
            Target::Kubernetes => &self.inside_kubernetes,
            Target::Compose => &self.inside_compose,
        }
    }

    /// Whether its Compose health check runs `podvisor wait` (a check with no shell form:
    /// Compose has no TCP or HTTP check of its own).
    fn compose_checks_need_podvisor(&self) -> bool {
        !self
            .ready
            .iter()
            .chain(&self.health)
            .all(|c| c.shell().is_some())
    }

    /// Whether its Compose service needs the copied podvisor: to run under it, or for
    /// its health check.
    fn needs_podvisor_in_compose(&self) -> bool {
        !self.inside_compose.is_empty() || self.compose_checks_need_podvisor()
    }

    /// `text` with `{port}` and `{name}` filled; `{replica}` is left to the caller.
    fn fill(&self, text: &str) -> String {
        text.replace("{port}", &self.port.to_string())
            .replace("{name}", self.name)
    }

    fn ready_period(&self) -> Duration {
        self.pod.ready_interval().unwrap_or(READY_PERIOD)
    }

    /// `timeout_ready`, `None` for no limit.
    fn ready_limit(&self) -> Option<Duration> {
        match self.pod.timeout_ready() {
            Some(t) if t.is_zero() => None,
            Some(t) => Some(t),
            None => Some(Duration::from_secs(600)),
        }
    }
}

/// A name for Kubernetes objects and Compose services: the pod's, lower-cased, with `_`
/// and `.` as `-` (a DNS label).
fn object_name(name: &str) -> Result<String, String> {
    let id: String = name
        .chars()
        .map(|c| match c {
            '_' | '.' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) || id.ends_with('-') || id.len() > 63 {
        return Err(format!(
            "pod {name}: its name becomes {id:?}, which is not a DNS label; expected a name that starts with a letter and ends with a letter or digit"
        ));
    }
    Ok(id)
}

fn read_check(text: &str) -> Result<Check, String> {
    let parsed: Readiness = text.parse()?;
    Ok(match parsed {
        Readiness::Notify | Readiness::Stdout(_) | Readiness::Stderr(_) => {
            Check::Reported(text.to_string())
        }
        Readiness::Tcp { host, port } => Check::Tcp { host, port },
        Readiness::Http(url) => {
            parse_http(&url).ok_or_else(|| format!("{url:?} is not understood"))?
        }
        Readiness::File(path) => Check::File(path.display().to_string()),
        Readiness::Exec(command) => Check::Exec(command),
        other => return Err(format!("{other} cannot be exported")),
    })
}

fn analyse<'a>(plan: &'a Plan, options: &Options) -> Result<Vec<Pod<'a>>, Vec<String>> {
    let mut errors = Vec::new();
    let without_image: Vec<&str> = plan
        .pods
        .iter()
        .filter(|p| p.image.is_none())
        .map(|p| p.template.name.as_str())
        .collect();
    if !without_image.is_empty() {
        errors.push(format!(
            "pods without an image: {}; export needs one per pod: add image = \"NAME:TAG\" to each [pod.NAME] table (podvisor up ignores it)",
            without_image.join(", ")
        ));
    }
    let mut pods = Vec::new();
    let mut ids: BTreeMap<String, &str> = BTreeMap::new();
    for planned in &plan.pods {
        let name = planned.template.name.as_str();
        let id = match object_name(name) {
            Ok(id) => id,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if id == INSTALL_SERVICE {
            errors.push(format!(
                "pod {name}: its name is podvisor's own (the container that copies podvisor in); expected another name"
            ));
            continue;
        }
        if let Some(other) = ids.insert(id.clone(), name) {
            errors.push(format!(
                "pods {other} and {name} both become {id:?} as Kubernetes and Compose names; expected names that differ in more than case, '_' and '.'"
            ));
            continue;
        }
        let texts = planned
            .command()
            .iter()
            .map(String::as_str)
            .chain(planned.env().iter().map(|(_, v)| v.as_str()))
            .chain(planned.cwd())
            .chain(planned.ready().iter().map(String::as_str))
            .chain(planned.health().iter().map(String::as_str));
        let mut uses_port = false;
        let mut uses_replica = false;
        for text in texts {
            uses_port |= text.contains("{port}");
            uses_replica |= text.contains("{replica}");
        }
        let port = planned.ports.first().copied().unwrap_or(DEFAULT_PORT);
        let mut pod = Pod {
            pod: planned,
            name,
            id,
            port,
            health_port: HEALTH_PORT,
            ports: planned.ports.clone(),
            uses_replica,
            notes: Vec::new(),
            ready: Vec::new(),
            health: Vec::new(),
            inside_kubernetes: Vec::new(),
            inside_compose: Vec::new(),
        };
        let read = |key: &str, texts: &[String]| -> Result<(Vec<Check>, bool), String> {
            let mut checks = Vec::new();
            let mut replica = false;
            for text in texts {
                replica |= text.contains("{replica}");
                let filled = pod.fill(text).replace("{replica}", "0");
                checks
                    .push(read_check(&filled).map_err(|e| format!("pod {name}: key {key}: {e}"))?);
            }
            Ok((checks, replica))
        };
        let (ready, ready_replica) = match read("ready", planned.ready()) {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let (health, health_replica) = match read("health", planned.health()) {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if uses_port && !pod.ports.contains(&port) {
            pod.ports.push(port);
        }
        for check in ready.iter().chain(&health) {
            if let Check::Tcp { port, .. } | Check::Http { port, .. } = check {
                if check.is_local() && !pod.ports.contains(port) {
                    pod.ports.push(*port);
                }
            }
        }
        while pod.ports.contains(&pod.health_port) {
            pod.health_port += 1;
        }
        // A one-shot pod's readiness only matters to pods that wait for it, and podvisor
        // inside would turn its early successful end into a failure: only podvisor sees
        // notify and output lines, so they are left out.
        let (ready, dropped): (Vec<Check>, Vec<Check>) = if planned.template.one_shot {
            ready
                .into_iter()
                .partition(|c| !matches!(c, Check::Reported(_)))
        } else {
            (ready, Vec::new())
        };
        if let Some(Check::Reported(text)) = dropped.first() {
            pod.notes.push(format!(
                "pod {name}: key ready: {text:?} is not exported: only podvisor sees it, and a one-shot pod is not run under podvisor (its end, not its readiness, is what others wait for)"
            ));
        }
        let reported: Vec<&Check> = ready
            .iter()
            .filter(|c| matches!(c, Check::Reported(_)))
            .collect();
        let mut both = Vec::new();
        if let Some(Check::Reported(text)) = reported.first() {
            both.push(format!(
                "its readiness {text:?} is reported to podvisor, which the orchestrator cannot see"
            ));
        }
        if planned.watchdog().is_some() {
            both.push("the watchdog (WATCHDOG=1 pings) is kept by podvisor".to_string());
        }
        pod.inside_compose = both.clone();
        let mut k8s = both;
        if ready.len() > 1 && reported.is_empty() {
            k8s.push(format!(
                "its {} readiness checks must all pass and a probe holds one",
                ready.len()
            ));
        }
        if health.len() > 1 {
            k8s.push(format!(
                "its {} health checks must all pass and a probe holds one",
                health.len()
            ));
        }
        if ready_replica || health_replica {
            k8s.push("its checks use {replica}, which a probe cannot fill".to_string());
        }
        if let Some(signal) = planned.stop_signal() {
            if options.kube_version < STOP_SIGNAL_VERSION {
                k8s.push(format!(
                    "stop_signal {} needs lifecycle.stopSignal (Kubernetes {}.{}; --kube-version): podvisor turns the kubelet's SIGTERM into SIG{}",
                    signal.name(),
                    STOP_SIGNAL_VERSION.0,
                    STOP_SIGNAL_VERSION.1,
                    signal.name()
                ));
            }
        }
        pod.inside_kubernetes = k8s;
        pod.ready = ready;
        pod.health = health;
        pods.push(pod);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // A pod others wait for (ready, healthy) is asked from the other pod: over the network,
    // or through podvisor's /readyz when its checks run only inside it.
    let waited: BTreeSet<&str> = plan
        .pods
        .iter()
        .flat_map(|p| &p.template.depends_on)
        .filter(|d| matches!(d.condition, Condition::Ready | Condition::Healthy))
        .map(|d| d.on.as_str())
        .collect();
    for pod in &mut pods {
        let checks: Vec<&Check> = pod.ready.iter().chain(&pod.health).collect();
        if waited.contains(pod.name)
            && pod.inside_kubernetes.is_empty()
            && checks.iter().any(|c| !c.is_network())
        {
            pod.inside_kubernetes.push(
                "others wait for it and its exec:/file: checks run only in its container"
                    .to_string(),
            );
        }
    }
    let needing: Vec<String> = pods
        .iter()
        .filter_map(|p| {
            let why = p.inside(options.target);
            let waits = options.target == Target::Kubernetes
                && p.pod.template.depends_on.iter().any(|d| {
                    matches!(d.condition, Condition::Ready | Condition::Healthy)
                        && pods
                            .iter()
                            .any(|o| o.name == d.on && wait_checks(o, d.condition).is_some())
                });
            let compose_wait =
                options.target == Target::Compose && p.compose_checks_need_podvisor();
            if let Some(first) = why.first() {
                Some(format!("{} ({first})", p.name))
            } else if waits {
                Some(format!(
                    "{} (its init containers run podvisor wait)",
                    p.name
                ))
            } else if compose_wait {
                Some(format!(
                    "{} (its health check runs podvisor wait: Compose has no TCP or HTTP check)",
                    p.name
                ))
            } else {
                None
            }
        })
        .collect();
    if options.podvisor_image.is_none() && !needing.is_empty() {
        return Err(vec![format!(
            "pods that need podvisor in their containers: {}; give --podvisor-image IMAGE, an image with podvisor at {PODVISOR_IN_IMAGE}",
            needing.join(", ")
        )]);
    }
    Ok(pods)
}

/// Whole seconds, rounded up, at least 1.
fn seconds(d: Duration) -> i64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(s.max(1)).map_or(MAX_INT32, |s| s.min(MAX_INT32))
}

/// Kubernetes' numbers are 32-bit.
const MAX_INT32: i64 = i32::MAX as i64;

/// The checks a dependent runs to wait until `pod` meets `condition` (ready: its readiness
/// checks; healthy: its health checks too), with loopback hosts replaced by the pod's
/// Service; `None` when there is nothing to wait for.
fn wait_checks(pod: &Pod<'_>, condition: Condition) -> Option<Vec<String>> {
    if !pod.inside_kubernetes.is_empty() {
        return Some(vec![format!(
            "http://{}:{}/readyz",
            pod.id, pod.health_port
        )]);
    }
    let health: &[Check] = if condition == Condition::Healthy {
        &pod.health
    } else {
        &[]
    };
    let mut checks: Vec<String> = Vec::new();
    for check in pod.ready.iter().chain(health) {
        let text = check.text(check.is_local().then_some(pod.id.as_str()));
        if !checks.contains(&text) {
            checks.push(text);
        }
    }
    (!checks.is_empty()).then_some(checks)
}

// ---------------------------------------------------------------------------------------
// A small YAML writer: block style, every string double-quoted.

/// A YAML value.
#[derive(Clone, Debug)]
enum Y {
    S(String),
    I(i64),
    B(bool),
    M(Vec<(String, Y)>),
    L(Vec<Y>),
}

fn s(text: impl Into<String>) -> Y {
    Y::S(text.into())
}

fn m(entries: Vec<(&str, Y)>) -> Y {
    Y::M(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Y {
    Y::L(items.into_iter().map(|i| Y::S(i.into())).collect())
}

fn key(text: &str) -> String {
    // Words YAML 1.1 readers (docker-compose's) take as booleans or null.
    const WORDS: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let plain = text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && !WORDS.contains(&text.to_ascii_lowercase().as_str())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c));
    if plain {
        text.to_string()
    } else {
        quote(text)
    }
}

fn scalar(y: &Y) -> Option<String> {
    match y {
        Y::S(text) => Some(quote(text)),
        Y::I(n) => Some(n.to_string()),
        Y::B(b) => Some(b.to_string()),
        Y::M(entries) if entries.is_empty() => Some("{}".into()),
        Y::L(items) if items.is_empty() => Some("[]".into()),
        _ => None,
    }
}

fn write_yaml(out: &mut String, y: &Y, indent: usize) {
    let pad = " ".repeat(indent);
    match y {
        Y::M(entries) if !entries.is_empty() => {
            for (k, v) in entries {
                match scalar(v) {
                    Some(text) => {
                        let _ = writeln!(out, "{pad}{}: {text}", key(k));
                    }
                    None => {
                        let _ = writeln!(out, "{pad}{}:", key(k));
                        write_yaml(out, v, indent + 2);
                    }
                }
            }
        }
        Y::L(items) if !items.is_empty() => {
            for item in items {
                match scalar(item) {
                    Some(text) => {
                        let _ = writeln!(out, "{pad}- {text}");
                    }
                    None => {
                        let mut inner = String::new();
                        write_yaml(&mut inner, item, indent + 2);
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(&inner[indent + 2..]);
                    }
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", scalar(other).unwrap_or_default());
        }
    }
}

fn yaml(y: &Y) -> String {
    let mut out = String::new();
    write_yaml(&mut out, y, 0);
    out
}

// ---------------------------------------------------------------------------------------
// Kubernetes.

/// A string the kubelet expands (command, args, env values) escaped: it reads `$$` as `$`
/// and `$(VAR)` as the variable.
fn kube_literal(text: &str) -> String {
    text.replace('$', "$$")
}

/// The podvisor command line that runs `pod` inside its container.
fn podvisor_run(pod: &Pod<'_>, fill: &dyn Fn(&str) -> String, serve: &str) -> Vec<String> {
    let p = pod.pod;
    let mut args: Vec<String> = vec![PODVISOR_IN_POD.into(), "run".into()];
    let mut option = |name: &str, value: String| {
        args.push(name.to_string());
        args.push(value);
    };
    option("--name", pod.name.to_string());
    for check in p.ready() {
        if p.template.one_shot
            && read_check(&pod.fill(check).replace("{replica}", "0"))
                .is_ok_and(|c| matches!(c, Check::Reported(_)))
        {
            continue;
        }
        option("--ready", fill(check));
    }
    let durations = [
        ("--timeout-ready", p.timeout_ready()),
        ("--ready-interval", p.ready_interval()),
        ("--ready-timeout", p.ready_timeout()),
        ("--health-interval", p.health_interval()),
        ("--health-timeout", p.health_timeout()),
        ("--health-start-period", p.health_start_period()),
        ("--watchdog", p.watchdog()),
        ("--grace", p.grace()),
    ];
    for (flag, value) in durations {
        if let Some(d) = value {
            option(flag, format_duration(d));
        }
    }
    for check in p.health() {
        option("--health", fill(check));
    }
    if let Some(n) = p.health_retries() {
        option("--health-retries", n.to_string());
    }
    if let Some(n) = p.health_successes() {
        option("--health-successes", n.to_string());
    }
    for (flag, value) in [
        ("--watchdog-signal", p.watchdog_signal()),
        ("--stop-signal", p.stop_signal()),
    ] {
        if let Some(signal) = value {
            option(flag, signal.name());
        }
    }
    option("--serve-health", serve.to_string());
    args.push("--".into());
    args.extend(p.command().iter().map(|c| fill(c)));
    args
}

fn kube_handler(check: &Check) -> Vec<(&'static str, Y)> {
    match check {
        Check::Tcp { host, port } => {
            let mut socket = vec![("port", Y::I(i64::from(*port)))];
            if !is_loopback(host) {
                socket.push(("host", s(host)));
            }
            vec![("tcpSocket", m(socket))]
        }
        Check::Http {
            https,
            host,
            port,
            path,
        } => {
            let mut get = vec![("path", s(path)), ("port", Y::I(i64::from(*port)))];
            if !is_loopback(host) {
                get.push(("host", s(host)));
            }
            get.push(("scheme", s(if *https { "HTTPS" } else { "HTTP" })));
            vec![("httpGet", m(get))]
        }
        other => vec![(
            "exec",
            m(vec![(
                "command",
                strings(["sh", "-c", other.shell().unwrap_or_default().as_str()]),
            )]),
        )],
    }
}

fn probe(handler: Vec<(&'static str, Y)>, fields: Vec<(&'static str, i64)>) -> Y {
    let mut entries = handler;
    entries.extend(fields.into_iter().map(|(k, v)| (k, Y::I(v))));
    m(entries)
}

/// The most failures of a startup probe: as good as no limit.
const NO_LIMIT_FAILURES: i64 = 1_000_000;

fn kubernetes(
    pods: &[Pod<'_>],
    options: &Options,
    warnings: &mut Vec<String>,
) -> Result<String, Vec<String>> {
    let mut documents: Vec<Y> = Vec::new();
    let namespace = |name: &str| {
        let mut meta = vec![("name", s(name))];
        if let Some(ns) = &options.namespace {
            meta.push(("namespace", s(ns)));
        }
        meta
    };
    let labels = |pod: &Pod<'_>| {
        m(vec![
            ("app.kubernetes.io/name", s(&pod.id)),
            ("app.kubernetes.io/managed-by", s("podvisor")),
        ])
    };
    let selector = |pod: &Pod<'_>| m(vec![("app.kubernetes.io/name", s(&pod.id))]);
    let by_name: BTreeMap<&str, &Pod<'_>> = pods.iter().map(|p| (p.name, p)).collect();
    let mut needs_job_reader = false;
    let mut errors = Vec::new();
    for pod in pods {
        let p = pod.pod;
        let one_shot = p.template.one_shot;
        let stateful = pod.uses_replica && !one_shot;
        if stateful && options.kube_version < POD_INDEX_VERSION {
            errors.push(format!(
                "pod {}: {{replica}} is taken from the pod-index label, which needs Kubernetes {}.{}; expected --kube-version {}.{} or later",
                pod.name, POD_INDEX_VERSION.0, POD_INDEX_VERSION.1, POD_INDEX_VERSION.0, POD_INDEX_VERSION.1
            ));
            continue;
        }
        let replica_var = "$(PODVISOR_REPLICA)";
        if pod.uses_replica && p.cwd().is_some_and(|c| c.contains("{replica}")) {
            errors.push(format!(
                "pod {}: key cwd: {{replica}} cannot be used there: Kubernetes does not expand variables in workingDir; expected a cwd without {{replica}}",
                pod.name
            ));
            continue;
        }
        if let Some((bad, _)) = p.env().iter().find(|(k, _)| !is_env_name(k)) {
            errors.push(format!(
                "pod {}: key env: variable name {bad:?} is not allowed in Kubernetes; expected letters, digits, '_', '-' and '.', not starting with a digit",
                pod.name
            ));
            continue;
        }
        let fill = |text: &str| {
            pod.fill(&kube_literal(text))
                .replace("{replica}", replica_var)
        };
        let inside = !pod.inside_kubernetes.is_empty();
        for why in &pod.inside_kubernetes {
            warnings.push(format!(
                "pod {}: podvisor runs inside its container, answering probes on /readyz and /livez (port {}): {why}",
                pod.name, pod.health_port
            ));
        }
        if !one_shot {
            match p.template.restart {
                RestartPolicy::Always => {}
                policy => warnings.push(format!(
                    "pod {}: restart = \"{policy}\" has no Kubernetes equivalent for a long-running pod: the kubelet restarts its container whenever it ends (restartPolicy Always)",
                    pod.name
                )),
            }
        }
        // The container.
        let mut container: Vec<(&str, Y)> = vec![
            ("name", s(&pod.id)),
            ("image", s(p.image.clone().unwrap_or_default())),
        ];
        let command: Vec<String> = if inside {
            podvisor_run(pod, &fill, &format!("0.0.0.0:{}", pod.health_port))
        } else {
            p.command().iter().map(|c| fill(c)).collect()
        };
        container.push(("command", strings(command)));
        let mut env = Vec::new();
        if pod.uses_replica {
            // Defined first: the kubelet expands $(VAR) only for variables defined before.
            let field = if one_shot {
                "metadata.annotations['batch.kubernetes.io/job-completion-index']"
            } else {
                "metadata.labels['apps.kubernetes.io/pod-index']"
            };
            env.push(m(vec![
                ("name", s("PODVISOR_REPLICA")),
                (
                    "valueFrom",
                    m(vec![("fieldRef", m(vec![("fieldPath", s(field))]))]),
                ),
            ]));
        }
        for (k, v) in p.env() {
            env.push(m(vec![("name", s(k)), ("value", s(fill(v)))]));
        }
        if !env.is_empty() {
            container.push(("env", Y::L(env)));
        }
        if let Some(cwd) = p.cwd() {
            container.push((
                "workingDir",
                s(pod.fill(cwd).replace("{replica}", replica_var)),
            ));
        }
        let mut ports: Vec<Y> = pod
            .ports
            .iter()
            .map(|port| {
                m(vec![
                    ("name", s(format!("port-{port}"))),
                    ("containerPort", Y::I(i64::from(*port))),
                ])
            })
            .collect();
        if inside {
            ports.push(m(vec![
                ("name", s("podvisor")),
                ("containerPort", Y::I(i64::from(pod.health_port))),
            ]));
        }
        if !ports.is_empty() {
            container.push(("ports", Y::L(ports.clone())));
        }
        let grace = p.grace().unwrap_or(Duration::from_secs(10));
        if inside {
            let get = |path: &str| {
                vec![(
                    "httpGet",
                    m(vec![
                        ("path", s(path)),
                        ("port", Y::I(i64::from(pod.health_port))),
                    ]),
                )]
            };
            let startup = pod
                .ready_limit()
                .map_or(NO_LIMIT_FAILURES, |t| (seconds(t) + 5).min(MAX_INT32));
            container.push((
                "startupProbe",
                probe(
                    get("/livez"),
                    vec![("periodSeconds", 1), ("failureThreshold", startup)],
                ),
            ));
            container.push((
                "readinessProbe",
                probe(get("/readyz"), vec![("periodSeconds", 1)]),
            ));
            container.push((
                "livenessProbe",
                probe(
                    get("/livez"),
                    vec![("periodSeconds", 10), ("failureThreshold", 3)],
                ),
            ));
        } else {
            for check in pod.ready.iter().chain(&pod.health) {
                if check.is_local() {
                    warnings.push(format!(
                        "pod {}: check {}: the kubelet probes the pod's own address, not loopback: a server bound to 127.0.0.1 only fails it",
                        pod.name,
                        check.text(None)
                    ));
                }
            }
            if let Some(check) = pod.ready.first() {
                let period = seconds(pod.ready_period());
                let timeout = seconds(p.ready_timeout().unwrap_or(Duration::from_secs(1)));
                let failures = pod
                    .ready_limit()
                    // The first attempt is at the start: one more than the periods in the
                    // limit.
                    .map_or(NO_LIMIT_FAILURES, |t| {
                        ((seconds(t) + period - 1) / period + 1).min(MAX_INT32)
                    });
                container.push((
                    "startupProbe",
                    probe(
                        kube_handler(check),
                        vec![
                            ("periodSeconds", period),
                            ("timeoutSeconds", timeout),
                            ("failureThreshold", failures.max(1)),
                        ],
                    ),
                ));
                container.push((
                    "readinessProbe",
                    probe(
                        kube_handler(check),
                        vec![("periodSeconds", period), ("timeoutSeconds", timeout)],
                    ),
                ));
            }
            if let Some(check) = pod.health.first() {
                let mut fields = vec![
                    (
                        "periodSeconds",
                        seconds(p.health_interval().unwrap_or(Duration::from_secs(10))),
                    ),
                    (
                        "timeoutSeconds",
                        seconds(p.health_timeout().unwrap_or(Duration::from_secs(5))),
                    ),
                    (
                        "failureThreshold",
                        i64::from(p.health_retries().unwrap_or(3)),
                    ),
                    ("successThreshold", 1),
                ];
                if let Some(start) = p.health_start_period().filter(|d| !d.is_zero()) {
                    fields.push(("initialDelaySeconds", seconds(start)));
                }
                if let Some(n) = p.health_successes().filter(|&n| n > 1) {
                    warnings.push(format!(
                        "pod {}: health_successes = {n} is left out: a livenessProbe's successThreshold must be 1",
                        pod.name
                    ));
                }
                container.push(("livenessProbe", probe(kube_handler(check), fields)));
            }
        }
        let mut os_linux = false;
        if let (Some(signal), false) = (p.stop_signal(), inside) {
            warnings.push(format!(
                "pod {}: stop_signal {} is lifecycle.stopSignal, an alpha field (feature gate ContainerStopSignals): a cluster without it drops the field and sends SIGTERM",
                pod.name,
                signal.name()
            ));
            container.push((
                "lifecycle",
                m(vec![("stopSignal", s(format!("SIG{}", signal.name())))]),
            ));
            os_linux = true;
        }
        if inside {
            container.push((
                "volumeMounts",
                Y::L(vec![m(vec![
                    ("name", s("podvisor")),
                    ("mountPath", s("/podvisor")),
                    ("readOnly", Y::B(true)),
                ])]),
            ));
        }
        // Init containers: podvisor copied in, then the waits for dependencies.
        let podvisor_image = options.podvisor_image.clone().unwrap_or_default();
        let mut init = Vec::new();
        if inside {
            init.push(m(vec![
                ("name", s("podvisor-install")),
                ("image", s(&podvisor_image)),
                (
                    "command",
                    strings(["cp", PODVISOR_IN_IMAGE, PODVISOR_IN_POD]),
                ),
                (
                    "volumeMounts",
                    Y::L(vec![m(vec![
                        ("name", s("podvisor")),
                        ("mountPath", s("/podvisor")),
                    ])]),
                ),
            ]));
        }
        let mut service_account = false;
        for dependency in &p.template.depends_on {
            let Some(other) = by_name.get(dependency.on.as_str()) else {
                continue;
            };
            match dependency.condition {
                Condition::Ready | Condition::Healthy if other.pod.template.one_shot => {
                    errors.push(format!(
                        "pod {}: key depends_on.{}: \"{}\" on a one-shot pod cannot be exported: it becomes a Job, which has no Service to ask; expected \"succeeded\" (or \"started\")",
                        pod.name, other.name, dependency.condition
                    ));
                }
                Condition::Ready | Condition::Healthy => match wait_checks(other, dependency.condition) {
                    Some(checks) => {
                        let mut command = vec![PODVISOR_IN_IMAGE.to_string(), "wait".into()];
                        command.extend(checks.into_iter().map(|c| kube_literal(&c)));
                        init.push(m(vec![
                            ("name", s(init_name(pod, other, init.len()))),
                            ("image", s(&podvisor_image)),
                            ("command", strings(command)),
                        ]));
                    }
                    None => warnings.push(format!(
                        "pod {}: depends_on {} = \"{}\": {} has no readiness check, so it is ready once started, and Kubernetes starts pods together: no wait",
                        pod.name, other.name, dependency.condition, other.name
                    )),
                },
                Condition::Started => warnings.push(format!(
                    "pod {}: depends_on {} = \"started\": Kubernetes starts pods together: no wait",
                    pod.name, other.name
                )),
                Condition::Succeeded => {
                    service_account = true;
                    needs_job_reader = true;
                    init.push(m(vec![
                        ("name", s(init_name(pod, other, init.len()))),
                        ("image", s(&options.kubectl_image)),
                        (
                            "command",
                            strings([
                                "kubectl".to_string(),
                                "wait".into(),
                                "--for=condition=complete".into(),
                                "--timeout=-1s".into(),
                                format!("job/{}", other.id),
                            ]),
                        ),
                    ]));
                }
                _ => errors.push(format!(
                    "pod {}: depends_on {} = \"{}\" cannot be exported; expected started, ready, healthy or succeeded",
                    pod.name, other.name, dependency.condition
                )),
            }
        }
        let mut pod_spec: Vec<(&str, Y)> = Vec::new();
        if service_account {
            pod_spec.push(("serviceAccountName", s(JOB_READER)));
        }
        if os_linux {
            pod_spec.push(("os", m(vec![("name", s("linux"))])));
        }
        pod_spec.push((
            "terminationGracePeriodSeconds",
            Y::I(seconds(grace) + if inside { 2 } else { 0 }),
        ));
        if !init.is_empty() {
            pod_spec.push(("initContainers", Y::L(init)));
        }
        pod_spec.push((
            "containers",
            Y::L(vec![Y::M(
                container
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            )]),
        ));
        if inside {
            pod_spec.push((
                "volumes",
                Y::L(vec![m(vec![
                    ("name", s("podvisor")),
                    ("emptyDir", Y::M(Vec::new())),
                ])]),
            ));
        }
        let replicas = i64::from(p.template.replicas);
        let template = |extra: Vec<(&str, Y)>, spec: Vec<(&str, Y)>| {
            let mut spec = spec;
            spec.extend(extra);
            m(vec![
                ("metadata", m(vec![("labels", labels(pod))])),
                ("spec", m(spec)),
            ])
        };
        let mut meta = namespace(&pod.id);
        meta.push(("labels", labels(pod)));
        let workload = if one_shot {
            let (policy, limit) = match p.template.restart {
                RestartPolicy::No => ("Never", 0),
                _ => (
                    "OnFailure",
                    p.template
                        .backoff
                        .budget
                        .map_or(i64::from(i32::MAX), i64::from),
                ),
            };
            let mut spec = vec![
                ("completions", Y::I(replicas)),
                ("parallelism", Y::I(replicas)),
                ("backoffLimit", Y::I(limit)),
            ];
            if pod.uses_replica {
                spec.push(("completionMode", s("Indexed")));
            }
            spec.push((
                "template",
                template(vec![("restartPolicy", s(policy))], pod_spec),
            ));
            m(vec![
                ("apiVersion", s("batch/v1")),
                ("kind", s("Job")),
                ("metadata", m(meta)),
                ("spec", m(spec)),
            ])
        } else {
            let mut spec = vec![
                ("replicas", Y::I(replicas)),
                ("selector", m(vec![("matchLabels", selector(pod))])),
            ];
            if stateful {
                spec.push(("serviceName", s(&pod.id)));
                spec.push(("podManagementPolicy", s("Parallel")));
            }
            spec.push(("template", template(Vec::new(), pod_spec)));
            m(vec![
                ("apiVersion", s("apps/v1")),
                (
                    "kind",
                    s(if stateful {
                        "StatefulSet"
                    } else {
                        "Deployment"
                    }),
                ),
                ("metadata", m(meta)),
                ("spec", m(spec)),
            ])
        };
        // Its Service: the pod's ports (and podvisor's), headless for a StatefulSet.
        if !one_shot && (!ports.is_empty() || stateful) {
            let service_ports: Vec<Y> = pod
                .ports
                .iter()
                .map(|port| {
                    m(vec![
                        ("name", s(format!("port-{port}"))),
                        ("port", Y::I(i64::from(*port))),
                        ("targetPort", Y::I(i64::from(*port))),
                    ])
                })
                .chain(inside.then(|| {
                    m(vec![
                        ("name", s("podvisor")),
                        ("port", Y::I(i64::from(pod.health_port))),
                        ("targetPort", Y::I(i64::from(pod.health_port))),
                    ])
                }))
                .collect();
            let mut spec = Vec::new();
            if stateful {
                spec.push(("clusterIP", s("None")));
            }
            spec.push(("selector", selector(pod)));
            if !service_ports.is_empty() {
                spec.push(("ports", Y::L(service_ports)));
            }
            let mut meta = namespace(&pod.id);
            meta.push(("labels", labels(pod)));
            documents.push(m(vec![
                ("apiVersion", s("v1")),
                ("kind", s("Service")),
                ("metadata", m(meta)),
                ("spec", m(spec)),
            ]));
        }
        documents.push(workload);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if needs_job_reader {
        let mut front = vec![
            m(vec![
                ("apiVersion", s("v1")),
                ("kind", s("ServiceAccount")),
                ("metadata", m(namespace(JOB_READER))),
            ]),
            m(vec![
                ("apiVersion", s("rbac.authorization.k8s.io/v1")),
                ("kind", s("Role")),
                ("metadata", m(namespace(JOB_READER))),
                (
                    "rules",
                    Y::L(vec![m(vec![
                        ("apiGroups", strings(["batch"])),
                        ("resources", strings(["jobs"])),
                        ("verbs", strings(["get", "list", "watch"])),
                    ])]),
                ),
            ]),
            m(vec![
                ("apiVersion", s("rbac.authorization.k8s.io/v1")),
                ("kind", s("RoleBinding")),
                ("metadata", m(namespace(JOB_READER))),
                (
                    "subjects",
                    Y::L(vec![{
                        let mut subject =
                            vec![("kind", s("ServiceAccount")), ("name", s(JOB_READER))];
                        if let Some(ns) = &options.namespace {
                            subject.push(("namespace", s(ns)));
                        }
                        m(subject)
                    }]),
                ),
                (
                    "roleRef",
                    m(vec![
                        ("apiGroup", s("rbac.authorization.k8s.io")),
                        ("kind", s("Role")),
                        ("name", s(JOB_READER)),
                    ]),
                ),
            ]),
        ];
        front.append(&mut documents);
        documents = front;
    }
    let mut out = String::new();
    for document in &documents {
        out.push_str("---\n");
        out.push_str(&yaml(document));
    }
    Ok(out)
}

/// The name of `pod`'s init container that waits for `other`: `wait-for-OTHER`, or
/// `wait-N` where that would be too long or the pod's own container's name.
fn init_name(pod: &Pod<'_>, other: &Pod<'_>, index: usize) -> String {
    let name = format!("wait-for-{}", other.id);
    if name.len() > 63 || name == pod.id {
        format!("wait-{index}")
    } else {
        name
    }
}

/// Whether Kubernetes takes `name` as an environment variable's name.
fn is_env_name(name: &str) -> bool {
    !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The ServiceAccount, Role and RoleBinding that let an init container wait for a Job.
const JOB_READER: &str = "podvisor-job-reader";

// ---------------------------------------------------------------------------------------
// Compose.

/// A string Compose would interpolate, escaped.
fn compose_literal(text: &str) -> String {
    text.replace('$', "$$")
}

/// A duration as Compose reads it.
fn compose_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn compose(
    pods: &[Pod<'_>],
    options: &Options,
    warnings: &mut Vec<String>,
) -> Result<String, Vec<String>> {
    // A pod using {replica} becomes one service per replica (NAME-0, NAME-1, …).
    let services_of = |pod: &Pod<'_>| -> Vec<(String, Option<u32>)> {
        if pod.uses_replica {
            (0..pod.pod.template.replicas)
                .map(|i| (format!("{}-{i}", pod.id), Some(i)))
                .collect()
        } else {
            vec![(pod.id.clone(), None)]
        }
    };
    let by_name: BTreeMap<&str, &Pod<'_>> = pods.iter().map(|p| (p.name, p)).collect();
    let any_podvisor = pods.iter().any(Pod::needs_podvisor_in_compose);
    let mut services: Vec<(String, Y)> = Vec::new();
    if any_podvisor {
        services.push((
            INSTALL_SERVICE.to_string(),
            m(vec![
                (
                    "image",
                    s(compose_literal(
                        options.podvisor_image.as_deref().unwrap_or_default(),
                    )),
                ),
                (
                    "command",
                    strings(["cp", PODVISOR_IN_IMAGE, PODVISOR_IN_POD]),
                ),
                ("volumes", strings([format!("{VOLUME}:/podvisor")])),
                ("restart", s("no")),
            ]),
        ));
    }
    for pod in pods {
        let p = pod.pod;
        let inside = !pod.inside_compose.is_empty();
        for why in &pod.inside_compose {
            warnings.push(format!(
                "pod {}: podvisor runs inside its container and its health check asks podvisor's /readyz: {why}",
                pod.name
            ));
        }
        if pod.uses_replica && p.template.replicas > 1 {
            warnings.push(format!(
                "pod {}: it uses {{replica}}: one service per replica ({}-0 to {}-{})",
                pod.name,
                pod.id,
                pod.id,
                p.template.replicas - 1
            ));
        }
        for (service, replica) in services_of(pod) {
            let fill = |text: &str| {
                let text = pod.fill(&compose_literal(text));
                match replica {
                    Some(i) => text.replace("{replica}", &i.to_string()),
                    None => text,
                }
            };
            let mut entries: Vec<(&str, Y)> = vec![(
                "image",
                s(compose_literal(p.image.as_deref().unwrap_or_default())),
            )];
            let command = if inside {
                podvisor_run(pod, &fill, &format!("127.0.0.1:{}", pod.health_port))
            } else {
                p.command().iter().map(|c| fill(c)).collect()
            };
            entries.push(("command", strings(command)));
            if !p.env().is_empty() {
                entries.push((
                    "environment",
                    Y::M(
                        p.env()
                            .iter()
                            .map(|(k, v)| (k.clone(), s(fill(v))))
                            .collect(),
                    ),
                ));
            }
            if let Some(cwd) = p.cwd() {
                entries.push(("working_dir", s(fill(cwd))));
            }
            if !pod.ports.is_empty() {
                entries.push(("expose", strings(pod.ports.iter().map(|p| p.to_string()))));
            }
            if replica.is_none() && p.template.replicas > 1 {
                entries.push((
                    "deploy",
                    m(vec![("replicas", Y::I(i64::from(p.template.replicas)))]),
                ));
            }
            entries.push((
                "restart",
                s(match p.template.restart {
                    RestartPolicy::Always => "always".to_string(),
                    RestartPolicy::OnFailure => match p.template.backoff.budget {
                        Some(n) => format!("on-failure:{n}"),
                        None => "on-failure".to_string(),
                    },
                    _ => "no".to_string(),
                }),
            ));
            // podvisor inside keeps the pod's grace itself and needs a moment to report.
            match (p.grace(), inside) {
                (Some(grace), false) => {
                    entries.push(("stop_grace_period", s(compose_duration(grace))))
                }
                (grace, true) => entries.push((
                    "stop_grace_period",
                    s(compose_duration(
                        grace.unwrap_or(Duration::from_secs(10)) + Duration::from_secs(2),
                    )),
                )),
                (None, false) => {}
            }
            if let (Some(signal), false) = (p.stop_signal(), inside) {
                entries.push(("stop_signal", s(format!("SIG{}", signal.name()))));
            }
            // One health check: podvisor's /readyz, or every readiness and health check.
            let checks: Vec<Check> = if inside {
                vec![Check::Http {
                    https: false,
                    host: "127.0.0.1".into(),
                    port: pod.health_port,
                    path: "/readyz".into(),
                }]
            } else {
                let texts: Vec<String> = p
                    .ready()
                    .iter()
                    .chain(p.health())
                    .map(|t| {
                        let t = pod.fill(t);
                        match replica {
                            Some(i) => t.replace("{replica}", &i.to_string()),
                            None => t,
                        }
                    })
                    .collect();
                texts.iter().filter_map(|t| read_check(t).ok()).collect()
            };
            let health = !p.health().is_empty();
            let timeout = if health {
                p.health_timeout().unwrap_or(Duration::from_secs(5))
            } else {
                p.ready_timeout().unwrap_or(Duration::from_secs(1))
            };
            if !checks.is_empty() {
                let test = match checks.iter().map(Check::shell).collect::<Option<Vec<_>>>() {
                    Some(shell) => {
                        // Each check in a shell of its own, as podvisor runs it: a comment
                        // or an `||` in one cannot reach the others.
                        let line = match shell.as_slice() {
                            [one] => one.clone(),
                            many => many
                                .iter()
                                .map(|c| format!("sh -c {}", shell_quote(c)))
                                .collect::<Vec<_>>()
                                .join(" && "),
                        };
                        strings(["CMD-SHELL".to_string(), compose_literal(&line)])
                    }
                    None => {
                        let mut test = vec![
                            "CMD".to_string(),
                            PODVISOR_IN_POD.into(),
                            "wait".into(),
                            "--timeout".into(),
                            format_duration(timeout),
                        ];
                        test.extend(checks.iter().map(|c| compose_literal(&c.text(None))));
                        strings(test)
                    }
                };
                let interval = if health {
                    p.health_interval().unwrap_or(Duration::from_secs(10))
                } else {
                    pod.ready_period()
                };
                let mut check = vec![
                    ("test", test),
                    ("interval", s(compose_duration(interval))),
                    (
                        "timeout",
                        s(compose_duration(timeout + Duration::from_secs(1))),
                    ),
                    ("retries", Y::I(i64::from(p.health_retries().unwrap_or(3)))),
                ];
                if let Some(n) = p.health_successes().filter(|&n| n > 1 && health) {
                    warnings.push(format!(
                        "pod {}: health_successes = {n} is left out: Compose's healthcheck has no success threshold",
                        pod.name
                    ));
                }
                if let Some(limit) = pod.ready_limit() {
                    check.push(("start_period", s(compose_duration(limit))));
                }
                entries.push(("healthcheck", m(check)));
            }
            let mut depends: Vec<(String, Y)> = Vec::new();
            let podvisor_used = pod.needs_podvisor_in_compose();
            if podvisor_used {
                depends.push((
                    INSTALL_SERVICE.to_string(),
                    m(vec![("condition", s("service_completed_successfully"))]),
                ));
            }
            for dependency in &p.template.depends_on {
                let Some(other) = by_name.get(dependency.on.as_str()) else {
                    continue;
                };
                let checked = !other.inside_compose.is_empty()
                    || !other.ready.is_empty()
                    || !other.health.is_empty();
                let condition = match dependency.condition {
                    Condition::Started => "service_started",
                    Condition::Ready if !checked => "service_started",
                    Condition::Ready | Condition::Healthy => "service_healthy",
                    Condition::Succeeded => "service_completed_successfully",
                    other_condition => {
                        return Err(vec![format!(
                            "pod {}: depends_on {} = \"{other_condition}\" cannot be exported; expected started, ready, healthy or succeeded",
                            pod.name, other.name
                        )])
                    }
                };
                for (name, _) in services_of(other) {
                    depends.push((name, m(vec![("condition", s(condition))])));
                }
            }
            if !depends.is_empty() {
                entries.push(("depends_on", Y::M(depends)));
            }
            if podvisor_used {
                entries.push(("volumes", strings([format!("{VOLUME}:/podvisor:ro")])));
            }
            services.push((service, m(entries)));
        }
    }
    let mut top = vec![("services", Y::M(services))];
    if any_podvisor {
        top.push(("volumes", m(vec![(VOLUME, Y::M(Vec::new()))])));
    }
    Ok(yaml(&m(top)))
}

/// The Compose service that copies podvisor into [`VOLUME`].
const INSTALL_SERVICE: &str = "podvisor-install";

/// The Compose volume podvisor is copied into.
const VOLUME: &str = "podvisor-bin";
