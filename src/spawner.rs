//! podvisor's spawning thread: children are forked and executed there, not on the driver
//! thread; and the thread that prepares each spawn before it.
//!
//! A spawn blocks the thread that makes it until the child has executed its program: the
//! fork copies the page tables, and joining a pod's cgroup waits for an RCU grace period,
//! which takes milliseconds on a busy machine. On the driver thread, that would hold up
//! every other pod's events, timers and signals. The spawning thread is started once and
//! never ends, because the parent-death signal fires when the thread that spawned a child
//! ends.

use std::sync::atomic::{AtomicUsize, Ordering};
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
                    crate::os::prefer_short_slice();
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

/// Spawns queued and not yet done, whichever their step.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

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
        let finish = move |result: T| {
            IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
            let waker = {
                let mut slot = for_job.lock().unwrap_or_else(|e| e.into_inner());
                slot.0 = Some(result);
                slot.1.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        };
        if IN_FLIGHT.fetch_add(1, Ordering::SeqCst) == 0 {
            // Nothing ahead of it: straight to the spawning thread, which prepares it too
            // (one handoff fewer for a lone pod). Jobs that come meanwhile queue behind it.
            SPAWNING.run(Box::new(move || finish(work(prepare()))));
            return Answer { slot };
        }
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
                finish(work(prepared));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Jobs are spawned in the order they came, each prepared exactly once, each with what
    /// its own preparation made, however long a preparation takes.
    #[test]
    fn jobs_keep_their_order_and_are_prepared_once() {
        let n = 200;
        let prepared: Arc<Vec<AtomicUsize>> =
            Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect());
        let spawned = Arc::new(Mutex::new(Vec::new()));
        let answers: Vec<Answer<usize>> = (0..n)
            .map(|i| {
                let (prepared, spawned) = (prepared.clone(), spawned.clone());
                Answer::staged(
                    move || {
                        prepared[i].fetch_add(1, Ordering::SeqCst);
                        if i % 7 == 0 {
                            // A slow preparation: the spawning thread may have to wait for it.
                            std::thread::sleep(std::time::Duration::from_millis(2));
                        }
                        i * 10
                    },
                    move |made| {
                        spawned.lock().unwrap().push(made / 10);
                        made + 1
                    },
                )
            })
            .collect();
        for (i, answer) in answers.iter().enumerate() {
            let result = futures_lite::future::block_on(std::future::poll_fn(|cx| answer.poll(cx)));
            assert_eq!(result, i * 10 + 1);
        }
        assert_eq!(*spawned.lock().unwrap(), (0..n).collect::<Vec<_>>());
        for (i, count) in prepared.iter().enumerate() {
            assert_eq!(count.load(Ordering::SeqCst), 1, "job {i}");
        }
    }
}
