//! podvisor's own background thread, which drives every pod.
//!
//! Pods must make progress (timeouts, SIGKILL escalation, reaping) even when no caller
//! polls anything, and must not depend on the caller's executor. So each pod's driver runs
//! as a task on one lazily started, never-ending thread, which also drives async-process's
//! reaper. async-io's own thread alone waits on the reactor: a thread in
//! `async_io::block_on` would share that work with it, and async-io's thread then polls
//! with a backoff of 50 µs to 10 ms after every event — ten wake-ups for each probe
//! attempt of a pod waiting on a port. Here the thread sleeps until a task is woken.
//! Children are spawned from this thread, so their parent-death signal fires only when
//! the whole supervising process dies.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Tasks polled per wake-up before the thread yields to the reactor.
const BATCH: usize = 256;

struct Queue {
    ready: Mutex<VecDeque<Arc<Task>>>,
    thread_waker: Mutex<Option<Waker>>,
}

struct Task {
    future: Mutex<Option<BoxFuture>>,
    queued: AtomicBool,
    queue: Arc<Queue>,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.queue
                .ready
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back(self.clone());
            if let Some(waker) = self
                .queue
                .thread_waker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                waker.wake_by_ref();
            }
        }
    }
}

fn queue() -> &'static Arc<Queue> {
    static QUEUE: OnceLock<Arc<Queue>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let queue = Arc::new(Queue {
            ready: Mutex::new(VecDeque::new()),
            thread_waker: Mutex::new(None),
        });
        let for_thread = queue.clone();
        std::thread::Builder::new()
            .name("podvisor".into())
            .spawn(move || {
                crate::os::prefer_short_slice();
                run(for_thread)
            })
            .expect("podvisor could not start its driver thread");
        queue
    })
}

fn run(queue: Arc<Queue>) {
    futures_lite::future::block_on(std::future::poll_fn(|cx| {
        *queue.thread_waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        // Only the tasks queued now: a task that wakes itself (a pod with more output to
        // read) runs again after the reactor had a turn, so other pods' events, timers and
        // signals are seen between its turns.
        let queued = queue.ready.lock().unwrap_or_else(|e| e.into_inner()).len();
        if queued == 0 {
            return Poll::<()>::Pending;
        }
        for _ in 0..queued.min(BATCH) {
            let Some(task) = queue
                .ready
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front()
            else {
                return Poll::<()>::Pending;
            };
            task.queued.store(false, Ordering::Release);
            let waker = Waker::from(task.clone());
            let mut slot = task.future.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(future) = slot.as_mut() {
                if future
                    .as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_ready()
                {
                    *slot = None;
                }
            }
        }
        // More work is queued: let the reactor run, then come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }));
}

/// Runs `future` to completion on podvisor's driver thread.
pub(crate) fn spawn(future: impl Future<Output = ()> + Send + 'static) {
    // Drive async-process's reaper from this thread too, instead of a thread of its own.
    static REAPER: OnceLock<()> = OnceLock::new();
    REAPER.get_or_init(|| {
        // Polled once here, before any child can be spawned: async-process then counts it
        // as its driver. A spawn that found none would start async-process's own thread,
        // which runs `async_io::block_on` for ever, and async-io's thread would poll with
        // a backoff (up to 10 ms late for each event) from then on.
        let mut driver = Box::pin(async_process::driver());
        let _ = futures_lite::future::block_on(futures_lite::future::poll_once(&mut driver));
        spawn_task(async move {
            driver.await;
        })
    });
    spawn_task(future);
}

fn spawn_task(future: impl Future<Output = ()> + Send + 'static) {
    let task = Arc::new(Task {
        future: Mutex::new(Some(Box::pin(future))),
        queued: AtomicBool::new(false),
        queue: queue().clone(),
    });
    task.wake_by_ref();
}
