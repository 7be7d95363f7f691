//! What `PodMachine`'s accessors report, and that input of another generation is ignored
//! whatever its kind: each test here kills mutants that the transition tests let live
//! (`bash .ci/mutants`).

use std::time::Duration;

use podvisor::core::{
    Action, Check, CheckSet, Event, ExitStatus, Generation, PodMachine, PodSpec, ProbeSchedule,
    SpawnError, SpawnErrorKind, State, Stream, Time,
};

const G: Generation = Generation(1);
const OTHER: Generation = Generation(7);

fn ms(n: u64) -> Time {
    Time::from_millis(n)
}

fn started(spec: PodSpec) -> PodMachine {
    let mut pod = PodMachine::new(spec).unwrap();
    pod.handle(Event::Start, ms(10));
    pod.handle(Event::Spawned { generation: G }, ms(11));
    pod
}

fn actions(pod: &mut PodMachine) -> Vec<Action> {
    std::iter::from_fn(|| pod.poll_action()).collect()
}

#[test]
fn accessors_report_what_the_machine_was_told() {
    let spec = PodSpec::default()
        .check(Check::Notify)
        .check(Check::Output {
            stream: Stream::Stdout,
            text: "up".into(),
        })
        .timeout_ready(Some(Duration::from_secs(5)))
        .watchdog(Some(Duration::from_secs(3)));
    let mut pod = started(spec.clone());
    assert_eq!(pod.spec(), &spec);
    assert_eq!(pod.started_at(), Some(ms(10)));
    assert_eq!(pod.main_pid(), None);
    assert!(!pod.child_stopping());
    assert_eq!(pod.watchdog_interval(), Some(Duration::from_secs(3)));
    pod.handle(
        Event::OutputLine {
            generation: G,
            stream: Stream::Stdout,
            line: b"it is up",
        },
        ms(20),
    );
    let mut one = CheckSet::EMPTY;
    one.insert(1);
    assert_eq!(pod.latched_checks(), one);
    assert_eq!(pod.pending_checks(), CheckSet::first(1));
    pod.handle(
        Event::Notify {
            generation: G,
            datagram: b"MAINPID=4242\nWATCHDOG_USEC=2000000\nREADY=1",
        },
        ms(30),
    );
    assert_eq!(pod.state(), State::Ready);
    assert_eq!(pod.latched_checks(), CheckSet::first(2));
    assert_eq!(pod.main_pid(), Some(4242));
    assert_eq!(pod.watchdog_interval(), Some(Duration::from_secs(2)));
    assert_eq!(pod.watchdog_deadline(), Some(ms(2030)));
    pod.handle(
        Event::Notify {
            generation: G,
            datagram: b"STOPPING=1",
        },
        ms(40),
    );
    assert!(pod.child_stopping());
}

#[test]
fn a_tick_is_not_ignored_input() {
    let mut pod = started(PodSpec::default().check(Check::Notify));
    pod.handle(Event::Tick, ms(12));
    assert_eq!(pod.stats().ignored, 0);
    assert_eq!(pod.now(), ms(12));
}

