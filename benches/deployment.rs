//! Close time of a deployment of N independent pods whose children ignore SIGTERM, grace
//! 200 ms: every level closes in parallel, so the target is ≈ grace + 50 ms for every N.
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

fn main() {
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
