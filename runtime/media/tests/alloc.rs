//! The relay path allocates nothing.
//!
//! A counting global allocator counts the allocations (and frees) made on
//! media worker threads only: the engine's `on_worker_start` hook sets a
//! thread-local flag first thing on each worker, so everything the worker
//! does from then on is seen, and the phones' and test's own allocations
//! are not. The count is taken after the bridge is up and a warm-up has
//! gone through, and again after 10,000 packets; no API call is made in
//! between, so the only thing the worker does in that window is relay.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use common::{bridged_pair, exchange, wait_ports_free, LO};
use dialtone_media::{MediaConfig, MediaEngine};

thread_local! {
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
}

static WORKER_ALLOCS: AtomicU64 = AtomicU64::new(0);
static WORKER_FREES: AtomicU64 = AtomicU64::new(0);
static WORKERS_MARKED: AtomicUsize = AtomicUsize::new(0);

fn on_worker() -> bool {
    ON_WORKER.try_with(|f| f.get()).unwrap_or(false)
}

struct Counting;

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if on_worker() {
            WORKER_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if on_worker() {
            WORKER_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if on_worker() {
            WORKER_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if on_worker() {
            WORKER_FREES.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn relaying_ten_thousand_packets_allocates_nothing_on_the_worker() {
    let config = MediaConfig::new(LO, 24000, 24099)
        .workers(1)
        .on_worker_start(|_| {
            ON_WORKER.with(|f| f.set(true));
            WORKERS_MARKED.fetch_add(1, Ordering::SeqCst);
        });
    let engine = MediaEngine::start(config).unwrap();
    let (a, b, pa, pb) = bridged_pair(&engine);
    exchange(&pa, a.rtp_addr(), &pb, b.rtp_addr(), 100, 172);
    let relayed = || a.stats().snapshot().rtp.packets_sent + b.stats().snapshot().rtp.packets_sent;
    // Counters move just after each send: let the warm-up's settle.
    common::wait_until("the warm-up to be counted", || relayed() == 200);

    assert_eq!(WORKERS_MARKED.load(Ordering::SeqCst), 1);
    let allocs_before = WORKER_ALLOCS.load(Ordering::SeqCst);
    let frees_before = WORKER_FREES.load(Ordering::SeqCst);
    // The counter does see the worker: its buffers, its slot table and map
    // were allocated on it.
    assert!(allocs_before > 0, "worker allocations are counted");

    // 5,000 each way.
    exchange(&pa, a.rtp_addr(), &pb, b.rtp_addr(), 5000, 172);
    common::wait_until("every packet to be counted", || relayed() == 10_200);

    let allocs = WORKER_ALLOCS.load(Ordering::SeqCst) - allocs_before;
    let frees = WORKER_FREES.load(Ordering::SeqCst) - frees_before;
    assert_eq!(
        allocs, 0,
        "allocations on the worker while relaying 10,000 packets"
    );
    assert_eq!(
        frees, 0,
        "frees on the worker while relaying 10,000 packets"
    );

    drop((a, b));
    wait_ports_free(&engine);
}
