//! Drives one pod's lifecycle core through a whole life on a virtual clock and prints each
//! step: start, spawn, a readiness line, a close the process ignores, SIGKILL at the end
//! of the grace period, and the reap.
//!
//! Run with `cargo run --example core_lifecycle`.

use std::time::Duration;

use podvisor::core::{
    Action, Check, Event, ExitStatus, GroupSignal, PodMachine, PodSpec, Stream, Time,
};

fn main() {
    let spec = PodSpec::default()
        .timeout_ready(Some(Duration::from_secs(5)))
        .grace(Duration::from_millis(300))
        .check(Check::Output {
            stream: Stream::Stdout,
            text: "listening".into(),
        });
    let mut pod = PodMachine::new(spec).expect("valid spec");
    let mut generation = pod.generation();

    // What the (simulated) world does, and when.
    let script: Vec<(u64, Event<'static>)> = vec![
        (0, Event::Start),
        (2, Event::Spawned { generation }),
        (
            40,
            Event::OutputLine {
                generation,
                stream: Stream::Stdout,
                line: b"booting",
            },
        ),
        (
            120,
            Event::OutputLine {
                generation,
                stream: Stream::Stdout,
                line: b"listening on 127.0.0.1:8080",
            },
        ),
        (1_000, Event::Close { grace: None }),
    ];

    let mut killed_at = None;
    for (at_ms, event) in script {
        // Fire whatever timers fall due before the next scripted event.
        let at = Time::from_millis(at_ms);
        while let Some(deadline) = pod.poll_timeout().filter(|&d| d < at) {
            step(&mut pod, Event::Tick, deadline, &mut killed_at);
        }
        step(&mut pod, event, at, &mut killed_at);
    }
    // The process ignores SIGTERM; the core escalates at the end of the grace period.
    while let Some(deadline) = pod.poll_timeout() {
        step(&mut pod, Event::Tick, deadline, &mut killed_at);
    }
    let reaped = killed_at.expect("SIGKILL was sent") + 1;
    generation = pod.generation();
    step(
        &mut pod,
        Event::Exited {
            generation,
            status: ExitStatus::Signal(9),
        },
        Time::from_millis(reaped),
        &mut killed_at,
    );
    println!(
        "start result: {:?}\nend: {:?}",
        pod.start_result().expect("decided"),
        pod.end().expect("ended")
    );
}

fn step(pod: &mut PodMachine, event: Event<'_>, at: Time, killed_at: &mut Option<u64>) {
    pod.handle(event, at);
    let event = match event {
        Event::OutputLine { line, .. } => format!("output {:?}", String::from_utf8_lossy(line)),
        other => format!("{other:?}"),
    };
    println!("{at}  {event}");
    while let Some(action) = pod.poll_action() {
        println!("{:>14}  -> {action:?}", "");
        if let Action::SignalGroup {
            signal: GroupSignal::Kill,
            ..
        } = action
        {
            *killed_at = Some(at.as_nanos() / 1_000_000);
        }
    }
}
