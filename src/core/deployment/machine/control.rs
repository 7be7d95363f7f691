//! Members stopped, started and restarted on request (the control socket's `stop`,
//! `start` and `restart`): which dependents go down with a member, holding and releasing
//! it.

use super::super::member::Held;
use super::super::vocabulary::{DeploymentAction, MemberId, MemberState};
use super::{DeploymentMachine, DeploymentMutation};

impl DeploymentMachine {
    /// The members a stop with dependents (or a restart) of `member` takes down with it:
    /// the members that depend on it, directly or not, that are up or on their way, in
    /// member order. One stopped on request before stays stopped and is not among
    /// them; one being restarted is.
    pub fn stopped_with(&self, member: MemberId) -> Vec<MemberId> {
        let Some(m) = self.members.get(member.0) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        let mut templates = std::collections::VecDeque::from([m.template]);
        let mut seen = vec![false; self.spec.templates.len()];
        seen[m.template] = true;
        while let Some(t) = templates.pop_front() {
            for &d in &self.dependents[t] {
                if !seen[d] {
                    seen[d] = true;
                    templates.push_back(d);
                    found.extend(self.members_of[d].clone().filter(|&j| {
                        self.members[j].held.is_none_or(|h| h.then_start)
                            && (self.members[j].state.is_running()
                                || matches!(
                                    self.members[j].state,
                                    MemberState::Waiting | MemberState::BackingOff
                                ))
                    }));
                }
            }
        }
        found.sort_unstable();
        found.into_iter().map(MemberId).collect()
    }

    /// Stops member `i` on request (and, with `cascade`, the members that depend on it,
    /// transitively); with `then_start`, each starts again once down.
    pub(super) fn stop_member(&mut self, i: usize, cascade: bool, then_start: bool) {
        let mut stop = vec![i];
        if cascade {
            stop.extend(self.stopped_with(MemberId(i)).into_iter().map(|m| m.0));
        }
        for j in stop {
            if then_start && self.mutation != Some(DeploymentMutation::RestartSpendsBudget) {
                // A restart on request is not a failure: a fresh budget and backoff.
                self.members[j].restarts.reset();
            }
            let held = Held {
                after_dependents: cascade,
                then_start,
            };
            match self.members[j].state {
                MemberState::Waiting | MemberState::BackingOff => {
                    self.members[j].restart_at = None;
                    if then_start {
                        self.set_held(j, None);
                        self.set_member(j, MemberState::Waiting);
                    } else {
                        self.set_held(j, Some(held));
                        self.set_member(j, MemberState::Stopped);
                    }
                }
                state if state.is_running() => self.set_held(j, Some(held)),
                MemberState::Stopped
                | MemberState::Ended
                | MemberState::CrashLooping
                | MemberState::Succeeded
                    if then_start =>
                {
                    self.set_held(j, None);
                    self.set_member(j, MemberState::Waiting);
                }
                _ => {}
            }
        }
    }

    /// Starts member `i` on request: a stopped (or ended) member waits for its
    /// dependencies with a fresh budget; one whose pod is still closing on request starts
    /// once down, with a fresh budget too (a restart its failure had scheduled before the
    /// stop never happens).
    pub(super) fn start_on_request(&mut self, i: usize) {
        let m = &mut self.members[i];
        match m.state {
            MemberState::Stopped
            | MemberState::Ended
            | MemberState::CrashLooping
            | MemberState::Succeeded => {
                m.restarts.reset();
                self.set_held(i, None);
                self.set_member(i, MemberState::Waiting);
            }
            state if state.is_running() => {
                if let Some(held) = &mut m.held {
                    held.then_start = true;
                    m.restarts.reset();
                }
            }
            _ => {}
        }
    }

    /// Closes the pods of held members, each once its running dependents are down (when
    /// the stop cascaded).
    pub(super) fn close_held(&mut self) {
        for i in 0..self.members.len() {
            let m = &self.members[i];
            let Some(held) = m.held else { continue };
            if !m.state.is_running() || m.close_sent {
                continue;
            }
            if held.after_dependents
                && !self.dependents_down(i)
                && self.mutation != Some(DeploymentMutation::StopSkipsDependents)
            {
                continue;
            }
            self.members[i].close_sent = true;
            self.actions.push_back(DeploymentAction::ClosePod {
                member: MemberId(i),
                generation: self.members[i].generation,
                grace: None,
            });
            self.set_member(i, MemberState::Stopping);
        }
    }
}
