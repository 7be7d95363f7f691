//! Deployments over real child processes: start order, fail fast with nothing left
//! running, restarts with backoff, and closing many pods in one grace period.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use podvisor::core::deployment::{
    Backoff, Cause, Condition, DeploymentError, DeploymentState, MemberState, RestartPolicy,
};
use podvisor::events::EventKind;
use podvisor::{
    ConfigError, Deployment, DeploymentConfig, DeploymentConfigError, DeploymentStartError, End,
    ExitStatus, MemberStatus, PodConfig, PodSet, Readiness, StartResult,
};
use support::{alive, fixture, ignoring_term, on_every_executor, our_zombies};

const LONG: Option<Duration> = Some(Duration::from_secs(30));

fn stdout(text: &str) -> Readiness {
    Readiness::Stdout(text.into())
}

/// The monotonic stamp the fixture's `stamp TEXT` step printed, from a pod's last lines
/// (waiting a little for it: a pod without readiness checks is ready before its output is
/// read).
fn stamp(deployment: &Deployment, member: &str, text: &str) -> u64 {
    let find = || {
        deployment
            .last_lines(member)
            .iter()
            .find_map(|l| l.strip_prefix(text)?.trim().parse().ok())
    };
    support::eventually(Duration::from_secs(10), || find().is_some());
    find().unwrap_or_else(|| {
        let lines = deployment.last_lines(member);
        panic!("no stamp {text:?} in {member}'s output {lines:?}")
    })
}

fn running(state: MemberState) -> bool {
    state.is_running()
}

/// The order rules on one snapshot: a pod that starts or runs (not stopping) has every
/// `Ready` dependency ready; a pod that stops or ended has no dependent still running.
fn order_holds(members: &[MemberStatus], dependencies: &[(&str, &str)]) -> Result<(), String> {
    let state = |prefix: &str| -> Vec<MemberState> {
        members
            .iter()
            .filter(|m| m.name.starts_with(&format!("{prefix}/")))
            .map(|m| m.state)
            .collect()
    };
    for &(dependent, dependency) in dependencies {
        for d in state(dependent) {
            let up = matches!(
                d,
                MemberState::Starting | MemberState::Started | MemberState::Ready
            );
            if up && state(dependency).iter().any(|s| *s != MemberState::Ready) {
                return Err(format!(
                    "{dependent} is {d:?} while {dependency} is {:?}",
                    state(dependency)
                ));
            }
        }
        let closing = state(dependency)
            .iter()
            .any(|s| matches!(s, MemberState::Stopping | MemberState::Ended));
        if closing && state(dependent).iter().any(|s| running(*s)) {
            return Err(format!(
                "{dependency} is closing while {dependent} is {:?}",
                state(dependent)
            ));
        }
    }
    Ok(())
}

fn three_levels() -> DeploymentConfig {
    let db = fixture(&["sleep", "100", "stamp", "db-ready", "forever"])
        .ready(stdout("db-ready"))
        .timeout_ready(LONG);
    let api = fixture(&[
        "stamp",
        "api-start",
        "sleep",
        "100",
        "stamp",
        "api-ready",
        "forever",
    ])
    .ready(stdout("api-ready"))
    .timeout_ready(LONG);
    let web = fixture(&["stamp", "web-start", "forever"]);
    DeploymentConfig::new()
        .pod(PodSet::new("db", db))
        .pod(PodSet::new("api", api).depends_on("db", Condition::Ready))
        .pod(
            PodSet::new("web", web)
                .replicas(2)
                .depends_on("api", Condition::Ready),
        )
}

