//! Helpers shared by the integration tests that run real child processes.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use podvisor::PodConfig;

pub const FIXTURE: &str = env!("CARGO_BIN_EXE_podvisor-fixture");

/// A pod running the fixture with these steps.
pub fn fixture(steps: &[&str]) -> PodConfig {
    PodConfig::new(FIXTURE).args(steps).name("fixture")
}

/// A pod running the fixture with SIGTERM ignored; it is ready once the fixture runs
/// (so a close cannot reach the shell before it set the signal aside).
pub fn ignoring_term(steps: &[&str]) -> PodConfig {
    PodConfig::new("sh")
        .args([
            "-c",
            "trap '' TERM; exec \"$0\" \"$@\"",
            FIXTURE,
            "print",
            "ignoring SIGTERM",
        ])
        .args(steps)
        .ready(podvisor::Readiness::Stdout("ignoring SIGTERM".into()))
        .timeout_ready(Some(std::time::Duration::from_secs(30)))
        .name("stubborn")
}

/// Runs `test` under smol, tokio and futures-lite's `block_on`, one after the other.
pub fn on_every_executor<F, Fut>(test: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    smol::block_on(test());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(test());
    futures_lite::future::block_on(test());
}

/// Zombie children of this test process (none may be left behind by podvisor).
pub fn our_zombies() -> Vec<u32> {
    let me = std::process::id();
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if state == Some("Z") && ppid == Some(me) {
            zombies.push(pid);
        }
    }
    zombies
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

/// Polls `condition` until it holds or `limit` passes (a generous bound, for tests only).
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

/// The pid printed by the fixture's `grandchild` step, from the pod's last lines.
pub fn grandchild_pid(lines: &[String]) -> Option<u32> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("grandchild ").and_then(|p| p.parse().ok()))
}

/// A descriptor of `/dev/null` that is not close-on-exec, at `min` or the first free above.
pub fn inheritable(min: i32) -> std::os::fd::OwnedFd {
    let null = std::fs::File::open("/dev/null").unwrap();
    let fd = rustix::io::fcntl_dupfd_cloexec(&null, min).unwrap();
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::empty()).unwrap();
    fd
}

/// How `sh -c script` ended, run as a pod.
pub fn run_sh(script: &str) -> podvisor::End {
    let pod = podvisor::Pod::new(PodConfig::new("sh").args(["-c", script])).unwrap();
    pod.start();
    smol::block_on(pod.join())
}
