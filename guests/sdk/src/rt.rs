//! # A runtime for `no_std` components
//!
//! A Rust component built on `std` for `wasm32-wasip2` imports WASI (the
//! standard library's start-up, environment and panic output need it) and is
//! linked with the WASI adapter: four core instances and some thirty imports
//! to wire up on every instantiation. The switch instantiates a dialplan
//! afresh for every call, so that start-up is most of what a route costs.
//!
//! A `#![no_std]` component has one core instance and imports only the
//! Dialtone interfaces. It needs two things the standard library otherwise
//! provides, and this module supplies both when the `component-runtime`
//! feature is on and the target is `wasm32`:
//!
//! - **a global allocator**, [`BumpAllocator`]: allocation moves a pointer
//!   forward from the end of the component's static data, growing the
//!   linear memory when it runs out. It counts live allocations, and when
//!   the count returns to zero (the host has taken the answer and called the
//!   post-return function, which frees it) the pointer goes back to the
//!   start, so an instance reused in warm mode does not grow from call to
//!   call. Freeing or growing the newest allocation is done in place. A
//!   component that keeps allocations alive between calls (statics) simply
//!   never resets; memory is still bounded by the tenant's memory limit.
//! - **a panic handler** that traps (`unreachable`), so a panic costs the
//!   call and nothing else, as with `panic = "abort"` under `std`.
//!
//! Use it from a component crate:
//!
//! ```toml
//! [dependencies]
//! dialtone-sdk = { version = "0.1", features = ["component-runtime"] }
//! ```
//!
//! ```text
//! #![no_std]
//! extern crate alloc;
//! // wit_bindgen::generate!(...) and the exports as usual.
//! ```
//!
//! A crate that uses `std` must leave the feature off (the standard library
//! brings its own allocator and panic handler).

#[cfg(all(target_arch = "wasm32", feature = "component-runtime", not(test)))]
mod wasm {
    use super::BumpAllocator;

    #[global_allocator]
    static ALLOCATOR: BumpAllocator = BumpAllocator::new();

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        core::arch::wasm32::unreachable()
    }

    /// The canonical ABI's allocation function, through which the host
    /// copies arguments into the component (under `std` the WASI C library
    /// provides it).
    ///
    /// # Safety
    /// Called by the host per the canonical ABI: `old_ptr`/`old_len`/`align`
    /// describe a block this allocator handed out, or `old_len` is 0.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn cabi_realloc(
        old_ptr: *mut u8,
        old_len: usize,
        align: usize,
        new_len: usize,
    ) -> *mut u8 {
        use alloc::alloc::{alloc, realloc, Layout};
        let ptr = if old_len == 0 {
            if new_len == 0 {
                return align as *mut u8;
            }
            // SAFETY: non-zero size; the host passes a power-of-two align.
            unsafe { alloc(Layout::from_size_align_unchecked(new_len, align)) }
        } else {
            // SAFETY: the block came from this allocator (see above).
            unsafe {
                realloc(
                    old_ptr,
                    Layout::from_size_align_unchecked(old_len, align),
                    new_len,
                )
            }
        };
        if ptr.is_null() {
            // Out of memory: trap, the call fails and nothing else.
            core::arch::wasm32::unreachable();
        }
        ptr
    }

    /// `memcmp`, which string comparison lowers to (copying and filling
    /// are WebAssembly instructions; comparing is not, and under `std` the C
    /// library provides it).
    ///
    /// # Safety
    /// `a` and `b` are readable for `n` bytes.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        let mut i = 0;
        while i < n {
            // SAFETY: in bounds per the contract above.
            let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
            if x != y {
                return i32::from(x) - i32::from(y);
            }
            i += 1;
        }
        0
    }

    /// `bcmp`: equality only, as `memcmp`.
    ///
    /// # Safety
    /// As [`memcmp`].
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: same contract.
        unsafe { memcmp(a, b, n) }
    }
}

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

