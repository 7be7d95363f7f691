//! One test per transition of `PodMachine`, each also checked by the reference model.

use std::time::Duration;

use podvisor::core::{
    Action, Check, CheckSet, CheckedPod, End, Event, ExitStatus, Generation, GroupSignal, PodSpec,
    ProbeSchedule, SpawnError, SpawnErrorKind, SpecError, StartFailure, StartResult, StartedBy,
    State, Stream, Time,
};

const G: Generation = Generation(1);

fn ms(n: u64) -> Time {
    Time::from_millis(n)
}

fn step(pod: &mut CheckedPod, event: Event<'_>, at: Time) -> Vec<Action> {
    pod.handle(event, at).unwrap_or_else(|v| panic!("{v}"))
}

fn spec(timeout_ms: u64, grace_ms: u64) -> PodSpec {
    PodSpec::default()
        .timeout_ready(Some(Duration::from_millis(timeout_ms)))
        .grace(Duration::from_millis(grace_ms))
}

fn signal(signal: GroupSignal) -> Action {
    Action::SignalGroup {
        generation: G,
        signal,
    }
}

fn changed(state: State) -> Action {
    Action::StateChanged { state }
}

/// Start and spawn a pod; returns it in `Started` (or `Ready` with no checks).
fn spawned(spec: PodSpec) -> CheckedPod {
    let mut pod = CheckedPod::new(spec).unwrap();
    step(&mut pod, Event::Start, ms(0));
    step(&mut pod, Event::Spawned { generation: G }, ms(1));
    pod
}

#[test]
fn start_asks_for_a_spawn_once() {
    let mut pod = CheckedPod::new(spec(1000, 100)).unwrap();
    assert_eq!(pod.machine.state(), State::Created);
    let actions = step(&mut pod, Event::Start, ms(0));
    assert_eq!(
        actions,
        vec![Action::Spawn { generation: G }, changed(State::Spawning)]
    );
    assert_eq!(step(&mut pod, Event::Start, ms(1)), vec![]);
    assert_eq!(pod.machine.stats().ignored, 1);
}

#[test]
fn no_checks_means_ready_once_spawned() {
    let mut pod = CheckedPod::new(spec(1000, 100)).unwrap();
    step(&mut pod, Event::Start, ms(0));
    let actions = step(&mut pod, Event::Spawned { generation: G }, ms(5));
    assert_eq!(
        actions,
        vec![changed(State::Started), changed(State::Ready)]
    );
    assert_eq!(
        pod.machine.start_result(),
        Some(&StartResult::Ready {
            after: Duration::from_millis(5)
        })
    );
    assert_eq!(pod.machine.poll_timeout(), None);
}

#[test]
fn spawn_failure_is_failed_to_start_with_the_error() {
    let mut pod = CheckedPod::new(spec(1000, 100)).unwrap();
    step(&mut pod, Event::Start, ms(0));
    let error = SpawnError {
        kind: SpawnErrorKind::NotFound,
        errno: Some(2),
    };
    let actions = step(
        &mut pod,
        Event::SpawnFailed {
            generation: G,
            error,
        },
        ms(1),
    );
    assert_eq!(actions, vec![changed(State::Ended)]);
    assert_eq!(
        pod.machine.start_result(),
        Some(&StartResult::FailedToStart(StartFailure::Spawn(error)))
    );
    assert_eq!(pod.machine.end(), Some(End::NeverSpawned));
}

#[test]
fn notify_ready_makes_the_pod_ready() {
    let mut pod = spawned(spec(1000, 100).check(Check::Notify));
    assert_eq!(pod.machine.state(), State::Started);
    step(
        &mut pod,
        Event::Notify {
            generation: G,
            datagram: b"STATUS=warming up",
        },
        ms(10),
    );
    assert_eq!(pod.machine.state(), State::Started);
    assert_eq!(pod.machine.status_text(), Some("warming up"));
    let actions = step(
        &mut pod,
        Event::Notify {
            generation: G,
            datagram: b"READY=1\n",
        },
        ms(20),
    );
    assert_eq!(actions, vec![changed(State::Ready)]);
}

