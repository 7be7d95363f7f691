//! [`Census`]: how many members are in each state that an event's follow-up asks about,
//! kept with every change, so that handling an event does not scan every member (which
//! made a deployment's start quadratic in its number of pods).

use super::super::member::Member;
use super::super::spec::DeploymentSpec;
use super::super::vocabulary::MemberState;

/// Counts of members, by what the machine asks after each event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Census {
    /// Waiting to start: only then is there anything to start.
    pub(super) waiting: usize,
    /// Waiting for a restart delay.
    pub(super) backing_off: usize,
    /// Up, as the deployment's readiness counts it: ready (a long-running member),
    /// succeeded, or stopped on request.
    pub(super) up: usize,
    pub(super) succeeded: usize,
    /// With a process (starting, started, ready or stopping), in all and per template.
    pub(super) running: usize,
    pub(super) running_of: Vec<usize>,
    /// Held by a stop or restart on request.
    pub(super) held: usize,
}

impl Census {
    /// Counted from scratch.
    pub(super) fn of(members: &[Member], spec: &DeploymentSpec) -> Census {
        let mut census = Census {
            running_of: vec![0; spec.templates.len()],
            ..Census::default()
        };
        for m in members {
            census.add(m.state, m.template, spec.templates[m.template].one_shot, 1);
            census.held += usize::from(m.held.is_some());
        }
        census
    }

    /// A member of `template` enters `state` (`sign` 1) or leaves it (`sign` -1 as
    /// `usize::MAX`, wrapping).
    pub(super) fn add(&mut self, state: MemberState, template: usize, one_shot: bool, sign: usize) {
        let count = |n: &mut usize| *n = n.wrapping_add(sign);
        match state {
            MemberState::Waiting => count(&mut self.waiting),
            MemberState::BackingOff => count(&mut self.backing_off),
            MemberState::Succeeded => count(&mut self.succeeded),
            _ => {}
        }
        let up = match state {
            MemberState::Succeeded | MemberState::Stopped => true,
            MemberState::Ready => !one_shot,
            _ => false,
        };
        if up {
            count(&mut self.up);
        }
        if state.is_running() {
            count(&mut self.running);
            if let Some(n) = self.running_of.get_mut(template) {
                count(n);
            }
        }
    }
}
