//! A spawn of podvisor's own (Linux, x86_64, glibc): `clone3` with `CLONE_VM | CLONE_VFORK`
//! — the child borrows podvisor's memory until it execs, so nothing of podvisor's address
//! space is copied, as a fork copies it — with `CLONE_PIDFD`, and for a pod with a cgroup
//! `CLONE_INTO_CGROUP`: the child is born in its cgroup instead of moving there, which
//! waits for the kernel on a busy machine. The standard library forks whenever a
//! `pre_exec` hook is set, and podvisor needs one (joining the cgroup before the program
//! runs, the parent-death signal, the leader's own pid in `WATCHDOG_PID`); measured with
//! `cargo bench --bench deployment`, the fork and the move into the cgroup were most of
//! podvisor's start cost beyond a raw spawn.
//!
//! The child runs on a stack of its own, with every signal blocked, and makes only system
//! calls (no allocation, no lock): it takes a table of descriptors of its own (below), asks
//! for SIGKILL when its parent thread ends, sets every handled signal back to its default,
//! empties its signal mask (as the standard library does), makes itself a process group
//! leader, puts its standard streams in place, changes directory and execs. A failure is stored, as the step and the error number, in a word
//! of the memory it shares with the parent, and the child exits 127; the parent, which the
//! kernel holds until the child has exec'd or exited, reads the word: nothing means the
//! exec happened.
//!
//! The child does not copy podvisor's table of descriptors. A fork copies it, and the exec
//! then closes every copied descriptor again: with thousands of pods open (their pipes,
//! pidfds and cgroups), that made each spawn cost time in proportion to the pods already
//! running. Instead the child is cloned sharing the table (`CLONE_FILES`), and its first
//! step takes a private one holding only the descriptors below a small limit
//! (`close_range` with `CLOSE_RANGE_UNSHARE`, which copies nothing above it): podvisor's
//! standard streams and three [`Slots`] reserved low when podvisor first spawns, into which
//! the parent places the child's streams before each spawn. The limit is a multiple of 64:
//! kernels before the fix of CVE-2024-45025 corrupt the new table's bitmap when it is not.
//! Where `close_range` is refused (before Linux 5.9, or a seccomp filter) the child copies
//! the whole table instead (`unshare`); where that is refused too, the spawn falls back to
//! the standard library's, and later spawns do not share the table. The limit is set at
//! podvisor's first spawn: a program that had thousands of descriptors open by then keeps
//! the old cost.

use std::ffi::{c_int, c_void, CStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rustix::io::FdFlags;
use rustix::process::{Pid, WaitOptions};

use super::ExecPlan;

/// Where one of the child's standard streams comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stdio {
    /// podvisor's own.
    Inherit,
    /// `/dev/null`.
    Null,
    /// A new pipe; the parent keeps the other end.
    Pipe,
}

/// What to spawn, and how.
pub(crate) struct Request<'a> {
    pub(crate) plan: &'a ExecPlan,
    pub(crate) stdin: Stdio,
    pub(crate) stdout: Stdio,
    pub(crate) stderr: Stdio,
    pub(crate) cwd: Option<&'a CStr>,
    pub(crate) own_group: bool,
    pub(crate) death_signal: bool,
    /// The cgroup's directory, for `CLONE_INTO_CGROUP`.
    pub(crate) cgroup: Option<BorrowedFd<'a>>,
}

/// A spawned child.
#[derive(Debug)]
pub(crate) struct Child {
    pub(crate) pid: u32,
    pub(crate) pidfd: OwnedFd,
    /// The read ends of its piped output.
    pub(crate) stdout: Option<OwnedFd>,
    pub(crate) stderr: Option<OwnedFd>,
    /// It was born in the requested cgroup.
    pub(crate) in_cgroup: bool,
}

/// The kernel's `struct clone_args` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_VM: u64 = 0x100;
const CLONE_VFORK: u64 = 0x4000;
const CLONE_PIDFD: u64 = 0x1000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
const CLONE_FILES: u64 = 0x400;
const CLOSE_RANGE_UNSHARE: u64 = 2;
const SYS_CLOSE_RANGE: i64 = 436;
const SYS_UNSHARE: i64 = 272;
const SIGCHLD: u64 = 17;
const SYS_CLONE3: i64 = 435;

/// glibc's `struct sigaction` on x86_64.
#[repr(C)]
struct SigAction {
    handler: usize,
    mask: [u64; 16],
    flags: c_int,
    restorer: usize,
}

