//! Property suite: random specs and event sequences at random times into a `PodMachine`,
//! checked after every step against the reference model (`core::Checker`) and the
//! invariants of the design, then healed (closed, deadlines fired, reaped) and checked to
//! end within the grace period.
//!
//! `PROPTEST_CASES` sets the number of cases (at least 10,000 run in CI).

use podvisor::core::{ExitStatus, Mutation, PodSpec, SpawnErrorKind, Stream};
use podvisor::fuzzing::{run, spec, Op, DATAGRAMS, LINES};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn spec_strategy() -> impl Strategy<Value = PodSpec> {
    (
        prop::option::weighted(0.85, 1u16..3_000),
        0u16..1_000,
        prop::bool::weighted(0.25),
        0u8..128,
    )
        .prop_map(|(timeout, grace, runtime, checks)| spec(timeout, grace, runtime, checks))
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Start),
        3 => Just(Op::Spawned),
        1 => prop_oneof![
            Just(SpawnErrorKind::NotFound),
            Just(SpawnErrorKind::PermissionDenied),
            Just(SpawnErrorKind::Other)
        ]
        .prop_map(Op::SpawnFailed),
        4 => (0..DATAGRAMS.len()).prop_map(Op::Notify),
        1 => prop::collection::vec(any::<u8>(), 0..24).prop_map(Op::NotifyRaw),
        // A STATUS= around the 4096-byte cut, in characters of 1 to 4 bytes.
        1 => (4_080usize..4_110, prop_oneof![Just("a"), Just("é"), Just("€"), Just("𝄞")])
            .prop_map(|(len, c)| {
                let mut text = String::from("STATUS=");
                while text.len() < len {
                    text.push_str(c);
                }
                Op::NotifyRaw(text.into_bytes())
            }),
        3 => (prop_oneof![Just(Stream::Stdout), Just(Stream::Stderr)], 0..LINES.len())
            .prop_map(|(s, i)| Op::Output(s, i)),
        3 => (any::<bool>(), prop::bool::weighted(0.2)).prop_map(|(ok, stale)| Op::Probe { ok, stale }),
        2 => prop_oneof![
            (0i32..4).prop_map(ExitStatus::Code),
            prop_oneof![Just(9), Just(15)].prop_map(ExitStatus::Signal)
        ]
        .prop_map(Op::Exit),
        2 => prop::option::of(0u16..1_500).prop_map(Op::Close),
        2 => any::<u8>().prop_map(Op::Foreign),
        1 => (0u8..3).prop_map(Op::HealthChanged),
        4 => (0u16..800).prop_map(Op::Advance),
        2 => Just(Op::Advance(0)),
        4 => Just(Op::AdvanceToTimeout),
    ]
}

fn scenario() -> impl Strategy<Value = (PodSpec, Vec<Op>)> {
    (spec_strategy(), prop::collection::vec(op_strategy(), 0..40))
}

proptest! {
    #![proptest_config(Config { cases: cases().max(1), ..Config::default() })]

    #[test]
    fn machine_agrees_with_the_reference_model((spec, ops) in scenario()) {
        if let Err(v) = run(spec, &ops, None) {
            prop_assert!(false, "{}", v);
        }
    }

    /// The notify parser agrees with the checker's own model of the format, on datagrams
    /// built from the pieces that matter (keys, `=`, newlines, NUL, bytes that are not
    /// UTF-8, signs and digits).
    #[test]
    fn notify_parser_agrees_with_the_model(
        pieces in prop::collection::vec(prop::sample::select(vec![
            &b"READY"[..], b"STATUS", b"MAINPID", b"ERRNO", b"EXTEND_TIMEOUT_USEC",
            b"X_PODVISOR_STARTED", b"STOPPING", b"BARRIER", b"WATCHDOG", b"WATCHDOG_USEC",
            b"trigger", b"=", b"\n", b"1", b"-5", b"+7",
            b"\0", b"\xff", b"\xe2\x82", b"\xe2\x82\xac", b"x", b" ",
        ]), 0..24)
    ) {
        podvisor::fuzzing::notify_datagram(&pieces.concat());
    }
}