#[test]
fn three_levels_come_up_in_order_and_go_down_in_reverse() {
    on_every_executor(|| async {
        let deployment = Arc::new(Deployment::new(three_levels()).unwrap());
        let dependencies = [("api", "db"), ("web", "api")];
        // Check the order rules on every change, from another thread.
        let watcher = {
            let deployment = deployment.clone();
            std::thread::spawn(move || {
                let mut seen = 0;
                let mut snapshots = 0;
                loop {
                    let (version, state) = futures_lite::future::block_on(deployment.changed(seen));
                    seen = version;
                    snapshots += 1;
                    order_holds(&deployment.members(), &dependencies)?;
                    if state == DeploymentState::Ended {
                        return Ok::<_, String>(snapshots);
                    }
                }
            })
        };
        deployment.start_and_wait().await.unwrap();
        let pids: Vec<u32> = deployment.members().iter().filter_map(|m| m.pid).collect();
        assert_eq!(pids.len(), 4);
        assert!(pids.iter().all(|&p| alive(p)));
        // The processes themselves started in order.
        let db_ready = stamp(&deployment, "db/0", "db-ready");
        let api_start = stamp(&deployment, "api/0", "api-start");
        let api_ready = stamp(&deployment, "api/0", "api-ready");
        assert!(api_start > db_ready, "api started before db was ready");
        for web in ["web/0", "web/1"] {
            assert!(stamp(&deployment, web, "web-start") > api_ready);
        }
        deployment.close().await.unwrap();
        let snapshots = watcher.join().unwrap().unwrap();
        assert!(snapshots >= 3, "{snapshots} snapshots");
        assert!(deployment
            .members()
            .iter()
            .all(|m| m.state == MemberState::Ended
                && m.end == Some(End::Closed(ExitStatus::Signal(15)))));
        assert!(pids.iter().all(|&p| !alive(p)));
    });
}

#[test]
fn one_failing_pod_brings_everything_down_with_nothing_left_running() {
    let db = fixture(&["print", "db up", "forever"])
        .ready(stdout("db up"))
        .timeout_ready(LONG);
    // A sibling still waiting for its readiness when api fails: its wait is cancelled.
    let slow = fixture(&["forever"])
        .ready(stdout("never"))
        .timeout_ready(LONG);
    let api = fixture(&["print", "api booting", "sleep", "100", "exit", "3"])
        .ready(stdout("api-ready"))
        .timeout_ready(LONG);
    let web = fixture(&["forever"]);
    let deployment = Deployment::new(
        DeploymentConfig::new()
            .pod(PodSet::new("db", db))
            .pod(PodSet::new("slow", slow))
            .pod(PodSet::new("api", api).depends_on("db", Condition::Ready))
            .pod(PodSet::new("web", web).depends_on("api", Condition::Ready)),
    )
    .unwrap();
    let began = Instant::now();
    let error = deployment.start_and_wait_blocking().unwrap_err();
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    let DeploymentStartError::Failed(failure) = &error else {
        panic!("{error}")
    };
    assert_eq!(failure.member(), "api/0");
    assert_eq!(
        *failure.cause(),
        Cause::Start(StartResult::ExitedEarly {
            status: ExitStatus::Code(3)
        })
    );
    let text = error.to_string();
    assert!(
        text.contains("pod api/0 exited before it was ready (exit code 3)"),
        "{text}"
    );
    assert!(text.contains("api booting"), "{text}");
    let pids: Vec<u32> = deployment.members().iter().filter_map(|m| m.pid).collect();
    assert_eq!(deployment.join_blocking().unwrap_err(), *failure);
    assert!(pids.iter().all(|&p| !alive(p)), "left running: {pids:?}");
    let members = deployment.members();
    let web = members.iter().find(|m| m.name == "web/0").unwrap();
    assert_eq!(
        (web.pid, web.state),
        (None, MemberState::Ended),
        "web never started"
    );
    let slow = members.iter().find(|m| m.name == "slow/0").unwrap();
    assert_eq!(slow.start_result, Some(StartResult::Cancelled));
    // Other tests in this process spawn and reap children of their own: look at these pods'.
    let zombies: Vec<u32> = our_zombies()
        .into_iter()
        .filter(|z| pids.contains(z))
        .collect();
    assert!(zombies.is_empty(), "{zombies:?}");
}

