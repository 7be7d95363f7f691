//! A pod that writes as fast as it can must not hold up anything else: its own close and
//! SIGKILL, another pod's deadline, another pod's readiness.
//!
//! Every pod of a process is driven by one podvisor thread; these tests run in their own
//! binary so that a stuck driver cannot take other tests down with it.

mod support;

use std::time::{Duration, Instant};

use podvisor::{End, ExitStatus, Output, Pod, PodConfig, Readiness, StartError};
use support::{fixture, ignoring_term};

/// `yes`: one endless stream of short lines.
fn flood() -> PodConfig {
    PodConfig::new("yes").name("flood").stdout(Output::Capture)
}

#[test]
fn a_flooding_pod_is_closed_and_killed_on_time() {
    let pod = Pod::new(flood().grace(Duration::from_secs(1))).unwrap();
    pod.start_and_wait_blocking().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    pod.close_nowait(None);
    let end = pod.join_timeout_blocking(Duration::from_secs(20));
    assert_eq!(end, Some(End::Closed(ExitStatus::Signal(15))));

    // The same with SIGTERM ignored: SIGKILL must come at the end of the grace period.
    let stubborn = Pod::new(
        PodConfig::new("sh")
            .args(["-c", "trap '' TERM; echo up; exec yes"])
            .ready(Readiness::Stdout("up".into()))
            .grace(Duration::from_millis(500)),
    )
    .unwrap();
    stubborn.start_and_wait_blocking().unwrap();
    let closing = Instant::now();
    stubborn.close_nowait(None);
    let end = stubborn.join_timeout_blocking(Duration::from_secs(20));
    assert_eq!(end, Some(End::Killed(ExitStatus::Signal(9))));
    assert!(closing.elapsed() >= Duration::from_millis(500));
}

#[test]
fn a_flooding_pod_delays_no_other_pods_deadline_or_readiness() {
    let floods: Vec<Pod> = (0..2)
        .map(|_| Pod::new(flood().grace(Duration::from_millis(200))).unwrap())
        .collect();
    for pod in &floods {
        pod.start_and_wait_blocking().unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));

    // A deadline of another pod fires while they flood.
    let late = Pod::new(
        fixture(&["forever"])
            .ready(Readiness::Notify)
            .timeout_ready(Some(Duration::from_millis(300))),
    )
    .unwrap();
    let started = Instant::now();
    let error = late.start_and_wait_blocking().unwrap_err();
    assert!(matches!(error, StartError::TimedOut { .. }), "{error}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "timed out after {took:?}");

    // Another pod becomes ready while they flood.
    let quick = Pod::new(
        fixture(&["notify", "READY=1", "forever"])
            .ready(Readiness::Notify)
            .timeout_ready(Some(Duration::from_secs(20))),
    )
    .unwrap();
    quick.start_and_wait_blocking().unwrap();
    quick.close_blocking();

    for pod in &floods {
        pod.close_nowait(None);
    }
    for pod in &floods {
        assert!(pod.join_timeout_blocking(Duration::from_secs(20)).is_some());
    }
}

#[test]
fn a_stubborn_flood_still_gets_its_output_read_to_the_end() {
    // Bounded reading must not lose anything: the last line of a long burst arrives.
    let pod = Pod::new(
        ignoring_term(&["flood", "200000", "print", "done", "forever"])
            .stdout(Output::Capture)
            .grace(Duration::from_millis(300)),
    )
    .unwrap();
    pod.start_and_wait_blocking().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while pod.last_lines().last().map(String::as_str) != Some("done") {
        assert!(Instant::now() < deadline, "{:?}", pod.last_lines());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(matches!(pod.close_blocking(), End::Killed(_)));
}
