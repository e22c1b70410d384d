//! # A quick dialplan that can be made slow (test only)
//!
//! For the host's tests of where invocations run (`dialtone_dialplan::inline`):
//! it imports no WASI (world `dialplan`, `no_std` with the SDK's component
//! runtime), so the switch may run it on the caller's thread once it has
//! been quick long enough. The destination picks the behaviour:
//!
//! | destination | behaviour |
//! |---|---|
//! | `loop` | spins forever (epoch deadline) |
//! | `slow` | spins 20,000,000 rounds (milliseconds, well over the host's quick limit), then as below |
//! | `stack` | recurses without bound (stack overflow) |
//! | anything else | `set quick_ok=true`, hangup `normal-clearing` |
//!
//! `route-message` drops. Every loop goes through
//! [`core::hint::black_box`] so the optimiser cannot remove or shorten it.

#![cfg_attr(not(test), no_std)]

extern crate alloc;
// The allocator and panic handler of a `no_std` component.
extern crate dialtone_sdk;

use alloc::vec;
use alloc::vec::Vec;
use core::hint::black_box;

mod bindings {
    wit_bindgen::generate!({
        world: "dialplan",
        path: "../../../wit",
    });
}

use bindings::dialtone::switch::types::{
    Action, ChannelInfo, HangupCause, MessageDecision, TextMessage, Variable,
};
use bindings::exports::dialtone::switch::router::Guest;

/// Spin forever.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Spin `rounds` times.
fn work(rounds: u64) -> u64 {
    let mut n: u64 = 0;
    for _ in 0..black_box(rounds) {
        n = black_box(n.wrapping_add(1));
    }
    n
}

/// Recurse until the stack runs out.
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let frame = black_box([depth; 32]);
    let below = recurse(black_box(depth + 1));
    below.wrapping_add(frame[black_box(depth as usize % 32)])
}

fn ok() -> Vec<Action> {
    vec![
        Action::Set(Variable {
            name: "quick_ok".into(),
            value: "true".into(),
        }),
        Action::Hangup(HangupCause::NormalClearing),
    ]
}

/// The component.
struct Quick;

impl Guest for Quick {
    fn route(channel: ChannelInfo) -> Vec<Action> {
        match channel.destination.as_str() {
            "loop" => spin(),
            "slow" => {
                black_box(work(20_000_000));
                ok()
            }
            "stack" => {
                let n = recurse(black_box(0));
                vec![Action::Set(Variable {
                    name: "unreachable".into(),
                    value: alloc::format!("{n}"),
                })]
            }
            _ => ok(),
        }
    }

    fn route_message(_message: TextMessage) -> MessageDecision {
        MessageDecision::Drop
    }
}

bindings::export!(Quick with_types_in bindings);