#[test]
fn a_crashing_child_is_restarted_with_growing_delays_until_its_budget_is_spent() {
    let crasher = fixture(&["print", "crashing", "sleep", "30", "exit", "1"]);
    let backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(10),
        jitter_percent: 0,
        reset_after: Duration::from_secs(60),
        budget: Some(3),
    };
    let deployment = Deployment::new(
        DeploymentConfig::new().pod(
            PodSet::new("crasher", crasher)
                .restart(RestartPolicy::OnFailure)
                .backoff(backoff),
        ),
    )
    .unwrap();
    let mut events = deployment.events();
    let began = Instant::now();
    deployment.start_and_wait_blocking().unwrap();
    // Record when each restart shows, and the pids.
    let mut restarts_at = Vec::new();
    let mut pids = Vec::new();
    let mut seen = 0;
    loop {
        let (version, state) = futures_lite::future::block_on(deployment.changed(seen));
        seen = version;
        let member = deployment.member("crasher/0").unwrap();
        if member.restarts as usize > restarts_at.len() {
            restarts_at.push(began.elapsed());
        }
        if let Some(pid) = member.pid.filter(|p| !pids.contains(p)) {
            pids.push(pid);
        }
        if state == DeploymentState::Ended {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "no end: {member:?}"
        );
    }
    let failure = deployment.join_blocking().unwrap_err();
    assert_eq!(failure.crash_looping_after(), Some(3));
    assert!(failure.to_string().contains("crash-looping"), "{failure}");
    assert!(
        failure.last_lines().contains(&"crashing".to_string()),
        "{failure}"
    );
    let member = deployment.member("crasher/0").unwrap();
    assert_eq!(member.state, MemberState::CrashLooping);
    assert_eq!(member.restarts, 3);
    assert!(pids.len() >= 2, "{pids:?}");
    // Delays 200, 400, 800 ms from each end to the next start: lower bounds, exact on the
    // times the events carry (the driver's clock when it happened, not when this thread
    // looked).
    assert!(began.elapsed() >= Duration::from_millis(1_400 + 4 * 30));
    assert_eq!(restarts_at.len(), 3, "{restarts_at:?}");
    let mut lives = Vec::new();
    while let Some(event) = events.try_next() {
        match event.kind {
            EventKind::Started { .. } if event.source == "crasher/0" => {
                lives.push((event.at, None))
            }
            EventKind::Ended { .. } if event.source == "crasher/0" => {
                lives.last_mut().expect("started before it ended").1 = Some(event.at)
            }
            _ => {}
        }
    }
    assert_eq!(lives.len(), 4, "{lives:?}");
    for (pair, delay) in lives.windows(2).zip([200, 400, 800]) {
        let (ended, next) = (pair[0].1.expect("ended"), pair[1].0);
        assert!(
            next - ended >= Duration::from_millis(delay),
            "{delay} ms delay: {lives:?}"
        );
    }
}

#[test]
fn a_hundred_independent_pods_close_in_about_one_grace_period() {
    let deployment = Deployment::new(
        DeploymentConfig::new().pod(
            PodSet::new(
                "stubborn",
                ignoring_term(&["forever"]).timeout_ready(Some(Duration::from_secs(120))),
            )
            .replicas(100),
        ),
    )
    .unwrap();
    deployment.start_and_wait_blocking().unwrap();
    let pids: Vec<u32> = deployment.members().iter().filter_map(|m| m.pid).collect();
    assert_eq!(pids.len(), 100);
    let grace = Duration::from_millis(500);
    let began = Instant::now();
    deployment.close_with_grace_blocking(grace).unwrap();
    let took = began.elapsed();
    println!("100 pods ignoring SIGTERM, grace {grace:?}: closed in {took:?}");
    // SIGKILL never comes before the grace period ends; one at a time would take 50 s.
    assert!(took >= grace, "{took:?}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert!(deployment
        .members()
        .iter()
        .all(|m| m.end == Some(End::Killed(ExitStatus::Signal(9)))));
    assert!(pids.iter().all(|&p| !alive(p)));
}

#[test]
fn a_one_shot_migration_runs_between_the_database_and_the_web_server() {
    let db = fixture(&["print", "db up", "forever"]).ready(stdout("db up"));
    let migrate = fixture(&["stamp", "migrated", "sleep", "50"]);
    let web = fixture(&["stamp", "web-start", "forever"]);
    let deployment = Deployment::new(
        DeploymentConfig::new()
            .pod(PodSet::new("db", db))
            .pod(
                PodSet::new("migrate", migrate)
                    .one_shot()
                    .depends_on("db", Condition::Ready),
            )
            .pod(PodSet::new("web", web).depends_on("migrate", Condition::Succeeded)),
    )
    .unwrap();
    deployment.start_and_wait_blocking().unwrap();
    let migrate = deployment.member("migrate/0").unwrap();
    assert_eq!(migrate.state, MemberState::Succeeded);
    assert_eq!(migrate.end, Some(End::Exited(ExitStatus::Code(0))));
    assert!(stamp(&deployment, "web/0", "web-start") > stamp(&deployment, "migrate/0", "migrated"));
    deployment.close_blocking().unwrap();
}

