//! Config input that must be refused, through the built binary: each is a usage error
//! (125) at `podvisor check` time, before anything runs, with a message that names the
//! place, the key and what was expected. Never a panic, never unbounded reading.

use std::path::PathBuf;
use std::process::{Command, Stdio};

const PODVISOR: &str = env!("CARGO_BIN_EXE_podvisor");

fn dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("podvisor-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// podvisor's exit status, stdout and stderr.
fn podvisor(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(PODVISOR)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output
            .status
            .code()
            .expect("podvisor exits, it is not killed"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `podvisor check` of a file holding `text` must fail with 125 and a message on one line
/// that contains every needle; returns that message.
fn refused(name: &str, text: impl AsRef<[u8]>, needles: &[&str]) -> String {
    let path = write(name, text);
    let (code, stdout, stderr) = podvisor(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 125, "{name}: {stdout}{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{name}: {needle:?} not in {stderr}"
        );
    }
    stderr
}

#[test]
fn durations_under_a_millisecond_are_refused_in_files_and_on_the_command_line() {
    refused(
        "tiny-timeout.toml",
        "[pod.a]\ncommand = [\"true\"]\ntimeout_ready = \"0.0000000001s\"\n",
        &[
            "tiny-timeout.toml:3:17: pod a: key timeout_ready:",
            "smallest duration is 1ms",
        ],
    );
    refused(
        "tiny-grace.toml",
        "[pod.a]\ncommand = [\"true\"]\ngrace = \"0.5ms\"\n",
        &["tiny-grace.toml:3:9: pod a: key grace:", "under 1ms"],
    );
    for args in [
        &["run", "--timeout-ready", "0.0000000001s", "--", "true"][..],
        &["run", "--grace=0.1ms", "--", "true"],
    ] {
        let (code, _, stderr) = podvisor(args);
        assert_eq!(code, 125, "{args:?}: {stderr}");
        assert!(stderr.contains("smallest duration is 1ms"), "{stderr}");
    }
    // An explicit zero keeps its meaning (no limit).
    let (code, _, stderr) = podvisor(&["run", "--timeout-ready", "0s", "--", "true"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn replicas_above_ten_thousand_are_refused_by_check_and_up() {
    let text = "[pod.a]\ncommand = [\"true\"]\nreplicas = 1000000000\n";
    refused(
        "replicas.toml",
        text,
        &[
            "replicas.toml:3:12: pod a: key replicas:",
            "expected a whole number from 1 to 10000, got 1000000000",
        ],
    );
    // `up` refuses it the same way instead of aborting on an allocation failure.
    let path = write("replicas-up.toml", text);
    let (code, _, stderr) = podvisor(&["up", path.to_str().unwrap()]);
    assert_eq!(code, 125, "{stderr}");
    assert!(stderr.contains("from 1 to 10000"), "{stderr}");
}

/// `podvisor check FILE` with its address space limited to 1 GiB, so that reading without
/// a bound ends in an allocation failure rather than in the machine's memory running out.
fn check_with_memory_limit(file: &str) -> (Option<i32>, String) {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(PODVISOR);
    command.args(["check", file]).stdin(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            use rustix::process::{setrlimit, Resource, Rlimit};
            let limit = Some(1 << 30);
            setrlimit(
                Resource::As,
                Rlimit {
                    current: limit,
                    maximum: limit,
                },
            )
            .map_err(std::io::Error::from)
        });
    }
    let output = command.output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_file_over_one_mebibyte_is_refused_without_reading_it_all() {
    // A regular file one byte too long: refused from its size.
    let mut text = String::from("[pod.a]\ncommand = [\"true\"]\n");
    let padding = (1 << 20) - text.len();
    text.push_str(&"#".repeat(padding - 1));
    text.push('\n');
    assert_eq!(text.len(), 1 << 20);
    let exact = write("exact.toml", &text);
    let (code, stdout, stderr) = podvisor(&["check", exact.to_str().unwrap()]);
    assert_eq!(code, 0, "exactly 1 MiB is accepted: {stderr}");
    assert!(stdout.contains(": ok, 1 pod: a"), "{stdout}");
    text.push('\n');
    let message = refused("big.toml", &text, &["big.toml: ", "larger than 1 MiB"]);
    assert!(message.contains("1048576 bytes"), "{message}");
    // Not a regular file, and endless: read with the bound, refused at once.
    let (code, stderr) = check_with_memory_limit("/dev/zero");
    assert_eq!(code, Some(125), "{stderr}");
    assert!(
        stderr.contains("/dev/zero: ") && stderr.contains("larger than 1 MiB"),
        "{stderr}"
    );
}

#[test]
fn a_file_that_is_not_utf8_is_refused_at_the_first_bad_byte() {
    refused(
        "latin1.toml",
        b"[pod.a]\ncommand = [\"caf\xe9\"]\n",
        &["latin1.toml:2:16: ", "not valid UTF-8"],
    );
}

#[test]
fn pod_names_with_terminal_codes_are_refused_and_never_printed_raw() {
    let message = refused(
        "names.toml",
        "[pod.\"web\\u001b[2J\\u001b]0;owned\\u0007\"]\ncommand = [\"true\"]\n",
        &[
            "names.toml:1:1: pod name \"web\\u{1b}[2J\\u{1b}]0;owned\\u{7}\": '\\u{1b}' is not allowed",
            "expected 1 to 63 characters of A-Z, a-z, 0-9, '_', '.' and '-'",
        ],
    );
    assert!(!message.contains('\x1b'), "{message:?}");
    refused(
        "long-name.toml",
        format!("[pod.{}]\ncommand = [\"true\"]\n", "x".repeat(64)),
        &["long-name.toml:1:1: pod name", "has 64 characters"],
    );
    // run --name: the same rule.
    let (code, _, stderr) = podvisor(&["run", "--name", "web\x1b[2J", "--", "true"]);
    assert_eq!(code, 125, "{stderr}");
    assert!(
        stderr.contains("--name: pod name \"web\\u{1b}[2J\": '\\u{1b}' is not allowed")
            && !stderr.contains('\x1b'),
        "{stderr:?}"
    );
    // run without --name: the program's own name, escaped in every message.
    let (code, _, stderr) = podvisor(&["run", "--", "/nonexistent/odd\x1b[2Jname"]);
    assert_eq!(code, 127, "{stderr}");
    assert!(
        stderr.contains("pod odd\\u{1b}[2Jname failed to start") && !stderr.contains('\x1b'),
        "{stderr:?}"
    );
}

#[test]
fn nul_bytes_and_bad_environment_names_are_refused_by_check_and_up() {
    refused(
        "nul.toml",
        "[pod.a]\ncommand = [\"echo\", \"a\\u0000b\"]\n",
        &[
            "nul.toml:2:20: pod a: key command: element 2 contains a NUL byte",
            "expected text without NUL",
        ],
    );
    let text = "[pod.a]\ncommand = [\"true\"]\nenv = { \"A=B\" = \"x\" }\n";
    refused(
        "env-equals.toml",
        text,
        &["env-equals.toml:3:9: pod a: key env: variable name \"A=B\" contains '='"],
    );
    let path = write("env-equals-up.toml", text);
    let (code, _, stderr) = podvisor(&["up", path.to_str().unwrap()]);
    assert_eq!(code, 125, "{stderr}");
    assert!(stderr.contains("contains '='"), "{stderr}");
    refused(
        "env-empty.toml",
        "[pod.a]\ncommand = [\"true\"]\nenv = { \"\" = \"x\" }\n",
        &["env-empty.toml:3:9: pod a: key env: variable name \"\" is empty"],
    );
    refused(
        "env-nul.toml",
        "[pod.a]\ncommand = [\"true\"]\nenv = { A = \"x\\u0000\" }\n",
        &["env-nul.toml:3:13: pod a: key env.A: the value contains a NUL byte"],
    );
    // run --env: the name ends at the first '=', so the value keeps the rest.
    let (code, stdout, stderr) =
        podvisor(&["run", "--env", "A=B=x", "--", "sh", "-c", "echo \"$A\""]);
    assert_eq!((code, stdout.as_str()), (0, "B=x\n"), "{stderr}");
}

#[test]
fn check_of_many_pods_names_the_first_twenty_and_counts_the_rest() {
    let text: String = (0..1000)
        .map(|i| format!("[pod.p{i}]\ncommand = [\"true\"]\n"))
        .collect();
    let path = write("many.toml", &text);
    let (code, stdout, stderr) = podvisor(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.trim_end().ends_with(": ok, 1000 pods: p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15, p16, p17, p18, p19 and 980 more"),
        "{stdout}"
    );
}