impl SigAction {
    /// The default disposition, no mask, no flags.
    const DEFAULT: SigAction = SigAction {
        handler: SIG_DFL,
        mask: [0; 16],
        flags: 0,
        restorer: 0,
    };
}

const SIG_DFL: usize = 0;
const SIG_IGN: usize = 1;
const SIG_SETMASK: c_int = 2;
const SIGPIPE: c_int = 13;

extern "C" {
    fn sigaction(signum: c_int, act: *const SigAction, old: *mut SigAction) -> c_int;
    fn pthread_sigmask(how: c_int, set: *const [u64; 16], old: *mut [u64; 16]) -> c_int;
    fn _exit(status: c_int) -> !;
}

/// What the child needs, prepared by the parent: only raw values and pointers into the
/// parent's memory, which the child shares until it execs.
struct ChildArgs<'a> {
    plan: &'a ExecPlan,
    /// (descriptor, the standard stream it becomes).
    streams: [Option<(RawFd, RawFd)>; 3],
    cwd: Option<&'a CStr>,
    own_group: bool,
    death_signal: bool,
    /// podvisor's pid: a child whose parent is another by the time it asked for the
    /// parent-death signal has lost podvisor already.
    parent: Option<Pid>,
    /// The failure, if the child fails before exec: the step in the high half, the error
    /// number in the low one (0: none).
    failure: std::sync::atomic::AtomicU64,
    /// The table of descriptors is shared with podvisor: the child first takes a private
    /// one, keeping those below this limit.
    unshare_below: Option<RawFd>,
}

/// The steps a failure is reported from.
const STEP_GROUP: u32 = 1;
const STEP_DEATH_SIGNAL: u32 = 2;
const STEP_STREAMS: u32 = 3;
const STEP_CWD: u32 = 4;
const STEP_EXEC: u32 = 5;
const STEP_FILES: u32 = 6;

/// The child's stack: it only makes system calls, a few frames deep.
const STACK_BYTES: usize = 64 * 1024;

/// Descriptors of podvisor's reserved low for the child's three standard streams, each
/// holding `/dev/null` between spawns; the child of a spawn keeps only the descriptors
/// below `limit` (see the module's documentation).
struct Slots {
    fds: [OwnedFd; 3],
    /// One more than the highest of them.
    limit: RawFd,
    /// What a slot is set back to once the child has exec'd.
    null: OwnedFd,
}

impl Slots {
    /// Opened at the lowest free numbers from 3 (never podvisor's standard streams, even
    /// if one of those is closed).
    fn open() -> io::Result<Slots> {
        let null = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        let slot = || rustix::io::fcntl_dupfd_cloexec(&null, 3);
        let fds = [slot()?, slot()?, slot()?];
        let highest = fds.iter().map(|fd| fd.as_raw_fd()).max().unwrap_or(0);
        let limit = (highest / 64 + 1) * 64;
        Ok(Slots { fds, limit, null })
    }
}

/// What spawns reuse, one spawn at a time: the slots (`None` where they cannot be opened or
/// the child cannot take a table of its own: the child then copies the table) and the
/// child's stack.
struct Reused {
    slots: Option<Slots>,
    stack: Box<[u128]>,
}