/// Where the heap is and how much of it is in use.
#[derive(Debug)]
struct Arena {
    /// First heap byte (0 until the first allocation).
    base: usize,
    /// Next free byte.
    next: usize,
    /// End of the memory the heap may use without growing.
    end: usize,
    /// Allocations not yet freed.
    live: usize,
}

/// The bump allocator described in the module docs. Single-threaded, as a
/// component instance is.
#[derive(Debug)]
pub struct BumpAllocator {
    arena: UnsafeCell<Arena>,
    memory: fn() -> (usize, usize),
    grow: fn(usize) -> bool,
}

// SAFETY: a WebAssembly component instance runs on one thread at a time and
// never shares its memory; the allocator is not used from several threads.
unsafe impl Sync for BumpAllocator {}

const PAGE: usize = 65_536;

impl BumpAllocator {
    /// The allocator over the component's own linear memory.
    #[cfg(target_arch = "wasm32")]
    pub const fn new() -> Self {
        fn memory() -> (usize, usize) {
            extern "C" {
                static __heap_base: u8;
            }
            // Only the address of the linker's symbol is taken.
            let base = core::ptr::addr_of!(__heap_base) as usize;
            (base, core::arch::wasm32::memory_size(0) * PAGE)
        }
        fn grow(pages: usize) -> bool {
            core::arch::wasm32::memory_grow(0, pages) != usize::MAX
        }
        Self::with_memory(memory, grow)
    }

    /// An allocator over memory described by `memory` (heap start and
    /// current end) and extended by `grow` (whole 64 KiB pages; false when
    /// refused). For tests on the host.
    pub const fn with_memory(memory: fn() -> (usize, usize), grow: fn(usize) -> bool) -> Self {
        BumpAllocator {
            arena: UnsafeCell::new(Arena {
                base: 0,
                next: 0,
                end: 0,
                live: 0,
            }),
            memory,
            grow,
        }
    }

    /// Makes `[.., upto)` usable, growing the memory if needed.
    fn reserve(&self, a: &mut Arena, upto: usize) -> bool {
        if upto <= a.end {
            return true;
        }
        let pages = (upto - a.end).div_ceil(PAGE);
        if !(self.grow)(pages) {
            return false;
        }
        a.end += pages * PAGE;
        true
    }

    /// Bytes currently handed out (for tests).
    pub fn in_use(&self) -> usize {
        // SAFETY: single-threaded (see `Sync`).
        let a = unsafe { &*self.arena.get() };
        a.next - a.base
    }
}

#[cfg(target_arch = "wasm32")]
impl Default for BumpAllocator {
    fn default() -> Self {
        Self::new()
    }
}

