//! The runtime contract's failure matrix, for thread pods and for child-hosted runtimes:
//! each failure gives the expected outcome and exactly the expected calls.

mod support;

#[path = "support/scripted_runtime.rs"]
#[allow(dead_code)]
mod scripted_runtime;

use std::sync::Arc;
use std::time::{Duration, Instant};

use podvisor::runtime::{EXIT_RUN_FAILED, EXIT_SETUP_FAILED};
use podvisor::{End, ExitStatus, FailureReason, Pod, PodConfig, StartError, StartResult};
use scripted_runtime::{Calls, Fail, Scripted};
use support::{eventually, fixture};

fn quiet(_: &str) {}

fn thread_pod(fail: Fail, grace: Duration) -> (Pod, Arc<Calls>) {
    let calls = Arc::new(Calls::default());
    let for_factory = calls.clone();
    let config = PodConfig::thread("rt", move || {
        Scripted::build(fail, for_factory.clone(), quiet)
    })
    .grace(grace)
    .timeout_ready(Some(Duration::from_secs(30)));
    (Pod::new(config).unwrap(), calls)
}

fn child_pod(fail: &str, grace: Duration) -> Pod {
    Pod::new(
        fixture(&["runtime", fail])
            .name("rt")
            .hosted_runtime()
            .grace(grace)
            .timeout_ready(Some(Duration::from_secs(30))),
    )
    .unwrap()
}

fn setup_failure(error: &StartError) -> (ExitStatus, Option<String>) {
    match error {
        StartError::FailedToStart {
            reason: FailureReason::Runtime { status, error },
            ..
        } => (*status, error.clone()),
        other => panic!("expected a runtime setup failure, got {other:?}"),
    }
}

const SECOND: Duration = Duration::from_secs(1);

// ---- thread pods ----------------------------------------------------------------------

#[test]
fn thread_construction_failure_fails_to_start() {
    let (pod, calls) = thread_pod(Fail::Construct, SECOND);
    let error = pod.start_and_wait_blocking().unwrap_err();
    assert_eq!(
        setup_failure(&error),
        (
            ExitStatus::Code(EXIT_SETUP_FAILED),
            Some("construction failed: bad config".into())
        )
    );
    assert!(error.to_string().contains("bad config"), "{error}");
    assert_eq!(calls.counts(), [1, 0, 0, 0, 0]);
}

#[test]
fn thread_setup_failure_skips_run_and_teardown() {
    let (pod, calls) = thread_pod(Fail::Setup, SECOND);
    let error = pod.start_and_wait_blocking().unwrap_err();
    assert_eq!(
        setup_failure(&error),
        (
            ExitStatus::Code(EXIT_SETUP_FAILED),
            Some("setup failed: port 80 in use".into())
        )
    );
    assert_eq!(
        pod.join_blocking(),
        End::Exited(ExitStatus::Code(EXIT_SETUP_FAILED))
    );
    assert_eq!(calls.counts(), [1, 1, 0, 0, 0]);
}

#[test]
fn thread_run_failure_still_tears_down() {
    let (pod, calls) = thread_pod(Fail::Run, SECOND);
    pod.start_and_wait_blocking().unwrap();
    assert_eq!(
        pod.join_blocking(),
        End::Exited(ExitStatus::Code(EXIT_RUN_FAILED))
    );
    assert_eq!(
        pod.status_text().as_deref(),
        Some("run_forever failed: worker crashed")
    );
    assert_eq!(calls.counts(), [1, 1, 1, 0, 1]);
}

#[test]
fn thread_run_returning_by_itself_exits_cleanly() {
    let (pod, calls) = thread_pod(Fail::ReturnAtOnce, SECOND);
    pod.start_and_wait_blocking().unwrap();
    assert_eq!(pod.join_blocking(), End::Exited(ExitStatus::Code(0)));
    assert_eq!(calls.counts(), [1, 1, 1, 0, 1]);
}

#[test]
fn thread_close_cancels_once_and_tears_down() {
    let (pod, calls) = thread_pod(Fail::Nothing, SECOND);
    pod.start_and_wait_blocking().unwrap();
    pod.close_nowait(None);
    assert_eq!(pod.close_blocking(), End::Closed(ExitStatus::Code(0)));
    assert_eq!(pod.close_blocking(), End::Closed(ExitStatus::Code(0)));
    assert_eq!(calls.counts(), [1, 1, 1, 1, 1]);
}

