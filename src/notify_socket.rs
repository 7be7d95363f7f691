//! The per-pod notify socket: a Unix datagram socket in a private directory, passed to the
//! child as `NOTIFY_SOCKET`, speaking systemd's `sd_notify` format.

use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_io::Async;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};
use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

use crate::os;

/// Largest datagram read; longer ones are truncated and then rejected by the parser as
/// malformed only if the cut falls badly (systemd itself caps messages at a few KiB).
const MAX_DATAGRAM: usize = 4096;

/// A Unix socket path must fit in `sun_path` (108 bytes on Linux, including the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Every directory's name starts with this, then `<pid>-<start time>-<random>`: the pid
/// and start time of the podvisor process that made it (so that stale ones can be told
/// apart from live ones), and 64 random bits (so that no one can predict, and pre-create,
/// the name).
const PREFIX: &str = "podvisor-";

/// The socket's name inside its directory.
const SOCKET_NAME: &str = "notify";

/// How many fresh names to try when a name is taken.
const NAME_TRIES: usize = 64;

/// Stale directories are looked for at the first bind and then at most this often.
const CLEAN_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct NotifySocket {
    dir: PathBuf,
    path: PathBuf,
    socket: Async<UnixDatagram>,
    buf: Vec<u8>,
}

impl NotifySocket {
    /// Binds a new socket in a fresh directory with an unpredictable name under
    /// `$XDG_RUNTIME_DIR` or the temporary directory, cleaning stale directories of dead
    /// podvisors there first (now and then).
    pub(crate) fn bind() -> io::Result<NotifySocket> {
        let bases = [
            std::env::var_os("XDG_RUNTIME_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            Some(std::env::temp_dir()),
            Some(PathBuf::from("/tmp")),
        ];
        let mut last_error = None;
        for base in bases.into_iter().flatten() {
            clean_stale_now_and_then(&base);
            match NotifySocket::bind_in(&base, &mut std::iter::from_fn(|| random_name().ok())) {
                Ok(socket) => return Ok(socket),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no directory for the notify socket")))
    }

    /// Binds in a new directory under `base` named by the first of `names` that is not
    /// taken. `mkdir` makes the directory or fails: an existing one (or a symlink) is never
    /// followed nor reused.
    fn bind_in(base: &Path, names: &mut dyn Iterator<Item = String>) -> io::Result<NotifySocket> {
        let mut last_error = None;
        for name in names.take(NAME_TRIES) {
            let dir = base.join(&name);
            let path = dir.join(SOCKET_NAME);
            if path.as_os_str().len() > MAX_SOCKET_PATH {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "notify socket path {} is longer than {MAX_SOCKET_PATH} bytes",
                        path.display()
                    ),
                ));
            }
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    last_error = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            }
            let socket = match UnixDatagram::bind(&path).and_then(Async::new) {
                Ok(socket) => socket,
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    let _ = std::fs::remove_dir(&dir);
                    return Err(e);
                }
            };
            return Ok(NotifySocket {
                dir,
                path,
                socket,
                buf: vec![0; MAX_DATAGRAM],
            });
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no name for the notify directory")))
    }

    /// The socket's path, for `NOTIFY_SOCKET`.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The next datagram, if one is waiting; registers for a wake-up otherwise.
    /// File descriptors passed along (systemd-notify's barrier) are closed at once.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        loop {
            match self.try_recv_len() {
                Ok(Some(n)) => return Poll::Ready(Ok(&self.buf[..n])),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            match self.socket.poll_readable(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// The next datagram already queued, without waiting.
    pub(crate) fn try_recv(&mut self) -> io::Result<Option<&[u8]>> {
        Ok(self.try_recv_len()?.map(|n| &self.buf[..n]))
    }

    fn try_recv_len(&mut self) -> io::Result<Option<usize>> {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(&mut self.buf)];
        match recvmsg(
            self.socket.get_ref(),
            &mut iov,
            &mut control,
            RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(message) => {
                // Dropping the received descriptors closes them, which releases a sender
                // waiting on the barrier.
                for item in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(fds) = item {
                        fds.for_each(drop);
                    }
                }
                Ok(Some(message.bytes.min(self.buf.len())))
            }
            Err(rustix::io::Errno::AGAIN) => Ok(None),
            Err(rustix::io::Errno::INTR) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// `podvisor-<pid>-<start time>-<16 random hex digits>` for this process.
fn random_name() -> io::Result<String> {
    let bytes = os::random_bytes()?;
    let random: String = bytes[..8].iter().map(|b| format!("{b:02x}")).collect();
    let start = os::own_proc_stat().map_or(0, |s| s.start_time);
    Ok(format!("{PREFIX}{}-{start}-{random}", std::process::id()))
}

/// Cleans `base` at the first call and then at most every [`CLEAN_EVERY`] (a scan per
/// spawn would cost every pod a directory listing).
fn clean_stale_now_and_then(base: &Path) {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < CLEAN_EVERY) {
            return;
        }
        *last = Some(Instant::now());
    }
    clean_stale(base);
}

