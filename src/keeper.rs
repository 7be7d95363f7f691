//! The keeper: one small process per podvisor that outlives it, to kill what podvisor
//! started when podvisor dies without closing its pods (SIGKILL, a crash, `abort`).
//!
//! The kernel's parent-death signal reaches only each pod's leader, and nothing kills a
//! cgroup when its owner dies. So at the first spawn podvisor starts a keeper: `sh`
//! running a short script, in a process group of its own (a Ctrl-C at the terminal does
//! not reach it) and ignoring the signals a terminal sends. podvisor writes it one line
//! per pod process group (`+PGID` when spawned, `-PGID` once swept) over a socket only
//! podvisor holds — only for pods outside a cgroup, or where the kernel has no
//! `cgroup.kill` (before 5.14): otherwise the kill of the cgroups reaches them all. When podvisor is gone, the socket reaches its end, and the keeper sends
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
# The listed groups are shell variables, one each: the shell's own table of variables is
# the set, so a line costs the same however many groups are listed.
while IFS= read -r line; do
  g=${line#?}
  case $g in ''|*[!0-9]*) continue ;; esac
  case $line in
    +*) eval "podvisor_group_$g=1" ;;
    -*) unset "podvisor_group_$g" ;;
  esac
done
set | while IFS= read -r v; do
  case $v in
    podvisor_group_*=*) g=${v%%=*}; kill -9 "-${g#podvisor_group_}" 2>/dev/null ;;
  esac
done
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

#[cfg(test)]
mod tests {
    use super::SCRIPT;
    use std::io::Write;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// A child killed and reaped when dropped, should the test fail before it ends.
    struct Reaped(Child);

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn group() -> Reaped {
        Reaped(
            Command::new("sleep")
                .arg("600")
                .process_group(0)
                .spawn()
                .unwrap(),
        )
    }

    /// The keeper, fed `lines` by a podvisor that then ends, kills exactly the groups still
    /// listed (a number listed again after it was forgotten is listed), ignores lines that
    /// are not `+` or `-` and a number, and gets through thousands of groups forgotten in
    /// any order at once (it used to take minutes, scanning its list for every line, while
    /// what it should kill outlived podvisor).
    #[test]
    fn the_keeper_kills_the_groups_still_listed_however_many_were_listed() {
        let shells: Vec<&str> = ["/bin/sh", "bash"]
            .into_iter()
            .filter(|s| Command::new(s).args(["-c", "exit 0"]).status().is_ok())
            .collect();
        assert!(!shells.is_empty());
        for shell in shells {
            let (mut kept, mut forgotten, mut again) = (group(), group(), group());
            let mut lines = String::new();
            for pid in [kept.0.id(), forgotten.0.id(), again.0.id()] {
                lines.push_str(&format!("+{pid}\n"));
            }
            lines.push_str(&format!("-{}\n-{}\n", forgotten.0.id(), again.0.id()));
            // Numbers no process group can have (above the largest pid_max).
            let n = 3000u32;
            for i in 0..n {
                lines.push_str(&format!("+{}\n", 5_000_000 + i));
            }
            for i in 0..n {
                lines.push_str(&format!("-{}\n", 5_000_000 + (i * 7919) % n));
            }
            lines.push_str(&format!(
                "+{}\n+\n+12a\nx{}\n\n",
                again.0.id(),
                forgotten.0.id()
            ));
            let mut keeper = Reaped(
                Command::new(shell)
                    .args(["-c", SCRIPT, "podvisor-keeper", ""])
                    .stdin(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
            let mut input = keeper.0.stdin.take().unwrap();
            input.write_all(lines.as_bytes()).unwrap();
            drop(input);
            let deadline = Instant::now() + Duration::from_secs(60);
            while keeper.0.try_wait().unwrap().is_none() {
                assert!(
                    Instant::now() < deadline,
                    "{shell}: the keeper is still at work"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(kept.0.wait().unwrap().signal(), Some(9), "{shell}");
            assert_eq!(again.0.wait().unwrap().signal(), Some(9), "{shell}");
            assert_eq!(forgotten.0.try_wait().unwrap(), None, "{shell}");
        }
    }
}
