//! podvisor's spawning thread: children are forked and executed there, not on the driver
//! thread; and the thread that prepares each spawn before it.
//!
//! A spawn blocks the thread that makes it until the child has executed its program: the
//! fork copies the page tables, and joining a pod's cgroup waits for an RCU grace period,
//! which takes milliseconds on a busy machine. On the driver thread, that would hold up
//! every other pod's events, timers and signals. The spawning thread is started once and
//! never ends, because the parent-death signal fires when the thread that spawned a child
//! ends.

use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

type Job = Box<dyn FnOnce() + Send>;

/// A thread of podvisor's that runs jobs in the order they come, started on first use and
/// never ended.
struct Worker {
    name: &'static str,
    jobs: OnceLock<Option<Mutex<Sender<Job>>>>,
}

impl Worker {
    const fn new(name: &'static str) -> Worker {
        Worker {
            name,
            jobs: OnceLock::new(),
        }
    }

    /// Runs `job` on this worker's thread (or here, if that thread cannot be started).
    fn run(&'static self, job: Job) {
        let jobs = self.jobs.get_or_init(|| {
            let (sender, receiver) = channel::<Job>();
            std::thread::Builder::new()
                .name(self.name.into())
                .spawn(move || {
                    while let Ok(job) = receiver.recv() {
                        job();
                    }
                })
                .ok()
                .map(|_| Mutex::new(sender))
        });
        let job = match jobs {
            Some(sender) => match sender.lock().unwrap_or_else(|e| e.into_inner()).send(job) {
                Ok(()) => return,
                Err(returned) => returned.0,
            },
            None => job,
        };
        job();
    }
}

/// The spawning thread.
static SPAWNING: Worker = Worker::new("podvisor-spawn");

/// The thread that prepares spawns (a pod's cgroup, its exec plan) while the spawning
/// thread spawns the ones before: on a burst of pods, that work is off the spawning
/// thread's path, which every pod waits on in turn.
static PREPARING: Worker = Worker::new("podvisor-prepare");

/// How many prepared spawns may wait for the spawning thread: enough to keep it busy,
/// few enough that a burst of a thousand pods does not hold a thousand exec plans (each a
/// copy of the environment) at once. Once there are that many, the preparing thread
/// sleeps until half are taken: one wake-up per half, not one per spawn on the spawning
/// thread's path.
const AHEAD: usize = 32;

/// Prepared spawns waiting for the spawning thread.
static WAITING: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// The answer of a job run on the spawning thread, awaited by a driver.
pub(crate) struct Answer<T> {
    slot: Arc<Mutex<(Option<T>, Option<Waker>)>>,
}

impl<T: Send + 'static> Answer<T> {
    /// Runs `prepare` on the preparing thread, then `work` with what it made on the
    /// spawning thread; the result is polled with [`Answer::poll`]. Jobs keep their order
    /// through both.
    pub(crate) fn staged<P: Send + 'static>(
        prepare: impl FnOnce() -> P + Send + 'static,
        work: impl FnOnce(P) -> T + Send + 'static,
    ) -> Answer<T> {
        let slot: Arc<Mutex<(Option<T>, Option<Waker>)>> = Arc::new(Mutex::new((None, None)));
        let for_job = slot.clone();
        PREPARING.run(Box::new(move || {
            {
                let (count, changed) = &WAITING;
                let mut waiting = count.lock().unwrap_or_else(|e| e.into_inner());
                while *waiting >= AHEAD {
                    waiting = changed.wait(waiting).unwrap_or_else(|e| e.into_inner());
                }
                *waiting += 1;
            }
            let prepared = prepare();
            SPAWNING.run(Box::new(move || {
                {
                    let (count, changed) = &WAITING;
                    let mut waiting = count.lock().unwrap_or_else(|e| e.into_inner());
                    *waiting -= 1;
                    if *waiting == AHEAD / 2 {
                        changed.notify_one();
                    }
                }
                let result = work(prepared);
                let waker = {
                    let mut slot = for_job.lock().unwrap_or_else(|e| e.into_inner());
                    slot.0 = Some(result);
                    slot.1.take()
                };
                if let Some(waker) = waker {
                    waker.wake();
                }
            }));
        }));
        Answer { slot }
    }

    /// The result once the job has run.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<T> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        match slot.0.take() {
            Some(result) => Poll::Ready(result),
            None => {
                slot.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
