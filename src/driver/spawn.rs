//! Spawning a process pod: prepared on the preparing thread (its cgroup, its exec plan),
//! spawned on the spawning thread — by podvisor's own spawn where it can be used
//! (`os::clone`), otherwise by the standard library's — and watched by the driver
//! ([`Born::watch`], [`Spawned`]).

use std::io;
use std::process::Stdio;

use crate::config::{Input, Output};
use crate::os;

use super::process::{Pipe, StatusFuture};

/// What the spawning thread answers: the child and its cgroup.
pub(super) type SpawnAnswer = io::Result<(Born, Option<crate::cgroup::PodCgroup>)>;

/// A child as the spawning thread hands it over; the driver watches it
/// ([`Born::watch`]), so that registering its descriptors with the reactor is off the
/// spawning thread, which every pod of a burst waits on in turn.
pub(super) struct Born(Option<Child>);

/// A child by the way it was spawned.
enum Child {
    /// By the standard library, already watched.
    Std(Spawned),
    /// By podvisor's own spawn.
    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
    Own(os::clone::Child),
}

impl Born {
    /// Its exit and output, watched: a child that cannot be watched (out of descriptors,
    /// say) is killed and reaped.
    pub(super) fn watch(mut self) -> io::Result<Spawned> {
        match self.0.take() {
            Some(Child::Std(spawned)) => Ok(spawned),
            #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
            Some(Child::Own(child)) => Spawned::from_clone(child),
            None => Err(io::Error::other("the child was watched already")),
        }
    }
}

/// A child handed over but never watched (its pod dropped while it was being spawned) is
/// still reaped once it ends, and its pid released, as a watched one would be.
impl Drop for Born {
    fn drop(&mut self) {
        #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
        if let Some(Child::Own(child)) = self.0.take() {
            drop(Spawned::from_clone(child));
        }
    }
}

/// A child the spawning thread started, watched: its pid, its output pipes, its exit.
pub(super) struct Spawned {
    pub(super) pid: u32,
    /// Its pidfd, when the spawn made one.
    pub(super) pidfd: Option<std::os::fd::OwnedFd>,
    pub(super) stdout: Option<Pipe>,
    pub(super) stderr: Option<Pipe>,
    pub(super) status: StatusFuture,
}

impl Spawned {
    fn from_std(mut child: async_process::Child) -> Spawned {
        Spawned {
            pid: child.id(),
            pidfd: None,
            stdout: child.stdout.take().map(|p| Box::new(p) as Pipe),
            stderr: child.stderr.take().map(|p| Box::new(p) as Pipe),
            status: Box::pin(child.status()),
        }
    }

    /// A child of podvisor's own spawn: its exit is seen on its pidfd.
    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
    fn from_clone(child: os::clone::Child) -> io::Result<Spawned> {
        let pipe = |fd: Option<std::os::fd::OwnedFd>| -> io::Result<Option<Pipe>> {
            fd.map(|fd| Ok(Box::new(async_io::Async::new(std::fs::File::from(fd))?) as Pipe))
                .transpose()
        };
        let os::clone::Child {
            pid,
            pidfd,
            stdout,
            stderr,
            ..
        } = child;
        let watched = (|| {
            let exit = async_io::Async::new(pidfd.try_clone()?)?;
            Ok::<_, io::Error>((exit, pipe(stdout)?, pipe(stderr)?))
        })();
        let (exit, stdout, stderr) = match watched {
            Ok(watched) => watched,
            Err(error) => {
                // Out of descriptors, say: a child nobody would watch is not left running.
                os::clone::discard(pid, &pidfd);
                crate::reaper::release(pid);
                return Err(error);
            }
        };
        let exit = Reaped(Some(exit), pid);
        Ok(Spawned {
            pid,
            pidfd: Some(pidfd),
            stdout,
            stderr,
            status: Box::pin(async move {
                let mut exit = exit;
                let status = exit.wait().await;
                exit.0 = None;
                status
            }),
        })
    }
}

/// The pidfd of a child of podvisor's own spawn (and its pid), until its exit status is
/// taken. Dropped before that (the pod abandoned), the child is reaped by a thread of its
/// own once it ends, so that it never stays a zombie, and its pid is released to the
/// orphan reaper.
#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
struct Reaped(Option<async_io::Async<std::os::fd::OwnedFd>>, u32);

