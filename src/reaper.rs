//! Reaping orphans, when podvisor is PID 1 (a container's entrypoint) or a subreaper.
//!
//! Orphaned processes are given to PID 1, or to the nearest ancestor that declared itself a
//! child subreaper; when they end, they stay zombies until that process waits for them. A
//! podvisor in that role must reap them, or a long-running container runs out of pids.
//! But it must not take the status of a child it waits for itself (a pod's leader, a probe
//! command, the keeper): async-process waits for those by pid, and a status taken from it
//! would be a lost outcome. So podvisor keeps the list of the children it spawned, and on
//! every SIGCHLD reaps the zombie children that are not on it — by pid, never with
//! `waitpid(-1)`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use futures_lite::StreamExt;
use rustix::process::{Pid, WaitOptions};

/// The children podvisor spawned and waits for itself.
static OURS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Held by the spawning thread while a child is spawned and claimed, so the orphan reaper
/// cannot take a child that died before it was claimed. The reaper never waits for it (it
/// runs on the driver thread, which must not wait for a spawn): it leaves the round to
/// the spawning thread, which reaps once its spawn is claimed.
static SPAWNING: Mutex<()> = Mutex::new(());

/// A reaping round was skipped because a spawn was under way.
static SKIPPED: AtomicBool = AtomicBool::new(false);

/// On the spawning thread: spawns a child with `spawn` and claims it, as one step for the
/// orphan reaper.
pub(crate) fn spawn_claimed<C>(
    spawn: impl FnOnce() -> std::io::Result<C>,
    pid: impl FnOnce(&C) -> Option<u32>,
) -> std::io::Result<C> {
    let result = {
        let _spawning = crate::handle::lock(&SPAWNING);
        let result = spawn();
        if let Some(pid) = result.as_ref().ok().and_then(pid) {
            claim(pid);
        }
        result
    };
    if SKIPPED.swap(false, Ordering::AcqRel) {
        reap_orphans();
    }
    result
}

/// On the driver thread (where the reaper runs too, so nothing can come between): spawns
/// a child and claims it.
pub(crate) fn spawn_claimed_here(
    spawn: impl FnOnce() -> std::io::Result<async_process::Child>,
) -> std::io::Result<async_process::Child> {
    let child = spawn()?;
    claim(child.id());
    Ok(child)
}

/// `pid` is a child podvisor waits for itself: never reap it here.
pub(crate) fn claim(pid: u32) {
    crate::handle::lock(&OURS).insert(pid);
}

/// `pid` was waited for (or will be by async-process in the background).
pub(crate) fn release(pid: u32) {
    crate::handle::lock(&OURS).remove(&pid);
}

/// Makes this process reap orphans: it becomes a child subreaper (unless it is PID 1,
/// which is one already), and from then on every zombie child it did not spawn through
/// podvisor is reaped as soon as SIGCHLD says one ended. The command calls it when it runs
/// as PID 1.
///
/// A program that spawns children of its own outside podvisor and waits for them by pid
/// must not call this: their statuses would be taken.
///
/// Errors if the subreaper role cannot be taken (a system without it).
///
/// # Examples
///
/// ```no_run
/// if std::process::id() == 1 {
///     podvisor::reaper::enable().expect("reaping orphans");
/// }
/// ```
pub fn enable() -> std::io::Result<()> {
    if std::process::id() != 1 {
        #[cfg(target_os = "linux")]
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
        #[cfg(not(target_os = "linux"))]
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "no child subreaper on this system",
        ));
    }
    if ENABLED.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    let mut signals = async_signal::Signals::new([async_signal::Signal::Child])?;
    crate::executor::spawn(async move {
        reap_orphans();
        while signals.next().await.is_some() {
            reap_orphans();
        }
    });
    Ok(())
}

/// Reaps every zombie child that podvisor did not spawn itself.
fn reap_orphans() {
    if !ENABLED.load(Ordering::Acquire) {
        return;
    }
    let try_lock = || match SPAWNING.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    let _spawning = match try_lock() {
        Some(guard) => guard,
        None => {
            // The spawning thread reaps when its spawn is claimed. Look once more: if it
            // finished before seeing the flag, the round is ours after all.
            SKIPPED.store(true, Ordering::Release);
            match try_lock() {
                Some(guard) => {
                    SKIPPED.store(false, Ordering::Release);
                    guard
                }
                None => return,
            }
        }
    };
    let me = std::process::id();
    for pid in zombie_children(me) {
        if OURS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&pid)
        {
            continue;
        }
        if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
            let _ = rustix::process::waitpid(Some(pid), WaitOptions::NOHANG);
        }
    }
}

/// The zombie children of `parent`, from `/proc`.
fn zombie_children(parent: u32) -> Vec<u32> {
    crate::os::processes()
        .into_iter()
        .filter(|(_, p)| p.ppid == parent && p.state == 'Z')
        .map(|(pid, _)| pid)
        .collect()
}
