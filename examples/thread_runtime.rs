//! A runtime hosted on a thread of its own, behind the same `Pod` API as a process.
//!
//! Run with `cargo run --example thread_runtime`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use podvisor::runtime::{Runtime, RuntimeContext, RuntimeError};
use podvisor::{Pod, PodConfig};

/// Counts ticks until it is cancelled.
struct Ticker {
    ticks: AtomicU64,
}

impl Runtime for Ticker {
    fn setup(&self, ctx: &RuntimeContext) -> Result<(), RuntimeError> {
        ctx.status("warming up");
        Ok(())
    }

    fn run_forever(&self, ctx: &RuntimeContext) -> Result<(), RuntimeError> {
        while !ctx.wait_cancelled_timeout(Duration::from_millis(50)) {
            self.ticks.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn teardown(&self) -> Result<(), RuntimeError> {
        println!(
            "teardown after {} ticks",
            self.ticks.load(Ordering::Relaxed)
        );
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pod = Pod::new(PodConfig::thread("ticker", || {
        Ok(Ticker {
            ticks: AtomicU64::new(0),
        })
    }))?;
    pod.start_and_wait_blocking()?;
    println!("ready: {:?}", pod.start_result());
    std::thread::sleep(Duration::from_millis(300));
    println!("closed: {:?}", pod.close_blocking());
    Ok(())
}