#[test]
fn malformed_notify_fields_are_counted_and_ignored() {
    let mut pod = spawned(spec(1000, 100).check(Check::Notify));
    step(
        &mut pod,
        Event::Notify {
            generation: G,
            datagram: b"STATUS=\xff\xfe\ngarbage\n=1",
        },
        ms(10),
    );
    assert_eq!(pod.machine.state(), State::Started);
    assert_eq!(pod.machine.status_text(), None);
    assert_eq!(pod.machine.stats().malformed_notify, 1);
    assert_eq!(pod.machine.stats().malformed_notify_fields, 3);
}

#[test]
fn valid_fields_are_honoured_beside_malformed_ones() {
    let mut pod = spawned(spec(1000, 100).check(Check::Notify));
    let actions = step(
        &mut pod,
        Event::Notify {
            generation: G,
            datagram:
                b"READY=1\nSTATUS=\xff\xfe odd\nno equals sign\nMAINPID=-5\nSTATUS=up\0x\nERRNO=7",
        },
        ms(10),
    );
    assert_eq!(actions, vec![changed(State::Ready)]);
    assert_eq!(pod.machine.errno(), Some(7));
    assert_eq!(pod.machine.main_pid(), None);
    assert_eq!(pod.machine.stats().malformed_notify, 1);
    assert_eq!(pod.machine.stats().malformed_notify_fields, 4);
}

#[test]
fn output_line_check_matches_its_stream_only() {
    let mut pod = spawned(spec(1000, 100).check(Check::Output {
        stream: Stream::Stderr,
        text: "listening".into(),
    }));
    step(
        &mut pod,
        Event::OutputLine {
            generation: G,
            stream: Stream::Stdout,
            line: b"listening on 80",
        },
        ms(10),
    );
    assert_eq!(pod.machine.state(), State::Started);
    step(
        &mut pod,
        Event::OutputLine {
            generation: G,
            stream: Stream::Stderr,
            line: b"now listening on 80",
        },
        ms(11),
    );
    assert_eq!(pod.machine.state(), State::Ready);
}

#[test]
fn all_checks_must_latch() {
    let mut pod = spawned(spec(1000, 100).check(Check::Notify).check(Check::Output {
        stream: Stream::Stdout,
        text: "up".into(),
    }));
    step(
        &mut pod,
        Event::Notify {
            generation: G,
            datagram: b"READY=1",
        },
        ms(10),
    );
    assert_eq!(pod.machine.state(), State::Started);
    let mut pending = CheckSet::EMPTY;
    pending.insert(1);
    assert_eq!(pod.machine.pending_checks(), pending);
    step(
        &mut pod,
        Event::OutputLine {
            generation: G,
            stream: Stream::Stdout,
            line: b"up",
        },
        ms(11),
    );
    assert_eq!(pod.machine.state(), State::Ready);
}

#[test]
fn timeout_is_exact_and_closes_the_pod() {
    let mut pod = spawned(spec(1000, 100).check(Check::Notify));
    assert_eq!(pod.machine.poll_timeout(), Some(ms(1000)));
    // One nanosecond before the deadline nothing happens.
    let before = Time::from_nanos(ms(1000).as_nanos() - 1);
    assert_eq!(step(&mut pod, Event::Tick, before), vec![]);
    let actions = step(&mut pod, Event::Tick, ms(1000));
    assert_eq!(
        actions,
        vec![
            signal(GroupSignal::Stop),
            signal(GroupSignal::Continue),
            changed(State::Stopping)
        ]
    );
    let mut pending = CheckSet::EMPTY;
    pending.insert(0);
    assert_eq!(
        pod.machine.start_result(),
        Some(&StartResult::TimedOut {
            waited: Duration::from_millis(1000),
            pending
        })
    );
    assert_eq!(pod.machine.kill_deadline(), Some(ms(1100)));
}

#[test]
fn ready_at_the_deadline_instant_is_too_late() {
    let mut pod = spawned(spec(1000, 100).check(Check::Notify));
    step(
        &mut pod,
        Event::Notify {
            generation: G,
            datagram: b"READY=1",
        },
        ms(1000),
    );
    assert!(matches!(
        pod.machine.start_result(),
        Some(StartResult::TimedOut { .. })
    ));
    assert_eq!(pod.machine.state(), State::Stopping);
}

