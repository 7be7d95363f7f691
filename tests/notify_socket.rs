//! The notify socket's directory: unpredictable names that cannot be squatted, removed on
//! every exit path, stale ones of dead podvisors cleaned; and who may notify.
//!
//! Every test here runs with `XDG_RUNTIME_DIR` set to one private directory (set once,
//! before any pod exists), and the tests take turns so that each may count the
//! directories it leaves behind.

mod support;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use podvisor::{Pod, PodConfig, Readiness, StartError};
use support::{eventually, fixture};

/// The base directory every pod of this test binary binds its notify socket under.
fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let base =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Set once, before any pod of this process exists (every test calls this first).
        std::env::set_var("XDG_RUNTIME_DIR", &base);
        base
    })
}

/// One test at a time: each counts the directories in the base.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    base();
    guard
}

/// The names in the base that start with `podvisor-<our pid>-`.
fn our_dirs() -> Vec<String> {
    let prefix = format!("podvisor-{}-", std::process::id());
    let mut names: Vec<String> = std::fs::read_dir(base())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    names.sort();
    names
}

/// A pod that prints its `NOTIFY_SOCKET`, reports ready and runs until closed.
fn notify_pod() -> Pod {
    Pod::new(
        fixture(&["env", "NOTIFY_SOCKET", "notify", "READY=1", "forever"])
            .ready(Readiness::Notify)
            .timeout_ready(Some(Duration::from_secs(30))),
    )
    .unwrap()
}

/// The notify socket path the fixture printed.
fn socket_of(pod: &Pod) -> PathBuf {
    let mut found = None;
    assert!(
        eventually(Duration::from_secs(5), || {
            found = pod
                .last_lines()
                .iter()
                .find_map(|l| l.strip_prefix("NOTIFY_SOCKET=").map(PathBuf::from));
            found.is_some()
        }),
        "{:?}",
        pod.last_lines()
    );
    found.unwrap()
}

/// A pid that is certainly not running now: a child that has been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn a_squatted_name_does_not_stop_the_pod() {
    let _turn = serial();
    // Whatever a name predictable from the pid could be (the former scheme: a counter),
    // it is taken: by directories of another user, and by symlinks to a place of ours.
    let me = std::process::id();
    let elsewhere = base().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mut squatters = Vec::new();
    for n in 0..5000u32 {
        let path = base().join(format!("podvisor-{me}-{n}"));
        if n.is_multiple_of(2) {
            std::fs::create_dir(&path).unwrap();
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        } else {
            symlink(&elsewhere, &path).unwrap();
        }
        squatters.push(path);
    }
    let pod = notify_pod();
    let started = futures_lite::future::block_on(pod.start_and_wait());
    started.unwrap_or_else(|e| panic!("{e}"));
    let socket = socket_of(&pod);
    let dir = socket.parent().unwrap();
    assert_eq!(
        dir.parent(),
        Some(base()),
        "{dir:?} is not in the base directory"
    );
    assert!(!squatters.iter().any(|s| s == dir), "{dir:?} was squatted");
    futures_lite::future::block_on(pod.close());
    // The squatters are untouched; nothing was created through the symlinks.
    for path in &squatters {
        assert!(std::fs::symlink_metadata(path).is_ok(), "{path:?} removed");
    }
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    for path in &squatters {
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_dir(path);
    }
    assert_eq!(our_dirs(), Vec::<String>::new());
}

#[test]
fn the_directory_is_gone_when_close_returns() {
    let _turn = serial();
    for _ in 0..10 {
        let pod = notify_pod();
        futures_lite::future::block_on(pod.start_and_wait()).unwrap_or_else(|e| panic!("{e}"));
        let socket = socket_of(&pod);
        assert!(socket.exists());
        futures_lite::future::block_on(pod.close());
        let dir = socket.parent().unwrap();
        assert!(!dir.exists(), "{dir:?} left after close");
    }
    assert_eq!(our_dirs(), Vec::<String>::new());
}

