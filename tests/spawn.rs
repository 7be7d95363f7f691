//! How a child starts, whichever way it is spawned (podvisor's own `clone3` spawn, or the
//! standard library's with `PODVISOR_SPAWN=std`, which CI also runs): signals, standard
//! streams, and the errors of an exec that fails.

mod support;

use std::os::unix::fs::PermissionsExt;

use podvisor::{Input, Output, Pod, PodConfig, StartError};
use support::on_every_executor;

/// The value of `field` (`SigBlk`, `SigIgn`) in `/proc/self/status` lines.
fn mask(lines: &[String], field: &str) -> u64 {
    let line = lines
        .iter()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {lines:?}"));
    u64::from_str_radix(line[field.len() + 1..].trim(), 16).unwrap()
}

/// The child blocks no signal (the spawn blocks them all around the clone, and the child
/// must unblock them), and SIGPIPE is back to its default (a Rust program, as this test is,
/// ignores it, and the ignored disposition would survive exec).
#[test]
fn the_child_starts_with_no_signal_blocked_and_sigpipe_at_its_default() {
    on_every_executor(|| async {
        let pod = Pod::new(
            PodConfig::new("cat")
                .arg("/proc/self/status")
                .stdout(Output::Capture)
                .last_lines(100),
        )
        .unwrap();
        pod.start();
        pod.join().await;
        let lines = pod.last_lines();
        assert_eq!(mask(&lines, "SigBlk"), 0, "{lines:?}");
        let sigpipe = 1 << (13 - 1);
        assert_eq!(mask(&lines, "SigIgn") & sigpipe, 0, "{lines:?}");
    });
}

/// Each standard stream is what was asked: stdin `/dev/null`, stdout a pipe podvisor
/// reads, stderr discarded to `/dev/null`.
#[test]
fn the_childs_streams_are_what_was_asked() {
    on_every_executor(|| async {
        let pod = Pod::new(
            PodConfig::new("sh")
                .args([
                    "-c",
                    "for fd in 0 1 2; do echo \"$fd $(readlink /proc/$$/fd/$fd)\"; done",
                ])
                .stdin(Input::Null)
                .stdout(Output::Capture)
                .stderr(Output::Discard),
        )
        .unwrap();
        pod.start();
        pod.join().await;
        let lines = pod.last_lines();
        assert_eq!(lines[0], "0 /dev/null", "{lines:?}");
        assert!(lines[1].starts_with("1 pipe:"), "{lines:?}");
        assert_eq!(lines[2], "2 /dev/null", "{lines:?}");
    });
}

/// An exec the kernel refuses (a file marked executable that is no program: a binary for
/// another machine, a broken one) is a failed start that says why, and leaves nothing
/// behind. (The standard library's spawn, `PODVISOR_SPAWN=std`, hands such a file to
/// `/bin/sh` instead, as `execvp` does, which runs it as a script.)
#[test]
fn an_exec_the_kernel_refuses_fails_to_start_with_its_reason() {
    if std::env::var_os("PODVISOR_SPAWN").is_some_and(|v| v == "std") {
        return;
    }
    let path = std::env::temp_dir().join(format!("podvisor-not-a-program-{}", std::process::id()));
    std::fs::write(&path, b"\x7fELF this is not a program").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    on_every_executor(|| async {
        let pod = Pod::new(PodConfig::new(&path)).unwrap();
        let error = pod.start_and_wait().await.unwrap_err();
        assert!(
            matches!(error, StartError::FailedToStart { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("Exec format error"), "{error}");
        assert_eq!(pod.join().await, podvisor::End::NeverSpawned);
    });
    std::fs::remove_file(&path).unwrap();
}

/// A working directory that does not exist is a failed start naming it.
#[test]
fn a_missing_working_directory_fails_to_start_naming_it() {
    on_every_executor(|| async {
        let pod = Pod::new(PodConfig::new("true").cwd("/nonexistent/podvisor-cwd")).unwrap();
        let error = pod.start_and_wait().await.unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/podvisor-cwd"),
            "{error}"
        );
    });
}

/// A working directory that is not a directory is a failed start saying so (and naming it,
/// with podvisor's own spawn).
#[test]
fn a_working_directory_that_is_a_file_fails_to_start_saying_so() {
    let path = std::env::temp_dir().join(format!("podvisor-cwd-file-{}", std::process::id()));
    std::fs::write(&path, b"").unwrap();
    let own = std::env::var_os("PODVISOR_SPAWN").is_none_or(|v| v != "std");
    on_every_executor(|| async {
        let pod = Pod::new(PodConfig::new("true").cwd(&path)).unwrap();
        let error = pod.start_and_wait().await.unwrap_err().to_string();
        assert!(error.contains("Not a directory"), "{error}");
        if own {
            assert!(
                error.contains("cannot change to the working directory")
                    && error.contains(&*path.to_string_lossy()),
                "{error}"
            );
        }
    });
    std::fs::remove_file(&path).unwrap();
}

/// The scheduling fields of `/proc/self/sched` a child inherits: its policy, priority
/// (nice value) and time slice.
fn scheduling(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| {
            ["policy", "prio", "se.slice"]
                .iter()
                .any(|f| l.starts_with(f))
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The child is scheduled as one spawned directly: podvisor's own threads ask for a short
/// time slice, which its children must not inherit.
#[test]
fn the_child_is_scheduled_as_a_raw_spawn_is() {
    let raw = std::process::Command::new("cat")
        .arg("/proc/self/sched")
        .output()
        .unwrap();
    let raw: Vec<String> = String::from_utf8_lossy(&raw.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let expected = scheduling(&raw);
    assert!(expected.iter().any(|l| l.starts_with("policy")), "{raw:?}");
    on_every_executor(|| async {
        let pod = Pod::new(
            PodConfig::new("cat")
                .arg("/proc/self/sched")
                .stdout(Output::Capture)
                .last_lines(200),
        )
        .unwrap();
        pod.start();
        pod.join().await;
        assert_eq!(scheduling(&pod.last_lines()), expected);
    });
}
