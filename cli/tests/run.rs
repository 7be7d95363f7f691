//! End-to-end tests of `podvisor run`: the built binary, real children, real signals.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{spawn, PODVISOR};

fn gone_within(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z"))
            .unwrap_or(false);
        if !alive {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn status_of(args: &[&str]) -> (i32, Vec<String>) {
    let (code, lines, _) = spawn(args).finish();
    (code, lines)
}

#[test]
fn closed_on_sigint_after_ready_is_0() {
    let mut run = spawn(&[
        "run",
        "--ready",
        "stdout:up",
        "--",
        "sh",
        "-c",
        "echo up; exec sleep 60",
    ]);
    run.wait_for("ready after");
    run.signal("INT");
    let (code, lines, stdout) = run.finish();
    assert_eq!(code, 0, "{lines:?}");
    assert!(stdout.contains("up"));
    assert!(
        lines.iter().any(|l| l.contains("closing on SIGINT")),
        "{lines:?}"
    );
}

#[test]
fn command_exiting_0_by_itself_is_0() {
    assert_eq!(status_of(&["run", "--", "true"]).0, 0);
}

#[test]
fn sigint_before_ready_is_130_and_sigterm_143() {
    for (signal, expected) in [("INT", 130), ("TERM", 143)] {
        let mut run = spawn(&["run", "--ready", "notify", "--", "sleep", "60"]);
        run.wait_for("started");
        run.signal(signal);
        let (code, lines, _) = run.finish();
        assert_eq!(code, expected, "{lines:?}");
    }
}

#[test]
fn readiness_timeout_is_124() {
    let (code, lines) = status_of(&[
        "run",
        "--ready",
        "notify",
        "--timeout-ready",
        "300ms",
        "--",
        "sleep",
        "60",
    ]);
    assert_eq!(code, 124);
    assert!(
        lines.iter().any(|l| l.contains("not ready after 300ms")),
        "{lines:?}"
    );
}

#[test]
fn usage_errors_are_125() {
    for args in [
        &["run", "--grace", "5", "--", "true"][..],
        &["run", "--ready", "bogus", "--", "true"],
        &["run"],
        &["frobnicate"],
        &["run", "--stop-signal", "NOPE", "--", "true"],
    ] {
        let (code, lines) = status_of(args);
        assert_eq!(code, 125, "{args:?}: {lines:?}");
        assert!(
            lines.iter().any(|l| l.starts_with("podvisor: ")),
            "{lines:?}"
        );
    }
}

#[test]
fn not_executable_is_126_and_not_found_127() {
    let file = std::env::temp_dir().join(format!("podvisor-cli-not-exec-{}", std::process::id()));
    std::fs::write(&file, "not a program\n").unwrap();
    assert_eq!(status_of(&["run", "--", file.to_str().unwrap()]).0, 126);
    std::fs::remove_file(&file).unwrap();
    let (code, lines) = status_of(&["run", "--", "podvisor-no-such-command"]);
    assert_eq!(code, 127);
    assert!(
        lines.iter().any(|l| l.contains("was not found")),
        "{lines:?}"
    );
}

#[test]
fn ended_before_ready_with_0_is_1_and_with_n_is_n() {
    assert_eq!(status_of(&["run", "--ready", "notify", "--", "true"]).0, 1);
    let (code, lines) = status_of(&[
        "run",
        "--ready",
        "notify",
        "--",
        "sh",
        "-c",
        "echo broken config >&2; exit 3",
    ]);
    assert_eq!(code, 3);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("exited before it was ready")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("broken config")),
        "{lines:?}"
    );
}

#[test]
fn exit_after_ready_and_death_by_signal_pass_through() {
    assert_eq!(status_of(&["run", "--", "sh", "-c", "exit 7"]).0, 7);
    assert_eq!(
        status_of(&["run", "--", "sh", "-c", "kill -SEGV $$"]).0,
        139
    );
}

#[test]
fn sigkill_after_the_grace_period_is_137() {
    let mut run = spawn(&[
        "run",
        "--grace",
        "300ms",
        "--ready",
        "stdout:armed",
        "--",
        "sh",
        "-c",
        "trap '' TERM; echo armed; while :; do sleep 0.1; done",
    ]);
    run.wait_for("ready after");
    run.signal("INT");
    let (code, lines, _) = run.finish();
    assert_eq!(code, 137, "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("SIGKILL")), "{lines:?}");
}

#[test]
fn sigint_reaches_grandchildren() {
    let pid_file =
        std::env::temp_dir().join(format!("podvisor-cli-grandchild-{}", std::process::id()));
    let script = format!(
        "sleep 600 & echo $! > {}; echo up; wait",
        pid_file.display()
    );
    let mut run = spawn(&["run", "--ready", "stdout:up", "--", "sh", "-c", &script]);
    run.wait_for("ready after");
    let grandchild: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    run.signal("INT");
    let (code, lines, _) = run.finish();
    assert_eq!(code, 0, "{lines:?}");
    assert!(
        gone_within(grandchild, Duration::from_secs(5)),
        "grandchild {grandchild} survived"
    );
    std::fs::remove_file(pid_file).unwrap();
}

#[test]
fn sighup_is_forwarded_to_the_group() {
    let mut run = spawn(&[
        "run",
        "--ready",
        "stdout:armed",
        "--",
        "sh",
        "-c",
        "trap 'echo got HUP' HUP; echo armed; while :; do sleep 0.1; done",
    ]);
    run.wait_for("ready after");
    run.signal("HUP");
    // The trap runs within the child's 0.1 s sleep loop: TERM once it has.
    let rx = support::lines_of(run.child.stdout.take().unwrap());
    let trapped = std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(20)).ok())
        .any(|line| line == "got HUP");
    run.signal("TERM");
    assert!(trapped, "no \"got HUP\" within 20 s");
    let (code, lines, _) = run.finish();
    assert_eq!(code, 0, "{lines:?}");
}

