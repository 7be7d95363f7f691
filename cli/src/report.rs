//! Lines on stderr from a pod's or a deployment's event stream, as text or JSON: one
//! reporter for `run` and `up`, reading events in the order they happened.
//!
//! JSON lines (`--json`) are objects with `time` (seconds since podvisor started the pod
//! or deployment), `pod` (the pod's name, or `deployment`), `event`, and per event:
//! `pid` (started), `after` (ready, seconds), `status` (how a pod ended, as podvisor's exit
//! status would show it: N or 128+S).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use podvisor::core::deployment::{DeploymentState, MemberState};
use podvisor::events::{EventKind, LifecycleEvent};
use podvisor::End;

use crate::duration::format_duration;

/// Which command reports: `run` words a pod's stop in full, `up` tersely, and `up` reports
/// ends as its members' states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `podvisor run`.
    Run,
    /// `podvisor up`.
    Up,
}

/// Writes the lines of a stream of events.
#[derive(Debug)]
pub struct Reporter {
    json: bool,
    style: Style,
    /// What `time` counts from: the deployment's creation, as its events' `at` does.
    begin: Instant,
    /// The latest `time` written: a note timed just before an event that was written
    /// after it does not go back in time.
    last: std::sync::Mutex<Duration>,
}

/// A line in both forms: the text (in full, `podvisor: …`) and the JSON object.
pub type Rendered = (String, String);

impl Reporter {
    /// A reporter whose notes are timed from `begin`, the deployment's
    /// [`epoch`](podvisor::Deployment::epoch).
    pub fn new(json: bool, style: Style, begin: Instant) -> Reporter {
        Reporter {
            json,
            style,
            begin,
            last: std::sync::Mutex::new(Duration::ZERO),
        }
    }

    /// The line of `event`, if it has one in this style.
    /// Written after the output read before the event (see
    /// [`podvisor::forward::write_event_line`]).
    pub fn event(&self, event: &LifecycleEvent) {
        self.visit(event, &mut |at, pod, name, text, fields| {
            let line = self.form(at, pod, name, text, fields);
            podvisor::forward::write_event_line(podvisor::core::Stream::Stderr, &line, event);
        });
    }

    /// The line of `event` in both forms, text and JSON, if it has one in this style.
    pub fn render(&self, event: &LifecycleEvent) -> Option<(String, String)> {
        let mut rendered = None;
        self.visit(event, &mut |at, pod, name, text, fields| {
            rendered = Some((text_line(pod, text), json_line(at, pod, name, fields)));
        });
        rendered
    }

