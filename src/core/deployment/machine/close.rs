//! Closing a deployment: a close request (the first one, or a later one that shortens the
//! grace period and, after a plain close, caps the members' own), and the start of the
//! close, which ends the members that wait or back off; `progress` then closes the members
//! in reverse dependency order.

use std::time::Duration;

use super::super::vocabulary::{
    DeploymentAction, DeploymentStartResult, DeploymentState, MemberId, MemberState,
};
use super::{DeploymentMachine, DeploymentMutation};

impl DeploymentMachine {
    pub(super) fn on_close(&mut self, grace: Option<Duration>) {
        match self.state {
            DeploymentState::Ended => {}
            DeploymentState::Stopping => {
                let Some(grace) = grace else { return };
                if self.close_grace.is_some_and(|g| g <= grace) {
                    return;
                }
                // Shorten: the members already closing are asked again. After a plain
                // close, the grace caps the members' own rather than replacing them.
                if self.close_grace.is_none() {
                    self.close_grace_caps = true;
                }
                self.close_grace = Some(grace);
                for i in 0..self.members.len() {
                    let m = &self.members[i];
                    if m.close_sent && m.end.is_none() {
                        self.actions.push_back(DeploymentAction::ClosePod {
                            member: MemberId(i),
                            generation: m.generation,
                            grace: Some(grace),
                        });
                    }
                }
            }
            DeploymentState::Created | DeploymentState::Starting | DeploymentState::Ready => {
                self.begin_close(grace)
            }
        }
    }

    pub(super) fn begin_close(&mut self, grace: Option<Duration>) {
        if self.start_result.is_none() {
            self.start_result = Some(DeploymentStartResult::Cancelled);
        }
        self.close_grace = grace;
        for i in 0..self.members.len() {
            match self.members[i].state {
                MemberState::Waiting => self.set_member(i, MemberState::Ended),
                MemberState::BackingOff
                    if self.mutation != Some(DeploymentMutation::RestartAfterClose) =>
                {
                    self.members[i].restart_at = None;
                    self.set_member(i, MemberState::Ended);
                }
                _ => {}
            }
        }
        self.set_state(DeploymentState::Stopping);
    }
}
