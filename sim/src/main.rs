//! `podvisor-sim`: runs seeds of the simulated world against the core.
//!
//! Exit status: 0 all seeds passed; 1 a safety violation; 2 a liveness violation;
//! 3 the simulator or the core panicked; 4 a run was not deterministic; 64 usage error.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::exit;
use std::time::Instant;

use podvisor_sim::report::{
    batch, driver_mutation_name, mutation_name, replay_command, Coverage, DEPLOYMENT_MUTATIONS,
    DRIVER_MUTATIONS, MUTATIONS,
};
use podvisor_sim::{run, FailureKind, RunConfig};

const USAGE: &str = "\
usage: podvisor-sim [--seeds N] [--start S] [--pods K] [--mutation NAME] [--check-determinism] [--coverage]
       podvisor-sim --seed S [--pods K] [--mutation NAME]   replay one seed with its trace

  --seeds N            seeds to run (default 10000)
  --start S            first seed (default 0)  --pods K             pods per world (default 1)
  --deployments        deployment worlds: a random dependency DAG of pods with replicas,
                       one-shot jobs, restart policies and health-checked dependencies,
                       run by the deployment machine, with control commands (stop,
                       start, restart, down) at random times
  --mutation NAME      run a deliberately wrong core: kill-one-tick-early,
                       exited-early-as-failed-to-start, deadline-from-spawn, missed-reap,
                       ready-after-zero, foreign-spawned-or-notify,
                       health-threshold-off-by-one, start-period-ignored,
                       watchdog-rearmed-by-malformed, never-retries-probe,
                       later-close-moves-kill, extension-counts-from-start;
                       or a wrong driver model: timers-before-input, input-at-wake-time,
                       drain-until-empty;
                       with --deployments: ready-means-started, close-all-at-once,
                       restart-after-close, ignore-budget, stopped-comes-back,
                       stop-skips-dependents, restart-spends-budget
  --check-determinism  run every seed twice and compare trace hashes
  --coverage           print how many seeds reached each outcome and fault";

struct Options {
    seeds: u64,
    start: u64,
    one: Option<u64>,
    pods: usize,
    mutation: Option<podvisor::core::Mutation>,
    driver_mutation: Option<podvisor_sim::driver::DriverMutation>,
    deployments: bool,
    deployment_mutation: Option<podvisor::core::deployment::DeploymentMutation>,
    determinism: bool,
    coverage: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        seeds: 10_000,
        start: 0,
        one: None,
        pods: 1,
        mutation: None,
        driver_mutation: None,
        deployments: false,
        deployment_mutation: None,
        determinism: false,
        coverage: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{name} needs a number"))?;
            v.parse()
                .map_err(|_| format!("{name}: {v:?} is not a whole number"))
        };
        match arg.as_str() {
            "--seeds" => o.seeds = number("--seeds")?,
            "--start" => o.start = number("--start")?,
            "--seed" => o.one = Some(number("--seed")?),
            "--pods" => {
                o.pods = usize::try_from(number("--pods")?).unwrap_or(0);
                if o.pods == 0 || o.pods > 1024 {
                    return Err("--pods: expected 1 to 1024".into());
                }
            }
            "--mutation" => {
                let name = it.next().ok_or("--mutation needs a name")?;
                let names: Vec<&str> = MUTATIONS
                    .iter()
                    .map(|(n, _)| *n)
                    .chain(DRIVER_MUTATIONS.iter().map(|(n, _)| *n))
                    .chain(DEPLOYMENT_MUTATIONS.iter().map(|(n, _)| *n))
                    .collect();
                if let Some((_, m)) = MUTATIONS.iter().find(|(n, _)| n == name) {
                    o.mutation = Some(*m);
                } else if let Some((_, m)) = DRIVER_MUTATIONS.iter().find(|(n, _)| n == name) {
                    o.driver_mutation = Some(*m);
                } else if let Some((_, m)) = DEPLOYMENT_MUTATIONS.iter().find(|(n, _)| n == name) {
                    o.deployment_mutation = Some(*m);
                } else {
                    return Err(format!(
                        "--mutation: unknown {name:?}; expected one of {}",
                        names.join(", ")
                    ));
                }
            }
            "--deployments" => o.deployments = true,
            "--check-determinism" => o.determinism = true,
            "--coverage" => o.coverage = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.deployment_mutation.is_some() && !o.deployments {
        return Err(
            "--mutation: that mutation is of the deployment machine; add --deployments".into(),
        );
    }
    if o.deployments && o.mutation.is_some() {
        return Err("--mutation: pod mutations run without --deployments".into());
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            exit(0);
        }
        Err(e) => {
            eprintln!("podvisor-sim: {e}\n{USAGE}");
            exit(64);
        }
    };
    let code = catch_unwind(AssertUnwindSafe(|| main_with(&options))).unwrap_or_else(|_| {
        eprintln!(
            "podvisor-sim: crashed (a panic above); replay the last seed printed with --seed"
        );
        3
    });
    exit(code);
}

