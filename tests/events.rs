//! The event streams of pods and deployments: every transition, in order, never coalesced.

mod support;

use std::time::Duration;

use podvisor::core::deployment::{DeploymentState, MemberState};
use podvisor::events::{EventKind, LifecycleEvent};
use podvisor::{Deployment, DeploymentConfig, End, ExitStatus, Pod, PodSet, Readiness};
use support::{fixture, ignoring_term};

fn all(mut events: podvisor::events::Events) -> Vec<LifecycleEvent> {
    std::iter::from_fn(|| events.next_blocking()).collect()
}

#[test]
fn a_pod_killed_after_its_grace_reports_every_step_in_order() {
    let pod = Pod::new(ignoring_term(&["forever"]).grace(Duration::from_millis(200))).unwrap();
    let events = pod.events();
    pod.start_and_wait_blocking().unwrap();
    // Stopping, killing and the end all happen before anyone looks again.
    pod.close_blocking();
    let events = all(events);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e.kind {
            EventKind::Started { .. } => "started",
            EventKind::Ready { .. } => "ready",
            EventKind::Stopping { .. } => "stopping",
            EventKind::Killing { .. } => "killing",
            EventKind::Ended { .. } => "ended",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["started", "ready", "stopping", "killing", "ended"]);
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
    assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
    match &events[2].kind {
        EventKind::Stopping { grace, signal, .. } => {
            assert_eq!(*grace, Duration::from_millis(200));
            assert_eq!(*signal, podvisor::Signal::TERM);
        }
        other => panic!("{other:?}"),
    }
    match &events[3].kind {
        EventKind::Killing { after } => assert!(*after >= Duration::from_millis(200)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        events[4].kind,
        EventKind::Ended {
            end: End::Killed(ExitStatus::Signal(9)),
            ..
        }
    ));
    assert!(events.iter().all(|e| e.source == "stubborn"));
}

#[test]
fn a_timed_out_pod_says_so_in_its_stop() {
    let pod = Pod::new(
        fixture(&["forever"])
            .ready(Readiness::Notify)
            .timeout_ready(Some(Duration::from_millis(200))),
    )
    .unwrap();
    let events = pod.events();
    pod.start();
    let events = all(events);
    assert!(
        events.iter().any(|e| matches!(
            e.kind,
            EventKind::Stopping {
                not_ready_after: Some(waited),
                ..
            } if waited == Duration::from_millis(200)
        )),
        "{events:#?}"
    );
}

#[test]
fn a_deployment_streams_its_pods_members_and_itself_in_true_order() {
    let config = DeploymentConfig::new()
        .pod(PodSet::new(
            "db",
            fixture(&["print", "up", "forever"]).ready(Readiness::Stdout("up".into())),
        ))
        .pod(
            PodSet::new(
                "api",
                fixture(&["print", "up", "forever"]).ready(Readiness::Stdout("up".into())),
            )
            .replicas(2)
            .depends_on("db", podvisor::core::deployment::Condition::Ready),
        );
    let deployment = Deployment::new(config).unwrap();
    let events = deployment.events();
    deployment.start_and_wait_blocking().unwrap();
    let _ = deployment.close_blocking();
    let events = all(events);
    let position = |source: &str, pred: &dyn Fn(&EventKind) -> bool| {
        events
            .iter()
            .position(|e| e.source == source && pred(&e.kind))
            .unwrap_or_else(|| panic!("no event of {source} in {events:#?}"))
    };
    let ready = |k: &EventKind| matches!(k, EventKind::Ready { .. });
    let started = |k: &EventKind| matches!(k, EventKind::Started { .. });
    let stopping = |k: &EventKind| matches!(k, EventKind::Stopping { .. });
    let ended = |k: &EventKind| matches!(k, EventKind::Ended { .. });
    // Start in dependency order, close in reverse.
    for api in ["api/0", "api/1"] {
        assert!(position("db/0", &ready) < position(api, &started));
        assert!(position(api, &ended) < position("db/0", &stopping));
    }
    let deployment_state = |state: DeploymentState| {
        position("deployment", &move |k: &EventKind| {
            *k == EventKind::Deployment { state }
        })
    };
    assert!(position("api/1", &ready) < deployment_state(DeploymentState::Ready));
    assert!(deployment_state(DeploymentState::Stopping) < position("api/0", &stopping));
    assert_eq!(
        events.last().map(|e| &e.kind),
        Some(&EventKind::Deployment {
            state: DeploymentState::Ended
        })
    );
    assert!(events.iter().any(|e| e.source == "db/0"
        && matches!(
            e.kind,
            EventKind::Member {
                state: MemberState::Ended,
                ..
            }
        )));
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..events.len() as u64).collect::<Vec<_>>());
}