#[test]
fn the_directory_is_gone_when_the_pod_exits_by_itself() {
    let _turn = serial();
    for _ in 0..10 {
        let pod = Pod::new(
            fixture(&["env", "NOTIFY_SOCKET", "notify", "READY=1"])
                .ready(Readiness::Notify)
                .timeout_ready(Some(Duration::from_secs(30))),
        )
        .unwrap();
        pod.start();
        futures_lite::future::block_on(pod.join());
        let socket = socket_of(&pod);
        let dir = socket.parent().unwrap();
        assert!(!dir.exists(), "{dir:?} left after the exit");
    }
    assert_eq!(our_dirs(), Vec::<String>::new());
}

#[test]
fn the_directory_is_removed_after_the_pod_is_dropped() {
    let _turn = serial();
    let pod = notify_pod();
    futures_lite::future::block_on(pod.start_and_wait()).unwrap_or_else(|e| panic!("{e}"));
    let socket = socket_of(&pod);
    drop(pod);
    let dir = socket.parent().unwrap().to_owned();
    assert!(
        eventually(Duration::from_secs(5), || !dir.exists()),
        "{dir:?} left after drop"
    );
}

#[test]
fn the_directory_is_gone_after_a_spawn_failure() {
    let _turn = serial();
    for _ in 0..10 {
        let pod = Pod::new(
            PodConfig::new("/nonexistent/podvisor-test-program")
                .ready(Readiness::Notify)
                .timeout_ready(Some(Duration::from_secs(30))),
        )
        .unwrap();
        let error = futures_lite::future::block_on(pod.start_and_wait()).unwrap_err();
        assert!(matches!(error, StartError::FailedToStart { .. }), "{error}");
        futures_lite::future::block_on(pod.join());
        assert_eq!(our_dirs(), Vec::<String>::new());
    }
}

#[test]
fn stale_directories_of_dead_podvisors_are_cleaned_and_nothing_else() {
    let _turn = serial();
    let dead = dead_pid();
    let base = base();
    // Stale: a dead podvisor's directory with its socket, in the current and the former
    // naming.
    let stale = [
        base.join(format!("podvisor-{dead}-1234-00112233aabbccdd")),
        base.join(format!("podvisor-{dead}-7")),
    ];
    for dir in &stale {
        std::fs::create_dir(dir).unwrap();
        drop(std::os::unix::net::UnixDatagram::bind(dir.join("notify")).unwrap());
    }
    // Kept: another user's; one holding something else than a socket; a live process's
    // (pid 1, whatever its start time is, named without one); names of another shape; a
    // symlink to a directory of ours.
    let other_user = base.join(format!("podvisor-{dead}-1-aa"));
    std::fs::create_dir(&other_user).unwrap();
    drop(std::os::unix::net::UnixDatagram::bind(other_user.join("notify")).unwrap());
    std::os::unix::fs::chown(&other_user, Some(65534), Some(65534)).unwrap();
    let with_data = base.join(format!("podvisor-{dead}-2-bb"));
    std::fs::create_dir(&with_data).unwrap();
    std::fs::write(with_data.join("notify"), "precious").unwrap();
    let live = base.join("podvisor-1-3");
    std::fs::create_dir(&live).unwrap();
    let other_shape = base.join(format!("podvisor-limits-{dead}"));
    std::fs::create_dir(&other_shape).unwrap();
    let target = base.join("target-of-link");
    std::fs::create_dir_all(&target).unwrap();
    drop(std::os::unix::net::UnixDatagram::bind(target.join("notify")).unwrap());
    let link = base.join(format!("podvisor-{dead}-4-cc"));
    symlink(&target, &link).unwrap();

    // Binding a notify socket cleans (at most every second or so: keep starting pods).
    assert!(
        eventually(Duration::from_secs(10), || {
            let pod = notify_pod();
            futures_lite::future::block_on(pod.start_and_wait()).unwrap_or_else(|e| panic!("{e}"));
            futures_lite::future::block_on(pod.close());
            stale.iter().all(|d| std::fs::symlink_metadata(d).is_err())
        }),
        "stale directories left: {stale:?}"
    );
    for kept in [&other_user, &with_data, &live, &other_shape, &link] {
        assert!(std::fs::symlink_metadata(kept).is_ok(), "{kept:?} removed");
    }
    assert!(target.join("notify").exists(), "removed through a symlink");
    assert_eq!(
        std::fs::read_to_string(with_data.join("notify")).unwrap(),
        "precious"
    );
    for dir in [&other_user, &with_data, &live, &other_shape, &target] {
        let _ = std::fs::remove_dir_all(dir);
    }
    let _ = std::fs::remove_file(&link);
}

