//! Takes one real child process through its whole life and prints what happens: start,
//! ready (by a line on stdout), a close the child ignores, SIGKILL at the end of the grace
//! period, and the reap. Then a second pod that fails to start, and a third that exits
//! before it is ready.
//!
//! Run with `cargo run --example pod`.

use std::time::{Duration, Instant};

use podvisor::{Pod, PodConfig, Readiness, State};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    futures_lite::future::block_on(async {
        let begin = Instant::now();
        let pod = Pod::new(
            PodConfig::new("sh")
                .args([
                    "-c",
                    "trap 'echo got SIGTERM, ignoring it' TERM; echo booting; sleep 0.3; echo listening on :8080; while :; do sleep 0.1; done",
                ])
                .name("web")
                .ready(Readiness::Stdout("listening".into()))
                .timeout_ready(Some(Duration::from_secs(10)))
                .grace(Duration::from_millis(500)),
        )?;
        pod.start();
        let mut seen = 0;
        loop {
            let (count, state) = pod.changed(seen).await;
            seen = count;
            println!(
                "[{:>6.3}s] state: {} (pid {:?})",
                begin.elapsed().as_secs_f64(),
                state.name(),
                pod.pid()
            );
            if state == State::Ready {
                break;
            }
        }
        println!(
            "[{:>6.3}s] start result: {:?}",
            begin.elapsed().as_secs_f64(),
            pod.start_result().unwrap()
        );
        pod.close_nowait(None);
        loop {
            let (count, state) = pod.changed(seen).await;
            seen = count;
            println!(
                "[{:>6.3}s] state: {}",
                begin.elapsed().as_secs_f64(),
                state.name()
            );
            if state == State::Ended {
                break;
            }
        }
        println!(
            "[{:>6.3}s] end: {:?}",
            begin.elapsed().as_secs_f64(),
            pod.join().await
        );
        println!("           last output: {:?}", pod.last_lines());

        let missing = Pod::new(PodConfig::new("no-such-program-anywhere"))?;
        if let Err(error) = missing.start_and_wait().await {
            println!("[{:>6.3}s] {error}", begin.elapsed().as_secs_f64());
        }
        let early = Pod::new(
            PodConfig::new("sh")
                .args(["-c", "echo 'cannot open config.toml' >&2; exit 2"])
                .name("migrate")
                .ready(Readiness::Notify),
        )?;
        if let Err(error) = early.start_and_wait().await {
            println!("[{:>6.3}s] {error}", begin.elapsed().as_secs_f64());
        }
        Ok(())
    })
}
