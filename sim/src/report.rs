//! Batches of seeds: coverage counts, failure reports, determinism checks.

use std::fmt::Write as _;

use podvisor::core::deployment::DeploymentMutation;
use podvisor::core::Mutation;

use crate::deployment::DEPLOYMENT_OUTCOMES;
use crate::driver::{DriverMutation, DRIVER_SITUATIONS};
use crate::swarm::{Fault, FAULTS};
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
    /// Per start result × end, `s × ENDS.len() + e`: seeds where some pod reached both.
    pub pairs: [u64; START_RESULTS.len() * ENDS.len()],
    /// Per fault, per outcome (the start results, then the ends): seeds where some pod
    /// that had the fault reached the outcome.
    pub fault_outcomes: [[u64; OUTCOMES]; FAULTS.len()],
}

/// Outcomes of a pod in the fault × outcome table: its start result, then its end.
pub const OUTCOMES: usize = START_RESULTS.len() + ENDS.len();

/// Adds 1 to `counts[i]` for every bit `i` set in `bits`.
fn count_bits(counts: &mut [u64], mut bits: u32) {
    while bits != 0 {
        counts[bits.trailing_zeros() as usize] += 1;
        bits &= bits - 1;
    }
}

impl Coverage {
    /// Adds one run.
    pub fn add(&mut self, report: &RunReport) {
        self.seeds += 1;
        count_bits(&mut self.start_results, report.start_results);
        count_bits(&mut self.ends, report.ends);
        count_bits(&mut self.faults, report.faults);
        count_bits(&mut self.health, report.health);
        count_bits(&mut self.situations, report.situations);
        count_bits(&mut self.pairs, report.pairs);
        for (counts, bits) in self.fault_outcomes.iter_mut().zip(report.fault_outcomes) {
            count_bits(counts, u32::from(bits));
        }
        if report.deployment {
            self.deployment_seeds += 1;
            count_bits(&mut self.deployment_outcomes, report.deployment_outcomes);
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
        // In deployment worlds, early-close is `down` while the deployment starts.
        rows.extend(
            FAULTS
                .iter()
                .zip(self.faults)
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

    /// The pairs `(name, seeds, out of, reach)`: each start result × end (out of all seeds),
    /// then each fault × outcome (out of the seeds where a pod had the fault).
    pub fn pair_rows(&self) -> Vec<(String, u64, u64, Reach)> {
        let mut rows = Vec::new();
        for (s, start) in START_RESULTS.iter().enumerate() {
            for (e, end) in ENDS.iter().enumerate() {
                rows.push((
                    format!("{start} × {end}"),
                    self.pairs[s * ENDS.len() + e],
                    self.seeds,
                    pair_reach(s, e),
                ));
            }
        }
        for (f, fault) in FAULTS.iter().enumerate() {
            for o in 0..OUTCOMES {
                rows.push((
                    format!("{} × {}", fault.name(), outcome_name(o)),
                    self.fault_outcomes[f][o],
                    self.faults[f],
                    fault_outcome_reach(*fault, o),
                ));
            }
        }
        rows
    }

    /// The pairs that can occur and are not rare by design, reached by fewer than
    /// `percent` % of their seeds; and the pairs that cannot occur but were reached.
    pub fn pairs_below(&self, percent: f64) -> Vec<String> {
        self.pair_rows()
            .into_iter()
            .filter(|(_, c, of, reach)| match reach {
                Reach::Expected => (*c as f64) < *of as f64 * percent / 100.0,
                Reach::Rare(_) => false,
                Reach::Impossible(_) => *c > 0,
            })
            .map(|(name, c, of, reach)| match reach {
                Reach::Impossible(why) => format!("{name} ({c} seeds, though {why})"),
                _ => format!("{name} ({c} of {of} seeds)"),
            })
            .collect()
    }

    /// The `n` thinnest rows, and (in pod worlds) the `n` thinnest pairs of each table
    /// that can occur and are not rare by design, with their share.
    pub fn thinnest(&self, n: usize) -> String {
        let pct = |c: u64, of: u64| 100.0 * c as f64 / of.max(1) as f64;
        let mut rows: Vec<(f64, String)> = self
            .rows()
            .into_iter()
            .map(|(k, name, c)| (pct(c, self.seeds), format!("{k} {name}")))
            .collect();
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        let list = |rows: &[(f64, String)]| {
            rows.iter()
                .take(n)
                .map(|(p, name)| format!("{name} {p:.1}%"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = format!("thinnest rows: {}\n", list(&rows));
        if self.deployment_seeds == 0 {
            let pairs = self.pair_rows();
            let (start_end, fault_outcome) = pairs.split_at(START_RESULTS.len() * ENDS.len());
            for (what, part) in [
                ("start × end", start_end),
                ("fault × outcome (of the fault's seeds)", fault_outcome),
            ] {
                let mut thin: Vec<(f64, String)> = part
                    .iter()
                    .filter(|(.., reach)| *reach == Reach::Expected)
                    .map(|(name, c, of, _)| (pct(*c, *of), name.clone()))
                    .collect();
                thin.sort_by(|a, b| a.0.total_cmp(&b.0));
                let _ = writeln!(out, "thinnest {what}: {}", list(&thin));
            }
        }
        out
    }

    /// The pair tables of pod worlds: start result × end (seeds, and % of all seeds), and
    /// fault × outcome (% of the seeds where a pod had the fault).
    pub fn pair_tables(&self) -> String {
        let mark = |c: u64, reach: Reach, shown: String| match reach {
            Reach::Impossible(_) if c == 0 => "-".to_string(),
            Reach::Impossible(_) => format!("‼{shown}"),
            _ if c == 0 => "!".to_string(),
            Reach::Rare(_) => format!("({shown})"),
            Reach::Expected => shown,
        };
        let mut out = String::from(
            "start × end: seeds where a pod had both, and their share of all seeds\n  \
             (- cannot occur, ! can occur but was not reached, (…) rare by design, ‼ reached though it cannot occur)\n",
        );
        let _ = write!(out, "  {:<16}", "");
        for end in ENDS {
            let _ = write!(out, "{end:>18}");
        }
        out.push('\n');
        for (s, start) in START_RESULTS.iter().enumerate() {
            let _ = write!(out, "  {start:<16}");
            for e in 0..ENDS.len() {
                let c = self.pairs[s * ENDS.len() + e];
                let pct = 100.0 * c as f64 / self.seeds.max(1) as f64;
                let cell = mark(c, pair_reach(s, e), format!("{c} {pct:5.1}%"));
                let _ = write!(out, "{cell:>18}");
            }
            out.push('\n');
        }
        out.push_str(
            "fault × outcome: share of the seeds where a pod had the fault in which it reached \
             the start result | the end (same marks)\n",
        );
        let _ = write!(out, "  {:<20}", "");
        for (o, label) in OUTCOME_LABELS.iter().enumerate() {
            if o == START_RESULTS.len() {
                out.push_str(" |");
            }
            let _ = write!(out, "{label:>10}");
        }
        out.push('\n');
        for (f, fault) in FAULTS.iter().enumerate() {
            let _ = write!(out, "  {:<20}", fault.name());
            for o in 0..OUTCOMES {
                if o == START_RESULTS.len() {
                    out.push_str(" |");
                }
                let c = self.fault_outcomes[f][o];
                let pct = 100.0 * c as f64 / self.faults[f].max(1) as f64;
                let cell = mark(c, fault_outcome_reach(*fault, o), format!("{pct:.1}"));
                let _ = write!(out, "{cell:>10}");
            }
            out.push('\n');
        }
        out
    }
}

/// Column labels of the fault × outcome table: the start results, then the ends.
const OUTCOME_LABELS: [&str; OUTCOMES] = [
    "ready",
    "failed",
    "early",
    "timeout",
    "cancel",
    "never",
    "exited",
    "closed",
    "killed",
    "unhealthy",
];

/// The name of outcome `o` of the fault × outcome table.
fn outcome_name(o: usize) -> &'static str {
    START_RESULTS
        .iter()
        .chain(ENDS.iter())
        .nth(o)
        .copied()
        .unwrap_or("?")
}

/// Whether a combination can occur in the simulated world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// It can occur; the swarm settings aim to reach it in at least 5 % of its seeds.
    Expected,
    /// It can occur, but only where rare draws meet (why): no target.
    Rare(&'static str),
    /// It cannot occur (why).
    Impossible(&'static str),
}

/// Whether start result `s` and end `e` (indices into `START_RESULTS`, `ENDS`) can occur
/// together. Every pod that ended has a start result: a close before one sets `cancelled`,
/// the ready deadline `timed-out`, a failed spawn `failed-to-start`.
pub fn pair_reach(s: usize, e: usize) -> Reach {
    const HEALTH: &str = "health is watched only once the pod is ready";
    match (START_RESULTS[s], ENDS[e]) {
        ("ready", "never-spawned") => Reach::Impossible("ready needs a spawned process"),
        ("failed-to-start", "closed" | "killed") => Reach::Impossible(
            "a failed start is a failed spawn or a runtime's exit before it reported started; \
             a close or the deadline before it would make it cancelled or timed-out",
        ),
        ("exited-early", "never-spawned" | "closed" | "killed") => {
            Reach::Impossible("exited-early is decided by the exit itself, an exited end")
        }
        ("timed-out", "never-spawned") => Reach::Impossible(
            "the spawn answers within 3 ms and ready deadlines are at least 350 ms; input that \
             arrived before a deadline is taken in first, also after a pause",
        ),
        ("timed-out", "exited") => {
            Reach::Impossible("the deadline closes the pod, so its exit counts as closed")
        }
        ("cancelled", "exited") => {
            Reach::Impossible("the close came first, so the exit counts as closed")
        }
        (_, "unhealthy") if s != 0 => Reach::Impossible(HEALTH),
        _ => Reach::Expected,
    }
}

/// Whether a pod with `fault` can reach outcome `o` (a start result, then an end, as in
/// the fault × outcome table).
pub fn fault_outcome_reach(fault: Fault, o: usize) -> Reach {
    match (fault, outcome_name(o)) {
        (Fault::SpawnFailure, "ready" | "exited-early" | "timed-out") => Reach::Impossible(
            "the spawn fails within 3 ms, before any deadline: failed-to-start, or cancelled \
             by a close before it",
        ),
        (Fault::SpawnFailure, "exited" | "closed" | "killed" | "unhealthy") => {
            Reach::Impossible("there never is a process")
        }
        (Fault::CrashInSetup, "ready" | "exited-early" | "unhealthy") => {
            Reach::Impossible("the runtime exits before it reports started")
        }
        (Fault::CrashInSetup, "timed-out") => Reach::Impossible(
            "the runtime crashes within 300 ms of the spawn, before any ready deadline (≥ 350 ms)",
        ),
        (Fault::CrashInSetup, "killed") => Reach::Rare(
            "a close must come in the 300 ms before the crash and its grace run out first",
        ),
        (Fault::ExitBeforeReady, "unhealthy") => Reach::Rare(
            "only a pod without readiness checks (ready at once) that turns unhealthy before \
             its exit",
        ),
        (Fault::ExitAfterReady, "exited-early") => Reach::Rare(
            "the exit comes after the process is ready: only when the supervisor has not seen \
             it yet (a probe not yet retried, a readiness line behind a flood)",
        ),
        (Fault::SlowOrNeverReady, "unhealthy") => {
            Reach::Rare("the pod must be ready before its deadline, then turn unhealthy")
        }
        (Fault::IgnoreTerm, "closed") => {
            Reach::Rare("only when the process exits by itself within the grace period")
        }
        (Fault::EarlyClose, "timed-out" | "exited-early" | "exited" | "unhealthy") => Reach::Rare(
            "the close comes in the first seconds: the deadline, an exit or ill health must \
             come before it",
        ),
        _ => Reach::Expected,
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
pub const MUTATIONS: [(&str, Mutation); 13] = [
    ("kill-one-tick-early", Mutation::KillOneTickEarly),
    ("kill-one-ms-early", Mutation::KillOneMsEarly),
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
    let defaults = crate::swarm::Swarm::default();
    let swarm = crate::swarm::Swarm {
        enabled,
        rate: bytes[12] % 101,
        health: data.get(15).map_or(defaults.health, |b| b % 101),
        watchdog: data.get(16).map_or(defaults.watchdog, |b| b % 101),
        tight: data.get(17).map_or(defaults.tight, |b| b % 101),
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
