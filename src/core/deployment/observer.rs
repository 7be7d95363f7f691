//! [`PodObserver`]: turns what a driver sees of one pod into the deployment machine's
//! events, each reported once.

use crate::core::event::Generation;
use crate::core::outcome::{End, Health, StartResult};
use crate::core::State;

use super::vocabulary::{DeploymentEvent, MemberId};

/// Turns what a driver sees of one pod (its state, start result and end, looked at any
/// number of times) into the [`DeploymentEvent`]s for it, each reported once.
///
/// # Examples
///
/// ```
/// use podvisor::core::deployment::{DeploymentEvent, MemberId, PodObserver};
/// use podvisor::core::{End, ExitStatus, Generation, StartResult, State};
/// use std::time::Duration;
///
/// let (member, generation) = (MemberId(0), Generation(1));
/// let mut observer = PodObserver::new(member, generation);
/// let ready = StartResult::Ready { after: Duration::ZERO };
/// let events = observer.observe(State::Ready, Some(&ready), None);
/// assert_eq!(events.len(), 2); // started, then the start result
/// assert!(observer.observe(State::Ready, Some(&ready), None).is_empty());
/// let end = End::Exited(ExitStatus::Code(0));
/// assert_eq!(
///     observer.observe(State::Ended, Some(&ready), Some(end)),
///     [DeploymentEvent::PodEnded { member, generation, end }]
/// );
/// ```
#[derive(Clone, Debug)]
pub struct PodObserver {
    member: MemberId,
    generation: Generation,
    started: bool,
    result: bool,
    healthy: bool,
    unhealthy: bool,
    ended: bool,
}

impl PodObserver {
    /// An observer of the pod started for `member` with `generation`.
    pub fn new(member: MemberId, generation: Generation) -> PodObserver {
        PodObserver {
            member,
            generation,
            started: false,
            result: false,
            healthy: false,
            unhealthy: false,
            ended: false,
        }
    }

    /// The events not reported yet, in order: started, start result, end.
    pub fn observe(
        &mut self,
        state: State,
        start_result: Option<&StartResult>,
        end: Option<End>,
    ) -> Vec<DeploymentEvent> {
        let (member, generation) = (self.member, self.generation);
        let mut events = Vec::new();
        let started = matches!(state, State::Started | State::Ready)
            || matches!(
                start_result,
                Some(StartResult::Ready { .. } | StartResult::ExitedEarly { .. })
            );
        if started && !self.started {
            self.started = true;
            events.push(DeploymentEvent::PodStarted { member, generation });
        }
        if let Some(result) = start_result.filter(|_| !self.result) {
            self.result = true;
            events.push(DeploymentEvent::PodStartResult {
                member,
                generation,
                result: result.clone(),
            });
        }
        if let Some(end) = end.filter(|_| !self.ended) {
            self.ended = true;
            events.push(DeploymentEvent::PodEnded {
                member,
                generation,
                end,
            });
        }
        events
    }

    /// [`DeploymentEvent::PodHealthy`] the first time `health` is healthy, and
    /// [`DeploymentEvent::PodUnhealthy`] the first time it is unhealthy, before the pod
    /// ended.
    pub fn observe_health(&mut self, health: Option<Health>) -> Option<DeploymentEvent> {
        let (member, generation) = (self.member, self.generation);
        match health {
            _ if self.ended => None,
            Some(Health::Healthy) if !self.healthy => {
                self.healthy = true;
                Some(DeploymentEvent::PodHealthy { member, generation })
            }
            Some(Health::Unhealthy(_)) if !self.unhealthy => {
                self.unhealthy = true;
                Some(DeploymentEvent::PodUnhealthy { member, generation })
            }
            _ => None,
        }
    }

    /// [`observe`](PodObserver::observe) and [`observe_health`](PodObserver::observe_health)
    /// in order: started, start result, health, end.
    pub fn observe_all(
        &mut self,
        state: State,
        start_result: Option<&StartResult>,
        end: Option<End>,
        health: Option<Health>,
    ) -> Vec<DeploymentEvent> {
        let health = self.observe_health(health);
        let mut events = self.observe(state, start_result, end);
        if let Some(health) = health {
            let at = events
                .iter()
                .position(|e| matches!(e, DeploymentEvent::PodEnded { .. }))
                .unwrap_or(events.len());
            events.insert(at, health);
        }
        events
    }

    /// Whether the end was reported.
    pub fn ended(&self) -> bool {
        self.ended
    }
}
