//! End-to-end tests of health after ready in `podvisor run` and `podvisor up`: health
//! checks and the watchdog close a pod as unhealthy (exit status 122, a line that says
//! which check failed and how), `healthy` dependencies, and clear errors for bad settings.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{spawn, PODVISOR};

fn dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "podvisor-cli-health-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn podvisor(args: &[&str]) -> (i32, String) {
    let output = Command::new(PODVISOR)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code().expect("podvisor exits"),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn run_closes_a_command_whose_health_check_fails_and_exits_122() {
    let dir = dir();
    let marker = dir.join("broken");
    let check = format!("exec:test ! -f {}", marker.display());
    let mut run = spawn(&[
        "run",
        "--health",
        &check,
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        "--grace",
        "2s",
        "--",
        "sleep",
        "60",
    ]);
    run.wait_for("healthy");
    std::fs::write(&marker, b"").unwrap();
    let code = run.exit_within(Duration::from_secs(20));
    let (_, lines, _) = run.finish();
    let text = lines.join("\n");
    assert_eq!(code, 122, "{text}");
    assert!(
        text.contains(&format!(
            "sleep unhealthy: health check {check} failed 2 times in a row: `test ! -f"
        )),
        "{text}"
    );
    assert!(text.contains("ended with exit status: 1"), "{text}");
    assert!(
        text.contains(&format!(
            "sleep closed as unhealthy (signal 15): health check {check} failed 2 times"
        )),
        "{text}"
    );
}

#[test]
fn run_closes_a_command_that_stops_pinging_the_watchdog_with_sigabrt() {
    let mut run = spawn(&[
        "run",
        "-r",
        "notify",
        "--watchdog",
        "500ms",
        "--",
        "sh",
        "-c",
        "systemd-notify --ready; systemd-notify WATCHDOG=1; exec sleep 60",
    ]);
    let code = run.exit_within(Duration::from_secs(20));
    let (_, lines, _) = run.finish();
    let text = lines.join("\n");
    assert_eq!(code, 122, "{text}");
    assert!(
        text.contains("unhealthy: no WATCHDOG=1 within the watchdog interval of 500ms"),
        "{text}"
    );
    assert!(
        text.contains("stopping (SIGABRT to its process group"),
        "{text}"
    );
    assert!(text.contains("closed as unhealthy (signal 6)"), "{text}");
}

