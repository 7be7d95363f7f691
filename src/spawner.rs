//! podvisor's spawning thread: children are forked and executed there, not on the driver
//! thread; and a thread that prepares the spawns waiting their turn.
//!
//! A spawn blocks the thread that makes it until the child has executed its program: the
//! fork copies the page tables, and joining a pod's cgroup waits for an RCU grace period,
//! which takes milliseconds on a busy machine. On the driver thread, that would hold up
//! every other pod's events, timers and signals. The spawning thread is started once and
//! never ends, because the parent-death signal fires when the thread that spawned a child
//! ends.
//!
//! Each spawn is a job in two steps: prepare (make the pod's cgroup, plan its exec), then
//! spawn. The spawning thread takes the jobs in order; the preparing thread prepares those
//! waiting behind the one being spawned, so that on a burst of pods that work is off the
//! spawning thread's path, which every pod waits on in turn. A job nobody prepared yet
//! when its turn comes is prepared by the spawning thread itself: the preparing thread,
//! short of a core on a busy machine, never holds the spawns up.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

/// How many jobs behind the one being spawned the preparing thread looks at: enough to
/// keep the spawning thread busy, few enough that a burst of a thousand pods does not hold
/// a thousand exec plans (each a copy of the environment) at once.
const AHEAD: usize = 32;

/// A spawn job, its step erased.
trait Staged: Send + Sync {
    /// Prepares it if nobody has begun to (on the preparing thread). Returns whether it did.
    fn prepare_ahead(&self) -> bool;
    /// Prepares it if nobody has begun to, or waits for the preparing thread if it is at
    /// it; then spawns (on the spawning thread).
    fn finish(&self);
}

/// A job's second step, given what the first made.
type Work<P, T> = Box<dyn FnOnce(P) -> T + Send>;

/// Where a job's result goes, and who to wake when it is there.
type Slot<T> = Arc<Mutex<(Option<T>, Option<Waker>)>>;

/// Where a job's preparation stands.
enum Stage<P> {
    Waiting(Box<dyn FnOnce() -> P + Send>),
    Preparing,
    Prepared(P),
    Taken,
}

