//! podvisor as PID 1 of a PID namespace (a container's entrypoint): orphans are reaped,
//! and the pods' own statuses are not taken by that reaping.

mod support;

use std::process::Command;

use support::PODVISOR;

/// Counts the zombies of the namespace, from `/proc` (no `ps` needed), until there are
/// none or 10 s have passed: reaping is quick, but not instant on a busy machine.
const COUNT_ZOMBIES: &str = r#"for t in $(seq 40); do n=0; for s in /proc/[0-9]*/stat; do read -r l < "$s" 2>/dev/null || continue; case $l in *") Z "*) n=$((n+1));; esac; done; [ "$n" = 0 ] && break; sleep 0.25; done; echo "zombies=$n""#;

/// Runs `podvisor ARGS` as PID 1 of a new PID namespace; `None` (with a message) where the
/// machine refuses one.
fn as_pid1(args: &[&str]) -> Option<(i32, String, String)> {
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: this machine refuses `unshare --pid --fork --mount-proc`");
        return None;
    }
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", PODVISOR])
        .args(args)
        .output()
        .unwrap();
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn as_pid1_orphans_are_reaped() {
    let script = format!("for i in $(seq 300); do (true &); done; sleep 1; {COUNT_ZOMBIES}");
    let Some((code, stdout, stderr)) = as_pid1(&["run", "--", "sh", "-c", &script]) else {
        return;
    };
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "zombies=0", "{stderr}");
}

#[test]
fn as_pid1_pods_keep_their_own_statuses_while_orphans_are_reaped() {
    let dir = std::env::temp_dir().join(format!("podvisor-pid1-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("twenty.toml");
    let mut text = String::new();
    for i in 0..20 {
        // 15 orphans each, then an exit with a code of its own (SIGTERM is ignored, so a
        // pod that is closed meanwhile still ends with its code).
        text.push_str(&format!(
            "[pod.p{i}]\ncommand = [\"sh\", \"-c\", \"trap '' TERM; for i in $$(seq 15); do (true &); done; sleep 1; exit {}\"]\ngrace = \"20s\"\n\n",
            10 + i
        ));
    }
    text.push_str(&format!(
        "[pod.count]\ncommand = [\"sh\", \"-c\", \"trap '' TERM; sleep 2.5; {}\"]\ngrace = \"20s\"\n",
        COUNT_ZOMBIES
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('$', "$$")
    ));
    std::fs::write(&file, text).unwrap();
    let result = as_pid1(&["up", file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    let Some((_, stdout, stderr)) = result else {
        return;
    };
    for i in 0..20 {
        let expected = format!("exit code {}", 10 + i);
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&format!("p{i}/0 ")) && l.contains(&expected)),
            "p{i} should end with {expected}:\n{stderr}"
        );
    }
    assert!(stdout.contains("zombies=0"), "{stdout}\n{stderr}");
}

#[test]
fn a_podvisor_in_another_pid_namespace_leaves_ours_alone() {
    // Our podvisor's pid means nothing inside the namespace: it must not take our cgroups
    // for those of a dead podvisor and kill them.
    let mut ours = support::spawn(&["run", "--", "sleep", "600"]);
    ours.wait_for("ready");
    let pid: u32 = ours
        .seen
        .iter()
        .find_map(|l| l.split("(pid ").nth(1))
        .and_then(|r| r.trim_end_matches(')').parse().ok())
        .expect("a pid");
    let Some((code, _, stderr)) = as_pid1(&["run", "--", "true"]) else {
        ours.signal("KILL");
        return;
    };
    assert_eq!(code, 0, "{stderr}");
    let alive =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"));
    ours.signal("INT");
    let _ = ours.exit_within(std::time::Duration::from_secs(20));
    assert!(
        alive,
        "our pod was killed by a podvisor in another PID namespace"
    );
}
