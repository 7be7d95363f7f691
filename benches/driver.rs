//! The process driver against real children, with a raw `std::process` baseline in the
//! same run. `cargo bench --bench driver` prints one line per measurement.
//!
//! - start→ready latency with `notify` and with a stdout line, vs the same handshake done
//!   with `std::process` and a blocking read (target: ≤ 1.15× the baseline);
//! - exit detection: child exits → end observed (target: median < 1 ms);
//! - kill escalation: SIGKILL after the grace period, overshoot (target: < 5 ms, never
//!   before);
//! - under flood: the same SIGKILL overshoot and another pod's start→ready while two pods
//!   run `yes` (target: a few ms);
//! - a late listener: listen → ready when the server listens 0.1, 0.5 or 2 s after its
//!   start, and podvisor's CPU while it waits (target ≤ 10 ms median, < 2 % of a core);
//! - 1,000 pods started, ready and closed: wall time (target < 3 s) and supervisor memory
//!   per pod (target < 64 KiB).

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podvisor::{End, Pod, PodConfig, Readiness};

const FIXTURE: &str = env!("CARGO_BIN_EXE_podvisor-fixture");

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p90(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() * 9 / 10]
}

fn monotonic_nanos() -> u128 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u128 * 1_000_000_000 + now.tv_nsec as u128
}

fn stamp(lines: &[String], tag: &str) -> u128 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(tag).and_then(|r| r.trim().parse().ok()))
        .expect("stamp line")
}

