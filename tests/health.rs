//! Health after ready against real processes: an HTTP server that stops answering is
//! closed as unhealthy and restarted under `on-failure`; a program pinging with Debian's
//! `systemd-notify WATCHDOG=1` stays up and is closed about one interval after it stops;
//! a `healthy` dependency holds its dependent back; the watchdog's environment.
//!
//! Times are generous: these run on a shared 2-core machine.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use podvisor::{
    Condition, Deployment, DeploymentConfig, End, ExitStatus, Health, MemberState, Pod, PodConfig,
    PodSet, Readiness, RestartPolicy, Unhealthy,
};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server on `port` that answers 200 until `marker` exists; from then on (in this
/// process) it accepts connections and never answers.
fn hanging_server(port: u16, marker: &std::path::Path) -> PodConfig {
    let script = format!(
        r#"
import http.server, os, time
hung = False
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global hung
        if hung or os.path.exists({marker:?}):
            if not hung:
                os.remove({marker:?})
            hung = True
            time.sleep(3600)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", {port}), H).serve_forever()
"#,
        marker = marker.display().to_string(),
    );
    PodConfig::new("python3")
        .args(["-c", &script])
        .ready(format!("tcp:127.0.0.1:{port}").parse().unwrap())
        .health(format!("http://127.0.0.1:{port}/health").parse().unwrap())
        .health_interval(Duration::from_millis(200))
        .health_timeout(Duration::from_millis(300))
        .health_retries(2)
        .grace(Duration::from_secs(2))
}

fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

#[test]
fn a_server_that_stops_answering_is_closed_as_unhealthy() {
    let dir = tempdir();
    let marker = dir.join("hang");
    let port = free_port();
    let pod = Pod::new(hanging_server(port, &marker)).unwrap();
    pod.start_and_wait_blocking().unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || pod.health()
            == Some(Health::Healthy)),
        "never healthy: {:?}",
        pod.status()
    );
    std::fs::write(&marker, b"").unwrap();
    let hung_at = Instant::now();
    // interval × retries + timeout = 0.7 s; the margin is generous.
    let end = pod
        .join_timeout_blocking(Duration::from_secs(15))
        .expect("closed as unhealthy");
    let took = hung_at.elapsed();
    match end {
        End::Unhealthy {
            cause: Unhealthy::Check { check: 0, failures },
            status,
            killed: false,
        } => {
            assert_eq!(failures, 2);
            assert_eq!(status, ExitStatus::Signal(15));
        }
        other => panic!("expected unhealthy, got {other:?}"),
    }
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let message = pod.status().health_message.unwrap_or_default();
    assert!(
        message.contains("/health: no answer within 300ms"),
        "message: {message:?}"
    );
}

#[test]
fn an_unhealthy_pod_is_restarted_under_on_failure() {
    let dir = tempdir();
    let marker = dir.join("hang");
    let port = free_port();
    let config = hanging_server(port, &marker);
    let deployment = Deployment::new(
        DeploymentConfig::new().pod(PodSet::new("web", config).restart(RestartPolicy::OnFailure)),
    )
    .unwrap();
    deployment.start_and_wait_blocking().unwrap();
    assert!(wait_for(Duration::from_secs(10), || deployment
        .member("web/0")
        .unwrap()
        .health
        == Some(Health::Healthy)));
    std::fs::write(&marker, b"").unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || {
            let m = deployment.member("web/0").unwrap();
            m.restarts >= 1 && m.state == MemberState::Ready
        }),
        "not restarted: {:?}",
        deployment.member("web/0")
    );
    let m = deployment.member("web/0").unwrap();
    // The restarted pod answers again (the server removed the marker).
    assert!(wait_for(Duration::from_secs(10), || deployment
        .member("web/0")
        .unwrap()
        .health
        == Some(Health::Healthy)));
    assert_eq!(m.restarts, 1);
    deployment.close_blocking().unwrap();
}