/// [`Reused`], locked for one spawn; unlocked (by any way out: an error, a panic), the
/// slots let go of the child's ends and hold `/dev/null` again, or a pipe would never see
/// its end and a later child would get it for a discarded stream.
struct Locked(std::sync::MutexGuard<'static, Reused>);

impl Drop for Locked {
    fn drop(&mut self) {
        let slots = &mut self.0.slots;
        if let Some(held) = slots.as_mut() {
            let Slots { fds, null, .. } = held;
            let emptied = fds
                .iter_mut()
                .try_for_each(|fd| rustix::io::dup3(&*null, fd, rustix::io::DupFlags::CLOEXEC));
            if emptied.is_err() {
                // Closed, then: later spawns copy the table.
                *slots = None;
            }
        }
    }
}

impl Reused {
    fn lock() -> Locked {
        Locked(Self::guard())
    }

    fn guard() -> std::sync::MutexGuard<'static, Reused> {
        static REUSED: std::sync::OnceLock<std::sync::Mutex<Reused>> = std::sync::OnceLock::new();
        REUSED
            .get_or_init(|| {
                std::sync::Mutex::new(Reused {
                    slots: Slots::open().ok(),
                    stack: vec![0u128; STACK_BYTES / 16].into_boxed_slice(),
                })
            })
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// Spawns as `request` says. Returns `Ok(None)` when the kernel refuses this kind of
/// clone (too old for `clone3`, say): the caller then spawns the usual way.
pub(crate) fn spawn(request: &Request<'_>) -> io::Result<Option<Child>> {
    let mut reused = Reused::lock();
    let Reused { slots, stack } = &mut *reused.0;
    let null = || {
        rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
    };
    // The child's ends (closed here once it has exec'd) and the parent's.
    let mut theirs: Vec<OwnedFd> = Vec::new();
    let mut streams = [None; 3];
    let mut ours: [Option<OwnedFd>; 2] = [None, None];
    for (index, stdio) in [request.stdin, request.stdout, request.stderr]
        .into_iter()
        .enumerate()
    {
        let fd = match stdio {
            Stdio::Inherit => continue,
            // A slot holds `/dev/null` already.
            Stdio::Null if slots.is_some() => None,
            Stdio::Null => Some(null()?),
            Stdio::Pipe => {
                let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
                if index == 0 {
                    // Never asked for; a pipe into the child's stdin would need a writer.
                    return Err(io::Error::other("a piped stdin is not supported"));
                }
                ours[index - 1] = Some(read);
                Some(write)
            }
        };
        let raw = match (slots.as_mut(), fd) {
            (Some(slots), Some(fd)) => {
                rustix::io::dup3(&fd, &mut slots.fds[index], rustix::io::DupFlags::CLOEXEC)?;
                theirs.push(fd);
                slots.fds[index].as_raw_fd()
            }
            (Some(slots), None) => slots.fds[index].as_raw_fd(),
            (None, Some(fd)) => {
                let raw = fd.as_raw_fd();
                theirs.push(fd);
                raw
            }
            (None, None) => unreachable!("a null stream without a slot opens /dev/null"),
        };
        streams[index] = Some((raw, index as RawFd));
    }
    let args = ChildArgs {
        plan: request.plan,
        streams,
        cwd: request.cwd,
        own_group: request.own_group,
        death_signal: request.death_signal,
        parent: Some(rustix::process::getpid()),
        failure: std::sync::atomic::AtomicU64::new(0),
        unshare_below: slots.as_ref().map(|slots| slots.limit),
    };
    let mut pidfd: c_int = -1;
    let mut clone_args = CloneArgs {
        flags: CLONE_VM | CLONE_VFORK | CLONE_PIDFD,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        exit_signal: SIGCHLD,
        stack: stack.as_mut_ptr() as u64,
        stack_size: (stack.len() * 16) as u64,
        ..CloneArgs::default()
    };
    if args.unshare_below.is_some() {
        clone_args.flags |= CLONE_FILES;
    }
    if let Some(cgroup) = request.cgroup {
        clone_args.flags |= CLONE_INTO_CGROUP;
        clone_args.cgroup = cgroup.as_raw_fd() as u64;
    }
    let result = clone(&mut clone_args, &args);
    let in_cgroup = request.cgroup.is_some();
    drop(theirs);
    // The slots let go of the child's ends.
    drop(reused);
    if result < 0 {
        // Whatever the reason (no `clone3` or no `CLONE_INTO_CGROUP` in this kernel, a
        // cgroup that cannot take the child), the standard library's spawn does what it
        // can: it joins the cgroup between fork and exec where that works.
        return Ok(None);
    }
    let pid = result as u32;
    // SAFETY: the kernel wrote a new descriptor there (`CLONE_PIDFD`).
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    // The child has exec'd or exited by now: what it stored is all it will store.
    let failure = args.failure.load(std::sync::atomic::Ordering::SeqCst);
    if failure == 0 {
        let [stdout, stderr] = ours;
        return Ok(Some(Child {
            pid,
            pidfd,
            stdout,
            stderr,
            in_cgroup,
        }));
    }
    // The child failed before exec and exited: reap it.
    discard(pid, &pidfd);
    let step = (failure >> 32) as u32;
    let errno = failure as u32 as i32;
    let error = io::Error::from_raw_os_error(errno);
    if step == STEP_FILES {
        // Refused by the kernel or a filter (the error says which): spawns share no table
        // from now on, and this one is made the usual way.
        Reused::guard().slots = None;
        return Ok(None);
    }
    let step = match step {
        // A missing directory is named by the caller, as for any spawn.
        STEP_EXEC => return Err(error),
        STEP_CWD if error.kind() == io::ErrorKind::NotFound => return Err(error),
        STEP_CWD => format!(
            "cannot change to the working directory {:?}",
            request.cwd.map(|c| c.to_string_lossy()).unwrap_or_default()
        ),
        STEP_GROUP => "cannot make it a process group leader".to_string(),
        STEP_DEATH_SIGNAL => "cannot ask for the parent-death signal".to_string(),
        _ => "cannot set up its standard streams".to_string(),
    };
    Err(io::Error::new(error.kind(), format!("{step}: {error}")))
}

/// A child that will not be supervised (it failed before exec, or what it needs could not
/// be set up): SIGKILL, then reaped, waiting for it.
pub(crate) fn discard(pid: u32, pidfd: &OwnedFd) {
    let _ = rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
    if let Some(pid) = Pid::from_raw(pid as i32) {
        while let Err(rustix::io::Errno::INTR) =
            rustix::process::waitpid(Some(pid), WaitOptions::empty())
        {}
    }
}

/// `clone3` with every signal blocked (the child must not run one of podvisor's handlers
/// on its memory before it resets them); the child runs [`child_main`]. Returns the
/// child's pid or minus the error number.
fn clone(clone_args: &mut CloneArgs, args: &ChildArgs<'_>) -> i64 {
    let full = [u64::MAX; 16];
    let mut old = [0u64; 16];
    // SAFETY: valid sets; this thread's mask only.
    unsafe { pthread_sigmask(SIG_SETMASK, &full, &mut old) };
    let ret: i64;
    // SAFETY: `clone3` with `CLONE_VM | CLONE_VFORK` and a stack of its own: the child
    // starts on the new stack (the kernel sets its stack pointer to the stack's end, which
    // is 16-byte aligned) and calls `child_main`, which never returns; this thread waits
    // in the kernel until the child has exec'd or exited, so `args`, the stack and the
    // plan outlive the child's use of them. The registers holding `child_main` and its
    // argument are the child's too.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, {data}",
            "call {entry}",
            "ud2",
            "2:",
            entry = in(reg) child_main as extern "C" fn(*const c_void) -> !,
            data = in(reg) args as *const ChildArgs<'_> as *const c_void,
            inlateout("rax") SYS_CLONE3 => ret,
            in("rdi") clone_args as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            // `syscall` overwrites these: not `lateout`, which would let the compiler
            // keep `entry` or `data` in them.
            out("rcx") _,
            out("r11") _,
            options(nostack),
        );
    }
    // SAFETY: as above.
    unsafe { pthread_sigmask(SIG_SETMASK, &old, std::ptr::null_mut()) };
    ret
}

