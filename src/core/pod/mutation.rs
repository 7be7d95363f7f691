//! The machine's mutation switch: deliberate bugs the simulator and the property tests
//! must catch.

/// A deliberately wrong variant of the machine, for proving that the simulator and the
/// property tests catch bugs. Never use outside tests.
#[doc(hidden)]
#[cfg_attr(not(feature = "oracles"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// SIGKILL one nanosecond before the grace period ends.
    KillOneTickEarly,
    /// SIGKILL one millisecond before the grace period ends (a bug a real run can show).
    KillOneMsEarly,
    /// An exit after the started signal is reported as failed-to-start.
    ExitedEarlyAsFailedToStart,
    /// The ready deadline counts from the spawn answer instead of the start request.
    DeadlineFromSpawn,
    /// An exit while stopping is not recorded (the reap is missed).
    MissedReap,
    /// Ready is reported as reached at once (`after` is zero).
    ReadyAfterZero,
    /// `Spawned` and `Notify` of another generation are taken as this one's.
    ForeignSpawnedOrNotify,
    /// A health check makes the pod unhealthy one failure early.
    HealthThresholdOffByOne,
    /// Health failures count during the start period.
    StartPeriodIgnored,
    /// A notify datagram with a malformed line re-arms the watchdog.
    WatchdogRearmedByMalformed,
    /// A failed or timed-out probe attempt schedules no next attempt.
    NeverRetriesProbe,
    /// A close while stopping sets SIGKILL at its own instant + grace, even when that is
    /// later than the instant already set.
    LaterCloseMovesKill,
    /// `EXTEND_TIMEOUT_USEC=N` counts from the start instead of the datagram's receipt.
    ExtensionCountsFromStart,
}
