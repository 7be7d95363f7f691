//! Running the built `podvisor` binary in tests: its stderr lines as they come, signals,
//! its exit status.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub const PODVISOR: &str = env!("CARGO_BIN_EXE_podvisor");

/// A running `podvisor`.
pub struct Running {
    pub child: Child,
    stderr: Receiver<String>,
    pub seen: Vec<String>,
}

/// Starts `podvisor ARGS` with stdin from /dev/null, stdout piped, stderr read line by line.
pub fn spawn(args: &[&str]) -> Running {
    spawn_with(args, Stdio::piped())
}

/// Like [`spawn`], with podvisor's stdout set to `stdout`.
pub fn spawn_with(args: &[&str], stdout: Stdio) -> Running {
    let mut command = Command::new(PODVISOR);
    command.args(args).stdin(Stdio::null()).stdout(stdout);
    spawn_command(command)
}

/// The lines of `stream` as they come, read on a thread of their own.
pub fn lines_of(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Starts `command` with its stderr read line by line.
pub fn spawn_command(mut command: Command) -> Running {
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let stderr = lines_of(child.stderr.take().unwrap());
    Running {
        child,
        stderr,
        seen: Vec::new(),
    }
}

impl Running {
    /// Waits (generously) for a stderr line containing `text`.
    pub fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(100)) {
                let found = line.contains(text);
                self.seen.push(line);
                if found {
                    return;
                }
            }
        }
        panic!("no line containing {text:?}; saw {:?}", self.seen);
    }

    /// Sends `signal` (a name for kill(1)) to podvisor.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `limit` for podvisor's exit status; kills it and fails if it hangs.
    pub fn exit_within(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Its last lines: until the pipe's end (however slow the reading thread),
                // or 10 s should something it started still hold the pipe.
                let drained = Instant::now() + Duration::from_secs(10);
                while let Some(left) = drained.checked_duration_since(Instant::now()) {
                    match self.stderr.recv_timeout(left) {
                        Ok(line) => self.seen.push(line),
                        Err(_) => break,
                    }
                }
                return status.code().expect("podvisor exits, it is not killed");
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "podvisor still running after {limit:?}; saw {:?}",
                    self.seen
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the end; returns the status, the stderr lines and stdout as text.
    pub fn finish(self) -> (i32, Vec<String>, String) {
        let (code, lines, stdout) = self.finish_bytes();
        (code, lines, String::from_utf8_lossy(&stdout).into_owned())
    }

    /// Waits for the end; returns the status, the stderr lines and the stdout bytes.
    pub fn finish_bytes(mut self) -> (i32, Vec<String>, Vec<u8>) {
        let mut stdout = Vec::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_end(&mut stdout).unwrap();
        }
        let code = self.exit_within(Duration::from_secs(60));
        (code, self.seen, stdout)
    }
}

/// A client that follows (`events -f`, `logs --follow`), its stdout read as it comes, so
/// that a test can wait until it is attached: it prints what happened so far at once.
pub struct Follower {
    child: Child,
    stdout: Receiver<String>,
    seen: String,
}

impl Follower {
    /// Starts `command` with its stdout read line by line (stderr is discarded).
    pub fn spawn(mut command: Command) -> Follower {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = lines_of(child.stdout.take().unwrap());
        Follower {
            child,
            stdout,
            seen: String::new(),
        }
    }

    /// Waits (generously) for its first line: from then on it is attached.
    pub fn attached(&mut self) {
        match self.stdout.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                self.seen.push_str(&line);
                self.seen.push('\n');
            }
            Err(_) => {
                let _ = self.child.kill();
                panic!("the client printed nothing in 30 s");
            }
        }
    }

    /// Waits (up to 60 s) for its end: its exit code and all it printed.
    pub fn finish(mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                }
                Err(_) => break,
            }
        }
        let code = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status.code().expect("the client exits, it is not killed");
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the client still runs after 60 s; printed {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (code, self.seen)
    }
}

/// A loopback port nobody listens on (the kernel's pick, released at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status code of `GET path` on 127.0.0.1:`port`, or `None` while nothing answers.
pub fn get(port: u16, path: &str) -> Option<u16> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}
