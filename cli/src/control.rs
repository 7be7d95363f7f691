//! `podvisor up`'s control socket: where it lives, who may use it, and what it answers.
//!
//! The socket is a Unix stream socket in a directory only its owner can enter
//! (`$XDG_RUNTIME_DIR/podvisor/`, else `podvisor-UID/` in the temp directory), named after
//! a hash of the deployment file's canonical path. Every connection's peer credentials are
//! checked: only podvisor's own user (or root) is served. Requests and answers are JSON
//! lines, `{"v":1,"cmd":"ps"}`; README.md has the table.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use podvisor::core::Stream;
use podvisor::events::{EventKind, LifecycleEvent};
use podvisor::{Deployment, MemberStatus};

use crate::json::{self, Value};
use crate::logbook::LogBook;
use crate::report::{quote, Rendered, Reporter, Style};

/// The protocol's version, `"v"` in every request and answer.
pub const VERSION: u64 = 1;
/// Longest request line, in bytes (its newline included).
pub const MAX_REQUEST: usize = 64 * 1024;
/// Answer lines queued for one connection before newer ones are dropped.
pub const QUEUE: usize = 1024;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection may sit without sending a request.
const IDLE: Duration = Duration::from_secs(60);
/// Longest socket path (`sun_path` holds 108 bytes with its terminator).
const MAX_PATH: usize = 107;

/// Where the control socket of the deployment in `file` is: `socket` when given (from
/// `--socket` or `PODVISOR_SOCKET`), else in podvisor's private directory, which `create`
/// makes when it is missing. Errors are the message to show.
pub fn locate(socket: Option<&Path>, file: &Path, create: bool) -> Result<PathBuf, String> {
    if let Some(socket) = socket {
        return check_length(socket.to_path_buf());
    }
    let canonical =
        std::fs::canonicalize(file).map_err(|e| format!("{}: {}", file.display(), e))?;
    let dir = private_dir(create)?;
    let stem: String = canonical
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(24)
        .collect();
    let name = format!(
        "{stem}-{:016x}.sock",
        fnv1a(canonical.as_os_str().as_encoded_bytes())
    );
    check_length(dir.join(name))
}

fn check_length(path: PathBuf) -> Result<PathBuf, String> {
    let length = path.as_os_str().len();
    if length > MAX_PATH {
        return Err(format!(
            "control socket path {} is {length} bytes; at most {MAX_PATH} fit in a socket address (set --socket or PODVISOR_SOCKET to a shorter one)",
            path.display()
        ));
    }
    Ok(path)
}

/// FNV-1a: a hash that stays the same across builds and machines.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// podvisor's directory for control sockets, checked to be ours and private.
pub fn private_dir(create: bool) -> Result<PathBuf, String> {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(runtime) => PathBuf::from(runtime).join("podvisor"),
        None => {
            std::env::temp_dir().join(format!("podvisor-{}", rustix::process::geteuid().as_raw()))
        }
    };
    if create {
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {}", dir.display(), e)),
        }
    }
    if !create && std::fs::symlink_metadata(&dir).is_err() {
        // No directory, so no socket in it: connecting says there is no deployment.
        return Ok(dir);
    }
    check_private(&dir)?;
    Ok(dir)
}

/// `dir` must be a directory (not a link to one) owned by us with no group or other
/// permissions, as tmux requires of its socket directory.
pub fn check_private(dir: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {}", dir.display(), e))?;
    let uid = rustix::process::geteuid().as_raw();
    if !meta.file_type().is_dir() {
        return Err(format!(
            "{} is not a directory; refusing to use it for control sockets",
            dir.display()
        ));
    }
    if meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} has unsafe permissions (owner uid {}, mode {:04o}); expected a directory of uid {uid} with mode 0700: remove it or fix it (chmod 700)",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// The bound socket file; removed on drop if it is still the one we bound.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
    /// `<socket>.lock`, locked for as long as this `up` runs: the check for a stale
    /// socket, its removal and the bind are one step for two `up`s of one file.
    _lock: std::fs::File,
    lock_path: PathBuf,
    lock_id: (u64, u64),
}

