//! End-to-end tests of `podvisor up`: deployment files run by the built binary.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

const PODVISOR: &str = env!("CARGO_BIN_EXE_podvisor");

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("podvisor-up-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn up(path: &std::path::Path) -> (i32, String, String) {
    let output = Command::new(PODVISOR)
        .args(["up", path.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code().expect("podvisor exits"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
}

fn pids(stderr: &str) -> Vec<u32> {
    stderr
        .lines()
        .filter_map(|l| l.split("(pid ").nth(1))
        .filter_map(|r| r.trim_end_matches(')').parse().ok())
        .collect()
}

#[test]
fn shipped_example_serves_http_and_ends_cleanly() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/podvisor.toml");
    let (code, stdout, stderr) = up(&example);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("[check/0]   hello from podvisor"),
        "{stdout}"
    );
    // A planned end reads as one.
    assert!(
        stderr.contains("deployment finished: check/0 exited with status 0")
            && !stderr.contains("deployment stopped"),
        "{stderr}"
    );
    // prepare succeeded before web started; web was ready before check started. Changes
    // that happen together are reported as the latest state (a member may show "started"
    // without "starting"), so compare each member's first line of activity.
    let line_of = |needle: &str| {
        stderr
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {stderr}"))
    };
    let active = |member: &str| {
        stderr
            .lines()
            .position(|l| l.starts_with(&format!("podvisor: {member} ")) && !l.contains(" waiting"))
            .unwrap_or_else(|| panic!("{member} never ran: {stderr}"))
    };
    assert!(line_of("prepare/0 succeeded") < active("web/0"), "{stderr}");
    assert!(line_of("web/0 ready") < active("check/0"), "{stderr}");
    for pid in pids(&stderr) {
        assert!(!alive(pid), "pid {pid} left running");
    }
}

#[test]
fn a_failing_pod_brings_everything_down_with_its_status() {
    let file = write(
        "failing.toml",
        "[pod.db]\ncommand = [\"sleep\", \"60\"]\n\n[pod.bad]\ncommand = [\"sh\", \"-c\", \"echo config missing >&2; exit 4\"]\nready = \"notify\"\ndepends_on = { db = \"started\" }\n",
    );
    let (code, _, stderr) = up(&file);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("bad/0") && stderr.contains("config missing"),
        "{stderr}"
    );
    for pid in pids(&stderr) {
        assert!(!alive(pid), "pid {pid} left running: {stderr}");
    }
}

#[test]
fn sigint_closes_the_deployment_in_reverse_order() {
    // web marks its stop in a file; db, stopped after it, checks the mark is there.
    let dir = std::env::temp_dir().join(format!("podvisor-up-order-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mark, verdict) = (dir.join("web.stopped"), dir.join("verdict"));
    let _ = std::fs::remove_file(&mark);
    let _ = std::fs::remove_file(&verdict);
    let db = format!(
        "trap 'if [ -e {m} ]; then echo ordered; else echo db-first; fi > {v}; exit 0' TERM; echo up; sleep 60 & wait",
        m = mark.display(),
        v = verdict.display()
    );
    let web = format!(
        "trap 'touch {m}; exit 0' TERM; echo up; sleep 60 & wait",
        m = mark.display()
    );
    let file = write(
        "signal.toml",
        &format!(
            "[pod.db]\ncommand = [\"sh\", \"-c\", {db:?}]\nready = \"stdout:up\"\n\n[pod.web]\ncommand = [\"sh\", \"-c\", {web:?}]\nready = \"stdout:up\"\ndepends_on = [\"db\"]\n"
        ),
    );
    let mut child = Command::new(PODVISOR)
        .args(["up", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            let ready = line.contains("deployment ready");
            lines.push(line);
            if ready {
                break;
            }
        }
    }
    assert!(
        lines.iter().any(|l| l.contains("deployment ready")),
        "{lines:?}"
    );
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
        lines.push(line);
    }
    assert_eq!(status.code(), Some(0), "{lines:?}");
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?}: {lines:?}"))
    };
    at("web/0 ended");
    at("db/0 ended");
    assert_eq!(
        std::fs::read_to_string(&verdict).unwrap().trim(),
        "ordered",
        "{lines:?}"
    );
    for pid in pids(&lines.join("\n")) {
        assert!(!alive(pid), "pid {pid} left running");
    }
}

#[test]
fn config_errors_are_125_with_the_place() {
    let file = write("bad.toml", "[pod.a]\ncommand = [\"true\"]\nreplicas = 0\n");
    let (code, _, stderr) = up(&file);
    assert_eq!(code, 125);
    assert!(
        stderr.contains("bad.toml:3:12") && stderr.contains("replicas"),
        "{stderr}"
    );
    let (code, _, stderr) = up(&PathBuf::from("/nonexistent/podvisor.toml"));
    assert_eq!(code, 125);
    assert!(stderr.contains("cannot read"), "{stderr}");
}

