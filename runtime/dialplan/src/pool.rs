//! The guest thread pool: where guest code runs.
//!
//! Guest invocations are synchronous wasmtime calls. Here they run off the
//! tokio threads, so a slow guest (up to its deadline) cannot stall
//! signalling or media; only a version that has proven quick runs on the
//! caller's thread instead ([`crate::inline`]). A bounded queue feeds a
//! fixed set of threads; when the queue is full, [`GuestPool::try_submit`]
//! fails at once and the caller answers with overload instead of waiting.
//!
//! An idle worker sleeps on a condition variable at once rather than
//! spinning for the next job: on a machine with few cores, spinning and
//! yielding take time from the signalling threads that produce the jobs.
//! A submit wakes a worker only when one is asleep.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The queue was full (or the pool is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("guest pool queue is full")]
pub struct PoolFull;

/// The queue the workers share.
struct Queue {
    state: Mutex<QueueState>,
    /// Signalled when a job arrives or the pool closes.
    ready: Condvar,
    capacity: usize,
}

struct QueueState {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl Queue {
    /// The next job, sleeping while there is none; `None` once the pool
    /// is closed and drained.
    fn next(&self) -> Option<Job> {
        let mut st = self.state.lock();
        loop {
            if let Some(job) = st.jobs.pop_front() {
                return Some(job);
            }
            if st.closed {
                return None;
            }
            self.ready.wait(&mut st);
        }
    }
}

/// Dedicated threads for guest code.
pub struct GuestPool {
    queue: Arc<Queue>,
    threads: Vec<JoinHandle<()>>,
}

impl GuestPool {
    /// Starts `workers` threads (0 means one per CPU) behind a queue of
    /// `queue` jobs.
    pub fn new(workers: usize, queue: usize) -> std::io::Result<GuestPool> {
        let workers = if workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        } else {
            workers
        };
        let capacity = queue.max(1);
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState {
                jobs: VecDeque::with_capacity(capacity),
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
        });
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let q = queue.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("dialplan-{i}"))
                    .spawn(move || {
                        while let Some(job) = q.next() {
                            // A panic here is a host bug; keep the worker alive.
                            if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                                tracing::error!("dialplan worker job panicked");
                            }
                        }
                    })?,
            );
        }
        Ok(GuestPool { queue, threads })
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.threads.len()
    }

    /// Queues `f`; its result arrives on the returned receiver.
    pub fn try_submit<R, F>(&self, f: F) -> Result<oneshot::Receiver<R>, PoolFull>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        {
            let mut st = self.queue.state.lock();
            if st.closed || st.jobs.len() >= self.queue.capacity {
                return Err(PoolFull);
            }
            st.jobs.push_back(job);
        }
        // A no-op (no system call) when no worker is asleep.
        self.queue.ready.notify_one();
        Ok(rx)
    }
}

impl Drop for GuestPool {
    fn drop(&mut self) {
        self.queue.state.lock().closed = true;
        self.queue.ready.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn runs_jobs_refuses_past_the_queue_and_drains_on_drop() {
        let pool = GuestPool::new(1, 2).unwrap();
        assert_eq!(pool.workers(), 1);
        // Hold the only worker until released.
        let (release, hold) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        let busy = pool
            .try_submit(move || {
                started_tx.send(()).unwrap();
                hold.recv().unwrap();
                1
            })
            .unwrap();
        started.recv().unwrap();
        // Two queued jobs fit; the third is refused at once.
        let a = pool.try_submit(|| 2).unwrap();
        let b = pool.try_submit(|| 3).unwrap();
        assert_eq!(pool.try_submit(|| 4).err(), Some(PoolFull));
        release.send(()).unwrap();
        assert_eq!(busy.blocking_recv().unwrap(), 1);
        assert_eq!(a.blocking_recv().unwrap(), 2);
        assert_eq!(b.blocking_recv().unwrap(), 3);
        // A job that panics does not take its worker down.
        let p = pool
            .try_submit(|| -> u32 { panic!("guest host bug") })
            .unwrap();
        assert!(p.blocking_recv().is_err());
        let after = pool.try_submit(|| 5).unwrap();
        assert_eq!(after.blocking_recv().unwrap(), 5);
        // Jobs queued before the drop still run.
        let (done_tx, done) = mpsc::channel();
        for i in 0..2 {
            let d = done_tx.clone();
            pool.try_submit(move || d.send(i).unwrap()).unwrap();
        }
        drop(pool);
        let mut got: Vec<i32> = done.try_iter().collect();
        got.sort();
        assert_eq!(got, [0, 1]);
    }
}
