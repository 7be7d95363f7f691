//! Close time of a deployment of N independent pods whose children ignore SIGTERM, grace
//! 200 ms: every level closes in parallel, so the target is ≈ grace + 50 ms for every N.
//!
//! Start time of N replicas of `sleep` until the deployment is ready, beside spawning the same
//! N processes with `std::process` in the same run (target ≤ 1.2× at every N, with the
//! containment of "nothing outlives podvisor" on: a cgroup per pod where possible).
//!
//! `cargo bench --bench deployment` prints one line per N.

use std::time::{Duration, Instant};

use podvisor::{Deployment, DeploymentConfig, PodConfig, PodSet, Readiness};

const GRACE: Duration = Duration::from_millis(200);

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

/// (podvisor's time to "deployment ready", the raw spawn time) for N replicas of `sleep`.
fn start_time(n: u32) -> (Duration, Duration) {
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
    let raw = start.elapsed();
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let config = DeploymentConfig::new()
        .pod(PodSet::new("sleeper", PodConfig::new("sleep").arg("600").grace(GRACE)).replicas(n));
    let start = Instant::now();
    let deployment = Deployment::new(config).expect("valid deployment");
    deployment.start_and_wait_blocking().expect("ready");
    let ready = start.elapsed();
    let _ = deployment.close_blocking();
    (ready, raw)
}

fn main() {
    // `-- --start-only N,N…` measures only the start, of these sizes (for a profiler).
    let only: Option<Vec<u32>> = std::env::args()
        .skip_while(|a| a != "--start-only")
        .nth(1)
        .map(|sizes| {
            sizes
                .split(',')
                .map(|n| n.parse().expect("--start-only takes sizes such as 20,100"))
                .collect()
        });
    let start_sizes: &[u32] = if let Some(only) = &only {
        only
    } else if std::env::args().any(|a| a == "--bench") {
        &[20, 100, 1000]
    } else {
        &[3]
    };
    for &n in start_sizes {
        let mut runs: Vec<(Duration, Duration)> = (0..3).map(|_| start_time(n)).collect();
        runs.sort_by(|a, b| {
            (a.0.as_secs_f64() / a.1.as_secs_f64())
                .total_cmp(&(b.0.as_secs_f64() / b.1.as_secs_f64()))
        });
        let (ready, raw) = runs[1];
        println!(
            "start of {n:>4} pods to ready: {:>8.1} ms, {n} raw spawns {:>8.1} ms, ratio {:.2}× (median of 3; range {:.2}–{:.2}×; target ≤ 1.2×)",
            ready.as_secs_f64() * 1e3,
            raw.as_secs_f64() * 1e3,
            ready.as_secs_f64() / raw.as_secs_f64(),
            runs[0].0.as_secs_f64() / runs[0].1.as_secs_f64(),
            runs[2].0.as_secs_f64() / runs[2].1.as_secs_f64(),
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