#[test]
fn on_a_terminal_a_live_status_line_shows_each_pod() {
    // `script` gives podvisor a pseudo-terminal for its output.
    let file = write(
        "live.toml",
        "[pod.db]\ncommand = [\"sh\", \"-c\", \"sleep 0.6; echo up; exec sleep 60\"]\nready = \"stdout:up\"\n\n[pod.web]\ncommand = [\"sh\", \"-c\", \"echo up; exit 0\"]\nready = \"stdout:up\"\ndepends_on = [\"db\"]\n",
    );
    let output = Command::new("script")
        .args([
            "-qec",
            &format!("{PODVISOR} up {}", file.display()),
            "/dev/null",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("\x1b[K[starting] db/0 "), "{text:?}");
    assert!(text.contains("web/0 waiting"), "{text:?}");
    // Without a terminal there is no status line at all.
    let (_, _, plain) = up(&file);
    assert!(!plain.contains('\x1b'), "{plain:?}");
}

/// `podvisor up FILE` under a pseudo-terminal (`script`), with `env` added; its raw output.
fn up_on_a_terminal(file: &std::path::Path, env: &[(&str, &str)]) -> String {
    let log = file.with_extension("typescript");
    let mut command = Command::new("script");
    command
        .args(["-qfec", &format!("{PODVISOR} up {}", file.display())])
        .arg(&log)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let status = command.status().unwrap();
    assert!(status.success() || status.code().is_some(), "{status:?}");
    String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned()
}

#[test]
fn on_a_terminal_one_writer_keeps_lines_whole_and_prefixes_coloured_and_aligned() {
    // Lines written while the status line is shown (it is drawn while pods start).
    let file = write(
        "terminal.toml",
        r#"
[pod.db]
command = ["sh", "-c", "for i in 1 2 3 4 5; do echo db: accepting connections $$i; sleep 0.05; done"]
oneshot = true

[pod.worker]
command = ["sh", "-c", "sleep 0.3; echo worker: done"]
depends_on = { db = "succeeded" }
"#,
    );
    let raw = up_on_a_terminal(&file, &[]);
    // The status line was drawn while the lines came, and erased before each of them.
    assert!(raw.contains("\r\x1b[K[starting]"), "{raw:?}");
    for i in 1..=5 {
        let line = format!("\x1b[36m[db/0]\x1b[0m     db: accepting connections {i}\r\n");
        assert!(raw.contains(&line), "{line:?} whole in {raw:?}");
    }
    assert!(
        raw.contains("\x1b[33m[worker/0]\x1b[0m worker: done\r\n"),
        "{raw:?}"
    );
    // No colour with NO_COLOR.
    let raw = up_on_a_terminal(&file, &[("NO_COLOR", "1")]);
    assert!(
        raw.contains("[db/0]     db: accepting connections 3\r\n"),
        "{raw:?}"
    );
    assert!(!raw.contains("\x1b[36m"), "{raw:?}");
}

fn up_json(path: &std::path::Path) -> (i32, String, String) {
    let output = Command::new(PODVISOR)
        .args(["up", "--json", path.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code().expect("podvisor exits"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn with_json_stderr_carries_only_events_and_the_pods_streams_go_to_stdout() {
    let file = write(
        "json-streams.toml",
        "[pod.api]\ncommand = [\"sh\", \"-c\", \"echo some output; echo some error >&2\"]\n",
    );
    let (code, stdout, stderr) = up_json(&file);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr
            .lines()
            .all(|l| l.starts_with('{') && l.ends_with('}')),
        "{stderr}"
    );
    assert!(
        stdout.contains("[api/0] some output") && stdout.contains("[api/0] some error"),
        "{stdout}"
    );
}

#[test]
fn a_readiness_timeout_says_what_it_was_waiting_for() {
    let file = write(
        "ready-timeout.toml",
        "[pod.w]\ncommand = [\"sleep\", \"30\"]\nready = \"file:/nonexistent/podvisor-ready\"\ntimeout_ready = \"1s\"\n",
    );
    let (code, _, stderr) = up(&file);
    assert_eq!(code, 124, "{stderr}");
    assert!(
        stderr.contains("still waiting for file /nonexistent/podvisor-ready"),
        "{stderr}"
    );
    let (_, _, json) = up_json(&file);
    assert!(
        json.lines().any(|l| l.contains("\"event\":\"failed\"")
            && l.contains("\"waiting_for\":\"file /nonexistent/podvisor-ready")),
        "{json}"
    );
}

#[test]
fn a_working_directory_removed_before_the_spawn_is_named() {
    let dir = std::env::temp_dir().join(format!("podvisor-up-gone-{}", std::process::id()));
    let gone = dir.join("gone");
    std::fs::create_dir_all(&gone).unwrap();
    // `rm` removes the directory after the file was checked, before `late` spawns in it.
    let file = write(
        "gone-cwd.toml",
        &format!(
            "[pod.rm]\ncommand = [\"rmdir\", {g:?}]\noneshot = true\n\n[pod.late]\ncommand = [\"sh\", \"-c\", \"true\"]\ncwd = {g:?}\ndepends_on = {{ rm = \"succeeded\" }}\n",
            g = gone.display().to_string()
        ),
    );
    let (code, _, stderr) = up(&file);
    assert_eq!(code, 127, "{stderr}");
    assert!(
        stderr.contains("working directory") && stderr.contains(&gone.display().to_string()),
        "{stderr}"
    );
}
