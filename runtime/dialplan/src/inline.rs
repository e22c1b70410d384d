//! Where a component's invocations run: on the guest pool, or on the
//! calling task's own thread.
//!
//! Handing an invocation to a [pool](crate::pool) thread costs two thread
//! wake-ups and two sleeps (the worker's, and the caller's on the way back),
//! which for a compiled Rust or C dialplan is more than the invocation
//! itself (about 10 µs). A component that has shown it is quick therefore
//! runs *inline*: on the thread that asked, under the same sandbox (deadline,
//! memory limit, fuel, tenant cap on concurrent invocations).
//!
//! The rules, per loaded version ([`InlineGate`], one per
//! [`Loaded`](crate::engine::Loaded)):
//!
//! - Only a component that imports no WASI interface is eligible. The WASI
//!   host runs its calls on a tokio runtime of its own, which cannot be
//!   entered from a thread that already drives one, so a component that
//!   imports WASI always runs on the pool.
//! - A new version starts on probation on the pool. After
//!   [`PROMOTE_AFTER`] invocations in a row that each took at most
//!   [`INLINE_MAX`] (measured on the pool thread, instance set-up included)
//!   it is promoted. A slower run restarts the count.
//! - An inline invocation that reaches its deadline demotes the version for
//!   good, and so do slow inline invocations (over [`INLINE_MAX`]) when
//!   they keep coming: each adds [`SLOW_WEIGHT`] to a score, each quick one
//!   takes 1 off, and the version is demoted when the score reaches
//!   [`DEMOTE_AT`]. A version slow every time is demoted after 16
//!   invocations; a quick one whose thread is preempted now and then (a
//!   loaded machine stretches wall-clock times) stays, as long as fewer
//!   than one run in five is stretched. A demoted version runs on the pool
//!   until it is replaced; a new upload starts on probation again.
//!
//! So the worst a component that turns slow after its promotion can do to
//! the switch is hold the threads that run it until it is demoted: one
//! invocation (per thread running it at that moment) up to its deadline, 50
//! ms by default, or about 16 slow invocations each within its deadline,
//! once per version. Its own call gets the answer or the failure it would
//! have got on the pool.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The longest invocation that counts as quick.
pub const INLINE_MAX: Duration = Duration::from_micros(250);
/// Quick pool invocations in a row before a version runs inline.
pub const PROMOTE_AFTER: u32 = 32;
/// What a slow inline invocation adds to the version's score (a quick one
/// takes 1 off).
pub const SLOW_WEIGHT: u32 = 4;
/// The score at which a version goes back to the pool for good.
pub const DEMOTE_AT: u32 = 64;

/// Not eligible, or demoted: always the pool.
const POOL: u32 = u32::MAX;
/// Inline with a score of 0; `INLINE + n` is inline with a score of `n`.
const INLINE: u32 = 1 << 16;

/// Whether one loaded version runs inline (see the module docs).
///
/// One atomic word: `0..PROMOTE_AFTER` counts quick pool runs on probation,
/// `INLINE + score` is inline, `POOL` is the pool for good. Racing updates
/// from several threads can lose a count, never break a rule: a version is
/// only promoted by quick runs and a deadline always demotes it.
#[derive(Debug)]
pub struct InlineGate {
    state: AtomicU32,
}

/// How an inline invocation ended, as the gate sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Within [`INLINE_MAX`].
    Quick,
    /// Slower than [`INLINE_MAX`].
    Slow,
    /// Stopped at its deadline.
    Deadline,
}

impl Outcome {
    /// The outcome of a run that took `elapsed` and did or did not reach
    /// its deadline.
    pub fn of(elapsed: Duration, deadline: bool) -> Outcome {
        if deadline {
            Outcome::Deadline
        } else if elapsed <= INLINE_MAX {
            Outcome::Quick
        } else {
            Outcome::Slow
        }
    }
}

impl InlineGate {
    /// A gate on probation, or one that never opens when `eligible` is
    /// false.
    pub fn new(eligible: bool) -> InlineGate {
        InlineGate {
            state: AtomicU32::new(if eligible { 0 } else { POOL }),
        }
    }

    /// Whether the next invocation runs inline.
    #[inline]
    pub fn inline(&self) -> bool {
        let s = self.state.load(Ordering::Relaxed);
        (INLINE..POOL).contains(&s)
    }

    /// Whether the version can still be promoted or is inline (not on the
    /// pool for good).
    pub fn open(&self) -> bool {
        self.state.load(Ordering::Relaxed) != POOL
    }

