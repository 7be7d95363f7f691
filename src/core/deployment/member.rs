//! [`Member`]: one replica of a template as the machine keeps it, with the history of its
//! current generation.

use std::time::Duration;

use crate::core::event::Generation;
use crate::core::outcome::{End, StartResult};
use crate::core::time::Time;

use super::restart::{Restarts, Verdict};

use super::vocabulary::MemberState;

/// One member: a replica of a template, with the history of its current generation.
#[derive(Clone, Debug)]
pub struct Member {
    pub(super) name: String,
    pub(super) template: usize,
    pub(super) replica: u32,
    pub(super) state: MemberState,
    pub(super) generation: Generation,
    pub(super) started: bool,
    pub(super) healthy: bool,
    pub(super) start_result: Option<StartResult>,
    pub(super) end: Option<End>,
    /// How the last pod that ended ended, kept across its restarts.
    pub(super) last_end: Option<End>,
    /// Restarts its restart policy made.
    pub(super) policy_restarts: u64,
    pub(super) ready_at: Option<Time>,
    pub(super) close_sent: bool,
    pub(super) verdict: Option<Verdict>,
    pub(super) restarts: Restarts,
    pub(super) restart_at: Option<Time>,
    /// Stopped on request: kept down, its pod closed.
    pub(super) held: Option<Held>,
}

/// A member stopped on request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Held {
    /// Its pod closes only once its running dependents are down.
    pub(super) after_dependents: bool,
    /// It starts again once its pod is down (a restart, or a start while it closed).
    pub(super) then_start: bool,
}

impl Member {
    /// Its name, `template/replica`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The index of its template in [`DeploymentSpec::templates`](crate::core::deployment::DeploymentSpec::templates).
    pub fn template(&self) -> usize {
        self.template
    }

    /// Its replica number.
    pub fn replica(&self) -> u32 {
        self.replica
    }

    /// Its state.
    pub fn state(&self) -> MemberState {
        self.state
    }

    /// The generation of its current or last pod; `Generation(0)` before the first start.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Whether its current pod reported started.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Whether it is kept down on request (stopped, or being restarted).
    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// Whether its current pod has passed its health checks.
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// The start result of its current or last pod.
    pub fn start_result(&self) -> Option<&StartResult> {
        self.start_result.as_ref()
    }

    /// How its current or last pod ended.
    pub fn end(&self) -> Option<End> {
        self.end
    }

    /// How its last pod that ended ended: unlike [`Member::end`], kept while a new pod
    /// runs (`ps`'s last exit).
    pub fn last_end(&self) -> Option<End> {
        self.last_end
    }

    /// How many times its restart policy restarted it, as Docker's `RestartCount`: the
    /// restarts that spend the budget. Starts and restarts on request do not count.
    pub fn restarts(&self) -> u64 {
        self.policy_restarts
    }

    /// Restarts scheduled since it last ran stably (the count the budget limits).
    pub fn restarts_since_reset(&self) -> u32 {
        self.restarts.since_reset
    }

    /// The delay of the last restart scheduled since it last ran stably.
    pub fn last_delay(&self) -> Option<Duration> {
        self.restarts.last_delay
    }

    /// When it restarts, while `BackingOff`.
    pub fn restart_at(&self) -> Option<Time> {
        self.restart_at
    }
}
