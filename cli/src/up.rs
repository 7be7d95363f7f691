//! `podvisor up`: a deployment from a file, closed in reverse dependency order on
//! SIGINT/SIGTERM or when a pod that is neither one-shot nor restarted ends.

use std::path::Path;
use std::sync::Arc;

use podvisor::{Deployment, DeploymentConfig, PodConfig, PodSet};

use crate::exit;
use crate::file::{self, PlannedPod};
use crate::logbook::LogBook;
use crate::report::Style;

/// Colours of the pods' prefixes on a terminal, one per pod of the file in turn: cyan,
/// yellow, green, magenta, blue, red.
const COLOURS: [u8; 6] = [36, 33, 32, 35, 34, 31];

/// Whether prefixes are coloured: podvisor's standard output is a terminal and `NO_COLOR`
/// is unset or empty (no-color.org).
fn colour() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The prefix of member `name`'s forwarded lines: `[name]` padded to `width` (the longest
/// member name), coloured by its pod's place in the file when `colour`.
pub fn prefix(name: &str, width: usize, pod_index: usize, colour: bool) -> String {
    let pad = " ".repeat(width.saturating_sub(name.chars().count()));
    if colour {
        let code = COLOURS[pod_index % COLOURS.len()];
        format!("\x1b[{code}m[{name}]\x1b[0m{pad} ")
    } else {
        format!("[{name}]{pad} ")
    }
}

/// Builds the deployment of `plan`'s pods; every line they write is also kept in `logs`.
/// With `json`, both of their streams are forwarded to standard output (prefixed), so that
/// standard error carries the events alone.
fn deployment_config(pods: Vec<PlannedPod>, logs: &Arc<LogBook>, json: bool) -> DeploymentConfig {
    let mut config = DeploymentConfig::new();
    // Every member is `pod/N`: the widest name sets the prefixes' width.
    let width = pods
        .iter()
        .map(|p| {
            let last = p.template.replicas.saturating_sub(1);
            p.template.name.chars().count() + 1 + last.to_string().len()
        })
        .max()
        .unwrap_or(0);
    let colour = colour();
    for (pod_index, pod) in pods.into_iter().enumerate() {
        let template = pod.template.clone();
        let kept = pod.log_lines;
        let logs = logs.clone();
        let set = PodSet::from_template(template, move |replica| {
            // The strings were checked when the file was loaded, with the same
            // placeholders; a failure here would need a placeholder to expand into
            // something unparsable (a port of 0 when none is free).
            let config = pod.config(|s| replica.expand(s)).unwrap_or_else(|e| {
                say!("podvisor: pod {}: {e}", replica.name());
                PodConfig::new("/nonexistent/podvisor-config-error").name(replica.name())
            });
            let logs = logs.clone();
            let member = replica.name().to_string();
            config
                .forward_prefix(prefix(&member, width, pod_index, colour))
                .forward_to_stdout(json)
                .output_tap(move |stream, line| logs.push_kept(&member, stream, line, kept))
        });
        config = config.pod(set);
    }
    config
}

/// Runs the deployment in `path` to its end, serving its control socket (at `socket`,
/// or the one of `path` in podvisor's private directory); returns podvisor's exit status.
pub fn up(path: &Path, json: bool, socket: Option<&Path>) -> i32 {
    let plan = match file::load(path) {
        Ok(plan) => plan,
        Err(e) => {
            file::report(&e);
            return exit::USAGE;
        }
    };
    let bound = crate::control::locate(socket, path, true).and_then(|s| crate::control::bind(&s));
    let (listener, socket_file) = match bound {
        Ok(bound) => bound,
        Err(message) => {
            say!("podvisor: {message}");
            return exit::USAGE;
        }
    };
    let logs = Arc::new(LogBook::default());
    let code = match Deployment::new(deployment_config(plan.pods, &logs, json)) {
        Ok(deployment) => {
            let server = Arc::new(crate::control::Server::new(
                Arc::new(deployment),
                logs.clone(),
                json,
            ));
            server.serve(listener);
            let code = crate::supervise::supervise(
                &server.deployment,
                json,
                Style::Up,
                false,
                &|event| server.observe(event),
                &|lines| server.ended(lines),
            );
            // Followers of `events` and `logs --follow` see the end before podvisor exits.
            logs.close();
            server.drain();
            code
        }
        Err(e) => {
            say!("podvisor: {}: {e}", path.display());
            exit::USAGE
        }
    };
    logs.close();
    drop(socket_file);
    code
}

#[cfg(test)]
mod tests {
    use super::prefix;

    #[test]
    fn prefixes_are_padded_to_one_width_and_coloured_only_when_asked() {
        assert_eq!(prefix("db/0", 6, 0, false), "[db/0]   ");
        assert_eq!(prefix("worker/1", 8, 3, false), "[worker/1] ");
        assert_eq!(prefix("db/0", 6, 1, true), "\x1b[33m[db/0]\x1b[0m   ");
        assert_eq!(prefix("db/0", 6, 7, true), "\x1b[33m[db/0]\x1b[0m   ");
    }
}
