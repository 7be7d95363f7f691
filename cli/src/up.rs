//! `podvisor up`: a deployment from a file, closed in reverse dependency order on
//! SIGINT/SIGTERM or when a pod that is neither one-shot nor restarted ends.

use std::path::Path;

use podvisor::{Deployment, DeploymentConfig, PodConfig, PodSet};

use crate::exit;
use crate::file::{self, PlannedPod};
use crate::report::Style;

/// Builds the deployment of `plan`'s pods.
fn deployment_config(pods: Vec<PlannedPod>) -> DeploymentConfig {
    let mut config = DeploymentConfig::new();
    for pod in pods {
        let template = pod.template.clone();
        let name = template.name.clone();
        let mut set = PodSet::from_fn(name.clone(), move |replica| {
            // The strings were checked when the file was loaded, with the same
            // placeholders; a failure here would need a placeholder to expand into
            // something unparsable (a port of 0 when none is free).
            pod.config(|s| replica.expand(s)).unwrap_or_else(|e| {
                say!("podvisor: pod {}: {e}", replica.name());
                PodConfig::new("/nonexistent/podvisor-config-error").name(replica.name())
            })
        })
        .replicas(template.replicas)
        .restart(template.restart)
        .backoff(template.backoff);
        if template.one_shot {
            set = set.one_shot();
        }
        for dependency in &template.depends_on {
            set = set.depends_on(dependency.on.clone(), dependency.condition);
        }
        config = config.pod(set);
    }
    config
}

/// Runs the deployment in `path` to its end; returns podvisor's exit status.
pub fn up(path: &Path, json: bool) -> i32 {
    let plan = match file::load(path) {
        Ok(plan) => plan,
        Err(e) => {
            file::report(&e);
            return exit::USAGE;
        }
    };
    match Deployment::new(deployment_config(plan.pods)) {
        Ok(deployment) => crate::supervise::supervise(deployment, json, Style::Up),
        Err(e) => {
            say!("podvisor: {}: {e}", path.display());
            exit::USAGE
        }
    }
}
