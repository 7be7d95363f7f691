//! A deployment's errors, one per step: building it ([`DeploymentConfigError`]), starting
//! it ([`DeploymentStartError`]), and how it failed ([`DeploymentFailure`]).

use std::fmt;

use crate::config::ConfigError;
use crate::core::deployment::{Cause, DeploymentError, Failure};
use crate::pod::{FailureReason, StartError};

/// A [`DeploymentConfig`](crate::DeploymentConfig) that cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeploymentConfigError {
    /// The shape of the deployment is wrong (cycle, unknown dependency, …).
    Deployment(DeploymentError),
    /// A replica's pod configuration is wrong.
    Pod {
        /// The replica.
        member: String,
        /// What is wrong.
        error: ConfigError,
    },
    /// Building a replica's configuration panicked.
    ConfigPanicked {
        /// The replica.
        member: String,
    },
}

impl fmt::Display for DeploymentConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeploymentConfigError::Deployment(error) => write!(f, "{error}"),
            DeploymentConfigError::Pod { member, error } => write!(f, "pod {member}: {error}"),
            DeploymentConfigError::ConfigPanicked { member } => {
                write!(f, "pod {member}: building its configuration panicked")
            }
        }
    }
}

impl std::error::Error for DeploymentConfigError {}

/// The member failure that took a deployment down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentFailure(pub(super) Box<FailureDetails>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct FailureDetails {
    pub(super) failure: Failure,
    pub(super) start_error: Option<StartError>,
    pub(super) last_lines: Vec<String>,
    pub(super) health_failure: Option<crate::HealthFailure>,
}

impl DeploymentFailure {
    /// What the core recorded: the member, what it did, its restart policy, whether it is
    /// crash-looping.
    pub fn failure(&self) -> &Failure {
        &self.0.failure
    }

    /// The member's name (`web/1`).
    pub fn member(&self) -> &str {
        &self.0.failure.name
    }

    /// What the member did.
    pub fn cause(&self) -> &Cause {
        &self.0.failure.cause
    }

    /// `Some(n)` when the member is crash-looping: its budget of `n` restarts was spent.
    pub fn crash_looping_after(&self) -> Option<u32> {
        self.0.failure.crash_looping_after
    }

    /// The pod's own account of its failed start (program, spawn error, readiness checks
    /// it waited for), when the failure was a start.
    pub fn start_error(&self) -> Option<&StartError> {
        self.0.start_error.as_ref()
    }

    /// The readiness checks that had not passed when the member's readiness timed out
    /// (as written, `file /run/ready`); empty for any other failure.
    pub fn waiting_for(&self) -> &[String] {
        match &self.0.start_error {
            Some(StartError::TimedOut { waiting_for, .. }) => waiting_for,
            _ => &[],
        }
    }

    /// The failed attempt that made the member unhealthy, when a health check did: which
    /// check, why, how many times in a row.
    pub fn health_failure(&self) -> Option<&crate::HealthFailure> {
        self.0.health_failure.as_ref()
    }

    /// The pod's last output lines.
    pub fn last_lines(&self) -> &[String] {
        &self.0.last_lines
    }
}

impl fmt::Display for DeploymentFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let details = &self.0;
        match &details.health_failure {
            Some(why) => write!(
                f,
                "deployment stopped: {}",
                details.failure.with_unhealthy_cause(why)
            )?,
            None => write!(f, "deployment stopped: {}", details.failure)?,
        }
        if let Some(StartError::FailedToStart {
            program,
            reason: FailureReason::Spawn { message, .. },
            ..
        }) = &details.start_error
        {
            write!(f, " (program {program:?}: {message})")?;
        }
        if !self.waiting_for().is_empty() {
            write!(f, " (still waiting for {})", self.waiting_for().join(", "))?;
        }
        if !details.last_lines.is_empty() {
            write!(f, "; last output of {}:", details.failure.name)?;
            for line in &details.last_lines {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for DeploymentFailure {}

/// Why a deployment did not become ready.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeploymentStartError {
    /// A member failed; everything was closed.
    Failed(DeploymentFailure),
    /// It was closed before it was ready.
    Cancelled,
}

impl fmt::Display for DeploymentStartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeploymentStartError::Failed(failure) => write!(f, "{failure}"),
            DeploymentStartError::Cancelled => {
                write!(f, "the deployment was closed before it was ready")
            }
        }
    }
}

impl std::error::Error for DeploymentStartError {}

/// What a request about one member found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MemberControl {
    /// Asked for; it happens on podvisor's thread.
    Done,
    /// A stop of a member that was already down.
    AlreadyStopped,
    /// A start of a member that was already running (or about to start).
    AlreadyRunning,
    /// Not named, but stopped (a stop with dependents) or restarted with a named member
    /// because it depends on it; it follows that member in the answer.
    Dependent,
}

impl std::fmt::Display for MemberControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemberControl::Done => "done",
            MemberControl::AlreadyStopped => "already stopped",
            MemberControl::AlreadyRunning => "already running",
            MemberControl::Dependent => "dependent",
        })
    }
}

/// A request about one member that cannot be carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlError {
    /// No member or pod has that name.
    UnknownName {
        /// The name given.
        name: String,
        /// The members there are.
        known: Vec<String>,
    },
    /// The deployment is closing (or ended): nothing starts or stops on request any more.
    Closing,
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::UnknownName { name, known } => write!(
                f,
                "no pod or member is called {name:?}; the members are {}",
                known.join(", ")
            ),
            ControlError::Closing => write!(
                f,
                "the deployment is closing; members can no longer be stopped or started"
            ),
        }
    }
}

impl std::error::Error for ControlError {}
