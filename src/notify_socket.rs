//! The per-pod notify socket: a Unix datagram socket in a directory of its own, passed to
//! the child as `NOTIFY_SOCKET`, speaking systemd's `sd_notify` format.
//!
//! Who may notify is decided by the sender's credentials, not by file modes (as systemd
//! does): the directory (mode 0711, an unpredictable name) and the socket (0777) let a pod
//! that changed its uid reach the socket, and each datagram is taken only if the kernel's
//! `SCM_CREDENTIALS` name a process of the pod ([`is_pod_member`]); others are counted and
//! dropped.

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

/// The directory: others may pass through it to the socket, not list it.
const DIR_MODE: u32 = 0o711;

/// The socket: anyone may write (a pod may change its uid); the credentials decide.
const SOCKET_MODE: u32 = 0o777;

/// How far up the parent chain a sender is followed to the pod's leader.
const MAX_ANCESTRY: usize = 256;

#[derive(Debug)]
pub(crate) struct NotifySocket {
    dir: PathBuf,
    path: PathBuf,
    socket: Async<UnixDatagram>,
    buf: Vec<u8>,
    /// The pod's leader (and process group), once spawned.
    leader: Option<u32>,
    /// The pod's cgroup's `cgroup.procs`, when it has a cgroup.
    cgroup_procs: Option<PathBuf>,
}

/// One datagram received, and whether its sender is one of the pod's processes.
#[derive(Debug)]
pub(crate) struct Datagram<'a> {
    /// The bytes (cut at the buffer's size).
    pub(crate) bytes: &'a [u8],
    /// Whether the sender is a member of the pod ([`is_pod_member`]); a datagram from
    /// outside is to be counted and otherwise ignored.
    pub(crate) from_pod: bool,
}

