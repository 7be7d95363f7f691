//! `podvisor run --serve-health ADDR`: `/readyz` and `/livez` over real HTTP, from the
//! pod's state: before ready, ready, unhealthy and stopping.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use support::{free_port, get, spawn};

fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn readyz_and_livez_follow_the_pod() {
    let dir = std::env::temp_dir().join(format!("podvisor-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ready = dir.join("ready");
    let broken = dir.join("broken");
    let _ = std::fs::remove_file(&ready);
    let _ = std::fs::remove_file(&broken);
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let ready_check = format!("file:{}", ready.display());
    let health_check = format!("exec:test ! -f {}", broken.display());
    let mut run = spawn(&[
        "run",
        "--serve-health",
        &address,
        "--ready",
        &ready_check,
        "--health",
        &health_check,
        "--health-interval",
        "100ms",
        "--health-retries",
        "1",
        "--grace",
        "3s",
        "--",
        "sh",
        "-c",
        "trap '' TERM; sleep 60",
    ]);
    // Started, not ready.
    assert!(eventually(|| get(port, "/livez") == Some(200)));
    assert_eq!(get(port, "/readyz"), Some(503));
    assert_eq!(get(port, "/nope"), Some(404));
    std::fs::write(&ready, b"").unwrap();
    assert!(eventually(|| get(port, "/readyz") == Some(200)));
    // Unhealthy: closed, and it ignores SIGTERM, so it stays stopping for the grace period.
    std::fs::write(&broken, b"").unwrap();
    assert!(eventually(|| get(port, "/readyz") == Some(503)));
    assert_eq!(get(port, "/livez"), Some(503));
    assert_eq!(run.exit_within(Duration::from_secs(30)), 122);
}

#[test]
fn a_bad_or_busy_address_is_a_usage_error() {
    let (code, stderr) = {
        let output = std::process::Command::new(support::PODVISOR)
            .args(["run", "--serve-health", "localhost", "--", "true"])
            .output()
            .unwrap();
        (
            output.status.code().unwrap(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    assert_eq!(code, 125);
    assert!(stderr.contains("expected IP:PORT"), "{stderr}");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = busy.local_addr().unwrap().to_string();
    let output = std::process::Command::new(support::PODVISOR)
        .args(["run", "--serve-health", &address, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot listen"));
}
