//! Order on a terminal (`script` gives podvisor one): the command's output, forwarded by
//! podvisor's writer threads, comes before podvisor's line about its end.

use std::process::{Command, Stdio};

const PODVISOR: &str = env!("CARGO_BIN_EXE_podvisor");

/// What the terminal showed while `podvisor ARGS` ran on it.
fn on_a_terminal(args: &str) -> String {
    let dir = std::env::temp_dir().join(format!("podvisor-term-order-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = dir.join(format!("{run}.typescript"));
    // `exec`: with SHELL unset, `script` runs dash, which would stay as podvisor's parent.
    let status = Command::new("script")
        .args(["-qfec", &format!("exec {PODVISOR} {args}")])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.code().is_some());
    String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned()
}

#[test]
fn the_commands_output_comes_before_the_line_about_its_end() {
    // Enough lines that the writer thread is still at them when the command exits.
    for _ in 0..3 {
        let shown = on_a_terminal("run -- sh -c 'seq 1 20000; echo last'");
        let end = shown.find("exited (exit code 0)").expect(&shown);
        let last = shown.find("last").expect(&shown);
        assert!(last < end, "{}", &shown[shown.len().saturating_sub(2000)..]);
    }
}

#[test]
fn a_pods_output_comes_before_the_line_about_its_end_in_up() {
    let dir = std::env::temp_dir().join(format!("podvisor-term-order-up-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("order.toml");
    std::fs::write(
        &file,
        "[pod.x]\ncommand = [\"sh\", \"-c\", \"echo one; echo two\"]\n",
    )
    .unwrap();
    for _ in 0..10 {
        let shown = on_a_terminal(&format!("up {}", file.display()));
        // podvisor's lines, not the live status line (`[ended] x/0 ended 0.0s`), which
        // shows the state as it is when drawn.
        let end = shown.find("podvisor: x/0 ended").expect(&shown);
        let two = shown.find("x/0]\x1b[0m two").expect(&shown);
        assert!(two < end, "{shown}");
        // The pod's end is what stops the deployment: its line comes first.
        let stopping = shown.find("podvisor: deployment stopping").expect(&shown);
        assert!(end < stopping, "{shown}");
    }
}

#[test]
fn run_draws_no_status_line() {
    let shown = on_a_terminal("run -- sh -c 'sleep 0.5; echo done'");
    assert!(shown.contains("done"), "{shown}");
    assert!(!shown.contains("[starting]"), "{shown}");
}

#[test]
fn what_the_command_wrote_before_ready_comes_before_the_ready_line() {
    // A burst, then READY=1 at once: the datagram is there before the pipe is read.
    let script = "import os, socket, sys, time; sys.stdout.write((\"y\" * 30 + \"\\n\") * 1500 + \"before ready\\n\"); sys.stdout.flush(); socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b\"READY=1\", os.environ[\"NOTIFY_SOCKET\"]); time.sleep(0.2)";
    for _ in 0..3 {
        let shown = on_a_terminal(&format!("run --ready notify -- python3 -c '{script}'"));
        let ready = shown.find("podvisor: python3 ready after").expect(&shown);
        let before = shown.find("before ready").expect(&shown);
        assert!(
            before < ready,
            "{}",
            &shown[shown.len().saturating_sub(2000)..]
        );
    }
}
