//! The simulator's own tests: a block of seeds passes, runs repeat bit for bit, every
//! outcome and fault is reached, every deliberately wrong core is caught, and the CLI's
//! exit codes.

use podvisor::core::Mutation;
use podvisor_sim::driver::DriverMutation;
use podvisor_sim::report::{
    batch, first_catch, first_deployment_catch, first_driver_catch, fuzz_seed, Coverage,
    DEPLOYMENT_MUTATIONS, DRIVER_MUTATIONS, MUTATIONS,
};
use podvisor_sim::swarm::{Fault, Swarm, FAULTS};
use podvisor_sim::{run, RunConfig};
use proptest::prelude::*;

fn config(seed: u64, pods: usize) -> RunConfig {
    RunConfig {
        seed,
        pods,
        mutation: None,
        swarm: None,
        trace: false,
        deployment: None,
        driver_mutation: None,
    }
}

#[test]
fn a_block_of_single_pod_seeds_passes_with_full_coverage() {
    let mut coverage = Coverage::default();
    if let Err(failed) = batch(0, 5_000, 1, None, None, None, &mut coverage) {
        panic!(
            "seed {} failed: {}\nreplay: {}",
            failed.report.seed, failed.failure.message, failed.replay
        );
    }
    // The swarm settings aim at 5% for every row and pair that can occur (1,000,000 seeds);
    // 4% leaves room for a block this small.
    let thin = coverage.below(4.0);
    assert!(
        thin.is_empty(),
        "reached by fewer than 4% of seeds: {thin:?}\n{}",
        coverage.table()
    );
    // Every start result × end and fault × outcome that can occur is reached, and none
    // that cannot.
    let pairs = coverage.pairs_below(4.0);
    assert!(
        pairs.is_empty(),
        "pairs reached by fewer than 4% of their seeds, or though they cannot occur: {pairs:?}\n{}",
        coverage.pair_tables()
    );
    for fault in [Fault::FloodOutput, Fault::SupervisorPaused] {
        let i = FAULTS.iter().position(|f| *f == fault).unwrap();
        assert!(
            coverage.faults[i] * 20 >= coverage.seeds,
            "{} reached by fewer than 5% of seeds\n{}",
            fault.name(),
            coverage.table()
        );
    }
}

#[test]
fn a_block_of_eight_pod_seeds_passes() {
    let mut coverage = Coverage::default();
    if let Err(failed) = batch(1_000_000, 500, 8, None, None, None, &mut coverage) {
        panic!(
            "seed {} failed: {}\nreplay: {}",
            failed.report.seed, failed.failure.message, failed.replay
        );
    }
    // With eight pods a world reaches most pairs; none that cannot occur.
    let impossible = coverage.pairs_below(0.0);
    assert!(impossible.is_empty(), "{impossible:?}");
}

#[test]
fn one_seed_is_one_run_bit_for_bit() {
    for seed in 0..300 {
        let (a, b) = (run(&config(seed, 2)), run(&config(seed, 2)));
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(a.steps, b.steps);
    }
    let distinct: std::collections::BTreeSet<u64> =
        (0..100).map(|s| run(&config(s, 1)).trace_hash).collect();
    assert!(distinct.len() > 90, "seeds should explore different runs");
    // The readable trace is the same run as the hashed one.
    let traced = run(&RunConfig {
        trace: true,
        ..config(42, 1)
    });
    assert_eq!(traced.trace_hash, run(&config(42, 1)).trace_hash);
    assert!(!traced.trace.is_empty());
}

#[test]
fn every_wrong_core_is_caught_within_ten_thousand_seeds() {
    for (name, mutation) in MUTATIONS {
        let seed = first_catch(mutation, 1, 10_000);
        assert!(seed.is_some(), "mutation {name} survived 10,000 seeds");
    }
}