#[test]
fn extend_timeout_moves_the_deadline_later_never_earlier() {
    let mut pod = spawned(spec(1000, 100).check(Check::Notify));
    step(
        &mut pod,
        Event::Notify {
            generation: G,
            datagram: b"EXTEND_TIMEOUT_USEC=100000",
        },
        ms(500),
    );
    assert_eq!(pod.machine.ready_deadline(), Some(ms(1000)));
    step(
        &mut pod,
        Event::Notify {
            generation: G,
            datagram: b"EXTEND_TIMEOUT_USEC=2000000",
        },
        ms(900),
    );
    assert_eq!(pod.machine.ready_deadline(), Some(ms(2900)));
    step(&mut pod, Event::Tick, ms(2899));
    assert_eq!(pod.machine.state(), State::Started);
    step(&mut pod, Event::Tick, ms(2900));
    assert_eq!(
        pod.machine.start_result(),
        Some(&StartResult::TimedOut {
            waited: Duration::from_millis(2900),
            pending: CheckSet::first(1)
        })
    );
}

#[test]
fn no_timeout_waits_forever() {
    let mut pod = spawned(PodSpec::default().timeout_ready(None).check(Check::Notify));
    assert_eq!(pod.machine.poll_timeout(), None);
    step(&mut pod, Event::Tick, Time::from_secs(1_000_000));
    assert_eq!(pod.machine.state(), State::Started);
}

#[test]
fn exit_after_start_before_ready_is_exited_early() {
    let mut pod = spawned(spec(1000, 100).check(Check::Notify));
    let status = ExitStatus::Code(3);
    let actions = step(
        &mut pod,
        Event::Exited {
            generation: G,
            status,
        },
        ms(50),
    );
    assert_eq!(
        actions,
        vec![Action::SweepGroup { generation: G }, changed(State::Ended)]
    );
    assert_eq!(
        pod.machine.start_result(),
        Some(&StartResult::ExitedEarly { status })
    );
    assert_eq!(pod.machine.end(), Some(End::Exited(status)));
}

#[test]
fn runtime_exit_before_started_is_failed_to_start_with_its_error() {
    let mut pod = spawned(
        spec(1000, 100)
            .started_by(StartedBy::Notify)
            .check(Check::Notify),
    );
    assert_eq!(pod.machine.state(), State::Starting);
    step(
        &mut pod,
        Event::Notify {
            generation: G,
            datagram: b"STATUS=setup failed: port in use\nERRNO=98",
        },
        ms(5),
    );
    let status = ExitStatus::Code(2);
    step(
        &mut pod,
        Event::Exited {
            generation: G,
            status,
        },
        ms(6),
    );
    assert_eq!(
        pod.machine.start_result(),
        Some(&StartResult::FailedToStart(StartFailure::Runtime {
            status,
            error: Some("setup failed: port in use".into()),
            errno: Some(98),
        }))
    );
}

#[test]
fn runtime_started_key_then_ready() {
    let mut pod = spawned(
        spec(1000, 100)
            .started_by(StartedBy::Notify)
            .check(Check::Notify),
    );
    let actions = step(
        &mut pod,
        Event::Notify {
            generation: G,
            datagram: b"X_PODVISOR_STARTED=1",
        },
        ms(5),
    );
    assert_eq!(actions, vec![changed(State::Started)]);
    step(
        &mut pod,
        Event::Notify {
            generation: G,
            datagram: b"READY=1",
        },
        ms(6),
    );
    assert_eq!(pod.machine.state(), State::Ready);
    // An exit now is the runtime ending by itself.
    let status = ExitStatus::Code(1);
    step(
        &mut pod,
        Event::Exited {
            generation: G,
            status,
        },
        ms(7),
    );
    assert_eq!(pod.machine.end(), Some(End::Exited(status)));
}