impl NotifySocket {
    /// Binds a new socket in a fresh directory with an unpredictable name under
    /// `$XDG_RUNTIME_DIR` or the temporary directory, cleaning stale directories of dead
    /// podvisors there first (now and then). As root, a base that other users may pass
    /// through is preferred (`$XDG_RUNTIME_DIR` is usually closed): a pod that drops its
    /// privileges must still reach the socket.
    pub(crate) fn bind() -> io::Result<NotifySocket> {
        let mut bases: Vec<PathBuf> = [
            std::env::var_os("XDG_RUNTIME_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            Some(std::env::temp_dir()),
            Some(PathBuf::from("/tmp")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if rustix::process::geteuid().is_root() {
            // Those others may pass through first, in their order.
            bases.sort_by_key(|base| !open_to_others(base));
        }
        let mut last_error = None;
        for base in bases {
            clean_stale_now_and_then(&base);
            match NotifySocket::bind_in(&base, &mut std::iter::repeat_with(random_name)) {
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
            let socket = match open_up_and_bind(&dir, &path) {
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
                leader: None,
                cgroup_procs: None,
            });
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no name for the notify directory")))
    }

    /// The socket's path, for `NOTIFY_SOCKET`.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// From now on, datagrams are taken from the processes of the pod led by `leader` (its
    /// pid and process group id) whose cgroup, if it has one, lists its processes in
    /// `cgroup_procs`; before, from no one.
    pub(crate) fn set_pod(&mut self, leader: u32, cgroup_procs: Option<PathBuf>) {
        self.leader = Some(leader);
        self.cgroup_procs = cgroup_procs;
    }

    /// The next datagram, if one is waiting; registers for a wake-up otherwise.
    /// File descriptors passed along (systemd-notify's barrier) are closed at once, after
    /// the sender was checked (a sender waiting on the barrier is still alive then).
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Datagram<'_>>> {
        loop {
            match self.try_recv_len() {
                Ok(Some((n, from_pod))) => {
                    return Poll::Ready(Ok(Datagram {
                        bytes: &self.buf[..n],
                        from_pod,
                    }))
                }
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
    pub(crate) fn try_recv(&mut self) -> io::Result<Option<Datagram<'_>>> {
        Ok(self.try_recv_len()?.map(|(n, from_pod)| Datagram {
            bytes: &self.buf[..n],
            from_pod,
        }))
    }

    fn try_recv_len(&mut self) -> io::Result<Option<(usize, bool)>> {
        let mut space =
            [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8), ScmCredentials(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(&mut self.buf)];
        match recvmsg(
            self.socket.get_ref(),
            &mut iov,
            &mut control,
            RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(message) => {
                let mut sender = None;
                let mut fds = Vec::new();
                for item in control.drain() {
                    match item {
                        RecvAncillaryMessage::ScmCredentials(credentials) => {
                            // The kernel's pid of the sender, in this PID namespace.
                            sender = Some(credentials.pid.as_raw_nonzero().get());
                        }
                        RecvAncillaryMessage::ScmRights(received) => fds.extend(received),
                        _ => {}
                    }
                }
                // Checked while a barrier sender still waits for its descriptor to close.
                let from_pod = is_pod_member(sender, self.leader, self.cgroup_procs.as_deref());
                // Closing the received descriptors releases a sender waiting on the barrier.
                drop(fds);
                Ok(Some((message.bytes.min(self.buf.len()), from_pod)))
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

/// Whether a datagram whose `SCM_CREDENTIALS` name `sender` comes from the pod led by
/// `leader` (systemd's `NotifyAccess=all`, limited to the pod's own processes): the
/// leader; a process in the leader's process group; a descendant of the leader (followed
/// up the parent chain, so one that left the group with `setsid` still counts); a process
/// in the pod's cgroup (listed in `cgroup_procs`: also an orphan reparented away from the
/// pod); or podvisor's own pid, which only podvisor itself or a privileged sender can
/// claim (as root, `systemd-notify` reports its parent's pid, and a leader's parent is
/// podvisor). A sender that is gone (and reaped) by the time the datagram is read, an
/// orphan reparented away from a pod without a cgroup, pid 0 (a sender in a PID namespace
/// not visible here) or no credentials at all: not the pod's.
pub(crate) fn is_pod_member(
    sender: Option<i32>,
    leader: Option<u32>,
    cgroup_procs: Option<&Path>,
) -> bool {
    let (Some(sender), Some(leader)) = (sender, leader) else {
        return false;
    };
    let Some(sender) = u32::try_from(sender).ok().filter(|&p| p > 0) else {
        return false;
    };
    if sender == leader || sender == std::process::id() {
        return true;
    }
    descends_from(sender, leader) || cgroup_procs.is_some_and(|procs| lists(procs, sender))
}

/// Whether `pid`, or one of its ancestors, is `leader` or in its process group.
fn descends_from(pid: u32, leader: u32) -> bool {
    let mut pid = pid;
    for _ in 0..MAX_ANCESTRY {
        let Some(stat) = os::proc_stat(pid) else {
            return false;
        };
        if stat.pgid == leader || stat.ppid == leader {
            return true;
        }
        if stat.ppid <= 1 || stat.ppid == pid {
            return false;
        }
        pid = stat.ppid;
    }
    false
}

/// Whether the `cgroup.procs` file at `procs` lists `pid`.
fn lists(procs: &Path, pid: u32) -> bool {
    std::fs::read_to_string(procs)
        .is_ok_and(|text| text.lines().any(|l| l.trim().parse() == Ok(pid)))
}

/// Whether users other than the owner may pass through directory `dir`.
fn open_to_others(dir: &Path) -> bool {
    rustix::fs::stat(dir).is_ok_and(|st| st.st_mode & 0o001 != 0)
}

/// Opens the fresh directory `dir` to others (mode [`DIR_MODE`], whatever the umask) and
/// binds the socket at `path` in it with SO_PASSCRED and mode [`SOCKET_MODE`].
fn open_up_and_bind(dir: &Path, path: &Path) -> io::Result<Async<UnixDatagram>> {
    let dir_fd = rustix::fs::openat(
        CWD,
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::fchmod(&dir_fd, Mode::from_raw_mode(DIR_MODE))?;
    let socket = UnixDatagram::bind(path)?;
    rustix::net::sockopt::set_socket_passcred(&socket, true)?;
    rustix::fs::chmodat(
        &dir_fd,
        SOCKET_NAME,
        Mode::from_raw_mode(SOCKET_MODE),
        AtFlags::empty(),
    )?;
    Async::new(socket)
}

/// `podvisor-<pid>-<start time>-<16 random hex digits>` for this process.
fn random_name() -> String {
    let me = std::process::id();
    format!(
        "{PREFIX}{me}-{}-{:016x}",
        own_start_time(me),
        os::random_u64()
    )
}

/// This process's start time (0 if unknown), read once per pid.
fn own_start_time(me: u32) -> u64 {
    static KNOWN: Mutex<Option<(u32, u64)>> = Mutex::new(None);
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    match *known {
        Some((pid, start)) if pid == me => start,
        _ => {
            let start = os::own_proc_stat().map_or(0, |s| s.start_time);
            *known = Some((me, start));
            start
        }
    }
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
    use std::os::unix::process::CommandExt;

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
        let (a, b) = (random_name(), random_name());
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
    fn pod_membership_by_pid() {
        let me = std::process::id();
        // A pod of our own making: a leader with a child in its group and a grandchild
        // in a session of its own.
        let mut leader = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sh -c 'setsid sleep 30 & wait' & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = leader.id();
        let mut members = Vec::new();
        let start = Instant::now();
        while members.len() < 3 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
            members = descendants(pgid);
        }
        assert_eq!(members.len(), 3, "{members:?}");
        let outside = |pid: Option<i32>| !is_pod_member(pid, Some(pgid), None);
        for pid in &members {
            assert!(is_pod_member(Some(*pid as i32), Some(pgid), None), "{pid}");
        }
        assert!(members
            .iter()
            .any(|&p| os::proc_stat(p).is_some_and(|s| s.pgid != pgid)));
        assert!(is_pod_member(Some(pgid as i32), Some(pgid), None));
        assert!(is_pod_member(Some(me as i32), Some(pgid), None));
        assert!(outside(None));
        assert!(outside(Some(0)));
        assert!(outside(Some(-5)));
        assert!(outside(Some(1)));
        assert!(outside(Some(i32::MAX)));
        assert!(!is_pod_member(Some(pgid as i32), None, None));
        // A process listed in the pod's cgroup, wherever its parent.
        let procs = std::env::temp_dir().join(format!("notify-unit-{me}-procs"));
        std::fs::write(&procs, "7\n1\n").unwrap();
        assert!(is_pod_member(Some(1), Some(pgid), Some(&procs)));
        assert!(!is_pod_member(Some(2), Some(pgid), Some(&procs)));
        std::fs::remove_file(&procs).unwrap();
        let _ = rustix::process::kill_process_group(
            rustix::process::Pid::from_raw(pgid as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
        for pid in members {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid as i32).unwrap(),
                rustix::process::Signal::KILL,
            );
        }
        leader.wait().unwrap();
    }

    /// The processes under `root` (by parent pid).
    fn descendants(root: u32) -> Vec<u32> {
        let mut found = Vec::new();
        let mut frontier = vec![root];
        while let Some(parent) = frontier.pop() {
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                    continue;
                };
                if os::proc_stat(pid).is_some_and(|s| s.ppid == parent && s.state != 'Z') {
                    found.push(pid);
                    frontier.push(pid);
                }
            }
        }
        found
    }

    #[test]
    fn the_directory_is_open_to_pass_through_and_the_socket_to_write() {
        use std::os::unix::fs::PermissionsExt;
        let socket = NotifySocket::bind().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(socket.path().parent().unwrap()), DIR_MODE);
        assert_eq!(mode(socket.path()), SOCKET_MODE);
        assert!(rustix::net::sockopt::socket_passcred(socket.socket.get_ref()).unwrap());
    }

    #[test]
    fn as_root_a_base_closed_to_others_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let base = scratch("closed");
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!open_to_others(&base));
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o711)).unwrap();
        assert!(open_to_others(&base));
        std::fs::remove_dir_all(&base).unwrap();
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