#[test]
fn input_is_dated_before_a_due_deadline_and_never_before_now() {
    let spec = PodSpec::default()
        .check(Check::Notify)
        .timeout_ready(Some(Duration::from_millis(100)));
    let pod = started(spec);
    // Deadline 110 ms: due at 110 and later, not before.
    assert_eq!(pod.input_instant(ms(50)), ms(50));
    assert_eq!(pod.input_instant(ms(109)), ms(109));
    let just_before = Time::from_nanos(ms(110).as_nanos() - 1);
    assert_eq!(pod.input_instant(ms(110)), just_before);
    assert_eq!(pod.input_instant(ms(5000)), just_before);
    // Never before the machine's own now.
    let mut late = started(
        PodSpec::default()
            .check(Check::Notify)
            .timeout_ready(Some(Duration::from_millis(100))),
    );
    late.handle(Event::Tick, ms(105));
    assert_eq!(late.input_instant(ms(200)), just_before.max(ms(105)));
    let mut later = started(
        PodSpec::default()
            .check(Check::Notify)
            .timeout_ready(Some(Duration::from_millis(1))),
    );
    // Its deadline (11 ms) already fired at 11 ms: the pod is stopping, with the kill
    // deadline as the next one.
    later.handle(Event::Tick, ms(12));
    assert_eq!(later.state(), State::Stopping);
    let kill = later.kill_deadline().unwrap();
    assert_eq!(later.input_instant(ms(12)), ms(12));
    assert_eq!(
        later.input_instant(Time::from_nanos(kill.as_nanos() + 1)),
        Time::from_nanos(kill.as_nanos() - 1)
    );
}

/// Every kind of input a process reports, stamped with another generation.
fn foreign_events() -> Vec<Event<'static>> {
    vec![
        Event::Spawned { generation: OTHER },
        Event::SpawnFailed {
            generation: OTHER,
            error: SpawnError {
                kind: SpawnErrorKind::NotFound,
                errno: Some(2),
            },
        },
        Event::Notify {
            generation: OTHER,
            datagram: b"READY=1\nSTATUS=other\nMAINPID=9",
        },
        Event::OutputLine {
            generation: OTHER,
            stream: Stream::Stdout,
            line: b"ready now",
        },
        Event::ProbeFinished {
            generation: OTHER,
            attempt: 0,
            ok: true,
        },
        Event::ProbeFinished {
            generation: OTHER,
            attempt: 1,
            ok: true,
        },
        Event::Exited {
            generation: OTHER,
            status: ExitStatus::Code(0),
        },
    ]
}

#[test]
fn input_of_another_generation_is_ignored_in_every_state() {
    let spec = || {
        PodSpec::default()
            .check(Check::Notify)
            .check(Check::Output {
                stream: Stream::Stdout,
                text: "ready".into(),
            })
            .check(Check::Probe(ProbeSchedule::default()))
            .timeout_ready(Some(Duration::from_secs(5)))
    };
    // Spawning (before Spawned) and Starting (after).
    for spawned in [false, true] {
        for event in foreign_events() {
            let mut pod = PodMachine::new(spec()).unwrap();
            pod.handle(Event::Start, ms(0));
            if spawned {
                pod.handle(Event::Spawned { generation: G }, ms(1));
            }
            let state = pod.state();
            let _ = actions(&mut pod);
            let shown = format!("{event:?}");
            pod.handle(event, ms(2));
            assert_eq!(pod.state(), state, "{shown}");
            assert_eq!(pod.stats().ignored, 1, "{shown}");
            assert_eq!(pod.latched_checks(), CheckSet::EMPTY, "{shown}");
            assert_eq!(pod.status_text(), None, "{shown}");
            assert_eq!(pod.main_pid(), None, "{shown}");
            assert_eq!(pod.start_result(), None, "{shown}");
            assert!(
                actions(&mut pod)
                    .iter()
                    .all(|a| !matches!(a, Action::StateChanged { .. })),
                "{shown}"
            );
        }
    }
}

#[test]
fn a_long_status_is_cut_at_a_character_boundary() {
    let mut pod = started(PodSpec::default().check(Check::Notify));
    // 4095 ASCII bytes, then 'é' (2 bytes) straddling the 4096-byte limit.
    let mut datagram = b"STATUS=".to_vec();
    datagram.extend(std::iter::repeat_n(b'a', 4095));
    datagram.extend("é and more".as_bytes());
    pod.handle(
        Event::Notify {
            generation: G,
            datagram: &datagram,
        },
        ms(20),
    );
    let text = pod.status_text().unwrap();
    assert_eq!(text.len(), 4095);
    assert!(text.bytes().all(|b| b == b'a'));
    // A short one is kept whole.
    pod.handle(
        Event::Notify {
            generation: G,
            datagram: "STATUS=déjà vu".as_bytes(),
        },
        ms(21),
    );
    assert_eq!(pod.status_text(), Some("déjà vu"));
}

