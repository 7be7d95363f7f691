//! Close time of a deployment of N independent pods whose children ignore SIGTERM, grace
//! 200 ms: every level closes in parallel, so the target is ≈ grace + 50 ms for every N.
//!
//! Start time of N replicas of `sleep` until the deployment is ready, beside spawning the same
//! N processes with `std::process` in the same run (target ≤ 1.2× at every N, with the
//! containment of "nothing outlives podvisor" on: a cgroup per pod where possible): five
//! pairs per N, in alternating order, and the median pair's ratio.
//!
//! `cargo bench --bench deployment` prints one line per N.

use std::time::{Duration, Instant};

use podvisor::{Deployment, DeploymentConfig, PodConfig, PodSet, Readiness};

const GRACE: Duration = Duration::from_millis(200);

/// Pairs of (podvisor, raw) start times per N; the median pair's ratio is reported.
const PAIRS: usize = 5;

/// The value after `flag` on the command line, parsed as a comma-separated list.
fn listed(flag: &str) -> Option<Vec<u32>> {
    std::env::args()
        .skip_while(|a| a != flag)
        .nth(1)
        .map(|list| {
            list.split(',')
                .map(|n| {
                    n.parse().unwrap_or_else(|_| {
                        panic!("{flag} takes numbers such as 20,100, not {n:?}")
                    })
                })
                .collect()
        })
}

fn close_time(n: u32) -> Duration {
    let config = DeploymentConfig::new().pod(
        PodSet::new(
            "stubborn",
            PodConfig::new("sh")
                .args(["-c", "trap '' TERM; echo up; exec sleep 600"])
                .ready(Readiness::Stdout("up".into()))
                .grace(GRACE),
        )
        .replicas(n),
    );
    let deployment = Deployment::new(config).expect("valid deployment");
    deployment.start_and_wait_blocking().expect("ready");
    let start = Instant::now();
    let _ = deployment.close_blocking();
    start.elapsed()
}

/// This process's own CPU time so far, all its threads (`/proc/self/task/*/schedstat`; the
/// children's is theirs). Threads that ended are not counted: podvisor's threads live on.
fn own_cpu() -> Duration {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

/// This process's CPU time so far by thread name (threads of one name added up).
fn cpu_by_thread() -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let ns: u64 = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|t| t.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0);
        *by_name.entry(name.trim().to_string()).or_insert(0) += ns;
    }
    by_name
}

/// A time and the CPU this process spent in it.
type Measured = (Duration, Duration);

/// The time of N raw spawns of `sleep` (the children killed and reaped after).
fn raw_spawns(n: u32) -> Measured {
    let cpu = own_cpu();
    let start = Instant::now();
    let mut children: Vec<std::process::Child> = (0..n)
        .map(|_| {
            std::process::Command::new("sleep")
                .arg("600")
                .stdin(std::process::Stdio::null())
                .spawn()
                .expect("sleep")
        })
        .collect();
    let raw = (start.elapsed(), own_cpu() - cpu);
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    raw
}

/// podvisor's time to "deployment ready" for N replicas of `sleep` (closed after).
fn deployment_ready(n: u32) -> Measured {
    let config = DeploymentConfig::new()
        .pod(PodSet::new("sleeper", PodConfig::new("sleep").arg("600").grace(GRACE)).replicas(n));
    let threads = cpu_by_thread();
    let cpu = own_cpu();
    let start = Instant::now();
    let deployment = Deployment::new(config).expect("valid deployment");
    deployment.start_and_wait_blocking().expect("ready");
    let ready = (start.elapsed(), own_cpu() - cpu);
    if std::env::var_os("PODVISOR_BENCH_THREADS").is_some() {
        let after = cpu_by_thread();
        let per_pod: Vec<String> = after
            .iter()
            .map(|(name, ns)| {
                let before = threads.get(name).copied().unwrap_or(0);
                format!(
                    "{name} {:.0} µs",
                    ns.saturating_sub(before) as f64 / 1e3 / f64::from(n)
                )
            })
            .collect();
        eprintln!("  CPU per pod by thread: {}", per_pod.join(", "));
    }
    let _ = deployment.close_blocking();
    ready
}

/// (podvisor's time, the raw spawn time) for N pods, taken one after the other in the
/// order `raw_first` says: pairs alternate the order, so that a machine speeding up or
/// slowing down during a pair favours neither.
fn start_time(n: u32, raw_first: bool) -> (Measured, Measured) {
    if raw_first {
        let raw = raw_spawns(n);
        (deployment_ready(n), raw)
    } else {
        let ready = deployment_ready(n);
        (ready, raw_spawns(n))
    }
}

fn main() {
    // `-- --start-only N,N…` measures only the start, of these sizes (for a profiler);
    // `--pairs K` takes K pairs per size instead of five (an odd number: the median is one).
    let only = listed("--start-only");
    let pairs_per_size = listed("--pairs").map_or(PAIRS, |k| k[0].max(1) as usize | 1);
    let start_sizes: &[u32] = if let Some(only) = &only {
        only
    } else if std::env::args().any(|a| a == "--bench") {
        &[20, 100, 1000]
    } else {
        &[3]
    };
    for &n in start_sizes {
        let pairs: Vec<(Measured, Measured)> = (0..pairs_per_size)
            .map(|i| start_time(n, i.is_multiple_of(2)))
            .collect();
        let ratio =
            |(ready, raw): &(Measured, Measured)| ready.0.as_secs_f64() / raw.0.as_secs_f64();
        let mut ratios: Vec<f64> = pairs.iter().map(ratio).collect();
        ratios.sort_by(f64::total_cmp);
        let median = pairs
            .iter()
            .find(|pair| ratio(pair) == ratios[pairs_per_size / 2])
            .expect("the median is one of the pairs");
        let ((ready, ready_cpu), (raw, raw_cpu)) = *median;
        let per_pod = |cpu: Duration| cpu.as_secs_f64() * 1e6 / f64::from(n);
        println!(
            "start of {n:>4} pods to ready: {:>8.1} ms, {n} raw spawns {:>8.1} ms, ratio {:.2}× (median of {pairs_per_size} pairs; range {:.2}–{:.2}×; target ≤ 1.2×); own CPU per pod {:.0} µs, per raw spawn {:.0} µs",
            ready.as_secs_f64() * 1e3,
            raw.as_secs_f64() * 1e3,
            ratios[pairs_per_size / 2],
            ratios[0],
            ratios[pairs_per_size - 1],
            per_pod(ready_cpu),
            per_pod(raw_cpu),
        );
    }
    if only.is_some() {
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full { 5 } else { 1 };
    let sizes: &[u32] = if full { &[1, 10, 100] } else { &[1, 3] };
    for &n in sizes {
        let mut times: Vec<Duration> = (0..rounds).map(|_| close_time(n)).collect();
        times.sort();
        let median = times[times.len() / 2];
        println!(
            "close of {n:>3} pods ignoring SIGTERM, grace 200 ms: median {:>7.1} ms, max {:>7.1} ms (target ≈ 250 ms)",
            median.as_secs_f64() * 1e3,
            times.last().unwrap().as_secs_f64() * 1e3
        );
    }
}
