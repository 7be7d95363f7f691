//! Pulled readiness probes against real listeners, files and commands.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use podvisor::{Pod, PodConfig, Readiness, StartError};
use support::{alive, eventually, fixture, on_every_executor};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "podvisor-{tag}-{}-{}",
        std::process::id(),
        free_port()
    ))
}

/// Serves HTTP on `listener`: the first `failures` requests get 500, the rest 200.
fn http_server(listener: TcpListener, failures: usize) -> Arc<AtomicUsize> {
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let n = count.fetch_add(1, Ordering::SeqCst);
            let status = if n < failures {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    served
}

#[test]
fn tcp_probe_waits_for_a_late_listener() {
    on_every_executor(|| async {
        let port = free_port();
        let pod = Pod::new(
            fixture(&["forever"])
                .ready(Readiness::Tcp {
                    host: "127.0.0.1".into(),
                    port,
                })
                .timeout_ready(Some(Duration::from_secs(30))),
        )
        .unwrap();
        pod.start();
        // Connection refused for a while, then accepted.
        async_io::Timer::after(Duration::from_millis(300)).await;
        assert!(pod.wait_ready_nowait().is_none());
        let _listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        pod.wait_ready().await.unwrap();
        pod.close().await;
    });
}

#[test]
fn tcp_probe_resolves_host_names_without_blocking() {
    on_every_executor(|| async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let pod = Pod::new(
            fixture(&["forever"])
                .ready(format!("tcp:localhost:{port}").parse().unwrap())
                .timeout_ready(Some(Duration::from_secs(30))),
        )
        .unwrap();
        pod.start_and_wait().await.unwrap();
        pod.close().await;
    });
}

#[test]
fn refused_connection_times_out_naming_the_check() {
    on_every_executor(|| async {
        let port = free_port();
        let pod = Pod::new(
            fixture(&["forever"])
                .ready(Readiness::Tcp {
                    host: "127.0.0.1".into(),
                    port,
                })
                .timeout_ready(Some(Duration::from_millis(500))),
        )
        .unwrap();
        let error = pod.start_and_wait().await.unwrap_err();
        assert!(matches!(error, StartError::TimedOut { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .contains(&format!("TCP connection to 127.0.0.1:{port}")),
            "{error}"
        );
    });
}

#[test]
fn http_probe_waits_through_500_to_200() {
    on_every_executor(|| async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = http_server(listener, 2);
        let pod = Pod::new(
            fixture(&["forever"])
                .ready(format!("http://127.0.0.1:{port}/health").parse().unwrap())
                .timeout_ready(Some(Duration::from_secs(30))),
        )
        .unwrap();
        pod.start_and_wait().await.unwrap();
        assert_eq!(served.load(Ordering::SeqCst), 3);
        pod.close().await;
    });
}

#[test]
fn http_server_that_never_answers_is_not_ready() {
    on_every_executor(|| async {
        // Accepts (the kernel completes the handshake) but never answers.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let pod = Pod::new(
            fixture(&["forever"])
                .ready(Readiness::Http(format!("http://127.0.0.1:{port}/")))
                .timeout_ready(Some(Duration::from_millis(1500))),
        )
        .unwrap();
        let error = pod.start_and_wait().await.unwrap_err();
        assert!(matches!(error, StartError::TimedOut { .. }), "{error:?}");
        drop(listener);
    });
}

#[test]
fn file_probe_sees_a_file_created_late() {
    on_every_executor(|| async {
        let path = temp_path("ready-file");
        let pod = Pod::new(
            fixture(&["forever"])
                .ready(Readiness::File(path.clone()))
                .timeout_ready(Some(Duration::from_secs(30))),
        )
        .unwrap();
        pod.start();
        async_io::Timer::after(Duration::from_millis(200)).await;
        assert!(pod.wait_ready_nowait().is_none());
        std::fs::write(&path, "").unwrap();
        pod.wait_ready().await.unwrap();
        pod.close().await;
        std::fs::remove_file(&path).unwrap();
    });
}

#[test]
fn exec_probe_succeeds_when_the_command_exits_0() {
    on_every_executor(|| async {
        let path = temp_path("exec-file");
        let pod = Pod::new(
            fixture(&["sleep", "200", "print", "made", "forever"])
                .ready(Readiness::Exec(format!("test -e {}", path.display())))
                .timeout_ready(Some(Duration::from_secs(30))),
        )
        .unwrap();
        pod.start();
        async_io::Timer::after(Duration::from_millis(200)).await;
        std::fs::write(&path, "").unwrap();
        pod.wait_ready().await.unwrap();
        pod.close().await;
        std::fs::remove_file(&path).unwrap();
    });
}

