//! Health after ready, in the core: health checks (schedule, thresholds, start period,
//! attempt timeout) and the notify watchdog, each step also checked by the reference model.

use std::time::Duration;

use podvisor::core::{
    Action, CheckedPod, End, Event, ExitStatus, Generation, GroupSignal, Health, HealthCheck,
    PodSpec, SpecError, State, Time, Unhealthy,
};

const G: Generation = Generation(1);

fn ms(n: u64) -> Time {
    Time::from_millis(n)
}

fn step(pod: &mut CheckedPod, event: Event<'_>, at: Time) -> Vec<Action> {
    pod.handle(event, at).unwrap_or_else(|v| panic!("{v}"))
}

fn check(interval: u64, timeout: u64, retries: u32) -> HealthCheck {
    HealthCheck {
        interval: Duration::from_millis(interval),
        timeout: Duration::from_millis(timeout),
        retries,
        successes: 1,
        start_period: Duration::ZERO,
    }
}

/// A pod with `spec`, ready at 1 ms (no readiness checks).
fn ready(spec: PodSpec) -> (CheckedPod, Vec<Action>) {
    let mut pod = CheckedPod::new(spec.grace(Duration::from_millis(100))).unwrap();
    step(&mut pod, Event::Start, ms(0));
    let actions = step(&mut pod, Event::Spawned { generation: G }, ms(1));
    assert_eq!(pod.machine.state(), State::Ready);
    (pod, actions)
}

fn started_attempt(actions: &[Action]) -> Option<u64> {
    actions.iter().find_map(|a| match a {
        Action::StartHealthProbe { attempt, .. } => Some(*attempt),
        _ => None,
    })
}

fn answer(pod: &mut CheckedPod, attempt: u64, ok: bool, at: Time) -> Vec<Action> {
    step(
        pod,
        Event::ProbeFinished {
            generation: G,
            attempt,
            ok,
        },
        at,
    )
}

fn notify(pod: &mut CheckedPod, datagram: &[u8], at: Time) -> Vec<Action> {
    step(
        pod,
        Event::Notify {
            generation: G,
            datagram,
        },
        at,
    )
}

fn stop_signal(actions: &[Action]) -> Option<GroupSignal> {
    actions.iter().find_map(|a| match a {
        Action::SignalGroup { signal, .. } if *signal != GroupSignal::Continue => Some(*signal),
        _ => None,
    })
}

#[test]
fn a_health_check_starts_at_ready_and_passes() {
    let (mut pod, actions) = ready(PodSpec::default().health(check(100, 50, 3)));
    assert!(actions.contains(&Action::HealthChanged {
        health: Health::Starting
    }));
    let first = started_attempt(&actions).expect("first attempt at ready");
    let actions = answer(&mut pod, first, true, ms(5));
    assert_eq!(
        actions,
        vec![Action::HealthChanged {
            health: Health::Healthy
        }]
    );
    // The next attempt is due one interval after the first started.
    assert_eq!(pod.machine.poll_timeout(), Some(ms(101)));
    let actions = pod.advance_to_timeout().unwrap().unwrap();
    assert!(started_attempt(&actions).is_some());
}

