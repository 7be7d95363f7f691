//! Batches of seeds: coverage counts, failure reports, determinism checks.

use std::fmt::Write as _;

use podvisor::core::deployment::DeploymentMutation;
use podvisor::core::Mutation;

use crate::deployment::DEPLOYMENT_OUTCOMES;
use crate::driver::{DriverMutation, DRIVER_SITUATIONS};
use crate::swarm::FAULTS;
use crate::world::{run, Failure, RunConfig, RunReport, ENDS, HEALTH_OUTCOMES, START_RESULTS};

/// How many seeds reached each outcome and each fault.
#[derive(Clone, Debug, Default)]
pub struct Coverage {
    /// Seeds run.
    pub seeds: u64,
    /// Per start result (see `START_RESULTS`).
    pub start_results: [u64; 5],
    /// Per end (see `ENDS`).
    pub ends: [u64; 5],
    /// Per health outcome (see `HEALTH_OUTCOMES`).
    pub health: [u64; 3],
    /// Per fault (see `FAULTS`).
    pub faults: [u64; FAULTS.len()],
    /// Per driver situation (see `DRIVER_SITUATIONS`).
    pub situations: [u64; DRIVER_SITUATIONS.len()],
    /// Deployment worlds run.
    pub deployment_seeds: u64,
    /// Per deployment outcome (see `DEPLOYMENT_OUTCOMES`).
    pub deployment_outcomes: [u64; DEPLOYMENT_OUTCOMES.len()],
}

impl Coverage {
    /// Adds one run.
    pub fn add(&mut self, report: &RunReport) {
        self.seeds += 1;
        for (i, count) in self.start_results.iter_mut().enumerate() {
            *count += u64::from(report.start_results >> i & 1);
        }
        for (i, count) in self.ends.iter_mut().enumerate() {
            *count += u64::from(report.ends >> i & 1);
        }
        for (i, count) in self.faults.iter_mut().enumerate() {
            *count += u64::from(report.faults >> i & 1);
        }
        for (i, count) in self.health.iter_mut().enumerate() {
            *count += u64::from(report.health >> i & 1);
        }
        for (i, count) in self.situations.iter_mut().enumerate() {
            *count += u64::from(report.situations >> i & 1);
        }
        if report.deployment {
            self.deployment_seeds += 1;
            for (i, count) in self.deployment_outcomes.iter_mut().enumerate() {
                *count += u64::from(report.deployment_outcomes >> i & 1);
            }
        }
    }

    /// Rows `(kind, name, seeds)`.
    pub fn rows(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut rows = Vec::new();
        rows.extend(
            START_RESULTS
                .iter()
                .zip(self.start_results)
                .map(|(n, c)| ("start", *n, c)),
        );
        rows.extend(ENDS.iter().zip(self.ends).map(|(n, c)| ("end", *n, c)));
        rows.extend(
            HEALTH_OUTCOMES
                .iter()
                .zip(self.health)
                .map(|(n, c)| ("health", *n, c)),
        );
        // Deployment worlds close their pods through the deployment, never early at random.
        let only_deployments = self.deployment_seeds == self.seeds && self.seeds > 0;
        rows.extend(
            FAULTS
                .iter()
                .zip(self.faults)
                .filter(|(f, _)| !(only_deployments && **f == crate::swarm::Fault::EarlyClose))
                .map(|(f, c)| ("fault", f.name(), c)),
        );
        rows.extend(
            DRIVER_SITUATIONS
                .iter()
                .zip(self.situations)
                .map(|(n, c)| ("driver", *n, c)),
        );
        if self.deployment_seeds > 0 {
            rows.extend(
                DEPLOYMENT_OUTCOMES
                    .iter()
                    .zip(self.deployment_outcomes)
                    .map(|(n, c)| ("deploy", *n, c)),
            );
        }
        rows
    }

    /// The rows reached by fewer than `percent` % of seeds.
    pub fn below(&self, percent: f64) -> Vec<String> {
        self.rows()
            .into_iter()
            .filter(|(_, _, c)| (*c as f64) < self.seeds as f64 * percent / 100.0)
            .map(|(k, n, c)| format!("{k} {n} ({c} of {} seeds)", self.seeds))
            .collect()
    }

