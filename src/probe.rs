//! Pulled readiness probes: one attempt each, performed when the core asks for it and
//! dropped when the core cancels it (an attempt's timeout is the core's decision).

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use crate::os;
use crate::Signal;

/// One attempt of a probe: resolves to `Ok` or to why it failed.
pub(crate) type Attempt = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// What a probe checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    Tcp { host: String, port: u16 },
    Http(HttpTarget),
    File(PathBuf),
    Exec(String),
}

/// A parsed `http://HOST[:PORT][/PATH]` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTarget {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (80 if the URL gives none).
    pub port: u16,
    /// Path with query, starting with `/`.
    pub path: String,
}

impl HttpTarget {
    /// Parses `http://HOST[:PORT][/PATH]`. Only plain HTTP is supported.
    ///
    /// ```
    /// use podvisor::HttpTarget;
    ///
    /// let t = HttpTarget::parse("http://[::1]:8080/health?full=1").unwrap();
    /// assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("::1", 8080, "/health?full=1"));
    /// assert!(HttpTarget::parse("https://example.com/").is_err());
    /// ```
    pub fn parse(url: &str) -> Result<HttpTarget, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            if url.starts_with("https://") {
                format!("{url:?}: https is not supported by the HTTP probe; use http:// or a tcp: check")
            } else {
                format!("{url:?}: expected a URL starting with http://")
            }
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) =
            split_host_port(authority, Some(80)).map_err(|e| format!("{url:?}: {e}"))?;
        if path.contains(char::is_whitespace) {
            return Err(format!("{url:?}: the path contains whitespace"));
        }
        Ok(HttpTarget {
            host,
            port,
            path: path.to_string(),
        })
    }
}

/// Splits `HOST:PORT` (or `[V6]:PORT`); `default_port` applies when no port is given.
pub(crate) fn split_host_port(
    text: &str,
    default_port: Option<u16>,
) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| format!("{text:?}: missing ']' after an IPv6 address"))?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("{text:?}: expected ':PORT' after ']'")),
        };
        (&rest[..end], port)
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{text:?}: the host is empty"));
    }
    let port = match (port, default_port) {
        (Some(p), _) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{text:?}: port {p:?} is not a number from 1 to 65535"))?,
        (None, Some(d)) => d,
        (None, None) => return Err(format!("{text:?}: expected HOST:PORT")),
    };
    Ok((host.to_string(), port))
}

impl Probe {
    /// Starts one readiness attempt: like [`Probe::attempt`], except that a `file:` attempt
    /// waits for the file to appear (told by inotify, not polled) until the core cancels
    /// it.
    pub(crate) fn ready_attempt(&self) -> Attempt {
        match self {
            Probe::File(path) => {
                let path = path.clone();
                Box::pin(async move { wait_for_file(&path).await })
            }
            _ => self.attempt(),
        }
    }

    /// Starts one attempt: checks once.
    pub(crate) fn attempt(&self) -> Attempt {
        match self.clone() {
            Probe::Tcp { host, port } => Box::pin(async move {
                connect(&host, port)
                    .await
                    .map(drop)
                    .map_err(|e| format!("connecting to {host}:{port}: {e}"))
            }),
            Probe::Http(target) => Box::pin(async move {
                let url = format!("http://{}:{}{}", target.host, target.port, target.path);
                match http_get(&target).await {
                    Ok(head) if status_is_ready(&head) => Ok(()),
                    Ok(head) => {
                        let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
                        let line = String::from_utf8_lossy(line);
                        let line = line.trim();
                        Err(if line.is_empty() {
                            format!("GET {url}: no answer")
                        } else {
                            format!("GET {url} answered {line:?}")
                        })
                    }
                    Err(e) => Err(format!("GET {url}: {e}")),
                }
            }),
            Probe::File(path) => Box::pin(async move {
                if path.exists() {
                    Ok(())
                } else {
                    Err(format!("{} does not exist", path.display()))
                }
            }),
            Probe::Exec(command) => match ExecAttempt::spawn(&command) {
                Ok(attempt) => Box::pin(attempt.succeeded(command)),
                Err(e) => Box::pin(async move { Err(format!("`{command}` could not run: {e}")) }),
            },
        }
    }
}

/// A resolution's result slot and the event that says it is filled.
type Resolution = (
    Mutex<Option<io::Result<Vec<SocketAddr>>>>,
    event_listener::Event,
);

/// Resolves once `path` exists. The parent directory is watched with inotify for entries
/// created or moved in; a path whose directory cannot be watched (it does not exist yet)
/// fails at once, and the core's schedule tries again.
async fn wait_for_file(path: &std::path::Path) -> Result<(), String> {
    use rustix::fs::inotify::WatchFlags;
    let missing = || Err(format!("{} does not exist", path.display()));
    if path.exists() {
        return Ok(());
    }
    let Some(watched) = watch_directory(
        path,
        WatchFlags::CREATE | WatchFlags::MOVED_TO | WatchFlags::ATTRIB,
    ) else {
        return missing();
    };
    loop {
        // Checked after the watch is in place: a file created in between is not missed.
        if path.exists() {
            return Ok(());
        }
        match watched.next_events().await {
            Some(false) => {}
            // The directory itself went away (the core's schedule tries again), or the
            // descriptor failed.
            _ if path.exists() => return Ok(()),
            _ => return missing(),
        }
    }
}