#[test]
fn at_most_max_checks_of_each_kind() {
    use podvisor::core::{HealthCheck, SpecError, MAX_CHECKS};
    let readiness = |n: usize| (0..n).fold(PodSpec::default(), |spec, _| spec.check(Check::Notify));
    assert_eq!(readiness(MAX_CHECKS).validate(), Ok(()));
    assert_eq!(
        readiness(MAX_CHECKS + 1).validate(),
        Err(SpecError::TooManyChecks {
            count: MAX_CHECKS + 1
        })
    );
    let health = |n: usize| {
        (0..n).fold(PodSpec::default(), |spec, _| {
            spec.health(HealthCheck::default())
        })
    };
    assert_eq!(health(MAX_CHECKS).validate(), Ok(()));
    assert_eq!(
        health(MAX_CHECKS + 1).validate(),
        Err(SpecError::TooManyChecks {
            count: MAX_CHECKS + 1
        })
    );
}

#[test]
fn time_counts_nanoseconds_from_its_epoch() {
    assert_eq!(ms(3).as_nanos(), 3_000_000);
    assert_eq!(Time::from_nanos(7).as_nanos(), 7);
    assert_eq!(ms(5).checked_sub(Duration::from_millis(2)), Some(ms(3)));
    assert_eq!(
        ms(5).checked_sub(Duration::from_millis(5)),
        Some(Time::ZERO)
    );
    assert_eq!(ms(5).checked_sub(Duration::from_millis(6)), None);
    assert_eq!(ms(5).checked_sub(Duration::MAX), None);
}

#[test]
fn a_deployment_machine_keeps_its_spec() {
    use podvisor::core::deployment::{Condition, DeploymentMachine, DeploymentSpec, PodTemplate};
    let spec = DeploymentSpec::new().pod(PodTemplate::new("db")).pod(
        PodTemplate::new("web")
            .replicas(2)
            .depends_on("db", Condition::Ready),
    );
    let machine = DeploymentMachine::new(spec.clone()).unwrap();
    assert_eq!(machine.spec(), &spec);
}

#[test]
fn a_deployment_ignores_requests_for_unknown_members_and_while_closing() {
    use podvisor::core::deployment::{
        DeploymentEvent, DeploymentMachine, DeploymentSpec, MemberId, PodTemplate,
    };
    let spec = DeploymentSpec::new().pod(PodTemplate::new("a").replicas(2));
    let mut machine = DeploymentMachine::new(spec).unwrap();
    machine.handle(DeploymentEvent::Start, ms(0));
    // The same instant twice is not time going back.
    machine.handle(DeploymentEvent::Tick, ms(0));
    assert_eq!(machine.stats().time_went_back, 0);
    machine.handle(DeploymentEvent::Tick, ms(5));
    machine.handle(DeploymentEvent::Tick, ms(4));
    assert_eq!(machine.stats().time_went_back, 1);
    let requests = |member| {
        [
            DeploymentEvent::StopMember {
                member,
                cascade: false,
            },
            DeploymentEvent::StartMember { member },
            DeploymentEvent::RestartMember { member },
        ]
    };
    // One past the last member: ignored, counted once each, nothing panics.
    for (n, event) in requests(MemberId(2)).into_iter().enumerate() {
        machine.handle(event, ms(6));
        assert_eq!(machine.stats().ignored, n as u64 + 1);
    }
    // A known member while the deployment closes: ignored too.
    machine.handle(DeploymentEvent::Close { grace: None }, ms(7));
    for (n, event) in requests(MemberId(0)).into_iter().enumerate() {
        machine.handle(event, ms(8));
        assert_eq!(machine.stats().ignored, n as u64 + 4);
    }
}