#[test]
fn thread_teardown_and_cancel_failures_are_reported_not_fatal() {
    let (pod, calls) = thread_pod(Fail::Teardown, SECOND);
    pod.start_and_wait_blocking().unwrap();
    assert_eq!(pod.close_blocking(), End::Closed(ExitStatus::Code(0)));
    assert_eq!(
        pod.status_text().as_deref(),
        Some("teardown failed: disk full")
    );
    assert_eq!(calls.counts(), [1, 1, 1, 1, 1]);

    let (pod, calls) = thread_pod(Fail::Cancel, SECOND);
    pod.start_and_wait_blocking().unwrap();
    assert_eq!(pod.close_blocking(), End::Closed(ExitStatus::Code(0)));
    // The cancel thread's report may land just after the exit; wait for it generously.
    assert!(eventually(Duration::from_secs(5), || calls.counts() == [1, 1, 1, 1, 1]));
}

#[test]
fn thread_close_before_start_calls_nothing() {
    let (pod, calls) = thread_pod(Fail::Nothing, SECOND);
    assert_eq!(pod.close_blocking(), End::NeverSpawned);
    assert_eq!(pod.start_result(), Some(StartResult::Cancelled));
    assert_eq!(calls.counts(), [0, 0, 0, 0, 0]);
}

#[test]
fn thread_close_during_setup_is_bounded() {
    let (pod, calls) = thread_pod(Fail::SlowSetup, Duration::from_millis(300));
    pod.start();
    assert!(eventually(Duration::from_secs(5), || calls.counts()[1] == 1));
    let start = Instant::now();
    // Setup takes 1.5 s and cannot be interrupted: the pod is abandoned at grace end.
    assert_eq!(pod.close_blocking(), End::Killed(ExitStatus::Abandoned));
    assert!(
        start.elapsed() < Duration::from_millis(1400),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(pod.start_result(), Some(StartResult::Cancelled));
    // Once setup returns, the runtime sees the cancellation: no run_forever, but teardown.
    assert!(
        eventually(Duration::from_secs(5), || calls.counts() == [1, 1, 0, 0, 1]),
        "{:?}",
        calls.counts()
    );
}

#[test]
fn thread_ignoring_cancel_is_reported_killed_and_detached() {
    let (pod, calls) = thread_pod(Fail::IgnoreCancel, Duration::from_millis(300));
    pod.start_and_wait_blocking().unwrap();
    // Closed once the stuck call has begun: a close before `run_forever` would skip it.
    assert!(eventually(Duration::from_secs(10), || calls.counts()[2] == 1));
    let start = Instant::now();
    assert_eq!(pod.close_blocking(), End::Killed(ExitStatus::Abandoned));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(
        eventually(Duration::from_secs(10), || calls.counts()
            == [1, 1, 1, 1, 0]),
        "{:?}",
        calls.counts()
    );
}

// ---- child-hosted runtimes ------------------------------------------------------------

fn calls_in(pod: &Pod) -> Vec<String> {
    pod.last_lines()
        .into_iter()
        .filter(|l| l.starts_with("call "))
        .collect()
}

fn lines(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| format!("call {n}")).collect()
}

/// The calls of a runtime closed once it was ready: `cancel` may come before
/// `run_forever` is entered (ready is reported between `setup` and `run_forever`, and the
/// cancellation flag it sets makes `run_forever` return at once).
fn closed_calls(calls: &[String]) -> bool {
    calls == lines(&["construct", "setup", "run_forever", "cancel", "teardown"])
        || calls == lines(&["construct", "setup", "cancel", "run_forever", "teardown"])
}

#[test]
fn child_construction_and_setup_failures_fail_to_start_with_the_error() {
    for (mode, text, calls) in [
        (
            "construct",
            "construction failed: bad config",
            lines(&["construct"]),
        ),
        (
            "setup",
            "setup failed: port 80 in use",
            lines(&["construct", "setup"]),
        ),
    ] {
        let pod = child_pod(mode, SECOND);
        let error = pod.start_and_wait_blocking().unwrap_err();
        assert_eq!(
            setup_failure(&error),
            (ExitStatus::Code(EXIT_SETUP_FAILED), Some(text.into()))
        );
        assert!(error.to_string().contains(text), "{error}");
        pod.join_blocking();
        assert_eq!(calls_in(&pod), calls);
    }
}

#[test]
fn child_run_failure_and_return_still_tear_down() {
    let pod = child_pod("run", SECOND);
    pod.start_and_wait_blocking().unwrap();
    assert_eq!(
        pod.join_blocking(),
        End::Exited(ExitStatus::Code(EXIT_RUN_FAILED))
    );
    assert_eq!(
        calls_in(&pod),
        lines(&["construct", "setup", "run_forever", "teardown"])
    );
    assert_eq!(
        pod.status_text().as_deref(),
        Some("run_forever failed: worker crashed")
    );

    let pod = child_pod("return", SECOND);
    pod.start_and_wait_blocking().unwrap();
    assert_eq!(pod.join_blocking(), End::Exited(ExitStatus::Code(0)));
    assert_eq!(
        calls_in(&pod),
        lines(&["construct", "setup", "run_forever", "teardown"])
    );
}

