//! The one supervise loop of `podvisor run` and `podvisor up`: a deployment (for `run`, of
//! one pod that keeps its name) run to its end, its events reported in order, closed on
//! SIGINT/SIGTERM (a second one kills), SIGHUP/USR1/USR2/WINCH forwarded to its pods, and
//! closed when nobody reads podvisor's standard output any more.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_signal::{Signal as Os, Signals};
use futures_lite::future;
use podvisor::core::deployment::{Cause, DeploymentState, MemberState};
use podvisor::events::EventKind;
use podvisor::{Deployment, Signal, StartResult};

use crate::exit;
use crate::report::{quote, Rendered, Reporter, Style};
use crate::signals::{Arrivals, StopRequest, StopSignals};

/// podvisor's status when the reader of its standard output went away: 128 + SIGPIPE, as
/// a shell pipeline's writer would end.
const STDOUT_CLOSED: i32 = 141;

enum Wake {
    /// The deployment's next event; `None` once it ended.
    Event(Option<Box<podvisor::events::LifecycleEvent>>),
    /// A signal and when it arrived.
    Signal(Option<(i32, Instant)>),
    Redraw,
    /// Nobody reads podvisor's standard output any more.
    StdoutClosed,
}

/// On a terminal, one live status line under the log while the deployment starts or
/// stops: each member's state and how long it has been in it. It is a single line,
/// rewritten in place, because the pods' forwarded output shares the terminal: redrawing
/// several lines would overwrite their output.
struct Live {
    enabled: bool,
    shown: bool,
    since: BTreeMap<String, (MemberState, Instant)>,
}

impl Live {
    fn clear(&mut self) {
        if self.shown {
            podvisor::forward::set_status_line(None);
            self.shown = false;
        }
    }

    fn draw(&mut self, deployment: &Deployment) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let mut parts = Vec::new();
        for member in deployment.members() {
            let entry = self
                .since
                .entry(member.name.clone())
                .or_insert((member.state, now));
            if entry.0 != member.state {
                *entry = (member.state, now);
            }
            parts.push(format!(
                "{} {} {:.1}s",
                member.name,
                member.state.name(),
                now.duration_since(entry.1).as_secs_f64()
            ));
        }
        let width = terminal_width().saturating_sub(1).max(20);
        let mut text = format!("[{}] {}", deployment.state().name(), parts.join(" · "));
        if text.chars().count() > width {
            text = text
                .chars()
                .take(width.saturating_sub(1))
                .collect::<String>()
                + "…";
        }
        // Kept below every line by the one writer of the terminal.
        podvisor::forward::set_status_line(Some(text));
        self.shown = true;
    }
}

fn terminal_width() -> usize {
    rustix::termios::tcgetwinsize(std::io::stderr())
        .map(|size| usize::from(size.ws_col))
        .ok()
        .filter(|&w| w > 0)
        .unwrap_or(80)
}