mod deployment {
    use super::ms;
    use podvisor::core::deployment::{
        Condition, DeploymentAction, DeploymentEvent, DeploymentMachine, DeploymentSpec, MemberId,
        MemberState, PodTemplate, RestartPolicy,
    };
    use podvisor::core::{End, ExitStatus, Generation, StartResult};
    use std::time::Duration;

    /// `db` (2 replicas) ← `web` (1), started: the StartPod actions so far.
    fn started() -> (DeploymentMachine, Vec<(MemberId, Generation)>) {
        let spec = DeploymentSpec::new()
            .pod(PodTemplate::new("db").replicas(2))
            .pod(PodTemplate::new("web").depends_on("db", Condition::Ready));
        let mut machine = DeploymentMachine::new(spec).unwrap();
        machine.handle(DeploymentEvent::Start, ms(0));
        let starts = std::iter::from_fn(|| machine.poll_action())
            .filter_map(|a| match a {
                DeploymentAction::StartPod { member, generation } => Some((member, generation)),
                _ => None,
            })
            .collect();
        (machine, starts)
    }

    const READY: StartResult = StartResult::Ready {
        after: Duration::from_millis(1),
    };

    #[test]
    fn members_report_their_replica_start_health_and_end() {
        let (mut machine, starts) = started();
        assert_eq!(starts.len(), 2, "db's two replicas start, web waits");
        let replicas: Vec<u32> = machine.members().iter().map(|m| m.replica()).collect();
        assert_eq!(replicas, [0, 1, 0]);
        let (db1, generation) = starts[1];
        let m = |machine: &DeploymentMachine| machine.members()[db1.0].clone();
        assert!(!m(&machine).is_started() && !m(&machine).is_healthy());
        machine.handle(
            DeploymentEvent::PodStarted {
                member: db1,
                generation,
            },
            ms(1),
        );
        assert!(m(&machine).is_started());
        machine.handle(
            DeploymentEvent::PodStartResult {
                member: db1,
                generation,
                result: READY,
            },
            ms(2),
        );
        assert_eq!(m(&machine).start_result(), Some(&READY));
        machine.handle(
            DeploymentEvent::PodHealthy {
                member: db1,
                generation,
            },
            ms(3),
        );
        assert!(m(&machine).is_healthy());
        assert!(!m(&machine).is_held());
        machine.handle(
            DeploymentEvent::StopMember {
                member: db1,
                cascade: false,
            },
            ms(4),
        );
        assert!(m(&machine).is_held());
        let end = End::Closed(ExitStatus::Signal(15));
        machine.handle(
            DeploymentEvent::PodEnded {
                member: db1,
                generation,
                end,
            },
            ms(5),
        );
        assert_eq!(m(&machine).end(), Some(end));
        assert_eq!(m(&machine).state(), MemberState::Stopped);
    }

    #[test]
    fn events_of_generation_zero_are_ignored() {
        let (mut machine, _) = started();
        // web has not started: its generation is 0, and an event claiming it is not its.
        let web = MemberId(2);
        assert_eq!(machine.members()[2].generation(), Generation(0));
        let before = machine.stats().ignored;
        machine.handle(
            DeploymentEvent::PodStarted {
                member: web,
                generation: Generation(0),
            },
            ms(1),
        );
        assert_eq!(machine.stats().ignored, before + 1);
        assert!(!machine.members()[2].is_started());
        assert_eq!(machine.members()[2].state(), MemberState::Waiting);
    }