#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
impl Reaped {
    async fn wait(&mut self) -> io::Result<std::process::ExitStatus> {
        let Some(fd) = &self.0 else {
            return Err(io::Error::other("the exit status was taken already"));
        };
        loop {
            if let Some(status) = os::clone::try_wait(std::os::fd::AsFd::as_fd(fd.get_ref()))? {
                return Ok(status);
            }
            fd.readable().await?;
        }
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
impl Drop for Reaped {
    fn drop(&mut self) {
        let Some(fd) = self.0.take() else { return };
        let pid = self.1;
        let Ok(fd) = fd.into_inner() else { return };
        let reaped = os::clone::try_wait(std::os::fd::AsFd::as_fd(&fd));
        if matches!(reaped, Ok(None)) {
            let _ = std::thread::Builder::new()
                .name("podvisor-reap".into())
                .spawn(move || {
                    let _ = rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::empty());
                    let _ = rustix::process::waitid(
                        rustix::process::WaitId::PidFd(std::os::fd::AsFd::as_fd(&fd)),
                        rustix::process::WaitIdOptions::EXITED,
                    );
                    crate::reaper::release(pid);
                });
        } else {
            crate::reaper::release(pid);
        }
    }
}

/// How one spawn is made (on the spawning thread).
pub(super) struct SpawnPlan {
    pub(super) command: std::process::Command,
    pub(super) env_clear: bool,
    pub(super) death_signal: bool,
    pub(super) stdin: Input,
    pub(super) stdout: Output,
    pub(super) stderr: Output,
    /// The leader learns its own pid (`WATCHDOG_PID`).
    pub(super) own_pid: bool,
    pub(super) own_group: bool,
}

/// A spawn made ready on the preparing thread: the keeper runs, the pod's cgroup is made,
/// its exec is planned (the program found on `PATH`, the environment laid out).
pub(super) struct Prepared {
    plan: SpawnPlan,
    cgroup: Option<crate::cgroup::PodCgroup>,
    exec: Option<os::ExecPlan>,
}

/// On the preparing thread, while the spawning thread spawns the pods before this one.
pub(super) fn prepare(plan: SpawnPlan) -> Prepared {
    crate::keeper::ensure();
    let cgroup = crate::cgroup::PodCgroup::new();
    let exec = os::ExecPlan::new(&plan.command, plan.env_clear, plan.own_pid);
    Prepared { plan, cgroup, exec }
}

/// On the spawning thread: the child, born in the pod's cgroup by podvisor's own spawn
/// where it can be (see `os::clone`), otherwise forked by the standard library and
/// joining it before exec. The child is registered as one podvisor waits for itself
/// before the orphan reaper can look at it. `PODVISOR_SPAWN=std` always uses the standard
/// library.
pub(super) fn spawn_process(prepared: Prepared) -> SpawnAnswer {
    let Prepared { plan, cgroup, exec } = prepared;
    let SpawnPlan {
        mut command,
        env_clear: _,
        death_signal,
        stdin,
        stdout,
        stderr,
        own_pid,
        own_group,
    } = plan;
    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
    if let Some(exec) = exec.as_ref().filter(|_| own_spawn()) {
        use std::os::unix::ffi::OsStrExt;
        let cwd = match command.get_current_dir() {
            Some(dir) => std::ffi::CString::new(dir.as_os_str().as_bytes()).ok(),
            None => None,
        };
        if cwd.is_some() || command.get_current_dir().is_none() {
            let stdio = |output: Output| match output {
                Output::Capture | Output::Forward => os::clone::Stdio::Pipe,
                Output::Inherit => os::clone::Stdio::Inherit,
                Output::Discard => os::clone::Stdio::Null,
            };
            let request = os::clone::Request {
                plan: exec,
                stdin: match stdin {
                    Input::Null => os::clone::Stdio::Null,
                    Input::Inherit => os::clone::Stdio::Inherit,
                },
                stdout: stdio(stdout),
                stderr: stdio(stderr),
                cwd: cwd.as_deref(),
                own_group,
                death_signal,
                cgroup: cgroup.as_ref().map(|c| c.dir_fd()),
            };
            let spawned = crate::reaper::spawn_claimed(
                || os::clone::spawn(&request),
                |child| child.as_ref().map(|c| c.pid),
            )?;
            if let Some(child) = spawned {
                let cgroup = cgroup.filter(|_| child.in_cgroup);
                return Ok((Born(Some(Child::Own(child))), cgroup));
            }
        }
    }
    // Open until the spawn has returned: the child writes to it between fork and exec.
    let procs = cgroup.as_ref().and_then(|c| c.open_procs().ok());
    os::prepare_command(
        &mut command,
        death_signal,
        procs.as_ref().map(std::os::fd::AsRawFd::as_raw_fd),
        exec.filter(|_| own_pid),
        own_group,
    );
    let mut command = async_process::Command::from(command);
    command.stdin(match stdin {
        Input::Null => Stdio::null(),
        Input::Inherit => Stdio::inherit(),
    });
    command.stdout(self::stdio(stdout));
    command.stderr(self::stdio(stderr));
    // podvisor reaps and kills through the core's actions, never implicitly on drop.
    command.kill_on_drop(false);
    let child = crate::reaper::spawn_claimed(|| command.spawn(), |child| Some(child.id()))?;
    drop(procs);
    // Joining happens in the child, which cannot report a failure (a delegation that does
    // not reach podvisor's own cgroup, say): a pod outside its cgroup must not be taken
    // for contained.
    let cgroup = cgroup.filter(|c| c.holds(child.id()));
    Ok((Born(Some(Child::Std(Spawned::from_std(child)))), cgroup))
}

/// Whether podvisor's own spawn is used (`PODVISOR_SPAWN=std` turns it off).
#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
fn own_spawn() -> bool {
    static OWN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OWN.get_or_init(|| {
        std::env::var_os("PODVISOR_SPAWN").is_none_or(|v| v != "std") && kernel_has_clone3()
    })
}

/// Linux 5.7 or later: `CLONE_INTO_CGROUP`, and a `clone3` that places the child's stack
/// right (unpatched 5.3 and 5.4 did not).
#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
fn kernel_has_clone3() -> bool {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (5, 7)
}

fn stdio(output: Output) -> Stdio {
    match output {
        Output::Capture | Output::Forward => Stdio::piped(),
        Output::Inherit => Stdio::inherit(),
        Output::Discard => Stdio::null(),
    }
}
