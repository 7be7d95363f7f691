//! Nothing outlives podvisor: what a pod started — grandchildren, and processes that left
//! its process group with `setsid` — is gone after a close, a restart, and podvisor's own
//! death by SIGKILL.

mod support;

use std::time::{Duration, Instant};

use support::spawn;

/// A marker no other test's processes carry.
fn marker(test: &str) -> String {
    format!("PODVISOR_TEST_MARK={test}-{}", std::process::id())
}

/// Live (non-zombie) processes whose environment holds `mark`.
fn marked(mark: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        });
        if !zombie && environ.split(|&b| b == 0).any(|v| v == mark.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// Whether `pid` is in a cgroup of podvisor's.
fn in_podvisor_cgroup(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| {
        c.lines()
            .any(|l| l.starts_with("0::") && l.contains("/podvisor-"))
    })
}

/// Whether this machine lets this test make a cgroup2 directory beside its own (then
/// podvisor must contain its pods in cgroups, and the setsid escape must be caught).
fn cgroups_available() -> bool {
    let Ok(own) = std::fs::read_to_string("/proc/self/cgroup") else {
        return false;
    };
    let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
        return false;
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let available = mounts.lines().any(|line| {
        let Some((before, after)) = line.split_once(" - ") else {
            return false;
        };
        let fields: Vec<&str> = before.split_whitespace().collect();
        if !after.starts_with("cgroup2 ") || fields.len() < 5 || fields[3] != "/" {
            return false;
        }
        let probe = std::path::Path::new(fields[4])
            .join(path.trim_start_matches('/'))
            .join(format!("podvisor-test-probe-{}", std::process::id()));
        let made = std::fs::create_dir(&probe).is_ok();
        let _ = std::fs::remove_dir(&probe);
        made
    });
    if !available {
        eprintln!(
            "no writable cgroup2 here: only process groups are covered, setsid escapes are not"
        );
    }
    available
}

/// A pod's command: a grandchild, a process that leaves the group, and the leader.
const FAMILY: &str = "sleep 1101 & setsid sleep 1102 & exec sleep 1103";

fn kill9(pid: u32) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
}

#[test]
fn podvisor_killed_by_sigkill_leaves_nothing_of_run() {
    let mark = marker("run-kill9");
    let mut run = spawn(&["run", "--env", &mark, "--", "sh", "-c", FAMILY]);
    run.wait_for("ready");
    assert!(
        wait_until(Duration::from_secs(20), || marked(&mark).len() == 3),
        "{:?}",
        marked(&mark)
    );
    let contained = cgroups_available();
    if contained {
        assert!(marked(&mark).iter().all(|&p| in_podvisor_cgroup(p)));
    }
    kill9(run.child.id());
    let _ = run.child.wait();
    let gone = wait_until(Duration::from_secs(5), || {
        let left = marked(&mark);
        left.is_empty() || (!contained && left.len() == 1)
    });
    let left = marked(&mark);
    for &pid in &left {
        kill9(pid);
    }
    assert!(gone, "left after podvisor's death: {left:?}");
}

/// Without cgroups (`PODVISOR_CGROUPS=off`, as where none can be made), the keeper's list
/// of process groups is all there is: the leader and the grandchild in its group die with
/// podvisor; only the process that left the group with `setsid` is beyond reach.
#[test]
fn podvisor_killed_by_sigkill_leaves_nothing_of_a_group_without_cgroups() {
    let mark = marker("run-kill9-groups");
    let mut command = std::process::Command::new(support::PODVISOR);
    command
        .args(["run", "--env", &mark, "--", "sh", "-c", FAMILY])
        .env("PODVISOR_CGROUPS", "off")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    let mut run = support::spawn_command(command);
    run.wait_for("ready");
    assert!(
        wait_until(Duration::from_secs(20), || marked(&mark).len() == 3),
        "{:?}",
        marked(&mark)
    );
    assert!(marked(&mark).iter().all(|&p| !in_podvisor_cgroup(p)));
    let escaped: Vec<u32> = marked(&mark)
        .into_iter()
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.contains("1102"))
        })
        .collect();
    kill9(run.child.id());
    let _ = run.child.wait();
    let gone = wait_until(Duration::from_secs(5), || marked(&mark) == escaped);
    let left = marked(&mark);
    for &pid in &left {
        kill9(pid);
    }
    assert!(
        gone,
        "left after podvisor's death: {left:?}, escaped: {escaped:?}"
    );
}

#[test]
fn podvisor_killed_by_sigkill_leaves_nothing_of_a_deployment() {
    let mark = marker("up-kill9");
    let dir = std::env::temp_dir().join(format!("podvisor-outlive-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("three.toml");
    let (key, value) = mark.split_once('=').unwrap();
    let mut text = String::new();
    for name in ["a", "b", "c"] {
        text.push_str(&format!(
            "[pod.{name}]\ncommand = [\"sh\", \"-c\", \"{FAMILY}\"]\nenv = {{ {key} = \"{value}\" }}\n\n"
        ));
    }
    std::fs::write(&file, text).unwrap();
    let mut up = spawn(&["up", file.to_str().unwrap()]);
    up.wait_for("deployment ready");
    assert!(
        wait_until(Duration::from_secs(20), || marked(&mark).len() == 9),
        "{:?}",
        marked(&mark)
    );
    let contained = cgroups_available();
    if contained {
        assert!(marked(&mark).iter().all(|&p| in_podvisor_cgroup(p)));
    }
    kill9(up.child.id());
    let _ = up.child.wait();
    let gone = wait_until(Duration::from_secs(5), || {
        let left = marked(&mark);
        left.is_empty() || (!contained && left.len() == 3)
    });
    let left = marked(&mark);
    for &pid in &left {
        kill9(pid);
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(gone, "left after podvisor's death: {left:?}");
}

#[test]
fn a_process_that_left_the_group_is_swept_at_close() {
    let mark = marker("close");
    let mut run = spawn(&["run", "--env", &mark, "--", "sh", "-c", FAMILY]);
    run.wait_for("ready");
    assert!(wait_until(Duration::from_secs(20), || marked(&mark).len() == 3));
    let contained = cgroups_available();
    if contained {
        assert!(marked(&mark).iter().all(|&p| in_podvisor_cgroup(p)));
    }
    run.signal("INT");
    assert_eq!(
        run.exit_within(Duration::from_secs(30)),
        0,
        "{:?}",
        run.seen
    );
    let left = marked(&mark);
    for &pid in &left {
        kill9(pid);
    }
    if contained {
        assert!(left.is_empty(), "escaped the close: {left:?}");
    }
}

#[test]
fn restarts_do_not_pile_up_escaped_processes() {
    let mark = marker("restart");
    let mut run = spawn(&[
        "run",
        "--restart",
        "always",
        "--env",
        &mark,
        "--",
        "sh",
        "-c",
        "setsid sleep 1102 & sleep 0.3; exit 3",
    ]);
    // Let it restart a few times (100 ms backoff, doubling).
    for _ in 0..3 {
        run.wait_for("backing off");
    }
    let most = marked(&mark).len();
    let contained = cgroups_available();
    if contained {
        assert!(marked(&mark).iter().all(|&p| in_podvisor_cgroup(p)));
    }
    run.signal("INT");
    let _ = run.exit_within(Duration::from_secs(30));
    let left = marked(&mark);
    for &pid in &left {
        kill9(pid);
    }
    if contained {
        assert!(most <= 2, "{most} escaped processes while restarting");
        assert!(left.is_empty(), "escaped the close: {left:?}");
    }
}