/// Whether the privilege-dropping tests can run here; prints why not otherwise.
fn can_drop_privileges() -> bool {
    if !rustix::process::geteuid().is_root() {
        println!("skipped: not root, so a pod cannot change its uid");
        return false;
    }
    for program in ["setpriv", "systemd-notify"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            println!("skipped: {program} is not installed");
            return false;
        }
    }
    true
}

#[test]
fn a_pod_that_drops_privileges_can_notify() {
    let _turn = serial();
    if !can_drop_privileges() {
        return;
    }
    let drop_to_nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    // systemd-notify as the leader itself, and run by the pod's shell.
    let commands: [&[&str]; 2] = [
        &["systemd-notify", "--ready", "--status=unprivileged"],
        &[
            "sh",
            "-c",
            "systemd-notify --ready --status=unprivileged && exec sleep 3600",
        ],
    ];
    for command in commands {
        let pod = Pod::new(
            PodConfig::new("setpriv")
                .args(drop_to_nobody)
                .args(command)
                .ready(Readiness::Notify)
                .timeout_ready(Some(Duration::from_secs(10))),
        )
        .unwrap();
        futures_lite::future::block_on(pod.start_and_wait())
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
        assert_eq!(pod.status_text().as_deref(), Some("unprivileged"));
        futures_lite::future::block_on(pod.close());
    }
    assert_eq!(our_dirs(), Vec::<String>::new());
}

#[test]
fn a_datagram_from_outside_the_pod_is_ignored_and_counted() {
    let _turn = serial();
    let pod = Pod::new(
        fixture(&["env", "NOTIFY_SOCKET", "forever"])
            .ready(Readiness::Notify)
            // Time for the datagram from outside to arrive first, on a busy machine too.
            .timeout_ready(Some(Duration::from_secs(5))),
    )
    .unwrap();
    pod.start();
    let socket = socket_of(&pod);
    // A process that is not the pod's (a child of this test process) knows the path and
    // may write to the socket, but is not listened to.
    let status = std::process::Command::new(support::FIXTURE)
        .args(["notify", "READY=1\\nSTATUS=from outside"])
        .env("NOTIFY_SOCKET", &socket)
        .status()
        .unwrap();
    assert!(status.success());
    let error = futures_lite::future::block_on(pod.wait_ready()).unwrap_err();
    assert!(matches!(error, StartError::TimedOut { .. }), "{error}");
    assert_eq!(pod.status_text(), None);
    assert_eq!(pod.notify_counters().from_outside, 1);
    futures_lite::future::block_on(pod.join());
}

#[test]
fn a_grandchild_in_another_session_counts() {
    let _turn = serial();
    // The pod's shell runs a shell that runs, in a session of its own (so in another
    // process group), a program that reports ready: it is still the pod's.
    let grandchild = "import os, socket, time\n\
        print('grandchild', os.getpid(), os.getpgid(0), os.getsid(0), flush=True)\n\
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
        s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n\
        time.sleep(3600)\n";
    let pod = Pod::new(
        PodConfig::new("sh")
            .args([
                "-c",
                r#"sh -c 'setsid python3 -c "$GRANDCHILD" & wait' & exec sleep 3600"#,
            ])
            .env("GRANDCHILD", grandchild)
            .ready(Readiness::Notify)
            .timeout_ready(Some(Duration::from_secs(10))),
    )
    .unwrap();
    let started = futures_lite::future::block_on(pod.start_and_wait());
    let mut line = None;
    eventually(Duration::from_secs(5), || {
        line = pod
            .last_lines()
            .iter()
            .find(|l| l.starts_with("grandchild "))
            .cloned();
        line.is_some()
    });
    let ids: Vec<u32> = line
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|w| w.parse().ok())
        .collect();
    let leader = pod.pid().unwrap();
    futures_lite::future::block_on(pod.close());
    // It left the pod's group, so the close does not reach it: end it here.
    if let Some(&pid) = ids.first() {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    started.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids.len(), 3, "{line:?}");
    assert_ne!(ids[1], leader, "the grandchild is still in the pod's group");
    assert_eq!(ids[1], ids[0], "the grandchild leads a group of its own");
}