#[test]
fn close_before_start_is_cancelled_at_once() {
    let mut pod = CheckedPod::new(spec(1000, 100)).unwrap();
    let actions = step(&mut pod, Event::Close { grace: None }, ms(0));
    assert_eq!(actions, vec![changed(State::Ended)]);
    assert_eq!(pod.machine.start_result(), Some(&StartResult::Cancelled));
    assert_eq!(pod.machine.end(), Some(End::NeverSpawned));
    assert_eq!(step(&mut pod, Event::Start, ms(1)), vec![]);
}

#[test]
fn close_while_spawning_stops_once_spawned() {
    let mut pod = CheckedPod::new(spec(1000, 100)).unwrap();
    step(&mut pod, Event::Start, ms(0));
    let actions = step(&mut pod, Event::Close { grace: None }, ms(1));
    assert_eq!(actions, vec![changed(State::Stopping)]);
    let actions = step(&mut pod, Event::Spawned { generation: G }, ms(2));
    assert_eq!(
        actions,
        vec![signal(GroupSignal::Stop), signal(GroupSignal::Continue)]
    );
    assert_eq!(pod.machine.kill_deadline(), Some(ms(102)));
    let status = ExitStatus::Signal(15);
    step(
        &mut pod,
        Event::Exited {
            generation: G,
            status,
        },
        ms(3),
    );
    assert_eq!(pod.machine.start_result(), Some(&StartResult::Cancelled));
    assert_eq!(pod.machine.end(), Some(End::Closed(status)));
}

#[test]
fn close_while_spawning_then_spawn_fails() {
    let mut pod = CheckedPod::new(spec(1000, 100)).unwrap();
    step(&mut pod, Event::Start, ms(0));
    step(&mut pod, Event::Close { grace: None }, ms(1));
    let error = SpawnError {
        kind: SpawnErrorKind::PermissionDenied,
        errno: Some(13),
    };
    step(
        &mut pod,
        Event::SpawnFailed {
            generation: G,
            error,
        },
        ms(2),
    );
    assert_eq!(pod.machine.start_result(), Some(&StartResult::Cancelled));
    assert_eq!(pod.machine.end(), Some(End::NeverSpawned));
}

#[test]
fn close_after_ready_exits_within_grace() {
    let mut pod = spawned(spec(1000, 100));
    let actions = step(&mut pod, Event::Close { grace: None }, ms(10));
    assert_eq!(
        actions,
        vec![
            signal(GroupSignal::Stop),
            signal(GroupSignal::Continue),
            changed(State::Stopping)
        ]
    );
    let status = ExitStatus::Signal(15);
    let actions = step(
        &mut pod,
        Event::Exited {
            generation: G,
            status,
        },
        ms(50),
    );
    assert_eq!(
        actions,
        vec![Action::SweepGroup { generation: G }, changed(State::Ended)]
    );
    assert!(pod.machine.start_result().unwrap().is_ready());
    assert_eq!(pod.machine.end(), Some(End::Closed(status)));
}

#[test]
fn sigkill_exactly_when_grace_ends() {
    let mut pod = spawned(spec(1000, 100));
    step(&mut pod, Event::Close { grace: None }, ms(10));
    assert_eq!(pod.machine.poll_timeout(), Some(ms(110)));
    let before = Time::from_nanos(ms(110).as_nanos() - 1);
    assert_eq!(step(&mut pod, Event::Tick, before), vec![]);
    let actions = step(&mut pod, Event::Tick, ms(110));
    assert_eq!(
        actions,
        vec![signal(GroupSignal::Kill), changed(State::Killing)]
    );
    let status = ExitStatus::Signal(9);
    step(
        &mut pod,
        Event::Exited {
            generation: G,
            status,
        },
        ms(111),
    );
    assert_eq!(pod.machine.end(), Some(End::Killed(status)));
    assert_eq!(pod.machine.poll_timeout(), None);
}

#[test]
fn exit_at_the_grace_end_instant_comes_after_sigkill() {
    let mut pod = spawned(spec(1000, 100));
    step(&mut pod, Event::Close { grace: None }, ms(10));
    let status = ExitStatus::Code(0);
    let actions = step(
        &mut pod,
        Event::Exited {
            generation: G,
            status,
        },
        ms(110),
    );
    assert_eq!(
        actions,
        vec![
            signal(GroupSignal::Kill),
            changed(State::Killing),
            Action::SweepGroup { generation: G },
            changed(State::Ended)
        ]
    );
    assert_eq!(pod.machine.end(), Some(End::Killed(status)));
}