#[test]
fn replicas_know_their_index_and_port() {
    let deployment = Deployment::new(
        DeploymentConfig::new().pod(
            PodSet::from_fn("w", |r| {
                let port_line = r.expand("port={port} name={name} index={replica}");
                fixture(&[
                    "env",
                    "PODVISOR_REPLICA",
                    "print",
                    &port_line,
                    "print",
                    "up",
                    "forever",
                ])
                .ready(stdout("up"))
                .timeout_ready(LONG)
            })
            .replicas(2),
        ),
    )
    .unwrap();
    deployment.start_and_wait_blocking().unwrap();
    for index in 0..2 {
        let name = format!("w/{index}");
        let lines = deployment.last_lines(&name);
        assert!(
            lines.contains(&format!("PODVISOR_REPLICA={index}")),
            "{lines:?}"
        );
        let line = lines.iter().find(|l| l.starts_with("port=")).unwrap();
        let port: u16 = line[5..].split(' ').next().unwrap().parse().unwrap();
        assert!(port > 0, "{line}");
        assert!(
            line.ends_with(&format!("name={name} index={index}")),
            "{line}"
        );
    }
    deployment.close_blocking().unwrap();
}

/// A restart whose configuration no longer builds is a failed start that keeps the
/// configuration's own message (it used to become an anonymous spawn failure).
#[test]
fn a_restart_whose_configuration_fails_keeps_its_message() {
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = calls.clone();
    let deployment = Deployment::new(
        DeploymentConfig::new().pod(
            PodSet::from_fn("flaky", move |_| {
                // The first start builds; the restart gets an empty program.
                if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    fixture(&["exit", "1"])
                } else {
                    PodConfig::new("")
                }
            })
            .restart(RestartPolicy::OnFailure)
            .backoff(Backoff {
                initial: Duration::from_millis(10),
                budget: Some(1),
                ..Backoff::default()
            }),
        ),
    )
    .unwrap();
    deployment.start();
    let failure = deployment.join_blocking().unwrap_err();
    let text = failure.to_string();
    assert!(
        text.contains("its configuration could not be built") && text.contains("empty"),
        "{text}"
    );
    assert!(calls.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}

#[test]
fn bad_configurations_are_reported_before_anything_starts() {
    let cycle = Deployment::new(
        DeploymentConfig::new()
            .pod(PodSet::new("a", fixture(&[])).depends_on("b", Condition::Ready))
            .pod(PodSet::new("b", fixture(&[])).depends_on("a", Condition::Ready)),
    )
    .unwrap_err();
    assert_eq!(
        cycle,
        DeploymentConfigError::Deployment(DeploymentError::Cycle {
            pods: vec!["a".into(), "b".into(), "a".into()]
        })
    );
    assert!(cycle.to_string().contains("a → b → a"), "{cycle}");
    let bad_pod = Deployment::new(
        DeploymentConfig::new().pod(PodSet::new("web", PodConfig::new("")).replicas(2)),
    )
    .unwrap_err();
    assert!(
        matches!(&bad_pod, DeploymentConfigError::Pod { member, error: ConfigError::EmptyProgram { .. } } if member == "web/0"),
        "{bad_pod:?}"
    );
    assert!(bad_pod.to_string().starts_with("pod web/0: "), "{bad_pod}");
}

#[test]
fn close_before_start_and_drop_leave_nothing_behind() {
    let deployment = Deployment::new(three_levels()).unwrap();
    assert_eq!(deployment.close_blocking(), Ok(()));
    assert_eq!(
        deployment.wait_ready_blocking(),
        Err(DeploymentStartError::Cancelled)
    );
    // A started deployment dropped without a close is killed in the background.
    let deployment = Deployment::new(three_levels()).unwrap();
    deployment.start_and_wait_blocking().unwrap();
    let pids: Vec<u32> = deployment.members().iter().filter_map(|m| m.pid).collect();
    drop(deployment);
    assert!(support::eventually(Duration::from_secs(10), || pids
        .iter()
        .all(|&p| !alive(p))));
}

