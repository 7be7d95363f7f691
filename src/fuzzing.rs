//! Scripted runs of a checked [`PodMachine`](crate::core::PodMachine): the shared body of the
//! fuzz targets and the property tests. Not part of the stable API.

use std::time::Duration;

use crate::core::{
    Action, Check, CheckedPod, Event, ExitStatus, HealthCheck, Mutation, PodSpec, ProbeSchedule,
    SpawnError, SpawnErrorKind, StartedBy, State, Stream, Time, Violation,
};

/// Datagrams a scripted child may send.
pub const DATAGRAMS: &[&[u8]] = &[
    b"READY=1",
    b"READY=1\nSTATUS=ready",
    b"X_PODVISOR_STARTED=1",
    b"STATUS=setup failed: boom\nERRNO=5",
    b"EXTEND_TIMEOUT_USEC=250000",
    b"EXTEND_TIMEOUT_USEC=5000000",
    b"STOPPING=1",
    b"MAINPID=4242",
    b"READY=1\ngarbage",
    b"\xff\xfe",
    b"READY=1\nSTATUS=\xff\xfe odd\nno equals sign\nMAINPID=-5",
    b"STATUS=half\0\nERRNO=x\nX_PODVISOR_STARTED=1\n=1",
    b"WATCHDOG=1",
    b"WATCHDOG=1",
    b"WATCHDOG=trigger",
    b"WATCHDOG_USEC=30000",
    b"WATCHDOG_USEC=0",
    b"WATCHDOG=2\nSTATUS=still here",
    b"WATCHDOG=1\nEXTEND_TIMEOUT_USEC=250000",
];

/// Lines a scripted child may print.
pub const LINES: &[&[u8]] = &[b"booting", b"server listening on :80", b"ready", b""];

/// One scripted step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `Event::Start`.
    Start,
    /// `Event::Spawned`.
    Spawned,
    /// `Event::SpawnFailed`.
    SpawnFailed(SpawnErrorKind),
    /// `Event::Notify` with one of [`DATAGRAMS`] (index taken modulo its length).
    Notify(usize),
    /// `Event::Notify` with raw bytes.
    NotifyRaw(Vec<u8>),
    /// `Event::OutputLine` with one of [`LINES`].
    Output(Stream, usize),
    /// `Event::ProbeFinished` for the latest attempt the machine started (`stale`: an
    /// older, cancelled or finished one).
    Probe {
        /// The result.
        ok: bool,
        /// Answer an attempt that is no longer running.
        stale: bool,
    },
    /// `Event::Exited`.
    Exit(ExitStatus),
    /// `Event::Close`, with a grace in milliseconds or the spec's.
    Close(Option<u16>),
    /// An event of another generation, by the value modulo 7: an exit, a spawn answer, a
    /// ready datagram, a line, a successful probe, a health check's change, or a spawn
    /// failure.
    Foreign(u8),
    /// `Event::HealthCheckChanged` for health check `n` modulo 3 (an index past the
    /// spec's checks included).
    HealthChanged(u8),
    /// `Event::Tick` this many milliseconds later (0: another event at the same instant).
    Advance(u16),
    /// `Event::Tick` at the machine's next deadline.
    AdvanceToTimeout,
}

/// A scripted spec.
pub fn spec(timeout_ms: Option<u16>, grace_ms: u16, runtime: bool, checks: u8) -> PodSpec {
    let mut spec = PodSpec::default()
        .timeout_ready(timeout_ms.map(|t| Duration::from_millis(u64::from(t))))
        .grace(Duration::from_millis(u64::from(grace_ms)))
        .started_by(if runtime {
            StartedBy::Notify
        } else {
            StartedBy::Exec
        });
    if checks & 1 != 0 {
        spec = spec.check(Check::Notify);
    }
    if checks & 2 != 0 {
        spec = spec.check(Check::Output {
            stream: Stream::Stdout,
            text: "listening".into(),
        });
    }
    if checks & 4 != 0 {
        spec = spec.check(Check::Probe(ProbeSchedule {
            initial_interval: Duration::from_millis(5),
            max_interval: Duration::from_millis(80),
            attempt_timeout: Duration::from_millis(50),
        }));
    }
    if checks & 8 != 0 {
        spec = spec.check(Check::Output {
            stream: Stream::Stderr,
            text: "ready".into(),
        });
    }
    if checks & 16 != 0 {
        spec = spec.health(HealthCheck {
            interval: Duration::from_millis(40),
            timeout: Duration::from_millis(25),
            retries: 2,
            successes: 1,
            start_period: Duration::from_millis(60),
        });
    }
    if checks & 32 != 0 {
        spec = spec.health(HealthCheck {
            interval: Duration::from_millis(15),
            timeout: Duration::from_millis(30),
            retries: 3,
            successes: 2,
            start_period: Duration::ZERO,
        });
    }
    if checks & 64 != 0 {
        spec = spec.watchdog(Some(Duration::from_millis(70)));
    }
    spec
}

