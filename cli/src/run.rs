//! `podvisor run`: one pod, closed on SIGINT/SIGTERM, signals forwarded.

use std::time::Duration;

use async_signal::{Signal as Os, Signals};
use futures_lite::{future, StreamExt};
use podvisor::events::EventKind;
use podvisor::{Pod, Signal};

use crate::args::RunOptions;
use crate::exit;
use crate::report::{Reporter, Style};
use crate::sd_notify::Supervisor;
use crate::signals::{StopRequest, StopSignals};

enum Wake {
    /// The pod's next event; `None` once it ended.
    Event(Option<podvisor::events::LifecycleEvent>),
    Signal(Option<i32>),
    /// Nobody reads podvisor's standard output any more.
    StdoutClosed,
}

/// podvisor's status when the reader of its standard output went away: 128 + SIGPIPE, as
/// a shell pipeline's writer would end.
const STDOUT_CLOSED: i32 = 141;

/// Runs the pod to its end and returns podvisor's exit status.
pub fn run(options: RunOptions) -> i32 {
    if options.restart != podvisor::core::deployment::RestartPolicy::No {
        // A restarted command is a one-pod deployment: the deployment machine owns
        // restarts, backoff and the restart budget.
        let name = options.config.get_name().to_string();
        let set = podvisor::PodSet::new(name, options.config).restart(options.restart);
        return match podvisor::Deployment::new(podvisor::DeploymentConfig::new().pod(set)) {
            Ok(deployment) => crate::up::drive(deployment, options.json),
            Err(e) => {
                say!("podvisor: {e}");
                exit::USAGE
            }
        };
    }
    crate::raise_nofile_limit();
    let signals = match Signals::new([Os::Int, Os::Term, Os::Hup, Os::Usr1, Os::Usr2, Os::Winch]) {
        Ok(signals) => signals,
        Err(e) => {
            say!("podvisor: cannot handle signals: {e}");
            return exit::USAGE;
        }
    };
    let pod = match Pod::new(options.config) {
        Ok(pod) => pod,
        Err(e) => {
            say!("podvisor: {e}");
            return exit::USAGE;
        }
    };
    let supervisor = Supervisor::from_env();
    let reporter = Reporter::new(options.json, Style::Run);
    let name = pod.name().to_string();
    future::block_on(async {
        let mut signals = signals;
        let mut events = pod.events();
        pod.start();
        let mut stops = StopSignals::default();
        let mut stdout_closed = false;
        loop {
            let changed = async { Wake::Event(events.next().await) };
            let signal =
                async { Wake::Signal(signals.next().await.and_then(Result::ok).map(|s| s as i32)) };
            let closed = async {
                if stdout_closed {
                    future::pending::<()>().await;
                }
                podvisor::forward::closed(podvisor::core::Stream::Stdout).await;
                Wake::StdoutClosed
            };
            match future::or(future::or(changed, signal), closed).await {
                Wake::StdoutClosed => {
                    stdout_closed = true;
                    reporter.note(
                        &name,
                        "closing",
                        "closing: nobody reads podvisor's standard output any more",
                        &[],
                    );
                    if let Some(s) = &supervisor {
                        s.notify("STOPPING=1");
                    }
                    pod.close_nowait(None);
                }
                Wake::Event(None) => break,
                Wake::Event(Some(event)) => {
                    reporter.event(&event);
                    if matches!(event.kind, EventKind::Ready { .. }) {
                        if let Some(s) = &supervisor {
                            s.notify("READY=1\nSTATUS=ready");
                        }
                    }
                }
                Wake::Signal(Some(number))
                    if number == Os::Int as i32 || number == Os::Term as i32 =>
                {
                    let name = Signal::from_raw(number).map_or(number.to_string(), |s| s.name());
                    match stops.receive(number, std::time::Instant::now()) {
                        StopRequest::Close => {
                            reporter.note(
                                pod.name(),
                                "closing",
                                &format!("closing on SIG{name} (again to kill at once)"),
                                &[],
                            );
                            if let Some(s) = &supervisor {
                                s.notify("STOPPING=1");
                            }
                            pod.close_nowait(None);
                        }
                        StopRequest::Copy => {}
                        StopRequest::Kill => {
                            reporter.note(
                                pod.name(),
                                "killing",
                                &format!("second SIG{name}: killing its process group"),
                                &[],
                            );
                            pod.close_nowait(Some(Duration::ZERO));
                        }
                    }
                }
                Wake::Signal(Some(number)) => {
                    if let Some(signal) = Signal::from_raw(number) {
                        let _ = pod.signal(signal);
                    }
                }
                Wake::Signal(None) => {}
            }
        }
        let start = pod.start_result();
        if let Err(error) = pod.wait_ready_nowait().unwrap_or(Ok(())) {
            if !matches!(error, podvisor::StartError::Cancelled { .. }) {
                reporter.failure(pod.name(), &error);
            }
        }
        let requested = stops.first().map(|(signal, _)| signal);
        match start {
            Some(_) if stdout_closed => STDOUT_CLOSED,
            Some(start) => exit::exit_code(&start, pod.end(), requested),
            None => exit::USAGE,
        }
    })
}
