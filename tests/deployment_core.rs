//! `DeploymentMachine`: validation errors, one test per transition (each step also checked
//! by the reference model `DeploymentChecker`), and a property suite over random
//! dependency graphs, replicas, restart policies and pod fates on virtual time.
//!
//! `DEPLOYMENT_CASES` sets the number of random scenarios (default 5,000: about a second in
//! debug). It is separate from `PROPTEST_CASES`, which CI sets for the pod suite.

use std::collections::BTreeMap;
use std::time::Duration;

use podvisor::core::deployment::{
    jitter_draw, Backoff, BackoffError, Cause, CheckedDeployment, Condition, DeploymentAction,
    DeploymentError, DeploymentEvent, DeploymentMachine, DeploymentMutation, DeploymentSpec,
    DeploymentStartResult, DeploymentState, MemberId, MemberState, PodObserver, PodTemplate,
    RestartPolicy,
};
use podvisor::core::{
    CheckSet, End, ExitStatus, Generation, SpawnError, SpawnErrorKind, StartFailure, StartResult,
    State, Time,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

const G1: Generation = Generation(1);
const G2: Generation = Generation(2);
const OK: ExitStatus = ExitStatus::Code(0);
const FAIL: ExitStatus = ExitStatus::Code(1);
const SIGTERM: ExitStatus = ExitStatus::Signal(15);

fn ms(n: u64) -> Time {
    Time::from_millis(n)
}

fn dur(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn ready_result() -> StartResult {
    StartResult::Ready { after: dur(1) }
}

/// Backoff without jitter: 100 ms doubling to 1 s, reset after 1 s, `budget` restarts.
fn plain_backoff(budget: Option<u32>) -> Backoff {
    Backoff {
        initial: dur(100),
        max: dur(1_000),
        jitter_percent: 0,
        reset_after: dur(1_000),
        budget,
    }
}

fn checked(spec: DeploymentSpec) -> CheckedDeployment {
    CheckedDeployment::new(spec).unwrap_or_else(|e| panic!("{e}"))
}

/// The actions of one step, with the members' names to read them by.
#[derive(Debug)]
struct Out {
    actions: Vec<DeploymentAction>,
    names: Vec<String>,
}

impl std::ops::Deref for Out {
    type Target = Vec<DeploymentAction>;
    fn deref(&self) -> &Self::Target {
        &self.actions
    }
}

impl PartialEq<Vec<DeploymentAction>> for Out {
    fn eq(&self, other: &Vec<DeploymentAction>) -> bool {
        &self.actions == other
    }
}

fn out(d: &CheckedDeployment, actions: Vec<DeploymentAction>) -> Out {
    let names = d
        .machine
        .members()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    Out { actions, names }
}

fn step(d: &mut CheckedDeployment, event: DeploymentEvent, at: Time) -> Out {
    let actions = d.handle(event, at).unwrap_or_else(|v| panic!("{v}"));
    out(d, actions)
}

/// Ticks at the machine's next deadline.
fn advance(d: &mut CheckedDeployment) -> Out {
    let actions = d
        .advance_to_timeout()
        .expect("a timer is armed")
        .unwrap_or_else(|v| panic!("{v}"));
    out(d, actions)
}

fn id(d: &CheckedDeployment, name: &str) -> MemberId {
    d.machine
        .find(name)
        .unwrap_or_else(|| panic!("no member {name}"))
}

/// The members started in a step, by name.
fn starts(out: &Out) -> Vec<String> {
    out.actions
        .iter()
        .filter_map(|a| match a {
            DeploymentAction::StartPod { member, .. } => Some(out.names[member.0].clone()),
            _ => None,
        })
        .collect()
}

/// The members asked to close in a step, by name, with the grace.
fn closes(out: &Out) -> Vec<(String, Option<Duration>)> {
    out.actions
        .iter()
        .filter_map(|a| match a {
            DeploymentAction::ClosePod { member, grace, .. } => {
                Some((out.names[member.0].clone(), *grace))
            }
            _ => None,
        })
        .collect()
}

fn close_names(out: &Out) -> Vec<String> {
    closes(out).into_iter().map(|(n, _)| n).collect()
}

fn started(d: &mut CheckedDeployment, name: &str, g: Generation, at: Time) -> Out {
    let member = id(d, name);
    step(
        d,
        DeploymentEvent::PodStarted {
            member,
            generation: g,
        },
        at,
    )
}

fn result(
    d: &mut CheckedDeployment,
    name: &str,
    g: Generation,
    result: StartResult,
    at: Time,
) -> Out {
    let member = id(d, name);
    step(
        d,
        DeploymentEvent::PodStartResult {
            member,
            generation: g,
            result,
        },
        at,
    )
}

fn ready(d: &mut CheckedDeployment, name: &str, g: Generation, at: Time) -> Out {
    result(d, name, g, ready_result(), at)
}

fn ended(d: &mut CheckedDeployment, name: &str, g: Generation, end: End, at: Time) -> Out {
    let member = id(d, name);
    step(
        d,
        DeploymentEvent::PodEnded {
            member,
            generation: g,
            end,
        },
        at,
    )
}

fn state_of(d: &CheckedDeployment, name: &str) -> MemberState {
    d.machine.member(id(d, name)).state()
}

fn start(d: &mut CheckedDeployment) -> Vec<String> {
    let actions = step(d, DeploymentEvent::Start, ms(0));
    starts(&actions)
}

/// db ◄─ready── api ◄─started── web×2, all long-running.
fn three_levels() -> DeploymentSpec {
    DeploymentSpec::new()
        .pod(PodTemplate::new("db"))
        .pod(PodTemplate::new("api").depends_on("db", Condition::Ready))
        .pod(
            PodTemplate::new("web")
                .replicas(2)
                .depends_on("api", Condition::Started),
        )
}

/// Brings `three_levels` up; returns it ready.
fn three_levels_up() -> CheckedDeployment {
    let mut d = checked(three_levels());
    assert_eq!(start(&mut d), ["db/0"]);
    ready(&mut d, "db/0", G1, ms(10));
    started(&mut d, "api/0", G1, ms(11));
    ready(&mut d, "api/0", G1, ms(20));
    ready(&mut d, "web/0", G1, ms(21));
    ready(&mut d, "web/1", G1, ms(22));
    assert_eq!(d.machine.state(), DeploymentState::Ready);
    d
}

// ---------------------------------------------------------------------------------------
// Validation

fn error_of(spec: DeploymentSpec) -> DeploymentError {
    let error = spec.validate().unwrap_err();
    assert_eq!(DeploymentMachine::new(spec).unwrap_err(), error);
    error
}

#[test]
fn no_pods_is_an_error() {
    let error = error_of(DeploymentSpec::new());
    assert_eq!(error, DeploymentError::NoPods);
    assert!(error.to_string().contains("no pods"), "{error}");
}

#[test]
fn empty_name_is_an_error() {
    let error = error_of(
        DeploymentSpec::new()
            .pod(PodTemplate::new("db"))
            .pod(PodTemplate::new("")),
    );
    assert_eq!(error, DeploymentError::EmptyName { index: 1 });
    assert!(error.to_string().contains("pod #1"), "{error}");
}

#[test]
fn slash_in_name_is_an_error() {
    let error = error_of(DeploymentSpec::new().pod(PodTemplate::new("web/x")));
    assert_eq!(
        error,
        DeploymentError::SlashInName {
            name: "web/x".into()
        }
    );
    assert!(
        error.to_string().contains("\"web/x\" contains '/'"),
        "{error}"
    );
}

#[test]
fn duplicate_names_are_an_error() {
    let error = error_of(
        DeploymentSpec::new()
            .pod(PodTemplate::new("db"))
            .pod(PodTemplate::new("web"))
            .pod(PodTemplate::new("db")),
    );
    assert_eq!(error, DeploymentError::DuplicateName { name: "db".into() });
    assert!(
        error.to_string().contains("\"db\" is used twice"),
        "{error}"
    );
}

#[test]
fn zero_replicas_is_an_error() {
    let error = error_of(DeploymentSpec::new().pod(PodTemplate::new("web").replicas(0)));
    assert_eq!(error, DeploymentError::ZeroReplicas { pod: "web".into() });
    assert_eq!(
        error.to_string(),
        "pod \"web\" has 0 replicas; expected at least 1"
    );
}

#[test]
fn unknown_dependency_is_an_error_naming_the_known_pods() {
    let error = error_of(
        DeploymentSpec::new()
            .pod(PodTemplate::new("db"))
            .pod(PodTemplate::new("web").depends_on("dbb", Condition::Ready)),
    );
    assert_eq!(
        error,
        DeploymentError::UnknownDependency {
            pod: "web".into(),
            dependency: "dbb".into(),
            known: vec!["db".into(), "web".into()],
        }
    );
    assert_eq!(
        error.to_string(),
        "pod \"web\" depends on \"dbb\", which is not in the deployment (its pods: db, web)"
    );
}

#[test]
fn problems_lists_every_problem_in_validates_order() {
    let spec = DeploymentSpec::new()
        .pod(PodTemplate::new("db").replicas(0))
        .pod(
            PodTemplate::new("web")
                .depends_on("dbb", Condition::Ready)
                .depends_on("db", Condition::Succeeded)
                .depends_on("api", Condition::Ready),
        )
        .pod(PodTemplate::new("api").depends_on("web", Condition::Started));
    let problems = spec.problems();
    assert_eq!(
        problems,
        vec![
            DeploymentError::ZeroReplicas { pod: "db".into() },
            DeploymentError::UnknownDependency {
                pod: "web".into(),
                dependency: "dbb".into(),
                known: vec!["db".into(), "web".into(), "api".into()],
            },
            DeploymentError::SucceededNeedsOneShot {
                pod: "web".into(),
                dependency: "db".into(),
            },
            DeploymentError::Cycle {
                pods: vec!["web".into(), "api".into(), "web".into()],
            },
        ]
    );
    // validate gives the first of them; a good spec has none.
    assert_eq!(spec.validate(), Err(problems[0].clone()));
    assert!(DeploymentSpec::new()
        .pod(PodTemplate::new("db"))
        .problems()
        .is_empty());
    assert_eq!(
        DeploymentSpec::new().problems(),
        vec![DeploymentError::NoPods]
    );
}

#[test]
fn duplicate_dependency_is_an_error() {
    let error = error_of(
        DeploymentSpec::new().pod(PodTemplate::new("db")).pod(
            PodTemplate::new("web")
                .depends_on("db", Condition::Ready)
                .depends_on("db", Condition::Started),
        ),
    );
    assert_eq!(
        error,
        DeploymentError::DuplicateDependency {
            pod: "web".into(),
            dependency: "db".into()
        }
    );
    assert!(error.to_string().contains("twice"), "{error}");
}

#[test]
fn succeeded_on_a_long_running_pod_is_an_error() {
    let error = error_of(
        DeploymentSpec::new()
            .pod(PodTemplate::new("db"))
            .pod(PodTemplate::new("web").depends_on("db", Condition::Succeeded)),
    );
    assert_eq!(
        error,
        DeploymentError::SucceededNeedsOneShot {
            pod: "web".into(),
            dependency: "db".into()
        }
    );
    assert!(error.to_string().contains("is not one-shot"), "{error}");
}

#[test]
fn one_shot_with_restart_always_is_an_error() {
    let error = error_of(
        DeploymentSpec::new().pod(
            PodTemplate::new("migrate")
                .one_shot()
                .restart(RestartPolicy::Always),
        ),
    );
    assert_eq!(
        error,
        DeploymentError::OneShotRestartsAlways {
            pod: "migrate".into()
        }
    );
    assert!(error.to_string().contains("use on-failure"), "{error}");
}

#[test]
fn unusable_backoffs_are_errors() {
    let with = |backoff: Backoff| {
        error_of(DeploymentSpec::new().pod(PodTemplate::new("web").backoff(backoff)))
    };
    let base = plain_backoff(Some(3));
    let zero = with(Backoff {
        initial: Duration::ZERO,
        ..base
    });
    assert_eq!(
        zero,
        DeploymentError::Backoff {
            pod: "web".into(),
            problem: BackoffError::ZeroInitial
        }
    );
    assert!(zero
        .to_string()
        .starts_with("pod \"web\": the first restart delay is zero"));
    let below = with(Backoff {
        max: dur(50),
        ..base
    });
    assert_eq!(
        below,
        DeploymentError::Backoff {
            pod: "web".into(),
            problem: BackoffError::CapBelowInitial {
                initial: dur(100),
                max: dur(50)
            }
        }
    );
    assert!(
        below
            .to_string()
            .contains("cap 50ms is below the first delay 100ms"),
        "{below}"
    );
    let jitter = with(Backoff {
        jitter_percent: 101,
        ..base
    });
    assert_eq!(
        jitter,
        DeploymentError::Backoff {
            pod: "web".into(),
            problem: BackoffError::JitterOver100 { percent: 101 }
        }
    );
    assert!(jitter.to_string().contains("101%"), "{jitter}");
}

#[test]
fn a_cycle_is_named_in_dependency_order() {
    let error = error_of(
        DeploymentSpec::new()
            .pod(PodTemplate::new("solo"))
            .pod(PodTemplate::new("a").depends_on("b", Condition::Ready))
            .pod(
                PodTemplate::new("b")
                    .depends_on("solo", Condition::Ready)
                    .depends_on("c", Condition::Started),
            )
            .pod(PodTemplate::new("c").depends_on("a", Condition::Ready)),
    );
    assert_eq!(
        error,
        DeploymentError::Cycle {
            pods: vec!["a".into(), "b".into(), "c".into(), "a".into()]
        }
    );
    assert_eq!(
        error.to_string(),
        "dependency cycle: a → b → c → a; pods on a cycle would wait for each other forever"
    );
}

#[test]
fn a_pod_depending_on_itself_is_a_cycle() {
    let error = error_of(
        DeploymentSpec::new().pod(PodTemplate::new("loop").depends_on("loop", Condition::Ready)),
    );
    assert_eq!(
        error,
        DeploymentError::Cycle {
            pods: vec!["loop".into(), "loop".into()]
        }
    );
    assert!(
        error.to_string().contains("\"loop\" depends on itself"),
        "{error}"
    );
}

#[test]
fn a_diamond_is_not_a_cycle() {
    let spec = DeploymentSpec::new()
        .pod(PodTemplate::new("db"))
        .pod(PodTemplate::new("left").depends_on("db", Condition::Ready))
        .pod(PodTemplate::new("right").depends_on("db", Condition::Ready))
        .pod(
            PodTemplate::new("top")
                .depends_on("left", Condition::Ready)
                .depends_on("right", Condition::Ready),
        );
    assert_eq!(spec.validate(), Ok(()));
}

// ---------------------------------------------------------------------------------------
// Members and starting

#[test]
fn replicas_are_named_and_ordered() {
    let d = checked(three_levels());
    let names: Vec<_> = d.machine.members().iter().map(|m| m.name()).collect();
    assert_eq!(names, ["db/0", "api/0", "web/0", "web/1"]);
    assert_eq!(d.machine.find("web/1"), Some(MemberId(3)));
    assert_eq!(
        d.machine.members_of(2).collect::<Vec<_>>(),
        [MemberId(2), MemberId(3)]
    );
    assert_eq!(d.machine.member(MemberId(3)).replica(), 1);
    assert_eq!(d.machine.member(MemberId(3)).template(), 2);
    assert!(d
        .machine
        .members()
        .iter()
        .all(|m| m.state() == MemberState::Waiting && m.generation() == Generation(0)));
    assert_eq!(d.machine.state(), DeploymentState::Created);
}

#[test]
fn independent_pods_start_together_once() {
    let mut d = checked(
        DeploymentSpec::new()
            .pod(PodTemplate::new("a"))
            .pod(PodTemplate::new("b").replicas(3)),
    );
    let actions = step(&mut d, DeploymentEvent::Start, ms(0));
    assert_eq!(starts(&actions), ["a/0", "b/0", "b/1", "b/2"]);
    assert!(actions.contains(&DeploymentAction::StateChanged {
        state: DeploymentState::Starting
    }));
    assert!(actions.contains(&DeploymentAction::MemberChanged {
        member: MemberId(0),
        state: MemberState::Starting
    }));
    assert_eq!(step(&mut d, DeploymentEvent::Start, ms(1)), vec![]);
    assert_eq!(d.machine.poll_timeout(), None);
}

#[test]
fn a_started_condition_waits_for_the_started_report_only() {
    let mut d = checked(three_levels());
    start(&mut d);
    ready(&mut d, "db/0", G1, ms(10));
    let actions = started(&mut d, "api/0", G1, ms(11));
    assert_eq!(starts(&actions), ["web/0", "web/1"]);
    assert_eq!(state_of(&d, "api/0"), MemberState::Started);
}

#[test]
fn a_ready_condition_ignores_started() {
    let mut d = checked(three_levels());
    start(&mut d);
    let actions = started(&mut d, "db/0", G1, ms(5));
    assert_eq!(starts(&actions), Vec::<String>::new());
    assert_eq!(state_of(&d, "api/0"), MemberState::Waiting);
    let actions = ready(&mut d, "db/0", G1, ms(10));
    assert_eq!(starts(&actions), ["api/0"]);
}

#[test]
fn a_dependency_on_replicas_waits_for_every_replica() {
    let mut d = checked(
        DeploymentSpec::new()
            .pod(PodTemplate::new("db").replicas(2))
            .pod(PodTemplate::new("web").depends_on("db", Condition::Ready)),
    );
    assert_eq!(start(&mut d), ["db/0", "db/1"]);
    assert!(starts(&ready(&mut d, "db/1", G1, ms(5))).is_empty());
    assert_eq!(starts(&ready(&mut d, "db/0", G1, ms(9))), ["web/0"]);
}

#[test]
fn the_deployment_is_ready_when_every_member_is() {
    let d = three_levels_up();
    assert_eq!(
        d.machine.start_result(),
        Some(&DeploymentStartResult::Ready { after: dur(22) })
    );
    assert!(d.machine.start_result().unwrap().is_ready());
    assert_eq!(d.machine.failure(), None);
}

#[test]
fn a_one_shot_job_gates_on_success_and_then_is_done() {
    let mut d = checked(
        DeploymentSpec::new()
            .pod(PodTemplate::new("db"))
            .pod(
                PodTemplate::new("migrate")
                    .one_shot()
                    .depends_on("db", Condition::Ready),
            )
            .pod(PodTemplate::new("web").depends_on("migrate", Condition::Succeeded)),
    );
    start(&mut d);
    assert_eq!(starts(&ready(&mut d, "db/0", G1, ms(5))), ["migrate/0"]);
    // Ready is not enough for a one-shot job.
    assert!(starts(&ready(&mut d, "migrate/0", G1, ms(6))).is_empty());
    let actions = ended(&mut d, "migrate/0", G1, End::Exited(OK), ms(50));
    assert_eq!(starts(&actions), ["web/0"]);
    assert_eq!(state_of(&d, "migrate/0"), MemberState::Succeeded);
    assert_eq!(d.machine.state(), DeploymentState::Starting);
    ready(&mut d, "web/0", G1, ms(60));
    assert_eq!(d.machine.state(), DeploymentState::Ready);
}

#[test]
fn a_one_shot_job_that_exits_zero_before_ready_succeeded() {
    let mut d = checked(
        DeploymentSpec::new()
            .pod(PodTemplate::new("migrate").one_shot())
            .pod(PodTemplate::new("web").depends_on("migrate", Condition::Succeeded)),
    );
    start(&mut d);
    started(&mut d, "migrate/0", G1, ms(1));
    result(
        &mut d,
        "migrate/0",
        G1,
        StartResult::ExitedEarly { status: OK },
        ms(5),
    );
    assert_eq!(state_of(&d, "migrate/0"), MemberState::Stopping);
    assert_eq!(d.machine.failure(), None);
    let actions = ended(&mut d, "migrate/0", G1, End::Exited(OK), ms(5));
    assert_eq!(starts(&actions), ["web/0"]);
}

#[test]
fn a_deployment_of_one_shot_jobs_ends_when_all_succeeded() {
    let mut d = checked(
        DeploymentSpec::new()
            .pod(PodTemplate::new("a").one_shot())
            .pod(
                PodTemplate::new("b")
                    .one_shot()
                    .depends_on("a", Condition::Succeeded),
            ),
    );
    start(&mut d);
    ready(&mut d, "a/0", G1, ms(1));
    ended(&mut d, "a/0", G1, End::Exited(OK), ms(2));
    ready(&mut d, "b/0", G1, ms(3));
    let actions = ended(&mut d, "b/0", G1, End::Exited(OK), ms(4));
    assert!(actions.contains(&DeploymentAction::StateChanged {
        state: DeploymentState::Ready
    }));
    assert!(actions.contains(&DeploymentAction::StateChanged {
        state: DeploymentState::Ended
    }));
    assert_eq!(d.machine.state(), DeploymentState::Ended);
    assert_eq!(d.machine.failure(), None);
}

#[test]
fn a_failed_one_shot_job_is_restarted_on_failure_or_fails_the_deployment() {
    let spec = |policy| {
        DeploymentSpec::new()
            .pod(
                PodTemplate::new("migrate")
                    .one_shot()
                    .restart(policy)
                    .backoff(plain_backoff(Some(3))),
            )
            .pod(PodTemplate::new("web").depends_on("migrate", Condition::Succeeded))
    };
    // on-failure: the job runs again, and its success lets web start.
    let mut d = checked(spec(RestartPolicy::OnFailure));
    start(&mut d);
    ready(&mut d, "migrate/0", G1, ms(1));
    ended(&mut d, "migrate/0", G1, End::Exited(FAIL), ms(10));
    assert_eq!(state_of(&d, "migrate/0"), MemberState::BackingOff);
    assert_eq!(starts(&advance(&mut d)), ["migrate/0"]);
    ready(&mut d, "migrate/0", G2, ms(111));
    let actions = ended(&mut d, "migrate/0", G2, End::Exited(OK), ms(120));
    assert_eq!(starts(&actions), ["web/0"]);
    // no: the failure takes the deployment down before web ever starts.
    let mut d = checked(spec(RestartPolicy::No));
    start(&mut d);
    ready(&mut d, "migrate/0", G1, ms(1));
    ended(&mut d, "migrate/0", G1, End::Exited(FAIL), ms(10));
    assert_eq!(d.machine.state(), DeploymentState::Ended);
    assert_eq!(
        d.machine.failure().unwrap().cause,
        Cause::Ended(End::Exited(FAIL))
    );
    assert_eq!(
        d.machine.member(id(&d, "web/0")).generation(),
        Generation(0)
    );
}

// ---------------------------------------------------------------------------------------
// Fail fast

#[test]
fn a_failed_start_closes_everything_in_reverse_order() {
    let mut d = checked(three_levels());
    start(&mut d);
    ready(&mut d, "db/0", G1, ms(10));
    started(&mut d, "api/0", G1, ms(11));
    // web/0 runs; web/1 fails to spawn.
    ready(&mut d, "web/0", G1, ms(12));
    let error = SpawnError {
        kind: SpawnErrorKind::NotFound,
        errno: Some(2),
    };
    let failed = StartResult::FailedToStart(StartFailure::Spawn(error));
    let actions = result(&mut d, "web/1", G1, failed.clone(), ms(13));
    // The leaves close at once (web/1 too: its pod may still hold resources).
    assert_eq!(close_names(&actions), ["web/0", "web/1"]);
    assert_eq!(d.machine.state(), DeploymentState::Stopping);
    let failure = d.machine.failure().unwrap().clone();
    assert_eq!(failure.name, "web/1");
    assert_eq!(failure.cause, Cause::Start(failed));
    assert_eq!(
        d.machine.start_result(),
        Some(&DeploymentStartResult::Failed(failure.clone()))
    );
    assert_eq!(
        failure.to_string(),
        "pod web/1 failed to start: its process could not be spawned (NotFound, errno 2); restart policy no does not restart it"
    );
    assert!(close_names(&ended(&mut d, "web/1", G1, End::NeverSpawned, ms(13))).is_empty());
    // api closes once both web replicas ended, db once api did.
    let actions = ended(&mut d, "web/0", G1, End::Closed(SIGTERM), ms(20));
    assert_eq!(close_names(&actions), ["api/0"]);
    let actions = ended(&mut d, "api/0", G1, End::Closed(SIGTERM), ms(30));
    assert_eq!(close_names(&actions), ["db/0"]);
    let actions = ended(
        &mut d,
        "db/0",
        G1,
        End::Killed(ExitStatus::Signal(9)),
        ms(40),
    );
    assert_eq!(
        actions.last(),
        Some(&DeploymentAction::StateChanged {
            state: DeploymentState::Ended
        })
    );
    assert!(d
        .machine
        .members()
        .iter()
        .all(|m| m.state() == MemberState::Ended));
}

#[test]
fn a_timed_out_member_fails_the_deployment_and_waiting_members_never_start() {
    let mut d = checked(three_levels());
    start(&mut d);
    started(&mut d, "db/0", G1, ms(1));
    let timed_out = StartResult::TimedOut {
        waited: dur(500),
        pending: CheckSet::first(1),
    };
    let actions = result(&mut d, "db/0", G1, timed_out, ms(500));
    assert_eq!(
        closes(&actions),
        [("db/0".to_string(), None)],
        "nothing depends on a running db yet"
    );
    assert_eq!(state_of(&d, "api/0"), MemberState::Ended);
    assert_eq!(state_of(&d, "web/1"), MemberState::Ended);
    let failure = d.machine.failure().unwrap();
    assert_eq!(
        failure.to_string(),
        "pod db/0 was not ready after 500ms; restart policy no does not restart it"
    );
    ended(
        &mut d,
        "db/0",
        G1,
        End::Killed(ExitStatus::Signal(9)),
        ms(600),
    );
    assert_eq!(d.machine.state(), DeploymentState::Ended);
    assert!(d.machine.members().iter().all(|m| m.generation().0 <= 1));
}

#[test]
fn exited_early_fails_the_deployment() {
    let mut d = checked(three_levels());
    start(&mut d);
    started(&mut d, "db/0", G1, ms(1));
    result(
        &mut d,
        "db/0",
        G1,
        StartResult::ExitedEarly { status: FAIL },
        ms(3),
    );
    assert_eq!(
        d.machine.failure().unwrap().to_string(),
        "pod db/0 exited before it was ready (exit code 1); restart policy no does not restart it"
    );
    ended(&mut d, "db/0", G1, End::Exited(FAIL), ms(3));
    assert_eq!(d.machine.state(), DeploymentState::Ended);
}

#[test]
fn a_member_ending_after_ready_without_restart_takes_the_deployment_down() {
    let mut d = three_levels_up();
    let actions = ended(&mut d, "api/0", G1, End::Exited(OK), ms(100));
    // Everything closes: web (api's dependents) and db (whose only dependent, api, is
    // gone already).
    assert_eq!(close_names(&actions), ["db/0", "web/0", "web/1"]);
    let failure = d.machine.failure().unwrap();
    assert_eq!(failure.cause, Cause::Ended(End::Exited(OK)));
    assert_eq!(
        failure.to_string(),
        "pod api/0 ended by itself (exit code 0); restart policy no does not restart it"
    );
    // The start result stays Ready: the failure came later.
    assert!(d.machine.start_result().unwrap().is_ready());
    ended(&mut d, "web/0", G1, End::Closed(SIGTERM), ms(110));
    ended(&mut d, "web/1", G1, End::Closed(SIGTERM), ms(120));
    ended(&mut d, "db/0", G1, End::Closed(SIGTERM), ms(130));
    assert_eq!(d.machine.state(), DeploymentState::Ended);
    assert_eq!(state_of(&d, "api/0"), MemberState::Ended);
}

#[test]
fn a_start_failure_during_close_is_not_a_failure() {
    let mut d = checked(three_levels());
    start(&mut d);
    started(&mut d, "db/0", G1, ms(1));
    let actions = step(&mut d, DeploymentEvent::Close { grace: None }, ms(2));
    assert_eq!(close_names(&actions), ["db/0"]);
    result(&mut d, "db/0", G1, StartResult::Cancelled, ms(3));
    ended(&mut d, "db/0", G1, End::Closed(SIGTERM), ms(4));
    assert_eq!(d.machine.failure(), None);
    assert_eq!(
        d.machine.start_result(),
        Some(&DeploymentStartResult::Cancelled)
    );
    assert_eq!(d.machine.state(), DeploymentState::Ended);
}

// ---------------------------------------------------------------------------------------
// Close

#[test]
fn close_goes_down_level_by_level_with_the_grace_given() {
    let mut d = three_levels_up();
    let grace = Some(dur(200));
    let actions = step(&mut d, DeploymentEvent::Close { grace }, ms(100));
    assert_eq!(
        closes(&actions),
        [("web/0".to_string(), grace), ("web/1".to_string(), grace)]
    );
    assert!(actions.contains(&DeploymentAction::StateChanged {
        state: DeploymentState::Stopping
    }));
    assert!(close_names(&ended(&mut d, "web/1", G1, End::Closed(SIGTERM), ms(110))).is_empty());
    assert_eq!(
        closes(&ended(&mut d, "web/0", G1, End::Closed(SIGTERM), ms(120))),
        [("api/0".to_string(), grace)]
    );
    assert_eq!(
        close_names(&ended(&mut d, "api/0", G1, End::Closed(SIGTERM), ms(130))),
        ["db/0"]
    );
    ended(&mut d, "db/0", G1, End::Closed(SIGTERM), ms(140));
    assert_eq!(d.machine.state(), DeploymentState::Ended);
    assert_eq!(d.machine.failure(), None);
    // Closing an ended deployment does nothing.
    assert_eq!(
        step(&mut d, DeploymentEvent::Close { grace: None }, ms(150)),
        vec![]
    );
}

#[test]
fn independent_pods_close_all_at_once() {
    let mut d = checked(DeploymentSpec::new().pod(PodTemplate::new("w").replicas(100)));
    assert_eq!(start(&mut d).len(), 100);
    let actions = step(&mut d, DeploymentEvent::Close { grace: None }, ms(5));
    assert_eq!(closes(&actions).len(), 100);
}

#[test]
fn a_later_close_shortens_the_grace_never_lengthens_it() {
    let mut d = three_levels_up();
    step(
        &mut d,
        DeploymentEvent::Close {
            grace: Some(dur(500)),
        },
        ms(100),
    );
    assert!(closes(&step(
        &mut d,
        DeploymentEvent::Close {
            grace: Some(dur(900))
        },
        ms(101)
    ))
    .is_empty());
    assert!(closes(&step(
        &mut d,
        DeploymentEvent::Close { grace: None },
        ms(102)
    ))
    .is_empty());
    let actions = step(
        &mut d,
        DeploymentEvent::Close {
            grace: Some(dur(50)),
        },
        ms(103),
    );
    assert_eq!(
        closes(&actions),
        [
            ("web/0".to_string(), Some(dur(50))),
            ("web/1".to_string(), Some(dur(50)))
        ]
    );
    ended(&mut d, "web/0", G1, End::Closed(SIGTERM), ms(110));
    let actions = ended(&mut d, "web/1", G1, End::Closed(SIGTERM), ms(110));
    assert_eq!(closes(&actions), [("api/0".to_string(), Some(dur(50)))]);
}

/// A `down` with a grace after a plain one caps the members' own graces, never replaces
/// them: the members not yet closing are asked with their own grace and then with the
/// later one (a pod takes a later close only when it shortens its grace), so a pod whose
/// own grace is shorter keeps it.
#[test]
fn a_grace_after_a_plain_close_caps_the_members_own_graces() {
    let mut d = three_levels_up();
    let actions = step(&mut d, DeploymentEvent::Close { grace: None }, ms(100));
    assert_eq!(
        closes(&actions),
        [("web/0".to_string(), None), ("web/1".to_string(), None)]
    );
    let actions = step(
        &mut d,
        DeploymentEvent::Close {
            grace: Some(dur(300)),
        },
        ms(101),
    );
    assert_eq!(
        closes(&actions),
        [
            ("web/0".to_string(), Some(dur(300))),
            ("web/1".to_string(), Some(dur(300)))
        ]
    );
    ended(&mut d, "web/0", G1, End::Closed(SIGTERM), ms(110));
    let actions = ended(&mut d, "web/1", G1, End::Closed(SIGTERM), ms(110));
    assert_eq!(
        closes(&actions),
        [
            ("api/0".to_string(), None),
            ("api/0".to_string(), Some(dur(300)))
        ]
    );
    // A shorter one still shortens, for those closing and those to come.
    let actions = step(
        &mut d,
        DeploymentEvent::Close {
            grace: Some(dur(100)),
        },
        ms(120),
    );
    assert_eq!(closes(&actions), [("api/0".to_string(), Some(dur(100)))]);
    let actions = ended(&mut d, "api/0", G1, End::Closed(SIGTERM), ms(130));
    assert_eq!(
        closes(&actions),
        [
            ("db/0".to_string(), None),
            ("db/0".to_string(), Some(dur(100)))
        ]
    );
}

#[test]
fn close_before_start_ends_at_once() {
    let mut d = checked(three_levels());
    let actions = step(&mut d, DeploymentEvent::Close { grace: None }, ms(0));
    assert_eq!(
        actions.last(),
        Some(&DeploymentAction::StateChanged {
            state: DeploymentState::Ended
        })
    );
    assert_eq!(
        d.machine.start_result(),
        Some(&DeploymentStartResult::Cancelled)
    );
    assert_eq!(step(&mut d, DeploymentEvent::Start, ms(1)), vec![]);
    assert!(d
        .machine
        .members()
        .iter()
        .all(|m| m.state() == MemberState::Ended));
}

// ---------------------------------------------------------------------------------------
// Restarts

fn restarting(policy: RestartPolicy, budget: Option<u32>) -> CheckedDeployment {
    let mut d = checked(
        DeploymentSpec::new().pod(PodTemplate::new("db")).pod(
            PodTemplate::new("web")
                .depends_on("db", Condition::Ready)
                .restart(policy)
                .backoff(plain_backoff(budget)),
        ),
    );
    start(&mut d);
    ready(&mut d, "db/0", G1, ms(10));
    ready(&mut d, "web/0", G1, ms(20));
    d
}

#[test]
fn on_failure_restarts_a_crash_after_its_delay() {
    let mut d = restarting(RestartPolicy::OnFailure, Some(3));
    let actions = ended(&mut d, "web/0", G1, End::Exited(FAIL), ms(100));
    assert!(actions.contains(&DeploymentAction::MemberChanged {
        member: MemberId(1),
        state: MemberState::BackingOff
    }));
    let web = d.machine.member(MemberId(1));
    assert_eq!(web.restart_at(), Some(ms(200)));
    assert_eq!(web.last_delay(), Some(dur(100)));
    assert_eq!(web.restarts_since_reset(), 1);
    assert_eq!(d.machine.poll_timeout(), Some(ms(200)));
    assert_eq!(d.machine.state(), DeploymentState::Ready);
    // Nothing before the delay runs out.
    assert!(starts(&step(&mut d, DeploymentEvent::Tick, ms(199))).is_empty());
    let actions = advance(&mut d);
    assert_eq!(
        actions
            .iter()
            .find(|a| matches!(a, DeploymentAction::StartPod { .. })),
        Some(&DeploymentAction::StartPod {
            member: MemberId(1),
            generation: G2
        })
    );
    assert_eq!(d.machine.member(MemberId(1)).restarts(), 1);
    // Events about the old pod are ignored from now on.
    let before = d.machine.stats().ignored;
    ended(&mut d, "web/0", G1, End::Exited(FAIL), ms(201));
    assert_eq!(d.machine.stats().ignored, before + 1);
    ready(&mut d, "web/0", G2, ms(210));
    assert_eq!(state_of(&d, "web/0"), MemberState::Ready);
}

#[test]
fn on_failure_also_restarts_a_failed_start() {
    let mut d = checked(
        DeploymentSpec::new().pod(
            PodTemplate::new("web")
                .restart(RestartPolicy::OnFailure)
                .backoff(plain_backoff(Some(3))),
        ),
    );
    start(&mut d);
    started(&mut d, "web/0", G1, ms(1));
    result(
        &mut d,
        "web/0",
        G1,
        StartResult::ExitedEarly { status: FAIL },
        ms(5),
    );
    assert_eq!(d.machine.failure(), None);
    assert_eq!(state_of(&d, "web/0"), MemberState::Stopping);
    ended(&mut d, "web/0", G1, End::Exited(FAIL), ms(5));
    assert_eq!(d.machine.member(MemberId(0)).restart_at(), Some(ms(105)));
    advance(&mut d);
    ready(&mut d, "web/0", G2, ms(110));
    assert_eq!(
        d.machine.start_result(),
        Some(&DeploymentStartResult::Ready { after: dur(110) })
    );
}

#[test]
fn on_failure_does_not_restart_a_clean_exit() {
    let mut d = restarting(RestartPolicy::OnFailure, Some(3));
    ended(&mut d, "web/0", G1, End::Exited(OK), ms(100));
    assert_eq!(d.machine.state(), DeploymentState::Stopping);
    assert_eq!(
        d.machine.failure().unwrap().restart,
        RestartPolicy::OnFailure
    );
    assert_eq!(state_of(&d, "web/0"), MemberState::Ended);
}

#[test]
fn always_restarts_a_clean_exit() {
    let mut d = restarting(RestartPolicy::Always, Some(3));
    ended(&mut d, "web/0", G1, End::Exited(OK), ms(100));
    assert_eq!(state_of(&d, "web/0"), MemberState::BackingOff);
    assert_eq!(d.machine.failure(), None);
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let mut d = restarting(RestartPolicy::Always, None);
    let mut at = 100;
    let mut delays = Vec::new();
    for g in 1..=7 {
        ended(&mut d, "web/0", Generation(g), End::Exited(FAIL), ms(at));
        let delay = d.machine.member(MemberId(1)).last_delay().unwrap();
        delays.push(delay.as_millis());
        advance(&mut d);
        at = d.machine.now().as_nanos() / 1_000_000 + 10;
        // Ready only briefly: no reset.
        ready(&mut d, "web/0", Generation(g + 1), ms(at - 5));
    }
    assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 1000]);
}