/// The owner a directory name claims: `podvisor-<pid>-<start time>-<random>`, or the
/// former `podvisor-<pid>-<n>` (no start time).
fn claimed_owner(name: &str) -> Option<(u32, Option<u64>)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, rest) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) {
        return None;
    }
    let pid = pid.parse().ok()?;
    match rest.split_once('-') {
        Some((start, random)) if digits(start) && !random.is_empty() => {
            Some((pid, Some(start.parse().ok()?)))
        }
        None if digits(rest) => Some((pid, None)),
        _ => None,
    }
}

/// Whether the podvisor that named a directory is gone: no process with its pid, or one
/// that started at another time (the pid was reused).
fn owner_gone(pid: u32, start_time: Option<u64>) -> bool {
    match os::proc_stat(pid) {
        None => true,
        Some(stat) => start_time.is_some_and(|t| t != 0 && t != stat.start_time),
    }
}

/// Removes the directories in `base` that a dead podvisor left behind. Only directories
/// (never symlinks) owned by this user, whose name claims an owner that is gone, and that
/// hold nothing but a socket named `notify` that no one reads (a connect is refused):
/// anything else is left alone.
fn clean_stale(base: &Path) {
    // Without /proc, the living cannot be told from the dead.
    if os::own_proc_stat().is_none() {
        return;
    }
    let Ok(base_fd) = rustix::fs::openat(
        CWD,
        base,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let uid = rustix::process::geteuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, start_time)) = name.to_str().and_then(claimed_owner) else {
            continue;
        };
        if !owner_gone(pid, start_time) {
            continue;
        }
        // O_NOFOLLOW: a symlink is not opened (ELOOP), so nothing is removed through one.
        let Ok(dir_fd) = rustix::fs::openat(
            &base_fd,
            &name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        if rustix::fs::fstat(&dir_fd).map_or(true, |st| st.st_uid != uid) {
            continue;
        }
        if let Ok(st) = rustix::fs::statat(&dir_fd, SOCKET_NAME, AtFlags::SYMLINK_NOFOLLOW) {
            if FileType::from_raw_mode(st.st_mode) == FileType::Socket {
                // Someone still reads it (say, a podvisor in another PID namespace whose
                // pid means nothing here): it is not stale.
                let live = UnixDatagram::unbound()
                    .and_then(|s| s.connect(base.join(&name).join(SOCKET_NAME)))
                    .is_ok();
                if live {
                    continue;
                }
                let _ = rustix::fs::unlinkat(&dir_fd, SOCKET_NAME, AtFlags::empty());
            }
        }
        // Fails, and leaves it, if anything else is in it.
        let _ = rustix::fs::unlinkat(&base_fd, &name, AtFlags::REMOVEDIR);
    }
}