#[test]
fn unhealthy_only_after_retries_consecutive_failures_then_closed() {
    let (mut pod, actions) = ready(PodSpec::default().health(check(100, 50, 3)));
    let mut attempt = started_attempt(&actions).unwrap();
    // fail, fail, succeed (resets), fail, fail: still not unhealthy.
    let mut now = 1;
    assert_eq!(pod.machine.health_failures(0), 0);
    for (ok, failures) in [(false, 1), (false, 2), (true, 0), (false, 1), (false, 2)] {
        answer(&mut pod, attempt, ok, ms(now + 10));
        assert_eq!(pod.machine.health_failures(0), failures);
        assert_eq!(pod.machine.state(), State::Ready);
        let actions = pod.advance_to_timeout().unwrap().unwrap();
        attempt = started_attempt(&actions).unwrap();
        now += 100;
    }
    // The third failure in a row.
    let actions = answer(&mut pod, attempt, false, ms(now + 10));
    let cause = Unhealthy::Check {
        check: 0,
        failures: 3,
    };
    assert!(actions.contains(&Action::HealthChanged {
        health: Health::Unhealthy(cause)
    }));
    assert_eq!(stop_signal(&actions), Some(GroupSignal::Stop));
    assert_eq!(pod.machine.state(), State::Stopping);
    step(
        &mut pod,
        Event::Exited {
            generation: G,
            status: ExitStatus::Signal(15),
        },
        ms(now + 20),
    );
    assert_eq!(
        pod.machine.end(),
        Some(End::Unhealthy {
            cause,
            status: ExitStatus::Signal(15),
            killed: false
        })
    );
}

#[test]
fn an_attempt_that_times_out_is_cancelled_and_counts_as_a_failure() {
    let (mut pod, actions) = ready(PodSpec::default().health(check(100, 30, 1)));
    let attempt = started_attempt(&actions).unwrap();
    assert_eq!(pod.machine.poll_timeout(), Some(ms(31)));
    let actions = pod.advance_to_timeout().unwrap().unwrap();
    assert_eq!(
        actions[0],
        Action::CancelHealthProbe {
            generation: G,
            check: 0,
            attempt,
            timed_out: true,
        }
    );
    assert_eq!(pod.machine.state(), State::Stopping);
    // Its late answer is ignored.
    answer(&mut pod, attempt, true, ms(40));
    assert_eq!(pod.machine.state(), State::Stopping);
    // Not gone within the grace period: killed, and still unhealthy.
    pod.advance_to_timeout().unwrap().unwrap();
    assert_eq!(pod.machine.state(), State::Killing);
    step(
        &mut pod,
        Event::Exited {
            generation: G,
            status: ExitStatus::Signal(9),
        },
        ms(140),
    );
    assert!(matches!(
        pod.machine.end(),
        Some(End::Unhealthy { killed: true, .. })
    ));
}

#[test]
fn failures_in_the_start_period_do_not_count_until_a_success() {
    let mut spec = check(10, 5, 1);
    spec.start_period = Duration::from_millis(50);
    let (mut pod, actions) = ready(PodSpec::default().health(spec));
    let mut attempt = started_attempt(&actions).unwrap();
    // Failures within 50 ms of ready (at 1 ms) are forgiven.
    for at in [2, 12, 22, 32, 42] {
        answer(&mut pod, attempt, false, ms(at));
        assert_eq!(pod.machine.state(), State::Ready, "failure at {at} ms");
        attempt = started_attempt(&pod.advance_to_timeout().unwrap().unwrap()).unwrap();
    }
    // A success ends the start period at once: the next failure counts.
    answer(&mut pod, attempt, true, ms(45));
    attempt = started_attempt(&pod.advance_to_timeout().unwrap().unwrap()).unwrap();
    answer(&mut pod, attempt, false, ms(48));
    assert_eq!(pod.machine.state(), State::Stopping);
}

#[test]
fn success_threshold_holds_healthy_back() {
    let mut spec = check(10, 5, 3);
    spec.successes = 2;
    let (mut pod, actions) = ready(PodSpec::default().health(spec));
    let attempt = started_attempt(&actions).unwrap();
    answer(&mut pod, attempt, true, ms(2));
    assert_eq!(pod.machine.health(), Some(Health::Starting));
    let attempt = started_attempt(&pod.advance_to_timeout().unwrap().unwrap()).unwrap();
    answer(&mut pod, attempt, true, ms(12));
    assert_eq!(pod.machine.health(), Some(Health::Healthy));
}