#[test]
fn a_stable_run_resets_the_backoff() {
    let mut d = restarting(RestartPolicy::OnFailure, Some(2));
    ended(&mut d, "web/0", G1, End::Exited(FAIL), ms(100));
    advance(&mut d); // gen 2 at 200
    ready(&mut d, "web/0", G2, ms(210));
    ended(&mut d, "web/0", G2, End::Exited(FAIL), ms(300));
    assert_eq!(d.machine.member(MemberId(1)).last_delay(), Some(dur(200)));
    advance(&mut d); // gen 3 at 500
    ready(&mut d, "web/0", Generation(3), ms(510));
    // Ready for exactly reset_after (1 s): the count starts over, so the budget of 2 is
    // not spent and the delay is the first one again.
    ended(&mut d, "web/0", Generation(3), End::Exited(FAIL), ms(1_510));
    let web = d.machine.member(MemberId(1));
    assert_eq!(web.state(), MemberState::BackingOff);
    assert_eq!(web.last_delay(), Some(dur(100)));
    assert_eq!(web.restarts_since_reset(), 1);
    assert_eq!(web.restarts(), 2);
}

#[test]
fn a_spent_budget_marks_the_member_crash_looping_and_fails_the_deployment() {
    let mut d = restarting(RestartPolicy::OnFailure, Some(2));
    ended(&mut d, "web/0", G1, End::Exited(FAIL), ms(100));
    advance(&mut d);
    ended(&mut d, "web/0", G2, End::Exited(FAIL), ms(250));
    advance(&mut d);
    let actions = ended(&mut d, "web/0", Generation(3), End::Exited(FAIL), ms(700));
    assert!(actions.contains(&DeploymentAction::MemberChanged {
        member: MemberId(1),
        state: MemberState::CrashLooping
    }));
    assert_eq!(close_names(&actions), ["db/0"]);
    let failure = d.machine.failure().unwrap();
    assert_eq!(failure.crash_looping_after, Some(2));
    assert_eq!(
        failure.to_string(),
        "pod web/0 ended by itself (exit code 1); it is crash-looping: 2 restarts since it last ran stably, and no more are allowed"
    );
    ended(&mut d, "db/0", G1, End::Closed(SIGTERM), ms(710));
    assert_eq!(d.machine.state(), DeploymentState::Ended);
    assert_eq!(state_of(&d, "web/0"), MemberState::CrashLooping);
}