fn main_with(o: &Options) -> i32 {
    if let Some(seed) = o.one {
        let config = RunConfig {
            seed,
            pods: o.pods,
            mutation: o.mutation,
            swarm: None,
            trace: true,
            deployment: o.deployments.then_some(o.deployment_mutation),
            driver_mutation: o.driver_mutation,
        };
        let report = run(&config);
        println!("seed {seed}: {:?}", report.swarm);
        for line in &report.trace {
            println!("{line}");
        }
        return match report.result {
            Ok(()) => {
                println!(
                    "seed {seed}: ok ({} steps, trace hash {:016x})",
                    report.steps, report.trace_hash
                );
                0
            }
            Err(failure) => {
                println!(
                    "seed {seed}: {:?} violation: {}",
                    failure.kind, failure.message
                );
                kind_code(failure.kind)
            }
        };
    }
    let mut coverage = Coverage::default();
    let begin = Instant::now();
    if o.determinism {
        for seed in o.start..o.start.saturating_add(o.seeds) {
            let config = RunConfig {
                seed,
                pods: o.pods,
                mutation: o.mutation,
                swarm: None,
                trace: false,
                deployment: o.deployments.then_some(o.deployment_mutation),
                driver_mutation: o.driver_mutation,
            };
            let (a, b) = (run(&config), run(&config));
            if a.trace_hash != b.trace_hash {
                eprintln!(
                    "seed {seed}: two runs differ (trace hashes {:016x} and {:016x}); replay: {}",
                    a.trace_hash,
                    b.trace_hash,
                    replay_command(&config)
                );
                return 4;
            }
        }
        println!(
            "{} seeds from {}: every run repeated bit for bit",
            o.seeds, o.start
        );
        return 0;
    }
    let result = batch(
        o.start,
        o.seeds,
        o.pods,
        o.mutation,
        o.driver_mutation,
        o.deployments.then_some(o.deployment_mutation),
        &mut coverage,
    );
    let elapsed = begin.elapsed().as_secs_f64();
    if o.coverage || result.is_ok() {
        print!("{}", coverage.table());
    }
    if o.coverage {
        if !o.deployments {
            print!("{}", coverage.pair_tables());
        }
        print!("{}", coverage.thinnest(6));
    }
    let what = if o.deployments {
        "deployment worlds".to_string()
    } else {
        format!("{} pods each", o.pods)
    };
    println!(
        "{} seeds ({what}{}) in {elapsed:.2} s: {:.0} seeds/s",
        coverage.seeds,
        o.mutation
            .map(mutation_name)
            .or(o.driver_mutation.map(driver_mutation_name))
            .map_or(String::new(), |m| format!(", mutation {m}")),
        coverage.seeds as f64 / elapsed.max(1e-9)
    );
    match result {
        Ok(()) => {
            let thin = coverage.below(1.0);
            if !thin.is_empty() {
                println!("reached by fewer than 1% of seeds: {}", thin.join("; "));
            }
            0
        }
        Err(failed) => {
            println!(
                "\nseed {} failed: {:?} violation: {}",
                failed.report.seed, failed.failure.kind, failed.failure.message
            );
            println!("settings: {:?}", failed.report.swarm);
            println!("trace:");
            for line in &failed.report.trace {
                println!("  {line}");
            }
            println!("replay: {}", failed.replay);
            kind_code(failed.failure.kind)
        }
    }
}

fn kind_code(kind: FailureKind) -> i32 {
    match kind {
        FailureKind::Safety => 1,
        FailureKind::Liveness => 2,
    }
}
