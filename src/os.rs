//! The few system calls podvisor makes itself, behind `rustix`: signals to process groups,
//! the parent-death signal, and reading `/proc`.
//!
//! This is the only module allowed `unsafe` (with its submodule `clone`, podvisor's own
//! spawn): for `pre_exec`, the `execve` of a prepared plan, and `clone3`.
#![allow(unsafe_code)]

use std::fmt;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::process::{kill_process_group, Pid, Signal as RawSignal};

#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
pub(crate) mod clone;

/// A Unix signal, by number, restricted to the named signals of this platform.
///
/// # Examples
///
/// ```
/// use podvisor::Signal;
///
/// assert_eq!(Signal::from_name("TERM"), Ok(Signal::TERM));
/// assert_eq!(Signal::from_name("SIGINT"), Ok(Signal::INT));
/// assert_eq!(Signal::from_name("sighup"), Ok(Signal::HUP));
/// assert_eq!(Signal::from_name("15"), Ok(Signal::TERM));
/// assert!(Signal::from_name("TREM").is_err());
/// assert_eq!(Signal::TERM.name(), "TERM");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

const NAMES: &[(&str, RawSignal)] = &[
    ("HUP", RawSignal::HUP),
    ("INT", RawSignal::INT),
    ("QUIT", RawSignal::QUIT),
    ("ABRT", RawSignal::ABORT),
    ("KILL", RawSignal::KILL),
    ("USR1", RawSignal::USR1),
    ("USR2", RawSignal::USR2),
    ("PIPE", RawSignal::PIPE),
    ("ALRM", RawSignal::ALARM),
    ("TERM", RawSignal::TERM),
    ("CONT", RawSignal::CONT),
    ("STOP", RawSignal::STOP),
    ("TSTP", RawSignal::TSTP),
    ("WINCH", RawSignal::WINCH),
];

impl Signal {
    /// SIGHUP.
    pub const HUP: Signal = Signal(RawSignal::HUP.as_raw());
    /// SIGINT.
    pub const INT: Signal = Signal(RawSignal::INT.as_raw());
    /// SIGQUIT.
    pub const QUIT: Signal = Signal(RawSignal::QUIT.as_raw());
    /// SIGABRT.
    pub const ABRT: Signal = Signal(RawSignal::ABORT.as_raw());
    /// SIGKILL.
    pub const KILL: Signal = Signal(RawSignal::KILL.as_raw());
    /// SIGTERM.
    pub const TERM: Signal = Signal(RawSignal::TERM.as_raw());
    /// SIGUSR1.
    pub const USR1: Signal = Signal(RawSignal::USR1.as_raw());
    /// SIGUSR2.
    pub const USR2: Signal = Signal(RawSignal::USR2.as_raw());
    /// SIGWINCH.
    pub const WINCH: Signal = Signal(RawSignal::WINCH.as_raw());
    /// SIGCONT.
    pub const CONT: Signal = Signal(RawSignal::CONT.as_raw());

    /// The signal with this number, if it is a named signal of this platform.
    pub fn from_raw(number: i32) -> Option<Signal> {
        RawSignal::from_named_raw(number).map(|s| Signal(s.as_raw()))
    }