    /// `db` (1 replica) ← `web` (started condition): both started, web's StartPod seen.
    fn both_started() -> (DeploymentMachine, Generation, Generation) {
        let spec = DeploymentSpec::new()
            .pod(PodTemplate::new("db").restart(RestartPolicy::Always))
            .pod(PodTemplate::new("web").depends_on("db", Condition::Started));
        let mut machine = DeploymentMachine::new(spec).unwrap();
        let drain = |machine: &mut DeploymentMachine| -> Vec<Generation> {
            std::iter::from_fn(|| machine.poll_action())
                .filter_map(|a| match a {
                    DeploymentAction::StartPod { generation, .. } => Some(generation),
                    _ => None,
                })
                .collect()
        };
        machine.handle(DeploymentEvent::Start, ms(0));
        let db = drain(&mut machine)[0];
        machine.handle(
            DeploymentEvent::PodStarted {
                member: MemberId(0),
                generation: db,
            },
            ms(1),
        );
        let web = drain(&mut machine)[0];
        machine.handle(
            DeploymentEvent::PodStarted {
                member: MemberId(1),
                generation: web,
            },
            ms(2),
        );
        (machine, db, web)
    }

    /// A member stopped on request with its dependents is held until they are down; its
    /// pod failing meanwhile is no failure of the deployment.
    #[test]
    fn a_member_held_for_its_dependents_may_fail_without_failing_the_deployment() {
        let (mut machine, db, _) = both_started();
        machine.handle(
            DeploymentEvent::StopMember {
                member: MemberId(0),
                cascade: true,
            },
            ms(3),
        );
        assert!(machine.members()[0].is_held());
        machine.handle(
            DeploymentEvent::PodStartResult {
                member: MemberId(0),
                generation: db,
                result: StartResult::ExitedEarly {
                    status: ExitStatus::Code(1),
                },
            },
            ms(4),
        );
        assert!(machine.failure().is_none(), "{:?}", machine.failure());
    }

    /// While the deployment closes, a member whose close is not sent yet (its dependents
    /// are still up) may end by itself: that is no failure either.
    #[test]
    fn a_member_ending_before_its_close_is_sent_is_no_failure_while_closing() {
        let (mut machine, db, _) = both_started();
        machine.handle(DeploymentEvent::Close { grace: None }, ms(3));
        let closes: Vec<MemberId> = std::iter::from_fn(|| machine.poll_action())
            .filter_map(|a| match a {
                DeploymentAction::ClosePod { member, .. } => Some(member),
                _ => None,
            })
            .collect();
        assert_eq!(closes, [MemberId(1)], "web first, db once web is down");
        machine.handle(
            DeploymentEvent::PodEnded {
                member: MemberId(0),
                generation: db,
                end: End::Exited(ExitStatus::Code(1)),
            },
            ms(4),
        );
        assert!(machine.failure().is_none(), "{:?}", machine.failure());
        assert_eq!(machine.members()[0].state(), MemberState::Ended);
        // No restart decided for it either.
        assert_eq!(machine.members()[0].restarts_since_reset(), 0);
        assert_eq!(machine.members()[0].last_delay(), None);
    }

    #[test]
    fn a_start_that_fails_while_the_deployment_closes_is_no_failure() {
        for result in [
            StartResult::ExitedEarly {
                status: ExitStatus::Code(1),
            },
            StartResult::Cancelled,
        ] {
            let (mut machine, starts) = started();
            let (db0, generation) = starts[0];
            machine.handle(
                DeploymentEvent::PodStarted {
                    member: db0,
                    generation,
                },
                ms(1),
            );
            machine.handle(DeploymentEvent::Close { grace: None }, ms(2));
            machine.handle(
                DeploymentEvent::PodStartResult {
                    member: db0,
                    generation,
                    result: result.clone(),
                },
                ms(3),
            );
            assert!(
                machine.failure().is_none(),
                "{result:?}: {:?}",
                machine.failure()
            );
        }
    }
}

mod observer {
    use podvisor::core::deployment::{DeploymentEvent, MemberId, PodObserver};
    use podvisor::core::{End, ExitStatus, Generation, Health, StartResult, State, Unhealthy};
    use std::time::Duration;

    const M: MemberId = MemberId(3);
    const G: Generation = Generation(2);

