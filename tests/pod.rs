//! Pods over real child processes, each test under smol, tokio and `block_on`.

mod support;

use std::time::{Duration, Instant};

use podvisor::{
    core::SpawnErrorKind, End, ExitStatus, FailureReason, Output, Pod, PodConfig, Readiness,
    StartError, StartResult, State,
};
use support::{
    alive, eventually, fixture, grandchild_pid, ignoring_term, on_every_executor, our_zombies,
};

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

fn secs(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n))
}

#[test]
fn ready_by_notify_then_closed() {
    on_every_executor(|| async {
        let pod = Pod::new(
            fixture(&["sleep", "50", "notify", "STATUS=warm\\nREADY=1", "forever"])
                .ready(Readiness::Notify)
                .timeout_ready(secs(30)),
        )
        .unwrap();
        pod.start_and_wait().await.unwrap();
        assert_eq!(pod.state(), State::Ready);
        assert_eq!(pod.status_text().as_deref(), Some("warm"));
        let pid = pod.pid().unwrap();
        assert!(alive(pid));
        assert_eq!(pod.close().await, End::Closed(ExitStatus::Signal(SIGTERM)));
        assert!(!alive(pid));
        assert_eq!(pod.leftovers(), 0);
    });
}

#[test]
fn ready_by_stdout_and_stderr_lines() {
    on_every_executor(|| async {
        let pod = Pod::new(
            fixture(&[
                "print",
                "booting",
                "eprint",
                "db connected",
                "print",
                "listening on 80",
                "forever",
            ])
            .ready(Readiness::Stdout("listening".into()))
            .ready(Readiness::Stderr("connected".into()))
            .timeout_ready(secs(30)),
        )
        .unwrap();
        pod.start_and_wait().await.unwrap();
        let lines = pod.last_lines();
        assert!(lines.contains(&"booting".to_string()), "{lines:?}");
        pod.close().await;
    });
}

#[test]
fn no_readiness_check_means_ready_once_running() {
    on_every_executor(|| async {
        let pod = Pod::new(fixture(&["forever"])).unwrap();
        pod.start_and_wait().await.unwrap();
        assert!(matches!(
            pod.start_result(),
            Some(StartResult::Ready { .. })
        ));
        pod.close_with_grace(Duration::from_secs(5)).await;
    });
}

