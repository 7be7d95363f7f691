//! [`Deployment`]: a group of pods with replicas, dependencies and restart policies, driven
//! by the core's [`DeploymentMachine`] on podvisor's own thread.
//!
//! The driver is thin: it turns what each member's [`Pod`] does into events for the
//! machine (through [`PodObserver`]), and performs what the machine asks — create and
//! start a fresh pod, close one. Every decision (start order, fail fast, restarts, close
//! order) is the machine's.

//!
//! [`config`] holds what a deployment is built from, [`error`] its errors, [`handle`] the
//! [`Deployment`] handle, and [`driver`] the driver that runs it.

mod config;
mod driver;
mod error;
mod handle;

pub use config::{DeploymentConfig, PodSet, Replica};
pub use error::{
    ControlError, DeploymentConfigError, DeploymentFailure, DeploymentStartError, MemberControl,
};
pub use handle::{Deployment, MemberStatus};