#[test]
fn a_zero_budget_gives_up_on_a_failed_start_at_once() {
    let mut d = checked(
        DeploymentSpec::new().pod(
            PodTemplate::new("web")
                .restart(RestartPolicy::OnFailure)
                .backoff(plain_backoff(Some(0))),
        ),
    );
    start(&mut d);
    let actions = result(
        &mut d,
        "web/0",
        G1,
        StartResult::TimedOut {
            waited: dur(50),
            pending: CheckSet::EMPTY,
        },
        ms(50),
    );
    assert_eq!(close_names(&actions), ["web/0"]);
    assert_eq!(d.machine.failure().unwrap().crash_looping_after, Some(0));
    ended(
        &mut d,
        "web/0",
        G1,
        End::Killed(ExitStatus::Signal(9)),
        ms(60),
    );
    assert_eq!(state_of(&d, "web/0"), MemberState::CrashLooping);
}

#[test]
fn dependents_keep_running_while_a_dependency_restarts_and_restart_after_it() {
    let mut d = checked(
        DeploymentSpec::new()
            .pod(
                PodTemplate::new("db")
                    .restart(RestartPolicy::Always)
                    .backoff(plain_backoff(None)),
            )
            .pod(
                PodTemplate::new("web")
                    .depends_on("db", Condition::Ready)
                    .restart(RestartPolicy::Always)
                    .backoff(plain_backoff(None)),
            ),
    );
    start(&mut d);
    ready(&mut d, "db/0", G1, ms(10));
    ready(&mut d, "web/0", G1, ms(20));
    // db crashes: web is left alone.
    let actions = ended(&mut d, "db/0", G1, End::Exited(FAIL), ms(100));
    assert!(closes(&actions).is_empty());
    assert_eq!(state_of(&d, "web/0"), MemberState::Ready);
    // web crashes while db is still backing off: its restart waits for db to be ready.
    ended(&mut d, "web/0", G1, End::Exited(FAIL), ms(150));
    let actions = advance(&mut d); // 200: db restarts
    assert_eq!(starts(&actions), ["db/0"]);
    let actions = advance(&mut d); // 250: web's delay is over
    assert!(starts(&actions).is_empty());
    assert_eq!(state_of(&d, "web/0"), MemberState::Waiting);
    assert!(starts(&started(&mut d, "db/0", G2, ms(260))).is_empty());
    assert_eq!(starts(&ready(&mut d, "db/0", G2, ms(270))), ["web/0"]);
}