unsafe impl GlobalAlloc for BumpAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded (see `Sync`); no reference outlives the call.
        let a = unsafe { &mut *self.arena.get() };
        if a.base == 0 {
            let (base, end) = (self.memory)();
            a.base = base;
            a.next = base;
            a.end = end;
        }
        // Alignments are powers of two: round up with a mask, no division.
        let mask = layout.align() - 1;
        let Some(start) = a.next.checked_add(mask).map(|n| n & !mask) else {
            return core::ptr::null_mut();
        };
        let Some(stop) = start.checked_add(layout.size()) else {
            return core::ptr::null_mut();
        };
        if !self.reserve(a, stop) {
            return core::ptr::null_mut();
        }
        a.next = stop;
        a.live += 1;
        start as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: single-threaded (see `Sync`).
        let a = unsafe { &mut *self.arena.get() };
        a.live -= 1;
        if a.live == 0 {
            a.next = a.base;
        } else if ptr as usize + layout.size() == a.next {
            a.next = ptr as usize;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        {
            // SAFETY: single-threaded (see `Sync`); the borrow ends below.
            let a = unsafe { &mut *self.arena.get() };
            if ptr as usize + layout.size() == a.next {
                let Some(stop) = (ptr as usize).checked_add(new_size) else {
                    return core::ptr::null_mut();
                };
                if !self.reserve(a, stop) {
                    return core::ptr::null_mut();
                }
                a.next = stop;
                return ptr;
            }
        }
        // SAFETY: as `GlobalAlloc::realloc`'s default: a new block, a copy
        // of the smaller size, the old block freed.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    // One fake memory per test thread (tests run on threads of their own).
    thread_local! {
        static MEM_BASE: Cell<usize> = const { Cell::new(0) };
        static GROWS: Cell<usize> = const { Cell::new(0) };
    }
    const LIMIT_PAGES: usize = 4;

    fn fake() -> BumpAllocator {
        // A leaked 4-page buffer stands in for linear memory: the heap
        // starts 16 bytes in, the first page is "initial memory".
        let buf: &'static mut [u8] =
            Box::leak(vec![0u8; PAGE * (LIMIT_PAGES + 1)].into_boxed_slice());
        let base = (buf.as_ptr() as usize).next_multiple_of(PAGE);
        MEM_BASE.set(base);
        GROWS.set(0);
        BumpAllocator::with_memory(
            || {
                let b = MEM_BASE.get();
                (b + 16, b + PAGE)
            },
            |pages| {
                let total = GROWS.get() + pages;
                if total + 1 > LIMIT_PAGES {
                    return false;
                }
                GROWS.set(total);
                true
            },
        )
    }

    #[test]
    fn allocates_aligned_resets_when_empty_grows_and_refuses() {
        let al = fake();
        unsafe {
            let l8 = Layout::from_size_align(10, 8).unwrap();
            let a = al.alloc(l8);
            assert_eq!(a as usize % 8, 0);
            let b = al.alloc(Layout::from_size_align(3, 1).unwrap());
            assert_eq!(b as usize, a as usize + 10);
            // Growing the newest block happens in place.
            let b2 = al.realloc(b, Layout::from_size_align(3, 1).unwrap(), 100);
            assert_eq!(b2, b);
            let c = al.alloc(Layout::from_size_align(4, 16).unwrap());
            assert_eq!(c as usize % 16, 0);
            // Freeing the newest block gives its bytes back.
            let before = al.in_use();
            al.dealloc(c, Layout::from_size_align(4, 16).unwrap());
            assert!(al.in_use() < before);
            // An older block grows by moving, and keeps its bytes.
            *a = 42;
            al.alloc(Layout::from_size_align(1, 1).unwrap());
            let a2 = al.realloc(a, l8, 64);
            assert_ne!(a2, a);
            assert_eq!(*a2, 42);
            // Crossing the first page grows the memory.
            let big = al.alloc(Layout::from_size_align(PAGE, 8).unwrap());
            assert!(!big.is_null());
            assert_eq!(GROWS.get(), 1);
            // Past the limit the allocation fails (null), nothing panics.
            assert!(al
                .alloc(Layout::from_size_align(PAGE * 8, 8).unwrap())
                .is_null());
            // Everything freed: the heap starts over.
            al.dealloc(b2, Layout::from_size_align(100, 1).unwrap());
            al.dealloc(a2, Layout::from_size_align(64, 8).unwrap());
            al.dealloc(big, Layout::from_size_align(PAGE, 8).unwrap());
            assert_ne!(al.in_use(), 0, "one 1-byte block is still live");
        }
    }

    #[test]
    fn a_call_that_frees_everything_leaves_the_heap_empty() {
        let al = fake();
        unsafe {
            for _ in 0..1000 {
                let l = Layout::from_size_align(200, 4).unwrap();
                let x = al.alloc(l);
                let y = al.alloc(l);
                al.dealloc(x, l);
                al.dealloc(y, l);
                assert_eq!(al.in_use(), 0);
            }
        }
        assert_eq!(GROWS.get(), 0);
    }
}
