//! What the handles share — [`Pod`](crate::Pod), [`Deployment`](crate::Deployment) and the
//! event log: state published under a lock a panic does not poison, waiters woken on every
//! change, waiting until a condition holds, and giving up after a timeout.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use event_listener::Event;

/// State a driver updates and handles wait on.
pub(crate) struct Published<T> {
    state: Mutex<T>,
    changed: Event,
}

impl<T> Published<T> {
    pub(crate) fn new(state: T) -> Published<T> {
        Published {
            state: Mutex::new(state),
            changed: Event::new(),
        }
    }

    /// The state, locked.
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        lock(&self.state)
    }

    /// Wakes everyone waiting in [`Published::wait_for`] to look again.
    pub(crate) fn notify(&self) {
        self.changed.notify(usize::MAX);
    }

    /// Waits until `ready` finds what it looks for in the state.
    pub(crate) async fn wait_for<R>(&self, mut ready: impl FnMut(&T) -> Option<R>) -> R {
        loop {
            // Listen before looking, so a change between the look and the wait is not lost.
            let listener = self.changed.listen();
            if let Some(value) = ready(&self.lock()) {
                return value;
            }
            listener.await;
        }
    }
}

/// Locks `mutex`. A panic while it was held leaves consistent data behind (every update
/// is complete before anything that could panic), so a poisoned lock is used as it is.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `future`'s output, or `None` if `timeout` passes first (`future` is then dropped).
pub(crate) async fn within<F: Future>(timeout: Duration, future: F) -> Option<F::Output> {
    let done = async { Some(future.await) };
    let timer = async {
        async_io::Timer::after(timeout).await;
        None
    };
    futures_lite::future::or(done, timer).await
}