#[test]
fn child_close_turns_sigterm_into_one_cancel() {
    let pod = child_pod("nothing", Duration::from_secs(10));
    pod.start_and_wait_blocking().unwrap();
    assert_eq!(pod.close_blocking(), End::Closed(ExitStatus::Code(0)));
    let calls = calls_in(&pod);
    assert!(closed_calls(&calls), "{calls:?}");
}

#[test]
fn child_teardown_and_cancel_failures_are_reported_not_fatal() {
    for (mode, status) in [
        ("teardown", "teardown failed: disk full"),
        ("cancel", "cancel failed: cancel refused"),
    ] {
        let pod = child_pod(mode, Duration::from_secs(10));
        pod.start_and_wait_blocking().unwrap();
        assert_eq!(
            pod.close_blocking(),
            End::Closed(ExitStatus::Code(0)),
            "{mode}"
        );
        let calls = calls_in(&pod);
        assert!(closed_calls(&calls), "{mode}: {calls:?}");
        // The error text also went to the child's stderr, which the pod keeps.
        assert!(
            pod.last_lines().iter().any(|l| l == status),
            "{mode}: {:?}",
            pod.last_lines()
        );
    }
}

#[test]
fn child_ignoring_cancel_or_stuck_in_setup_is_killed() {
    // Closed once the stuck call has begun: a close before `run_forever` would skip it.
    for (mode, stuck_in) in [
        ("ignore-cancel", "call run_forever"),
        ("slow-setup", "call setup"),
    ] {
        let pod = child_pod(mode, Duration::from_millis(300));
        pod.start();
        assert!(eventually(Duration::from_secs(10), || calls_in(&pod)
            .contains(&stuck_in.to_string())));
        let start = Instant::now();
        assert_eq!(
            pod.close_blocking(),
            End::Killed(ExitStatus::Signal(9)),
            "{mode}"
        );
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn child_close_before_start_runs_nothing() {
    let pod = child_pod("nothing", SECOND);
    assert_eq!(pod.close_blocking(), End::NeverSpawned);
    assert_eq!(pod.pid(), None);
}

// ---- the async flavour ----------------------------------------------------------------

mod async_flavour {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use podvisor::runtime::{blocking, AsyncRuntime, RuntimeContext, RuntimeError};
    use podvisor::{End, ExitStatus, FailureReason, Pod, PodConfig, StartError};

    struct Ticker {
        fail_setup: bool,
        ticks: Arc<AtomicUsize>,
        teardowns: Arc<AtomicUsize>,
    }

    impl AsyncRuntime for Ticker {
        async fn setup(&self, _ctx: &RuntimeContext) -> Result<(), RuntimeError> {
            async_io::Timer::after(Duration::from_millis(20)).await;
            if self.fail_setup {
                return Err("no config".into());
            }
            Ok(())
        }

        async fn run_forever(&self, ctx: &RuntimeContext) -> Result<(), RuntimeError> {
            loop {
                let tick = async {
                    async_io::Timer::after(Duration::from_millis(10)).await;
                    false
                };
                let cancelled = async {
                    ctx.cancelled().await;
                    true
                };
                if futures_lite::future::or(cancelled, tick).await {
                    return Ok(());
                }
                self.ticks.fetch_add(1, Ordering::SeqCst);
            }
        }

        async fn teardown(&self) -> Result<(), RuntimeError> {
            self.teardowns.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn pod(fail_setup: bool) -> (Pod, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let ticks = Arc::new(AtomicUsize::new(0));
        let teardowns = Arc::new(AtomicUsize::new(0));
        let (t, d) = (ticks.clone(), teardowns.clone());
        let config = PodConfig::thread("async", move || {
            Ok(blocking(Ticker {
                fail_setup,
                ticks: t.clone(),
                teardowns: d.clone(),
            }))
        });
        (Pod::new(config).unwrap(), ticks, teardowns)
    }

    #[test]
    fn an_async_runtime_runs_until_cancelled_and_tears_down() {
        let (pod, ticks, teardowns) = pod(false);
        pod.start_and_wait_blocking().unwrap();
        assert!(super::eventually(Duration::from_secs(5), || ticks
            .load(Ordering::SeqCst)
            >= 3));
        assert_eq!(pod.close_blocking(), End::Closed(ExitStatus::Code(0)));
        assert_eq!(teardowns.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_async_setup_failure_fails_to_start_with_its_error() {
        let (pod, ticks, teardowns) = pod(true);
        match pod.start_and_wait_blocking().unwrap_err() {
            StartError::FailedToStart {
                reason: FailureReason::Runtime { error, .. },
                ..
            } => assert_eq!(error.as_deref(), Some("setup failed: no config")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            (
                ticks.load(Ordering::SeqCst),
                teardowns.load(Ordering::SeqCst)
            ),
            (0, 0)
        );
    }
}
