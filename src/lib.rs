//! Lifecycle kernel for pods: start a child process or an in-process runtime, wait until
//! it is ready or has failed, close it gracefully, and join it.
//!
//! A [`Pod`] runs one command ([`PodConfig`]) or one [`runtime::Runtime`]; a
//! [`Deployment`] runs many, in dependency order. Every decision — deadlines, probe
//! schedules, SIGKILL escalation, start order, restarts — lives in [`core`], a pure state
//! machine with no clock, IO or threads; the drivers run on podvisor's own background
//! thread and only perform what it asks, so timeouts and escalation happen even when
//! nobody awaits a handle. The async methods work under any executor (smol, tokio,
//! `futures_lite::future::block_on`); each has a `*_blocking` twin.
//!
//! # Examples
//!
//! ```
//! use podvisor::{End, ExitStatus, Pod, PodConfig, Readiness, StartError};
//! use std::time::Duration;
//!
//! let pod = Pod::new(
//!     PodConfig::new("sh")
//!         .args(["-c", "echo listening; exec sleep 60"])
//!         .ready(Readiness::Stdout("listening".into()))
//!         .timeout_ready(Some(Duration::from_secs(10)))
//!         .grace(Duration::from_secs(2)),
//! )
//! .unwrap();
//! pod.start_and_wait_blocking().unwrap();
//! assert_eq!(pod.close_blocking(), End::Closed(ExitStatus::Signal(15)));
//!
//! // Every way a start can fail is a variant a caller can match on.
//! let missing = Pod::new(PodConfig::new("no-such-program")).unwrap();
//! assert!(matches!(missing.start_and_wait_blocking(), Err(StartError::FailedToStart { .. })));
//! ```
//!
//! The pure core on its own, on a clock the caller owns:
//!
//! ```
//! use podvisor::core::{Event, PodMachine, PodSpec, StartResult, Time};
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
//! No optional features: the library depends on `async-io`, `async-process`,
//! `event-listener`, `futures-lite`, `async-signal` (already under `async-process`, for
//! [`runtime::serve`]) and `rustix`.
//!
//! # Platform
//!
//! Linux is the tested platform (pidfd, process groups, `/proc`, `PR_SET_PDEATHSIG`).
//! Each pod holds about four file descriptors; raise `RLIMIT_NOFILE` for thousands of
//! pods (the `podvisor` command raises its soft limit to the hard one).

#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![deny(unsafe_code)]

mod cgroup;
mod config;
pub mod core;
mod deployment;
mod driver;
pub mod events;
mod executor;
pub mod forward;
#[cfg(feature = "oracles")]
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod keeper;
mod notify_socket;
mod os;
mod output;
mod pod;
mod probe;
pub mod reaper;
pub mod runtime;
mod spawner;

pub use crate::config::{ConfigError, Input, Output, PodConfig, Readiness};
pub use crate::core::deployment::{
    Backoff, Cause, Condition, DeploymentState, MemberState, RestartPolicy,
};
pub use crate::core::{End, ExitStatus, Health, StartResult, State, Unhealthy};
pub use crate::deployment::{
    ControlError, Deployment, DeploymentConfig, DeploymentConfigError, DeploymentFailure,
    DeploymentStartError, MemberControl, MemberStatus, PodSet, Replica,
};
pub use crate::os::{group_members, Signal};
pub use crate::pod::{FailureReason, HealthFailure, NotifyCounters, Pod, PodStatus, StartError};
pub use crate::probe::HttpTarget;

// Handles are shared between threads and tasks; keep it so.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Pod>();
    send_sync::<Deployment>();
    send_sync::<events::Events>();
};