/// Runs `ops` against a checked machine, then heals the world (closes the pod, lets every
/// deadline fire, reaps a killed process) and checks that the pod ended. Returns the first
/// violation.
pub fn run(spec: PodSpec, ops: &[Op], mutation: Option<Mutation>) -> Result<(), Violation> {
    let Ok(mut pod) = CheckedPod::with_mutation(spec, mutation) else {
        return Ok(());
    };
    let generation = pod.machine.generation();
    let foreign = crate::core::Generation(generation.0 + 1);
    let mut now = Time::ZERO;
    let mut attempts: Vec<u64> = Vec::new();
    let mut exited = false;
    for op in ops {
        let event = match op {
            Op::Start => Event::Start,
            Op::Spawned => Event::Spawned { generation },
            Op::SpawnFailed(kind) => Event::SpawnFailed {
                generation,
                error: SpawnError {
                    kind: *kind,
                    errno: None,
                },
            },
            Op::Notify(i) => Event::Notify {
                generation,
                datagram: DATAGRAMS[i % DATAGRAMS.len()],
            },
            Op::NotifyRaw(bytes) => Event::Notify {
                generation,
                datagram: bytes,
            },
            Op::Output(stream, i) => Event::OutputLine {
                generation,
                stream: *stream,
                line: LINES[i % LINES.len()],
            },
            Op::Probe { ok, stale } => {
                let attempt = match (stale, attempts.len()) {
                    (_, 0) => 0,
                    (false, n) => attempts[n - 1],
                    (true, n) => attempts[n.saturating_sub(2)],
                };
                Event::ProbeFinished {
                    generation,
                    attempt,
                    ok: *ok,
                }
            }
            Op::Exit(status) => {
                // A process exits once; a second report is the driver's bug, also fed.
                exited = true;
                Event::Exited {
                    generation,
                    status: *status,
                }
            }
            Op::Close(grace) => Event::Close {
                grace: grace.map(|g| Duration::from_millis(u64::from(g))),
            },
            Op::HealthChanged(n) => Event::HealthCheckChanged {
                generation,
                check: usize::from(n % 3),
            },
            Op::Foreign(kind) => match kind % 7 {
                0 => Event::Exited {
                    generation: foreign,
                    status: ExitStatus::Code(0),
                },
                1 => Event::Spawned {
                    generation: foreign,
                },
                2 => Event::Notify {
                    generation: foreign,
                    datagram: b"READY=1\nX_PODVISOR_STARTED=1",
                },
                3 => Event::OutputLine {
                    generation: foreign,
                    stream: Stream::Stdout,
                    line: b"ready",
                },
                4 => Event::ProbeFinished {
                    generation: foreign,
                    attempt: attempts.last().copied().unwrap_or(0),
                    ok: true,
                },
                5 => Event::HealthCheckChanged {
                    generation: foreign,
                    check: 0,
                },
                _ => Event::SpawnFailed {
                    generation: foreign,
                    error: SpawnError {
                        kind: SpawnErrorKind::NotFound,
                        errno: Some(2),
                    },
                },
            },
            Op::Advance(ms) => {
                now = now.saturating_add_millis(*ms);
                Event::Tick
            }
            Op::AdvanceToTimeout => {
                if let Some(t) = pod.machine.poll_timeout() {
                    now = t;
                }
                Event::Tick
            }
        };
        let actions = pod.handle(event, now)?;
        record_attempts(&actions, &mut attempts);
    }
    // Heal: close, let deadlines fire, reap. The pod must end within grace + ε.
    let close_at = now;
    let actions = pod.handle(Event::Close { grace: None }, now)?;
    record_attempts(&actions, &mut attempts);
    let mut steps = 0;
    while pod.machine.state() != State::Ended {
        steps += 1;
        if steps > 10_000 {
            return Err(livelock("the pod did not end after close", &pod));
        }
        let state = pod.machine.state();
        let event = if state == State::Spawning || state == State::Stopping && !stop_sent(&pod) {
            Event::Spawned { generation }
        } else if state == State::Killing || exited {
            Event::Exited {
                generation,
                status: ExitStatus::Signal(9),
            }
        } else if let Some(t) = pod.machine.poll_timeout() {
            now = t;
            Event::Tick
        } else {
            return Err(livelock(
                "the pod waits for nothing yet has not ended",
                &pod,
            ));
        };
        pod.handle(event, now)?;
    }
    let limit = close_at
        .checked_add(pod.machine.spec().grace)
        .unwrap_or(Time::MAX);
    if now > limit {
        return Err(livelock("close took longer than the grace period", &pod));
    }
    Ok(())
}

fn stop_sent(pod: &CheckedPod) -> bool {
    pod.checker.stop_sent_at().is_some()
}

