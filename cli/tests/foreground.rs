//! `podvisor run --foreground` under a pseudo-terminal (`script`): the command reads the
//! terminal, and Ctrl-C is its to handle, as if run directly.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::PODVISOR;

/// Runs `podvisor ARGS` on a pseudo-terminal, typing `typed` into it: each piece once the
/// terminal shows its text (`""`: after a pause); returns podvisor's exit status and what
/// the terminal showed.
fn on_a_terminal(args: &str, typed: &[(&str, &[u8])]) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!("podvisor-fg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join(format!("{}.typescript", args.len()));
    let mut child = Command::new("script")
        // `exec`: `script` runs the command through `$SHELL -c`, and a shell that stays
        // as podvisor's parent (dash does) would itself die of the terminal's Ctrl-C.
        .args(["-qfec", &format!("exec {PODVISOR} {args}")])
        .arg(&log)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    for (shown, piece) in typed {
        if shown.is_empty() {
            std::thread::sleep(Duration::from_millis(800));
        } else {
            // `script -f` writes what the terminal shows as it comes.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).contains(shown)
            {
                assert!(
                    Instant::now() < deadline,
                    "the terminal never showed {shown:?}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = input.write_all(piece);
        let _ = input.flush();
    }
    let status = child.wait().unwrap();
    drop(input);
    let shown = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    let code = shown
        .split("COMMAND_EXIT_CODE=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| status.code().unwrap_or(-1));
    (code, shown)
}

#[test]
fn the_command_reads_the_terminal_in_the_foreground_only() {
    let script = "read line; echo \"got [$line]\"";
    let (code, shown) = on_a_terminal(
        &format!("run --foreground -- sh -c '{script}'"),
        &[("", b"hello\n")],
    );
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("got [hello]"), "{shown}");
    // Without it, a terminal is not the command's input.
    let (code, shown) = on_a_terminal(&format!("run -- sh -c '{script}'"), &[("", b"hello\n")]);
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("got []"), "{shown}");
}

#[test]
fn ctrl_c_is_the_commands_to_handle_in_the_foreground() {
    let program = "import time\ntry:\n    print('wait' 'ing', flush=True)\n    time.sleep(30)\nexcept KeyboardInterrupt:\n    print('interrupted', flush=True)\n    time.sleep(0.3)\n    print('still here', flush=True)\n";
    let dir = std::env::temp_dir().join(format!("podvisor-fg-py-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("interactive.py");
    std::fs::write(&file, program).unwrap();
    let (code, shown) = on_a_terminal(
        &format!("run --foreground -- python3 {}", file.display()),
        // Typed once it waits, in the terminal's foreground.
        &[("waiting", b"\x03")],
    );
    // The program went on after Ctrl-C and ended by itself: not closed by podvisor.
    assert!(
        shown.contains("interrupted") && shown.contains("still here"),
        "{shown}"
    );
    assert!(!shown.contains("closing on SIGINT"), "{shown}");
    assert_eq!(code, 0, "{shown}");
}

#[test]
fn in_the_foreground_all_three_streams_are_the_terminal() {
    let script =
        "for fd in 0 1 2; do if [ -t $fd ]; then echo fd$fd=tty; else echo fd$fd=not; fi; done";
    let (code, shown) = on_a_terminal(&format!("run --foreground -- sh -c '{script}'"), &[]);
    assert_eq!(code, 0, "{shown}");
    for fd in 0..3 {
        assert!(shown.contains(&format!("fd{fd}=tty")), "{shown}");
    }
    // An output readiness check needs the pipe: then stdout is one.
    let (code, shown) = on_a_terminal(
        &format!("run --foreground --ready stdout:fd0 -- sh -c '{script}'"),
        &[],
    );
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains("fd1=not") && shown.contains("fd2=tty"),
        "{shown}"
    );
}

#[test]
fn a_terminal_left_raw_is_restored_before_the_line_about_the_end() {
    // The command turns echo off and exits without turning it back on; `stty -a` run
    // after podvisor on the same terminal shows whether it was restored.
    let dir = std::env::temp_dir().join(format!("podvisor-fg-raw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("typescript");
    let status = Command::new("script")
        .args([
            "-qfec",
            &format!("{PODVISOR} run --foreground -- sh -c 'stty -echo; exit 3'; stty -a"),
        ])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.code().is_some());
    let shown = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    assert!(shown.contains("exited (exit code 3)"), "{shown}");
    assert!(
        shown.contains(" echo ") || shown.contains(" echo\r"),
        "{shown}"
    );
    assert!(!shown.contains("-echo "), "{shown}");
}
