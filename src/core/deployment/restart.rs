//! Restart decisions: whether an ended pod comes back, after how long, and when to give
//! up. Pure functions of the pod's history and the deployment's seed.

use std::time::Duration;

use super::backoff::Backoff;
use super::spec::RestartPolicy;

/// The random input of the `restart`-th restart (counted over the pod's whole life) of
/// member `member`, derived from the deployment's `seed` (SplitMix64).
///
/// A pure function, so a restart's jitter does not depend on what other pods did before
/// it: the same seed gives every pod the same delays in every run.
pub fn jitter_draw(seed: u64, member: usize, restart: u32) -> u64 {
    let x = mix(seed ^ 0x6a09_e667_f3bc_c909);
    let x = mix(x ^ member as u64);
    mix(x ^ u64::from(restart))
}

/// SplitMix64's step and finaliser.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether `policy` restarts a pod whose generation ended, failed or not.
pub(super) fn wants_restart(policy: RestartPolicy, failed: bool) -> bool {
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::OnFailure => failed,
        RestartPolicy::Always => true,
    }
}

/// One member's restart history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Restarts {
    /// Restarts scheduled since the last reset.
    pub since_reset: u32,
    /// Restarts scheduled over the member's life (the jitter draw's counter).
    pub total: u32,
    /// The delay of the last restart scheduled since the last reset.
    pub last_delay: Option<Duration>,
}

/// What to do about a generation that is over and that the policy would restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Start it again this long after its process ended.
    Restart(Duration),
    /// Do not: the budget is spent (`crash_looping`), or the policy says no.
    GiveUp {
        /// The budget was spent.
        crash_looping: bool,
    },
}

impl Restarts {
    /// Decides about one more restart, and records it if there is one. `ready_for` is how
    /// long the generation had been ready when it was over (`None` if it never was).
    /// Forgets the restarts since the last reset (a start on request); the jitter draw's
    /// counter goes on.
    pub fn reset(&mut self) {
        self.since_reset = 0;
        self.last_delay = None;
    }

    pub fn next(
        &mut self,
        backoff: &Backoff,
        seed: u64,
        member: usize,
        ready_for: Option<Duration>,
    ) -> Verdict {
        if ready_for.is_some_and(|d| d >= backoff.reset_after) {
            self.since_reset = 0;
            self.last_delay = None;
        }
        if backoff.budget.is_some_and(|b| self.since_reset >= b) {
            return Verdict::GiveUp {
                crash_looping: true,
            };
        }
        let delay = backoff.delay(self.since_reset, jitter_draw(seed, member, self.total));
        self.since_reset = self.since_reset.saturating_add(1);
        self.total = self.total.saturating_add(1);
        self.last_delay = Some(delay);
        Verdict::Restart(delay)
    }
}