#[test]
fn the_watchdog_expires_exactly_one_interval_after_the_last_ping() {
    let (mut pod, actions) = ready(PodSpec::default().watchdog(Some(Duration::from_millis(100))));
    assert!(actions.contains(&Action::HealthChanged {
        health: Health::Healthy
    }));
    assert_eq!(pod.machine.watchdog_deadline(), Some(ms(101)));
    notify(&mut pod, b"WATCHDOG=1", ms(60));
    assert_eq!(pod.machine.watchdog_deadline(), Some(ms(160)));
    // A ping at the deadline instant comes too late (deadlines are strict).
    let actions = notify(&mut pod, b"WATCHDOG=1", ms(160));
    assert_eq!(stop_signal(&actions), Some(GroupSignal::Watchdog));
    assert!(actions.contains(&Action::HealthChanged {
        health: Health::Unhealthy(Unhealthy::Watchdog {
            interval: Duration::from_millis(100)
        })
    }));
}

#[test]
fn watchdog_usec_sets_the_interval_and_rearms_zero_turns_it_off() {
    let (mut pod, _) = ready(PodSpec::default().watchdog(Some(Duration::from_millis(100))));
    notify(&mut pod, b"WATCHDOG_USEC=300000", ms(50));
    assert_eq!(pod.machine.watchdog_deadline(), Some(ms(350)));
    notify(&mut pod, b"WATCHDOG=1", ms(100));
    assert_eq!(pod.machine.watchdog_deadline(), Some(ms(400)));
    notify(&mut pod, b"WATCHDOG_USEC=0", ms(120));
    assert_eq!(pod.machine.watchdog_deadline(), None);
    assert_eq!(pod.machine.poll_timeout(), None);
}

#[test]
fn extend_timeout_after_ready_pushes_the_watchdog_and_never_pulls_it() {
    let (mut pod, _) = ready(PodSpec::default().watchdog(Some(Duration::from_millis(100))));
    notify(&mut pod, b"EXTEND_TIMEOUT_USEC=500000", ms(50));
    assert_eq!(pod.machine.watchdog_deadline(), Some(ms(550)));
    notify(&mut pod, b"EXTEND_TIMEOUT_USEC=1000", ms(60));
    assert_eq!(pod.machine.watchdog_deadline(), Some(ms(550)));
}

#[test]
fn stopping_disarms_trigger_fails_at_once_malformed_does_not_rearm() {
    let spec = PodSpec::default().watchdog(Some(Duration::from_millis(100)));
    let (mut pod, _) = ready(spec.clone());
    notify(&mut pod, b"STOPPING=1", ms(50));
    assert_eq!(pod.machine.watchdog_deadline(), None);
    notify(&mut pod, b"WATCHDOG=1", ms(60));
    assert_eq!(pod.machine.watchdog_deadline(), None);

    let (mut pod, _) = ready(spec.clone());
    let actions = notify(&mut pod, b"WATCHDOG=trigger", ms(20));
    assert_eq!(stop_signal(&actions), Some(GroupSignal::Watchdog));

    let (mut pod, _) = ready(spec);
    notify(&mut pod, b"WATCHDOG=2", ms(50));
    assert_eq!(pod.machine.watchdog_deadline(), Some(ms(101)));
    assert_eq!(pod.machine.stats().malformed_notify_fields, 1);
}

#[test]
fn a_close_disarms_everything_and_the_end_is_closed() {
    let spec = PodSpec::default()
        .health(check(10, 5, 1))
        .watchdog(Some(Duration::from_millis(30)));
    let (mut pod, actions) = ready(spec);
    let attempt = started_attempt(&actions).unwrap();
    let actions = step(&mut pod, Event::Close { grace: None }, ms(3));
    assert!(actions.contains(&Action::CancelHealthProbe {
        generation: G,
        check: 0,
        attempt,
        timed_out: false,
    }));
    assert_eq!(stop_signal(&actions), Some(GroupSignal::Stop));
    assert_eq!(pod.machine.watchdog_deadline(), None);
    step(
        &mut pod,
        Event::Exited {
            generation: G,
            status: ExitStatus::Code(0),
        },
        ms(4),
    );
    assert_eq!(pod.machine.end(), Some(End::Closed(ExitStatus::Code(0))));
}