    #[test]
    fn health_is_reported_once_each_way_and_never_after_the_end() {
        let mut observer = PodObserver::new(M, G);
        assert_eq!(observer.observe_health(None), None);
        assert_eq!(observer.observe_health(Some(Health::Starting)), None);
        let healthy = DeploymentEvent::PodHealthy {
            member: M,
            generation: G,
        };
        assert_eq!(
            observer.observe_health(Some(Health::Healthy)),
            Some(healthy)
        );
        assert_eq!(observer.observe_health(Some(Health::Healthy)), None);
        let bad = Some(Health::Unhealthy(Unhealthy::WatchdogTrigger));
        let unhealthy = DeploymentEvent::PodUnhealthy {
            member: M,
            generation: G,
        };
        assert_eq!(observer.observe_health(bad), Some(unhealthy));
        assert_eq!(observer.observe_health(bad), None);
        // After the end, nothing more about health.
        let mut ended = PodObserver::new(M, G);
        assert!(!ended.ended());
        let end = End::Exited(ExitStatus::Code(0));
        ended.observe(State::Ended, None, Some(end));
        assert!(ended.ended());
        assert_eq!(ended.observe_health(Some(Health::Healthy)), None);
        assert_eq!(ended.observe_health(bad), None);
    }

    #[test]
    fn observe_all_puts_health_before_the_end() {
        let mut observer = PodObserver::new(M, G);
        let ready = StartResult::Ready {
            after: Duration::from_millis(3),
        };
        let first = observer.observe_all(State::Ready, Some(&ready), None, Some(Health::Healthy));
        assert_eq!(
            first,
            vec![
                DeploymentEvent::PodStarted {
                    member: M,
                    generation: G
                },
                DeploymentEvent::PodStartResult {
                    member: M,
                    generation: G,
                    result: ready.clone()
                },
                DeploymentEvent::PodHealthy {
                    member: M,
                    generation: G
                },
            ]
        );
        let end = End::Unhealthy {
            cause: Unhealthy::WatchdogTrigger,
            status: ExitStatus::Signal(6),
            killed: false,
        };
        let last = observer.observe_all(
            State::Ended,
            Some(&ready),
            Some(end),
            Some(Health::Unhealthy(Unhealthy::WatchdogTrigger)),
        );
        assert_eq!(
            last,
            vec![
                DeploymentEvent::PodUnhealthy {
                    member: M,
                    generation: G
                },
                DeploymentEvent::PodEnded {
                    member: M,
                    generation: G,
                    end
                },
            ]
        );
    }
}

mod vocabulary {
    use podvisor::core::deployment::{
        jitter_draw, DeploymentStartResult, DeploymentState, MemberState, RestartPolicy,
    };
    use std::time::Duration;

    #[test]
    fn member_and_deployment_states_are_named_and_classified() {
        use MemberState as M;
        let members = [
            (M::Waiting, "waiting", false, false),
            (M::Starting, "starting", true, false),
            (M::Started, "started", true, false),
            (M::Ready, "ready", true, false),
            (M::Stopping, "stopping", true, false),
            (M::BackingOff, "backing-off", false, false),
            (M::Succeeded, "succeeded", false, true),
            (M::CrashLooping, "crash-looping", false, true),
            (M::Ended, "ended", false, true),
            (M::Stopped, "stopped", false, false),
        ];
        for (state, name, running, last) in members {
            assert_eq!(state.name(), name);
            assert_eq!(state.is_running(), running, "{name}");
            assert_eq!(state.is_final(), last, "{name}");
        }
        use DeploymentState as D;
        for (state, name) in [
            (D::Created, "created"),
            (D::Starting, "starting"),
            (D::Ready, "ready"),
            (D::Stopping, "stopping"),
            (D::Ended, "ended"),
        ] {
            assert_eq!(state.name(), name);
        }
        assert!(DeploymentStartResult::Ready {
            after: Duration::ZERO
        }
        .is_ready());
        assert!(!DeploymentStartResult::Cancelled.is_ready());
    }

