//! `podvisor run`: one command as a one-pod deployment that keeps the pod's name, so that
//! restarts, backoff and the restart budget come from the deployment machine and the
//! supervise loop is `up`'s.

use crate::args::RunOptions;
use crate::exit;
use crate::report::Style;

/// Runs the command to its end and returns podvisor's exit status.
pub fn run(options: RunOptions) -> i32 {
    let name = options.config.get_name().to_string();
    let set = podvisor::PodSet::new(name, options.config)
        .keep_name()
        .restart(options.restart);
    match podvisor::Deployment::new(podvisor::DeploymentConfig::new().pod(set)) {
        Ok(deployment) => crate::supervise::supervise(
            &deployment,
            options.json,
            Style::Run,
            options.foreground,
            &|_| {},
        ),
        Err(e) => {
            say!("podvisor: {e}");
            exit::USAGE
        }
    }
}
