//! Simulation against reality: proptest draws a scenario (readiness kind and time, exit
//! code and time, ignored SIGTERM, close time, ready timeout), runs it for real with the
//! fixture, and checks the real start result and end against what the core predicts when
//! driven on virtual time by a model of the same process.
//!
//! Every instant of a scenario lies on its own residue of a 100 ms grid, so any two
//! distinct instants are at least 100 ms apart and a busy 2-core machine cannot reorder
//! them. Cases run one at a time; `PODVISOR_REAL_CASES` sets how many (64 by default).

mod support;

use std::time::Duration;

use podvisor::core::{
    Action, Check, End, Event, ExitStatus, GroupSignal, PodMachine, PodSpec, Stream, Time,
};
use podvisor::{Pod, PodConfig, Readiness, StartResult};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::{fixture, FIXTURE};

const UNIT_MS: u64 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    None,
    Notify,
    Stdout,
}

#[derive(Clone, Debug)]
struct Scenario {
    kind: Kind,
    /// When the child signals ready (units after start), if it does.
    ready_at: Option<u64>,
    /// When the child exits by itself, and with which code.
    exit_at: Option<(u64, i32)>,
    ignore_term: bool,
    close_at: Option<u64>,
    timeout: Option<u64>,
}

const GRACE_UNITS: u64 = 2;

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop_oneof![Just(Kind::None), Just(Kind::Notify), Just(Kind::Stdout)],
        prop::option::of(prop_oneof![Just(1u64), Just(5), Just(9)]),
        prop::option::of((
            prop_oneof![Just(3u64), Just(7), Just(11)],
            prop_oneof![Just(0), Just(3)],
        )),
        any::<bool>(),
        prop::option::of(prop_oneof![Just(2u64), Just(6), Just(10)]),
        prop::option::of(prop_oneof![Just(4u64), Just(8), Just(12)]),
    )
        .prop_map(
            |(kind, ready_at, exit_at, ignore_term, close_at, timeout)| Scenario {
                kind,
                ready_at: if kind == Kind::None { None } else { ready_at },
                exit_at,
                ignore_term,
                // Keep every case bounded: a pod nothing else ends is closed at 14 units.
                close_at: close_at.or(if exit_at.is_none() { Some(14) } else { None }),
                timeout,
            },
        )
}

fn units(n: u64) -> Duration {
    Duration::from_millis(n * UNIT_MS)
}

fn spec(s: &Scenario) -> PodSpec {
    let mut spec = PodSpec::default()
        .timeout_ready(s.timeout.map(units))
        .grace(units(GRACE_UNITS));
    match s.kind {
        Kind::None => {}
        Kind::Notify => spec = spec.check(Check::Notify),
        Kind::Stdout => {
            spec = spec.check(Check::Output {
                stream: Stream::Stdout,
                text: "up".into(),
            })
        }
    }
    spec
}