    /// Calls `line` with the parts of `event`'s line, if it has one in this style.
    fn visit(&self, event: &LifecycleEvent, line: &mut LineFn<'_>) {
        let pod = event.source.as_str();
        let at = event.at;
        match &event.kind {
            EventKind::Started { pid } => line(
                at,
                pod,
                "started",
                &format!("started (pid {pid})"),
                &[("pid", pid.to_string())],
            ),
            EventKind::Ready { after } => line(
                at,
                pod,
                "ready",
                &format!("ready after {}", format_duration(*after)),
                &[("after", format!("{:.6}", after.as_secs_f64()))],
            ),
            EventKind::Stopping {
                signal,
                grace,
                not_ready_after,
            } => {
                let text = match self.style {
                    Style::Up => "stopping".to_string(),
                    Style::Run => {
                        let why = not_ready_after.map_or(String::new(), |waited| {
                            format!("not ready after {}; ", format_duration(waited))
                        });
                        format!(
                            "{why}stopping ({signal} to its process group, grace {})",
                            format_duration(*grace)
                        )
                    }
                };
                line(at, pod, "stopping", &text, &[]);
            }
            EventKind::Killing { after } if self.style == Style::Run => {
                let after =
                    Duration::from_millis(u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
                line(
                    at,
                    pod,
                    "killing",
                    &format!(
                        "still running after {}; sending SIGKILL to its process group",
                        format_duration(after)
                    ),
                    &[],
                );
            }
            EventKind::Ended {
                end,
                health_failure,
                ..
            } if self.style == Style::Run => {
                let (name, text, status) = match end {
                    End::Exited(s) => ("exited", format!("exited ({s})"), s),
                    End::Closed(s) => ("closed", format!("stopped ({s})"), s),
                    End::Killed(s) => ("killed", format!("killed ({s})"), s),
                    End::Unhealthy { status, killed, .. } => (
                        "unhealthy",
                        format!(
                            "{} as unhealthy ({status})",
                            if *killed { "killed" } else { "closed" }
                        ),
                        status,
                    ),
                    _ => return,
                };
                let status = crate::exit::of_status(*status).to_string();
                let mut fields = vec![("status", status)];
                // Which check failed and how, or the watchdog's cause.
                let text = match (end, health_failure) {
                    (_, Some(failure)) => {
                        fields.extend(failure_fields(Some(failure)));
                        format!("{text}: {failure}")
                    }
                    (End::Unhealthy { cause, .. }, None) => {
                        fields.push(("message", quote(&cause.to_string())));
                        format!("{text}: {cause}")
                    }
                    _ => text,
                };
                line(at, pod, name, &text, &fields);
            }
            EventKind::Member {
                state,
                restarts,
                end,
            } => {
                // `run` says how its pod ended itself; of the member, only its restarts.
                if self.style == Style::Run
                    && !matches!(state, MemberState::BackingOff | MemberState::CrashLooping)
                {
                    return;
                }
                let text = match state {
                    MemberState::Waiting => "waiting for its dependencies".to_string(),
                    MemberState::BackingOff => format!("backing off (restart #{})", restarts + 1),
                    MemberState::Succeeded
                    | MemberState::CrashLooping
                    | MemberState::Ended
                    | MemberState::Stopped => match end.and_then(|e| e.status()) {
                        Some(status) => format!("{} ({status})", state.name()),
                        None => state.name().to_string(),
                    },
                    _ => return,
                };
                let fields: Vec<(&str, String)> = end
                    .and_then(|e| e.status())
                    .map(|s| ("status", crate::exit::of_status(s).to_string()))
                    .into_iter()
                    .collect();
                line(at, pod, state.name(), &text, &fields);
            }
            EventKind::Deployment { state } if self.style == Style::Up => match state {
                DeploymentState::Ready => line(
                    at,
                    "deployment",
                    "ready",
                    &format!("ready after {:.3}s", at.as_secs_f64()),
                    &[],
                ),
                DeploymentState::Stopping => line(
                    at,
                    "deployment",
                    "stopping",
                    "stopping (pods close in reverse dependency order)",
                    &[],
                ),
                _ => {}
            },
            EventKind::Health {
                health,
                message,
                failure,
            } => match health {
                podvisor::Health::Healthy => line(at, pod, "healthy", "healthy", &[]),
                podvisor::Health::Unhealthy(cause) => {
                    let text = match (failure, message) {
                        (Some(failure), _) => format!("unhealthy: {failure}"),
                        (None, Some(message)) => format!("unhealthy: {cause}: {message}"),
                        (None, None) => format!("unhealthy: {cause}"),
                    };
                    let mut fields = failure_fields(failure.as_ref());
                    if fields.is_empty() {
                        fields.extend(message.iter().map(|m| ("message", quote(m))));
                    }
                    line(at, pod, "unhealthy", &text, &fields);
                }
                _ => {}
            },
            EventKind::HealthCheckFailed(failure) => {
                let mut text = failure.to_string();
                if failure.failures > 0 {
                    // How far it is from unhealthy.
                    let _ = write!(text, " ({} in a row make it unhealthy)", failure.retries);
                }
                let mut fields = failure_fields(Some(failure));
                fields.push(("retries", failure.retries.to_string()));
                line(at, pod, "health-check-failed", &text, &fields);
            }
            EventKind::Lagged { missed } => line(
                at,
                "podvisor",
                "lagged",
                &format!("lagged: {missed} events were lost"),
                &[("missed", missed.to_string())],
            ),
            _ => {}
        }
    }

    /// Why the start failed (one line; the error's text carries the last output lines).
    pub fn failure(&self, pod: &str, error: &dyn std::fmt::Display) {
        if self.json {
            self.note(pod, "failed", "", &[("error", quote(&error.to_string()))]);
        } else {
            say!("podvisor: {error}");
        }
    }

    /// A line that is not an event of the stream (`closing on SIGINT`), timed now.
    pub fn note(&self, pod: &str, event: &str, text: &str, fields: &[(&str, String)]) {
        self.line(self.begin.elapsed(), pod, event, text, fields);
    }

    /// A line that is not an event of the stream, timed now, in both forms: `text` is the
    /// whole text line. Written with [`Reporter::write`].
    pub fn render_note(
        &self,
        pod: &str,
        event: &str,
        text: &str,
        fields: &[(&str, String)],
    ) -> Rendered {
        let at = self.later(self.begin.elapsed());
        (text.to_string(), json_line(at, pod, event, fields))
    }

    /// Writes a rendered line in this reporter's form.
    pub fn write(&self, line: &Rendered) {
        if self.json {
            say!("{}", line.1);
        } else {
            say!("{}", line.0);
        }
    }

    /// `at`, or the latest time written if that is later.
    fn later(&self, at: Duration) -> Duration {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        *last = (*last).max(at);
        *last
    }

    fn line(&self, at: Duration, pod: &str, event: &str, text: &str, fields: &[(&str, String)]) {
        say!("{}", self.form(at, pod, event, text, fields));
    }

    /// The line in this reporter's form: JSON, or the text.
    fn form(
        &self,
        at: Duration,
        pod: &str,
        event: &str,
        text: &str,
        fields: &[(&str, String)],
    ) -> String {
        if self.json {
            json_line(self.later(at), pod, event, fields)
        } else {
            text_line(pod, text)
        }
    }
}

/// The JSON fields of a failed health attempt: `check` (as written), `message`,
/// `failures` (in a row, counted).
pub fn failure_fields(failure: Option<&podvisor::HealthFailure>) -> Vec<(&'static str, String)> {
    failure.map_or_else(Vec::new, |f| {
        vec![
            ("check", quote(&f.check)),
            ("message", quote(&f.message)),
            ("failures", f.failures.to_string()),
        ]
    })
}

/// What [`Reporter::visit`] calls with a line's parts: when, who, the event's name, the
/// text, the JSON fields.
type LineFn<'a> = dyn FnMut(Duration, &str, &str, &str, &[(&str, String)]) + 'a;

fn text_line(pod: &str, text: &str) -> String {
    format!("podvisor: {pod} {text}")
}

fn json_line(at: Duration, pod: &str, event: &str, fields: &[(&str, String)]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{{\"time\":{:.6},\"pod\":{},\"event\":{}",
        at.as_secs_f64(),
        quote(pod),
        quote(event)
    );
    for (key, value) in fields {
        let _ = write!(out, ",{}:{value}", quote(key));
    }
    out.push('}');
    out
}

/// A JSON string literal, which is also a YAML double-quoted scalar.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Every control character, and the separators YAML readers take as line
            // breaks: the same literal serves JSON and YAML (`podvisor export`).
            c if c.is_control() || c == '\u{feff}' || ('\u{2028}'..='\u{2029}').contains(&c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(quote("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }
}