#[test]
fn nothing_is_watched_before_ready() {
    let spec = PodSpec::default()
        .check(podvisor::core::Check::Notify)
        .health(check(10, 5, 1))
        .watchdog(Some(Duration::from_millis(30)));
    let mut pod = CheckedPod::new(spec).unwrap();
    step(&mut pod, Event::Start, ms(0));
    step(&mut pod, Event::Spawned { generation: G }, ms(1));
    let actions = notify(&mut pod, b"WATCHDOG=trigger\nWATCHDOG=1", ms(2));
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(pod.machine.health(), None);
    assert_eq!(pod.machine.watchdog_deadline(), None);
    let actions = notify(&mut pod, b"READY=1", ms(500));
    assert!(started_attempt(&actions).is_some());
    assert_eq!(pod.machine.watchdog_deadline(), Some(ms(530)));
}

#[test]
fn bad_health_settings_are_spec_errors() {
    let zero = |f: fn(&mut HealthCheck)| {
        let mut c = check(10, 5, 1);
        f(&mut c);
        PodSpec::default().health(c).validate().unwrap_err()
    };
    for (error, says) in [
        (zero(|c| c.interval = Duration::ZERO), "interval is zero"),
        (zero(|c| c.timeout = Duration::ZERO), "timeout is zero"),
        (zero(|c| c.retries = 0), "retries"),
        (zero(|c| c.successes = 0), "successes"),
    ] {
        assert!(matches!(error, SpecError::BadHealthCheck { check: 0, .. }));
        assert!(error.to_string().contains(says), "{error}");
        assert!(error.to_string().starts_with("health check #0"), "{error}");
    }
    let error = PodSpec::default()
        .watchdog(Some(Duration::ZERO))
        .validate()
        .unwrap_err();
    assert_eq!(error, SpecError::ZeroWatchdog);
    assert!(error.to_string().contains("watchdog interval is zero"));
}

#[test]
fn a_change_of_what_a_check_looks_at_starts_an_attempt_at_once() {
    let (mut pod, actions) = ready(PodSpec::default().health(check(10_000, 50, 2)));
    let first = started_attempt(&actions).unwrap();
    answer(&mut pod, first, true, ms(2));
    assert_eq!(pod.machine.health(), Some(Health::Healthy));
    // The file went away at 500 ms, long before the next attempt is due (10 s).
    let changed = Event::HealthCheckChanged {
        generation: G,
        check: 0,
    };
    let actions = step(&mut pod, changed, ms(500));
    let second = started_attempt(&actions).expect("an attempt at once");
    // While it runs, another change starts nothing.
    assert_eq!(started_attempt(&step(&mut pod, changed, ms(501))), None);
    answer(&mut pod, second, false, ms(502));
    assert_eq!(pod.machine.health_failures(0), 1);
    // The interval counts from the attempt the change started.
    assert_eq!(pod.machine.poll_timeout(), Some(ms(10_500)));
    // One about another generation is ignored.
    let ignored = pod.machine.stats().ignored;
    let foreign = Event::HealthCheckChanged {
        generation: Generation(7),
        check: 0,
    };
    assert_eq!(started_attempt(&step(&mut pod, foreign, ms(600))), None);
    assert_eq!(pod.machine.stats().ignored, ignored + 1);
    // A second change: a second failure in a row makes the pod unhealthy at once.
    let actions = step(&mut pod, changed, ms(700));
    let third = started_attempt(&actions).unwrap();
    answer(&mut pod, third, false, ms(701));
    assert_eq!(
        pod.machine.health(),
        Some(Health::Unhealthy(Unhealthy::Check {
            check: 0,
            failures: 2
        }))
    );
    // Once stopping, a change starts nothing.
    assert_eq!(started_attempt(&step(&mut pod, changed, ms(702))), None);
}
