//! Pods' cgroups: made per pod, holding what left the group, removed when done.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use podvisor::{Pod, PodConfig};

/// The directory of the cgroup `pid` is in, if it is one of podvisor's.
fn pod_cgroup(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    if !path.contains("/podvisor-") {
        return None;
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let fields: Vec<&str> = before.split_whitespace().collect();
        (after.starts_with("cgroup2 ") && fields.get(3) == Some(&"/"))
            .then(|| PathBuf::from(fields[4]).join(path.trim_start_matches('/')))
    })
}

#[test]
fn ended_pods_leave_no_cgroup_behind() {
    let mut base = None;
    for _ in 0..5 {
        // A child that left the group: the sweep kills it through the cgroup, and the
        // cgroup can be removed only once it is gone.
        let pod = Pod::new(PodConfig::new("sh").args(["-c", "setsid sleep 600 & exec sleep 600"]))
            .unwrap();
        pod.start_and_wait_blocking().unwrap();
        let Some(dir) = pod.pid().and_then(pod_cgroup) else {
            eprintln!("skipped: pods get no cgroup here");
            pod.close_blocking();
            return;
        };
        base = dir.parent().map(PathBuf::from);
        pod.close_blocking();
    }
    let base = base.unwrap();
    let count = || {
        std::fs::read_dir(&base)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("pod-"))
                    .count()
            })
            .unwrap_or(0)
    };
    // One more pod's start and end retries what could not be removed at once.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pod = Pod::new(PodConfig::new("true")).unwrap();
        pod.start();
        pod.join_blocking();
        drop(pod);
        // The driver removes this pod's own cgroup once it is done, just after the join
        // returns: give it a moment before trying again with another pod.
        if support::eventually(Duration::from_secs(1), || count() == 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} pod cgroups left in {base:?}",
            count()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
