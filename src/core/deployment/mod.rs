//! [`DeploymentMachine`]: a group of pods with replicas, dependencies and restart
//! policies, as a deterministic state machine.
//!
//! # What it models
//!
//! The machine decides *when* each pod starts, restarts and closes; it does not run
//! pods. Each member (one replica of a [`PodTemplate`], named `name/i`) is modelled at
//! the level of its outcomes — started, its [`StartResult`](crate::core::StartResult), its [`End`](crate::core::End) — which is
//! exactly what a pod driver (or a [`PodMachine`](crate::core::PodMachine) in the
//! simulator) reports. So the pod-level decisions (ready deadlines, SIGKILL escalation)
//! stay in one place, each pod keeps its own machine, and the deployment driver can be
//! built on [`Pod`](crate::Pod) handles. [`PodObserver`] turns a pod's observed state
//! into the events this machine takes.
//!
//! The calling rule is the pod machine's: **after every [`DeploymentMachine::handle`],
//! drain [`DeploymentMachine::poll_action`] until it returns `None`, then arm a timer for
//! [`DeploymentMachine::poll_timeout`] and call `handle(DeploymentEvent::Tick, now)` when
//! it fires.** Every event about a pod carries the member and the [`Generation`](crate::core::Generation) from
//! the [`DeploymentAction::StartPod`] that started it; events about an older generation
//! are ignored and counted.
//!
//! # Policies
//!
//! - **Start order.** A member starts once every replica of each template it depends on
//!   meets the dependency's [`Condition`]; all members that are eligible at the same
//!   moment start together (in declaration order). A *re*start waits the same way, for
//!   the conditions as they hold at that moment.
//! - **Ready.** The deployment is ready once every long-running member is ready and
//!   every one-shot member has succeeded at the same moment. This is latched: later
//!   restarts show in the members' states, not in the deployment's.
//! - **Restarts.** A member that ended by itself (or failed to start) is restarted when
//!   its [`RestartPolicy`] says so, after the [`Backoff`] delay counted from its end. A
//!   one-shot member that exited 0 has succeeded and is done.
//! - **Giving up (fail fast).** A member that ends or fails to start and will *not* be
//!   restarted — policy `no`, `on-failure` after a successful exit of a long-running
//!   pod, or the restart budget spent ([`MemberState::CrashLooping`]) — takes the whole
//!   deployment down at that moment, before or after ready: nothing starts or restarts
//!   any more, and every running member is closed. [`DeploymentMachine::failure`] names
//!   the member and how it failed.
//! - **Dependents of a restarting dependency** keep running: a database restart does
//!   not bounce every web server, which are expected to reconnect. Only a dependent that
//!   itself (re)starts waits for the dependency's condition again.
//! - **Dependents of a dependency that died for good** are closed with the rest of the
//!   deployment, by the rule above.
//! - **Close** (asked for, or after a failure): no start or restart happens any more;
//!   members waiting to start or backing off end at once; a running member is asked to
//!   close as soon as every member that depends on it has ended. This closes in reverse
//!   dependency order with each level in parallel — N independent members close in one
//!   grace period. A later close may shorten the grace period, never lengthen it.
//!
//! # Examples
//!
//! ```
//! use podvisor::core::deployment::{
//!     Condition, DeploymentAction, DeploymentEvent, DeploymentMachine, DeploymentSpec,
//!     DeploymentState, MemberId, PodTemplate,
//! };
//! use podvisor::core::{Generation, StartResult, Time};
//! use std::time::Duration;
//!
//! let spec = DeploymentSpec::new()
//!     .pod(PodTemplate::new("db"))
//!     .pod(PodTemplate::new("web").depends_on("db", Condition::Ready));
//! let mut deployment = DeploymentMachine::new(spec).unwrap();
//! let (db, web) = (MemberId(0), MemberId(1));
//! let g = Generation(1);
//!
//! deployment.handle(DeploymentEvent::Start, Time::ZERO);
//! let starts: Vec<_> = std::iter::from_fn(|| deployment.poll_action())
//!     .filter(|a| matches!(a, DeploymentAction::StartPod { .. }))
//!     .collect();
//! assert_eq!(starts, [DeploymentAction::StartPod { member: db, generation: g }]);
//!
//! let ready = StartResult::Ready { after: Duration::from_millis(5) };
//! deployment.handle(DeploymentEvent::PodStartResult { member: db, generation: g, result: ready.clone() }, Time::from_millis(5));
//! assert!(std::iter::from_fn(|| deployment.poll_action())
//!     .any(|a| a == DeploymentAction::StartPod { member: web, generation: g }));
//!
//! deployment.handle(DeploymentEvent::PodStartResult { member: web, generation: g, result: ready }, Time::from_millis(9));
//! assert_eq!(deployment.state(), DeploymentState::Ready);
//! ```

mod backoff;
#[cfg(feature = "oracles")]
mod check;
mod machine;
mod member;
mod observer;
mod restart;
mod spec;
mod vocabulary;

pub use backoff::{Backoff, BackoffError};
#[cfg(feature = "oracles")]
pub use check::{CheckedDeployment, DeploymentChecker};
pub use machine::DeploymentMachine;
#[cfg(feature = "oracles")]
pub use machine::DeploymentMutation;
pub use member::Member;
pub use observer::PodObserver;
#[cfg(feature = "oracles")]
pub use restart::jitter_draw;
pub use spec::{
    Condition, Dependency, DeploymentError, DeploymentSpec, PodTemplate, RestartPolicy,
};
pub use vocabulary::{
    Cause, DeploymentAction, DeploymentEvent, DeploymentStartResult, DeploymentState,
    DeploymentStats, Failure, MemberId, MemberState,
};