impl Drop for SocketFile {
    /// Removes the socket, then the lock file, each if it is still this `up`'s. The lock
    /// is still held: an `up` that opened the file before its removal sees, once it gets
    /// the lock, that the path no longer names that file, and opens it anew.
    fn drop(&mut self) {
        let ours = |path: &Path, id| {
            std::fs::symlink_metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == id)
        };
        if ours(&self.path, self.id) {
            let _ = std::fs::remove_file(&self.path);
        }
        if ours(&self.lock_path, self.lock_id) {
            let _ = std::fs::remove_file(&self.lock_path);
        }
    }
}

/// Opens and locks `path`, the lock file of one socket. A lock file removed by the `up`
/// that held it while this one waited is opened again.
fn lock_file(path: &Path) -> Result<(std::fs::File, (u64, u64)), String> {
    use rustix::fs::{flock, FlockOperation};
    for _ in 0..16 {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(format!(
                "this deployment is already up: another podvisor holds {}",
                path.display()
            ));
        }
        let held = lock
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let id = (held.dev(), held.ino());
        if std::fs::symlink_metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == id) {
            return Ok((lock, id));
        }
    }
    Err(format!(
        "cannot lock {}: it keeps being replaced",
        path.display()
    ))
}

/// Binds the control socket at `path`: a socket file left by a podvisor that died is
/// replaced; a live one (another `up` of the same deployment) is refused, untouched.
pub fn bind(path: &Path) -> Result<(UnixListener, SocketFile), String> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let (lock, lock_id) = lock_file(&lock_path)?;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ));
        }
        match UnixStream::connect(path) {
            Ok(_) => {
                return Err(format!(
                "this deployment is already up: its control socket {} answers (see podvisor ps)",
                path.display()
            ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                // Nobody listens: the socket of an `up` that is gone.
                std::fs::remove_file(path).map_err(|e| {
                    format!(
                        "cannot remove stale control socket {}: {}",
                        path.display(),
                        e
                    )
                })?;
            }
            Err(e) => {
                return Err(format!(
                    "cannot check control socket {}: {}",
                    path.display(),
                    e
                ))
            }
        }
    }
    let listener = UnixListener::bind(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "this deployment is already up: its control socket {} exists",
                path.display()
            )
        } else {
            format!("cannot create control socket {}: {}", path.display(), e)
        }
    })?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {}", path.display(), e))?;
    Ok((
        listener,
        SocketFile {
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
            _lock: lock,
            lock_path,
            lock_id,
        },
    ))
}

/// What the server reads: the deployment, its members' output and start times.
pub struct Server {
    pub deployment: Arc<Deployment>,
    pub logs: Arc<LogBook>,
    started: Mutex<HashMap<String, SystemTime>>,
    connections: AtomicUsize,
    reporter: Reporter,
    /// The lines `up` wrote after the deployment's last event (its end), once written.
    last_lines: Mutex<Option<Vec<Rendered>>>,
    /// Streams (`events`, `logs --follow`) still sending; `up` waits for them at its end.
    streams: Mutex<usize>,
    changed: Condvar,
}

/// How long `events` waits, after the deployment's last event, for `up`'s closing lines;
/// and `up`, at its end, for the streams to send their last lines.
const LAST_LINES: Duration = Duration::from_secs(5);

/// One stream being served, counted in [`Server::streams`] while it lives.
struct Streaming<'a>(&'a Server);

impl<'a> Streaming<'a> {
    fn new(server: &'a Server) -> Streaming<'a> {
        *server.streams.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Streaming(server)
    }
}

impl Drop for Streaming<'_> {
    fn drop(&mut self) {
        *self.0.streams.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.0.changed.notify_all();
    }
}

impl Server {
    pub fn new(deployment: Arc<Deployment>, logs: Arc<LogBook>, json: bool) -> Server {
        let epoch = deployment.epoch();
        Server {
            deployment,
            logs,
            started: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(0),
            reporter: Reporter::new(json, Style::Up, epoch),
            last_lines: Mutex::new(None),
            streams: Mutex::new(0),
            changed: Condvar::new(),
        }
    }

    /// Takes in the lines `up` wrote after the deployment's last event: they end every
    /// `events` stream.
    pub fn ended(&self, lines: &[Rendered]) {
        *self.last_lines.lock().unwrap_or_else(|e| e.into_inner()) = Some(lines.to_vec());
        self.changed.notify_all();
    }

    /// Waits (at most a few seconds) until every stream has sent its last line, so that
    /// `up` exits only once its followers saw the end.
    pub fn drain(&self) {
        let streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .changed
            .wait_timeout_while(streams, LAST_LINES, |n| *n > 0);
    }