#[test]
fn second_close_may_shorten_never_lengthen_the_grace() {
    let mut pod = spawned(spec(1000, 1000));
    step(&mut pod, Event::Close { grace: None }, ms(10));
    assert_eq!(pod.machine.kill_deadline(), Some(ms(1010)));
    let actions = step(
        &mut pod,
        Event::Close {
            grace: Some(Duration::from_secs(60)),
        },
        ms(20),
    );
    assert_eq!(actions, vec![]);
    assert_eq!(pod.machine.kill_deadline(), Some(ms(1010)));
    step(
        &mut pod,
        Event::Close {
            grace: Some(Duration::from_millis(100)),
        },
        ms(30),
    );
    assert_eq!(pod.machine.kill_deadline(), Some(ms(130)));
}

#[test]
fn close_with_zero_grace_kills_at_once() {
    let mut pod = spawned(spec(1000, 1000));
    let actions = step(
        &mut pod,
        Event::Close {
            grace: Some(Duration::ZERO),
        },
        ms(10),
    );
    assert_eq!(
        actions,
        vec![
            signal(GroupSignal::Stop),
            signal(GroupSignal::Continue),
            changed(State::Stopping),
            signal(GroupSignal::Kill),
            changed(State::Killing)
        ]
    );
}

#[test]
fn close_after_exit_is_a_no_op() {
    let mut pod = spawned(spec(1000, 100));
    let status = ExitStatus::Code(0);
    step(
        &mut pod,
        Event::Exited {
            generation: G,
            status,
        },
        ms(10),
    );
    assert_eq!(step(&mut pod, Event::Close { grace: None }, ms(20)), vec![]);
    assert_eq!(pod.machine.end(), Some(End::Exited(status)));
    assert!(pod.machine.start_result().unwrap().is_ready());
}

#[test]
fn close_while_starting_is_cancelled() {
    let mut pod = spawned(spec(1000, 100).check(Check::Notify));
    step(&mut pod, Event::Close { grace: None }, ms(10));
    assert_eq!(pod.machine.start_result(), Some(&StartResult::Cancelled));
    assert_eq!(pod.machine.state(), State::Stopping);
    // Readiness after the close does not count.
    step(
        &mut pod,
        Event::Notify {
            generation: G,
            datagram: b"READY=1",
        },
        ms(11),
    );
    assert_eq!(pod.machine.start_result(), Some(&StartResult::Cancelled));
}

#[test]
fn events_of_another_generation_are_ignored() {
    let mut pod = spawned(spec(1000, 100));
    let other = Generation(7);
    step(
        &mut pod,
        Event::Exited {
            generation: other,
            status: ExitStatus::Code(1),
        },
        ms(10),
    );
    assert_eq!(pod.machine.state(), State::Ready);
    assert_eq!(pod.machine.stats().ignored, 1);
}

#[test]
fn time_going_back_is_clamped() {
    let mut pod = spawned(spec(1000, 100).check(Check::Notify));
    step(&mut pod, Event::Tick, ms(500));
    step(&mut pod, Event::Tick, ms(100));
    assert_eq!(pod.machine.now(), ms(500));
    assert_eq!(pod.machine.stats().time_went_back, 1);
}

fn probe_spec() -> PodSpec {
    spec(10_000, 100).check(Check::Probe(ProbeSchedule {
        initial_interval: Duration::from_millis(10),
        max_interval: Duration::from_millis(40),
        attempt_timeout: Duration::from_millis(500),
    }))
}

fn started_probe(actions: &[Action]) -> u64 {
    actions
        .iter()
        .find_map(|a| match *a {
            Action::StartProbe { attempt, .. } => Some(attempt),
            _ => None,
        })
        .expect("a probe attempt")
}

