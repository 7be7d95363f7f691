//! Telling a repeated stop request from a copy of the first one.
//!
//! Process managers and `timeout(1)` often signal a process and its process group
//! together, so podvisor receives the same signal twice within microseconds. Taken as "again
//! to kill at once", that copy would turn every graceful stop into a kill. A second copy of
//! the same signal within [`COPY_WINDOW`] of the first is one request; a later one (a
//! deliberate second Ctrl-C) still kills.

use std::time::{Duration, Instant};

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
}