/// Sends one datagram to the notify socket at `path` (a filesystem path, or `@name` for
/// Linux's abstract namespace, as systemd may use).
pub(crate) fn send(
    socket: &UnixDatagram,
    path: &std::ffi::OsStr,
    message: &[u8],
) -> io::Result<()> {
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            return socket.send_to_addr(message, &address).map(drop);
        }
        #[cfg(not(target_os = "linux"))]
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("abstract socket {name:?}"),
        ));
    }
    socket.send_to(message, path).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh private directory for one test.
    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("notify-unit-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    fn names(list: &[&str]) -> impl Iterator<Item = String> {
        list.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn a_taken_name_is_skipped_never_followed_nor_reused() {
        let base = scratch("taken");
        let elsewhere = base.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::create_dir(base.join("a")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, base.join("b")).unwrap();
        let socket = NotifySocket::bind_in(&base, &mut names(&["a", "b", "c"])).unwrap();
        assert_eq!(socket.path(), base.join("c").join(SOCKET_NAME));
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(base.join("a")).unwrap().count(), 0);
        drop(socket);
        assert!(!base.join("c").exists());
        let error = NotifySocket::bind_in(&base, &mut names(&["a", "b"])).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_path_too_long_for_a_socket_is_refused() {
        let long = "x".repeat(120);
        let error = NotifySocket::bind_in(Path::new("/tmp"), &mut names(&[&long])).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn names_are_unpredictable_and_claim_this_process() {
        let (a, b) = (random_name().unwrap(), random_name().unwrap());
        assert_ne!(a, b);
        let start = os::own_proc_stat().unwrap().start_time;
        assert_eq!(claimed_owner(&a), Some((std::process::id(), Some(start))));
        assert!(a.starts_with(&format!("podvisor-{}-", std::process::id())));
        // The random part: 16 hex digits.
        assert_eq!(a.rsplit('-').next().unwrap().len(), 16);
        assert!(!owner_gone(std::process::id(), Some(start)));
    }

    #[test]
    fn owners_claimed_by_names() {
        assert_eq!(claimed_owner("podvisor-12-345-abc"), Some((12, Some(345))));
        assert_eq!(claimed_owner("podvisor-12-7"), Some((12, None)));
        for other in [
            "podvisor-limits-12",
            "podvisor-12",
            "podvisor-12-",
            "podvisor--1",
            "podvisor-12-x-abc",
            "podvisor-12-345-",
            "podvisor-+12-1",
            "xpodvisor-12-1",
        ] {
            assert_eq!(claimed_owner(other), None, "{other}");
        }
    }

    #[test]
    fn a_reused_pid_is_told_apart_by_its_start_time() {
        let me = std::process::id();
        let start = os::own_proc_stat().unwrap().start_time;
        assert!(owner_gone(me, Some(start + 1)));
        assert!(!owner_gone(me, None));
        assert!(!owner_gone(1, None));
        assert!(owner_gone(u32::MAX - 1, None));
    }

    #[test]
    fn stale_cleaning_takes_only_dead_owners_sockets_of_ours() {
        let base = scratch("stale");
        let start = os::own_proc_stat().unwrap().start_time;
        let me = std::process::id();
        let make = |name: &str, socket: bool| {
            let dir = base.join(name);
            std::fs::create_dir(&dir).unwrap();
            if socket {
                drop(UnixDatagram::bind(dir.join(SOCKET_NAME)).unwrap());
            }
            dir
        };
        // An earlier process with our pid (another start time), and a dead pid.
        let reused = make(&format!("podvisor-{me}-{}-aa", start + 1), true);
        let dead = make(&format!("podvisor-{}-9-bb", u32::MAX - 1), true);
        let empty = make(&format!("podvisor-{}-3", u32::MAX - 1), false);
        // Kept: ours, alive; a file in place of the socket; a socket someone still reads.
        let live = make(&format!("podvisor-{me}-{start}-cc"), true);
        let read = base.join(format!("podvisor-{}-9-ee", u32::MAX - 1));
        std::fs::create_dir(&read).unwrap();
        let reader = UnixDatagram::bind(read.join(SOCKET_NAME)).unwrap();
        let data = make(&format!("podvisor-{}-9-dd", u32::MAX - 1), false);
        std::fs::write(data.join(SOCKET_NAME), "data").unwrap();
        clean_stale(&base);
        for gone in [&reused, &dead, &empty] {
            assert!(!gone.exists(), "{gone:?} kept");
        }
        assert!(live.join(SOCKET_NAME).exists());
        assert!(read.join(SOCKET_NAME).exists());
        drop(reader);
        assert_eq!(
            std::fs::read_to_string(data.join(SOCKET_NAME)).unwrap(),
            "data"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
