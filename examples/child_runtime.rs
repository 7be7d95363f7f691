//! A runtime run as a supervised child process: the same binary is the parent (no
//! arguments) and the child (`child`), which hands its runtime to `runtime::serve`.
//! The child's setup fails when given `child fail`, to show the error reaching the parent.
//!
//! Run with `cargo run --example child_runtime`.

use std::time::Duration;

use podvisor::runtime::{serve, Runtime, RuntimeContext, RuntimeError};
use podvisor::{Pod, PodConfig};

struct Service {
    fail_setup: bool,
}

impl Runtime for Service {
    fn setup(&self, _ctx: &RuntimeContext) -> Result<(), RuntimeError> {
        if self.fail_setup {
            return Err("cannot bind 127.0.0.1:1: permission denied".into());
        }
        Ok(())
    }

    fn run_forever(&self, ctx: &RuntimeContext) -> Result<(), RuntimeError> {
        ctx.status("serving");
        ctx.wait_cancelled();
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        let fail_setup = args.get(2).map(String::as_str) == Some("fail");
        serve(move || Ok(Service { fail_setup }));
    }
    let me = std::env::current_exe()?;
    let pod = Pod::new(
        PodConfig::new(&me)
            .arg("child")
            .name("service")
            .hosted_runtime(),
    )?;
    pod.start_and_wait_blocking()?;
    std::thread::sleep(Duration::from_millis(100));
    println!("ready, status {:?}", pod.status_text());
    println!("closed: {:?}", pod.close_blocking());

    let failing = Pod::new(
        PodConfig::new(&me)
            .args(["child", "fail"])
            .name("failing")
            .hosted_runtime(),
    )?;
    match failing.start_and_wait_blocking() {
        Ok(()) => println!("unexpectedly ready"),
        Err(error) => println!("{error}"),
    }
    Ok(())
}
