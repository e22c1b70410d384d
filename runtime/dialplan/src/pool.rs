//! The guest thread pool: where guest code runs.
//!
//! Guest invocations are synchronous wasmtime calls. They never run on a
//! tokio thread, so a slow guest (up to its deadline) cannot stall signalling
//! or media. A bounded queue feeds a fixed set of threads; when the queue is
//! full, [`GuestPool::try_submit`] fails at once and the caller answers with
//! overload instead of waiting.

use std::panic::AssertUnwindSafe;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The queue was full (or the pool is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("guest pool queue is full")]
pub struct PoolFull;

/// Dedicated threads for guest code.
pub struct GuestPool {
    tx: Option<Sender<Job>>,
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
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue.max(1));
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let rx = rx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("dialplan-{i}"))
                    .spawn(move || {
                        while let Ok(job) = rx.recv() {
                            // A panic here is a host bug; keep the worker alive.
                            if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                                tracing::error!("dialplan worker job panicked");
                            }
                        }
                    })?,
            );
        }
        Ok(GuestPool {
            tx: Some(tx),
            threads,
        })
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
        match self.tx.as_ref().ok_or(PoolFull)?.try_send(job) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => Err(PoolFull),
        }
    }
}

impl Drop for GuestPool {
    fn drop(&mut self) {
        self.tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