    /// `up`'s closing lines, waiting (at most [`LAST_LINES`]) for them.
    fn last_lines(&self) -> Vec<Rendered> {
        let lines = self.last_lines.lock().unwrap_or_else(|e| e.into_inner());
        let (lines, _) = self
            .changed
            .wait_timeout_while(lines, LAST_LINES, |l| l.is_none())
            .unwrap_or_else(|e| e.into_inner());
        lines.clone().unwrap_or_default()
    }

    /// Takes in an event of the deployment (for members' uptimes).
    pub fn observe(&self, event: &LifecycleEvent) {
        if let EventKind::Started { .. } = event.kind {
            self.started
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(event.source.clone(), event.wall);
        }
    }

    /// Serves `listener` on a thread of its own, each connection on its own threads.
    pub fn serve(self: &Arc<Self>, listener: UnixListener) {
        let server = self.clone();
        let spawned = std::thread::Builder::new()
            .name("podvisor-control".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else {
                        // Out of descriptors, say: the connection waits in the backlog;
                        // do not spin on it.
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    let server = server.clone();
                    if server.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                        server.connections.fetch_sub(1, Ordering::SeqCst);
                        let refusal =
                            error(&format!("too many connections (at most {MAX_CONNECTIONS})"));
                        let _ = (&stream).write_all((refusal + "\n").as_bytes());
                        continue;
                    }
                    let counted = server.clone();
                    let spawned = std::thread::Builder::new()
                        .name("podvisor-client".into())
                        .spawn(move || {
                            server.connection(stream);
                            server.connections.fetch_sub(1, Ordering::SeqCst);
                        });
                    if let Err(e) = spawned {
                        // The slot taken for it is given back.
                        counted.connections.fetch_sub(1, Ordering::SeqCst);
                        say!("podvisor: control socket: cannot start a thread: {e}");
                    }
                }
            });
        if let Err(e) = spawned {
            say!("podvisor: control socket: cannot start its thread: {e}");
        }
    }

    fn connection(&self, stream: UnixStream) {
        let outbox = Arc::new(Outbox::default());
        let writer = match stream.try_clone() {
            Ok(writer) => writer,
            Err(_) => return,
        };
        let writing = {
            let outbox = outbox.clone();
            std::thread::Builder::new()
                .name("podvisor-client-out".into())
                .spawn(move || outbox.write_to(writer))
        };
        let Ok(writing) = writing else { return };
        self.requests(&stream, &outbox);
        outbox.finish();
        let _ = writing.join();
    }

    /// Reads and answers the requests of one connection.
    fn requests(&self, stream: &UnixStream, outbox: &Arc<Outbox>) {
        match rustix::net::sockopt::socket_peercred(stream) {
            Ok(peer) => {
                let uid = peer.uid.as_raw();
                let ours = rustix::process::geteuid().as_raw();
                if uid != ours && uid != 0 {
                    outbox.push(error(&format!(
                        "permission denied: this deployment belongs to uid {ours}; uid {uid} may not control it"
                    )));
                    return;
                }
            }
            Err(e) => {
                outbox.push(error(&format!(
                    "permission denied: no peer credentials ({e})"
                )));
                return;
            }
        }
        let _ = stream.set_read_timeout(Some(IDLE));
        let mut reader = BufReader::new(stream);
        loop {
            let line = match read_line(&mut reader) {
                Ok(Some(line)) => line,
                Ok(None) | Err(ReadError::Io) => return,
                Err(ReadError::TooLong) => {
                    outbox.push(error(&format!(
                        "request line longer than {MAX_REQUEST} bytes; closing the connection"
                    )));
                    return;
                }
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let request = match parse_request(&line) {
                Ok(request) => request,
                Err(message) => {
                    outbox.push(error(&message));
                    continue;
                }
            };
            if !self.answer(request, stream, outbox) {
                return;
            }
        }
    }

    /// Answers one request; `false` when the connection is done (a stream was served).
    fn answer(&self, request: Request, stream: &UnixStream, outbox: &Arc<Outbox>) -> bool {
        let members = self.deployment.members();
        if let Err(message) = check_names(&request.names, &members) {
            outbox.push(error(&message));
            return true;
        }
        match request.cmd.as_str() {
            "ps" => {
                outbox.push(self.ps(&members));
                true
            }
            "logs" => {
                self.logs(&request, stream, outbox);
                false
            }
            "events" => {
                self.events(stream, outbox);
                false
            }
            "down" => {
                self.reporter.note(
                    "deployment",
                    "closing",
                    "closing: asked by podvisor down",
                    &[],
                );
                // The answer goes out before the close: the deployment may end, and
                // podvisor exit, right after it.
                outbox.push(ok(""));
                outbox.wait_sent(Duration::from_secs(2));
                self.deployment.close_nowait(None);
                // The answer's connection stays open until the deployment has ended.
                let mut events = self.deployment.events();
                while events.next_blocking().is_some() {}
                false
            }
            "stop" | "start" | "restart" => {
                outbox.push(member_action(
                    &self.deployment,
                    &request.cmd,
                    &request.names,
                    request.no_deps,
                ));
                true
            }
            other => {
                outbox.push(error(&format!(
                    "unknown command {}; expected ps, logs, events, down, stop, start or restart",
                    quote(other)
                )));
                true
            }
        }
    }

    fn ps(&self, members: &[MemberStatus]) -> String {
        let started = self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let now = SystemTime::now();
        let rows: Vec<String> = members
            .iter()
            .map(|m| {
                let uptime = started
                    .get(&m.name)
                    .filter(|_| m.state.is_running())
                    .and_then(|at| now.duration_since(*at).ok())
                    .map_or("null".to_string(), |d| format!("{:.3}", d.as_secs_f64()));
                let health = m.health.map_or("null".to_string(), |h| quote(&health_name(h)));
                let pid = m
                    .pid
                    .filter(|_| m.state.is_running())
                    .map_or("null".to_string(), |p| p.to_string());
                let last_exit = m
                    .last_end
                    .and_then(|e| e.status())
                    .map_or("null".to_string(), |s| crate::exit::of_status(s).to_string());
                let failure = m.health_failure.as_ref();
                let health_check = failure.map_or("null".to_string(), |f| quote(&f.check));
                let health_failures = failure.map_or(0, |f| f.failures);
                let health_message = m
                    .health_message
                    .as_deref()
                    .map_or("null".to_string(), quote);
                format!(
                    "{{\"name\":{},\"state\":{},\"health\":{health},\"health_check\":{health_check},\"health_failures\":{health_failures},\"health_message\":{health_message},\"pid\":{pid},\"uptime\":{uptime},\"restarts\":{},\"last_exit\":{last_exit}}}",
                    quote(&m.name),
                    quote(m.state.name()),
                    m.restarts
                )
            })
            .collect();
        format!(
            "{{\"v\":{VERSION},\"ok\":true,\"state\":{},\"members\":[{}]}}",
            quote(self.deployment.state().name()),
            rows.join(",")
        )
    }

    fn logs(&self, request: &Request, stream: &UnixStream, outbox: &Arc<Outbox>) {
        let _streaming = Streaming::new(self);
        let names = request.names.clone();
        let wanted = move |member: &str| {
            names.is_empty()
                || names
                    .iter()
                    .any(|n| n == member || member.split('/').next() == Some(n.as_str()))
        };
        let (lines, mut next) = self.logs.tail(&wanted, request.tail);
        outbox.push(ok(""));
        for line in &lines {
            outbox.push(log_line(line));
        }
        if !request.follow {
            outbox.push(done());
            return;
        }
        watch_for_close(stream, outbox);
        while !outbox.is_closed() {
            let (lines, after, closed) = self.logs.since(&wanted, next, Duration::from_millis(500));
            next = after;
            for line in &lines {
                outbox.push(log_line(line));
            }
            if closed {
                outbox.push(done());
                outbox.wait_sent(LAST_LINES);
                return;
            }
        }
    }

    fn events(&self, stream: &UnixStream, outbox: &Arc<Outbox>) {
        let _streaming = Streaming::new(self);
        let mut events = self.deployment.events();
        outbox.push(ok(""));
        watch_for_close(stream, outbox);
        futures_lite::future::block_on(async {
            while !outbox.is_closed() {
                let next = async { Some(events.next().await) };
                let tick = async {
                    async_io::Timer::after(Duration::from_millis(500)).await;
                    None
                };
                match futures_lite::future::or(next, tick).await {
                    Some(Some(event)) => {
                        if let Some((text, json)) = self.reporter.render(&event) {
                            outbox.push(format!(
                                "{{\"v\":{VERSION},\"event\":{json},\"text\":{}}}",
                                quote(&text)
                            ));
                        }
                    }
                    Some(None) => {
                        // The deployment's end, as `up` wrote it, then the stream's.
                        for (text, json) in self.last_lines() {
                            outbox.push(format!(
                                "{{\"v\":{VERSION},\"event\":{json},\"text\":{}}}",
                                quote(&text)
                            ));
                        }
                        outbox.push(done());
                        outbox.wait_sent(LAST_LINES);
                        return;
                    }
                    None => {}
                }
            }
        });
    }
}