#[test]
fn probes_start_at_once_and_back_off_to_the_cap() {
    let mut pod = CheckedPod::new(probe_spec()).unwrap();
    step(&mut pod, Event::Start, ms(0));
    let actions = step(&mut pod, Event::Spawned { generation: G }, ms(0));
    let mut attempt = started_probe(&actions);
    let mut now = ms(0);
    let mut delays = Vec::new();
    for _ in 0..5 {
        now = now.checked_add(Duration::from_millis(1)).unwrap();
        step(
            &mut pod,
            Event::ProbeFinished {
                generation: G,
                attempt,
                ok: false,
            },
            now,
        );
        let next = pod.machine.poll_timeout().unwrap();
        delays.push(next.saturating_duration_since(now).as_millis());
        let actions = step(&mut pod, Event::Tick, next);
        attempt = started_probe(&actions);
        now = next;
    }
    assert_eq!(delays, vec![10, 20, 40, 40, 40]);
    step(
        &mut pod,
        Event::ProbeFinished {
            generation: G,
            attempt,
            ok: true,
        },
        now,
    );
    assert_eq!(pod.machine.state(), State::Ready);
}

#[test]
fn a_probe_attempt_that_hangs_is_cancelled_and_retried() {
    let mut pod = CheckedPod::new(probe_spec()).unwrap();
    step(&mut pod, Event::Start, ms(0));
    let attempt = started_probe(&step(&mut pod, Event::Spawned { generation: G }, ms(0)));
    assert_eq!(pod.machine.poll_timeout(), Some(ms(500)));
    let actions = step(&mut pod, Event::Tick, ms(500));
    assert_eq!(
        actions,
        vec![Action::CancelProbe {
            generation: G,
            check: 0,
            attempt
        }]
    );
    // A late answer of the cancelled attempt does not count.
    step(
        &mut pod,
        Event::ProbeFinished {
            generation: G,
            attempt,
            ok: true,
        },
        ms(505),
    );
    assert_eq!(pod.machine.state(), State::Started);
    let actions = step(&mut pod, Event::Tick, ms(510));
    assert!(started_probe(&actions) > attempt);
}

#[test]
fn close_cancels_a_running_probe() {
    let mut pod = CheckedPod::new(probe_spec()).unwrap();
    step(&mut pod, Event::Start, ms(0));
    let attempt = started_probe(&step(&mut pod, Event::Spawned { generation: G }, ms(0)));
    let actions = step(&mut pod, Event::Close { grace: None }, ms(5));
    assert_eq!(
        actions[0],
        Action::CancelProbe {
            generation: G,
            check: 0,
            attempt
        }
    );
}

#[test]
fn bad_specs_are_rejected_with_the_check_named() {
    let too_many = PodSpec {
        checks: vec![Check::Notify; 65],
        ..PodSpec::default()
    };
    assert_eq!(
        too_many.validate(),
        Err(SpecError::TooManyChecks { count: 65 })
    );
    let empty = PodSpec::default().check(Check::Output {
        stream: Stream::Stdout,
        text: String::new(),
    });
    let err = CheckedPod::new(empty).unwrap_err();
    assert_eq!(err, SpecError::EmptyOutputText { check: 0 });
    assert!(err.to_string().contains("#0"));
    let schedule = ProbeSchedule::default();
    let zero = PodSpec::default().check(Check::Probe(ProbeSchedule {
        initial_interval: Duration::ZERO,
        ..schedule
    }));
    assert_eq!(
        zero.validate(),
        Err(SpecError::ZeroProbeInterval { check: 0 })
    );
    let cap = PodSpec::default()
        .check(Check::Notify)
        .check(Check::Probe(ProbeSchedule {
            max_interval: Duration::from_millis(1),
            ..schedule
        }));
    assert!(matches!(
        cap.validate(),
        Err(SpecError::ProbeCapBelowInterval { check: 1, .. })
    ));
    let timeout = PodSpec::default().check(Check::Probe(ProbeSchedule {
        attempt_timeout: Duration::ZERO,
        ..schedule
    }));
    assert_eq!(
        timeout.validate(),
        Err(SpecError::ZeroProbeTimeout { check: 0 })
    );
    for e in [
        SpecError::TooManyChecks { count: 65 },
        SpecError::ZeroProbeTimeout { check: 3 },
        SpecError::ZeroProbeInterval { check: 3 },
    ] {
        assert!(!e.to_string().is_empty());
    }
}
