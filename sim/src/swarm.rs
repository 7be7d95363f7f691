//! "Swarm" settings: which faults a run's world has, drawn per seed so that different
//! seeds explore different worlds, not only different timings of one world.

use std::fmt;

use crate::rng::Rng;

/// The faults the world can inject. Each run enables a random subset; each pod then draws
/// its own behaviour from the enabled ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Spawning fails (program not found, permission denied).
    SpawnFailure,
    /// A child-hosted runtime crashes during setup (before it reports started).
    CrashInSetup,
    /// The process exits before it is ready.
    ExitBeforeReady,
    /// The process exits by itself after it is ready.
    ExitAfterReady,
    /// Readiness comes late, or never.
    SlowOrNeverReady,
    /// The process ignores the stop signal.
    IgnoreTerm,
    /// The process takes a while to exit after the stop signal.
    SlowExit,
    /// The process leaves grandchildren behind in its group.
    Grandchildren,
    /// Malformed notify datagrams.
    MalformedNotify,
    /// Duplicated notify datagrams.
    DuplicateNotify,
    /// Notify datagrams (and output) after the exit.
    NotifyAfterExit,
    /// Probes refuse for a while, flap, or hang.
    ProbeFlaps,
    /// The child extends its ready deadline.
    ExtendTimeout,
    /// Close requested early (also before the spawn) and twice.
    EarlyClose,
    /// Events sharing one instant are delivered in a random order.
    SameInstant,
    /// The process writes output in floods (bursts of thousands of lines, sometimes with
    /// its readiness line inside), often just before a deadline.
    FloodOutput,
    /// The supervisor is paused (SIGSTOP, a starved CPU) while input arrives; on resume
    /// its clock has jumped, often past a deadline.
    SupervisorPaused,
    /// A spawn answer and a ready datagram of another generation (a restarted pod's
    /// predecessor, a confused driver): they must be ignored.
    StaleGeneration,
    /// Health checks flap: a share of attempts fail, in runs, before they recover.
    HealthFlaps,
    /// Health attempts hang for a while (never answered, so they time out), or answer
    /// only after their timeout; then they recover.
    HealthHangs,
    /// After a while of health, the checks fail or hang for good and the watchdog pings
    /// stop: the pod turns unhealthy.
    HealthDegrades,
    /// Watchdog pings come late (at the deadline instant or past it), or stop.
    WatchdogLapses,
    /// Watchdog datagrams besides the pings: `WATCHDOG_USEC` changes (also to 0),
    /// `EXTEND_TIMEOUT_USEC`, `WATCHDOG=trigger`, a malformed `WATCHDOG=2`, `STOPPING=1`.
    WatchdogNotify,
}

/// Every fault, in a fixed order.
pub const FAULTS: [Fault; 23] = [
    Fault::SpawnFailure,
    Fault::CrashInSetup,
    Fault::ExitBeforeReady,
    Fault::ExitAfterReady,
    Fault::SlowOrNeverReady,
    Fault::IgnoreTerm,
    Fault::SlowExit,
    Fault::Grandchildren,
    Fault::MalformedNotify,
    Fault::DuplicateNotify,
    Fault::NotifyAfterExit,
    Fault::ProbeFlaps,
    Fault::ExtendTimeout,
    Fault::EarlyClose,
    Fault::SameInstant,
    Fault::FloodOutput,
    Fault::SupervisorPaused,
    Fault::StaleGeneration,
    Fault::HealthFlaps,
    Fault::HealthHangs,
    Fault::HealthDegrades,
    Fault::WatchdogLapses,
    Fault::WatchdogNotify,
];

impl Fault {
    /// A short kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            Fault::SpawnFailure => "spawn-failure",
            Fault::CrashInSetup => "crash-in-setup",
            Fault::ExitBeforeReady => "exit-before-ready",
            Fault::ExitAfterReady => "exit-after-ready",
            Fault::SlowOrNeverReady => "slow-or-never-ready",
            Fault::IgnoreTerm => "ignore-sigterm",
            Fault::SlowExit => "slow-exit",
            Fault::Grandchildren => "grandchildren",
            Fault::MalformedNotify => "malformed-notify",
            Fault::DuplicateNotify => "duplicate-notify",
            Fault::NotifyAfterExit => "notify-after-exit",
            Fault::ProbeFlaps => "probe-flaps",
            Fault::ExtendTimeout => "extend-timeout",
            Fault::EarlyClose => "early-close",
            Fault::SameInstant => "same-instant",
            Fault::FloodOutput => "flood-output",
            Fault::SupervisorPaused => "supervisor-paused",
            Fault::StaleGeneration => "stale-generation",
            Fault::HealthFlaps => "health-flaps",
            Fault::HealthHangs => "health-hangs",
            Fault::HealthDegrades => "health-degrades",
            Fault::WatchdogLapses => "watchdog-lapses",
            Fault::WatchdogNotify => "watchdog-notify",
        }
    }
}

/// The faults one run's world has, and how often a pod gets each.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Swarm {
    /// Bit `i` set: `FAULTS[i]` is enabled.
    pub enabled: u32,
    /// Percent chance that a pod gets an enabled fault.
    pub rate: u8,
}

impl Swarm {
    /// Draws the settings of a run: each fault enabled with probability 1/2, and a rate.
    pub fn draw(rng: &mut Rng) -> Swarm {
        Swarm {
            enabled: (rng.next_u64() as u32) & ((1 << FAULTS.len()) - 1),
            rate: rng.range(20, 80) as u8,
        }
    }

    /// Whether `fault` is enabled.
    pub fn has(self, fault: Fault) -> bool {
        let i = FAULTS.iter().position(|f| *f == fault).unwrap_or(0);
        self.enabled & (1 << i) != 0
    }

    /// Whether a pod gets `fault` (enabled, and drawn at the rate).
    pub fn roll(self, fault: Fault, rng: &mut Rng) -> bool {
        // Draw even when disabled, so enabling one fault does not shift the others' draws.
        let hit = rng.chance(self.rate);
        self.has(fault) && hit
    }
}

impl fmt::Debug for Swarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = FAULTS
            .iter()
            .filter(|x| self.has(**x))
            .map(|x| x.name())
            .collect();
        write!(f, "rate {}% faults [{}]", self.rate, names.join(", "))
    }
}
