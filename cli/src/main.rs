//! `podvisor`: run one pod (`podvisor run`), with the exit status of the table in
//! `podvisor --help`.

/// `eprintln!` that never panics: podvisor's stderr may be a pipe whose reader is gone,
/// and losing a message must not take the pods' supervisor down with it.
macro_rules! say {
    ($($arg:tt)*) => {{
        // Through the terminal's one writer: never inside a pod's line or the status line.
        podvisor::forward::write_own(podvisor::core::Stream::Stderr, &format!($($arg)*));
    }};
}

/// `println!` that never panics: `podvisor --help | head -2` closes the pipe early.
macro_rules! out {
    ($($arg:tt)*) => {{
        podvisor::forward::write_own(podvisor::core::Stream::Stdout, &format!($($arg)*));
    }};
}

mod args;
mod client;
mod control;
mod dotenv;
mod duration;
mod exit;
mod export;
mod file;
mod json;
mod logbook;
mod report;
mod run;
mod sd_notify;
mod signals;
mod supervise;
mod up;

fn main() {
    // As a container's entrypoint (PID 1), or when asked, reap the orphans given to us.
    if std::process::id() == 1 || std::env::var_os("PODVISOR_SUBREAPER").is_some_and(|v| v == "1") {
        if let Err(e) = podvisor::reaper::enable() {
            say!("podvisor: cannot reap orphans: {e}");
        }
    }
    let code = match args::parse(std::env::args_os().skip(1).collect()) {
        Ok(args::Command::Help(topic)) => {
            out!("{}", args::help(topic));
            0
        }
        Ok(args::Command::Version) => {
            out!("podvisor {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(args::Command::Run(options)) => run::run(*options),
        Ok(args::Command::Up { file, json, socket }) => {
            let socket = socket.or_else(|| {
                std::env::var_os("PODVISOR_SOCKET")
                    .filter(|s| !s.is_empty())
                    .map(std::path::PathBuf::from)
            });
            up::up(&file, json, socket.as_deref())
        }
        Ok(args::Command::Client(options)) => client::client(&options),
        Ok(args::Command::Wait { checks, timeout }) => wait(&checks, timeout),
        Ok(args::Command::Export(options)) => export(&options),
        Ok(args::Command::Check(path)) => match file::load(&path) {
            Ok(plan) => {
                // The first names only: a line of 100,000 names says nothing more.
                const SHOWN: usize = 20;
                let names: Vec<&str> = plan
                    .pods
                    .iter()
                    .take(SHOWN)
                    .map(|p| p.template.name.as_str())
                    .collect();
                let more = match plan.pods.len().saturating_sub(SHOWN) {
                    0 => String::new(),
                    n => format!(" and {n} more"),
                };
                let pods = if plan.pods.len() == 1 { "pod" } else { "pods" };
                out!(
                    "{}: ok, {} {pods}: {}{more}",
                    path.display(),
                    plan.pods.len(),
                    names.join(", ")
                );
                0
            }
            Err(e) => {
                file::report(&e);
                exit::USAGE
            }
        },
        Err(message) => {
            say!("podvisor: {message}\nTry 'podvisor --help' for more information.");
            exit::USAGE
        }
    };
    // Forwarded output is written by podvisor's writer threads: let them finish.
    podvisor::forward::flush();
    std::process::exit(code);
}

/// About four descriptors per pod: raise the soft limit to the hard one.
pub(crate) fn raise_nofile_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// `podvisor export`: the manifests on stdout, warnings and errors on stderr.
fn export(options: &export::Options) -> i32 {
    let plan = match file::load_for_export(&options.file) {
        Ok(plan) => plan,
        Err(e) => {
            file::report(&e);
            return exit::USAGE;
        }
    };
    match export::export(&plan, options) {
        Ok(done) => {
            for warning in &done.warnings {
                say!("podvisor export: warning: {warning}");
            }
            out!("{}", done.text.trim_end());
            0
        }
        Err(errors) => {
            let path = options.file.display();
            for error in &errors {
                say!("podvisor export: {path}: {error}");
            }
            exit::USAGE
        }
    }
}

/// `podvisor wait`: tries every check until all passed (0) or `timeout` ran out (124,
/// naming the checks that did not pass and why).
fn wait(checks: &[podvisor::Readiness], timeout: Option<std::time::Duration>) -> i32 {
    use std::time::{Duration, Instant};
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut pending: Vec<(&podvisor::Readiness, String)> =
        checks.iter().map(|c| (c, String::new())).collect();
    let mut delay = Duration::from_millis(10);
    loop {
        let attempt_limit = deadline.map_or(Duration::from_secs(5), |d| {
            d.saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), Duration::from_secs(5))
        });
        pending.retain_mut(|(check, why)| match check.check_once(attempt_limit) {
            Ok(()) => false,
            Err(e) => {
                *why = e;
                true
            }
        });
        if pending.is_empty() {
            return 0;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            for (check, why) in &pending {
                say!("podvisor wait: timed out waiting for {check}: {why}");
            }
            return exit::TIMED_OUT;
        }
        let pause = deadline.map_or(delay, |d| delay.min(d.saturating_duration_since(now)));
        std::thread::sleep(pause);
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}