/// What a `file:` health check looks at, watched between its attempts: resolves once
/// `path`'s presence is no longer `present` (the file was created, or removed or moved
/// away) or its directory went away, told by inotify. It never resolves when the
/// directory cannot be watched: the check's interval alone applies then.
pub(crate) fn watch_file(path: PathBuf, present: bool) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    use rustix::fs::inotify::WatchFlags;
    Box::pin(async move {
        let events =
            WatchFlags::CREATE | WatchFlags::MOVED_TO | WatchFlags::DELETE | WatchFlags::MOVED_FROM;
        let Some(watched) = watch_directory(&path, events) else {
            return futures_lite::future::pending().await;
        };
        loop {
            // Checked after the watch is in place: a change in between is not missed.
            if path.exists() != present {
                return;
            }
            match watched.next_events().await {
                Some(false) => {}
                Some(true) => return,
                None => return futures_lite::future::pending().await,
            }
        }
    })
}

/// An inotify watch on the directory of `path` for `events` (and for the directory's own
/// removal), in the reactor; `None` when the directory cannot be watched.
fn watch_directory(
    path: &std::path::Path,
    events: rustix::fs::inotify::WatchFlags,
) -> Option<Watched> {
    use rustix::fs::inotify;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).ok()?;
    let events = events | inotify::WatchFlags::DELETE_SELF | inotify::WatchFlags::MOVE_SELF;
    if inotify::add_watch(&fd, &dir, events).is_err() {
        close_later(fd);
        return None;
    }
    Async::new(fd).ok().map(|fd| Watched(Some(fd)))
}

/// An inotify descriptor in the reactor; closed on the closing thread when dropped.
struct Watched(Option<Async<std::os::fd::OwnedFd>>);

impl Watched {
    /// Waits for events and reads every one queued: `Some(true)` when the watched
    /// directory itself went away, `None` when the descriptor failed.
    async fn next_events(&self) -> Option<bool> {
        use rustix::fs::inotify;
        let fd = self.0.as_ref()?;
        fd.readable().await.ok()?;
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1024];
        let mut reader = inotify::Reader::new(fd.get_ref(), &mut buf);
        let mut gone = false;
        while let Ok(event) = reader.next() {
            gone |= event
                .events()
                .intersects(inotify::ReadFlags::DELETE_SELF | inotify::ReadFlags::MOVE_SELF);
        }
        Some(gone)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(fd) = self.0.take().and_then(|fd| fd.into_inner().ok()) {
            close_later(fd);
        }
    }
}

/// Closes `fd` on a thread of its own: closing an inotify descriptor waits for the kernel
/// to retire its watches (an RCU grace period, several milliseconds), which must not hold
/// up the driver thread — a `file:` check would be seen ready that much later.
fn close_later(fd: std::os::fd::OwnedFd) {
    use std::sync::mpsc::{channel, Sender};
    static CLOSER: std::sync::OnceLock<Option<Mutex<Sender<std::os::fd::OwnedFd>>>> =
        std::sync::OnceLock::new();
    let closer = CLOSER.get_or_init(|| {
        let (send, receive) = channel::<std::os::fd::OwnedFd>();
        std::thread::Builder::new()
            .name("podvisor-close".into())
            .spawn(move || receive.into_iter().for_each(drop))
            .ok()
            .map(|_| Mutex::new(send))
    });
    match closer {
        Some(send) => {
            let send = send.lock().unwrap_or_else(|e| e.into_inner());
            // If the thread is gone, the descriptor comes back and is closed here.
            if let Err(returned) = send.send(fd) {
                drop(returned.0);
            }
        }
        None => drop(fd),
    }
}

/// Resolves `host` without blocking the driver thread: literals and `localhost` at once,
/// other names on a short-lived thread of their own.
async fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ]);
    }
    let slot: Arc<Resolution> = Arc::new((Mutex::new(None), event_listener::Event::new()));
    let for_thread = slot.clone();
    let name = host.to_string();
    std::thread::Builder::new()
        .name("podvisor-resolve".into())
        .spawn(move || {
            let result = (name.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect);
            *for_thread.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
            for_thread.1.notify(usize::MAX);
        })?;
    loop {
        let listener = slot.1.listen();
        if let Some(result) = slot.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return result;
        }
        listener.await;
    }
}

