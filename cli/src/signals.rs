//! Telling a repeated stop request from a copy of the first one.
//!
//! Process managers and `timeout(1)` often signal a process and its process group
//! together, so podvisor receives the same signal twice within microseconds. Taken as "again
//! to kill at once", that copy would turn every graceful stop into a kill. A second copy of
//! the same signal within [`COPY_WINDOW`] of the first is one request; a later one (a
//! deliberate second Ctrl-C) still kills.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_lite::{future, StreamExt};

/// How close together two copies of one signal must be to count as one request.
pub const COPY_WINDOW: Duration = Duration::from_millis(100);

/// What a stop signal asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopRequest {
    /// The first: close gracefully.
    Close,
    /// A copy of the previous one: nothing more.
    Copy,
    /// A deliberate repeat: kill at once.
    Kill,
}

/// The stop signals received so far.
#[derive(Debug, Default)]
pub struct StopSignals {
    last: Option<(i32, Instant)>,
    first: Option<(i32, Instant)>,
}

impl StopSignals {
    /// Classifies `signal`, received at `now`.
    pub fn receive(&mut self, signal: i32, now: Instant) -> StopRequest {
        let request = match self.last {
            None => StopRequest::Close,
            Some((last, at))
                if last == signal && now.saturating_duration_since(at) < COPY_WINDOW =>
            {
                StopRequest::Copy
            }
            Some(_) => StopRequest::Kill,
        };
        if request != StopRequest::Copy {
            self.last = Some((signal, now));
        }
        if self.first.is_none() {
            self.first = Some((signal, now));
        }
        request
    }

    /// The first stop signal and when it came.
    pub fn first(&self) -> Option<(i32, Instant)> {
        self.first
    }
}

/// Signals as they arrive, each with the instant it did: a thread of their own waits for
/// them and does nothing else, so that a copy read late by a busy supervise loop does not
/// look like a deliberate repeat (the window is about arrivals, not handling).
pub struct Arrivals {
    received: async_channel::Receiver<(i32, Instant)>,
    /// Closed to end the thread, which then puts the signals' handling back.
    stop: Option<async_channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Arrivals {
    /// Takes over `signals` on a thread of its own.
    pub fn new(signals: async_signal::Signals) -> std::io::Result<Arrivals> {
        let (sender, received) = async_channel::unbounded();
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("podvisor-signals".into())
            .spawn(move || {
                let mut signals = signals;
                future::block_on(async {
                    loop {
                        let next = async { signals.next().await };
                        let end = async {
                            let _ = stopped.recv().await;
                            None
                        };
                        match future::or(next, end).await {
                            Some(Ok(signal)) => {
                                let at = Instant::now();
                                if sender.send((signal as i32, at)).await.is_err() {
                                    break;
                                }
                            }
                            Some(Err(_)) => {}
                            None => break,
                        }
                    }
                });
            })?;
        Ok(Arrivals {
            received,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The next signal and when it arrived; `None` once the thread is gone.
    pub async fn next(&self) -> Option<(i32, Instant)> {
        self.received.recv().await.ok()
    }
}

impl Drop for Arrivals {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INT: i32 = 2;
    const TERM: i32 = 15;

    #[test]
    fn copies_within_the_window_are_one_request() {
        let t = Instant::now();
        let mut s = StopSignals::default();
        assert_eq!(s.receive(TERM, t), StopRequest::Close);
        assert_eq!(
            s.receive(TERM, t + Duration::from_micros(20)),
            StopRequest::Copy
        );
        assert_eq!(
            s.receive(TERM, t + Duration::from_millis(99)),
            StopRequest::Copy
        );
        assert_eq!(s.first().map(|(n, _)| n), Some(TERM));
    }

    #[test]
    fn a_later_repeat_or_another_signal_kills() {
        let t = Instant::now();
        let mut s = StopSignals::default();
        assert_eq!(s.receive(INT, t), StopRequest::Close);
        assert_eq!(
            s.receive(INT, t + Duration::from_millis(300)),
            StopRequest::Kill
        );
        let mut s = StopSignals::default();
        assert_eq!(s.receive(INT, t), StopRequest::Close);
        assert_eq!(
            s.receive(TERM, t + Duration::from_millis(1)),
            StopRequest::Kill
        );
        // The window counts from the last request, not from a copy.
        let mut s = StopSignals::default();
        assert_eq!(s.receive(INT, t), StopRequest::Close);
        assert_eq!(
            s.receive(INT, t + Duration::from_millis(90)),
            StopRequest::Copy
        );
        assert_eq!(
            s.receive(INT, t + Duration::from_millis(150)),
            StopRequest::Kill
        );
    }

    /// A copy read long after it arrived (the supervise loop busy meanwhile) is still a
    /// copy: what counts is when it arrived.
    #[test]
    fn a_copy_read_late_is_still_a_copy() {
        let usr2 = async_signal::Signal::Usr2;
        let arrivals = Arrivals::new(async_signal::Signals::new([usr2]).unwrap()).unwrap();
        let raise = || {
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::USR2)
                .unwrap()
        };
        let mut s = StopSignals::default();
        raise();
        let (n, first) = future::block_on(arrivals.next()).unwrap();
        assert_eq!(n, usr2 as i32);
        assert_eq!(s.receive(n, first), StopRequest::Close);
        raise();
        // Busy for longer than the window before reading it.
        std::thread::sleep(COPY_WINDOW * 3);
        let (n, second) = future::block_on(arrivals.next()).unwrap();
        assert!(second - first < COPY_WINDOW * 2, "{:?}", second - first);
        assert_eq!(s.receive(n, second), StopRequest::Copy);
        // Dropped: the thread ends and the signal's handling is put back.
        drop(arrivals);
    }
}