    /// Parses `TERM`, `SIGTERM`, `term` or a number.
    pub fn from_name(name: &str) -> Result<Signal, String> {
        let upper = name.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Ok(number) = bare.parse::<i32>() {
            return Signal::from_raw(number)
                .ok_or_else(|| format!("signal number {number} is not a signal of this system"));
        }
        NAMES
            .iter()
            .find(|(n, _)| *n == bare)
            .map(|(_, s)| Signal(s.as_raw()))
            .ok_or_else(|| {
                let names: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown signal {name:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }

    /// The signal's number.
    pub fn as_raw(self) -> i32 {
        self.0
    }

    /// The short name (`TERM`), or the number if it has none here.
    pub fn name(self) -> String {
        NAMES
            .iter()
            .find(|(_, s)| s.as_raw() == self.0)
            .map_or_else(|| self.0.to_string(), |(n, _)| (*n).to_string())
    }

    fn raw(self) -> RawSignal {
        RawSignal::from_named_raw(self.0).unwrap_or(RawSignal::KILL)
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIG{}", self.name())
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIG{}", self.name())
    }
}

/// Sends `signal` to the process group `pgid`. A group that no longer exists is not an error.
/// Sends `signal` to process `pid` alone; a process that is gone is not an error.
pub(crate) fn signal_process(pid: u32, signal: Signal) -> io::Result<()> {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad process id",
        ));
    };
    match rustix::process::kill_process(pid, signal.raw()) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sends `signal` to the process behind `pidfd`: never to another process that reused
/// its pid after it was reaped (then it is `Ok(false)`).
pub(crate) fn signal_pidfd(pidfd: &std::os::fd::OwnedFd, signal: Signal) -> io::Result<bool> {
    match rustix::process::pidfd_send_signal(pidfd, signal.raw()) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::SRCH) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A pidfd for `pid`, where the kernel has them (Linux 5.3).
pub(crate) fn pidfd(pid: u32) -> Option<std::os::fd::OwnedFd> {
    let pid = i32::try_from(pid).ok().and_then(Pid::from_raw)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// Sends `signal` to `pid`'s process group when it leads one (`group`), to `pid` alone
/// otherwise.
pub(crate) fn signal_pod(pid: u32, group: bool, signal: Signal) -> io::Result<()> {
    if group {
        signal_group(pid, signal)
    } else {
        signal_process(pid, signal)
    }
}

pub(crate) fn signal_group(pgid: u32, signal: Signal) -> io::Result<()> {
    let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad process group id",
        ));
    };
    match kill_process_group(pid, signal.raw()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether any process (zombies included) is still in group `pgid`.
pub(crate) fn group_exists(pgid: u32) -> bool {
    i32::try_from(pgid)
        .ok()
        .and_then(Pid::from_raw)
        .is_some_and(|pid| rustix::process::test_kill_process_group(pid).is_ok())
}

/// Makes the child its own process group leader; with `cgroup_procs` (a pod cgroup's
/// `cgroup.procs`, opened before the fork) makes it join that cgroup before it can start
/// anything; and with `death_signal` asks the kernel to SIGKILL it when the thread that
/// spawned it ends (podvisor spawns from its long-lived driver thread, so this fires when
/// the supervising process dies). Either needs a `pre_exec` hook, which makes the standard
/// library fork instead of using `posix_spawn`: about 0.2 ms more per spawn. With `exec`,
/// the child execs itself as the plan says (after the other steps).
pub(crate) fn prepare_command(
    command: &mut Command,
    death_signal: bool,
    cgroup_procs: Option<std::os::fd::RawFd>,
    exec: Option<ExecPlan>,
    own_group: bool,
) {
    if own_group {
        command.process_group(0);
    }
    if !death_signal && cgroup_procs.is_none() && exec.is_none() {
        return;
    }
    // SAFETY: the closure makes only async-signal-safe system calls (write, prctl,
    // getpid, execve), writes only into buffers the plan owns (the child's copy), and
    // allocates nothing; the descriptor stays open in the parent until the spawn returns.
    unsafe {
        command.pre_exec(move || {
            if let Some(fd) = cgroup_procs {
                // Writing 0 moves the writer. A failure leaves the pod outside (as
                // without cgroups), it does not stop it.
                let fd = std::os::fd::BorrowedFd::borrow_raw(fd);
                let _ = rustix::io::write(fd, b"0");
            }
            #[cfg(target_os = "linux")]
            if death_signal {
                rustix::process::set_parent_process_death_signal(Some(RawSignal::KILL))
                    .map_err(io::Error::from)?;
            }
            if let Some(plan) = &exec {
                return Err(plan.exec());
            }
            Ok(())
        });
    }
}

/// An `execve` prepared in the parent, for a leader that must see its own pid in its
/// environment (`WATCHDOG_PID`, which systemd sets after fork): the standard library
/// builds the child's environment before fork and runs `pre_exec` closures before it
/// installs it, so the closure writes the pid into a copy of its own and execs itself.
/// Everything is allocated here; the child only writes digits and calls `execve`.
pub(crate) struct ExecPlan {
    path: std::ffi::CString,
    _argv: Vec<std::ffi::CString>,
    _env: Vec<Vec<u8>>,
    argv_ptrs: Vec<*const std::ffi::c_char>,
    env_ptrs: Vec<*const std::ffi::c_char>,
    /// Where the digits of `WATCHDOG_PID=` go (10 bytes and a NUL), if the child learns
    /// its pid.
    pid_at: Option<*mut u8>,
}

// SAFETY: the pointers point into buffers the plan owns; they are only read or written in
// the child: a forked one has its own copy of them; one of podvisor's own spawn
// (`CLONE_VM`) writes the parent's, while the spawning thread that owns the plan is held
// by the kernel until the child has exec'd or exited, and never uses it again.
unsafe impl Send for ExecPlan {}
// SAFETY: as above; the parent never reads or writes through them.
unsafe impl Sync for ExecPlan {}

extern "C" {
    fn execve(
        path: *const std::ffi::c_char,
        argv: *const *const std::ffi::c_char,
        envp: *const *const std::ffi::c_char,
    ) -> std::ffi::c_int;
}

impl ExecPlan {
    /// The exec `command` would do (with `WATCHDOG_PID` set to the child's pid when
    /// `own_pid`); `None` when it is left to the standard library: a program not found
    /// here, a relative entry in `PATH`, a script without `#!`, a NUL in a string.
    pub(crate) fn new(command: &Command, env_clear: bool, own_pid: bool) -> Option<ExecPlan> {
        use std::collections::BTreeMap;
        use std::ffi::{CString, OsString};
        use std::os::unix::ffi::OsStrExt;
        let mut env: BTreeMap<OsString, OsString> = if env_clear {
            BTreeMap::new()
        } else {
            std::env::vars_os().collect()
        };
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => env.insert(key.to_owned(), value.to_owned()),
                None => env.remove(key),
            };
        }
        if own_pid {
            env.remove(std::ffi::OsStr::new("WATCHDOG_PID"));
        }
        let program = command.get_program();
        let path = if program.as_bytes().contains(&b'/') {
            std::path::PathBuf::from(program)
        } else {
            let search = env
                .get(std::ffi::OsStr::new("PATH"))
                .cloned()
                .unwrap_or_else(|| OsString::from("/bin:/usr/bin"));
            let dirs: Vec<std::path::PathBuf> = std::env::split_paths(&search).collect();
            // A relative entry is searched from the pod's cwd, which only the child has:
            // leave such a lookup to the standard library.
            if dirs.iter().any(|d| d.is_relative()) {
                return None;
            }
            dirs.into_iter()
                .map(|dir| dir.join(program))
                .find(|candidate| is_executable(candidate))?
        };
        // `execvp` runs a script without `#!` through `/bin/sh`; `execve` would refuse it
        // (ENOEXEC): leave those to the standard library too.
        let directly = path.is_relative()
            || std::fs::File::open(&path).is_ok_and(|mut file| {
                let mut head = [0u8; 4];
                std::io::Read::read_exact(&mut file, &mut head).is_ok()
                    && (head == *b"\x7fELF" || head.starts_with(b"#!"))
            });
        if !directly {
            return None;
        }
        let path = CString::new(path.as_os_str().as_bytes()).ok()?;
        let argv: Vec<CString> = std::iter::once(program)
            .chain(command.get_args())
            .map(|a| CString::new(a.as_bytes()).ok())
            .collect::<Option<_>>()?;
        let mut entries: Vec<Vec<u8>> = Vec::with_capacity(env.len() + 1);
        for (key, value) in &env {
            let mut entry = key.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            if entry.contains(&0) {
                return None;
            }
            entry.push(0);
            entries.push(entry);
        }
        let prefix = b"WATCHDOG_PID=";
        let pid_at = own_pid.then(|| {
            let mut own = prefix.to_vec();
            own.extend_from_slice(&[b'0'; 10]);
            own.push(0);
            entries.push(own);
            let last = entries.len() - 1;
            entries[last][prefix.len()..].as_mut_ptr()
        });
        let argv_ptrs = argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let env_ptrs = entries
            .iter()
            .map(|e| e.as_ptr().cast())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        Some(ExecPlan {
            path,
            _argv: argv,
            _env: entries,
            argv_ptrs,
            env_ptrs,
            pid_at,
        })
    }

    /// In the child: writes its pid and execs. Returns only on failure.
    ///
    /// # Safety
    ///
    /// Only between fork and exec, in the child.
    unsafe fn exec(&self) -> io::Error {
        if let Some(pid_at) = self.pid_at {
            Self::write_pid(pid_at);
        }
        execve(
            self.path.as_ptr(),
            self.argv_ptrs.as_ptr(),
            self.env_ptrs.as_ptr(),
        );
        io::Error::last_os_error()
    }

    /// In the child: writes its pid's digits and a NUL at `pid_at`.
    ///
    /// # Safety
    ///
    /// Only in the child, before exec; `pid_at` has room for 10 digits and a NUL.
    unsafe fn write_pid(pid_at: *mut u8) {
        let mut pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
        let mut digits = [0u8; 10];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (pid % 10) as u8;
            n += 1;
            pid /= 10;
            if pid == 0 || n == digits.len() {
                break;
            }
        }
        for i in 0..n {
            *pid_at.add(i) = digits[n - 1 - i];
        }
        *pid_at.add(n) = 0;
    }
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Eight random bytes from the kernel (for names nobody can guess), or the time and pid
/// mixed if `/dev/urandom` cannot be read.
pub(crate) fn random_u64() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
        Ok(()) => u64::from_ne_bytes(bytes),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ (u64::from(std::process::id()) << 32)
        }
    }
}