fn livelock(what: &str, pod: &CheckedPod) -> Violation {
    Violation {
        invariant: "liveness",
        message: format!(
            "{what}: state {:?}, next timer {:?}",
            pod.machine.state(),
            pod.machine.poll_timeout()
        ),
    }
}

fn record_attempts(actions: &[Action], attempts: &mut Vec<u64>) {
    for action in actions {
        if let Action::StartProbe { attempt, .. } | Action::StartHealthProbe { attempt, .. } =
            action
        {
            attempts.push(*attempt);
        }
    }
}

trait AddMillis {
    fn saturating_add_millis(self, ms: u16) -> Time;
}

impl AddMillis for Time {
    fn saturating_add_millis(self, ms: u16) -> Time {
        self.checked_add(Duration::from_millis(u64::from(ms)))
            .unwrap_or(Time::MAX)
    }
}

/// Decodes arbitrary bytes into a spec and a script and runs it (the `pod_events` fuzz
/// target). Panics with the violation, so a fuzzer sees it.
pub fn pod_events(data: &[u8]) {
    if let Err(violation) = run_bytes(data) {
        panic!("{violation}");
    }
}

/// Like [`pod_events`], returning the violation.
pub fn run_bytes(data: &[u8]) -> Result<(), Violation> {
    let mut bytes = data.iter().copied();
    let mut next = move || bytes.next();
    let header = [next(), next(), next(), next(), next()];
    let [Some(a), Some(b), Some(c), Some(d), Some(e)] = header else {
        return Ok(());
    };
    let timeout = (a & 1 == 0).then(|| u16::from_le_bytes([b, a >> 1]) % 4000 + 1);
    let grace = u16::from(c) * 4;
    let spec = spec(timeout, grace, d & 0x80 != 0, d & 0x7f);
    let mut ops = Vec::new();
    let mut op_byte = Some(e);
    while let Some(o) = op_byte {
        let arg = next().unwrap_or(0);
        ops.push(match o % 16 {
            0 => Op::Start,
            1 => Op::Spawned,
            2 => Op::SpawnFailed(match arg % 3 {
                0 => SpawnErrorKind::NotFound,
                1 => SpawnErrorKind::PermissionDenied,
                _ => SpawnErrorKind::Other,
            }),
            3 => Op::Notify(usize::from(arg)),
            4 => {
                let len = usize::from(arg % 32);
                Op::NotifyRaw((0..len).map_while(|_| next()).collect())
            }
            5 => Op::Output(
                if arg & 1 == 0 {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                },
                usize::from(arg >> 1),
            ),
            6 => Op::Probe {
                ok: arg & 1 == 0,
                stale: arg & 2 != 0,
            },
            7 => Op::Exit(if arg & 1 == 0 {
                ExitStatus::Code(i32::from(arg >> 1))
            } else {
                ExitStatus::Signal(i32::from(arg >> 1))
            }),
            8 => Op::Close((arg & 1 == 0).then(|| u16::from(arg) * 4)),
            9 => Op::Foreign(arg),
            10 | 11 => Op::Advance(u16::from(arg) * 8),
            12 => Op::Advance(0),
            13 => Op::HealthChanged(arg),
            _ => Op::AdvanceToTimeout,
        });
        op_byte = next();
    }
    run(spec, &ops, None)
}

/// Parses arbitrary bytes as a notify datagram (the `notify_datagram` fuzz target): the
/// parser never panics and agrees with the checker's own model of the format on every
/// field and on the number of malformed lines.
pub fn notify_datagram(data: &[u8]) {
    let message = crate::core::notify::parse(data);
    let model = crate::core::model_datagram(data);
    let got = (
        message.ready,
        message.started,
        message.stopping,
        message.barrier,
        message.status,
        message.errno,
        message.main_pid,
        message.extend_timeout,
        u64::from(message.malformed),
    );
    let expected = (
        model.ready,
        model.started,
        model.stopping,
        model.barrier,
        model.status.as_deref(),
        model.errno,
        model.main_pid,
        model.extend,
        model.malformed,
    );
    assert_eq!(got, expected, "datagram {data:?}");
    assert_eq!(message.malformed == 0, message.first_error.is_none());
    assert_eq!(
        message.ready,
        data.split(|&b| b == b'\n').any(|l| l == b"READY=1")
    );
}

/// Parses arbitrary text as a readiness check (the `readiness_spec` fuzz target): never
/// panics, and an accepted check parses back from what it was given.
pub fn readiness_spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(readiness) = text.parse::<crate::Readiness>() {
        assert!(!readiness.to_string().is_empty());
        if let crate::Readiness::Http(url) = &readiness {
            assert!(crate::HttpTarget::parse(url).is_ok());
        }
        assert_eq!(text.parse::<crate::Readiness>(), Ok(readiness));
    }
}