/// `stop`, `start` and `restart` of members (a replica, or every replica of a pod): the
/// deployment decides; the answer says, per member, what was asked for or that nothing
/// was needed, each member named once, the dependents a stop or restart takes along after
/// the member they depend on. The names were checked against the deployment's members
/// already.
fn member_action(deployment: &Deployment, cmd: &str, names: &[String], no_deps: bool) -> String {
    let mut rows: Vec<(String, podvisor::MemberControl)> = Vec::new();
    for name in names {
        let result = match cmd {
            "stop" => deployment.stop_member(name, !no_deps),
            "start" => deployment.start_member(name),
            _ => deployment.restart_member(name),
        };
        match result {
            Ok(done) => {
                for (member, control) in done {
                    if !rows.iter().any(|(seen, _)| *seen == member) {
                        rows.push((member, control));
                    }
                }
            }
            Err(e) => return error(&format!("{cmd} {name}: {e}")),
        }
    }
    let members: Vec<String> = rows
        .iter()
        .map(|(name, done)| {
            format!(
                "{{\"name\":{},\"result\":{}}}",
                quote(name),
                quote(&done.to_string())
            )
        })
        .collect();
    ok(&format!(",\"members\":[{}]", members.join(",")))
}

fn health_name(health: podvisor::Health) -> String {
    match health {
        podvisor::Health::Healthy => "healthy".to_string(),
        podvisor::Health::Unhealthy(_) => "unhealthy".to_string(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Every name must be a member (`web/0`) or a pod of the file (`web`, all its replicas).
fn check_names(names: &[String], members: &[MemberStatus]) -> Result<(), String> {
    for name in names {
        let known = members
            .iter()
            .any(|m| m.name == *name || m.name.split('/').next() == Some(name.as_str()));
        if !known {
            let all: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
            let mut pods: Vec<&str> = all.iter().filter_map(|n| n.split('/').next()).collect();
            pods.dedup();
            let candidates: Vec<&str> = all.iter().chain(pods.iter()).copied().collect();
            let hint = crate::args::did_you_mean(name, &candidates)
                .map_or(String::new(), |k| format!("; did you mean {k}?"));
            return Err(format!(
                "unknown member {}{hint} (members: {})",
                quote(name),
                all.join(", ")
            ));
        }
    }
    Ok(())
}

/// A request as read from its line.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub cmd: String,
    pub names: Vec<String>,
    pub tail: Option<usize>,
    pub follow: bool,
    /// `stop` only: leave the members that depend on it running.
    pub no_deps: bool,
}

/// Reads a request line: a JSON object with `v` and `cmd`, and per command `names`,
/// `tail`, `follow`.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(line).map_err(|_| "bad request: not UTF-8".to_string())?;
    let value = json::parse(text).map_err(|e| format!("bad request: {e}"))?;
    if !matches!(value, Value::Object(_)) {
        return Err("bad request: expected a JSON object like {\"v\":1,\"cmd\":\"ps\"}".into());
    }
    match value.get("v") {
        Some(v) if v.as_u64() == Some(VERSION) => {}
        Some(v) => {
            return Err(format!(
                "unsupported protocol version {}; this podvisor speaks version {VERSION}",
                v.to_json()
            ))
        }
        None => {
            return Err(format!(
                "bad request: missing \"v\" (the protocol version, {VERSION})"
            ))
        }
    }
    let cmd = value
        .get("cmd")
        .and_then(Value::as_str)
        .ok_or("bad request: missing \"cmd\", a string")?
        .to_string();
    let names = match value.get("names") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or("bad request: \"names\" must be an array of strings")?,
        Some(_) => return Err("bad request: \"names\" must be an array of strings".into()),
    };
    let tail = match value.get("tail") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or("bad request: \"tail\" must be a whole number of 0 or more")?,
        ),
    };
    let follow = match value.get("follow") {
        None | Some(Value::Null) => false,
        Some(v) => v
            .as_bool()
            .ok_or("bad request: \"follow\" must be true or false")?,
    };
    let no_deps = match value.get("no_deps") {
        None | Some(Value::Null) => false,
        Some(v) => v
            .as_bool()
            .ok_or("bad request: \"no_deps\" must be true or false")?,
    };
    if matches!(cmd.as_str(), "stop" | "start" | "restart") && names.is_empty() {
        return Err(format!("bad request: {cmd} needs \"names\""));
    }
    Ok(Request {
        cmd,
        names,
        tail,
        follow,
        no_deps,
    })
}

