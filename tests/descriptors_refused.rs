//! podvisor's own spawn where the kernel refuses the child a private table of descriptors
//! (a seccomp filter, as container runtimes install): with `close_range` refused, the child
//! copies the whole table (`unshare`), as before Linux 5.9; with `unshare` refused too, the
//! spawn falls back to the standard library's. Either way the pod runs, and a descriptor
//! podvisor opened without close-on-exec reaches it, as with any copied table.
//!
//! Each case runs in a process of its own (this test binary again): a seccomp filter cannot
//! be taken back, and podvisor's threads, which inherit it, are made once per process.

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod support;

use std::os::fd::{AsRawFd, OwnedFd};

use podvisor::{End, ExitStatus};
use support::{inheritable, run_sh};

const CASE: &str = "PODVISOR_TEST_REFUSE";
const NAME: &str = "spawns_work_where_the_kernel_refuses_a_private_table";

/// Makes the system calls numbered `refused` fail with ENOSYS for this thread and the
/// threads and processes it creates from now on. False where filters cannot be installed.
fn refuse(refused: &[u32]) -> bool {
    #[repr(C)]
    struct SockFilter {
        code: u16,
        jt: u8,
        jf: u8,
        k: u32,
    }
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const SockFilter,
    }
    extern "C" {
        fn prctl(option: std::ffi::c_int, ...) -> std::ffi::c_int;
    }
    const LOAD_WORD: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JUMP_IF_EQUAL: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RETURN: u16 = 0x06; // BPF_RET | BPF_K
    const ALLOW: u32 = 0x7fff_0000;
    const ENOSYS: u32 = 0x0005_0000 | 38; // SECCOMP_RET_ERRNO | ENOSYS
    const X86_64: u32 = 0xc000_003e;
    let statement = |code, k| SockFilter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    // The architecture (offset 4) first, then the number (offset 0).
    let mut program = vec![
        statement(LOAD_WORD, 4),
        SockFilter {
            code: JUMP_IF_EQUAL,
            jt: 1,
            jf: 0,
            k: X86_64,
        },
        statement(RETURN, ALLOW),
        statement(LOAD_WORD, 0),
    ];
    for &number in refused {
        program.push(SockFilter {
            code: JUMP_IF_EQUAL,
            jt: 0,
            jf: 1,
            k: number,
        });
        program.push(statement(RETURN, ENOSYS));
    }
    program.push(statement(RETURN, ALLOW));
    let fprog = SockFprog {
        len: program.len() as u16,
        filter: program.as_ptr(),
    };
    const PR_SET_NO_NEW_PRIVS: std::ffi::c_int = 38;
    const PR_SET_SECCOMP: std::ffi::c_int = 22;
    const SECCOMP_MODE_FILTER: std::ffi::c_ulong = 2;
    // SAFETY: `fprog` points to `program`, alive until the call returns (the kernel copies
    // it); both calls affect only this thread and what it creates later.
    unsafe {
        prctl(
            PR_SET_NO_NEW_PRIVS,
            1 as std::ffi::c_ulong,
            0 as std::ffi::c_ulong,
            0 as std::ffi::c_ulong,
            0 as std::ffi::c_ulong,
        ) == 0
            && prctl(
                PR_SET_SECCOMP,
                SECCOMP_MODE_FILTER,
                &fprog as *const SockFprog,
            ) == 0
    }
}

/// The case itself, in the process made for it.
fn case(refused: &[u32]) {
    if !refuse(refused) {
        eprintln!("skipped: this machine does not let a test install a seccomp filter");
        return;
    }
    // The filter works: the call is refused here too.
    // SAFETY: `close_range` of no descriptor at all (first above last) closes nothing.
    let closed = unsafe { libc_syscall(436, 1 << 30, 1 << 30, 0) };
    assert_eq!(closed, -1, "the filter did not take");
    let first = run_sh("exit 0");
    assert_eq!(first, End::Exited(ExitStatus::Code(0)));
    let stray = inheritable(2000);
    let pipes: Vec<(OwnedFd, OwnedFd)> = (0..50)
        .map(|_| rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap())
        .collect();
    // A copied table: the stray one is there, the close-on-exec ones closed at exec.
    let script = format!(
        "test -e /proc/self/fd/{} || exit 4; test -e /proc/self/fd/{} && exit 5; exit 0",
        stray.as_raw_fd(),
        pipes[0].0.as_raw_fd()
    );
    for _ in 0..3 {
        assert_eq!(
            run_sh(&script),
            End::Exited(ExitStatus::Code(0)),
            "{script}"
        );
    }
}

/// glibc's `syscall`, for the check that the filter took.
///
/// # Safety
///
/// As for the system call made.
unsafe fn libc_syscall(number: i64, a: i64, b: i64, c: i64) -> i64 {
    extern "C" {
        fn syscall(number: std::ffi::c_long, ...) -> std::ffi::c_long;
    }
    // SAFETY: the caller's.
    unsafe { syscall(number, a, b, c) }
}

#[test]
fn spawns_work_where_the_kernel_refuses_a_private_table() {
    const CLOSE_RANGE: u32 = 436;
    const UNSHARE: u32 = 272;
    match std::env::var(CASE).as_deref() {
        Ok("close_range") => case(&[CLOSE_RANGE]),
        Ok("close_range,unshare") => case(&[CLOSE_RANGE, UNSHARE]),
        Ok(other) => panic!("unknown case {other:?}"),
        Err(_) => {
            for refused in ["close_range", "close_range,unshare"] {
                let out = std::process::Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
                    .env(CASE, refused)
                    .output()
                    .unwrap();
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(out.status.success(), "{refused} refused:\n{text}");
                assert!(text.contains("1 passed"), "{refused} refused:\n{text}");
                eprintln!(
                    "{refused} refused: {}",
                    text.lines()
                        .find(|l| l.contains("skipped"))
                        .unwrap_or("ran")
                );
            }
        }
    }
}
