//! [`ConfigError`]: a pod configuration that cannot run.

use std::fmt;

use crate::core;

/// A [`PodConfig`](crate::PodConfig) that cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The program is an empty string.
    EmptyProgram {
        /// The pod.
        name: String,
    },
    /// A stdout/stderr readiness check with an empty text would match any line.
    EmptyReadyText {
        /// The pod.
        name: String,
        /// Index of the check.
        check: usize,
    },
    /// A readiness check that cannot work.
    BadReadiness {
        /// The pod.
        name: String,
        /// Index of the check.
        check: usize,
        /// Why.
        reason: String,
    },
    /// A health check that cannot work.
    BadHealth {
        /// The pod.
        name: String,
        /// Index of the health check.
        check: usize,
        /// Why.
        reason: String,
    },
    /// A watchdog on a runtime hosted on a thread, which has no notify socket.
    WatchdogOnThread {
        /// The pod.
        name: String,
    },
    /// The lifecycle core rejected the configuration.
    Spec {
        /// The pod.
        name: String,
        /// Why.
        error: core::SpecError,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::EmptyProgram { name } => {
                write!(f, "pod {name}: the program is empty; give the command to run")
            }
            ConfigError::EmptyReadyText { name, check } => write!(
                f,
                "pod {name}: readiness check #{check} has an empty text; give the text a ready line contains"
            ),
            ConfigError::BadReadiness { name, check, reason } => {
                write!(f, "pod {name}: readiness check #{check}: {reason}")
            }
            ConfigError::BadHealth { name, check, reason } => {
                write!(f, "pod {name}: health check #{check}: {reason}")
            }
            ConfigError::WatchdogOnThread { name } => write!(
                f,
                "pod {name}: a watchdog needs a process pod (it pings over the notify socket); a runtime on a thread has none"
            ),
            ConfigError::Spec { name, error } => write!(f, "pod {name}: {error}"),
        }
    }
}

impl std::error::Error for ConfigError {}
