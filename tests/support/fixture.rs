//! The test fixture: a child process whose behaviour is a script given as arguments.
//!
//! ```text
//! podvisor-fixture STEP...
//!   notify MSG         send MSG (\n for newlines) to $NOTIFY_SOCKET
//!   print TEXT         write a line on stdout
//!   eprint TEXT        write a line on stderr
//!   sleep MS           sleep
//!   exit CODE          exit now with CODE
//!   grandchild         spawn a grandchild (in the same process group) that sleeps for an
//!                      hour and keeps stdout open; print "grandchild PID"
//!   stop-self          SIGSTOP itself
//!   flood N            write N long lines on stdout
//!   env KEY            print "KEY=VALUE" or "KEY unset"
//!   forever            sleep until killed
//!   stamp TEXT         write "TEXT NANOS" on stdout, NANOS from CLOCK_MONOTONIC
//!   listen PORT        listen on 127.0.0.1:PORT (kept open until exit)
//!   http PORT          listen on 127.0.0.1:PORT and answer every HTTP request with 200,
//!                      on a thread of its own (until exit)
//!   touch PATH         create the file PATH
//!   barrier            send BARRIER=1 with a pipe's write end (as newer systemd-notify
//!                      does), then wait up to 5 s for the supervisor to close it; print
//!                      "barrier ok", or exit 2
//!   runtime FAIL       serve the scripted runtime with podvisor::runtime::serve (never
//!                      returns); FAIL is nothing, construct, setup, run, teardown, cancel,
//!                      ignore-cancel, return or slow-setup; each call is printed
//! ```
//! Without `exit`, it exits 0 after the last step. To ignore SIGTERM, run it through
//! `sh -c 'trap "" TERM; exec "$0" "$@"' podvisor-fixture STEP...`: an ignored signal stays
//! ignored across exec.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "scripted_runtime.rs"]
#[allow(dead_code)]
mod scripted_runtime;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut steps = args.iter();
    while let Some(step) = steps.next() {
        let mut arg = || {
            steps
                .next()
                .cloned()
                .unwrap_or_else(|| fail(&format!("{step} needs an argument")))
        };
        match step.as_str() {
            "notify" => {
                let message = arg().replace("\\n", "\n");
                let path = std::env::var_os("NOTIFY_SOCKET")
                    .unwrap_or_else(|| fail("NOTIFY_SOCKET is not set"));
                let socket = UnixDatagram::unbound().unwrap_or_else(|e| fail(&e.to_string()));
                socket
                    .send_to(message.as_bytes(), path)
                    .unwrap_or_else(|e| fail(&format!("notify: {e}")));
            }
            "print" => {
                let text = arg();
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
            "eprint" => eprintln!("{}", arg()),
            "sleep" => std::thread::sleep(Duration::from_millis(number(&arg()))),
            "exit" => std::process::exit(number(&arg()) as i32),
            "grandchild" => {
                let me = std::env::current_exe().unwrap_or_else(|e| fail(&e.to_string()));
                let child = Command::new(me)
                    .args(["sleep", "3600000"])
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| fail(&e.to_string()));
                println!("grandchild {}", child.id());
                // Deliberately not waited for: it outlives this process.
                std::mem::forget(child);
            }
            "stop-self" => {
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::STOP,
                );
            }
            "flood" => {
                let line = "x".repeat(1000);
                let mut out = std::io::stdout().lock();
                for _ in 0..number(&arg()) {
                    let _ = writeln!(out, "{line}");
                }
                let _ = out.flush();
            }
            "env" => {
                let key = arg();
                match std::env::var(&key) {
                    Ok(value) => println!("{key}={value}"),
                    Err(_) => println!("{key} unset"),
                }
            }
            "stamp" => {
                let text = arg();
                let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
                let nanos = now.tv_sec as u128 * 1_000_000_000 + now.tv_nsec as u128;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text} {nanos}");
                let _ = out.flush();
            }
            "listen" => {
                let port = number(&arg());
                let listener = std::net::TcpListener::bind(("127.0.0.1", port as u16))
                    .unwrap_or_else(|e| fail(&format!("listen: {e}")));
                std::mem::forget(listener);
            }
            "http" => {
                let port = number(&arg());
                let listener = std::net::TcpListener::bind(("127.0.0.1", port as u16))
                    .unwrap_or_else(|e| fail(&format!("http: {e}")));
                std::thread::spawn(move || serve_http(listener));
            }
            "touch" => {
                let path = arg();
                std::fs::File::create(&path).unwrap_or_else(|e| fail(&format!("touch: {e}")));
            }
            "barrier" => barrier(),
            "runtime" => {
                let fail = arg();
                let fail = scripted_runtime::Fail::parse(&fail).unwrap_or_else(|| fail_with(&fail));
                let calls = std::sync::Arc::new(scripted_runtime::Calls::default());
                podvisor::runtime::serve(move || {
                    scripted_runtime::Scripted::build(fail, calls.clone(), log)
                });
            }
            "forever" => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            other => fail(&format!("unknown step {other:?}")),
        }
    }
}

/// Answers each request on `listener` with `200 OK`, one connection at a time.
fn serve_http(listener: std::net::TcpListener) {
    use std::io::Read;
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    }
}

fn number(text: &str) -> u64 {
    text.parse()
        .unwrap_or_else(|_| fail(&format!("{text:?} is not a number")))
}

fn barrier() {
    use rustix::net::{
        sendmsg_addr, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    };
    use std::io::{IoSlice, Read};
    use std::mem::MaybeUninit;
    use std::os::fd::AsFd;
    let path =
        std::env::var_os("NOTIFY_SOCKET").unwrap_or_else(|| fail("NOTIFY_SOCKET is not set"));
    let (read_end, write_end) = rustix::pipe::pipe().unwrap_or_else(|e| fail(&e.to_string()));
    let socket = UnixDatagram::unbound().unwrap_or_else(|e| fail(&e.to_string()));
    let address =
        SocketAddrUnix::new(std::path::Path::new(&path)).unwrap_or_else(|e| fail(&e.to_string()));
    let fds = [write_end.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    sendmsg_addr(
        &socket,
        &address,
        &[IoSlice::new(b"BARRIER=1")],
        &mut control,
        SendFlags::empty(),
    )
    .unwrap_or_else(|e| fail(&format!("sendmsg: {e}")));
    drop(write_end);
    // EOF on the read end means every copy of the write end is closed.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut file = std::fs::File::from(read_end);
        let mut buf = [0u8; 1];
        let _ = tx.send(file.read(&mut buf).map(|n| n == 0).unwrap_or(false));
    });
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(true) => log("barrier ok"),
        _ => {
            eprintln!("podvisor-fixture: the supervisor kept the barrier descriptor open");
            std::process::exit(2)
        }
    }
}

fn log(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail_with(mode: &str) -> ! {
    fail(&format!("unknown runtime failure mode {mode:?}"))
}

fn fail(message: &str) -> ! {
    eprintln!("podvisor-fixture: {message}");
    std::process::exit(101)
}