enum ReadError {
    TooLong,
    Io,
}

/// One line of at most [`MAX_REQUEST`] bytes, without its newline; `None` at the end.
fn read_line(reader: &mut impl BufRead) -> Result<Option<Vec<u8>>, ReadError> {
    let mut line = Vec::new();
    let limit = MAX_REQUEST as u64;
    match reader.take(limit).read_until(b'\n', &mut line) {
        Ok(0) => Ok(None),
        Ok(_) if line.last() == Some(&b'\n') => {
            line.pop();
            Ok(Some(line))
        }
        Ok(n) if n as u64 >= limit => Err(ReadError::TooLong),
        // The end of the stream without a newline: the last line.
        Ok(_) => Ok(Some(line)),
        Err(_) => Err(ReadError::Io),
    }
}

/// Marks `outbox` closed once the client closes its end (or sends more: a stream takes
/// the whole connection).
fn watch_for_close(stream: &UnixStream, outbox: &Arc<Outbox>) {
    let (Ok(mut stream), outbox) = (stream.try_clone(), outbox.clone()) else {
        return;
    };
    let _ = stream.set_read_timeout(None);
    let _ = std::thread::Builder::new()
        .name("podvisor-client-in".into())
        .spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
            outbox.close();
        });
}

fn ok(fields: &str) -> String {
    format!("{{\"v\":{VERSION},\"ok\":true{fields}}}")
}

