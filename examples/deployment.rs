//! A deployment from Rust: a one-shot job, two replicas of a server that depend on it,
//! each on its own free port, and a close in reverse dependency order.
//!
//! Run with `cargo run --example deployment`.

use podvisor::core::deployment::Condition;
use podvisor::{Deployment, DeploymentConfig, PodConfig, PodSet, Readiness};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let deployment = Deployment::new(
        DeploymentConfig::new()
            .pod(
                PodSet::new(
                    "prepare",
                    PodConfig::new("sh").args(["-c", "echo prepared"]),
                )
                .one_shot(),
            )
            .pod(
                PodSet::from_fn("server", |replica| {
                    // Each replica gets its index and a free port.
                    let script =
                        replica.expand("echo replica {replica} listening on {port}; exec sleep 60");
                    PodConfig::new("sh")
                        .args(["-c", script.as_str()])
                        .ready(Readiness::Stdout("listening".into()))
                })
                .replicas(2)
                .depends_on("prepare", Condition::Succeeded),
            ),
    )?;
    deployment.start_and_wait_blocking()?;
    for member in deployment.members() {
        println!(
            "{:<10} {:<10} pid {:?}",
            member.name,
            member.state.name(),
            member.pid
        );
    }
    deployment.close_blocking()?;
    for member in deployment.members() {
        println!(
            "{:<10} {:<10} {:?}",
            member.name,
            member.state.name(),
            member.end
        );
    }
    Ok(())
}
