//! Lifecycle kernel for pods: start a child process or an in-process runtime, wait until
//! it is ready or has failed, close it gracefully, and join it.
//!
//! The decisions live in [`core`], a pure state machine with no clock, IO or threads:
//! events go in with the current time, actions and deadlines come out.
//!
//! # Examples
//!
//! ```
//! use podvisor::core::{Action, Event, PodMachine, PodSpec, StartResult, Time};
//! use std::time::Duration;
//!
//! let mut pod = PodMachine::new(PodSpec::default().timeout_ready(Some(Duration::from_secs(1)))).unwrap();
//! pod.handle(Event::Start, Time::ZERO);
//! while pod.poll_action().is_some() {}
//! // Nobody answered the spawn within a second: the deadline fires.
//! let deadline = pod.poll_timeout().unwrap();
//! assert_eq!(deadline, Time::from_secs(1));
//! pod.handle(Event::Tick, deadline);
//! assert!(matches!(pod.start_result(), Some(StartResult::TimedOut { .. })));
//! ```
//!
//! # Features
//!
//! None yet; the core has no dependencies.

#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![deny(unsafe_code)]

mod config;
pub mod core;
mod deployment;
mod driver;
mod executor;
#[doc(hidden)]
pub mod fuzzing;
mod notify_socket;
mod os;
mod output;
mod pod;
mod probe;
pub mod runtime;

pub use crate::config::{ConfigError, Input, Output, PodConfig, Readiness};
pub use crate::core::{End, ExitStatus, StartResult, State};
pub use crate::deployment::{
    Deployment, DeploymentConfig, DeploymentConfigError, DeploymentFailure, DeploymentStartError,
    MemberStatus, PodSet, Replica,
};
pub use crate::os::{group_members, Signal};
pub use crate::pod::{FailureReason, Pod, StartError};
pub use crate::probe::HttpTarget;
