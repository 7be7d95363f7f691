//! How a pod's start can fail, as variants a caller can match on: [`StartError`] and its
//! [`FailureReason`].

use std::fmt;
use std::time::Duration;

use crate::core::{ExitStatus, SpawnErrorKind};

/// How a spawn error's message begins when the pod's working directory was missing.
pub(crate) const MISSING_CWD: &str = "working directory";

/// Why a start failed to spawn or set up.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureReason {
    /// The process could not be spawned.
    Spawn {
        /// What kind of failure.
        kind: SpawnErrorKind,
        /// The OS's message.
        message: String,
    },
    /// A hosted runtime ended before it reported it had started.
    Runtime {
        /// How it ended.
        status: ExitStatus,
        /// The error it reported.
        error: Option<String>,
    },
    /// Its configuration could not be built (a deployment member's restart).
    Config {
        /// What was wrong.
        message: String,
    },
}

/// Why a pod did not become ready.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartError {
    /// It never got going.
    FailedToStart {
        /// The pod.
        name: String,
        /// Its program.
        program: String,
        /// Why.
        reason: FailureReason,
        /// Its last output lines.
        last_lines: Vec<String>,
    },
    /// It started, then ended before it was ready.
    ExitedEarly {
        /// The pod.
        name: String,
        /// How it ended.
        status: ExitStatus,
        /// Its last output lines.
        last_lines: Vec<String>,
    },
    /// It was not ready in time; it was closed.
    TimedOut {
        /// The pod.
        name: String,
        /// How long it was given.
        waited: Duration,
        /// The readiness checks that had not succeeded.
        waiting_for: Vec<String>,
        /// Its last output lines.
        last_lines: Vec<String>,
    },
    /// It was closed before it was ready.
    Cancelled {
        /// The pod.
        name: String,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines = match self {
            StartError::FailedToStart {
                name,
                program,
                reason,
                last_lines,
            } => {
                match reason {
                    FailureReason::Spawn { kind, message } => {
                        let what = match kind {
                            // Not the program: the directory it was to run in.
                            SpawnErrorKind::NotFound if message.starts_with(MISSING_CWD) => {
                                "could not be started"
                            }
                            SpawnErrorKind::NotFound => "was not found",
                            SpawnErrorKind::PermissionDenied => "cannot be executed",
                            SpawnErrorKind::Other => "could not be started",
                        };
                        write!(
                            f,
                            "pod {name} failed to start: program {program:?} {what} ({message})"
                        )?;
                    }
                    FailureReason::Runtime { status, error } => {
                        write!(f, "pod {name} failed to start: it ended ({status}) before it reported started")?;
                        if let Some(error) = error {
                            write!(f, ": {error}")?;
                        }
                    }
                    FailureReason::Config { message } => write!(
                        f,
                        "pod {name} failed to start: its configuration could not be built: {message}"
                    )?,
                }
                last_lines
            }
            StartError::ExitedEarly {
                name,
                status,
                last_lines,
            } => {
                write!(f, "pod {name} exited before it was ready ({status})")?;
                last_lines
            }
            StartError::TimedOut {
                name,
                waited,
                waiting_for,
                last_lines,
            } => {
                write!(f, "pod {name} was not ready after {waited:?}")?;
                if !waiting_for.is_empty() {
                    write!(f, "; still waiting for {}", waiting_for.join(", "))?;
                }
                write!(f, "; it was closed")?;
                last_lines
            }
            StartError::Cancelled { name } => {
                return write!(f, "pod {name} was closed before it was ready")
            }
        };
        if !lines.is_empty() {
            write!(f, "; last output:")?;
            for line in lines {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for StartError {}