    /// The table, one row per outcome and fault.
    pub fn table(&self) -> String {
        let mut out = format!("coverage over {} seeds:\n", self.seeds);
        for (kind, name, count) in self.rows() {
            let pct = 100.0 * count as f64 / self.seeds.max(1) as f64;
            let _ = writeln!(out, "  {kind:<6} {name:<20} {count:>8} seeds {pct:>6.1}%");
        }
        out
    }
}

/// A failed seed, ready to print.
#[derive(Debug)]
pub struct SeedFailure {
    /// The run's report (with the trace).
    pub report: RunReport,
    /// What went wrong.
    pub failure: Failure,
    /// The command that replays it.
    pub replay: String,
}

/// The replay command for a run.
pub fn replay_command(config: &RunConfig) -> String {
    let mut command = format!("podvisor-sim --seed {}", config.seed);
    if config.pods != 1 {
        let _ = write!(command, " --pods {}", config.pods);
    }
    if let Some(m) = config.mutation {
        let _ = write!(command, " --mutation {}", mutation_name(m));
    }
    if let Some(m) = config.driver_mutation {
        let _ = write!(command, " --mutation {}", driver_mutation_name(m));
    }
    match config.deployment {
        Some(Some(m)) => {
            let _ = write!(
                command,
                " --deployments --mutation {}",
                deployment_mutation_name(m)
            );
        }
        Some(None) => command.push_str(" --deployments"),
        None => {}
    }
    command
}

/// Runs `count` seeds from `start`; stops at the first failure and returns it with a
/// replayable trace.
pub fn batch(
    start: u64,
    count: u64,
    pods: usize,
    mutation: Option<Mutation>,
    driver_mutation: Option<DriverMutation>,
    deployment: Option<Option<DeploymentMutation>>,
    coverage: &mut Coverage,
) -> Result<(), Box<SeedFailure>> {
    for seed in start..start.saturating_add(count) {
        let config = RunConfig {
            seed,
            pods,
            mutation,
            swarm: None,
            trace: false,
            deployment,
            driver_mutation,
        };
        let report = run(&config);
        coverage.add(&report);
        if let Err(failure) = report.result {
            let traced = run(&RunConfig {
                trace: true,
                ..config.clone()
            });
            return Err(Box::new(SeedFailure {
                report: traced,
                failure,
                replay: replay_command(&config),
            }));
        }
    }
    Ok(())
}

/// The mutations, by name.
pub const MUTATIONS: [(&str, Mutation); 12] = [
    ("kill-one-tick-early", Mutation::KillOneTickEarly),
    (
        "exited-early-as-failed-to-start",
        Mutation::ExitedEarlyAsFailedToStart,
    ),
    ("deadline-from-spawn", Mutation::DeadlineFromSpawn),
    ("missed-reap", Mutation::MissedReap),
    ("ready-after-zero", Mutation::ReadyAfterZero),
    (
        "foreign-spawned-or-notify",
        Mutation::ForeignSpawnedOrNotify,
    ),
    (
        "health-threshold-off-by-one",
        Mutation::HealthThresholdOffByOne,
    ),
    ("start-period-ignored", Mutation::StartPeriodIgnored),
    (
        "watchdog-rearmed-by-malformed",
        Mutation::WatchdogRearmedByMalformed,
    ),
    ("never-retries-probe", Mutation::NeverRetriesProbe),
    ("later-close-moves-kill", Mutation::LaterCloseMovesKill),
    (
        "extension-counts-from-start",
        Mutation::ExtensionCountsFromStart,
    ),
];

/// The driver-model mutations, by name.
pub const DRIVER_MUTATIONS: [(&str, DriverMutation); 3] = [
    ("timers-before-input", DriverMutation::TimersBeforeInput),
    ("input-at-wake-time", DriverMutation::InputAtWakeTime),
    ("drain-until-empty", DriverMutation::DrainUntilEmpty),
];