#[test]
fn systemd_notify_watchdog_pings_keep_a_pod_up_until_they_stop() {
    // Pings every 0.1 s for 2 s, then goes quiet; the watchdog interval is 1.5 s (a fork
    // of systemd-notify per ping: room for a busy machine's stalls).
    let script = "systemd-notify --ready; i=0; while [ $i -lt 20 ]; do systemd-notify WATCHDOG=1; sleep 0.1; i=$((i+1)); done; echo quiet; exec sleep 60";
    let pod = Pod::new(
        PodConfig::new("sh")
            .args(["-c", script])
            .ready(Readiness::Notify)
            .watchdog(Duration::from_millis(1500))
            .grace(Duration::from_secs(2)),
    )
    .unwrap();
    let started = Instant::now();
    pod.start_and_wait_blocking().unwrap();
    // Still up after well over one interval, thanks to the pings.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(pod.state(), podvisor::State::Ready, "{:?}", pod.status());
    let end = pod
        .join_timeout_blocking(Duration::from_secs(20))
        .expect("closed by the watchdog");
    let took = started.elapsed();
    match end {
        End::Unhealthy {
            cause: Unhealthy::Watchdog { interval },
            status,
            ..
        } => {
            assert_eq!(interval, Duration::from_millis(1500));
            // The watchdog signal is SIGABRT.
            assert_eq!(status, ExitStatus::Signal(6));
        }
        other => panic!("expected the watchdog, got {other:?}"),
    }
    // The last ping at least 1.9 s after ready, then one interval.
    assert!(took >= Duration::from_millis(3400), "took {took:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[test]
fn the_leader_gets_watchdog_usec_and_its_own_pid() {
    let pod = Pod::new(
        PodConfig::new("sh")
            .args([
                "-c",
                "echo \"usec=$WATCHDOG_USEC pid=$WATCHDOG_PID self=$$\"; systemd-notify --ready; exec sleep 30",
            ])
            .ready(Readiness::Notify)
            .watchdog(Duration::from_secs(30))
            .last_lines(5),
    )
    .unwrap();
    pod.start_and_wait_blocking().unwrap();
    let pid = pod.pid().unwrap();
    // The line and the datagram travel on different channels: either may come first.
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let line = pod.last_lines().into_iter().next();
        if line.is_some() || Instant::now() > deadline {
            break line.unwrap_or_default();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(line, format!("usec=30000000 pid={pid} self={pid}"));
    pod.close_blocking();
}

#[test]
fn a_healthy_dependency_holds_its_dependent_back() {
    let dir = tempdir();
    let marker = dir.join("db-healthy");
    let db = PodConfig::new("sleep")
        .arg("60")
        .health(format!("file:{}", marker.display()).parse().unwrap())
        .health_interval(Duration::from_millis(100))
        // Failures before the first success are forgiven for a minute.
        .health_start_period(Duration::from_secs(60));
    let deployment = Deployment::new(DeploymentConfig::new().pod(PodSet::new("db", db)).pod(
        PodSet::new("api", PodConfig::new("sleep").arg("60")).depends_on("db", Condition::Healthy),
    ))
    .unwrap();
    deployment.start();
    assert!(wait_for(Duration::from_secs(10), || deployment
        .member("db/0")
        .unwrap()
        .state
        == MemberState::Ready));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        deployment.member("api/0").unwrap().state,
        MemberState::Waiting,
        "api started before db was healthy"
    );
    std::fs::write(&marker, b"").unwrap();
    deployment.wait_ready_blocking().unwrap();
    assert_eq!(
        deployment.member("api/0").unwrap().state,
        MemberState::Ready
    );
    deployment.close_blocking().unwrap();
}

#[test]
fn bad_health_settings_are_refused_when_the_pod_is_made() {
    let error = Pod::new(PodConfig::new("x").health(Readiness::Notify)).unwrap_err();
    assert!(error.to_string().contains("can only say ready"), "{error}");
    let error = Pod::new(
        PodConfig::new("x")
            .health("tcp:127.0.0.1:1".parse().unwrap())
            .health_retries(0),
    )
    .unwrap_err();
    assert!(error.to_string().contains("retries"), "{error}");
    let error = Pod::new(
        PodConfig::new("x")
            .health("tcp:127.0.0.1:1".parse().unwrap())
            .health_interval(Duration::ZERO),
    )
    .unwrap_err();
    assert!(error.to_string().contains("interval is zero"), "{error}");
    let error = Pod::new(PodConfig::new("x").watchdog(Duration::ZERO)).unwrap_err();
    assert!(
        error.to_string().contains("watchdog interval is zero"),
        "{error}"
    );
    struct Idle;
    impl podvisor::runtime::Runtime for Idle {
        fn setup(
            &self,
            _: &podvisor::runtime::RuntimeContext,
        ) -> Result<(), podvisor::runtime::RuntimeError> {
            Ok(())
        }
        fn run_forever(
            &self,
            ctx: &podvisor::runtime::RuntimeContext,
        ) -> Result<(), podvisor::runtime::RuntimeError> {
            ctx.wait_cancelled();
            Ok(())
        }
    }
    let error = Pod::new(PodConfig::thread("idle", || Ok(Idle)).watchdog(Duration::from_secs(1)))
        .unwrap_err();
    assert!(
        error.to_string().contains("a watchdog needs a process pod"),
        "{error}"
    );
    let Err(error) = Deployment::new(
        DeploymentConfig::new()
            .pod(PodSet::new("db", PodConfig::new("sleep").arg("1")))
            .pod(
                PodSet::new("api", PodConfig::new("sleep").arg("1"))
                    .depends_on("db", Condition::Healthy),
            ),
    ) else {
        panic!("refused")
    };
    assert!(
        error.to_string().contains("has no health checks"),
        "{error}"
    );
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "podvisor-health-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_watchdog_pod_whose_program_is_missing_fails_to_start_as_usual() {
    for program in ["/nonexistent/podvisor-test", "podvisor-no-such-program"] {
        let pod = Pod::new(PodConfig::new(program).watchdog(Duration::from_secs(1))).unwrap();
        let error = pod.start_and_wait_blocking().unwrap_err();
        assert!(
            matches!(
                pod.start_result(),
                Some(podvisor::StartResult::FailedToStart(
                    podvisor::core::StartFailure::Spawn(podvisor::core::SpawnError {
                        kind: podvisor::core::SpawnErrorKind::NotFound,
                        ..
                    })
                ))
            ),
            "{program}: {error}"
        );
    }
}

#[test]
fn the_status_and_the_events_carry_the_last_health_failure() {
    let dir = tempdir();
    let marker = dir.join("ok");
    std::fs::write(&marker, b"").unwrap();
    let check = format!("file:{}", marker.display());
    let pod = Pod::new(
        PodConfig::new("sleep")
            .arg("60")
            .health(check.parse().unwrap())
            .health_interval(Duration::from_millis(100))
            .health_retries(1000),
    )
    .unwrap();
    let mut events = pod.events();
    pod.start_and_wait_blocking().unwrap();
    assert!(wait_for(Duration::from_secs(10), || pod.health()
        == Some(Health::Healthy)));
    assert_eq!(pod.status().health_failure, None);
    std::fs::remove_file(&marker).unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || pod
            .status()
            .health_failure
            .is_some_and(|f| f.failures >= 2)),
        "{:?}",
        pod.status()
    );
    let status = pod.status();
    let failure = status.health_failure.unwrap();
    assert_eq!((failure.index, failure.check.as_str()), (0, check.as_str()));
    assert_eq!(
        failure.message,
        format!("{} does not exist", marker.display())
    );
    assert_eq!(failure.retries, 1000);
    assert_eq!(status.health, Some(Health::Healthy));
    // It passes again: the count goes back to 0, the failure is kept.
    std::fs::write(&marker, b"").unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || pod
            .status()
            .health_failure
            .is_some_and(|f| f.failures == 0)),
        "{:?}",
        pod.status()
    );
    pod.close_blocking();
    let mut failed = Vec::new();
    while let Some(event) = events.next_blocking() {
        if let podvisor::events::EventKind::HealthCheckFailed(failure) = event.kind {
            failed.push(failure.failures);
        }
    }
    assert!(failed.len() >= 2 && failed[..2] == [1, 2], "{failed:?}");
}