    #[test]
    fn restart_policies_parse() {
        assert_eq!("no".parse(), Ok(RestartPolicy::No));
        assert_eq!("on-failure".parse(), Ok(RestartPolicy::OnFailure));
        assert_eq!("always".parse(), Ok(RestartPolicy::Always));
        let error = "unless-stopped".parse::<RestartPolicy>().unwrap_err();
        assert!(
            error.contains("expected no, on-failure or always"),
            "{error}"
        );
    }

    /// SplitMix64's finaliser, checked against its published sequence below.
    fn splitmix(x: u64) -> u64 {
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The jitter of a restart is SplitMix64 of (seed, member, restart): the same seed
    /// gives the same delays in every run and every version.
    #[test]
    fn jitter_draws_are_splitmix64_of_seed_member_and_restart() {
        // SplitMix64 seeded with 0: its first two outputs.
        assert_eq!(splitmix(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix(0x9e37_79b9_7f4a_7c15), 0x6e78_9e6a_a1b9_65f4);
        for (seed, member, restart) in [(0, 0, 0), (42, 3, 1), (u64::MAX, 7, 9), (1 << 40, 1, 0)] {
            let expected = splitmix(
                splitmix(splitmix(seed ^ 0x6a09_e667_f3bc_c909) ^ member as u64)
                    ^ u64::from(restart),
            );
            assert_eq!(jitter_draw(seed, member, restart), expected);
        }
        // Different members and restarts draw differently.
        let draws: std::collections::BTreeSet<u64> = (0..8)
            .flat_map(|m| (0..8).map(move |r| jitter_draw(5, m, r)))
            .collect();
        assert_eq!(draws.len(), 64);
    }
}

/// Docker's start period: failures strictly within it do not count; one at its very end
/// does.
#[test]
fn a_failure_at_the_end_of_the_start_period_counts() {
    use podvisor::core::{Health, HealthCheck};
    let check = HealthCheck {
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        retries: 1,
        successes: 1,
        start_period: Duration::from_secs(1),
    };
    // No readiness checks: ready when spawned, at 11 ms.
    let mut pod = started(PodSpec::default().health(check));
    assert_eq!(pod.state(), State::Ready);
    let fail_next_attempt = |pod: &mut PodMachine, at: Time| {
        pod.handle(Event::Tick, at);
        let attempt = actions(pod)
            .into_iter()
            .find_map(|a| match a {
                Action::StartHealthProbe { attempt, .. } => Some(attempt),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no health attempt at {at:?}"));
        pod.handle(
            Event::ProbeFinished {
                generation: G,
                attempt,
                ok: false,
            },
            at,
        );
    };
    // Within the period: not counted.
    fail_next_attempt(&mut pod, ms(11));
    assert_eq!(pod.health(), Some(Health::Starting));
    // At ready + start period exactly: counted, and one failure is the threshold.
    fail_next_attempt(&mut pod, ms(1011));
    assert!(
        matches!(pod.health(), Some(Health::Unhealthy(_))),
        "{:?}",
        pod.health()
    );
}

#[test]
fn shell_status_is_the_code_128_plus_the_signal_or_137_for_an_abandoned_thread() {
    assert_eq!(ExitStatus::Code(0).shell_status(), 0);
    assert_eq!(ExitStatus::Code(3).shell_status(), 3);
    assert_eq!(ExitStatus::Signal(15).shell_status(), 143);
    assert_eq!(ExitStatus::Signal(2).shell_status(), 130);
    assert_eq!(ExitStatus::Abandoned.shell_status(), 137);
    assert_eq!(
        ExitStatus::Abandoned.to_string(),
        "abandoned, its thread left running"
    );
    assert!(!ExitStatus::Abandoned.success());
}