    /// Records a pool invocation of a version on probation.
    pub fn after_pool(&self, outcome: Outcome) {
        let s = self.state.load(Ordering::Relaxed);
        if s >= PROMOTE_AFTER {
            return;
        }
        let next = match outcome {
            Outcome::Quick if s + 1 >= PROMOTE_AFTER => INLINE,
            Outcome::Quick => s + 1,
            Outcome::Slow | Outcome::Deadline => 0,
        };
        let _ = self
            .state
            .compare_exchange(s, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Records an inline invocation. Returns true when it demoted the
    /// version.
    pub fn after_inline(&self, outcome: Outcome) -> bool {
        let s = self.state.load(Ordering::Relaxed);
        if !(INLINE..POOL).contains(&s) {
            return false;
        }
        if outcome == Outcome::Deadline {
            // A deadline demotes whatever raced with it.
            self.state.store(POOL, Ordering::Relaxed);
            return true;
        }
        let score = s - INLINE;
        let next = match outcome {
            // The hot path: a quick run with nothing to forgive writes
            // nothing.
            Outcome::Quick if score == 0 => return false,
            Outcome::Quick => s - 1,
            _ if score + SLOW_WEIGHT < DEMOTE_AT => s + SLOW_WEIGHT,
            _ => POOL,
        };
        self.state
            .compare_exchange(s, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
            && next == POOL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Duration = Duration::from_micros(10);
    const SLOW: Duration = Duration::from_millis(2);

    fn promoted() -> InlineGate {
        let g = InlineGate::new(true);
        for _ in 0..PROMOTE_AFTER {
            g.after_pool(Outcome::of(QUICK, false));
        }
        assert!(g.inline());
        g
    }

    #[test]
    fn an_ineligible_component_never_runs_inline() {
        let g = InlineGate::new(false);
        for _ in 0..PROMOTE_AFTER * 2 {
            g.after_pool(Outcome::Quick);
        }
        assert!(!g.inline());
        assert!(!g.open());
    }

    #[test]
    fn promotion_takes_quick_runs_in_a_row() {
        let g = InlineGate::new(true);
        for _ in 0..PROMOTE_AFTER - 1 {
            g.after_pool(Outcome::of(QUICK, false));
        }
        assert!(!g.inline());
        // One slow run restarts the count.
        g.after_pool(Outcome::of(SLOW, false));
        for _ in 0..PROMOTE_AFTER - 1 {
            g.after_pool(Outcome::Quick);
        }
        assert!(!g.inline());
        g.after_pool(Outcome::Quick);
        assert!(g.inline());
        assert!(g.open());
    }

    #[test]
    fn a_deadline_on_probation_restarts_the_count() {
        let g = InlineGate::new(true);
        for _ in 0..PROMOTE_AFTER - 1 {
            g.after_pool(Outcome::Quick);
        }
        g.after_pool(Outcome::Deadline);
        g.after_pool(Outcome::Quick);
        assert!(!g.inline());
    }

    #[test]
    fn a_deadline_inline_demotes_for_good() {
        let g = promoted();
        assert!(g.after_inline(Outcome::of(SLOW, true)));
        assert!(!g.inline());
        assert!(!g.open());
        for _ in 0..PROMOTE_AFTER * 2 {
            g.after_pool(Outcome::Quick);
        }
        assert!(!g.inline());
        assert!(!g.after_inline(Outcome::Deadline));
    }

    #[test]
    fn slow_runs_that_keep_coming_demote() {
        let g = promoted();
        let to_demote = DEMOTE_AT.div_ceil(SLOW_WEIGHT);
        for _ in 0..to_demote - 1 {
            assert!(!g.after_inline(Outcome::of(SLOW, false)));
            assert!(g.inline());
        }
        assert!(g.after_inline(Outcome::Slow));
        assert!(!g.inline());
        assert!(!g.open());
    }

    #[test]
    fn quick_runs_forgive_slow_ones() {
        let g = promoted();
        for _ in 0..DEMOTE_AT.div_ceil(SLOW_WEIGHT) - 1 {
            g.after_inline(Outcome::Slow);
        }
        // One quick run per unit of score brings it back to 0.
        for _ in 0..SLOW_WEIGHT * (DEMOTE_AT.div_ceil(SLOW_WEIGHT) - 1) {
            assert!(!g.after_inline(Outcome::Quick));
        }
        for _ in 0..DEMOTE_AT.div_ceil(SLOW_WEIGHT) - 1 {
            assert!(!g.after_inline(Outcome::Slow));
        }
        assert!(g.inline());
    }

    #[test]
    fn a_preempted_run_now_and_then_never_demotes() {
        // One stretched run in six, for a million runs.
        let g = promoted();
        for i in 0..1_000_000u32 {
            let o = if i % 6 == 0 {
                Outcome::Slow
            } else {
                Outcome::Quick
            };
            assert!(!g.after_inline(o), "demoted at run {i}");
        }
        assert!(g.inline());
    }

    #[test]
    fn the_edge_of_quick() {
        assert_eq!(Outcome::of(INLINE_MAX, false), Outcome::Quick);
        assert_eq!(
            Outcome::of(INLINE_MAX + Duration::from_nanos(1), false),
            Outcome::Slow
        );
        assert_eq!(Outcome::of(Duration::ZERO, true), Outcome::Deadline);
    }
}
