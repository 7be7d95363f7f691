//! One line on stderr per state change of a pod, as text or JSON.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use podvisor::{End, Pod, StartResult, State};

use crate::duration::format_duration;

/// Reports the milestones of one pod, each once, in order, even when several happen between
/// two looks (state changes are coalesced by the pod).
#[derive(Debug)]
pub struct Reporter {
    json: bool,
    begin: Instant,
    grace: Duration,
    stop_signal: String,
    started: bool,
    ready: bool,
    /// When the stop was first seen.
    stopping: Option<Instant>,
    killing: bool,
    ended: bool,
}

impl Reporter {
    pub fn new(json: bool, grace: Duration, stop_signal: String) -> Reporter {
        Reporter {
            json,
            begin: Instant::now(),
            grace,
            stop_signal,
            started: false,
            ready: false,
            stopping: None,
            killing: false,
            ended: false,
        }
    }

    /// Reports whatever `pod` reached since the last call.
    pub fn update(&mut self, pod: &Pod) {
        // One consistent look: a state of Ended always comes with its end.
        let podvisor::PodStatus {
            state,
            start_result: start,
            end,
            pid,
        } = pod.status();
        if !self.started && pid.is_some() {
            self.started = true;
            let pid = pid.unwrap_or_default();
            self.line(
                pod,
                "started",
                &format!("started (pid {pid})"),
                &[("pid", pid.to_string())],
            );
        }
        if let (false, Some(StartResult::Ready { after })) = (self.ready, &start) {
            self.ready = true;
            self.line(
                pod,
                "ready",
                &format!("ready after {}", format_duration(*after)),
                &[("after", format!("{:.6}", after.as_secs_f64()))],
            );
        }
        let closing = matches!(state, State::Stopping | State::Killing)
            || matches!(end, Some(End::Closed(_) | End::Killed(_)));
        if self.stopping.is_none() && closing && pid.is_some() {
            self.stopping = Some(Instant::now());
            let why = match &start {
                Some(StartResult::TimedOut { waited, .. }) => {
                    format!("not ready after {}; ", format_duration(*waited))
                }
                _ => String::new(),
            };
            self.line(
                pod,
                "stopping",
                &format!(
                    "{why}stopping (SIG{} to its process group, grace {})",
                    self.stop_signal,
                    format_duration(self.grace)
                ),
                &[],
            );
        }
        if !self.killing && (state == State::Killing || matches!(end, Some(End::Killed(_)))) {
            self.killing = true;
            // The real time since the stop: a second request kills before the grace ends.
            let waited = self.stopping.map_or(Duration::ZERO, |at| at.elapsed());
            let waited =
                Duration::from_millis(u64::try_from(waited.as_millis()).unwrap_or(u64::MAX));
            self.line(
                pod,
                "killing",
                &format!(
                    "still running after {}; sending SIGKILL to its process group",
                    format_duration(waited)
                ),
                &[],
            );
        }
        if let (false, Some(end)) = (self.ended, end) {
            self.ended = true;
            if end == End::NeverSpawned {
                return;
            }
            let (event, text, status) = match end {
                End::Exited(s) => ("exited", format!("exited ({s})"), Some(s)),
                End::Closed(s) => ("closed", format!("stopped ({s})"), Some(s)),
                End::Killed(s) => ("killed", format!("killed ({s})"), Some(s)),
                End::NeverSpawned => return,
            };
            let mut fields = Vec::new();
            if let Some(status) = status {
                fields.push(("status", crate::exit::of_status(status).to_string()));
            }
            self.line(pod, event, &text, &fields);
        }
    }

    /// Reports why the start failed (one line, then the last output lines).
    pub fn failure(&self, pod: &Pod, error: &podvisor::StartError) {
        if self.json {
            self.line(pod, "failed", "", &[("error", quote(&error.to_string()))]);
        } else {
            say!("podvisor: {error}");
        }
    }

    /// A free-form note (`closing on SIGINT`).
    pub fn note(&self, pod: &Pod, event: &str, text: &str) {
        self.line(pod, event, text, &[]);
    }

    fn line(&self, pod: &Pod, event: &str, text: &str, fields: &[(&str, String)]) {
        if self.json {
            let mut out = String::new();
            let _ = write!(
                out,
                "{{\"time\":{:.6},\"pod\":{},\"event\":{}",
                self.begin.elapsed().as_secs_f64(),
                quote(pod.name()),
                quote(event)
            );
            for (key, value) in fields {
                let _ = write!(out, ",{}:{value}", quote(key));
            }
            out.push('}');
            say!("{out}");
        } else {
            say!("podvisor: {} {text}", pod.name());
        }
    }
}

/// A JSON string literal.
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
            c if (c as u32) < 0x20 => {
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
