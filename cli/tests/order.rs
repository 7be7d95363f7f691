//! What `podvisor up` prints is what happened: pods record the instant they got SIGTERM and
//! the instant they exited; the printed "stopping" and "ended" lines must agree with that
//! order wherever one pod's exit came before another's SIGTERM.

mod support;

use std::time::Duration;

use support::spawn;

#[test]
fn printed_order_is_the_true_order_of_the_close() {
    let dir = std::env::temp_dir().join(format!("podvisor-order-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("log");
    let file = dir.join("chain.toml");
    // Each pod appends "NAME term" when SIGTERM arrives and "NAME exit" as it exits
    // (`$$` is a literal `$` in a deployment file).
    let pod = |deps: &str, replicas: u32| {
        format!(
            "command = [\"sh\", \"-c\", \"trap 'echo $$PODVISOR_POD term >> {log}; sleep 0.2; echo $$PODVISOR_POD exit >> {log}; exit 0' TERM; echo up; while :; do sleep 0.05; done\"]\nready = \"stdout:up\"\nreplicas = {replicas}\n{deps}\n",
            log = log.display()
        )
    };
    let text = format!(
        "[pod.db]\n{}\n[pod.api]\n{}\n[pod.worker]\n{}",
        pod("", 1),
        pod("depends_on = [\"db\"]", 2),
        pod("depends_on = [\"api\"]", 1)
    );
    std::fs::write(&file, text).unwrap();
    let mut up = spawn(&["up", file.to_str().unwrap()]);
    up.wait_for("deployment ready");
    up.signal("INT");
    let code = up.exit_within(Duration::from_secs(60));
    assert_eq!(code, 0, "{:?}", up.seen);
    let recorded: Vec<(String, String)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(pod, what)| (pod.to_string(), what.to_string()))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    let printed = |pod: &str, what: &str| {
        up.seen
            .iter()
            .position(|l| l.starts_with(&format!("podvisor: {pod} {what}")))
            .unwrap_or_else(|| panic!("no \"{pod} {what}\" in {:?}", up.seen))
    };
    assert_eq!(recorded.len(), 8, "{recorded:?}");
    let mut compared = 0;
    for (i, (a, what_a)) in recorded.iter().enumerate() {
        for (b, what_b) in &recorded[i + 1..] {
            // Replicas of one set are stopped together: a trap that ran late may record
            // one's SIGTERM after the other's exit, though podvisor sent both at once.
            let same_set = a.split('/').next() == b.split('/').next();
            if what_a == "exit" && what_b == "term" && !same_set {
                compared += 1;
                assert!(
                    printed(a, "ended") < printed(b, "stopping"),
                    "{a} exited before {b} got SIGTERM, but the lines say otherwise:\n{:#?}",
                    up.seen
                );
            }
        }
    }
    // worker exits before api gets SIGTERM, and both api replicas before db.
    assert!(compared >= 3, "{recorded:?}");
}

/// The command's own reporter reads the event stream like any subscriber, and must keep up:
/// in a 1,000-pod `up`, every pod's lines are printed, each pod's in the order of its life,
/// and no "lagged" marker appears.
#[test]
fn a_thousand_pod_up_prints_every_line_in_order_and_never_lags() {
    let dir = std::env::temp_dir().join(format!("podvisor-thousand-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("many.toml");
    std::fs::write(
        &file,
        "[pod.web]\ncommand = [\"sleep\", \"1000\"]\nreplicas = 1000\n",
    )
    .unwrap();
    let mut up = spawn(&["up", file.to_str().unwrap()]);
    up.wait_for("deployment ready");
    up.signal("TERM");
    let code = up.exit_within(Duration::from_secs(120));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        code,
        0,
        "{:?}",
        &up.seen[up.seen.len().saturating_sub(20)..]
    );
    assert!(
        !up.seen.iter().any(|l| l.contains("lagged")),
        "the reporter lagged"
    );
    // Where each pod's lines are: started, ready, stopping, ended, in that order.
    let mut at = vec![[usize::MAX; 4]; 1000];
    for (n, line) in up.seen.iter().enumerate() {
        let Some(rest) = line.strip_prefix("podvisor: web/") else {
            continue;
        };
        let Some((index, what)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        let step = ["started", "ready", "stopping", "ended"]
            .iter()
            .position(|w| what.starts_with(w));
        if let Some(step) = step {
            assert_eq!(
                at[index][step],
                usize::MAX,
                "web/{index} {what} printed twice"
            );
            at[index][step] = n;
        }
    }
    for (index, lines) in at.iter().enumerate() {
        assert!(
            lines.iter().all(|&n| n != usize::MAX),
            "web/{index} is missing a line (started, ready, stopping, ended): {lines:?}"
        );
        assert!(
            lines.windows(2).all(|w| w[0] < w[1]),
            "web/{index}'s lines are out of order: {lines:?}"
        );
    }
}

/// Runs `up` on a file holding `toml`, with podvisor's standard output and error on one
/// pipe, three times; after each run, checks that for every replica N of `web`, the line
/// starting `podvisor: web/N {event}` and the pod's output line ending `output` come in
/// the order `output_first` says.
fn check_order_with_output(
    name: &str,
    toml: &str,
    replicas: usize,
    event: &str,
    output: &str,
    output_first: bool,
) {
    let dir = std::env::temp_dir().join(format!("podvisor-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("order.toml");
    std::fs::write(&file, toml).unwrap();
    for round in 0..3 {
        let mut command = std::process::Command::new("sh");
        command
            .args([
                "-c",
                "exec \"$0\" up \"$1\" 1>&2",
                support::PODVISOR,
                file.to_str().unwrap(),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        let mut up = support::spawn_command(command);
        up.wait_for("deployment ready");
        up.signal("TERM");
        let code = up.exit_within(Duration::from_secs(60));
        assert_eq!(code, 0, "{:?}", up.seen);
        for index in 0..replicas {
            let line = format!("podvisor: web/{index} {event}");
            let prefix = format!("[web/{index}]");
            let line_at = up.seen.iter().position(|l| l.starts_with(&line));
            let output_at = up
                .seen
                .iter()
                .position(|l| l.starts_with(&prefix) && l.ends_with(output));
            let (Some(line_at), Some(output_at)) = (line_at, output_at) else {
                panic!(
                    "round {round}: web/{index} lacks its {event} line or its output: {:?}",
                    up.seen
                );
            };
            assert_eq!(
                output_at < line_at,
                output_first,
                "round {round}: web/{index}: its output is line {output_at}, its {event} line \
                 {line_at}: {:?}",
                up.seen
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pod's output never comes before the line about its start, where both reach one file:
/// the first line of each of 40 pods (written the moment it runs) follows `podvisor: web/N
/// started`. The reporter is a thread of its own that reads the event stream; the output
/// has its own writer, so without one order for both, the output of pods started in a
/// burst overtakes the lines the reporter has not written yet. (The pods are ready on
/// their line, so that the deployment is ready only once every line was read.)
#[test]
fn a_pods_first_output_comes_after_the_line_about_its_start() {
    check_order_with_output(
        "first-output",
        "[pod.web]\ncommand = [\"sh\", \"-c\", \"echo hello; exec sleep 1000\"]\nready = \"stdout:hello\"\nreplicas = 40\n",
        40,
        "started",
        "hello",
        false,
    );
}

/// The line a readiness check matched comes before the line about the readiness it
/// caused: the event happens after the output was read, so the output is written first.
#[test]
fn the_output_line_that_made_a_pod_ready_comes_before_its_ready_line() {
    check_order_with_output(
        "ready-line",
        "[pod.web]\ncommand = [\"sh\", \"-c\", \"echo listening; exec sleep 1000\"]\nready = \"stdout:listening\"\nreplicas = 20\n",
        20,
        "ready",
        "listening",
        true,
    );
}
