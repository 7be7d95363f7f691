//! The keeper: one small process per podvisor that outlives it, to kill what podvisor
//! started when podvisor dies without closing its pods (SIGKILL, a crash, `abort`).
//!
//! The kernel's parent-death signal reaches only each pod's leader, and nothing kills a
//! cgroup when its owner dies. So at the first spawn podvisor starts a keeper: `sh`
//! running a short script, in a process group of its own (a Ctrl-C at the terminal does
//! not reach it) and ignoring the signals a terminal sends. podvisor writes it one line
//! per pod process group (`+PGID` when spawned, `-PGID` once swept) over a socket only
//! podvisor holds. When podvisor is gone, the socket reaches its end, and the keeper sends
//! SIGKILL to every process group still listed and to podvisor's cgroups (when there are
//! any: every process of every pod, also those that left their group), then removes those
//! cgroups and exits. On a normal exit the same happens with nothing left to kill.
//!
//! It is a shell so that the library needs no binary of its own and no fork without exec
//! in a threaded program. It costs one process per podvisor, started once.

use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// Reads lines until its standard input ends, then kills what they list.
const SCRIPT: &str = r#"
trap '' INT TERM HUP QUIT TSTP TTIN TTOU PIPE
base=$1
groups=' '
while IFS= read -r line; do
  case $line in
    +*) groups="$groups${line#+} " ;;
    -*) g=${line#-}
        case $groups in *" $g "*) groups="${groups%% $g *} ${groups#* $g }" ;; esac ;;
  esac
done
for g in $groups; do kill -9 "-$g" 2>/dev/null; done
if [ -n "$base" ] && [ -d "$base" ]; then
  if ! { echo 1 > "$base/cgroup.kill"; } 2>/dev/null; then
    # Before Linux 5.14 there is no cgroup.kill: signal every member one by one.
    for d in "$base"/*/; do
      [ -f "$d/cgroup.procs" ] || continue
      while IFS= read -r p; do kill -9 "$p" 2>/dev/null; done < "$d/cgroup.procs"
    done
  fi
  i=0
  while [ -d "$base" ] && [ $i -lt 100 ]; do
    for d in "$base"/*/; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
    rmdir "$base" 2>/dev/null || sleep 0.05
    i=$((i+1))
  done
fi
"#;

struct Keeper {
    /// podvisor's end of the keeper's standard input, a socket: written without blocking
    /// (podvisor's driver never waits for the keeper) and without SIGPIPE (a keeper that
    /// died must not kill a program that restored SIGPIPE's default).
    socket: Mutex<std::os::unix::net::UnixStream>,
}

fn keeper() -> Option<&'static Keeper> {
    static KEEPER: OnceLock<Option<Keeper>> = OnceLock::new();
    KEEPER.get_or_init(|| start().ok()).as_ref()
}

fn start() -> std::io::Result<Keeper> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    let base = crate::cgroup::base()
        .map(|p| p.as_os_str().to_owned())
        .unwrap_or_default();
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", SCRIPT, "podvisor-keeper"])
        .arg(base)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn()?;
    crate::reaper::claim(child.id());
    // Reap the keeper if it ever ends before podvisor (someone killed it).
    let _ = std::thread::Builder::new()
        .name("podvisor-keeper".into())
        .spawn(move || child.wait());
    Ok(Keeper {
        socket: Mutex::new(ours),
    })
}

fn tell(line: String) {
    if let Some(keeper) = keeper() {
        let socket = keeper.socket.lock().unwrap_or_else(|e| e.into_inner());
        // A full buffer (a keeper stopped for long) or a dead keeper loses this line;
        // podvisor never waits for it.
        let _ = rustix::net::send(&*socket, line.as_bytes(), rustix::net::SendFlags::NOSIGNAL);
    }
}

/// Makes sure the keeper runs (before the first pod is spawned, so that it holds no pod's
/// pipes).
pub(crate) fn ensure() {
    let _ = keeper();
}

/// A pod's process group exists.
pub(crate) fn watch_group(pgid: u32) {
    tell(format!("+{pgid}\n"));
}

/// A pod's process group was swept: the keeper forgets it (its number may be reused).
pub(crate) fn forget_group(pgid: u32) {
    tell(format!("-{pgid}\n"));
}