#[test]
fn bad_health_flags_are_usage_errors() {
    for (args, says) in [
        (
            &["--health-retries", "0"][..],
            "--health-retries \"0\": expected a whole number of at least 1",
        ),
        (
            &["--health-interval", "0"],
            "--health-interval: expected a duration of at least 1ms",
        ),
        (
            &["--watchdog", "0s"],
            "--watchdog: expected a duration of at least 1ms",
        ),
        (&["--health", "notify"], "can only say ready"),
        (&["--health", "tcp:80"], "--health: health check"),
        (&["--helth", "tcp:localhost:1"], "did you mean --health?"),
    ] {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "true"]);
        let (code, stderr) = podvisor(&all);
        assert_eq!(code, 125, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn up_waits_for_a_healthy_dependency_and_check_validates_health_keys() {
    let dir = dir();
    let marker = dir.join("db-healthy");
    let file = dir.join("podvisor.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[pod.db]
command = "sleep 60"
health = "file:{marker}"
health_interval = "100ms"
health_start_period = "1min"

[pod.api]
command = "sleep 60"
depends_on = {{ db = "service_healthy" }}
"#,
            marker = marker.display()
        ),
    )
    .unwrap();
    let (code, stderr) = podvisor(&["check", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let mut up = spawn(&["up", file.to_str().unwrap()]);
    up.wait_for("db/0 ready");
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&marker, b"").unwrap();
    up.wait_for("db/0 healthy");
    up.wait_for("api/0 ready");
    up.signal("INT");
    let code = up.exit_within(Duration::from_secs(20));
    let (_, lines, _) = up.finish();
    let text = lines.join("\n");
    assert_eq!(code, 0, "{text}");
    // api started only after db was healthy.
    let healthy = text.find("db/0 healthy").unwrap();
    let api = text.find("api/0 started").unwrap();
    assert!(healthy < api, "{text}");
}

#[test]
fn up_reports_bad_health_keys_with_their_place() {
    let dir = dir();
    for (body, says) in [
        (
            "health = \"tcp:127.0.0.1:1\"\nhealth_retries = 0\n",
            "key health_retries: 0 is not a count of failures",
        ),
        (
            "health = \"tcp:127.0.0.1:1\"\nhealth_interval = \"0s\"\n",
            "key health_interval: expected a duration of at least 1ms",
        ),
        (
            "watchdog = 0\n",
            "key watchdog: expected a duration of at least 1ms",
        ),
        (
            "health = \"stdout:up\"\n",
            "key health: \"stdout:up\" can only say ready",
        ),
        ("health = \"tcp:nope\"\n", "key health: health check"),
        ("helth = \"tcp:127.0.0.1:1\"\n", "did you mean `health`?"),
        (
            "watchdog_signal = \"NOPE\"\n",
            "key watchdog_signal: unknown signal",
        ),
    ] {
        let file = dir.join("bad.toml");
        std::fs::write(&file, format!("[pod.a]\ncommand = \"sleep 1\"\n{body}")).unwrap();
        let (code, stderr) = podvisor(&["check", file.to_str().unwrap()]);
        assert_eq!(code, 125, "{body}: {stderr}");
        assert!(stderr.contains(says), "{body}: {stderr}");
        let line = 2 + body.lines().count();
        assert!(
            stderr.contains(&format!("bad.toml:{line}:")),
            "{body}: {stderr}"
        );
    }
    let file = dir.join("healthy.toml");
    std::fs::write(
        &file,
        "[pod.db]\ncommand = \"sleep 1\"\n[pod.api]\ncommand = \"sleep 1\"\ndepends_on = { db = \"healthy\" }\n",
    )
    .unwrap();
    let (code, stderr) = podvisor(&["check", file.to_str().unwrap()]);
    assert_eq!(code, 125, "{stderr}");
    assert!(stderr.contains("\"db\" has no health checks"), "{stderr}");
}

#[test]
fn a_bad_health_check_lists_the_health_kinds() {
    let (code, stderr) = podvisor(&["run", "--health", "bogus:x", "--", "true"]);
    assert_eq!(code, 125, "{stderr}");
    assert!(
        stderr.contains("expected tcp:HOST:PORT, http://HOST:PORT/PATH, exec:COMMAND or file:PATH"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("notify") && !stderr.contains("stdout"),
        "{stderr}"
    );
    let dir = dir();
    let file = dir.join("kind.toml");
    std::fs::write(
        &file,
        "[pod.a]\ncommand = \"sleep 1\"\nhealth = \"bogus:x\"\n",
    )
    .unwrap();
    let (code, stderr) = podvisor(&["check", file.to_str().unwrap()]);
    assert_eq!(code, 125, "{stderr}");
    assert!(stderr.contains("exec:COMMAND or file:PATH"), "{stderr}");
    assert!(!stderr.contains("notify"), "{stderr}");
}

#[test]
fn health_successes_is_a_flag_and_a_key() {
    let (code, stderr) = podvisor(&["run", "--health-successes", "0", "--", "true"]);
    assert_eq!(code, 125, "{stderr}");
    assert!(
        stderr.contains("--health-successes \"0\": expected a whole number of at least 1"),
        "{stderr}"
    );
    // Three passes in a row at 100 ms apart: healthy no sooner than 200 ms after ready.
    let mut run = spawn(&[
        "run",
        "--json",
        "--health",
        "exec:true",
        "--health-interval",
        "100ms",
        "--health-successes",
        "3",
        "--",
        "sleep",
        "60",
    ]);
    run.wait_for("\"event\":\"healthy\"");
    run.signal("INT");
    let code = run.exit_within(Duration::from_secs(20));
    let (_, lines, _) = run.finish();
    assert_eq!(code, 0, "{lines:?}");
    let time = |event: &str| -> f64 {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("\"event\":\"{event}\"")))
            .unwrap_or_else(|| panic!("no {event} in {lines:?}"));
        let rest = line.split("\"time\":").nth(1).unwrap();
        rest.split(',').next().unwrap().parse().unwrap()
    };
    assert!(time("healthy") - time("ready") >= 0.2, "{lines:?}");

    let dir = dir();
    let file = dir.join("successes.toml");
    std::fs::write(
        &file,
        "[pod.a]\ncommand = \"sleep 1\"\nhealth = \"exec:true\"\nhealth_successes = 0\n",
    )
    .unwrap();
    let (code, stderr) = podvisor(&["check", file.to_str().unwrap()]);
    assert_eq!(code, 125, "{stderr}");
    assert!(
        stderr.contains("successes.toml:4:20: pod a: key health_successes: 0 is not a count of successes; expected a whole number of at least 1"),
        "{stderr}"
    );
    std::fs::write(
        &file,
        "[pod.a]\ncommand = \"sleep 1\"\nhealth = \"exec:true\"\nhealth_successes = 2\n",
    )
    .unwrap();
    let (code, stderr) = podvisor(&["check", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
}

/// `podvisor`'s standard output for `args` (help texts).
fn help(args: &[&str]) -> String {
    let output = Command::new(PODVISOR)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn help_of_podvisor_and_of_run_lists_every_exit_status() {
    for args in [&["--help"][..], &["run", "--help"], &["help", "run"]] {
        let text = help(args).replace('\n', " ").replace("  ", " ");
        let from = text
            .find("Exit status:")
            .unwrap_or_else(|| panic!("{args:?}: no exit statuses: {text}"));
        let statuses = &text[from..];
        for says in [
            "122 closed as unhealthy",
            "124 readiness timed out",
            "125 podvisor usage error",
            "126/127",
        ] {
            assert!(statuses.contains(says), "{args:?}: {says:?} in {statuses}");
        }
    }
    assert!(help(&["run", "--help"]).contains("--health-successes N"));
}

#[test]
fn tuning_without_its_check_is_an_error() {
    for (args, says) in [
        (
            &["--health-interval", "1s"][..],
            "--health-interval needs a --health check",
        ),
        (
            &["--health-timeout", "1s"],
            "--health-timeout needs a --health check",
        ),
        (
            &["--health-retries", "2"],
            "--health-retries needs a --health check",
        ),
        (
            &["--health-successes", "2"],
            "--health-successes needs a --health check",
        ),
        (
            &["--health-start-period", "1s"],
            "--health-start-period needs a --health check",
        ),
        (
            &["--watchdog-signal", "KILL"],
            "--watchdog-signal needs --watchdog",
        ),
        (
            &["--ready-interval", "1s"],
            "--ready-interval needs a tcp:, http://, file: or exec: --ready check",
        ),
        (
            &["--ready", "notify", "--ready-timeout", "1s"],
            "--ready-timeout needs a tcp:, http://, file: or exec: --ready check",
        ),
    ] {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "true"]);
        let (code, stderr) = podvisor(&all);
        assert_eq!(code, 125, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // With their checks they are taken.
    let (code, stderr) = podvisor(&[
        "run",
        "--ready",
        "exec:true",
        "--ready-interval",
        "10ms",
        "--health",
        "exec:true",
        "--health-interval",
        "1s",
        "--watchdog",
        "10s",
        "--watchdog-signal",
        "TERM",
        "--",
        "sleep",
        "3",
    ]);
    assert_eq!(code, 0, "{stderr}");

    let dir = dir();
    for (body, says) in [
        (
            "health_interval = \"1s\"\n",
            "key health_interval: needs a health check",
        ),
        (
            "health = []\nhealth_retries = 2\n",
            "key health_retries: needs a health check",
        ),
        (
            "watchdog_signal = \"KILL\"\n",
            "key watchdog_signal: needs a watchdog",
        ),
        (
            "ready = \"notify\"\nready_timeout = \"1s\"\n",
            "key ready_timeout: needs a tcp:, http://, file: or exec: ready check",
        ),
    ] {
        let file = dir.join("tuning.toml");
        std::fs::write(&file, format!("[pod.a]\ncommand = \"sleep 1\"\n{body}")).unwrap();
        let (code, stderr) = podvisor(&["check", file.to_str().unwrap()]);
        assert_eq!(code, 125, "{body}: {stderr}");
        assert!(stderr.contains(says), "{body}: {stderr}");
        let line = 2 + body.lines().count();
        assert!(
            stderr.contains(&format!("tuning.toml:{line}:")),
            "{body}: {stderr}"
        );
    }
}

/// A fresh directory only this user can enter, for `up`'s control socket.
fn runtime_dir(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let runtime = dir.join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    runtime
}

/// `podvisor up ARGS` with its control socket under `runtime`.
fn up_in(runtime: &std::path::Path, args: &[&str]) -> support::Running {
    let mut command = Command::new(PODVISOR);
    command
        .arg("up")
        .args(args)
        .env("XDG_RUNTIME_DIR", runtime)
        .env_remove("PODVISOR_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    support::spawn_command(command)
}

/// `podvisor ARGS` as a client of the deployment whose socket is under `runtime`.
fn client(runtime: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(PODVISOR)
        .args(args)
        .env("XDG_RUNTIME_DIR", runtime)
        .env_remove("PODVISOR_SOCKET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn ps_and_the_event_stream_show_the_last_health_failure() {
    let dir = dir();
    let runtime = runtime_dir(&dir);
    let marker = dir.join("hf");
    std::fs::write(&marker, b"").unwrap();
    let file = dir.join("podvisor.toml");
    std::fs::write(
        &file,
        format!(
            "[pod.web]\ncommand = \"sleep 60\"\nhealth = \"file:{}\"\nhealth_interval = \"100ms\"\nhealth_retries = 50\n",
            marker.display()
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let mut up = up_in(&runtime, &["--json", file]);
    up.wait_for("\"event\":\"healthy\"");
    std::fs::remove_file(&marker).unwrap();
    up.wait_for("\"event\":\"health-check-failed\"");
    let failed = up.seen.last().unwrap().clone();
    assert!(
        failed.contains(&format!("\"check\":\"file:{}\"", marker.display())),
        "{failed}"
    );
    assert!(failed.contains("does not exist"), "{failed}");
    assert!(failed.contains("\"failures\":1"), "{failed}");
    let json = client(&runtime, &["ps", "--json", "-f", file]);
    assert!(json.contains("\"health\":\"healthy\""), "{json}");
    assert!(
        json.contains(&format!("\"health_check\":\"file:{}\"", marker.display())),
        "{json}"
    );
    assert!(
        json.contains(&format!(
            "\"health_message\":\"{} does not exist\"",
            marker.display()
        )),
        "{json}"
    );
    assert!(json.contains("\"health_failures\":"), "{json}");
    let table = client(&runtime, &["ps", "-f", file]);
    assert!(table.contains("HEALTH FAILURE"), "{table}");
    assert!(table.contains("does not exist"), "{table}");
    client(&runtime, &["down", "-f", file]);
    assert_eq!(up.exit_within(Duration::from_secs(20)), 0);
}

#[test]
fn the_last_line_names_the_check_that_failed_and_how() {
    let failing = [
        "--health",
        "exec:false",
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        "--",
        "sleep",
        "60",
    ];
    let (code, stderr) = podvisor(&[&["run"][..], &failing].concat());
    assert_eq!(code, 122, "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert_eq!(
        last,
        "podvisor: sleep closed as unhealthy (signal 15): health check exec:false failed 2 times in a row: `false` ended with exit status: 1",
        "{stderr}"
    );
    let (code, stderr) = podvisor(&[&["run", "--json"][..], &failing].concat());
    assert_eq!(code, 122, "{stderr}");
    let last = stderr.lines().last().unwrap();
    for field in [
        "\"event\":\"unhealthy\"",
        "\"status\":143",
        "\"check\":\"exec:false\"",
        "\"failures\":2",
        "\"message\":\"`false` ended with exit status: 1\"",
    ] {
        assert!(last.contains(field), "{field} in {last}");
    }

    let dir = dir();
    let runtime = runtime_dir(&dir);
    let file = dir.join("podvisor.toml");
    std::fs::write(
        &file,
        "[pod.web]\ncommand = \"sleep 60\"\nhealth = \"exec:false\"\nhealth_interval = \"100ms\"\nhealth_retries = 2\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let mut up = up_in(&runtime, &[file]);
    let code = up.exit_within(Duration::from_secs(30));
    let (_, lines, _) = up.finish();
    assert_eq!(code, 122, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains(
            "pod web/0 was unhealthy (health check exec:false failed 2 times in a row: `false` ended with exit status: 1) and was closed (signal 15)"
        )),
        "{lines:?}"
    );
    let mut up = up_in(&runtime, &["--json", file]);
    let code = up.exit_within(Duration::from_secs(30));
    let (_, lines, _) = up.finish();
    assert_eq!(code, 122, "{lines:?}");
    let failed = lines
        .iter()
        .find(|l| l.contains("\"event\":\"failed\""))
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(failed.contains("\"check\":\"exec:false\""), "{failed}");
    assert!(
        failed.contains("\"message\":\"`false` ended with exit status: 1\""),
        "{failed}"
    );
}

#[test]
fn a_file_health_check_sees_the_file_go_at_once() {
    let dir = dir();
    let marker = dir.join("hf");
    std::fs::write(&marker, b"").unwrap();
    let check = format!("file:{}", marker.display());
    // The interval is far longer than the test may take: only the removal itself can
    // bring the next attempt forward.
    let mut run = spawn(&[
        "run",
        "--json",
        "--health",
        &check,
        "--health-interval",
        "10m",
        "--health-retries",
        "1",
        "--",
        "sleep",
        "600",
    ]);
    run.wait_for("\"event\":\"healthy\"");
    std::fs::remove_file(&marker).unwrap();
    let code = run.exit_within(Duration::from_secs(60));
    let (_, lines, _) = run.finish();
    assert_eq!(code, 122, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("does not exist")),
        "{lines:?}"
    );
}
