//! Waits for a TCP target that starts listening 3 s after the pod starts (for profiling
//! the probe loop: `perf record`, `strace -c`).
use podvisor::{Pod, PodConfig, Readiness};

fn main() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pod = Pod::new(
        PodConfig::new("python3")
            .args([
                "-c",
                &format!("import socket,time; time.sleep(3); s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); time.sleep(60)"),
            ])
            .ready(Readiness::Tcp { host: "127.0.0.1".into(), port }),
    )
    .unwrap();
    pod.start_and_wait_blocking().unwrap();
    pod.close_blocking();
}