#[test]
fn program_not_found_fails_to_start() {
    on_every_executor(|| async {
        let pod = Pod::new(PodConfig::new("/nonexistent/podvisor-no-such-program")).unwrap();
        let error = pod.start_and_wait().await.unwrap_err();
        match &error {
            StartError::FailedToStart {
                reason: FailureReason::Spawn { kind, .. },
                ..
            } => assert_eq!(*kind, SpawnErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
        let message = error.to_string();
        assert!(
            message.contains("podvisor-no-such-program") && message.contains("not found"),
            "{message}"
        );
        assert_eq!(pod.join().await, End::NeverSpawned);
        assert_eq!(pod.pid(), None);
    });
}

#[test]
fn program_not_executable_fails_to_start() {
    let path = std::env::temp_dir().join(format!("podvisor-not-executable-{}", std::process::id()));
    std::fs::write(&path, "#!/bin/sh\n").unwrap();
    on_every_executor(|| async {
        let pod = Pod::new(PodConfig::new(&path)).unwrap();
        let error = pod.start_and_wait().await.unwrap_err();
        assert!(
            matches!(
                &error,
                StartError::FailedToStart {
                    reason: FailureReason::Spawn {
                        kind: SpawnErrorKind::PermissionDenied,
                        ..
                    },
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("cannot be executed"), "{error}");
    });
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn exit_before_ready_is_exited_early_with_status_and_output() {
    on_every_executor(|| async {
        let pod = Pod::new(
            fixture(&["eprint", "config file missing", "exit", "3"])
                .ready(Readiness::Notify)
                .timeout_ready(secs(30)),
        )
        .unwrap();
        let error = pod.start_and_wait().await.unwrap_err();
        assert_eq!(
            error,
            StartError::ExitedEarly {
                name: "fixture".into(),
                status: ExitStatus::Code(3),
                last_lines: vec!["config file missing".into()],
            }
        );
        assert!(error.to_string().contains("exit code 3"));
        assert!(error.to_string().contains("config file missing"));
        assert_eq!(pod.join().await, End::Exited(ExitStatus::Code(3)));
    });
}

#[test]
fn ready_sent_just_before_exit_counts() {
    on_every_executor(|| async {
        let pod = Pod::new(fixture(&["notify", "READY=1", "exit", "0"]).ready(Readiness::Notify))
            .unwrap();
        pod.start_and_wait().await.unwrap();
        assert_eq!(pod.join().await, End::Exited(ExitStatus::Code(0)));
    });
}

#[test]
fn ready_timeout_closes_the_pod() {
    on_every_executor(|| async {
        let pod = Pod::new(
            fixture(&["print", "still loading", "forever"])
                .ready(Readiness::Notify)
                .timeout_ready(Some(Duration::from_millis(300))),
        )
        .unwrap();
        let started = Instant::now();
        let error = pod.start_and_wait().await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        match &error {
            StartError::TimedOut {
                waited,
                waiting_for,
                ..
            } => {
                assert_eq!(*waited, Duration::from_millis(300));
                assert_eq!(waiting_for, &vec!["notify (READY=1)".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        assert!(error.to_string().contains("notify"), "{error}");
        assert_eq!(pod.join().await, End::Closed(ExitStatus::Signal(SIGTERM)));
    });
}

#[test]
fn sigterm_ignored_is_killed_never_before_the_grace_period_ends() {
    on_every_executor(|| async {
        let grace = Duration::from_millis(400);
        let pod = Pod::new(ignoring_term(&["forever"]).grace(grace)).unwrap();
        pod.start_and_wait().await.unwrap();
        let closing = Instant::now();
        let end = pod.close().await;
        let took = closing.elapsed();
        assert_eq!(end, End::Killed(ExitStatus::Signal(SIGKILL)));
        assert!(
            took >= grace,
            "killed after {took:?}, before the grace period {grace:?} ended"
        );
        assert!(took < grace + Duration::from_secs(5), "took {took:?}");
    });
}

#[test]
fn close_reaches_grandchildren_and_leaves_no_zombie() {
    on_every_executor(|| async {
        let pod = Pod::new(
            fixture(&["grandchild", "print", "up", "forever"])
                .ready(Readiness::Stdout("up".into()))
                .timeout_ready(secs(30)),
        )
        .unwrap();
        pod.start_and_wait().await.unwrap();
        let grandchild = grandchild_pid(&pod.last_lines()).expect("grandchild pid printed");
        let pgid = pod.pid().unwrap();
        assert!(alive(grandchild));
        pod.close().await;
        assert!(
            eventually(Duration::from_secs(5), || podvisor::group_members(pgid)
                .is_empty()),
            "group members left: {:?}",
            podvisor::group_members(pgid)
        );
        assert!(!alive(grandchild));
        assert!(!our_zombies().contains(&pgid));
    });
}

#[test]
fn leader_exit_is_seen_although_a_grandchild_holds_the_pipe() {
    on_every_executor(|| async {
        let pod = Pod::new(fixture(&["grandchild", "exit", "4"])).unwrap();
        pod.start();
        let end = pod.join_timeout(Duration::from_secs(10)).await;
        assert_eq!(end, Some(End::Exited(ExitStatus::Code(4))));
        assert_eq!(pod.leftovers(), 1, "the grandchild outlived the leader");
        let grandchild = grandchild_pid(&pod.last_lines());
        // The leader's end sweeps the group.
        if let Some(pid) = grandchild {
            assert!(eventually(Duration::from_secs(5), || !alive(pid)));
        }
    });
}

#[test]
fn a_stopped_child_still_closes_gracefully() {
    on_every_executor(|| async {
        let pod = Pod::new(
            fixture(&["print", "up", "stop-self", "forever"]).ready(Readiness::Stdout("up".into())),
        )
        .unwrap();
        pod.start_and_wait().await.unwrap();
        // SIGCONT follows the stop signal, so SIGTERM is acted on well within the grace.
        let end = pod.close_with_grace(Duration::from_secs(20)).await;
        assert_eq!(end, End::Closed(ExitStatus::Signal(SIGTERM)));
    });
}

#[test]
fn close_before_start_is_cancelled() {
    on_every_executor(|| async {
        let pod = Pod::new(fixture(&["forever"])).unwrap();
        assert_eq!(pod.close().await, End::NeverSpawned);
        assert_eq!(pod.start_result(), Some(StartResult::Cancelled));
        pod.start();
        assert_eq!(
            pod.wait_ready().await,
            Err(StartError::Cancelled {
                name: "fixture".into()
            })
        );
        assert_eq!(pod.pid(), None);
    });
}

#[test]
fn close_twice_and_concurrently_share_one_end() {
    on_every_executor(|| async {
        let pod = Pod::new(ignoring_term(&["forever"]).grace(Duration::from_secs(30))).unwrap();
        pod.start_and_wait().await.unwrap();
        // The second close shortens the grace period; both see the same end.
        let (a, b) = futures_lite::future::zip(
            pod.close(),
            pod.close_with_grace(Duration::from_millis(100)),
        )
        .await;
        assert_eq!(a, b);
        assert_eq!(a, End::Killed(ExitStatus::Signal(SIGKILL)));
        assert_eq!(pod.close().await, a);
    });
}

#[test]
fn close_after_exit_reports_the_exit() {
    on_every_executor(|| async {
        let pod = Pod::new(fixture(&["exit", "0"])).unwrap();
        pod.start();
        assert_eq!(pod.join().await, End::Exited(ExitStatus::Code(0)));
        assert_eq!(pod.close().await, End::Exited(ExitStatus::Code(0)));
        let status = pod.status();
        assert_eq!(status.state, State::Ended);
        assert_eq!(status.end, Some(End::Exited(ExitStatus::Code(0))));
        assert!(status.pid.is_some() && status.start_result.is_some_and(|r| r.is_ready()));
    });
}

#[test]
fn environment_is_the_pods_own() {
    std::env::set_var("PODVISOR_TEST_INHERITED", "yes");
    std::env::set_var("LISTEN_FDS", "3");
    on_every_executor(|| async {
        let pod = Pod::new(
            fixture(&[
                "env",
                "PODVISOR_TEST_OWN",
                "env",
                "PODVISOR_TEST_INHERITED",
                "env",
                "LISTEN_FDS",
                "env",
                "NOTIFY_SOCKET",
            ])
            .env("PODVISOR_TEST_OWN", "mine"),
        )
        .unwrap();
        pod.start();
        pod.join().await;
        assert_eq!(
            pod.last_lines(),
            vec![
                "PODVISOR_TEST_OWN=mine",
                "PODVISOR_TEST_INHERITED=yes",
                "LISTEN_FDS unset",
                "NOTIFY_SOCKET unset"
            ]
        );
        assert!(std::env::var_os("PODVISOR_TEST_OWN").is_none());

        let cleared = Pod::new(fixture(&["env", "PODVISOR_TEST_INHERITED"]).env_clear()).unwrap();
        cleared.start();
        cleared.join().await;
        assert_eq!(cleared.last_lines(), vec!["PODVISOR_TEST_INHERITED unset"]);
    });
}

#[test]
fn timeouts_fire_without_anyone_polling() {
    let pod = Pod::new(
        fixture(&["forever"])
            .ready(Readiness::Notify)
            .timeout_ready(Some(Duration::from_millis(200))),
    )
    .unwrap();
    pod.start();
    assert!(eventually(Duration::from_secs(5), || pod.pid().is_some()));
    let pid = pod.pid().unwrap();
    // Nobody awaits the pod; its driver thread times it out and closes it.
    assert!(
        eventually(Duration::from_secs(10), || !alive(pid)),
        "pid {pid} still alive"
    );
    // The group is signalled before the result is published: wait for it.
    assert!(
        eventually(Duration::from_secs(5), || matches!(
            pod.start_result(),
            Some(StartResult::TimedOut { .. })
        )),
        "{:?}",
        pod.start_result()
    );
    assert!(eventually(Duration::from_secs(5), || pod.end().is_some()));
}

#[test]
fn dropping_a_running_pod_kills_and_reaps_it() {
    let pod = Pod::new(ignoring_term(&["forever"]).grace(Duration::from_secs(60))).unwrap();
    pod.start_and_wait_blocking().unwrap();
    let pid = pod.pid().unwrap();
    drop(pod);
    assert!(eventually(Duration::from_secs(10), || !alive(pid)));
    assert!(eventually(Duration::from_secs(5), || !our_zombies().contains(&pid)));
}

#[test]
fn flooding_stdout_does_not_stall_the_child() {
    on_every_executor(|| async {
        let pod = Pod::new(fixture(&["flood", "20000", "print", "done"]).stdout(Output::Capture))
            .unwrap();
        pod.start();
        assert_eq!(
            pod.join_timeout(Duration::from_secs(30)).await,
            Some(End::Exited(ExitStatus::Code(0)))
        );
        assert_eq!(pod.last_lines().last().map(String::as_str), Some("done"));
    });
}

#[test]
fn join_timeout_gives_up_without_touching_the_pod() {
    on_every_executor(|| async {
        let pod = Pod::new(fixture(&["forever"])).unwrap();
        pod.start_and_wait().await.unwrap();
        assert_eq!(pod.join_timeout(Duration::from_millis(50)).await, None);
        assert_eq!(pod.state(), State::Ready);
        pod.close().await;
    });
}

#[test]
fn state_changes_can_be_awaited() {
    on_every_executor(|| async {
        let pod = Pod::new(
            fixture(&["sleep", "50", "notify", "READY=1", "forever"]).ready(Readiness::Notify),
        )
        .unwrap();
        pod.start();
        let mut seen = 0;
        let mut states = Vec::new();
        loop {
            let (count, state) = pod.changed(seen).await;
            seen = count;
            states.push(state);
            if state == State::Ready {
                break;
            }
        }
        assert_eq!(states.last(), Some(&State::Ready));
        pod.close_nowait(None);
        let (_, state) = pod.changed(seen).await;
        assert!(matches!(state, State::Stopping | State::Ended), "{state:?}");
        pod.join().await;
    });
}

#[test]
fn systemd_notify_works_unmodified() {
    on_every_executor(|| async {
        let pod = Pod::new(
            PodConfig::new("sh")
                .args([
                    "-c",
                    "systemd-notify --ready --status='serving' && exec sleep 3600",
                ])
                .ready(Readiness::Notify)
                .timeout_ready(secs(30)),
        )
        .unwrap();
        pod.start_and_wait().await.unwrap_or_else(|e| panic!("{e}"));
        pod.close().await;
    });
}

#[test]
fn two_hundred_pods_at_once() {
    futures_lite::future::block_on(async {
        let pods: Vec<Pod> = (0..200)
            .map(|i| {
                Pod::new(
                    fixture(&["print", "up", "forever"])
                        .name(format!("pod{i}"))
                        .ready(Readiness::Stdout("up".into()))
                        .timeout_ready(secs(60)),
                )
                .unwrap()
            })
            .collect();
        for pod in &pods {
            pod.start();
        }
        for pod in &pods {
            pod.wait_ready().await.unwrap_or_else(|e| panic!("{e}"));
        }
        for pod in &pods {
            pod.close_nowait(None);
        }
        for pod in &pods {
            assert_eq!(pod.join().await, End::Closed(ExitStatus::Signal(SIGTERM)));
        }
        // Other tests in this process spawn children too, so look at these pods' pids only:
        // each was reaped before its join returned.
        let zombies = our_zombies();
        let ours: Vec<u32> = pods
            .iter()
            .filter_map(Pod::pid)
            .filter(|p| zombies.contains(p))
            .collect();
        assert!(ours.is_empty(), "zombies left by these pods: {ours:?}");
    });
}

#[test]
fn bad_configs_are_rejected_before_anything_runs() {
    let error = Pod::new(PodConfig::new("")).unwrap_err();
    assert!(error.to_string().contains("program is empty"), "{error}");
    let error = Pod::new(fixture(&[]).ready(Readiness::Stdout(String::new()))).unwrap_err();
    assert!(error.to_string().contains("empty text"), "{error}");
}

#[test]
fn without_the_death_signal_pods_work_the_same() {
    on_every_executor(|| async {
        let pod = Pod::new(
            fixture(&["notify", "READY=1", "forever"])
                .ready(Readiness::Notify)
                .kill_on_supervisor_death(false),
        )
        .unwrap();
        pod.start_and_wait().await.unwrap();
        assert_eq!(pod.close().await, End::Closed(ExitStatus::Signal(SIGTERM)));
    });
}

#[test]
fn notify_barrier_descriptors_are_closed() {
    // Newer systemd-notify sends BARRIER=1 with a pipe and waits until the supervisor
    // closes it; the fixture does the same and exits 2 if it is kept open.
    on_every_executor(|| async {
        let pod = Pod::new(
            fixture(&["barrier", "notify", "READY=1", "forever"])
                .ready(Readiness::Notify)
                .timeout_ready(secs(30)),
        )
        .unwrap();
        pod.start_and_wait().await.unwrap_or_else(|e| panic!("{e}"));
        // The line and the datagram travel on different channels: either may come first.
        assert!(
            eventually(Duration::from_secs(5), || pod
                .last_lines()
                .contains(&"barrier ok".to_string())),
            "{:?}",
            pod.last_lines()
        );
        pod.close().await;
    });
}

#[test]
fn odd_fields_do_not_drop_a_notify_datagram() {
    // READY=1 in one datagram with a non-UTF-8 STATUS=, a line without '=' and a negative
    // MAINPID: systemd honours the valid field, and so must podvisor.
    on_every_executor(|| async {
        let pod = Pod::new(
            PodConfig::new("python3")
                .args([
                    "-c",
                    "import os, socket, time\n\
                     s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
                     s.sendto(b'READY=1\\nSTATUS=\\xff\\xfe odd\\nno equals sign\\nMAINPID=-5\\n', os.environ['NOTIFY_SOCKET'])\n\
                     time.sleep(3600)\n",
                ])
                .ready(Readiness::Notify)
                .timeout_ready(secs(10)),
        )
        .unwrap();
        pod.start_and_wait().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pod.state(), State::Ready);
        pod.close().await;
    });
}

#[test]
fn output_tap_sees_every_line_of_both_streams() {
    use podvisor::core::Stream;
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<(Stream, String)>>> = Arc::default();
    let tap = seen.clone();
    // More lines than are kept: the tap sees them all, in order.
    let mut steps = Vec::new();
    let numbers: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
    for n in &numbers {
        steps.extend(["print", n.as_str()]);
    }
    steps.extend(["eprint", "to stderr", "exit", "0"]);
    let pod = Pod::new(
        fixture(&steps)
            .last_lines(5)
            .output_tap(move |stream, line| {
                tap.lock()
                    .unwrap()
                    .push((stream, String::from_utf8_lossy(line).into_owned()));
            }),
    )
    .unwrap();
    // It may end before it counts as ready: either way every line was read.
    let _ = pod.start_and_wait_blocking();
    pod.join_blocking();
    let seen = seen.lock().unwrap().clone();
    let stdout: Vec<String> = seen
        .iter()
        .filter(|(s, _)| *s == Stream::Stdout)
        .map(|(_, l)| l.clone())
        .collect();
    assert_eq!(stdout, numbers);
    assert!(
        seen.contains(&(Stream::Stderr, "to stderr".to_string())),
        "{seen:?}"
    );
    assert_eq!(pod.last_lines().len(), 5);
}

#[test]
fn a_foreground_pod_is_signalled_alone_and_never_after_its_end() {
    let pod = podvisor::Pod::new(
        podvisor::PodConfig::new("sh")
            .args([
                "-c",
                "trap 'echo got usr1' USR1; echo up; while :; do sleep 0.05; done",
            ])
            .ready(podvisor::Readiness::Stdout("up".into()))
            .foreground(true)
            .grace(Duration::from_secs(2)),
    )
    .unwrap();
    pod.start_and_wait_blocking().unwrap();
    assert!(pod.signal(podvisor::Signal::USR1).unwrap());
    assert!(support::eventually(Duration::from_secs(10), || pod
        .last_lines()
        .iter()
        .any(|l| l == "got usr1")));
    // It shares podvisor's process group, which is not signalled: podvisor is still here.
    pod.close_blocking();
    assert!(!pod.signal(podvisor::Signal::USR1).unwrap());
}
