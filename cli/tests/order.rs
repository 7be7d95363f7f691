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
            if what_a == "exit" && what_b == "term" {
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