#[test]
fn no_restart_after_close() {
    let mut d = restarting(RestartPolicy::Always, None);
    ended(&mut d, "web/0", G1, End::Exited(FAIL), ms(100));
    assert_eq!(d.machine.poll_timeout(), Some(ms(200)));
    let actions = step(&mut d, DeploymentEvent::Close { grace: None }, ms(150));
    assert_eq!(close_names(&actions), ["db/0"]);
    assert_eq!(state_of(&d, "web/0"), MemberState::Ended);
    assert_eq!(d.machine.poll_timeout(), None);
    assert!(starts(&step(&mut d, DeploymentEvent::Tick, ms(1_000))).is_empty());
}

#[test]
fn jitter_is_seeded_and_bounded() {
    let backoff = Backoff {
        jitter_percent: 50,
        ..plain_backoff(None)
    };
    let delay = |seed, member, restart| backoff.delay(0, jitter_draw(seed, member, restart));
    assert_eq!(delay(7, 0, 0), delay(7, 0, 0));
    let spread: std::collections::BTreeSet<_> = (0..20).map(|m| delay(7, m, 0)).collect();
    assert!(spread.len() > 10, "jitter spreads members: {spread:?}");
    assert!(
        spread.iter().all(|d| *d >= dur(100) && *d < dur(150)),
        "{spread:?}"
    );
    assert_ne!(delay(7, 0, 0), delay(8, 0, 0));
    // Extreme draws stay within [base, base·1.5) and under the cap.
    assert_eq!(backoff.delay(0, 0), dur(100));
    assert!(backoff.delay(0, u64::MAX) < dur(150));
    assert_eq!(backoff.delay(3, u64::MAX), dur(1_000));
    assert_eq!(backoff.delay(u32::MAX, u64::MAX), dur(1_000));
}