/// The wrong cores whose rule the checker states on its own are caught by that rule: the
/// first catching seed's violation names it.
#[test]
fn wrong_generations_probe_schedules_and_deadlines_are_caught_by_their_own_rule() {
    let rules: [(Mutation, &[&str]); 4] = [
        (
            Mutation::ForeignSpawnedOrNotify,
            &["invariant foreign-generation violated"],
        ),
        (
            Mutation::NeverRetriesProbe,
            &["next probe attempt falls due", "next probe attempt was due"],
        ),
        (
            Mutation::LaterCloseMovesKill,
            &["invariant kill-deadline violated"],
        ),
        (
            Mutation::ExtensionCountsFromStart,
            &["invariant ready-deadline violated"],
        ),
    ];
    for (mutation, texts) in rules {
        let seed = first_catch(mutation, 1, 10_000)
            .unwrap_or_else(|| panic!("{mutation:?} survived 10,000 seeds"));
        let report = run(&RunConfig {
            mutation: Some(mutation),
            ..config(seed, 1)
        });
        let failure = report.result.expect_err("the catching seed fails again");
        assert!(
            texts.iter().any(|t| failure.message.contains(t)),
            "{mutation:?} caught at seed {seed} by another rule: {}",
            failure.message
        );
    }
}

#[test]
fn every_wrong_driver_model_is_caught_within_ten_thousand_seeds() {
    for (name, mutation) in DRIVER_MUTATIONS {
        let seed = first_driver_catch(mutation, 1, 10_000);
        assert!(
            seed.is_some(),
            "driver mutation {name} survived 10,000 seeds"
        );
    }
}

/// Worlds with one fault only, at full rate.
fn only(fault: Fault, seed: u64, driver_mutation: Option<DriverMutation>) -> RunConfig {
    let bit = FAULTS.iter().position(|f| *f == fault).unwrap();
    RunConfig {
        swarm: Some(Swarm {
            enabled: 1 << bit,
            rate: 100,
            ..Swarm::default()
        }),
        driver_mutation,
        ..config(seed, 1)
    }
}

#[test]
fn judging_deadlines_before_buffered_input_is_caught_and_changes_the_outcome() {
    // Seeds where the supervisor is paused across the ready deadline while the readiness
    // signal or the exit arrives: judging the deadline first is caught, and the right
    // driver model gives the start the history calls for, not a time-out.
    let (mut ready, mut exited_early) = (0, 0);
    for seed in 0..2_000 {
        let wrong = run(&only(
            Fault::SupervisorPaused,
            seed,
            Some(DriverMutation::TimersBeforeInput),
        ));
        let Err(failure) = wrong.result else { continue };
        assert!(
            failure.message.contains("was still buffered"),
            "seed {seed}: {}",
            failure.message
        );
        let right = run(&only(Fault::SupervisorPaused, seed, None));
        assert!(right.result.is_ok(), "seed {seed}: {:?}", right.result);
        // Start-result bits: ready 1, exited-early 4, timed-out 8.
        if failure.message.contains("(ReadyLine)") || failure.message.contains("(Ready)") {
            ready += u32::from(right.start_results == 1);
        }
        if failure.message.contains("(Exit(") {
            exited_early += u32::from(right.start_results == 4);
        }
    }
    assert!(ready >= 5, "only {ready} paused seeds ended Ready");
    assert!(
        exited_early >= 5,
        "only {exited_early} paused seeds ended ExitedEarly"
    );
}

#[test]
fn dating_input_at_the_wake_up_is_caught() {
    let seed = (0..2_000).find(|&seed| {
        run(&only(
            Fault::SupervisorPaused,
            seed,
            Some(DriverMutation::InputAtWakeTime),
        ))
        .result
        .is_err()
    });
    assert!(
        seed.is_some(),
        "input dated at the wake-up survived 2,000 paused seeds"
    );
}

#[test]
fn reading_a_flood_without_a_bound_makes_deadlines_late() {
    let mut caught = 0;
    for seed in 0..2_000 {
        assert!(
            run(&only(Fault::FloodOutput, seed, None)).result.is_ok(),
            "seed {seed} with floods failed with the bounded driver"
        );
        let wrong = run(&only(
            Fault::FloodOutput,
            seed,
            Some(DriverMutation::DrainUntilEmpty),
        ));
        if let Err(failure) = wrong.result {
            assert!(
                failure.message.contains("late (tolerance"),
                "{}",
                failure.message
            );
            caught += 1;
        }
    }
    assert!(
        caught >= 20,
        "unbounded reading caught in only {caught} of 2,000 seeds"
    );
}