/// One job: its preparation, its work, and where the work's result goes.
struct Job<P, T> {
    stage: Mutex<Stage<P>>,
    prepared: Condvar,
    work: Mutex<Option<Work<P, T>>>,
    slot: Slot<T>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<P: Send, T: Send> Staged for Job<P, T> {
    fn prepare_ahead(&self) -> bool {
        let prepare = {
            let mut stage = lock(&self.stage);
            match std::mem::replace(&mut *stage, Stage::Preparing) {
                Stage::Waiting(prepare) => prepare,
                other => {
                    *stage = other;
                    return false;
                }
            }
        };
        let prepared = prepare();
        *lock(&self.stage) = Stage::Prepared(prepared);
        self.prepared.notify_all();
        true
    }

    fn finish(&self) {
        let prepared = {
            let mut stage = lock(&self.stage);
            loop {
                match std::mem::replace(&mut *stage, Stage::Taken) {
                    Stage::Waiting(prepare) => {
                        drop(stage);
                        break prepare();
                    }
                    Stage::Prepared(prepared) => break prepared,
                    Stage::Preparing => {
                        *stage = Stage::Preparing;
                        stage = self.prepared.wait(stage).unwrap_or_else(|e| e.into_inner());
                    }
                    Stage::Taken => return,
                }
            }
        };
        let Some(work) = lock(&self.work).take() else {
            return;
        };
        let result = work(prepared);
        let waker = {
            let mut slot = lock(&self.slot);
            slot.0 = Some(result);
            slot.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The jobs not yet spawned, in order, with a count of the jobs that came within the
/// preparing thread's reach (the first [`AHEAD`]) for it to wait on.
struct Queue {
    jobs: Mutex<(VecDeque<Arc<dyn Staged>>, u64)>,
    /// For the spawning thread: a job came.
    came: Condvar,
    /// For the preparing thread: a job came within its reach.
    reach: Condvar,
}

static QUEUE: Queue = Queue {
    jobs: Mutex::new((VecDeque::new(), 0)),
    came: Condvar::new(),
    reach: Condvar::new(),
};

/// Whether the two threads run; started on first use.
fn threads() -> bool {
    static STARTED: OnceLock<bool> = OnceLock::new();
    *STARTED.get_or_init(|| {
        let spawning = std::thread::Builder::new()
            .name("podvisor-spawn".into())
            .spawn(spawning_thread)
            .is_ok();
        // Without a preparing thread, the spawning thread prepares every job itself.
        let _ = std::thread::Builder::new()
            .name("podvisor-prepare".into())
            .spawn(preparing_thread);
        spawning
    })
}

fn spawning_thread() {
    loop {
        let job = {
            let mut jobs = lock(&QUEUE.jobs);
            loop {
                if let Some(job) = jobs.0.pop_front() {
                    if jobs.0.len() >= AHEAD {
                        // The job at the end of the preparing thread's reach is new to it.
                        jobs.1 += 1;
                        QUEUE.reach.notify_one();
                    }
                    break job;
                }
                jobs = QUEUE.came.wait(jobs).unwrap_or_else(|e| e.into_inner());
            }
        };
        job.finish();
    }
}

fn preparing_thread() {
    let mut seen = u64::MAX;
    loop {
        let ahead: Vec<Arc<dyn Staged>> = {
            let mut jobs = lock(&QUEUE.jobs);
            while jobs.1 == seen {
                jobs = QUEUE.reach.wait(jobs).unwrap_or_else(|e| e.into_inner());
            }
            seen = jobs.1;
            jobs.0.iter().take(AHEAD).cloned().collect()
        };
        for job in ahead {
            job.prepare_ahead();
        }
    }
}

/// The answer of a job run on the spawning thread, awaited by a driver.
pub(crate) struct Answer<T> {
    slot: Slot<T>,
}

impl<T: Send + 'static> Answer<T> {
    /// Queues a spawn: `prepare` runs on the preparing thread (or on the spawning thread
    /// if its turn comes first), then `work` with what it made on the spawning thread; the
    /// result is polled with [`Answer::poll`]. Jobs are spawned in the order they come.
    pub(crate) fn staged<P: Send + 'static>(
        prepare: impl FnOnce() -> P + Send + 'static,
        work: impl FnOnce(P) -> T + Send + 'static,
    ) -> Answer<T> {
        let slot: Slot<T> = Arc::new(Mutex::new((None, None)));
        let job = Arc::new(Job {
            stage: Mutex::new(Stage::Waiting(Box::new(prepare))),
            prepared: Condvar::new(),
            work: Mutex::new(Some(Box::new(work))),
            slot: slot.clone(),
        });
        if threads() {
            let mut jobs = lock(&QUEUE.jobs);
            jobs.0.push_back(job);
            if jobs.0.len() == 1 {
                QUEUE.came.notify_one();
            }
            if jobs.0.len() <= AHEAD {
                jobs.1 += 1;
                QUEUE.reach.notify_one();
            }
        } else {
            // No thread could be started: here, then.
            job.finish();
        }
        Answer { slot }
    }

    /// The result once the job has run.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<T> {
        let mut slot = lock(&self.slot);
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

    /// Jobs are spawned in the order they came, each prepared exactly once (by whichever
    /// thread got to it first), each with what its own preparation made.
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
                        lock(&spawned).push(made / 10);
                        made + 1
                    },
                )
            })
            .collect();
        for (i, answer) in answers.iter().enumerate() {
            let result = futures_lite::future::block_on(std::future::poll_fn(|cx| answer.poll(cx)));
            assert_eq!(result, i * 10 + 1);
        }
        assert_eq!(*lock(&spawned), (0..n).collect::<Vec<_>>());
        for (i, count) in prepared.iter().enumerate() {
            assert_eq!(count.load(Ordering::SeqCst), 1, "job {i}");
        }
    }
}