/// The core's prediction, on virtual time, with a model of the scripted child: it signals
/// ready at `ready_at`, exits at `exit_at`, dies at the stop signal unless it ignores it,
/// and dies at SIGKILL.
fn predict(s: &Scenario) -> (StartResult, End) {
    let mut pod = PodMachine::new(spec(s)).unwrap();
    let g = pod.generation();
    // World events: (time, order, what).
    let mut world: Vec<(Time, u8, Event<'static>)> = Vec::new();
    let at = |u: u64| Time::ZERO.checked_add(units(u)).unwrap();
    world.push((Time::ZERO, 0, Event::Start));
    if let Some(r) = s.ready_at {
        let event = match s.kind {
            Kind::Notify => Event::Notify {
                generation: g,
                datagram: b"READY=1",
            },
            _ => Event::OutputLine {
                generation: g,
                stream: Stream::Stdout,
                line: b"up",
            },
        };
        if s.exit_at.is_none_or(|(e, _)| r < e) {
            world.push((at(r), 2, event));
        }
    }
    if let Some((e, code)) = s.exit_at {
        world.push((
            at(e),
            3,
            Event::Exited {
                generation: g,
                status: ExitStatus::Code(code),
            },
        ));
    }
    if let Some(c) = s.close_at {
        world.push((at(c), 1, Event::Close { grace: None }));
    }
    let mut alive = true;
    loop {
        world.sort_by_key(|(t, order, _)| (*t, *order));
        let next_world = world.first().map(|(t, _, _)| *t);
        let timer = pod.poll_timeout();
        let (now, event) = match (next_world, timer) {
            (Some(w), Some(t)) if t < w => (t, Event::Tick),
            (Some(_), _) => {
                let (t, _, e) = world.remove(0);
                (t, e)
            }
            (None, Some(t)) => (t, Event::Tick),
            (None, None) => break,
        };
        if !alive
            && matches!(
                event,
                Event::Exited { .. } | Event::Notify { .. } | Event::OutputLine { .. }
            )
        {
            continue;
        }
        if matches!(event, Event::Exited { .. }) {
            alive = false;
        }
        pod.handle(event, now);
        if matches!(event, Event::Start) {
            pod.handle(Event::Spawned { generation: g }, now);
        }
        while let Some(action) = pod.poll_action() {
            let dies_with = match action {
                Action::SignalGroup {
                    signal: GroupSignal::Stop,
                    ..
                } if !s.ignore_term => Some(15),
                Action::SignalGroup {
                    signal: GroupSignal::Kill,
                    ..
                } => Some(9),
                _ => None,
            };
            if let (Some(signal), true) = (dies_with, alive) {
                world.retain(|(_, _, e)| !matches!(e, Event::Exited { .. }));
                world.push((
                    now,
                    0,
                    Event::Exited {
                        generation: g,
                        status: ExitStatus::Signal(signal),
                    },
                ));
            }
        }
        if pod.end().is_some() {
            break;
        }
    }
    (
        pod.start_result().cloned().expect("decided"),
        pod.end().expect("ended"),
    )
}

fn config(s: &Scenario) -> PodConfig {
    let mut steps: Vec<String> = Vec::new();
    let mut clock = 0;
    let mut events: Vec<(u64, Vec<String>)> = Vec::new();
    if let Some(r) = s.ready_at {
        let signal = match s.kind {
            Kind::Notify => vec!["notify".into(), "READY=1".into()],
            _ => vec!["print".into(), "up".into()],
        };
        events.push((r, signal));
    }
    if let Some((e, code)) = s.exit_at {
        events.push((e, vec!["exit".into(), code.to_string()]));
    }
    events.sort();
    for (t, step) in events {
        steps.push("sleep".into());
        steps.push((units(t - clock).as_millis()).to_string());
        clock = t;
        steps.extend(step);
    }
    steps.push("forever".into());
    let config = if s.ignore_term {
        PodConfig::new("sh")
            .args(["-c", "trap '' TERM; exec \"$0\" \"$@\"", FIXTURE])
            .args(&steps)
    } else {
        fixture(&steps.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let mut config = config
        .timeout_ready(s.timeout.map(units))
        .grace(units(GRACE_UNITS));
    match s.kind {
        Kind::None => {}
        Kind::Notify => config = config.ready(Readiness::Notify),
        Kind::Stdout => config = config.ready(Readiness::Stdout("up".into())),
    }
    config
}

fn run_for_real(s: &Scenario) -> (StartResult, End) {
    let pod = Pod::new(config(s)).unwrap();
    futures_lite::future::block_on(async {
        pod.start();
        if let Some(c) = s.close_at {
            let end = pod.join_timeout(units(c)).await;
            if end.is_none() {
                pod.close_nowait(None);
            }
        }
        let end = pod.join().await;
        (pod.start_result().expect("decided"), end)
    })
}

fn same(a: &(StartResult, End), b: &(StartResult, End)) -> bool {
    std::mem::discriminant(&a.0) == std::mem::discriminant(&b.0)
        && match (&a.0, &b.0) {
            (StartResult::ExitedEarly { status: x }, StartResult::ExitedEarly { status: y }) => {
                x == y
            }
            _ => true,
        }
        && a.1 == b.1
}

#[test]
fn reality_matches_the_core() {
    let cases = std::env::var("PODVISOR_REAL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 16,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&scenario(), |s| {
        let predicted = predict(&s);
        let real = run_for_real(&s);
        prop_assert!(
            same(&predicted, &real),
            "scenario {:?}: core predicts {:?}, reality gave {:?}",
            s,
            predicted,
            real
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn the_model_covers_every_outcome() {
    // The prediction itself is exercised on hand-picked scenarios, one per start result.
    let base = Scenario {
        kind: Kind::Notify,
        ready_at: Some(1),
        exit_at: None,
        ignore_term: false,
        close_at: Some(2),
        timeout: Some(4),
    };
    let cases = [
        (base.clone(), "ready", "closed"),
        (
            Scenario {
                ready_at: None,
                ..base.clone()
            },
            "cancelled",
            "closed",
        ),
        (
            Scenario {
                ready_at: None,
                close_at: None,
                ..base.clone()
            },
            "timed-out",
            "closed",
        ),
        (
            Scenario {
                ready_at: Some(5),
                exit_at: Some((3, 3)),
                close_at: None,
                ..base.clone()
            },
            "exited-early",
            "exited",
        ),
        (
            Scenario {
                ignore_term: true,
                ..base.clone()
            },
            "ready",
            "killed",
        ),
        (
            Scenario {
                close_at: None,
                exit_at: Some((3, 0)),
                ..base
            },
            "ready",
            "exited",
        ),
    ];
    for (s, start, end) in cases {
        let (got_start, got_end) = predict(&s);
        assert_eq!((got_start.name(), got_end.name()), (start, end), "{s:?}");
    }
}
