//! Events per second through `PodMachine`, drained after every event (the calling rule).
//!
//! `cargo bench --bench core_throughput` prints one line per workload. Target: at least
//! 20 million events/s (50 ns/event) on one core for the mixed workload.
//!
//! Also `DeploymentMachine` starting N replicas to ready: the cost of an event must not
//! grow with N (each event used to scan every member).

use std::hint::black_box;
use std::time::{Duration, Instant};

use podvisor::core::{Check, Event, ExitStatus, PodMachine, PodSpec, ProbeSchedule, Stream, Time};

fn drain(pod: &mut PodMachine) -> usize {
    let mut n = 0;
    while let Some(action) = pod.poll_action() {
        black_box(action);
        n += 1;
    }
    n
}

/// Whole lives: start, spawn, two output lines, ready by notify, close, exit.
fn lifecycles(iterations: u64) -> u64 {
    let spec = PodSpec::default()
        .check(Check::Notify)
        .check(Check::Output {
            stream: Stream::Stdout,
            text: "listening".into(),
        });
    let mut events = 0;
    for i in 0..iterations {
        let mut pod = PodMachine::new(spec.clone()).unwrap();
        let g = pod.generation();
        let t = Time::from_nanos(i);
        let script = [
            Event::Start,
            Event::Spawned { generation: g },
            Event::OutputLine {
                generation: g,
                stream: Stream::Stdout,
                line: b"booting",
            },
            Event::OutputLine {
                generation: g,
                stream: Stream::Stdout,
                line: b"listening on :80",
            },
            Event::Notify {
                generation: g,
                datagram: b"READY=1",
            },
            Event::Close { grace: None },
            Event::Exited {
                generation: g,
                status: ExitStatus::Signal(15),
            },
        ];
        for event in script {
            pod.handle(event, t);
            drain(&mut pod);
            events += 1;
        }
        black_box(pod.end());
    }
    events
}

/// A long-lived pod waiting on a probe: probe failures, retries, ticks and output lines.
fn waiting(iterations: u64) -> u64 {
    let spec = PodSpec::default()
        .timeout_ready(None)
        .check(Check::Probe(ProbeSchedule {
            initial_interval: Duration::from_nanos(10),
            max_interval: Duration::from_nanos(10),
            attempt_timeout: Duration::from_secs(1),
        }))
        .check(Check::Output {
            stream: Stream::Stderr,
            text: "never printed".into(),
        });
    let mut pod = PodMachine::new(spec).unwrap();
    let g = pod.generation();
    pod.handle(Event::Start, Time::ZERO);
    pod.handle(Event::Spawned { generation: g }, Time::ZERO);
    let mut attempt = 0;
    let mut now = Time::ZERO;
    let mut events = 0;
    while events < iterations {
        while let Some(action) = pod.poll_action() {
            if let podvisor::core::Action::StartProbe { attempt: a, .. } = action {
                attempt = a;
            }
        }
        pod.handle(
            Event::ProbeFinished {
                generation: g,
                attempt,
                ok: false,
            },
            now,
        );
        drain(&mut pod);
        pod.handle(
            Event::OutputLine {
                generation: g,
                stream: Stream::Stderr,
                line: b"still warming up the caches",
            },
            now,
        );
        drain(&mut pod);
        now = pod.poll_timeout().unwrap();
        pod.handle(Event::Tick, now);
        events += 3;
    }
    events
}

fn measure(name: &str, f: fn(u64) -> u64, iterations: u64) {
    f(iterations / 10); // warm up
    let mut best = f64::INFINITY;
    let mut events = 0;
    for _ in 0..5 {
        let start = Instant::now();
        events = f(iterations);
        best = best.min(start.elapsed().as_secs_f64());
    }
    let per_event = best * 1e9 / events as f64;
    println!(
        "{name:<28} {:>8.1} M events/s  {per_event:>6.1} ns/event  ({events} events, best of 5)",
        events as f64 / best / 1e6
    );
}

/// A deployment of `n` replicas from start to ready: (events, time).
fn deployment_start(n: u32) -> (u64, Duration) {
    use podvisor::core::deployment::{
        DeploymentAction, DeploymentEvent, DeploymentMachine, DeploymentSpec, PodTemplate,
    };
    use podvisor::core::StartResult;
    let spec = DeploymentSpec::new().pod(PodTemplate::new("web").replicas(n));
    let mut machine = DeploymentMachine::new(spec).unwrap();
    let began = Instant::now();
    let mut events = 1;
    machine.handle(DeploymentEvent::Start, Time::ZERO);
    let mut starts = Vec::new();
    while let Some(action) = machine.poll_action() {
        if let DeploymentAction::StartPod { member, generation } = action {
            starts.push((member, generation));
        }
    }
    for (i, &(member, generation)) in starts.iter().enumerate() {
        let t = Time::from_nanos(i as u64);
        machine.handle(DeploymentEvent::PodStarted { member, generation }, t);
        while machine.poll_action().is_some() {}
        let result = StartResult::Ready {
            after: Duration::from_nanos(1),
        };
        machine.handle(
            DeploymentEvent::PodStartResult {
                member,
                generation,
                result,
            },
            t,
        );
        while machine.poll_action().is_some() {}
        events += 2;
    }
    assert_eq!(
        machine.state(),
        podvisor::core::deployment::DeploymentState::Ready
    );
    (events, began.elapsed())
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent: do a tiny smoke run only.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = if quick { 1_000 } else { 2_000_000 };
    measure("lifecycle (7 events/pod)", lifecycles, n);
    measure("waiting on a probe", waiting, n * 7);
    for members in if quick { [10, 100] } else { [1_000, 10_000] } {
        let (events, took) = deployment_start(members);
        println!(
            "deployment of {members:>6} replicas, start to ready: {events} events in {:.2} ms, {:.0} ns/event",
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e9 / events as f64
        );
    }
}