#[test]
fn no_two_replicas_get_the_same_port() {
    let ports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = ports.clone();
    let set = PodSet::from_fn("web", move |replica| {
        let port = replica.port();
        seen.lock().unwrap().push(port);
        // Asked again (as a restart does), the same port.
        assert_eq!(replica.expand("{port}"), port.to_string());
        PodConfig::new("true")
    })
    .replicas(3000);
    let _deployment = Deployment::new(DeploymentConfig::new().pod(set)).unwrap();
    let mut ports = ports.lock().unwrap().clone();
    assert_eq!(ports.len(), 3000);
    assert!(!ports.contains(&0));
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3000, "ports handed out twice");
}

#[test]
fn a_signal_reaches_every_running_member() {
    let set = PodSet::new(
        "hup",
        PodConfig::new("sh")
            .args([
                "-c",
                "trap 'echo got hup' HUP; echo up; while :; do sleep 0.05; done",
            ])
            .ready(stdout("up"))
            .timeout_ready(LONG),
    )
    .replicas(2);
    let deployment = Deployment::new(DeploymentConfig::new().pod(set)).unwrap();
    deployment.start_and_wait_blocking().unwrap();
    assert_eq!(deployment.signal(podvisor::Signal::HUP), 2);
    for name in ["hup/0", "hup/1"] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !deployment.last_lines(name).iter().any(|l| l == "got hup") {
            assert!(
                Instant::now() < deadline,
                "{name}: {:?}",
                deployment.last_lines(name)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = deployment.close_blocking();
    assert_eq!(deployment.signal(podvisor::Signal::HUP), 0);
}

#[test]
fn members_are_stopped_started_and_restarted_on_request() {
    use podvisor::{ControlError, MemberControl};
    let deployment = Deployment::new(
        DeploymentConfig::new()
            .pod(PodSet::new("db", PodConfig::new("sleep").arg("60")))
            .pod(
                PodSet::new("api", PodConfig::new("sleep").arg("60"))
                    .replicas(2)
                    .depends_on("db", Condition::Started),
            ),
    )
    .unwrap();
    deployment.start_and_wait_blocking().unwrap();
    let first_db = deployment.member("db/0").unwrap().pid.unwrap();
    // Stop db with its dependents: all three go down, nothing fails.
    let answer = deployment.stop_member("db", true).unwrap();
    assert_eq!(
        answer,
        [
            ("db/0".to_string(), MemberControl::Done),
            ("api/0".to_string(), MemberControl::Dependent),
            ("api/1".to_string(), MemberControl::Dependent),
        ]
    );
    assert!(support::eventually(Duration::from_secs(10), || {
        deployment
            .members()
            .iter()
            .all(|m| m.state == MemberState::Stopped)
    }));
    assert!(!alive(first_db));
    assert_eq!(
        deployment.stop_member("db/0", false).unwrap(),
        [("db/0".to_string(), MemberControl::AlreadyStopped)]
    );
    // Start db, then api (both replicas by the pod's name).
    deployment.start_member("db").unwrap();
    let answer = deployment.start_member("api").unwrap();
    assert_eq!(answer.len(), 2);
    assert!(support::eventually(Duration::from_secs(10), || {
        deployment
            .members()
            .iter()
            .all(|m| m.state == MemberState::Ready)
    }));
    assert_eq!(
        deployment.start_member("api/1").unwrap(),
        [("api/1".to_string(), MemberControl::AlreadyRunning)]
    );
    // A restart of db brings api back after it.
    let db = deployment.member("db/0").unwrap().pid.unwrap();
    let api = deployment.member("api/0").unwrap().pid.unwrap();
    deployment.restart_member("db").unwrap();
    assert!(support::eventually(Duration::from_secs(10), || {
        let members = deployment.members();
        members.iter().all(|m| m.state == MemberState::Ready)
            && members[0].pid != Some(db)
            && members[1].pid != Some(api)
    }));
    assert!(deployment.failure().is_none());
    let error = deployment.stop_member("cache", false).unwrap_err();
    assert!(matches!(error, ControlError::UnknownName { .. }));
    assert!(
        error
            .to_string()
            .contains("the members are db/0, api/0, api/1"),
        "{error}"
    );
    deployment.close_blocking().unwrap();
    assert_eq!(
        deployment.start_member("db").unwrap_err(),
        ControlError::Closing
    );
}