/// Runs `deployment` to its end, reporting each member's changes, closing it on
/// SIGINT/SIGTERM (a second one kills) and forwarding SIGHUP/USR1/USR2/WINCH; returns
/// podvisor's exit status. `observe` sees every event; `ended` gets the lines written after
/// the last one (why it failed, and for `up` the deployment's end with the status).
pub fn supervise(
    deployment: &Deployment,
    json: bool,
    style: Style,
    foreground: bool,
    observe: &dyn Fn(&podvisor::events::LifecycleEvent),
    ended: &dyn Fn(&[Rendered]),
) -> i32 {
    crate::raise_nofile_limit();
    let signals = Signals::new([Os::Int, Os::Term, Os::Hup, Os::Usr1, Os::Usr2, Os::Winch])
        .and_then(Arrivals::new);
    let signals = match signals {
        Ok(signals) => signals,
        Err(e) => {
            say!("podvisor: cannot handle signals: {e}");
            return exit::USAGE;
        }
    };
    let supervisor = crate::sd_notify::Supervisor::from_env();
    let live = std::cell::RefCell::new(Live {
        // `up` only: `run`'s one command has its own lines, and in the foreground the
        // terminal is the command's.
        enabled: style == Style::Up
            && !json
            && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        shown: false,
        since: BTreeMap::new(),
    });
    let reporter = Reporter::new(json, style, deployment.epoch());
    // In the foreground the command may leave the terminal raw or without echo (a full
    // screen program that was killed): its settings are put back before podvisor's line
    // about its end.
    let terminal = if foreground {
        rustix::termios::tcgetattr(std::io::stdin()).ok()
    } else {
        None
    };
    // Who podvisor's own lines are about: `run`'s one pod, or `up`'s deployment.
    let subject = match style {
        Style::Run => deployment
            .members()
            .first()
            .map_or_else(|| "deployment".to_string(), |m| m.name.clone()),
        Style::Up => "deployment".to_string(),
    };
    // The one writer of the terminal keeps the status line below podvisor's own lines.
    let say = |pod: &str, event: &str, text: &str| {
        reporter.note(pod, event, text, &[]);
    };
    future::block_on(async {
        // podvisor's lines go to standard error; a pod's output read after an event
        // comes after the event's line.
        let mut events = deployment
            .events()
            .order_output(podvisor::core::Stream::Stderr);
        deployment.start();
        let mut stops = StopSignals::default();
        let mut stdout_closed = false;
        let mut was_ready = false;
        loop {
            let changed = async { Wake::Event(events.next().await.map(Box::new)) };
            let signal = async { Wake::Signal(signals.next().await) };
            let animating = live.borrow().enabled
                && matches!(
                    deployment.state(),
                    DeploymentState::Starting | DeploymentState::Stopping
                );
            let redraw = async {
                if animating {
                    async_io::Timer::after(Duration::from_millis(200)).await;
                    Wake::Redraw
                } else {
                    future::pending::<Wake>().await
                }
            };
            let closed = async {
                if stdout_closed {
                    future::pending::<()>().await;
                }
                podvisor::forward::closed(podvisor::core::Stream::Stdout).await;
                Wake::StdoutClosed
            };
            match future::or(future::or(future::or(changed, signal), redraw), closed).await {
                Wake::Redraw => {}
                Wake::StdoutClosed => {
                    stdout_closed = true;
                    say(
                        &subject,
                        "closing",
                        "closing: nobody reads podvisor's standard output any more",
                    );
                    deployment.close_nowait(None);
                }
                Wake::Event(None) => break,
                Wake::Event(Some(event)) => {
                    // Only as the terminal's foreground group: from the background,
                    // the change would stop podvisor (SIGTTOU).
                    let in_front = || {
                        rustix::termios::tcgetpgrp(std::io::stdin())
                            .is_ok_and(|group| group == rustix::process::getpgrp())
                    };
                    if let (Some(settings), EventKind::Ended { .. }) = (&terminal, &event.kind) {
                        if in_front() {
                            let _ = rustix::termios::tcsetattr(
                                std::io::stdin(),
                                rustix::termios::OptionalActions::Drain,
                                settings,
                            );
                        }
                    }
                    observe(&event);
                    reporter.event(&event);
                    match event.kind {
                        EventKind::Deployment {
                            state: DeploymentState::Ready,
                        } => {
                            was_ready = true;
                            if let Some(s) = &supervisor {
                                s.notify("READY=1\nSTATUS=ready");
                            }
                        }
                        EventKind::Deployment {
                            state: DeploymentState::Stopping,
                        } => {
                            if let Some(s) = &supervisor {
                                s.notify("STOPPING=1");
                            }
                        }
                        _ => {}
                    }
                }
                // In the foreground the command shares podvisor's terminal: it got the
                // terminal's SIGINT, SIGHUP and SIGWINCH itself, and SIGINT is its to
                // handle (an interactive program goes on after Ctrl-C).
                Wake::Signal(Some((number, _)))
                    if foreground
                        && (number == Os::Int as i32
                            || number == Os::Hup as i32
                            || number == Os::Winch as i32) => {}
                Wake::Signal(Some((number, arrived)))
                    if number == Os::Int as i32 || number == Os::Term as i32 =>
                {
                    let name = Signal::from_raw(number).map_or(number.to_string(), |s| s.name());
                    match stops.receive(number, arrived) {
                        StopRequest::Close => {
                            say(
                                &subject,
                                "closing",
                                &format!("closing on SIG{name} (again to kill at once)"),
                            );
                            deployment.close_nowait(None);
                        }
                        StopRequest::Copy => {}
                        StopRequest::Kill => {
                            let what = match style {
                                Style::Run => "its process group",
                                Style::Up => "every pod",
                            };
                            say(
                                &subject,
                                "killing",
                                &format!("second SIG{name}: killing {what}"),
                            );
                            deployment.close_nowait(Some(Duration::ZERO));
                        }
                    }
                }
                Wake::Signal(Some((number, _))) => {
                    if let Some(signal) = Signal::from_raw(number) {
                        deployment.signal(signal);
                    }
                }
                Wake::Signal(None) => {}
            }
            if matches!(
                deployment.state(),
                DeploymentState::Starting | DeploymentState::Stopping
            ) {
                live.borrow_mut().draw(deployment);
            } else {
                live.borrow_mut().clear();
            }
        }
        let requested = stops.first().map(|(signal, _)| signal);
        // The lines after the last event, also the end of `podvisor events`' stream.
        let mut last_lines: Vec<Rendered> = Vec::new();
        let code = match deployment.failure() {
            _ if stdout_closed => STDOUT_CLOSED,
            // One command: the exit status of its pod, as `timeout(1)` would give it.
            _ if style == Style::Run => run_status(deployment, &reporter, requested),
            // A pod that finished its work with status 0 ends the deployment as planned.
            Some(failure) if matches!(failure.cause(), Cause::Ended(podvisor::End::Exited(status)) if status.success()) =>
            {
                last_lines.push(reporter.render_note(
                    "deployment",
                    "finished",
                    &format!(
                        "podvisor: deployment finished: {} exited with status 0, which ends the deployment",
                        failure.member()
                    ),
                    &[],
                ));
                0
            }
            Some(failure) => {
                let mut fields = vec![("error", quote(&failure.to_string()))];
                // Which check made it unhealthy, and how.
                fields.extend(crate::report::failure_fields(failure.health_failure()));
                // What a readiness timeout was still waiting for.
                if !failure.waiting_for().is_empty() {
                    fields.push(("waiting_for", quote(&failure.waiting_for().join(", "))));
                }
                last_lines.push(reporter.render_note(
                    failure.member(),
                    "failed",
                    &format!("podvisor: {failure}"),
                    &fields,
                ));
                match failure.cause() {
                    Cause::Start(start) => exit::exit_code(start, None, None),
                    Cause::Ended(end) => exit::exit_code(
                        &StartResult::Ready {
                            after: Duration::ZERO,
                        },
                        Some(*end),
                        None,
                    ),
                }
            }
            None if was_ready || requested.is_none() => 0,
            None => 128 + requested.unwrap_or(15),
        };
        if style == Style::Up {
            last_lines.push(reporter.render_note(
                "deployment",
                "ended",
                &format!("podvisor: deployment ended (exit status {code})"),
                &[("status", code.to_string())],
            ));
        }
        for line in &last_lines {
            reporter.write(line);
        }
        ended(&last_lines);
        code
    })
}

/// `run`'s exit status from its one pod's start and end; reports why the start failed.
fn run_status(deployment: &Deployment, reporter: &Reporter, requested: Option<i32>) -> i32 {
    let Some(member) = deployment.members().into_iter().next() else {
        return exit::USAGE;
    };
    if let Some(error) = deployment
        .failure()
        .as_ref()
        .and_then(|f| f.start_error().cloned())
    {
        if !matches!(error, podvisor::StartError::Cancelled { .. }) {
            reporter.failure(&member.name, &error);
        }
    }
    match &member.start_result {
        Some(start) => exit::exit_code(start, member.end, requested),
        None if requested.is_some() => 128 + requested.unwrap_or(15),
        None => exit::USAGE,
    }
}
