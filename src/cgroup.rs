//! A cgroup (v2) per pod, so that every process a pod created — including those that left
//! its process group with `setsid` — can be found and killed, at close and after podvisor
//! itself died.
//!
//! The cgroups live under a directory of this podvisor's own,
//! `<podvisor's cgroup>/podvisor-<pid>-<random>/pod-<n>`. A child joins its pod's cgroup
//! between fork and exec (it writes `0` to `cgroup.procs`, one async-signal-safe `write` on
//! a descriptor opened before the fork), so nothing it starts can be outside. When cgroup2
//! is not mounted, or the directory cannot be made (no permission, read-only), pods run
//! without one: process groups and the keeper's list of them are then all there is (see
//! [`crate::keeper`]).
//!
//! Directories of podvisors that are gone are killed and removed when the next podvisor
//! makes its own. `PODVISOR_CGROUPS=off` in podvisor's environment switches cgroups off
//! (for a system where podvisor must not write cgroups, or to measure without them).

use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use rustix::fs::{Mode, OFlags};

/// The directory of this podvisor's cgroups, made on first use; `None` when cgroups cannot
/// be used here.
pub(crate) fn base() -> Option<&'static Path> {
    Some(&base_dir()?.0)
}

/// The directory of this podvisor's cgroups and a descriptor of it (`O_PATH`), from which
/// pods' cgroups are made, opened and removed without walking the whole path each time.
fn base_dir() -> Option<&'static (PathBuf, OwnedFd)> {
    static BASE: OnceLock<Option<(PathBuf, OwnedFd)>> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = make_base().ok()?;
        match open_path(&dir) {
            Ok(fd) => Some((dir, fd)),
            Err(_) => {
                let _ = fs::remove_dir(&dir);
                None
            }
        }
    })
    .as_ref()
}