/// A system call of up to three arguments, made directly: glibc's `syscall` would write
/// the parent thread's `errno` from the child. Returns the result or minus the error
/// number.
///
/// # Safety
///
/// As for the system call made.
unsafe fn syscall3(number: i64, a: u64, b: u64, c: u64) -> i64 {
    let ret: i64;
    // SAFETY: the caller's.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") number => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// The child, between clone and exec: system calls only.
extern "C" fn child_main(data: *const c_void) -> ! {
    // SAFETY: the parent passed a `ChildArgs` that outlives the child's use of it.
    let args = unsafe { &*(data as *const ChildArgs<'_>) };
    let fail = |step: u32, errno: i32| -> ! {
        // The parent reads it once this child has exited.
        args.failure.store(
            (u64::from(step) << 32) | u64::from(errno as u32),
            std::sync::atomic::Ordering::SeqCst,
        );
        // SAFETY: ends the child at once, without running anything of the parent's.
        unsafe { _exit(127) }
    };
    // Before anything touches a descriptor: a table of its own, with only those below the
    // limit (podvisor's standard streams and the slots; the close-on-exec ones among them
    // close at exec), or, before Linux 5.9, a copy of the whole table.
    if let Some(limit) = args.unshare_below {
        // SAFETY: system calls on this child's own table.
        let taken = unsafe {
            syscall3(
                SYS_CLOSE_RANGE,
                limit as u64,
                u32::MAX as u64,
                CLOSE_RANGE_UNSHARE,
            )
        };
        if taken < 0 {
            // SAFETY: as above.
            let copied = unsafe { syscall3(SYS_UNSHARE, CLONE_FILES, 0, 0) };
            if copied < 0 {
                fail(STEP_FILES, -copied as i32);
            }
        }
    }
    // Then, so that podvisor dying from here on kills the child: asked for, and podvisor
    // still its parent.
    if args.death_signal {
        if let Err(e) =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        {
            fail(STEP_DEATH_SIGNAL, e.raw_os_error());
        }
        if rustix::process::getppid() != args.parent {
            // SAFETY: ends the child at once; nobody waits for its report.
            unsafe { _exit(127) }
        }
    }
    // Signals: podvisor's handlers are not the program's. Ignored signals stay ignored
    // (as across any exec), except SIGPIPE, which Rust programs ignore for themselves.
    for signal in 1..65 {
        if signal == 9 || signal == 19 {
            continue;
        }
        let mut old = SigAction::DEFAULT;
        // SAFETY: valid pointers; this process's dispositions only (no CLONE_SIGHAND).
        unsafe {
            if sigaction(signal, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if old.handler != SIG_DFL && (old.handler != SIG_IGN || signal == SIGPIPE) {
                sigaction(signal, &SigAction::DEFAULT, std::ptr::null_mut());
            }
        }
    }
    let empty = [0u64; 16];
    // SAFETY: a valid set.
    unsafe { pthread_sigmask(SIG_SETMASK, &empty, std::ptr::null_mut()) };
    if args.own_group {
        if let Err(e) = rustix::process::setpgid(None, None) {
            fail(STEP_GROUP, e.raw_os_error());
        }
    }
    for (fd, target) in args.streams.iter().flatten().copied() {
        // SAFETY: descriptors of the parent's, open until the child has exec'd.
        let source = unsafe { BorrowedFd::borrow_raw(fd) };
        let placed = if fd == target {
            // dup2 onto itself would keep close-on-exec.
            rustix::io::fcntl_setfd(source, FdFlags::empty())
        } else {
            match target {
                0 => rustix::stdio::dup2_stdin(source),
                1 => rustix::stdio::dup2_stdout(source),
                _ => rustix::stdio::dup2_stderr(source),
            }
        };
        if let Err(e) = placed {
            fail(STEP_STREAMS, e.raw_os_error());
        }
    }
    if let Some(cwd) = args.cwd {
        if let Err(e) = rustix::process::chdir(cwd) {
            fail(STEP_CWD, e.raw_os_error());
        }
    }
    // SAFETY: in the child, before exec; the plan's buffers are the parent's, which waits.
    let error = unsafe { args.plan.exec() };
    fail(STEP_EXEC, error.raw_os_error().unwrap_or(0))
}

/// The exit status of a child spawned here, once it has exited (`None` before): reaps it.
pub(crate) fn try_wait(pidfd: BorrowedFd<'_>) -> io::Result<Option<std::process::ExitStatus>> {
    use std::os::unix::process::ExitStatusExt;
    let status = match rustix::process::waitid(
        rustix::process::WaitId::PidFd(pidfd.as_fd()),
        rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOHANG,
    ) {
        // A non-blocking pidfd whose process still runs (older kernels say so this way).
        Err(rustix::io::Errno::AGAIN) => return Ok(None),
        other => other?,
    };
    Ok(status.map(|status| {
        if let Some(code) = status.exit_status() {
            std::process::ExitStatus::from_raw((code & 0xff) << 8)
        } else {
            let signal = status.terminating_signal().unwrap_or(0);
            let core = if status.dumped() { 0x80 } else { 0 };
            std::process::ExitStatus::from_raw(signal | core)
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// However a spawn leaves (here: as if an error returned early, with a pipe's write end
    /// placed in a slot), the slots let go of what they held: the pipe sees its end, and
    /// the slot holds `/dev/null` again for the next child.
    #[test]
    fn the_slots_let_go_of_a_childs_ends_on_any_way_out() {
        let flags = rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK;
        let (read, write) = rustix::pipe::pipe_with(flags).unwrap();
        let slot = {
            let mut locked = Reused::lock();
            let Some(slots) = locked.0.slots.as_mut() else {
                return; // No slots here: spawns copy the table, nothing to let go of.
            };
            rustix::io::dup3(&write, &mut slots.fds[1], rustix::io::DupFlags::CLOEXEC).unwrap();
            drop(write);
            slots.fds[1].as_raw_fd()
        };
        let mut byte = [0u8; 1];
        // Not blocking: a slot still holding the write end reads as "nothing yet" (EAGAIN).
        assert_eq!(
            rustix::io::read(&read, &mut byte),
            Ok(0),
            "the pipe saw its end"
        );
        let target = std::fs::read_link(format!("/proc/self/fd/{slot}")).unwrap();
        assert_eq!(target, std::path::Path::new("/dev/null"));
    }
}