fn done() -> String {
    format!("{{\"v\":{VERSION},\"done\":true}}")
}

/// An error answer.
pub fn error(message: &str) -> String {
    format!(
        "{{\"v\":{VERSION},\"ok\":false,\"error\":{}}}",
        quote(message)
    )
}

fn log_line(line: &crate::logbook::Line) -> String {
    let stream = match line.stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    format!(
        "{{\"v\":{VERSION},\"pod\":{},\"stream\":\"{stream}\",\"line\":{}}}",
        quote(&line.member),
        quote(&line.text)
    )
}

/// One connection's answers on their way out: a bounded queue written by a thread of its
/// own, so that a client that stops reading only loses lines (told by a
/// `{"event":"lagged","missed":N}` line) and never holds up the deployment.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: Mutex<Queue>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Queue {
    lines: std::collections::VecDeque<String>,
    missed: u64,
    /// The client is gone: nothing more is written.
    closed: bool,
    /// Nothing more will be queued: write the rest, then end.
    finished: bool,
    /// A line taken from the queue is being written.
    writing: bool,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a line (without or with its newline); drops it when the queue is full.
    pub fn push(&self, line: String) {
        let mut queue = self.lock();
        if queue.closed {
            return;
        }
        if queue.lines.len() >= QUEUE {
            queue.missed += 1;
            return;
        }
        if queue.missed > 0 {
            let missed = std::mem::take(&mut queue.missed);
            queue.lines.push_back(format!(
                "{{\"v\":{VERSION},\"event\":\"lagged\",\"missed\":{missed}}}"
            ));
        }
        queue.lines.push_back(line);
        drop(queue);
        self.changed.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    fn finish(&self) {
        self.lock().finished = true;
        self.changed.notify_all();
    }

    /// Waits (at most `limit`) until every queued line has been written, or the client is
    /// gone: before something that may end podvisor, such as `down`.
    fn wait_sent(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        let mut queue = self.lock();
        while !queue.closed && (queue.writing || !queue.lines.is_empty()) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            queue = self
                .changed
                .wait_timeout(queue, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Writes the queued lines to `stream` until finished and empty, or the client is gone.
    fn write_to(&self, mut stream: UnixStream) {
        loop {
            let line = {
                let mut queue = self.lock();
                loop {
                    if queue.closed {
                        return;
                    }
                    if let Some(line) = queue.lines.pop_front() {
                        queue.writing = true;
                        // Room again: the client learns of the lines it lost, even when no
                        // more come (the marker goes where the gap is, after the queue).
                        if queue.missed > 0 {
                            let missed = std::mem::take(&mut queue.missed);
                            queue.lines.push_back(format!(
                                "{{\"v\":{VERSION},\"event\":\"lagged\",\"missed\":{missed}}}"
                            ));
                        }
                        break line;
                    }
                    if queue.finished {
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    queue = self.changed.wait(queue).unwrap_or_else(|e| e.into_inner());
                }
            };
            let line = if line.ends_with('\n') {
                line
            } else {
                line + "\n"
            };
            let written = stream.write_all(line.as_bytes());
            self.lock().writing = false;
            self.changed.notify_all();
            if written.is_err() {
                self.close();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let request =
            parse_request(br#"{"v":1,"cmd":"logs","names":["web"],"tail":5,"follow":true}"#)
                .unwrap();
        assert_eq!(
            request,
            Request {
                cmd: "logs".into(),
                names: vec!["web".into()],
                tail: Some(5),
                follow: true,
                no_deps: false,
            }
        );
        for (line, needle) in [
            (&b"nope"[..], "bad request"),
            (b"[1]", "expected a JSON object"),
            (b"{\"cmd\":\"ps\"}", "missing \"v\""),
            (
                b"{\"v\":1,\"cmd\":\"stop\",\"names\":[\"a\"],\"no_deps\":1}",
                "\"no_deps\" must be true or false",
            ),
            (
                b"{\"v\":2,\"cmd\":\"ps\"}",
                "unsupported protocol version 2",
            ),
            (b"{\"v\":1}", "missing \"cmd\""),
            (
                b"{\"v\":1,\"cmd\":\"logs\",\"names\":\"web\"}",
                "array of strings",
            ),
            (b"{\"v\":1,\"cmd\":\"logs\",\"tail\":-1}", "\"tail\""),
            (b"{\"v\":1,\"cmd\":\"logs\",\"follow\":1}", "\"follow\""),
            (b"{\"v\":1,\"cmd\":\"stop\"}", "stop needs \"names\""),
            (b"\xff", "not UTF-8"),
        ] {
            let message = parse_request(line).unwrap_err();
            assert!(message.contains(needle), "{line:?}: {message}");
        }
    }

    #[test]
    fn a_full_outbox_drops_and_says_how_many() {
        let outbox = Outbox::default();
        for i in 0..QUEUE + 3 {
            outbox.push(i.to_string());
        }
        outbox.push("after".into());
        let queue = outbox.lock();
        assert_eq!(queue.lines.len(), QUEUE);
        assert_eq!(queue.missed, 4);
        drop(queue);
        outbox.lock().lines.clear();
        outbox.push("next".into());
        let queue = outbox.lock();
        assert_eq!(
            queue.lines.iter().collect::<Vec<_>>(),
            ["{\"v\":1,\"event\":\"lagged\",\"missed\":4}", "next"]
        );
    }

    #[test]
    fn the_lag_marker_goes_out_even_when_no_line_follows() {
        let outbox = std::sync::Arc::new(Outbox::default());
        for i in 0..QUEUE + 2 {
            outbox.push(i.to_string());
        }
        outbox.finish();
        let (ours, theirs) = UnixStream::pair().unwrap();
        let writer = outbox.clone();
        let thread = std::thread::spawn(move || writer.write_to(ours));
        let mut text = String::new();
        std::io::Read::read_to_string(&mut &theirs, &mut text).unwrap();
        thread.join().unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), QUEUE + 1);
        assert_eq!(
            lines.last(),
            Some(&"{\"v\":1,\"event\":\"lagged\",\"missed\":2}")
        );
    }

    #[test]
    fn socket_names_differ_per_file_and_fit() {
        assert_ne!(fnv1a(b"/a/podvisor.toml"), fnv1a(b"/b/podvisor.toml"));
        let long = PathBuf::from("/".to_string() + &"x".repeat(120));
        assert!(check_length(long).unwrap_err().contains("at most 107"));
    }
}
