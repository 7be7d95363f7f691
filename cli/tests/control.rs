//! End-to-end tests of `podvisor up`'s control socket and the commands that use it: `ps`,
//! `logs`, `events`, `down`, `stop`/`start`/`restart`, run by the built binary.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{Running, PODVISOR};

/// A fresh directory of this test's own, with mode 0700.
fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pv-ctl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

const DEPLOYMENT: &str = r#"
[pod.db]
command = ["sh", "-c", "echo db one; echo db two; exec sleep 300"]

[pod.web]
command = ["sh", "-c", "for i in 1 2 3; do echo web $$i; done; exec sleep 300"]
depends_on = ["db"]
"#;

fn write_file(dir: &Path) -> PathBuf {
    let file = dir.join("podvisor.toml");
    std::fs::write(&file, DEPLOYMENT).unwrap();
    file
}

/// `podvisor up ARGS` with `XDG_RUNTIME_DIR` set to `runtime`, waited for until ready.
fn up(runtime: &Path, args: &[&str]) -> Running {
    let mut command = Command::new(PODVISOR);
    command
        .arg("up")
        .args(args)
        .env("XDG_RUNTIME_DIR", runtime)
        .env_remove("PODVISOR_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut running = support::spawn_command(command);
    running.wait_for("deployment ready");
    running
}

/// `podvisor ARGS` as a client, to its end.
/// A client that follows (`events -f`, `logs --follow`), once it is attached.
fn follower(runtime: &Path, args: &[&str]) -> support::Follower {
    let mut command = Command::new(PODVISOR);
    command
        .args(args)
        .env("XDG_RUNTIME_DIR", runtime)
        .env_remove("PODVISOR_SOCKET");
    let mut client = support::Follower::spawn(command);
    client.attached();
    client
}

fn client(runtime: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(PODVISOR)
        .args(args)
        .env("XDG_RUNTIME_DIR", runtime)
        .env_remove("PODVISOR_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Generous: a client must end by itself, but the machine may be slow.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("podvisor {args:?} hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> (i32, String, String) {
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
}

fn sockets_in(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn ps_logs_events_and_down_through_the_default_socket() {
    let runtime = dir("main");
    let file = write_file(&runtime);
    let f = file.to_str().unwrap();
    let mut running = up(&runtime, &[f]);
    // The socket is in a private directory of the runtime directory.
    let private = runtime.join("podvisor");
    let mode = std::fs::metadata(&private).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(sockets_in(&private).len(), 1);

    let (code, stdout, stderr) = text(&client(&runtime, &["ps", "-f", f]));
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<&str> = stdout.lines().collect();
    assert!(
        rows[0].starts_with("NAME") && rows[0].contains("LAST EXIT"),
        "{stdout}"
    );
    assert!(
        rows[1].starts_with("db/0") && rows[1].contains("ready"),
        "{stdout}"
    );
    assert!(rows[2].starts_with("web/0"), "{stdout}");

    let (code, stdout, stderr) = text(&client(&runtime, &["ps", "--json", "--file", f]));
    assert_eq!(code, 0, "{stderr}");
    let pids: Vec<u32> = stdout
        .lines()
        .map(|l| {
            for key in [
                "\"state\":\"ready\"",
                "\"health\":null",
                "\"uptime\":",
                "\"restarts\":0",
                "\"last_exit\":null",
            ] {
                assert!(l.contains(key), "{key} in {l}");
            }
            l.split("\"pid\":")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(pids.len(), 2, "{stdout}");
    assert!(stdout.starts_with("{\"name\":\"db/0\""), "{stdout}");

    // The lines are read after ready: wait until the last one is in.
    let mut logs = String::new();
    for _ in 0..200 {
        logs = text(&client(&runtime, &["logs", "--file", f])).1;
        if logs.contains("web 3") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        logs.contains("[db/0] db one\n") && logs.contains("[web/0] web 3\n"),
        "{logs}"
    );
    let (code, stdout, _) = text(&client(
        &runtime,
        &["logs", "web", "--tail", "2", "--file", f],
    ));
    assert_eq!(
        (code, stdout.as_str()),
        (0, "[web/0] web 2\n[web/0] web 3\n")
    );
    let (code, stdout, _) = text(&client(
        &runtime,
        &["logs", "db/0", "--tail=1", "--file", f],
    ));
    assert_eq!((code, stdout.as_str()), (0, "[db/0] db two\n"));

    // Unknown names are clear errors.
    let (code, _, stderr) = text(&client(&runtime, &["logs", "webb", "--file", f]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("unknown member \"webb\"; did you mean web?")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    for action in ["stop", "start", "restart"] {
        let (code, _, stderr) = text(&client(&runtime, &[action, "nope", "-f", f]));
        assert_eq!(code, 1);
        assert!(stderr.contains("unknown member \"nope\""), "{stderr}");
    }

    // Members stopped, started and restarted: web depends on db.
    let states = |runtime: &Path| {
        let (_, stdout, _) = text(&client(runtime, &["ps", "--json", "-f", f]));
        stdout
            .lines()
            .map(|l| {
                let state = l.split("\"state\":\"").nth(1).unwrap_or("");
                state.split('"').next().unwrap_or("").to_string()
            })
            .collect::<Vec<_>>()
    };
    let wait_states = |runtime: &Path, want: [&str; 2]| {
        for _ in 0..400 {
            if states(runtime) == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("states {:?}, expected {want:?}", states(runtime));
    };
    let (code, _, stderr) = text(&client(&runtime, &["stop", "db", "-f", f]));
    assert_eq!(
        (code, stderr.as_str()),
        (
            0,
            "podvisor stop: db/0 stopping\npodvisor stop: web/0 stopping (depends on db/0)\n"
        )
    );
    // With its dependent, which went first.
    wait_states(&runtime, ["stopped", "stopped"]);
    let (code, _, stderr) = text(&client(&runtime, &["stop", "db/0", "-f", f]));
    assert_eq!(
        (code, stderr.as_str()),
        (0, "podvisor stop: db/0 already stopped\n")
    );
    let (code, _, stderr) = text(&client(&runtime, &["start", "db", "web", "-f", f]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("db/0 starting") && stderr.contains("web/0 starting"),
        "{stderr}"
    );
    wait_states(&runtime, ["ready", "ready"]);
    let (code, _, stderr) = text(&client(&runtime, &["start", "web", "-f", f]));
    assert_eq!(
        (code, stderr.as_str()),
        (0, "podvisor start: web/0 already running\n")
    );
    let (code, _, stderr) = text(&client(&runtime, &["stop", "--no-deps", "db", "-f", f]));
    assert_eq!(code, 0, "{stderr}");
    wait_states(&runtime, ["stopped", "ready"]);
    let (code, _, stderr) = text(&client(&runtime, &["restart", "db", "-f", f]));
    assert_eq!(
        (code, stderr.as_str()),
        (
            0,
            "podvisor restart: db/0 restarting\npodvisor restart: web/0 restarting (depends on db/0)\n"
        )
    );
    wait_states(&runtime, ["ready", "ready"]);

    // Events and a following `logs` run until the deployment ends.
    let events = follower(&runtime, &["events", "-f", f]);
    let events_json = follower(&runtime, &["events", "--json", "-f", f]);
    let follow = follower(
        &runtime,
        &["logs", "--follow", "--tail", "1", "db", "--file", f],
    );

    let (code, _, stderr) = text(&client(&runtime, &["down", "-f", f]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("down"), "{stderr}");
    assert_eq!(
        running.exit_within(Duration::from_secs(60)),
        0,
        "{:?}",
        running.seen
    );
    assert!(running
        .seen
        .iter()
        .any(|l| l.contains("asked by podvisor down")));
    for pid in pids {
        assert!(!alive(pid), "pod {pid} still runs");
    }
    assert!(sockets_in(&private).is_empty(), "the socket is removed");

    let (code, stdout) = events.finish();
    assert_eq!(code, 0);
    assert!(stdout.contains("podvisor: db/0 started (pid "), "{stdout}");
    assert!(stdout.contains("podvisor: deployment stopping"), "{stdout}");
    let (code, stdout) = events_json.finish();
    assert_eq!(code, 0);
    assert!(
        stdout.lines().all(|l| l.starts_with("{\"time\":"))
            && stdout.contains("\"pod\":\"web/0\",\"event\":\"ready\""),
        "{stdout}"
    );
    let (code, stdout) = follow.finish();
    assert_eq!((code, stdout.as_str()), (0, "[db/0] db two\n"));

    // Nothing runs any more: one clear line, no hang.
    let (code, _, stderr) = text(&client(&runtime, &["ps", "-f", f]));
    assert_eq!(code, 3);
    assert!(stderr.contains("no running deployment of"), "{stderr}");
    let _ = std::fs::remove_dir_all(&runtime);
}

#[test]
fn a_stale_socket_is_replaced_and_a_second_up_is_refused() {
    let runtime = dir("stale");
    let file = write_file(&runtime);
    let f = file.to_str().unwrap();
    let socket = runtime.join("ctl.sock");
    let s = socket.to_str().unwrap();
    // The socket of an `up` that died: the file is there, nobody listens.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let mut first = up(&runtime, &["--socket", s, f]);

    // A second `up` of the same socket is refused and leaves the first alone.
    let second = Command::new(PODVISOR)
        .args(["up", "--socket", s, f])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("this deployment is already up"), "{stderr}");
    assert!(!stderr.contains("started"), "nothing was started: {stderr}");
    assert!(socket.exists());

    // PODVISOR_SOCKET works as --socket.
    let output = Command::new(PODVISOR)
        .args(["ps"])
        .env("PODVISOR_SOCKET", s)
        .current_dir("/")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("web/0"));
    let (code, _, stderr) = text(&client(&runtime, &["down", "--socket", s]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first.exit_within(Duration::from_secs(60)), 0);
    assert!(!socket.exists());
    // Nor is its lock file left behind.
    assert!(!runtime.join("ctl.sock.lock").exists());

    // A path that is not a socket is never replaced.
    std::fs::write(&socket, "precious").unwrap();
    let refused = Command::new(PODVISOR)
        .args(["up", "--socket", s, f])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not a socket"));
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "precious");
    let _ = std::fs::remove_dir_all(&runtime);
}

#[test]
fn a_socket_directory_others_can_enter_is_refused() {
    let runtime = dir("mode");
    let file = write_file(&runtime);
    let f = file.to_str().unwrap();
    let private = runtime.join("podvisor");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = Command::new(PODVISOR)
        .args(["up", f])
        .env("XDG_RUNTIME_DIR", &runtime)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains("has unsafe permissions") && stderr.contains("mode 0755"),
        "{stderr}"
    );
    assert!(!stderr.contains("started"), "{stderr}");
    let (code, _, stderr) = text(&client(&runtime, &["ps", "-f", f]));
    assert_eq!(code, 3);
    assert!(stderr.contains("has unsafe permissions"), "{stderr}");
    // Not a directory at all.
    std::fs::remove_dir(&private).unwrap();
    std::os::unix::fs::symlink("/tmp", &private).unwrap();
    let (code, _, stderr) = text(&client(&runtime, &["ps", "-f", f]));
    assert_eq!(code, 3);
    assert!(stderr.contains("is not a directory"), "{stderr}");
    let _ = std::fs::remove_dir_all(&runtime);
}

#[test]
fn without_a_deployment_clients_say_so() {
    let runtime = dir("none");
    let (code, _, stderr) = text(&client(
        &runtime,
        &["ps", "--socket", "/nonexistent/ctl.sock"],
    ));
    assert_eq!(code, 3);
    assert!(
        stderr.contains("no running deployment") && stderr.lines().count() == 1,
        "{stderr}"
    );
    let output = Command::new(PODVISOR)
        .args(["logs"])
        .env_remove("PODVISOR_SOCKET")
        .current_dir(&runtime)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no deployment file podvisor.toml here")
    );
    let _ = std::fs::remove_dir_all(&runtime);
}

fn answer(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line
}

#[test]
fn bad_and_oversized_request_lines_are_answered_with_errors() {
    let runtime = dir("bad");
    let file = write_file(&runtime);
    let socket = runtime.join("ctl.sock");
    let mut running = up(
        &runtime,
        &["--socket", socket.to_str().unwrap(), file.to_str().unwrap()],
    );
    let stream = UnixStream::connect(&socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for (request, needle) in [
        (
            "hello",
            "\"error\":\"bad request: expected a JSON value at byte 0\"",
        ),
        ("{\"cmd\":\"ps\"}", "missing \\\"v\\\""),
        ("{\"v\":2,\"cmd\":\"ps\"}", "unsupported protocol version 2"),
        ("{\"v\":1,\"cmd\":\"frob\"}", "unknown command \\\"frob\\\""),
        (
            "{\"v\":1,\"cmd\":\"logs\",\"tail\":\"x\"}",
            "\\\"tail\\\" must be",
        ),
    ] {
        writer.write_all(format!("{request}\n").as_bytes()).unwrap();
        let line = answer(&mut reader);
        assert!(line.starts_with("{\"v\":1,\"ok\":false,"), "{line}");
        assert!(line.contains(needle), "{request}: {line}");
    }
    // The connection still serves good requests.
    writer.write_all(b"{\"v\":1,\"cmd\":\"ps\"}\n").unwrap();
    let line = answer(&mut reader);
    assert!(
        line.starts_with(
            "{\"v\":1,\"ok\":true,\"state\":\"ready\",\"members\":[{\"name\":\"db/0\""
        ),
        "{line}"
    );
    // Too long: an error, then the connection is closed.
    let _ = writer.write_all(&vec![b'x'; 70 * 1024]);
    let line = answer(&mut reader);
    assert!(
        line.contains("request line longer than 65536 bytes"),
        "{line}"
    );
    let mut rest = String::new();
    let _ = reader.read_to_string(&mut rest);
    assert_eq!(rest, "");
    // The deployment did not notice.
    let (code, _, _) = text(&client(
        &runtime,
        &["ps", "--socket", socket.to_str().unwrap()],
    ));
    assert_eq!(code, 0);
    running.signal("TERM");
    assert_eq!(running.exit_within(Duration::from_secs(60)), 0);
    let _ = std::fs::remove_dir_all(&runtime);
}

#[test]
fn another_user_is_refused_although_the_socket_lets_them_connect() {
    if rustix_uid() != 0 {
        eprintln!("skipped: needs root to run a client as another user");
        return;
    }
    let runtime = dir("peer");
    // A directory anyone may enter, a socket anyone may connect to.
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = write_file(&runtime);
    let socket = runtime.join("ctl.sock");
    let s = socket.to_str().unwrap();
    let mut running = up(&runtime, &["--socket", s, file.to_str().unwrap()]);
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    for action in [&["ps", "--socket", s][..], &["down", "--socket", s]] {
        let output = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", PODVISOR])
            .args(action)
            .stdin(Stdio::null())
            .output()
            .expect("setpriv (util-linux) runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("permission denied") && stderr.contains("uid 65534"),
            "{stderr}"
        );
        assert!(output.stdout.is_empty());
    }
    // Still up, still ours.
    let (code, _, _) = text(&client(&runtime, &["ps", "--socket", s]));
    assert_eq!(code, 0);
    let (code, _, _) = text(&client(&runtime, &["down", "--socket", s]));
    assert_eq!(code, 0);
    assert_eq!(running.exit_within(Duration::from_secs(60)), 0);
    let _ = std::fs::remove_dir_all(&runtime);
}

fn rustix_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())
        .unwrap()
}

#[test]
fn a_client_that_stops_reading_gets_a_lag_marker_and_never_stalls_up() {
    use std::io::{BufRead, BufReader, Write as _};
    let runtime = dir("lag");
    let file = runtime.join("podvisor.toml");
    // A pod that writes a burst of lines once the test has started not reading.
    let marker = runtime.join("go");
    std::fs::write(
        &file,
        format!(
            r#"
[pod.chatty]
command = ["sh", "-c", "while [ ! -e {go} ]; do sleep 0.05; done; seq 1 200000; echo last-line; exec sleep 300"]
"#,
            go = marker.display()
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let mut running = up(&runtime, &[f]);
    let socket = sockets_in(&runtime.join("podvisor")).pop().unwrap();
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    stream
        .write_all(b"{\"v\":1,\"cmd\":\"logs\",\"follow\":true}\n")
        .unwrap();
    // Its first answer (byte by byte, so that nothing after it is taken): it follows now.
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while first.last() != Some(&b'\n') {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "{first:?}");
        first.push(byte[0]);
    }
    assert!(first.starts_with(b"{\"v\":1,\"ok\":true"), "{first:?}");
    std::fs::write(&marker, b"").unwrap();
    // Not reading while the burst comes; up goes on answering others meanwhile.
    let mut answered = false;
    for _ in 0..100 {
        let (code, _, stderr) = text(&client(
            &runtime,
            &["logs", "chatty", "--tail", "1", "--file", f],
        ));
        assert_eq!(code, 0, "{stderr}");
        let (_, stdout, _) = text(&client(
            &runtime,
            &["logs", "chatty", "--tail", "1", "--file", f],
        ));
        if stdout.contains("last-line") {
            answered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        answered,
        "up never took in the burst while a client did not read"
    );
    // Now read: some lines were dropped for this client, and it was told so (the last
    // line may be among them: reading ends at a pause).
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut lagged = false;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line.contains("\"event\":\"lagged\"") && line.contains("\"missed\":") {
            lagged = true;
        }
        if line.contains("last-line") {
            break;
        }
        line.clear();
    }
    assert!(lagged, "no lag marker");
    running.signal("TERM");
    assert_eq!(running.exit_within(Duration::from_secs(30)), 0);
}

/// The value of `key` in a one-line JSON object, as written (`"ready"`, `137`, `null`).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let rest = line
        .split(&format!("\"{key}\":"))
        .nth(1)
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    &rest[..end]
}

/// `ps --json`'s row of `name`.
fn ps_row(runtime: &Path, args: &[&str], name: &str) -> String {
    let mut command = vec!["ps", "--json"];
    command.extend(args);
    let (code, stdout, stderr) = text(&client(runtime, &command));
    assert_eq!(code, 0, "{stderr}");
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{{\"name\":\"{name}\"")))
        .unwrap_or_else(|| panic!("no {name} in {stdout}"))
        .to_string()
}

/// Waits (generously) until `name`'s `ps --json` row satisfies `want`; returns it.
fn wait_row(runtime: &Path, args: &[&str], name: &str, want: &dyn Fn(&str) -> bool) -> String {
    let mut row = String::new();
    for _ in 0..800 {
        row = ps_row(runtime, args, name);
        if want(&row) {
            return row;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{name} never got there; last row {row}");
}

const CHAIN: &str = r#"
[pod.db]
command = ["sh", "-c", "echo db one; echo db two; echo db three; exec sleep 300"]

[pod.web]
command = ["sh", "-c", "echo web one; echo web two; echo web three; exec sleep 300"]
depends_on = ["db"]

[pod.worker]
command = ["sh", "-c", "echo worker one; echo worker two; echo worker three; exec sleep 300"]
depends_on = ["web"]

[pod.crash]
command = ["sleep", "300"]
restart = "on-failure"
"#;

#[test]
fn restarts_last_exits_stops_and_tails_as_compose_and_docker_show_them() {
    let runtime = dir("chain");
    let file = runtime.join("podvisor.toml");
    std::fs::write(&file, CHAIN).unwrap();
    let f = file.to_str().unwrap();
    let mut running = up(&runtime, &[f]);
    let file_args = ["-f", f];

    // `--tail N` is per member, as `docker compose logs --tail`.
    let all_in = || {
        let logs = text(&client(&runtime, &["logs", "--file", f])).1;
        ["db three", "web three", "worker three"]
            .iter()
            .all(|l| logs.contains(l))
    };
    for _ in 0..400 {
        if all_in() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let (code, stdout, _) = text(&client(&runtime, &["logs", "--tail", "2", "--file", f]));
    assert_eq!(code, 0);
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "[db/0] db three",
            "[db/0] db two",
            "[web/0] web three",
            "[web/0] web two",
            "[worker/0] worker three",
            "[worker/0] worker two",
        ],
        "{stdout}"
    );

    // A crash restarted by its policy: counted, and its exit kept while it runs again.
    let row = ps_row(&runtime, &file_args, "crash/0");
    let pid = field(&row, "pid").to_string();
    assert!(Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap()
        .success());
    let row = wait_row(&runtime, &file_args, "crash/0", &|r| {
        field(r, "state") == "\"ready\"" && field(r, "pid") != pid
    });
    assert_eq!(
        (field(&row, "restarts"), field(&row, "last_exit")),
        ("1", "137"),
        "{row}"
    );
    let (_, table, _) = text(&client(&runtime, &["ps", "-f", f]));
    let crash = table.lines().find(|l| l.starts_with("crash/0")).unwrap();
    let cells: Vec<&str> = crash.split_whitespace().collect();
    // RESTARTS and LAST EXIT, before HEALTH FAILURE (`-`: it has no health checks).
    assert_eq!(cells[cells.len() - 3..], ["1", "137", "-"], "{table}");
    // Restarts on request are not the policy's.
    for _ in 0..2 {
        let pid = field(&ps_row(&runtime, &file_args, "crash/0"), "pid").to_string();
        let (code, _, stderr) = text(&client(&runtime, &["restart", "crash", "-f", f]));
        assert_eq!(code, 0, "{stderr}");
        wait_row(&runtime, &file_args, "crash/0", &|r| {
            field(r, "state") == "\"ready\"" && field(r, "pid") != pid
        });
    }
    let row = ps_row(&runtime, &file_args, "crash/0");
    assert_eq!(
        (field(&row, "restarts"), field(&row, "last_exit")),
        ("1", "143"),
        "{row}"
    );

    // A stop says which dependents it takes down too.
    let (code, _, stderr) = text(&client(&runtime, &["stop", "web/0", "-f", f]));
    assert_eq!(
        (code, stderr.as_str()),
        (
            0,
            "podvisor stop: web/0 stopping\npodvisor stop: worker/0 stopping (depends on web/0)\n"
        )
    );
    for name in ["worker/0", "web/0"] {
        wait_row(&runtime, &file_args, name, &|r| {
            field(r, "state") == "\"stopped\""
        });
    }
    let (code, _, stderr) = text(&client(&runtime, &["start", "web/0", "-f", f]));
    assert_eq!(
        (code, stderr.as_str()),
        (0, "podvisor start: web/0 starting\n")
    );
    let row = wait_row(&runtime, &file_args, "web/0", &|r| {
        field(r, "state") == "\"ready\""
    });
    assert_eq!(
        (field(&row, "restarts"), field(&row, "last_exit")),
        ("0", "143"),
        "{row}"
    );
    // A restart likewise; worker/0, stopped on request, stays stopped.
    let (code, _, stderr) = text(&client(&runtime, &["restart", "db", "-f", f]));
    assert_eq!(
        (code, stderr.as_str()),
        (
            0,
            "podvisor restart: db/0 restarting\npodvisor restart: web/0 restarting (depends on db/0)\n"
        )
    );
    for name in ["db/0", "web/0"] {
        wait_row(&runtime, &file_args, name, &|r| {
            field(r, "state") == "\"ready\"" && field(r, "last_exit") == "143"
        });
    }
    assert_eq!(
        field(&ps_row(&runtime, &file_args, "worker/0"), "state"),
        "\"stopped\""
    );
    // A misspelt name gets a suggestion, transposed letters too.
    let (code, _, stderr) = text(&client(&runtime, &["stop", "wbe", "-f", f]));
    assert_eq!(code, 1);
    assert!(stderr.contains("did you mean web?"), "{stderr}");
    // The file (and the socket) may come before the command, as compose's -f.
    let (code, stdout, stderr) = text(&client(&runtime, &["--file", f, "ps"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("worker/0"), "{stdout}");
    let (code, stdout, stderr) = text(&client(&runtime, &["-f", f, "ps", "--json"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("{\"name\":\"db/0\""), "{stdout}");
    let socket = sockets_in(&runtime.join("podvisor")).pop().unwrap();
    let (code, _, stderr) = text(&client(
        &runtime,
        &[
            "--socket",
            socket.to_str().unwrap(),
            "logs",
            "db",
            "--tail",
            "1",
        ],
    ));
    assert_eq!(code, 0, "{stderr}");

    // The event stream: each stop on request ends in `stopped` with its status, the
    // dependent's before its dependency's; the stream ends with the deployment's end.
    let events = follower(&runtime, &["events", "-f", f]);
    let events_json = follower(&runtime, &["events", "--json", "-f", f]);
    let (code, _, stderr) = text(&client(&runtime, &["down", "-f", f]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(running.exit_within(Duration::from_secs(60)), 0);
    let (code, stdout) = events_json.finish();
    assert_eq!(code, 0);
    let position = |needle: &str| {
        stdout
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle} in {stdout}"))
    };
    let worker = position("\"pod\":\"worker/0\",\"event\":\"stopped\",\"status\":143");
    let web = position("\"pod\":\"web/0\",\"event\":\"stopped\",\"status\":143");
    assert!(worker < web, "{stdout}");
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|l| l.contains("\"pod\":\"deployment\",\"event\":\"ended\",\"status\":0")),
        "{stdout}"
    );
    let times: Vec<f64> = stdout
        .lines()
        .map(|l| field(l, "time").parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{stdout}");
    let (code, stdout) = events.finish();
    assert_eq!(code, 0);
    assert!(
        stdout.contains("podvisor: web/0 stopped (signal 15)\n"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("podvisor: deployment ended (exit status 0)\n"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&runtime);
}

#[test]
fn a_failed_deployment_ends_its_event_stream_in_order() {
    let runtime = dir("failed");
    let file = runtime.join("podvisor.toml");
    let go = runtime.join("go");
    std::fs::write(
        &file,
        format!(
            r#"
[pod.fine]
command = ["sleep", "300"]
replicas = 20

[pod.bad]
command = ["sh", "-c", "while [ ! -e {go} ]; do sleep 0.02; done; exit 3"]
"#,
            go = go.display()
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let mut command = Command::new(PODVISOR);
    command
        .args(["up", "--json", f])
        .env("XDG_RUNTIME_DIR", &runtime)
        .env_remove("PODVISOR_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut running = support::spawn_command(command);
    running.wait_for("\"pod\":\"deployment\",\"event\":\"ready\"");
    // The client is attached once its first line is out.
    let events = follower(&runtime, &["events", "--json", "-f", f]);
    std::fs::write(&go, b"").unwrap();
    assert_eq!(running.exit_within(Duration::from_secs(60)), 3);
    let check = |lines: &[String], what: &str| {
        let times: Vec<f64> = lines
            .iter()
            .map(|l| field(l, "time").parse().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{what}: {lines:?}");
        let failed = lines
            .iter()
            .position(|l| l.contains("\"event\":\"failed\""))
            .unwrap_or_else(|| panic!("{what}: no failed in {lines:?}"));
        assert!(
            lines[failed].contains("\"pod\":\"bad/0\"") && lines[failed].contains("\"error\":"),
            "{what}: {lines:?}"
        );
        assert_eq!(failed + 2, lines.len(), "{what}: {lines:?}");
        assert!(
            lines[failed + 1].contains("\"pod\":\"deployment\",\"event\":\"ended\",\"status\":3"),
            "{what}: {lines:?}"
        );
    };
    let up_lines: Vec<String> = running
        .seen
        .iter()
        .filter(|l| l.starts_with('{'))
        .cloned()
        .collect();
    check(&up_lines, "up --json");
    let (code, stdout) = events.finish();
    assert_eq!(code, 0);
    let lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    check(&lines, "events --json");
    let _ = std::fs::remove_dir_all(&runtime);
}

#[test]
fn clients_name_what_is_wrong_with_the_socket() {
    let runtime = dir("wrong");
    // A path that is not a socket.
    let regular = runtime.join("plain");
    std::fs::write(&regular, "").unwrap();
    let (code, _, stderr) = text(&client(
        &runtime,
        &["ps", "--socket", regular.to_str().unwrap()],
    ));
    assert_eq!(code, 3);
    assert!(stderr.contains("is not a socket"), "{stderr}");
    assert!(!stderr.contains("stale"), "{stderr}");
    // PODVISOR_SOCKET without a deployment file: the socket is named, not the file.
    let output = Command::new(PODVISOR)
        .args(["ps"])
        .env("PODVISOR_SOCKET", "/nonexistent/ctl.sock")
        .current_dir(&runtime)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/ctl.sock") && !stderr.contains("podvisor.toml"),
        "{stderr}"
    );
    // A socket this user may not open: permission denied is status 1, as the README says.
    let private = runtime.join("private");
    std::fs::create_dir(&private).unwrap();
    let socket = private.join("ctl.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let s = socket.to_str().unwrap();
    let output = if rustix_uid() == 0 {
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", PODVISOR])
            .args(["ps", "--socket", s])
            .stdin(Stdio::null())
            .output()
            .expect("setpriv (util-linux) runs")
    } else {
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o000)).unwrap();
        Command::new(PODVISOR)
            .args(["ps", "--socket", s])
            .output()
            .unwrap()
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
    let _ = std::fs::remove_dir_all(&runtime);
}

#[test]
fn a_down_without_an_answer_says_it_may_still_take_effect() {
    let runtime = dir("mute");
    let socket = runtime.join("ctl.sock");
    // Accepts, reads, never answers.
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            held.push(stream);
        }
    });
    let (code, _, stderr) = text(&client(
        &runtime,
        &["down", "--socket", socket.to_str().unwrap()],
    ));
    assert_eq!(code, 3);
    assert!(
        stderr.contains("no answer") && stderr.contains("may still"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&runtime);
}