/// A close placed deliberately around every step: for each scenario, the same events with
/// one `Close` inserted before each of them (at the same instant), and once more right at
/// the deadline due at that point (a timeout, SIGKILL, a probe or the watchdog), each run
/// checked against the reference model. Random placement alone rarely hits the instant of
/// a transition.
#[test]
fn a_close_around_every_step_is_checked() {
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: (cases() / 20).max(50),
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let result = runner.run(
        &(scenario(), prop::option::of(0u16..1_500)),
        |((spec, ops), grace)| {
            for k in 0..=ops.len() {
                for at_deadline in [false, true] {
                    let mut variant = ops[..k].to_vec();
                    if at_deadline {
                        variant.push(Op::AdvanceToTimeout);
                    }
                    variant.push(Op::Close(grace));
                    variant.extend_from_slice(&ops[k..]);
                    if let Err(v) = run(spec.clone(), &variant, None) {
                        prop_assert!(
                            false,
                            "close before step {k} (at the deadline: {at_deadline}): {v}"
                        );
                    }
                }
            }
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The suite bites: each deliberately wrong machine is caught within a bounded number of
/// random scenarios (a fixed seed keeps this deterministic), by a broken invariant whose
/// message contains one of the texts given (for the older mutations any invariant; the
/// newer ones by the rule they break).
#[test]
fn every_mutation_is_caught() {
    let rule = |name: &'static str| -> &'static [&'static str] {
        match name {
            "kill-deadline" => &["invariant kill-deadline violated"],
            "outcome" => &["invariant outcome violated"],
            "ready-deadline" => &["invariant ready-deadline violated"],
            "sweep" => &["invariant sweep violated"],
            "watchdog" => &["invariant watchdog violated"],
            "foreign-generation" => &["invariant foreign-generation violated"],
            // A health threshold or start period misjudged shows first as a stop signal
            // the history does not call for.
            "stop-signal" => &["invariant stop-signal violated: t="],
            _ => unreachable!(),
        }
    };
    for (mutation, rule) in [
        (Mutation::KillOneTickEarly, rule("kill-deadline")),
        (Mutation::KillOneMsEarly, rule("kill-deadline")),
        (Mutation::ExitedEarlyAsFailedToStart, rule("outcome")),
        (Mutation::DeadlineFromSpawn, rule("ready-deadline")),
        (Mutation::MissedReap, rule("sweep")),
        (Mutation::ReadyAfterZero, rule("outcome")),
        (Mutation::ForeignSpawnedOrNotify, rule("foreign-generation")),
        (Mutation::HealthThresholdOffByOne, rule("stop-signal")),
        (Mutation::StartPeriodIgnored, rule("stop-signal")),
        (Mutation::WatchdogRearmedByMalformed, rule("watchdog")),
        (
            Mutation::NeverRetriesProbe,
            &["next probe attempt falls due", "next probe attempt was due"][..],
        ),
        (
            Mutation::LaterCloseMovesKill,
            &["invariant kill-deadline violated"][..],
        ),
        (
            Mutation::ExtensionCountsFromStart,
            &["invariant ready-deadline violated"][..],
        ),
    ] {
        let config = Config {
            cases: 5_000,
            failure_persistence: None,
            max_shrink_iters: 0,
            ..Config::default()
        };
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
        let mut runner = TestRunner::new_with_rng(config, rng);
        let result = runner.run(&scenario(), |(spec, ops)| {
            run(spec, &ops, Some(mutation)).map_err(|v| TestCaseError::fail(v.to_string()))
        });
        if let Err(e) = &result {
            println!("{mutation:?}: {e}");
        }
        // Caught by the broken invariant, not by an unrelated panic or another rule.
        match result {
            Err(e) => assert!(
                rule.iter().any(|text| e.to_string().contains(text)),
                "{mutation:?} failed without breaking {rule:?}: {e}"
            ),
            Ok(()) => panic!("{mutation:?} was not caught by 5,000 scenarios"),
        }
    }
}