#[test]
fn fuzz_body_runs_on_stable() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/sim_seed");
    let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![0; 14], vec![0xff; 14], (0u8..32).collect()];
    if let Ok(dir) = std::fs::read_dir(corpus) {
        for entry in dir.flatten() {
            inputs.push(std::fs::read(entry.path()).unwrap());
        }
    }
    for input in inputs {
        fuzz_seed(&input);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_swarm_settings_hold_the_invariants(seed in any::<u64>(), enabled in 0u32..(1 << podvisor_sim::swarm::FAULTS.len()), rate in 0u8..=100, pods in 1usize..5) {
        let report = run(&RunConfig { seed, pods, mutation: None, swarm: Some(Swarm { enabled, rate, ..Swarm::default() }), trace: false, deployment: None, driver_mutation: None });
        if let Err(failure) = report.result {
            prop_assert!(false, "seed {} {:?}: {:?}: {}", seed, report.swarm, failure.kind, failure.message);
        }
    }
}

#[test]
fn command_line_exit_codes() {
    use std::process::Command;
    let sim = env!("CARGO_BIN_EXE_podvisor-sim");
    let status = |args: &[&str]| Command::new(sim).args(args).output().unwrap();
    let ok = status(&["--seed", "3"]);
    assert_eq!(ok.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("seed 3: ok"));
    let caught = status(&["--seeds", "100", "--mutation", "missed-reap"]);
    assert_eq!(caught.status.code(), Some(1));
    let out = String::from_utf8_lossy(&caught.stdout);
    assert!(
        out.contains("replay: podvisor-sim --seed") && out.contains("--mutation missed-reap"),
        "{out}"
    );
    let caught = status(&["--seeds", "1000", "--mutation", "drain-until-empty"]);
    assert_eq!(caught.status.code(), Some(1));
    let out = String::from_utf8_lossy(&caught.stdout);
    assert!(
        out.contains("late (tolerance") && out.contains("--mutation drain-until-empty"),
        "{out}"
    );
    let same = status(&["--seeds", "50", "--check-determinism"]);
    assert_eq!(same.status.code(), Some(0));
    let caught = status(&[
        "--deployments",
        "--seeds",
        "100",
        "--mutation",
        "ignore-budget",
    ]);
    assert_eq!(caught.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&caught.stdout).contains("--deployments --mutation ignore-budget")
    );
    let caught = status(&[
        "--deployments",
        "--seeds",
        "100",
        "--mutation",
        "stopped-comes-back",
    ]);
    assert_eq!(caught.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&caught.stdout)
        .contains("--deployments --mutation stopped-comes-back"));
    for bad in [
        &["--seeds"][..],
        &["--pods", "0"],
        &["--mutation", "nope"],
        &["--frobnicate"],
        &["--mutation", "ignore-budget"],
        &["--deployments", "--mutation", "missed-reap"],
    ] {
        let out = status(bad);
        assert_eq!(out.status.code(), Some(64), "{bad:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("podvisor-sim:"));
    }
}

#[test]
fn a_block_of_deployment_worlds_passes_with_full_coverage() {
    let mut coverage = Coverage::default();
    if let Err(failed) = batch(0, 3_000, 1, None, None, Some(None), &mut coverage) {
        panic!(
            "seed {} failed: {}\nreplay: {}",
            failed.report.seed, failed.failure.message, failed.replay
        );
    }
    let thin = coverage.below(4.0);
    assert!(
        thin.is_empty(),
        "reached by fewer than 4% of deployment seeds: {thin:?}\n{}",
        coverage.table()
    );
}

#[test]
fn deployment_worlds_repeat_bit_for_bit() {
    for seed in 0..200 {
        let config = RunConfig {
            deployment: Some(None),
            ..config(seed, 1)
        };
        assert_eq!(
            run(&config).trace_hash,
            run(&config).trace_hash,
            "seed {seed}"
        );
    }
}

#[test]
fn every_wrong_deployment_machine_is_caught_within_ten_thousand_seeds() {
    for (name, mutation) in DEPLOYMENT_MUTATIONS {
        assert!(
            first_deployment_catch(mutation, 10_000).is_some(),
            "deployment mutation {name} survived 10,000 seeds"
        );
    }
}