/// The name of a driver-model mutation.
pub fn driver_mutation_name(m: DriverMutation) -> &'static str {
    DRIVER_MUTATIONS
        .iter()
        .find(|(_, x)| *x == m)
        .map_or("?", |(n, _)| n)
}

/// The first seed in `0..limit` that catches the driver-model `mutation`, if any.
pub fn first_driver_catch(mutation: DriverMutation, pods: usize, limit: u64) -> Option<u64> {
    (0..limit).find(|&seed| {
        run(&RunConfig {
            seed,
            pods,
            mutation: None,
            swarm: None,
            trace: false,
            deployment: None,
            driver_mutation: Some(mutation),
        })
        .result
        .is_err()
    })
}

/// The deployment mutations, by name.
pub const DEPLOYMENT_MUTATIONS: [(&str, DeploymentMutation); 7] = [
    ("ready-means-started", DeploymentMutation::ReadyMeansStarted),
    ("close-all-at-once", DeploymentMutation::CloseAllAtOnce),
    ("restart-after-close", DeploymentMutation::RestartAfterClose),
    ("ignore-budget", DeploymentMutation::IgnoreBudget),
    ("stopped-comes-back", DeploymentMutation::StoppedComesBack),
    (
        "stop-skips-dependents",
        DeploymentMutation::StopSkipsDependents,
    ),
    (
        "restart-spends-budget",
        DeploymentMutation::RestartSpendsBudget,
    ),
];

/// The name of a deployment mutation.
pub fn deployment_mutation_name(m: DeploymentMutation) -> &'static str {
    DEPLOYMENT_MUTATIONS
        .iter()
        .find(|(_, x)| *x == m)
        .map_or("?", |(n, _)| n)
}

/// The first seed in `0..limit` whose deployment world catches `mutation`, if any.
pub fn first_deployment_catch(mutation: DeploymentMutation, limit: u64) -> Option<u64> {
    (0..limit).find(|&seed| {
        run(&RunConfig {
            seed,
            pods: 1,
            mutation: None,
            swarm: None,
            trace: false,
            deployment: Some(Some(mutation)),
            driver_mutation: None,
        })
        .result
        .is_err()
    })
}

/// The name of a mutation.
pub fn mutation_name(m: Mutation) -> &'static str {
    MUTATIONS
        .iter()
        .find(|(_, x)| *x == m)
        .map_or("?", |(n, _)| n)
}

/// The first seed in `0..limit` that catches `mutation`, if any.
pub fn first_catch(mutation: Mutation, pods: usize, limit: u64) -> Option<u64> {
    (0..limit).find(|&seed| {
        run(&RunConfig {
            seed,
            pods,
            mutation: Some(mutation),
            swarm: None,
            trace: false,
            deployment: None,
            driver_mutation: None,
        })
        .result
        .is_err()
    })
}

/// Runs the seed and settings chosen by arbitrary bytes (the `sim_seed` fuzz target):
/// panics on any violation, so a fuzzer sees it.
pub fn fuzz_seed(data: &[u8]) {
    let mut bytes = [0u8; 13];
    for (slot, b) in bytes.iter_mut().zip(data) {
        *slot = *b;
    }
    let seed = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
    let enabled =
        u32::from_le_bytes(bytes[8..12].try_into().unwrap_or([0; 4])) & ((1 << FAULTS.len()) - 1);
    let swarm = crate::swarm::Swarm {
        enabled,
        rate: bytes[12] % 101,
    };
    let pods = 1 + usize::from(data.get(13).copied().unwrap_or(0) % 4);
    let report = run(&RunConfig {
        seed,
        pods,
        mutation: None,
        swarm: Some(swarm),
        trace: false,
        deployment: (data.get(14).copied().unwrap_or(0) & 1 == 1).then_some(None),
        driver_mutation: None,
    });
    if let Err(failure) = report.result {
        panic!(
            "seed {seed} {swarm:?}: {:?} violation: {}",
            failure.kind, failure.message
        );
    }
}
