//! `podvisor wait` against real listeners and files: late, never (124), bad checks (125).

mod support;

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use support::{free_port, PODVISOR};

fn wait(args: &[&str]) -> (i32, String) {
    let output = Command::new(PODVISOR)
        .arg("wait")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn waits_for_a_late_listener_and_a_late_file() {
    let port = free_port();
    let file = std::env::temp_dir().join(format!("podvisor-wait-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let later = file.clone();
    let listener = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        std::fs::write(&later, b"").unwrap();
        std::thread::sleep(Duration::from_secs(5));
        drop(listener);
    });
    let (code, stderr) = wait(&[
        "--timeout",
        "30s",
        &format!("tcp:127.0.0.1:{port}"),
        &format!("file:{}", file.display()),
        "exec:true",
    ]);
    assert_eq!(code, 0, "{stderr}");
    listener.join().unwrap();
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_check_that_never_passes_times_out_with_124_naming_it() {
    let port = free_port();
    let (code, stderr) = wait(&["-t", "300ms", &format!("tcp:127.0.0.1:{port}"), "file:/"]);
    assert_eq!(code, 124, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "timed out waiting for a TCP connection to 127.0.0.1:{port}"
        )) && stderr.contains("refused"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "only the failing check: {stderr}"
    );
}

#[test]
fn bad_checks_are_usage_errors() {
    for (args, says) in [
        (&["tcp:80"][..], "wait: check \"tcp:80\""),
        (&["notify"], "is reported by a pod itself"),
        (&["stdout:up"], "is reported by a pod itself"),
        // Only the kinds wait takes are listed, and a misspelt one is named.
        (
            &["tpc:127.0.0.1:1"],
            "unknown kind \"tpc\"; expected tcp:HOST:PORT, http://HOST:PORT/PATH, exec:COMMAND or file:PATH; did you mean tcp:?",
        ),
        (&[], "wait needs at least one CHECK"),
        (&["--timout", "1s", "file:/"], "did you mean --timeout?"),
        (&["--timeout", "soon", "file:/"], "--timeout:"),
    ] {
        let (code, stderr) = wait(args);
        assert_eq!(code, 125, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
