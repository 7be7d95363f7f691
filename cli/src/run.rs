//! `podvisor run`: one command as a one-pod deployment that keeps the pod's name, so that
//! restarts, backoff and the restart budget come from the deployment machine and the
//! supervise loop is `up`'s.

use crate::args::RunOptions;
use crate::exit;
use crate::report::Style;

/// Runs the command to its end and returns podvisor's exit status.
pub fn run(options: RunOptions) -> i32 {
    let name = options.config.get_name().to_string();
    let set = podvisor::PodSet::new(name, options.config)
        .keep_name()
        .restart(options.restart);
    match podvisor::Deployment::new(podvisor::DeploymentConfig::new().pod(set)) {
        Ok(deployment) => {
            let deployment = std::sync::Arc::new(deployment);
            if let Some(address) = options.serve_health {
                match std::net::TcpListener::bind(address) {
                    Ok(listener) => {
                        let watched = deployment.clone();
                        let spawned = std::thread::Builder::new()
                            .name("podvisor-health".into())
                            .spawn(move || serve_health(&listener, &watched));
                        if let Err(e) = spawned {
                            say!("podvisor: --serve-health: {e}");
                            return exit::USAGE;
                        }
                    }
                    Err(e) => {
                        say!("podvisor: --serve-health {address}: cannot listen: {e}");
                        return exit::USAGE;
                    }
                }
            }
            crate::supervise::supervise(
                &deployment,
                options.json,
                Style::Run,
                options.foreground,
                &|_| {},
                &|_| {},
            )
        }
        Err(e) => {
            say!("podvisor: {e}");
            exit::USAGE
        }
    }
}

/// `/readyz` and `/livez` from the pod's state, one request per connection.
fn serve_health(listener: &std::net::TcpListener, deployment: &podvisor::Deployment) {
    use std::io::{BufRead, BufReader, Write};
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        let mut line = String::new();
        let mut reader = BufReader::new(&stream).take_limited();
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("");
        let (code, text) = match path {
            "/readyz" | "/livez" => {
                let member = deployment.members().into_iter().next();
                let (state, health) = member.map_or((None, None), |m| (Some(m.state), m.health));
                let unhealthy = matches!(health, Some(podvisor::Health::Unhealthy(_)));
                let up = match path {
                    "/readyz" => state == Some(podvisor::MemberState::Ready),
                    _ => matches!(
                        state,
                        Some(
                            podvisor::MemberState::Starting
                                | podvisor::MemberState::Started
                                | podvisor::MemberState::Ready
                        )
                    ),
                };
                if up && !unhealthy {
                    (200, "ok")
                } else {
                    (503, "not ready")
                }
            }
            _ => (404, "not found; ask /readyz or /livez"),
        };
        let reason = match code {
            200 => "OK",
            404 => "Not Found",
            _ => "Service Unavailable",
        };
        let _ = write!(
            stream,
            "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}\n",
            text.len() + 1
        );
    }
}

/// A reader of at most one request head's worth of bytes.
trait TakeLimited: Sized {
    fn take_limited(self) -> std::io::Take<Self>;
}

impl<R: std::io::Read> TakeLimited for R {
    fn take_limited(self) -> std::io::Take<Self> {
        std::io::Read::take(self, 8192)
    }
}