#[test]
fn reports_to_its_own_supervisor() {
    let dir = std::env::temp_dir().join(format!("podvisor-cli-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sock");
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = Command::new(PODVISOR)
        .args(["run", "--", "sleep", "60"])
        .env("NOTIFY_SOCKET", &path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let n = socket.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    assert_eq!(child.wait().unwrap().code(), Some(0));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn json_lines_are_one_object_each() {
    let (code, lines) = status_of(&["run", "--json", "--", "sh", "-c", "exit 0"]);
    assert_eq!(code, 0);
    let events: Vec<&str> = lines
        .iter()
        .map(|l| {
            assert!(l.starts_with('{') && l.ends_with('}'), "{l}");
            l.split("\"event\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap()
        })
        .collect();
    assert_eq!(events, vec!["started", "ready", "exited"]);
}

#[test]
fn killing_podvisor_takes_the_command_down_with_it() {
    let pid_file = std::env::temp_dir().join(format!("podvisor-cli-orphan-{}", std::process::id()));
    let script = format!("echo $$ > {}; echo up; exec sleep 600", pid_file.display());
    let mut run = spawn(&["run", "--ready", "stdout:up", "--", "sh", "-c", &script]);
    run.wait_for("ready after");
    let leader: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SIGKILL: podvisor gets no chance to close anything; the kernel's parent-death
    // signal must take the leader down.
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    assert!(
        gone_within(leader, Duration::from_secs(10)),
        "leader {leader} outlived podvisor"
    );
    std::fs::remove_file(pid_file).unwrap();
}

#[test]
fn check_validates_a_file_without_running_anything() {
    let dir = std::env::temp_dir().join(format!("podvisor-cli-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "[pod.db]\ncommand = [\"sleep\", \"1\"]\n[pod.web]\ncommand = [\"true\"]\ndepends_on = [\"db\"]\n").unwrap();
    let output = Command::new(PODVISOR)
        .args(["check", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("2 pods: db, web"));
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[pod.a]\ncommand = [\"true\"]\ndepends_on = [\"b\"]\n[pod.b]\ncommand = [\"true\"]\ndepends_on = [\"a\"]\n").unwrap();
    let output = Command::new(PODVISOR)
        .args(["check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml:3:14") && stderr.contains("cycle"),
        "{stderr}"
    );
    let missing = Command::new(PODVISOR)
        .args(["check", "/nonexistent/podvisor.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn restart_on_failure_backs_off_then_gives_up_or_recovers() {
    // Gives up: the budget of restarts is spent, the status is the command's.
    let (code, lines) = status_of(&["run", "--restart", "on-failure", "--", "sh", "-c", "exit 3"]);
    assert_eq!(code, 3, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("crash-looping")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("restart #5")), "{lines:?}");

    // Recovers: fails twice, then stays up until SIGINT.
    let counter = std::env::temp_dir().join(format!("podvisor-cli-restart-{}", std::process::id()));
    let _ = std::fs::remove_file(&counter);
    let script = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; [ $n -ge 3 ] && echo up && exec sleep 60; exit 1",
        c = counter.display()
    );
    let mut run = spawn(&[
        "run",
        "--restart",
        "on-failure",
        "--ready",
        "stdout:up",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    run.wait_for("restart #2");
    run.wait_for("ready after");
    run.signal("INT");
    let (code, lines, _) = run.finish();
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "3");
    std::fs::remove_file(counter).unwrap();
}

#[test]
fn with_json_stderr_carries_only_events_and_the_childs_streams_go_to_stdout() {
    let (code, lines, stdout) =
        spawn(&["run", "--json", "--", "sh", "-c", "echo out; echo err >&2"]).finish();
    assert_eq!(code, 0, "{lines:?}");
    assert!(
        lines.iter().all(|l| l.starts_with('{') && l.ends_with('}')),
        "{lines:?}"
    );
    assert!(stdout.contains("out") && stdout.contains("err"), "{stdout}");
}

#[test]
fn stdin_inherit_without_foreground_on_a_terminal_is_refused() {
    // A terminal as podvisor's input: `script` gives it one.
    let output = Command::new("script")
        .args([
            "-qec",
            &format!("exec {PODVISOR} run --stdin inherit -- true"),
        ])
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(125), "{shown}");
    assert!(shown.contains("--foreground"), "{shown}");
}