/// A connection to a loopback address, tried at once on the driver thread: the kernel
/// answers a loopback connect (accepted or refused) before `connect` returns, so a probe
/// that fails costs two system calls and no round through the reactor. `None` when the
/// answer did not come within a millisecond (a listener whose backlog is full): the caller
/// then connects the usual way.
fn connect_loopback_now(address: SocketAddr) -> Option<io::Result<TcpStream>> {
    use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
    let family = match address {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let socket =
        rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None).ok()?;
    sockopt::set_socket_timeout(
        &socket,
        sockopt::Timeout::Send,
        Some(std::time::Duration::from_millis(1)),
    )
    .ok()?;
    match rustix::net::connect(&socket, &address) {
        Ok(()) => Some(Ok(TcpStream::from(socket))),
        // Not answered within the timeout (rounded up to the kernel's tick), or a signal
        // came in between: the usual way.
        Err(rustix::io::Errno::INPROGRESS | rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {
            None
        }
        Err(e) => Some(Err(e.into())),
    }
}

/// Connects to the first address of `host` that accepts.
async fn connect(host: &str, port: u16) -> io::Result<Async<TcpStream>> {
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{host} resolved to no address"),
    );
    for address in resolve(host, port).await? {
        if address.ip().is_loopback() {
            match connect_loopback_now(address) {
                Some(Ok(stream)) => match Async::new(stream) {
                    Ok(stream) => return Ok(stream),
                    Err(e) => last = e,
                },
                Some(Err(e)) => last = e,
                None => match Async::<TcpStream>::connect(address).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) => last = e,
                },
            }
            continue;
        }
        match Async::<TcpStream>::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// One HTTP/1.1 GET; returns the head of the answer (a 2xx or 3xx status line means
/// ready). Redirects are not followed.
async fn http_get(target: &HttpTarget) -> io::Result<Vec<u8>> {
    let mut stream = connect(&target.host, target.port).await?;
    let host = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: podvisor\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

/// Whether an HTTP response starting with `head` has a 2xx or 3xx status.
pub(crate) fn status_is_ready(head: &[u8]) -> bool {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    version.starts_with(b"HTTP/")
        && code.len() == 3
        && code.iter().all(u8::is_ascii_digit)
        && matches!(code[0], b'2' | b'3')
}

/// A probe command, in its own process group; dropping it before it ends kills the group
/// (async-process then reaps the child in the background).
struct ExecAttempt {
    child: async_process::Child,
    done: bool,
}

impl ExecAttempt {
    fn spawn(command: &str) -> io::Result<ExecAttempt> {
        let mut std_command = std::process::Command::new("sh");
        std_command.args(["-c", command]);
        os::prepare_command(&mut std_command, true, None, None, true);
        let mut command = async_process::Command::from(std_command);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = crate::reaper::spawn_claimed_here(|| command.spawn())?;
        Ok(ExecAttempt { child, done: false })
    }

    async fn succeeded(mut self, command: String) -> Result<(), String> {
        let status = self.child.status().await;
        self.done = true;
        match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("`{command}` ended with {s}")),
            Err(e) => Err(format!("`{command}`: {e}")),
        }
    }
}

impl Drop for ExecAttempt {
    fn drop(&mut self) {
        if !self.done {
            let _ = os::signal_group(self.child.id(), Signal::KILL);
        }
        crate::reaper::release(self.child.id());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port() {
        assert_eq!(
            split_host_port("localhost:80", None),
            Ok(("localhost".into(), 80))
        );
        assert_eq!(split_host_port("[::1]:9", None), Ok(("::1".into(), 9)));
        assert_eq!(
            split_host_port("example.com", Some(80)),
            Ok(("example.com".into(), 80))
        );
        assert!(split_host_port("example.com", None)
            .unwrap_err()
            .contains("HOST:PORT"));
        assert!(split_host_port("h:0", None)
            .unwrap_err()
            .contains("1 to 65535"));
        assert!(split_host_port("h:http", None)
            .unwrap_err()
            .contains("not a number"));
        assert!(split_host_port(":80", None)
            .unwrap_err()
            .contains("host is empty"));
        assert!(split_host_port("[::1", None).unwrap_err().contains("']'"));
        assert!(split_host_port("[::1]x", None)
            .unwrap_err()
            .contains("':PORT'"));
    }

    #[test]
    fn http_urls() {
        let t = HttpTarget::parse("http://127.0.0.1:8000").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8000, "/")
        );
        assert!(HttpTarget::parse("ftp://x")
            .unwrap_err()
            .contains("http://"));
        assert!(HttpTarget::parse("https://x")
            .unwrap_err()
            .contains("https"));
        assert!(HttpTarget::parse("http://x/a b")
            .unwrap_err()
            .contains("whitespace"));
    }

    #[test]
    fn status_lines() {
        assert!(status_is_ready(b"HTTP/1.1 200 OK\r\n"));
        assert!(status_is_ready(b"HTTP/1.0 302 Found\r\n"));
        assert!(!status_is_ready(b"HTTP/1.1 500 Internal Server Error\r\n"));
        assert!(!status_is_ready(b"HTTP/1.1 404 Not Found\r\n"));
        assert!(!status_is_ready(b"SSH-2.0-OpenSSH\r\n"));
        assert!(!status_is_ready(b""));
    }
}