#[test]
fn systemd_notify_as_the_leader_counts_also_as_root() {
    // As root, systemd-notify reports its parent's pid, which for a leader is podvisor's.
    let _turn = serial();
    let pod = Pod::new(
        PodConfig::new("sh")
            .args(["-c", "exec systemd-notify --ready --status=leader"])
            .ready(Readiness::Notify)
            .timeout_ready(Some(Duration::from_secs(10))),
    )
    .unwrap();
    futures_lite::future::block_on(pod.start_and_wait()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pod.status_text().as_deref(), Some("leader"));
    assert_eq!(pod.notify_counters().from_outside, 0);
    futures_lite::future::block_on(pod.join());
}

#[test]
fn an_orphan_of_the_pod_in_its_cgroup_counts() {
    // A daemon that double-forked and left the session: its parent is no longer the pod's,
    // but the pod's cgroup (where cgroups can be used) still holds it.
    let _turn = serial();
    let notifier = "import os, socket, time\n\
        print('orphan', os.getpid(), os.getppid(), flush=True)\n\
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
        s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n\
        time.sleep(3600)\n";
    let pod = Pod::new(
        PodConfig::new("sh")
            .args([
                "-c",
                r#"(setsid python3 -c "$NOTIFIER" &); exec sleep 3600"#,
            ])
            .env("NOTIFIER", notifier)
            .ready(Readiness::Notify)
            .timeout_ready(Some(Duration::from_secs(5))),
    )
    .unwrap();
    pod.start();
    let leader = loop {
        if let Some(pid) = pod.pid() {
            break pid;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let cgroup = std::fs::read_to_string(format!("/proc/{leader}/cgroup")).unwrap_or_default();
    let in_a_cgroup = cgroup
        .lines()
        .any(|l| l.starts_with("0::") && l.contains(&format!("/podvisor-{}-", std::process::id())));
    let started = futures_lite::future::block_on(pod.wait_ready());
    // The orphan's line and its datagram travel apart: wait for the line.
    let mut lines = pod.last_lines();
    eventually(Duration::from_secs(10), || {
        lines = pod.last_lines();
        lines.iter().any(|l| l.starts_with("orphan "))
    });
    // The close sweeps the cgroup, orphan included.
    futures_lite::future::block_on(pod.close());
    if !in_a_cgroup {
        println!("skipped: pods get no cgroup here ({cgroup:?})");
        return;
    }
    started.unwrap_or_else(|e| panic!("{e}; {lines:?}"));
    let orphan = lines.iter().find(|l| l.starts_with("orphan ")).unwrap();
    let ppid: u32 = orphan.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert_ne!(ppid, leader, "{orphan}: not an orphan");
}

/// What a pod wrote before `READY=1` is among its last lines once it is ready, even when
/// the datagram is there before the driver has read the pipe: a burst of output, then the
/// datagram at once.
#[test]
fn lines_written_before_ready_are_there_at_ready() {
    let _turn = serial();
    let script = "import os, socket, sys, time\n\
        for round in range(3):\n\
        \x20   sys.stdout.write('x' * 30 + '\\n')\n\
        sys.stdout.write(('y' * 30 + '\\n') * 1500 + 'marker\\n')\n\
        sys.stdout.flush()\n\
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
        s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n\
        time.sleep(60)\n";
    for _ in 0..5 {
        let pod = Pod::new(
            PodConfig::new("python3")
                .args(["-c", script])
                .ready(Readiness::Notify)
                .timeout_ready(Some(Duration::from_secs(30)))
                .last_lines(2),
        )
        .unwrap();
        pod.start_and_wait_blocking().unwrap();
        assert_eq!(pod.last_lines().last().map(String::as_str), Some("marker"));
        pod.close_blocking();
    }
}