fn baseline_notify() -> Duration {
    let dir = std::env::temp_dir().join(format!("podvisor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("n");
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap();
    let start = Instant::now();
    let mut child = Command::new(FIXTURE)
        .args(["notify", "READY=1", "forever"])
        .env("NOTIFY_SOCKET", &path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    socket.recv(&mut buf).unwrap();
    let took = start.elapsed();
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    took
}

fn baseline_stdout() -> Duration {
    let start = Instant::now();
    let mut child = Command::new(FIXTURE)
        .args(["print", "up", "forever"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let took = start.elapsed();
    child.kill().unwrap();
    child.wait().unwrap();
    took
}

fn podvisor_ready(config: PodConfig) -> Duration {
    let start = Instant::now();
    let pod = Pod::new(config).unwrap();
    pod.start_and_wait_blocking().unwrap();
    let took = start.elapsed();
    pod.close_blocking();
    took
}

fn start_to_ready(rounds: usize) {
    let (mut base_n, mut pod_n, mut base_s, mut pod_s) = (vec![], vec![], vec![], vec![]);
    let mut pod_fast = vec![];
    for _ in 0..rounds {
        pod_fast.push(podvisor_ready(
            PodConfig::new(FIXTURE)
                .args(["notify", "READY=1", "forever"])
                .ready(Readiness::Notify)
                .kill_on_supervisor_death(false),
        ));
        base_n.push(baseline_notify());
        pod_n.push(podvisor_ready(
            PodConfig::new(FIXTURE)
                .args(["notify", "READY=1", "forever"])
                .ready(Readiness::Notify),
        ));
        base_s.push(baseline_stdout());
        pod_s.push(podvisor_ready(
            PodConfig::new(FIXTURE)
                .args(["print", "up", "forever"])
                .ready(Readiness::Stdout("up".into())),
        ));
    }
    let fast = median(pod_fast);
    for (name, base, pod) in [
        ("notify", base_n.clone(), pod_n),
        ("stdout line", base_s, pod_s),
        ("notify, no death signal", base_n, vec![fast]),
    ] {
        let (b, p) = (median(base), median(pod));
        println!(
            "start→ready ({name:<23}) podvisor median {:>8.3} ms, std::process baseline {:>8.3} ms, ratio {:.2}× (target ≤ 1.15×)",
            p.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3,
            p.as_secs_f64() / b.as_secs_f64()
        );
    }
}

fn exit_detection(rounds: usize) {
    let mut latencies = Vec::new();
    for _ in 0..rounds {
        let pod = Pod::new(
            PodConfig::new(FIXTURE).args(["sleep", "20", "stamp", "exit-at", "exit", "0"]),
        )
        .unwrap();
        pod.start();
        let end = pod.join_blocking();
        let observed = monotonic_nanos();
        assert_eq!(end, End::Exited(podvisor::ExitStatus::Code(0)));
        let exited = stamp(&pod.last_lines(), "exit-at");
        latencies.push(Duration::from_nanos(observed.saturating_sub(exited) as u64));
    }
    println!(
        "exit detection (stamp before exit → join returns) median {:>8.3} ms, p90 {:>8.3} ms (target median < 1 ms)",
        median(latencies.clone()).as_secs_f64() * 1e3,
        p90(latencies).as_secs_f64() * 1e3
    );
}

/// Starts a pod that ignores SIGTERM, closes it with `grace`: the time the close took, and
/// the end.
fn close_stubborn(grace: Duration) -> (Duration, End) {
    let pod = Pod::new(
        PodConfig::new("sh")
            .args([
                "-c",
                "trap '' TERM; exec \"$0\" \"$@\"",
                FIXTURE,
                "print",
                "armed",
                "forever",
            ])
            .ready(Readiness::Stdout("armed".into()))
            .grace(grace),
    )
    .unwrap();
    pod.start_and_wait_blocking().unwrap();
    let start = Instant::now();
    let end = pod.close_blocking();
    (start.elapsed(), end)
}

fn kill_escalation(rounds: usize) {
    let grace = Duration::from_millis(200);
    let mut overshoot = Vec::new();
    let mut early = 0;
    for _ in 0..rounds {
        let (took, end) = close_stubborn(grace);
        assert!(matches!(end, End::Killed(_)));
        if took < grace {
            early += 1;
        }
        overshoot.push(took.saturating_sub(grace));
    }
    println!(
        "kill escalation (grace 200 ms): close→reaped overshoot median {:>7.3} ms, max {:>7.3} ms; killed early {early} times (target: < 5 ms, never early)",
        median(overshoot.clone()).as_secs_f64() * 1e3,
        overshoot.iter().max().unwrap().as_secs_f64() * 1e3
    );
}

/// Two pods running `yes` (output captured) while the same measurements run beside them:
/// SIGKILL overshoot of a pod that ignores SIGTERM, and start→ready of a notify pod.
fn under_flood(rounds: usize) {
    let floods: Vec<Pod> = (0..2)
        .map(|i| {
            Pod::new(
                PodConfig::new("yes")
                    .name(format!("flood{i}"))
                    .grace(Duration::from_millis(100)),
            )
            .unwrap()
        })
        .collect();
    for pod in &floods {
        pod.start_and_wait_blocking().unwrap();
    }
    let grace = Duration::from_millis(200);
    let mut overshoot = Vec::new();
    let mut ready = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..rounds {
        baseline.push(baseline_notify());
        let (took, end) = close_stubborn(grace);
        assert!(matches!(end, End::Killed(_)));
        overshoot.push(took.saturating_sub(grace));
        ready.push(podvisor_ready(
            PodConfig::new(FIXTURE)
                .args(["notify", "READY=1", "forever"])
                .ready(Readiness::Notify),
        ));
    }
    for pod in &floods {
        pod.close_blocking();
    }
    println!(
        "under flood (2 pods running `yes`): SIGKILL overshoot median {:>7.3} ms, max {:>7.3} ms; another pod's start→ready median {:>7.3} ms, max {:>7.3} ms (std::process baseline beside the same flood: median {:>7.3} ms)",
        median(overshoot.clone()).as_secs_f64() * 1e3,
        overshoot.iter().max().unwrap().as_secs_f64() * 1e3,
        median(ready.clone()).as_secs_f64() * 1e3,
        ready.iter().max().unwrap().as_secs_f64() * 1e3,
        median(baseline).as_secs_f64() * 1e3,
    );
}

/// A `file:` readiness check: the file is created 0.3 s after the pod runs; create →
/// ready observed (inotify: no polling interval in it).
fn late_file(rounds: usize) {
    let mut latencies = Vec::new();
    let dir = std::env::temp_dir().join(format!("podvisor-bench-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for round in 0..rounds {
        let path = dir.join(format!("ready-{round}"));
        let pod = Pod::new(
            PodConfig::new("sleep")
                .arg("60")
                .ready(Readiness::File(path.clone())),
        )
        .unwrap();
        pod.start();
        std::thread::sleep(Duration::from_millis(300));
        let created = Instant::now();
        std::fs::write(&path, b"").unwrap();
        pod.wait_ready_blocking().unwrap();
        latencies.push(created.elapsed());
        pod.close_blocking();
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "file readiness (created 0.3 s after start): create → ready median {:>7.3} ms, max {:>7.3} ms",
        median(latencies.clone()).as_secs_f64() * 1e3,
        latencies.iter().max().unwrap().as_secs_f64() * 1e3,
    );
}

/// CPU time used by this process so far (the bench's threads and podvisor's).
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A server that starts listening `delay_ms` after its start, probed with the default
/// schedule: listen → ready observed, and podvisor's CPU while it waited.
fn late_listener(delay_ms: u64, rounds: usize) {
    let mut latencies = Vec::new();
    let mut cpu_share = Vec::new();
    for round in 0..rounds {
        // Servers do not start listening in step with the probes: each round shifts the
        // listen by a further part of the probe interval, so the median is over phases.
        let delay_ms = delay_ms + (round as u64 * 17) % 15;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pod = Pod::new(
            PodConfig::new(FIXTURE)
                .args([
                    "sleep",
                    &delay_ms.to_string(),
                    "listen",
                    &port.to_string(),
                    "stamp",
                    "listening-at",
                    "forever",
                ])
                .ready(Readiness::Tcp {
                    host: "127.0.0.1".into(),
                    port,
                }),
        )
        .unwrap();
        // The waiting starts once the process runs: the spawn's own cost is measured by
        // `start_to_ready`.
        pod.start();
        while pod.pid().is_none() {
            std::thread::sleep(Duration::from_micros(200));
        }
        let (cpu0, wall0) = (process_cpu(), Instant::now());
        pod.wait_ready_blocking().unwrap();
        let observed = monotonic_nanos();
        let (cpu, wall) = (process_cpu() - cpu0, wall0.elapsed());
        let lines = loop {
            let lines = pod.last_lines();
            if lines.iter().any(|l| l.starts_with("listening-at")) {
                break lines;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let listened = stamp(&lines, "listening-at");
        latencies.push(Duration::from_nanos(
            observed.saturating_sub(listened) as u64
        ));
        cpu_share.push(cpu.as_secs_f64() / wall.as_secs_f64());
        pod.close_blocking();
    }
    cpu_share.sort_by(f64::total_cmp);
    println!(
        "late listener (listens {delay_ms:>4} ms after start): listen → ready median {:>7.3} ms, max {:>7.3} ms; CPU while waiting {:.2}% of a core (target ≤ 10 ms, < 2 %)",
        median(latencies.clone()).as_secs_f64() * 1e3,
        latencies.iter().max().unwrap().as_secs_f64() * 1e3,
        cpu_share[cpu_share.len() / 2] * 100.0
    );
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn many_pods(n: usize) {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let mut raised = limit;
    raised.current = limit.maximum;
    let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, raised);
    // Warm the driver thread and reactor up first so they are not counted per pod.
    podvisor_ready(PodConfig::new(FIXTURE).args(["forever"]));
    let before = rss_kib();
    let start = Instant::now();
    let pods: Vec<Pod> = (0..n)
        .map(|i| {
            Pod::new(
                PodConfig::new(FIXTURE)
                    .args(["print", "up", "forever"])
                    .name(format!("pod{i}"))
                    .ready(Readiness::Stdout("up".into())),
            )
            .unwrap()
        })
        .collect();
    for pod in &pods {
        pod.start();
    }
    for pod in &pods {
        pod.wait_ready_blocking().unwrap();
    }
    let ready = start.elapsed();
    let during = rss_kib();
    for pod in &pods {
        pod.close_nowait(None);
    }
    for pod in &pods {
        pod.join_blocking();
    }
    let total = start.elapsed();
    println!(
        "{n} pods: all ready after {:.2} s, started+ready+closed in {:.2} s (target < 3 s); supervisor memory {:.1} KiB per pod (target < 64 KiB)",
        ready.as_secs_f64(),
        total.as_secs_f64(),
        during.saturating_sub(before) as f64 / n as f64
    );
}

fn main() {
    // `cargo test --benches` runs this without `--bench`: a tiny smoke run only.
    let full = std::env::args().any(|a| a == "--bench");
    if std::env::args().any(|a| a == "late") {
        // `cargo bench --bench driver -- late`: the late listeners alone.
        late_file(15);
        for delay in [100, 500, 2000] {
            late_listener(delay, 15);
        }
        late_file(15);
        return;
    }
    let rounds = if full { 40 } else { 2 };
    start_to_ready(rounds);
    exit_detection(rounds);
    kill_escalation(if full { 10 } else { 1 });
    under_flood(if full { 10 } else { 1 });
    for delay in [100, 500, 2000] {
        late_listener(if full { delay } else { 10 }, if full { 15 } else { 1 });
    }
    late_file(if full { 15 } else { 1 });
    many_pods(if full { 1000 } else { 20 });
}