/// `dir`, opened only to name it (`O_PATH`): enough to make and open what is in it, and
/// for a child born in it (`CLONE_INTO_CGROUP` takes such a descriptor).
fn open_path(dir: impl rustix::path::Arg) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn make_base() -> io::Result<PathBuf> {
    if std::env::var_os("PODVISOR_CGROUPS").is_some_and(|v| v == "off") {
        return Err(io::Error::other(
            "cgroups switched off by PODVISOR_CGROUPS=off",
        ));
    }
    let own = own_cgroup_dir()?;
    remove_stale(&own);
    let pid = std::process::id();
    let namespace = pid_namespace().unwrap_or(0);
    for _ in 0..16 {
        let dir = own.join(format!(
            "podvisor-{pid}-{namespace}-{:016x}",
            crate::os::random_u64()
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free cgroup name"))
}

/// The directory of podvisor's own cgroup in the cgroup2 hierarchy, found through
/// `/proc/self/mountinfo` (cgroup2 may be mounted anywhere, e.g. `/sys/fs/cgroup/unified`
/// in hybrid mode) and `/proc/self/cgroup`.
fn own_cgroup_dir() -> io::Result<PathBuf> {
    let cgroup = fs::read_to_string("/proc/self/cgroup")?;
    let own = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not in a cgroup2 hierarchy"))?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    for line in mountinfo.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        if after.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let fields: Vec<&str> = before.split_whitespace().collect();
        let (Some(root), Some(mount)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        // The mount shows the hierarchy from `root`; our path is relative to the top.
        let Some(rest) = own.strip_prefix(root.trim_end_matches('/')) else {
            continue;
        };
        let dir = Path::new(mount).join(rest.trim_start_matches('/'));
        if dir.join("cgroup.procs").exists() {
            return Ok(dir);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "cgroup2 is not mounted",
    ))
}

/// The inode of this process's PID namespace: a pid means something only within it.
fn pid_namespace() -> Option<u64> {
    let link = fs::read_link("/proc/self/ns/pid").ok()?;
    let text = link.to_str()?;
    text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// The owner a directory name claims: `podvisor-<pid>-<PID namespace>-<random>`.
fn claimed_owner(name: &str) -> Option<(u32, u64)> {
    let mut parts = name.strip_prefix("podvisor-")?.split('-');
    let pid = parts.next()?.parse().ok()?;
    let namespace = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((pid, namespace))
}

/// Kills and removes the cgroups of podvisors that are gone (their keeper could not). Only
/// those made in this PID namespace: a podvisor in another one (a container, `unshare
/// --pid`) has a pid that means nothing here, and is not judged.
fn remove_stale(own: &Path) {
    let Some(namespace) = pid_namespace() else {
        return;
    };
    let Ok(entries) = fs::read_dir(own) else {
        return;
    };
    for entry in entries.flatten() {
        let Some((pid, made_in)) = entry.file_name().to_str().and_then(claimed_owner) else {
            continue;
        };
        if made_in != namespace || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        let _ = fs::write(dir.join("cgroup.kill"), "1");
        remove_tree(&dir);
    }
}

/// Removes `dir` and the cgroups under it; those still populated stay.
fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// One pod's cgroup.
#[derive(Debug)]
pub(crate) struct PodCgroup {
    dir: PathBuf,
    /// Its name in the base directory (`pod-N`).
    name: String,
    /// The directory (`O_PATH`): for a child born in it (`CLONE_INTO_CGROUP`), and to open
    /// its files.
    dir_fd: OwnedFd,
}

impl PodCgroup {
    /// A new cgroup for one pod, or `None` when cgroups cannot be used here.
    pub(crate) fn new() -> Option<PodCgroup> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let (base, base_fd) = base_dir()?;
        remove_left();
        let name = format!("pod-{}", COUNTER.fetch_add(1, Ordering::Relaxed));
        rustix::fs::mkdirat(base_fd, &name, Mode::from_raw_mode(0o755)).ok()?;
        let dir = base.join(&name);
        match rustix::fs::openat(
            base_fd,
            &name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(dir_fd) => Some(PodCgroup { dir, name, dir_fd }),
            Err(_) => {
                let _ = fs::remove_dir(&dir);
                None
            }
        }
    }

    /// A file of the cgroup, opened with `flags`.
    fn open(&self, file: &str, flags: OFlags) -> io::Result<fs::File> {
        let fd = rustix::fs::openat(&self.dir_fd, file, flags | OFlags::CLOEXEC, Mode::empty())?;
        Ok(fs::File::from(fd))
    }

    /// `cgroup.procs`, open for writing: a child forked by the standard library writes `0`
    /// to it to join between fork and exec (podvisor's own spawn needs no such descriptor:
    /// its child is born in the cgroup).
    pub(crate) fn open_procs(&self) -> io::Result<OwnedFd> {
        Ok(self.open("cgroup.procs", OFlags::WRONLY)?.into())
    }

    /// Whether a kill of the cgroup (`cgroup.kill`, Linux 5.14) reaches every process in
    /// it at once, as the keeper's kill of podvisor's cgroups does when podvisor dies.
    pub(crate) fn kill_is_atomic() -> bool {
        static ATOMIC: OnceLock<bool> = OnceLock::new();
        *ATOMIC.get_or_init(|| base().is_some_and(|b| b.join("cgroup.kill").exists()))
    }

    /// The cgroup's directory, open.
    pub(crate) fn dir_fd(&self) -> BorrowedFd<'_> {
        self.dir_fd.as_fd()
    }

    /// The cgroup's `cgroup.procs` file: the processes in it.
    pub(crate) fn procs_path(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// The processes in the cgroup that have not exited.
    pub(crate) fn members(&self) -> Vec<u32> {
        let mut text = String::new();
        let read = self
            .open("cgroup.procs", OFlags::RDONLY)
            .and_then(|mut file| io::Read::read_to_string(&mut file, &mut text));
        if read.is_err() {
            return Vec::new();
        }
        text.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    /// Whether process `pid` joined this cgroup (or has already ended: then it does not
    /// matter).
    pub(crate) fn holds(&self, pid: u32) -> bool {
        match fs::read_to_string(format!("/proc/{pid}/cgroup")) {
            Ok(text) => {
                let name = self.dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let base = self
                    .dir
                    .parent()
                    .and_then(|p| p.file_name())
                    .and_then(|n| n.to_str())
                    .unwrap_or("");
                text.lines()
                    .any(|l| l.starts_with("0::") && l.ends_with(&format!("/{base}/{name}")))
            }
            Err(_) => true,
        }
    }

    /// SIGKILL to every process in the cgroup, wherever its process group or session.
    pub(crate) fn kill(&self) {
        let killed = self
            .open("cgroup.kill", OFlags::WRONLY)
            .and_then(|mut file| io::Write::write_all(&mut file, b"1"));
        if killed.is_err() {
            // Before Linux 5.14 there is no cgroup.kill: signal the members one by one.
            for pid in self.members() {
                if let Some(pid) = i32::try_from(pid)
                    .ok()
                    .and_then(rustix::process::Pid::from_raw)
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
    }
}

/// Cgroups of ended pods whose removal failed because killed members were still on their
/// way out; tried again whenever a pod's cgroup is made or dropped (and the keeper removes
/// what is left when podvisor exits), so a long run with restarts does not pile them up.
static LEFT: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn remove_left() {
    let mut left = LEFT.lock().unwrap_or_else(|e| e.into_inner());
    left.retain(|dir| {
        remove_tree(dir);
        dir.exists()
    });
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        let removed = match base_dir() {
            Some((_, base_fd)) => {
                rustix::fs::unlinkat(base_fd, &self.name, rustix::fs::AtFlags::REMOVEDIR)
                    .map_err(io::Error::from)
            }
            None => fs::remove_dir(&self.dir),
        };
        if removed.is_err() && self.dir.exists() {
            LEFT.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self.dir.clone());
        }
        remove_left();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_claim_a_pid_in_a_pid_namespace() {
        assert_eq!(
            claimed_owner("podvisor-42-4026531836-00ff00ff00ff00ff"),
            Some((42, 4026531836))
        );
        // The earlier shape (no namespace) and other names are not judged.
        assert_eq!(claimed_owner("podvisor-42-00ff00ff00ff00ff"), None);
        assert_eq!(claimed_owner("podvisor-test-probe-7"), None);
        assert_eq!(claimed_owner("other-42-1-aa"), None);
        assert!(pid_namespace().is_some());
    }
}