#[test]
fn the_same_seed_gives_the_same_restart_times() {
    let run = |seed| {
        let mut spec = DeploymentSpec::new().seed(seed).pod(
            PodTemplate::new("web")
                .replicas(3)
                .restart(RestartPolicy::Always)
                .backoff(Backoff {
                    jitter_percent: 100,
                    ..plain_backoff(None)
                }),
        );
        spec.templates[0].backoff.budget = None;
        let mut d = checked(spec);
        start(&mut d);
        for r in 0..3 {
            ended(&mut d, &format!("web/{r}"), G1, End::Exited(FAIL), ms(10));
        }
        d.machine
            .members()
            .iter()
            .map(|m| m.restart_at().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

// ---------------------------------------------------------------------------------------
// Odd input

#[test]
fn stale_and_unknown_events_are_ignored_and_counted() {
    let mut d = checked(three_levels());
    start(&mut d);
    let before = d.machine.stats().ignored;
    step(
        &mut d,
        DeploymentEvent::PodStarted {
            member: MemberId(99),
            generation: G1,
        },
        ms(1),
    );
    started(&mut d, "db/0", G2, ms(1));
    started(&mut d, "api/0", G1, ms(1)); // never started
    ready(&mut d, "db/0", G1, ms(2));
    ready(&mut d, "db/0", G1, ms(3)); // a second start result
    assert_eq!(d.machine.stats().ignored, before + 4);
    assert_eq!(state_of(&d, "api/0"), MemberState::Starting);
}

#[test]
fn time_going_back_is_counted_and_clamped() {
    let mut d = checked(three_levels());
    step(&mut d, DeploymentEvent::Start, ms(100));
    step(&mut d, DeploymentEvent::Tick, ms(50));
    assert_eq!(d.machine.stats().time_went_back, 1);
    assert_eq!(d.machine.now(), ms(100));
}

#[test]
fn failure_messages_name_the_member_and_the_cause() {
    let mut d = checked(DeploymentSpec::new().pod(PodTemplate::new("job")));
    start(&mut d);
    result(
        &mut d,
        "job/0",
        G1,
        StartResult::FailedToStart(StartFailure::Runtime {
            status: FAIL,
            error: Some("setup: no config".into()),
            errno: None,
        }),
        ms(1),
    );
    assert_eq!(
        d.machine.failure().unwrap().to_string(),
        "pod job/0 failed to start: it ended (exit code 1) before it reported started: setup: no config; restart policy no does not restart it"
    );
    let mut d = checked(DeploymentSpec::new().pod(PodTemplate::new("job")));
    start(&mut d);
    ready(&mut d, "job/0", G1, ms(1));
    ended(&mut d, "job/0", G1, End::Closed(SIGTERM), ms(2));
    assert_eq!(
        d.machine.failure().unwrap().to_string(),
        "pod job/0 was stopped by something other than the deployment (signal 15); restart policy no does not restart it"
    );
    let mut d = checked(DeploymentSpec::new().pod(PodTemplate::new("job")));
    start(&mut d);
    result(&mut d, "job/0", G1, StartResult::Cancelled, ms(1));
    assert!(d
        .machine
        .failure()
        .unwrap()
        .to_string()
        .contains("closed before it was ready, by something other than the deployment"));
}

#[test]
fn the_pod_observer_reports_each_fact_once_in_order() {
    let (member, generation) = (MemberId(2), Generation(3));
    let mut observer = PodObserver::new(member, generation);
    assert!(observer.observe(State::Spawning, None, None).is_empty());
    assert_eq!(
        observer.observe(State::Started, None, None),
        [DeploymentEvent::PodStarted { member, generation }]
    );
    // A pod seen only after it exited early: started, result and end at once.
    let mut late = PodObserver::new(member, generation);
    let early = StartResult::ExitedEarly { status: FAIL };
    let events = late.observe(State::Ended, Some(&early), Some(End::Exited(FAIL)));
    assert_eq!(
        events,
        [
            DeploymentEvent::PodStarted { member, generation },
            DeploymentEvent::PodStartResult {
                member,
                generation,
                result: early.clone()
            },
            DeploymentEvent::PodEnded {
                member,
                generation,
                end: End::Exited(FAIL)
            },
        ]
    );
    assert!(late.ended());
    assert!(late
        .observe(State::Ended, Some(&early), Some(End::Exited(FAIL)))
        .is_empty());
    // A spawn failure never reports started.
    let mut never = PodObserver::new(member, generation);
    let failed = StartResult::FailedToStart(StartFailure::Spawn(SpawnError {
        kind: SpawnErrorKind::Other,
        errno: None,
    }));
    let events = never.observe(State::Ended, Some(&failed), Some(End::NeverSpawned));
    assert_eq!(events.len(), 2);
    assert!(matches!(events[0], DeploymentEvent::PodStartResult { .. }));
}

// ---------------------------------------------------------------------------------------
// Property suite

/// SplitMix64, for pod fates drawn per scenario.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Debug)]
struct Scenario {
    spec: DeploymentSpec,
    fates: u64,
    /// How often pods fail, in percent (swarm testing: some worlds are calm, some are not).
    faults: u64,
    /// A close asked at this many ms, if any, and a second, shorter one after it.
    close_at: Option<u64>,
    second_close: bool,
    /// Requests about single members: (at ms, 0 stop / 1 stop with dependents / 2 start /
    /// 3 restart, member drawn modulo their number).
    controls: Vec<(u64, u8, u16)>,
}

#[derive(Clone, Debug)]
struct TemplateDraw {
    replicas: u32,
    one_shot: bool,
    restart: u8,
    deps: u8,
    conditions: u8,
    initial_ms: u64,
    cap_factor: u64,
    jitter: u8,
    reset_ms: u64,
    budget: Option<u32>,
}

fn template_draw() -> impl Strategy<Value = TemplateDraw> {
    (
        1u32..=3,
        prop::bool::weighted(0.3),
        0u8..5,
        any::<u8>(),
        any::<u8>(),
        1u64..60,
        1u64..8,
        0u8..=100,
        0u64..400,
        prop::option::weighted(0.7, 0u32..5),
    )
        .prop_map(
            |(
                replicas,
                one_shot,
                restart,
                deps,
                conditions,
                initial_ms,
                cap_factor,
                jitter,
                reset_ms,
                budget,
            )| {
                TemplateDraw {
                    replicas,
                    one_shot,
                    restart,
                    deps,
                    conditions,
                    initial_ms,
                    cap_factor,
                    jitter,
                    reset_ms,
                    budget,
                }
            },
        )
}

/// A random DAG: template `i` may depend on any template before it.
fn build_spec(draws: &[TemplateDraw], seed: u64) -> DeploymentSpec {
    let mut spec = DeploymentSpec::new().seed(seed);
    for (i, t) in draws.iter().enumerate() {
        let mut template = PodTemplate::new(format!("p{i}")).replicas(t.replicas);
        if t.one_shot {
            template = template.one_shot();
        }
        template = template.restart(match (t.restart, t.one_shot) {
            (0, _) => RestartPolicy::No,
            (1 | 2, _) | (_, true) => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        });
        template = template.backoff(Backoff {
            initial: dur(t.initial_ms),
            max: dur(t.initial_ms * t.cap_factor),
            jitter_percent: t.jitter,
            reset_after: dur(t.reset_ms),
            budget: t.budget,
        });
        for (j, dep) in draws.iter().enumerate().take(i) {
            if t.deps & (1 << j) == 0 {
                continue;
            }
            let pick = (t.conditions >> (j % 4 * 2)) & 3;
            let condition = match pick {
                0 => Condition::Started,
                1 | 2 if !dep.one_shot => Condition::Ready,
                1 => Condition::Ready,
                _ if dep.one_shot => Condition::Succeeded,
                _ => Condition::Ready,
            };
            template = template.depends_on(format!("p{j}"), condition);
        }
        spec = spec.pod(template);
    }
    spec
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(template_draw(), 1..=5),
        any::<u64>(),
        any::<u64>(),
        0u64..=60,
        prop::option::weighted(0.5, 0u64..1_500),
        any::<bool>(),
        prop::collection::vec((0u64..1_500, 0u8..4, any::<u16>()), 0..6),
    )
        .prop_map(
            |(draws, seed, fates, faults, close_at, second_close, controls)| Scenario {
                spec: build_spec(&draws, seed),
                fates,
                faults,
                close_at,
                second_close,
                controls,
            },
        )
}

/// A simulated pod: the events it will send, cancelled when it is closed.
#[derive(Debug, Default)]
struct SimPod {
    pending: Vec<(Time, u64)>,
    result_sent: bool,
    ended: bool,
}

struct Sim {
    d: CheckedDeployment,
    rng: Rng,
    faults: u64,
    queue: BTreeMap<(Time, u64), DeploymentEvent>,
    pods: BTreeMap<(usize, u64), SimPod>,
    /// Events already delivered, replayed later as stale input.
    delivered: Vec<DeploymentEvent>,
    seq: u64,
    steps: usize,
}

impl Sim {
    fn push(&mut self, at: Time, event: DeploymentEvent) -> (Time, u64) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
        (at, self.seq)
    }

    fn push_pod(&mut self, key: (usize, u64), at: Time, event: DeploymentEvent) {
        let slot = self.push(at, event);
        self.pods.entry(key).or_default().pending.push(slot);
    }

    /// Schedules what a freshly started pod will do.
    fn fate(&mut self, member: MemberId, generation: Generation, now: Time) {
        let key = (member.0, generation.0);
        self.pods.insert(key, SimPod::default());
        let r = &mut self.rng;
        let spawn = now.checked_add(dur(r.below(20))).unwrap();
        let kind = r.below(100);
        let code = if r.chance(50) { OK } else { FAIL };
        let d2 = spawn.checked_add(dur(r.below(60))).unwrap();
        let d3 = d2.checked_add(dur(r.below(400))).unwrap();
        let forever = !r.chance(self.faults);
        let f = self.faults;
        let event_started = DeploymentEvent::PodStarted { member, generation };
        let result = |result| DeploymentEvent::PodStartResult {
            member,
            generation,
            result,
        };
        let end = |end| DeploymentEvent::PodEnded {
            member,
            generation,
            end,
        };
        if kind < f / 4 {
            let failed = StartResult::FailedToStart(StartFailure::Spawn(SpawnError {
                kind: SpawnErrorKind::NotFound,
                errno: Some(2),
            }));
            self.push_pod(key, spawn, result(failed));
            self.push_pod(key, spawn, end(End::NeverSpawned));
            return;
        }
        self.push_pod(key, spawn, event_started);
        if kind < f / 2 {
            self.push_pod(key, d2, result(StartResult::ExitedEarly { status: code }));
            self.push_pod(key, d2, end(End::Exited(code)));
        } else if kind < f * 3 / 4 {
            let timed_out = StartResult::TimedOut {
                waited: d2.saturating_duration_since(now),
                pending: CheckSet::first(1),
            };
            self.push_pod(key, d2, result(timed_out));
            self.push_pod(key, d3, end(End::Killed(ExitStatus::Signal(9))));
        } else {
            self.push_pod(key, d2, result(StartResult::Ready { after: dur(1) }));
            if !forever {
                self.push_pod(key, d3, end(End::Exited(code)));
            }
        }
    }

    /// A pod asked to close: its pending events are dropped; it reports `Cancelled` if it
    /// had no start result yet, then ends within (or at the end of) the grace period.
    fn close(
        &mut self,
        member: MemberId,
        generation: Generation,
        grace: Option<Duration>,
        now: Time,
    ) {
        let key = (member.0, generation.0);
        let Some(pod) = self.pods.get_mut(&key) else {
            return;
        };
        if pod.ended {
            return;
        }
        for slot in pod.pending.drain(..) {
            self.queue.remove(&slot);
        }
        let grace = grace.unwrap_or(dur(80)).min(dur(80));
        let took = dur(self.rng.below(grace.as_millis() as u64 + 1));
        let at = now.checked_add(took).unwrap();
        let end = if took >= grace {
            End::Killed(ExitStatus::Signal(9))
        } else {
            End::Closed(SIGTERM)
        };
        if !self.pods[&key].result_sent {
            self.push_pod(
                key,
                at,
                DeploymentEvent::PodStartResult {
                    member,
                    generation,
                    result: StartResult::Cancelled,
                },
            );
        }
        self.push_pod(
            key,
            at,
            DeploymentEvent::PodEnded {
                member,
                generation,
                end,
            },
        );
    }

    fn step(&mut self, event: DeploymentEvent, at: Time) -> Result<(), String> {
        self.steps += 1;
        let actions = self
            .d
            .handle(event.clone(), at)
            .map_err(|v| format!("{v}\n  after {event:?} at {at}"))?;
        for action in actions {
            match action {
                DeploymentAction::StartPod { member, generation } => {
                    self.fate(member, generation, at)
                }
                DeploymentAction::ClosePod {
                    member,
                    generation,
                    grace,
                } => self.close(member, generation, grace, at),
                _ => {}
            }
        }
        Ok(())
    }

    /// Delivers the next thing that happens: a queued event, the machine's timer, or the
    /// user's close. Returns false when nothing is left.
    fn next(&mut self, closes: &mut Vec<(Time, DeploymentEvent)>) -> Result<bool, String> {
        let queued = self.queue.keys().next().copied();
        let timer = self.d.machine.poll_timeout();
        let close = closes.first().cloned();
        let earliest = [
            queued.map(|(t, _)| t),
            timer,
            close.as_ref().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(at) = earliest else {
            return Ok(false);
        };
        if close.as_ref().is_some_and(|(t, _)| *t == at) {
            let (_, event) = closes.remove(0);
            self.step(event, at)?;
        } else if let Some(slot) = queued.filter(|(t, _)| *t == at) {
            let event = self.queue.remove(&slot).unwrap_or(DeploymentEvent::Tick);
            if let DeploymentEvent::PodStartResult {
                member, generation, ..
            }
            | DeploymentEvent::PodEnded {
                member, generation, ..
            } = &event
            {
                if let Some(pod) = self.pods.get_mut(&(member.0, generation.0)) {
                    pod.pending.retain(|s| *s != slot);
                    match event {
                        DeploymentEvent::PodEnded { .. } => pod.ended = true,
                        _ => pod.result_sent = true,
                    }
                }
            }
            self.step(event.clone(), at)?;
            self.delivered.push(event);
            // Now and then, an old event arrives again.
            if self.rng.chance(5) {
                let old =
                    self.delivered[self.rng.below(self.delivered.len() as u64) as usize].clone();
                self.step(old, at)?;
            }
        } else {
            self.step(DeploymentEvent::Tick, at)?;
        }
        Ok(true)
    }
}

fn run(scenario: &Scenario, mutation: Option<DeploymentMutation>) -> Result<(), String> {
    let d = CheckedDeployment::with_mutation(scenario.spec.clone(), mutation)
        .map_err(|e| format!("generated an invalid spec: {e}"))?;
    let mut sim = Sim {
        d,
        rng: Rng(scenario.fates),
        faults: scenario.faults,
        queue: BTreeMap::new(),
        pods: BTreeMap::new(),
        delivered: Vec::new(),
        seq: 0,
        steps: 0,
    };
    let mut closes: Vec<(Time, DeploymentEvent)> = Vec::new();
    if let Some(at) = scenario.close_at {
        closes.push((
            ms(at),
            DeploymentEvent::Close {
                grace: Some(dur(60)),
            },
        ));
        if scenario.second_close {
            closes.push((
                ms(at + 10),
                DeploymentEvent::Close {
                    grace: Some(dur(5)),
                },
            ));
        }
    }
    let members = sim.d.machine.members().len();
    for &(at, kind, who) in &scenario.controls {
        let member = MemberId(usize::from(who) % members);
        let event = match kind {
            0 => DeploymentEvent::StopMember {
                member,
                cascade: false,
            },
            1 => DeploymentEvent::StopMember {
                member,
                cascade: true,
            },
            2 => DeploymentEvent::StartMember { member },
            _ => DeploymentEvent::RestartMember { member },
        };
        closes.push((ms(at), event));
    }
    closes.sort_by_key(|(t, _)| *t);
    sim.step(DeploymentEvent::Start, Time::ZERO)?;
    while sim.steps < 300 && sim.next(&mut closes)? {}
    // Heal: whatever still runs is closed, and the deployment must end.
    let now = sim.d.machine.now();
    sim.step(
        DeploymentEvent::Close {
            grace: Some(dur(30)),
        },
        now,
    )?;
    closes.clear();
    let limit = sim.steps + 2_000;
    while sim.next(&mut closes)? {
        if sim.steps > limit {
            return Err("the deployment did not end after the close".into());
        }
    }
    let machine = &sim.d.machine;
    if machine.state() != DeploymentState::Ended {
        return Err(format!(
            "after the close the deployment is {:?}",
            machine.state()
        ));
    }
    if let Some(m) = machine.members().iter().find(|m| m.state().is_running()) {
        return Err(format!(
            "{} still runs after the deployment ended",
            m.name()
        ));
    }
    if machine.poll_timeout().is_some() {
        return Err("a timer is armed after the deployment ended".into());
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("DEPLOYMENT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

proptest! {
    // Fixed case count: CI's PROPTEST_CASES is sized for the cheaper pod suite.
    #![proptest_config(Config { cases: cases().max(1), max_shrink_iters: 2_000, ..Config::default() })]

    #[test]
    fn deployments_keep_their_invariants(scenario in scenario()) {
        if let Err(message) = run(&scenario, None) {
            prop_assert!(false, "{}", message);
        }
    }
}

/// The suite bites: each deliberately wrong machine is caught within a bounded number of
/// random scenarios (a fixed seed keeps this deterministic).
#[test]
fn every_deployment_mutation_is_caught() {
    for mutation in [
        DeploymentMutation::ReadyMeansStarted,
        DeploymentMutation::CloseAllAtOnce,
        DeploymentMutation::RestartAfterClose,
        DeploymentMutation::IgnoreBudget,
        DeploymentMutation::StoppedComesBack,
        DeploymentMutation::StopSkipsDependents,
        DeploymentMutation::RestartSpendsBudget,
    ] {
        let config = Config {
            cases: 2_000,
            failure_persistence: None,
            max_shrink_iters: 0,
            ..Config::default()
        };
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[11; 32]);
        let mut runner = TestRunner::new_with_rng(config, rng);
        let result = runner.run(&scenario(), |scenario| {
            run(&scenario, Some(mutation)).map_err(TestCaseError::fail)
        });
        if let Err(e) = &result {
            let text = e.to_string();
            println!("{mutation:?}: {}", text.lines().next().unwrap_or(""));
            // Caught by a broken invariant, not by an unrelated panic.
            assert!(text.contains("invariant "), "{mutation:?}: {text}");
        }
        assert!(
            result.is_err(),
            "{mutation:?} was not caught by 2,000 scenarios"
        );
    }
}

#[test]
fn a_bare_named_template_has_one_member_called_by_its_name() {
    let spec = DeploymentSpec::new().pod(PodTemplate::new("web").bare_name());
    let machine = DeploymentMachine::new(spec).unwrap();
    assert_eq!(machine.members()[0].name(), "web");
    let two = DeploymentSpec::new().pod(PodTemplate::new("web").bare_name().replicas(2));
    let error = DeploymentMachine::new(two).unwrap_err();
    assert_eq!(
        error,
        DeploymentError::BareNameNeedsOneReplica {
            pod: "web".into(),
            replicas: 2
        }
    );
    assert!(error.to_string().contains("needs exactly one"));
}

// ---------------------------------------------------------------------------------------
// Health

fn healthy(d: &mut CheckedDeployment, name: &str, g: Generation, at: Time) -> Out {
    let member = id(d, name);
    step(
        d,
        DeploymentEvent::PodHealthy {
            member,
            generation: g,
        },
        at,
    )
}

#[test]
fn a_healthy_dependency_holds_its_dependent_back_until_it_passed_its_checks() {
    let mut d = checked(
        DeploymentSpec::new()
            .pod(PodTemplate::new("db").health_checked(true))
            .pod(PodTemplate::new("api").depends_on("db", Condition::Healthy)),
    );
    assert_eq!(start(&mut d), ["db/0"]);
    let out = ready(&mut d, "db/0", G1, ms(10));
    assert!(starts(&out).is_empty(), "ready is not healthy: {out:?}");
    assert_eq!(state_of(&d, "api/0"), MemberState::Waiting);
    let out = healthy(&mut d, "db/0", G1, ms(30));
    assert_eq!(starts(&out), ["api/0"]);
}

#[test]
fn healthy_on_a_pod_without_health_checks_is_an_error() {
    let error = error_of(
        DeploymentSpec::new()
            .pod(PodTemplate::new("db"))
            .pod(PodTemplate::new("api").depends_on("db", Condition::Healthy)),
    );
    assert_eq!(
        error,
        DeploymentError::HealthyNeedsChecks {
            pod: "api".into(),
            dependency: "db".into()
        }
    );
    assert!(
        error.to_string().contains("has no health checks"),
        "{error}"
    );
    assert_eq!("service_healthy".parse(), Ok(Condition::Healthy));
    assert_eq!(Condition::Healthy.to_string(), "healthy");
}

#[test]
fn an_unhealthy_pod_is_restarted_on_failure_and_fails_the_deployment_under_no() {
    let unhealthy = End::Unhealthy {
        cause: podvisor::core::Unhealthy::Check {
            check: 0,
            failures: 3,
        },
        status: SIGTERM,
        killed: false,
    };
    let mut d = checked(
        DeploymentSpec::new().pod(
            PodTemplate::new("web")
                .restart(RestartPolicy::OnFailure)
                .backoff(plain_backoff(Some(3))),
        ),
    );
    start(&mut d);
    ready(&mut d, "web/0", G1, ms(10));
    ended(&mut d, "web/0", G1, unhealthy, ms(500));
    assert_eq!(state_of(&d, "web/0"), MemberState::BackingOff);
    assert_eq!(starts(&advance(&mut d)), ["web/0"]);

    let mut d = checked(DeploymentSpec::new().pod(PodTemplate::new("web")));
    start(&mut d);
    ready(&mut d, "web/0", G1, ms(10));
    ended(&mut d, "web/0", G1, unhealthy, ms(500));
    let failure = d.machine.failure().expect("a failure");
    assert_eq!(failure.cause, Cause::Ended(unhealthy));
    assert!(
        failure
            .to_string()
            .contains("was unhealthy (health check #0 failed 3 times in a row)"),
        "{failure}"
    );
}

// ---------------------------------------------------------------------------------------
// Members stopped, started and restarted on request

/// A member stopped with its dependents waits for them before its own close; a failed
/// start it reports meanwhile (its pod crashed before ready) is part of the stop, not a
/// failure of the deployment, and not restarted.
#[test]
fn a_failed_start_while_held_for_its_dependents_is_not_a_failure() {
    let mut d = checked(three_levels());
    start(&mut d);
    ready(&mut d, "db/0", G1, ms(10));
    // web depends on api being started only: it runs while api is not ready yet.
    let out = started(&mut d, "api/0", G1, ms(11));
    assert_eq!(starts(&out), ["web/0", "web/1"]);
    let api = id(&d, "api/0");
    let out = step(
        &mut d,
        DeploymentEvent::StopMember {
            member: api,
            cascade: true,
        },
        ms(20),
    );
    assert_eq!(close_names(&out), ["web/0", "web/1"]);
    let out = result(
        &mut d,
        "api/0",
        G1,
        StartResult::ExitedEarly { status: FAIL },
        ms(25),
    );
    assert!(close_names(&out).is_empty(), "{out:?}");
    assert!(starts(&out).is_empty(), "{out:?}");
    assert_eq!(d.machine.failure(), None);
    assert_ne!(d.machine.state(), DeploymentState::Stopping);
    ended(&mut d, "web/0", G1, End::Closed(SIGTERM), ms(30));
    ended(&mut d, "web/1", G1, End::Closed(SIGTERM), ms(31));
    let out = ended(&mut d, "api/0", G1, End::Exited(FAIL), ms(32));
    assert!(starts(&out).is_empty(), "{out:?}");
    assert_eq!(state_of(&d, "api/0"), MemberState::Stopped);
    assert_eq!(d.machine.failure(), None);
}

/// "With its dependents" means the dependents that run (or wait to): a one-shot job that
/// already succeeded is not stopped with its dependency, nor run again by its restart.
#[test]
fn a_restart_with_dependents_leaves_a_finished_job_alone() {
    let mut d = checked(
        DeploymentSpec::new()
            .pod(PodTemplate::new("db"))
            .pod(
                PodTemplate::new("migrate")
                    .one_shot()
                    .depends_on("db", Condition::Ready),
            )
            .pod(PodTemplate::new("web").depends_on("db", Condition::Ready)),
    );
    start(&mut d);
    assert_eq!(
        starts(&ready(&mut d, "db/0", G1, ms(5))),
        ["migrate/0", "web/0"]
    );
    ready(&mut d, "web/0", G1, ms(6));
    ended(&mut d, "migrate/0", G1, End::Exited(OK), ms(7));
    assert_eq!(state_of(&d, "migrate/0"), MemberState::Succeeded);
    let db = id(&d, "db/0");
    assert_eq!(d.machine.stopped_with(db), [id(&d, "web/0")]);
    let out = step(
        &mut d,
        DeploymentEvent::RestartMember { member: db },
        ms(10),
    );
    assert_eq!(close_names(&out), ["web/0"]);
    ended(&mut d, "web/0", G1, End::Closed(SIGTERM), ms(11));
    let out = ended(&mut d, "db/0", G1, End::Closed(SIGTERM), ms(12));
    assert_eq!(starts(&out), ["db/0"]);
    let out = ready(&mut d, "db/0", G2, ms(13));
    assert_eq!(starts(&out), ["web/0"]);
    assert_eq!(state_of(&d, "migrate/0"), MemberState::Succeeded);
}

#[test]
fn a_stop_with_dependents_closes_them_first_and_keeps_all_down() {
    let mut d = three_levels_up();
    let api = id(&d, "api/0");
    let out = step(
        &mut d,
        DeploymentEvent::StopMember {
            member: api,
            cascade: true,
        },
        ms(100),
    );
    // The web replicas (which depend on api) close first; api waits for them.
    assert_eq!(close_names(&out), ["web/0", "web/1"]);
    ended(&mut d, "web/0", G1, End::Closed(SIGTERM), ms(110));
    let out = ended(&mut d, "web/1", G1, End::Closed(SIGTERM), ms(120));
    assert_eq!(close_names(&out), ["api/0"]);
    let out = ended(&mut d, "api/0", G1, End::Closed(SIGTERM), ms(130));
    assert!(starts(&out).is_empty(), "nothing comes back: {out:?}");
    for name in ["api/0", "web/0", "web/1"] {
        assert_eq!(state_of(&d, name), MemberState::Stopped, "{name}");
    }
    assert_eq!(d.machine.failure(), None);
    assert_eq!(d.machine.state(), DeploymentState::Ready);
    // Stopping a stopped member does nothing.
    let out = step(
        &mut d,
        DeploymentEvent::StopMember {
            member: api,
            cascade: false,
        },
        ms(140),
    );
    assert!(close_names(&out).is_empty());
    // Started again: api first; web stays stopped (it was not asked for).
    let out = step(
        &mut d,
        DeploymentEvent::StartMember { member: api },
        ms(150),
    );
    assert_eq!(starts(&out), ["api/0"]);
    ready(&mut d, "api/0", G2, ms(160));
    assert_eq!(state_of(&d, "web/0"), MemberState::Stopped);
}

#[test]
fn a_stop_without_dependents_closes_only_that_member() {
    let mut d = three_levels_up();
    let db = id(&d, "db/0");
    let out = step(
        &mut d,
        DeploymentEvent::StopMember {
            member: db,
            cascade: false,
        },
        ms(100),
    );
    assert_eq!(close_names(&out), ["db/0"]);
    assert_eq!(state_of(&d, "api/0"), MemberState::Ready);
}

#[test]
fn a_restart_brings_the_dependents_back_after_it_and_is_not_a_failure() {
    let mut d = checked(
        DeploymentSpec::new()
            .pod(
                PodTemplate::new("db")
                    .restart(RestartPolicy::OnFailure)
                    .backoff(plain_backoff(Some(0))),
            )
            .pod(PodTemplate::new("api").depends_on("db", Condition::Ready)),
    );
    start(&mut d);
    ready(&mut d, "db/0", G1, ms(10));
    ready(&mut d, "api/0", G1, ms(20));
    let db = id(&d, "db/0");
    let out = step(
        &mut d,
        DeploymentEvent::RestartMember { member: db },
        ms(100),
    );
    assert_eq!(close_names(&out), ["api/0"]);
    let out = ended(&mut d, "api/0", G1, End::Closed(SIGTERM), ms(110));
    assert_eq!(close_names(&out), ["db/0"]);
    assert_eq!(state_of(&d, "api/0"), MemberState::Waiting);
    // A budget of 0 restarts: a restart on request spends none.
    let out = ended(&mut d, "db/0", G1, End::Closed(SIGTERM), ms(120));
    assert_eq!(starts(&out), ["db/0"]);
    let out = ready(&mut d, "db/0", G2, ms(130));
    assert_eq!(starts(&out), ["api/0"]);
    ready(&mut d, "api/0", G2, ms(140));
    assert_eq!(d.machine.failure(), None);
    assert_eq!(d.machine.member(db).restarts_since_reset(), 0);
}

#[test]
fn nothing_starts_or_stops_on_request_while_closing() {
    let mut d = three_levels_up();
    step(&mut d, DeploymentEvent::Close { grace: None }, ms(100));
    let api = id(&d, "api/0");
    let before = d.machine.stats().ignored;
    let out = step(
        &mut d,
        DeploymentEvent::RestartMember { member: api },
        ms(101),
    );
    assert!(starts(&out).is_empty());
    let out = step(
        &mut d,
        DeploymentEvent::StartMember { member: api },
        ms(102),
    );
    assert!(starts(&out).is_empty());
    assert_eq!(d.machine.stats().ignored, before + 2);
}

#[test]
fn an_unhealthy_pod_meets_no_condition_while_it_closes() {
    let mut d = checked(
        DeploymentSpec::new()
            .pod(PodTemplate::new("db").restart(RestartPolicy::OnFailure))
            .pod(PodTemplate::new("api").depends_on("db", Condition::Started)),
    );
    start(&mut d);
    ready(&mut d, "db/0", G1, ms(10));
    let api = id(&d, "api/0");
    // api stopped on request, then db turns unhealthy: a start of api must wait.
    step(
        &mut d,
        DeploymentEvent::StopMember {
            member: api,
            cascade: false,
        },
        ms(11),
    );
    ended(&mut d, "api/0", G1, End::Closed(SIGTERM), ms(12));
    let db = id(&d, "db/0");
    step(
        &mut d,
        DeploymentEvent::PodUnhealthy {
            member: db,
            generation: G1,
        },
        ms(20),
    );
    assert_eq!(state_of(&d, "db/0"), MemberState::Stopping);
    let out = step(&mut d, DeploymentEvent::StartMember { member: api }, ms(21));
    assert!(starts(&out).is_empty(), "{out:?}");
    assert_eq!(state_of(&d, "api/0"), MemberState::Waiting);
}

#[test]
fn a_start_while_the_stopped_pod_still_closes_gives_a_fresh_budget() {
    // A failed start schedules a restart (one of a budget of 1), then the member is stopped
    // and started again before its pod is down: that restart never happens, so the member
    // comes back with its whole budget, as it would had the start come once it was down.
    let mut d = checked(
        DeploymentSpec::new().pod(
            PodTemplate::new("web")
                .restart(RestartPolicy::OnFailure)
                .backoff(plain_backoff(Some(1))),
        ),
    );
    start(&mut d);
    let web = id(&d, "web/0");
    let timed_out = || StartResult::TimedOut {
        waited: dur(50),
        pending: CheckSet::EMPTY,
    };
    result(&mut d, "web/0", G1, timed_out(), ms(50));
    assert_eq!(state_of(&d, "web/0"), MemberState::Stopping);
    assert_eq!(d.machine.member(web).restarts_since_reset(), 1);
    step(
        &mut d,
        DeploymentEvent::StopMember {
            member: web,
            cascade: false,
        },
        ms(51),
    );
    step(&mut d, DeploymentEvent::StartMember { member: web }, ms(52));
    assert_eq!(d.machine.member(web).restarts_since_reset(), 0);
    let out = ended(&mut d, "web/0", G1, End::Closed(SIGTERM), ms(60));
    assert_eq!(starts(&out), ["web/0"]);
    // Its second generation fails too: one restart is left, so it backs off.
    result(&mut d, "web/0", G2, timed_out(), ms(100));
    ended(&mut d, "web/0", G2, End::Closed(SIGTERM), ms(110));
    assert_eq!(state_of(&d, "web/0"), MemberState::BackingOff);
    assert_eq!(d.machine.failure(), None);
}

#[test]
fn a_stop_with_dependents_keeps_down_a_dependent_that_was_restarting() {
    let mut d = checked(
        DeploymentSpec::new()
            .pod(PodTemplate::new("db"))
            .pod(PodTemplate::new("api").depends_on("db", Condition::Ready)),
    );
    start(&mut d);
    ready(&mut d, "db/0", G1, ms(10));
    ready(&mut d, "api/0", G1, ms(20));
    let db = id(&d, "db/0");
    // A restart of db closes api first; before api is down, db is stopped with its
    // dependents: api must stay down too, not come back with db.
    let out = step(
        &mut d,
        DeploymentEvent::RestartMember { member: db },
        ms(100),
    );
    assert_eq!(close_names(&out), ["api/0"]);
    step(
        &mut d,
        DeploymentEvent::StopMember {
            member: db,
            cascade: true,
        },
        ms(110),
    );
    let out = ended(&mut d, "api/0", G1, End::Closed(SIGTERM), ms(120));
    assert_eq!(close_names(&out), ["db/0"]);
    ended(&mut d, "db/0", G1, End::Closed(SIGTERM), ms(130));
    assert_eq!(state_of(&d, "api/0"), MemberState::Stopped);
    assert_eq!(state_of(&d, "db/0"), MemberState::Stopped);
    // Starting db brings db back, not api.
    let out = step(&mut d, DeploymentEvent::StartMember { member: db }, ms(140));
    assert_eq!(starts(&out), ["db/0"]);
    let out = ready(&mut d, "db/0", G2, ms(150));
    assert!(starts(&out).is_empty(), "{out:?}");
    assert_eq!(state_of(&d, "api/0"), MemberState::Stopped);
}

#[test]
fn a_succeeded_job_runs_again_on_request() {
    let mut d = checked(
        DeploymentSpec::new()
            .pod(PodTemplate::new("migrate").one_shot())
            .pod(PodTemplate::new("web")),
    );
    start(&mut d);
    ready(&mut d, "web/0", G1, ms(5));
    ended(&mut d, "migrate/0", G1, End::Exited(OK), ms(10));
    assert_eq!(state_of(&d, "migrate/0"), MemberState::Succeeded);
    let migrate = id(&d, "migrate/0");
    let out = step(
        &mut d,
        DeploymentEvent::RestartMember { member: migrate },
        ms(20),
    );
    assert_eq!(starts(&out), ["migrate/0"]);
    ended(&mut d, "migrate/0", G2, End::Exited(OK), ms(30));
    let out = step(
        &mut d,
        DeploymentEvent::StartMember { member: migrate },
        ms(40),
    );
    assert_eq!(starts(&out), ["migrate/0"]);
}

// ---------------------------------------------------------------------------------------
// What requests leave in a member's history

/// The member states a step announced, by name, in order.
fn changes(out: &Out) -> Vec<(String, MemberState)> {
    out.actions
        .iter()
        .filter_map(|a| match a {
            DeploymentAction::MemberChanged { member, state } => {
                Some((out.names[member.0].clone(), *state))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn restarts_count_the_policy_only_and_the_last_end_outlives_the_next_start() {
    let mut d = restarting(RestartPolicy::OnFailure, Some(5));
    let web = id(&d, "web/0");
    ended(&mut d, "web/0", G1, End::Exited(FAIL), ms(100));
    advance(&mut d);
    let m = d.machine.member(web);
    assert_eq!((m.restarts(), m.end()), (1, None));
    assert_eq!(m.last_end(), Some(End::Exited(FAIL)));
    ready(&mut d, "web/0", G2, ms(300));
    // A restart on request is not the policy's: it says the member stopped, then that it
    // waits to start again.
    step(
        &mut d,
        DeploymentEvent::RestartMember { member: web },
        ms(400),
    );
    let out = ended(&mut d, "web/0", G2, End::Closed(SIGTERM), ms(410));
    let web_changes: Vec<MemberState> = changes(&out).into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        web_changes,
        [
            MemberState::Stopped,
            MemberState::Waiting,
            MemberState::Starting
        ]
    );
    ready(&mut d, "web/0", Generation(3), ms(420));
    let m = d.machine.member(web);
    assert_eq!(m.restarts(), 1);
    assert_eq!(m.last_end(), Some(End::Closed(SIGTERM)));
    // Nor are a stop and a start.
    step(
        &mut d,
        DeploymentEvent::StopMember {
            member: web,
            cascade: true,
        },
        ms(500),
    );
    ended(
        &mut d,
        "web/0",
        Generation(3),
        End::Closed(SIGTERM),
        ms(510),
    );
    let out = step(
        &mut d,
        DeploymentEvent::StartMember { member: web },
        ms(520),
    );
    assert_eq!(starts(&out), ["web/0"]);
    let m = d.machine.member(web);
    assert_eq!(m.restarts(), 1);
    assert_eq!(m.last_end(), Some(End::Closed(SIGTERM)));
}

#[test]
fn a_stop_names_the_dependents_it_takes_down_with_it() {
    let mut d = three_levels_up();
    let names = |d: &CheckedDeployment, ids: Vec<MemberId>| -> Vec<String> {
        ids.iter()
            .map(|&i| d.machine.member(i).name().to_owned())
            .collect()
    };
    let (db, api, web0) = (id(&d, "db/0"), id(&d, "api/0"), id(&d, "web/0"));
    assert_eq!(
        names(&d, d.machine.stopped_with(db)),
        ["api/0", "web/0", "web/1"]
    );
    assert_eq!(names(&d, d.machine.stopped_with(api)), ["web/0", "web/1"]);
    assert!(d.machine.stopped_with(web0).is_empty());
    // One stopped before stays stopped: a later stop does not take it down again.
    step(
        &mut d,
        DeploymentEvent::StopMember {
            member: web0,
            cascade: false,
        },
        ms(100),
    );
    ended(&mut d, "web/0", G1, End::Closed(SIGTERM), ms(110));
    assert_eq!(names(&d, d.machine.stopped_with(api)), ["web/1"]);
}