#[test]
fn a_hanging_probe_command_is_killed() {
    let pid_file = temp_path("hanging-probe");
    let pod = Pod::new(
        fixture(&["forever"])
            .ready(Readiness::Exec(format!(
                "echo $$ >> {}; exec sleep 600",
                pid_file.display()
            )))
            .timeout_ready(Some(Duration::from_millis(2500))),
    )
    .unwrap();
    let error = pod.start_and_wait_blocking().unwrap_err();
    assert!(matches!(error, StartError::TimedOut { .. }), "{error:?}");
    let pids: Vec<u32> = std::fs::read_to_string(&pid_file)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert!(!pids.is_empty());
    // Each attempt is cancelled after its timeout (1 s), or at the ready timeout, and its
    // group killed.
    for pid in pids {
        assert!(
            eventually(Duration::from_secs(10), || !alive(pid)),
            "probe command {pid} still running"
        );
    }
    std::fs::remove_file(&pid_file).unwrap();
}

#[test]
fn readiness_strings_are_parsed_or_rejected_clearly() {
    let ok = [
        ("notify", Readiness::Notify),
        ("stdout:ready", Readiness::Stdout("ready".into())),
        ("stderr:a:b", Readiness::Stderr("a:b".into())),
        (
            "tcp:[::1]:80",
            Readiness::Tcp {
                host: "::1".into(),
                port: 80,
            },
        ),
        ("http://h:1/p", Readiness::Http("http://h:1/p".into())),
        ("file:/tmp/x", Readiness::File("/tmp/x".into())),
        ("exec:true", Readiness::Exec("true".into())),
    ];
    for (text, expected) in ok {
        assert_eq!(text.parse::<Readiness>(), Ok(expected), "{text}");
    }
    let bad = [
        ("stdout:", "needs a value"),
        ("tcp:host", "HOST:PORT"),
        ("tcp:host:99999", "1 to 65535"),
        ("udp:host:1", "unknown kind \"udp\""),
        ("ready", "not understood"),
        ("https://example.com", "https is not supported"),
    ];
    for (text, needle) in bad {
        let error = text.parse::<Readiness>().unwrap_err();
        assert!(error.contains(needle), "{text}: {error}");
    }
    let error = Pod::new(fixture(&[]).ready(Readiness::Http("nonsense".into()))).unwrap_err();
    assert!(error.to_string().contains("http://"), "{error}");
    let error = Pod::new(fixture(&[]).ready(Readiness::Exec(" ".into()))).unwrap_err();
    assert!(error.to_string().contains("command is empty"), "{error}");
}

#[test]
fn a_file_check_sees_a_file_created_later_even_in_a_directory_made_later() {
    let base = std::env::temp_dir().join(format!("podvisor-file-probe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    // In an existing directory (watched), and in one that does not exist yet (tried again
    // on the schedule until it can be watched).
    for path in [base.join("ready"), base.join("later/ready")] {
        let pod = Pod::new(
            PodConfig::new("sleep")
                .arg("30")
                .ready(podvisor::Readiness::File(path.clone()))
                .timeout_ready(Some(Duration::from_secs(30))),
        )
        .unwrap();
        pod.start();
        // Started (however slow the spawn), and not ready while the file is missing.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            eventually(Duration::from_secs(10), || pod.state()
                == podvisor::State::Started),
            "{path:?}: {:?}",
            pod.state()
        );
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"").unwrap();
        pod.wait_ready_blocking().unwrap();
        pod.close_blocking();
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// A server that prints a burst, then listens: its lines are among the last lines once
/// the TCP check has passed.
#[test]
fn lines_written_before_a_check_passes_are_there_at_ready() {
    let port = free_port();
    let script = format!(
        "import socket, sys, time\n\
         sys.stdout.write(('y' * 30 + '\\n') * 1500 + 'listening\\n')\n\
         sys.stdout.flush()\n\
         s = socket.socket()\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', {port}))\n\
         s.listen()\n\
         time.sleep(60)\n"
    );
    let pod = Pod::new(
        PodConfig::new("python3")
            .args(["-c", &script])
            .ready(Readiness::Tcp {
                host: "127.0.0.1".into(),
                port,
            })
            .timeout_ready(Some(Duration::from_secs(30)))
            .last_lines(2),
    )
    .unwrap();
    pod.start_and_wait_blocking().unwrap();
    assert_eq!(
        pod.last_lines().last().map(String::as_str),
        Some("listening")
    );
    pod.close_blocking();
}
