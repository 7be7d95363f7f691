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

/// The faults one run's world has, how often a pod gets each, and how many of its pods
/// are watched for health.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Swarm {
    /// Bit `i` set: `FAULTS[i]` is enabled.
    pub enabled: u32,
    /// Percent chance that a pod gets an enabled fault.
    pub rate: u8,
    /// Percent chance that a pod has health checks.
    pub health: u8,
    /// Percent chance that a pod has a watchdog.
    pub watchdog: u8,
    /// Percent chance that a pod's ready deadline is tight (350 to 600 ms: about when
    /// a process without faults becomes ready).
    pub tight: u8,
}

impl Default for Swarm {
    /// No fault; 20 % of the pods with health checks, 15 % with a watchdog, no tight
    /// deadline (what a world had before its shares were drawn).
    fn default() -> Swarm {
        Swarm {
            enabled: 0,
            rate: 0,
            health: 20,
            watchdog: 15,
            tight: 0,
        }
    }
}

/// What a kind of world is drawn from: the percent chance that it enables each fault (in
/// `FAULTS` order), and the ranges of its rate and of its shares of pods with health checks,
/// a watchdog and a tight ready deadline.
struct Kind {
    odds: [u8; FAULTS.len()],
    rate: (u64, u64),
    health: (u64, u64),
    watchdog: (u64, u64),
    tight: (u64, u64),
}

/// Odds for each fault, with exceptions.
const fn odds(base: u8, exceptions: &[(Fault, u8)]) -> [u8; FAULTS.len()] {
    let mut odds = [base; FAULTS.len()];
    let mut i = 0;
    while i < exceptions.len() {
        odds[exceptions[i].0 as usize] = exceptions[i].1;
        i += 1;
    }
    odds
}

/// Pod worlds of the first kind: few pods watched for health (they are the costly ones);
/// the faults that make combinations enabled more often — a slow readiness or a tight
/// deadline with a stop ignored or slow (a time-out ended by SIGKILL), an early close with
/// them (a cancelled start ended by SIGKILL), a crash in setup, floods (a deadline judged
/// amid one).
const PLAIN: Kind = Kind {
    odds: odds(
        50,
        &[
            (Fault::CrashInSetup, 95),
            (Fault::SlowOrNeverReady, 85),
            (Fault::IgnoreTerm, 95),
            (Fault::SlowExit, 75),
            (Fault::EarlyClose, 60),
            (Fault::FloodOutput, 80),
        ],
    ),
    rate: (20, 80),
    health: (5, 15),
    watchdog: (0, 10),
    tight: (20, 90),
};

/// Pod worlds of the second kind: about half the pods watched for health, the faults of
/// health and watchdog always enabled, at a high rate, so that most of those pods turn
/// unhealthy soon (cheaply); the faults that decide how a pod ends (a stop ignored or
/// slow) and those of the driver at even odds or so, and the others, which mostly end a
/// pod before it is ready, rarely.
const WATCHED: Kind = Kind {
    odds: odds(
        15,
        &[
            (Fault::IgnoreTerm, 60),
            (Fault::SlowExit, 50),
            (Fault::SameInstant, 50),
            (Fault::FloodOutput, 50),
            (Fault::SupervisorPaused, 50),
            (Fault::HealthFlaps, 100),
            (Fault::HealthHangs, 100),
            (Fault::HealthDegrades, 100),
            (Fault::WatchdogLapses, 100),
            (Fault::WatchdogNotify, 100),
        ],
    ),
    rate: (70, 100),
    health: (40, 60),
    watchdog: (50, 70),
    tight: (0, 0),
};

/// Percent of pod worlds of the second kind.
const WATCHED_SHARE: u8 = 25;

/// Deployment worlds: at a lower rate, since each fault has many pods to hit and one that
/// gives up fails the whole deployment; floods more often.
const DEPLOYMENTS: Kind = Kind {
    odds: odds(50, &[(Fault::FloodOutput, 80)]),
    rate: (10, 60),
    health: (20, 20),
    watchdog: (20, 20),
    tight: (0, 0),
};

// The odds tables and the fault bits (`1 << fault as u32`) index faults by their
// declaration order, which `FAULTS` follows.
const _: () = {
    let mut i = 0;
    while i < FAULTS.len() {
        assert!(FAULTS[i] as usize == i);
        i += 1;
    }
};

impl Swarm {
    /// Draws the settings of a pod world: its kind, then each fault enabled with the kind's
    /// odds, a rate, and the shares of pods watched for health or with a tight deadline.
    pub fn draw(rng: &mut Rng) -> Swarm {
        let kind = if rng.chance(WATCHED_SHARE) {
            &WATCHED
        } else {
            &PLAIN
        };
        Swarm::draw_kind(rng, kind)
    }

    /// Draws the settings of a deployment world: even odds for each fault (floods more
    /// often) at a lower rate, since each fault has many pods to hit and one that gives up
    /// fails the whole deployment.
    pub fn draw_deployment(rng: &mut Rng) -> Swarm {
        Swarm::draw_kind(rng, &DEPLOYMENTS)
    }

    fn draw_kind(rng: &mut Rng, kind: &Kind) -> Swarm {
        let mut enabled = 0;
        for (i, odds) in kind.odds.iter().enumerate() {
            if rng.chance(*odds) {
                enabled |= 1 << i;
            }
        }
        Swarm {
            enabled,
            rate: rng.range(kind.rate.0, kind.rate.1) as u8,
            health: rng.range(kind.health.0, kind.health.1) as u8,
            watchdog: rng.range(kind.watchdog.0, kind.watchdog.1) as u8,
            tight: rng.range(kind.tight.0, kind.tight.1) as u8,
        }
    }

    /// Whether `fault` is enabled.
    pub fn has(self, fault: Fault) -> bool {
        self.enabled & (1 << fault as u32) != 0
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
        write!(
            f,
            "rate {}% health {}% watchdog {}% tight {}% faults [{}]",
            self.rate,
            self.health,
            self.watchdog,
            self.tight,
            names.join(", ")
        )
    }
}