impl ProcStat {
    /// Exited and waiting to be reaped (or being removed).
    pub(crate) fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Every process in `/proc` with its pid (Linux; empty elsewhere), read one by one (a
/// process may be gone between the listing and its read: it is skipped).
pub(crate) fn processes() -> Vec<(u32, ProcStat)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((pid, proc_stat(pid)?))
        })
        .collect()
}

/// The pids of the processes in group `pgid` that are not zombies, read from `/proc`
/// (Linux). Orphaned zombies wait for PID 1 to reap them and are not counted.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut members: Vec<u32> = processes()
        .into_iter()
        .filter(|(_, p)| p.pgid == pgid && !p.is_zombie())
        .map(|(pid, _)| pid)
        .collect();
    members.sort_unstable();
    members
}

/// What podvisor reads from `/proc/<pid>/stat` (Linux).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// Field 3: `R`, `S`, `Z` …
    pub(crate) state: char,
    /// Field 4: the parent's pid.
    pub(crate) ppid: u32,
    /// Field 5: the process group.
    pub(crate) pgid: u32,
    /// Field 22: when the process started, in clock ticks since boot; with the pid, it
    /// names one process for good (pids are reused, start times of one pid are not).
    pub(crate) start_time: u64,
}

/// `/proc/<pid>/stat` of `pid`, or `None` when there is no such process (or no `/proc`).
pub(crate) fn proc_stat(pid: u32) -> Option<ProcStat> {
    parse_proc_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `/proc/self/stat` of this process.
pub(crate) fn own_proc_stat() -> Option<ProcStat> {
    parse_proc_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn parse_proc_stat(stat: &str) -> Option<ProcStat> {
    // Fields after the command name (which may hold spaces and parentheses).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 of proc(5).
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Asks the kernel for a short time slice for the calling thread (Linux 6.12's custom
/// slices for normal threads): podvisor's threads do little work at a time, and one woken
/// while the cores run pods' work then runs without waiting for a pod's slice to end. Its
/// share of the CPU (nice value, policy) is unchanged, and what it spawns does not inherit
/// the slice (reset on fork). Does nothing where it cannot, nor for a thread with a
/// negative nice value (reset on fork would take that from its children).
pub(crate) fn prefer_short_slice() {
    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
    {
        /// `struct sched_attr`, as of its first version (48 bytes).
        #[repr(C)]
        #[derive(Default)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
        }
        extern "C" {
            fn syscall(number: std::ffi::c_long, ...) -> std::ffi::c_long;
        }
        const SCHED_SETATTR: std::ffi::c_long = 314;
        const SCHED_GETATTR: std::ffi::c_long = 315;
        const SCHED_FLAG_RESET_ON_FORK: u64 = 1;
        /// The shortest slice the kernel takes.
        const SLICE_NS: u64 = 100_000;
        let mut attr = SchedAttr::default();
        let size = std::mem::size_of::<SchedAttr>() as u32;
        // SAFETY: `attr` is a valid `struct sched_attr` of `size` bytes, for this thread.
        let got = unsafe {
            syscall(
                SCHED_GETATTR,
                0 as std::ffi::c_long,
                &mut attr as *mut SchedAttr,
                std::ffi::c_long::from(size),
                0 as std::ffi::c_long,
            )
        };
        // Normal threads only (SCHED_OTHER, SCHED_BATCH), with the nice value read kept;
        // not below nice 0, which children would not inherit once reset on fork.
        if got != 0 || attr.policy > 3 || attr.policy == 1 || attr.policy == 2 || attr.nice < 0 {
            return;
        }
        attr.size = size;
        // Not inherited: a pod spawned from this thread gets the kernel's default slice.
        attr.flags = SCHED_FLAG_RESET_ON_FORK;
        attr.runtime = SLICE_NS;
        // SAFETY: as above; older kernels refuse or ignore the runtime of a normal thread.
        let _ = unsafe {
            syscall(
                SCHED_SETATTR,
                0 as std::ffi::c_long,
                &attr as *const SchedAttr,
                0 as std::ffi::c_long,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_of_a_command_with_spaces_and_parentheses() {
        let stat = "42 (a) b (c) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 1 2 3";
        assert_eq!(
            parse_proc_stat(stat),
            Some(ProcStat {
                state: 'S',
                ppid: 7,
                pgid: 42,
                start_time: 123456
            })
        );
        assert_eq!(parse_proc_stat("42 (x) S 7"), None);
    }

    /// The fields of `/proc/thread-self/sched` a slice request may change.
    fn own_scheduling() -> (Option<String>, Option<String>) {
        let text = std::fs::read_to_string("/proc/thread-self/sched").unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        };
        (field("prio"), field("se.slice"))
    }

    #[test]
    fn a_short_slice_keeps_the_nice_value() {
        std::thread::spawn(|| {
            // A nice value of its own (raising it needs no privilege).
            let tid: i32 = std::fs::read_link("/proc/thread-self")
                .ok()
                .and_then(|l| l.file_name()?.to_str()?.parse().ok())
                .unwrap();
            rustix::process::setpriority_process(rustix::process::Pid::from_raw(tid), 5).unwrap();
            let (prio, slice) = own_scheduling();
            prefer_short_slice();
            let (prio_after, slice_after) = own_scheduling();
            assert_eq!(prio_after, prio);
            assert_eq!(prio.as_deref(), Some("125"));
            // Custom slices came with Linux 6.12; before, the request is refused.
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
            let mut version = release
                .split(['.', '-'])
                .map(|n| n.parse::<u32>().unwrap_or(0));
            let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
            if (major, minor) >= (6, 12) && cfg!(target_arch = "x86_64") && cfg!(target_env = "gnu")
            {
                assert_eq!(slice_after.as_deref(), Some("100000"), "before: {slice:?}");
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn own_stat_matches_our_pid_stat() {
        let me = proc_stat(std::process::id()).unwrap();
        let own = own_proc_stat().unwrap();
        // The state (running or sleeping) may change between the two reads: other test
        // threads run meanwhile. Who we are does not.
        assert_eq!(
            (own.ppid, own.pgid, own.start_time),
            (me.ppid, me.pgid, me.start_time)
        );
        assert_eq!(
            me.ppid,
            rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
        );
    }
}
