//! The checker bites: scripted runs of deliberately wrong machines, each caught by the
//! rule it breaks (matched on that rule's message), and the same script passing on the
//! right machine.

use std::time::Duration;

use podvisor::core::{
    Action, Check, CheckedPod, Event, Generation, Mutation, PodSpec, ProbeSchedule, Time, Violation,
};

const G: Generation = Generation(1);

fn ms(n: u64) -> Time {
    Time::from_millis(n)
}

/// Feeds `script` to a checked machine with `mutation`; the first violation, if any.
fn run(
    spec: &PodSpec,
    mutation: Option<Mutation>,
    script: &[(Event<'static>, u64)],
) -> Result<Vec<Action>, Violation> {
    let mut pod = CheckedPod::with_mutation(spec.clone(), mutation).unwrap();
    let mut last = Vec::new();
    for (event, at) in script {
        last = pod.handle(*event, ms(*at))?;
    }
    Ok(last)
}

/// The script passes on the right machine, and the wrong one breaks `invariant` with a
/// message containing `text`.
fn caught_by(
    spec: PodSpec,
    mutation: Mutation,
    script: &[(Event<'static>, u64)],
    invariant: &str,
    text: &str,
) -> Vec<Action> {
    let right = run(&spec, None, script).unwrap_or_else(|v| panic!("right machine: {v}"));
    match run(&spec, Some(mutation), script) {
        Err(v) => assert!(
            v.invariant == invariant && v.message.contains(text),
            "{mutation:?} caught by another rule: {v}"
        ),
        Ok(_) => panic!("{mutation:?} was not caught"),
    }
    right
}

fn probe_spec() -> PodSpec {
    PodSpec::default()
        .timeout_ready(Some(Duration::from_secs(10)))
        .check(Check::Probe(ProbeSchedule {
            initial_interval: Duration::from_millis(10),
            max_interval: Duration::from_millis(40),
            attempt_timeout: Duration::from_millis(500),
        }))
}

fn probe_failed(attempt: u64) -> Event<'static> {
    Event::ProbeFinished {
        generation: G,
        attempt,
        ok: false,
    }
}

#[test]
fn a_failed_probe_that_is_never_retried_is_caught() {
    // Attempt 1 at the spawn, refused at 3 ms: attempt 2 is due at 13 ms.
    let script = [
        (Event::Start, 0),
        (Event::Spawned { generation: G }, 0),
        (probe_failed(1), 3),
        (Event::Tick, 13),
    ];
    let last = caught_by(
        probe_spec(),
        Mutation::NeverRetriesProbe,
        &script,
        "timer-late",
        "check #0's next probe attempt falls due at t=0.013000000s",
    );
    assert!(matches!(last[0], Action::StartProbe { attempt: 2, .. }));
}

#[test]
fn a_timed_out_probe_that_is_never_retried_is_caught() {
    // Attempt 1 hangs past its 500 ms: cancelled then, attempt 2 due at 510 ms.
    let script = [
        (Event::Start, 0),
        (Event::Spawned { generation: G }, 0),
        (Event::Tick, 500),
        (Event::Tick, 510),
    ];
    caught_by(
        probe_spec(),
        Mutation::NeverRetriesProbe,
        &script,
        "timer-late",
        "check #0's next probe attempt falls due at t=0.510000000s",
    );
}

#[test]
fn an_attempt_not_started_when_the_machine_wakes_past_its_instant_is_caught() {
    // Two probes; the second's attempt times out at 10 ms, so the wrong machine does
    // wake before the first's retry at 13 ms, and at 15 ms that retry is missing.
    let spec = probe_spec().check(Check::Probe(ProbeSchedule {
        initial_interval: Duration::from_millis(10),
        max_interval: Duration::from_millis(40),
        attempt_timeout: Duration::from_millis(10),
    }));
    let script = [
        (Event::Start, 0),
        (Event::Spawned { generation: G }, 0),
        (probe_failed(1), 3),
        (Event::Tick, 15),
    ];
    let last = caught_by(
        spec,
        Mutation::NeverRetriesProbe,
        &script,
        "probe-schedule",
        "check #0's next probe attempt was due at t=0.013000000s and did not start",
    );
    assert!(last
        .iter()
        .any(|a| matches!(a, Action::StartProbe { check: 0, .. })));
}

#[test]
fn a_later_close_that_pushes_sigkill_back_is_caught() {
    // A close with 100 ms grace at 10 ms, then one with 500 ms at 20 ms: SIGKILL stays
    // at 110 ms.
    let spec = PodSpec::default().grace(Duration::from_secs(1));
    let script = [
        (Event::Start, 0),
        (Event::Spawned { generation: G }, 1),
        (
            Event::Close {
                grace: Some(Duration::from_millis(100)),
            },
            10,
        ),
        (
            Event::Close {
                grace: Some(Duration::from_millis(500)),
            },
            20,
        ),
        (Event::Tick, 110),
    ];
    let last = caught_by(
        spec,
        Mutation::LaterCloseMovesKill,
        &script,
        "kill-deadline",
        "SIGKILL moved later, from t=0.110000000s to t=0.520000000s",
    );
    assert!(last.iter().any(|a| matches!(
        a,
        Action::SignalGroup {
            signal: podvisor::core::GroupSignal::Kill,
            ..
        }
    )));
}

#[test]
fn an_extension_counted_from_the_start_is_caught() {
    // Timeout 1 s; at 800 ms the child asks for 500 ms more: the deadline is 1.3 s.
    let spec = PodSpec::default()
        .timeout_ready(Some(Duration::from_secs(1)))
        .check(Check::Notify);
    let script = [
        (Event::Start, 0),
        (Event::Spawned { generation: G }, 1),
        (
            Event::Notify {
                generation: G,
                datagram: b"EXTEND_TIMEOUT_USEC=500000",
            },
            800,
        ),
        (
            Event::Notify {
                generation: G,
                datagram: b"READY=1",
            },
            1_200,
        ),
    ];
    caught_by(
        spec,
        Mutation::ExtensionCountsFromStart,
        &script,
        "ready-deadline",
        "machine's ready deadline Some(t=1.000000000s), the history calls for Some(t=1.300000000s)",
    );
}
