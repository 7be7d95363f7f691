//! What a child gets of podvisor's table of descriptors. podvisor's own spawn does not copy
//! the table (copying, then closing at exec, every descriptor of every pod already running
//! made a spawn's cost grow with their number): the child keeps only the descriptors below
//! a limit set when podvisor first spawns (the next multiple of 64 above the descriptors
//! open then) — its standard streams and any it inherited itself, such as a make
//! jobserver's — and closes the close-on-exec ones among them at exec. Before Linux 5.9 (no
//! `close_range`), and with the standard library's spawn, the whole table is copied.
//!
//! One test in its own binary: "before the first spawn" is a moment of the whole process.

mod support;

use std::os::fd::{AsRawFd, OwnedFd};

use podvisor::{End, ExitStatus};
use support::{inheritable, run_sh};

#[test]
fn a_child_keeps_what_podvisor_inherited_and_gets_no_copy_of_its_table() {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut version = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let kernel = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    let own_spawn =
        kernel >= (5, 9) && std::env::var_os("PODVISOR_SPAWN").is_none_or(|v| v != "std");
    // Open before podvisor's first spawn, as a descriptor podvisor inherited would be.
    let inherited = inheritable(3);
    let first = run_sh("exit 0");
    assert_eq!(first, End::Exited(ExitStatus::Code(0)));
    // Opened later, at a high number: many close-on-exec ones (a thousand pods' pipes),
    // and one that is not.
    let many: Vec<(OwnedFd, OwnedFd)> = (0..500)
        .map(|_| rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap())
        .collect();
    let stray = inheritable(2000);
    let (inherited, stray) = (inherited.as_raw_fd(), stray.as_raw_fd());
    let expect_stray = if own_spawn { "! test -e" } else { "test -e" };
    let script = format!(
        "test -e /proc/self/fd/{inherited} || exit 3; \
         {expect_stray} /proc/self/fd/{stray} || exit 4; \
         test -e /proc/self/fd/{} && exit 5; exit 0",
        many[0].0.as_raw_fd()
    );
    assert_eq!(
        run_sh(&script),
        End::Exited(ExitStatus::Code(0)),
        "{script}"
    );
    drop(many);
}
