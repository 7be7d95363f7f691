//! `podvisor run` under ordinary hostility: a pod that floods, a reader that goes away,
//! signals that arrive twice, bytes that are not lines, a supervisor that was paused.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{spawn, spawn_with};

fn pid_in(lines: &[String]) -> u32 {
    lines
        .iter()
        .find_map(|l| l.split("(pid ").nth(1))
        .and_then(|rest| rest.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no pid in {lines:?}"))
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
}

#[test]
fn a_flooding_command_is_closed_on_sigint() {
    let mut run = spawn_with(&["run", "--grace", "1s", "--", "yes"], Stdio::null());
    run.wait_for("started");
    std::thread::sleep(Duration::from_millis(300));
    run.signal("INT");
    let code = run.exit_within(Duration::from_secs(20));
    assert_eq!(code, 0, "{:?}", run.seen);
    assert!(!alive(pid_in(&run.seen)));
}

#[test]
fn a_closed_stdout_closes_the_command_and_exits_141() {
    let mut run = spawn(&["run", "--", "yes"]);
    let mut out = BufReader::new(run.child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first, "y\n");
    drop(out);
    let code = run.exit_within(Duration::from_secs(20));
    assert_eq!(code, 141, "{:?}", run.seen);
    assert!(!alive(pid_in(&run.seen)));
    assert!(
        run.seen.iter().any(|l| l.contains("stopping")),
        "closed gracefully: {:?}",
        run.seen
    );
}

#[test]
fn output_is_forwarded_byte_for_byte() {
    let (code, lines, stdout) = spawn(&["run", "--", "printf", "a\\r\\nb"]).finish_bytes();
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(stdout, b"a\r\nb");

    // Binary data, long lines, no newline at the end.
    let dir = std::env::temp_dir().join(format!("podvisor-bytes-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("data");
    let mut data = Vec::with_capacity(5_000_000);
    let mut x: u32 = 12345;
    while data.len() < 5_000_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        data.push((x >> 16) as u8);
    }
    std::fs::write(&file, &data).unwrap();
    let (code, lines, stdout) = spawn(&["run", "--", "cat", file.to_str().unwrap()]).finish_bytes();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "{lines:?}");
    assert!(
        stdout == data,
        "{} bytes out of {}",
        stdout.len(),
        data.len()
    );
}

#[test]
fn a_prompt_shows_before_its_newline() {
    let mut run = spawn(&["run", "--", "sh", "-c", "printf 'name? '; exec sleep 60"]);
    let mut out = run.child.stdout.take().unwrap();
    let mut got = [0u8; 6];
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let read = out.read_exact(&mut got).map(|()| got);
        let _ = tx.send(read.ok());
    });
    let prompt = rx.recv_timeout(Duration::from_secs(20));
    run.signal("INT");
    assert_eq!(prompt, Ok(Some(*b"name? ")));
    assert_eq!(run.exit_within(Duration::from_secs(20)), 0);
}

#[test]
fn a_signal_sent_to_podvisor_and_its_group_together_is_one_request() {
    // As `timeout(1)` does: the same SIGTERM twice within microseconds. The command needs
    // a second to stop, well within its grace period: it must not be killed.
    let mut run = spawn(&[
        "run",
        "--grace",
        "10s",
        "--ready",
        "stdout:armed",
        "--",
        "sh",
        "-c",
        "trap 'sleep 1; exit 0' TERM; echo armed; while :; do sleep 0.1; done",
    ]);
    run.wait_for("ready after");
    let pid = run.child.id() as i32;
    // Two deliveries, not one coalesced pending signal: the second comes 20 ms later.
    for gap in [0, 20] {
        std::thread::sleep(Duration::from_millis(gap));
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).unwrap(),
            rustix::process::Signal::TERM,
        )
        .unwrap();
    }
    let code = run.exit_within(Duration::from_secs(30));
    assert!(
        !run.seen
            .iter()
            .any(|l| l.contains("SIGKILL") || l.contains("killed")),
        "{:?}",
        run.seen
    );
    assert_eq!(code, 0, "{:?}", run.seen);
}

#[test]
fn a_deliberate_second_sigint_still_kills_and_says_when() {
    let mut run = spawn(&[
        "run",
        "--grace",
        "60s",
        "--ready",
        "stdout:armed",
        "--",
        "sh",
        "-c",
        "trap '' TERM; echo armed; while :; do sleep 0.1; done",
    ]);
    run.wait_for("ready after");
    let start = Instant::now();
    run.signal("INT");
    run.wait_for("closing on SIGINT");
    std::thread::sleep(Duration::from_millis(300));
    run.signal("INT");
    let code = run.exit_within(Duration::from_secs(30));
    assert_eq!(code, 137, "{:?}", run.seen);
    assert!(start.elapsed() < Duration::from_secs(30));
    // The message gives the time since the stop signal, not the grace period.
    let killing = run
        .seen
        .iter()
        .find(|l| l.contains("SIGKILL"))
        .unwrap_or_else(|| panic!("{:?}", run.seen));
    assert!(!killing.contains("60s"), "{killing}");
}

#[test]
fn a_line_that_arrived_while_podvisor_was_stopped_counts_before_the_deadline() {
    let mut run = spawn(&[
        "run",
        "--ready",
        "stdout:READY",
        "--timeout-ready",
        "2s",
        "--",
        "sh",
        "-c",
        "sleep 0.5; echo READY; exec sleep 60",
    ]);
    run.wait_for("started");
    run.signal("STOP");
    std::thread::sleep(Duration::from_secs(3));
    run.signal("CONT");
    run.wait_for("ready after");
    run.signal("INT");
    let code = run.exit_within(Duration::from_secs(20));
    assert_eq!(code, 0, "{:?}", run.seen);
}

#[test]
fn a_closed_stderr_does_not_crash_podvisor() {
    let mut child = std::process::Command::new(support::PODVISOR)
        .args(["run", "--", "sh", "-c", "sleep 0.5; echo oops >&2; exit 3"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{status:?}");
}

#[test]
fn in_a_deployment_a_flooding_pod_delays_no_other_pods_deadline() {
    let dir = std::env::temp_dir().join(format!("podvisor-flood-up-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("flood.toml");
    std::fs::write(
        &file,
        "[pod.flood]\ncommand = [\"yes\"]\ngrace = \"1s\"\n\n\
         [pod.late]\ncommand = [\"sleep\", \"60\"]\nready = \"notify\"\ntimeout_ready = \"1s\"\n",
    )
    .unwrap();
    let mut up = spawn_with(&["up", file.to_str().unwrap()], Stdio::null());
    let code = up.exit_within(Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 124, "{:?}", up.seen);
    assert!(
        up.seen
            .iter()
            .any(|l| l.contains("late/0 was not ready after 1s")),
        "{:?}",
        up.seen
    );
}

#[test]
fn piped_input_reaches_the_command_as_with_timeout() {
    use std::io::Write;
    for (args, expected) in [
        (&["run", "--", "cat"][..], "hello\n"),
        (&["run", "--stdin", "null", "--", "cat"], ""),
    ] {
        let mut child = std::process::Command::new(support::PODVISOR)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(b"hello\n").unwrap();
        drop(input);
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            expected,
            "{args:?}"
        );
    }
}
