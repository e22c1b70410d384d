//! # A dialplan that misbehaves on purpose (test only)
//!
//! The host's sandbox tests route calls to this component (world
//! `dialplan`) and check that each misbehaviour ends in a trap or a bounded
//! result while the switch keeps routing. The destination picks the
//! behaviour:
//!
//! | destination | behaviour |
//! |---|---|
//! | `loop` | spins forever (epoch deadline) |
//! | `oom` | allocates and touches 1 MiB blocks without bound (memory limit) |
//! | `stack` | recurses without bound (stack overflow) |
//! | `panic` | `panic!("boom")` (trap) |
//! | `logspam` | calls `log` 1,000,000 times, then hangs up `normal-clearing` (log cap) |
//! | `huge` | returns 2,000,000 `set` actions with 64-byte values (result size / memory limit) |
//! | `sleepy` | calls `registrations` forever (host-call deadline) |
//! | anything else | `set hostile_ok=true`, hangup `normal-clearing` |
//!
//! The outbound hook (world `dialplan-with-outbound`) is chosen by the new
//! leg's target, up to any `@`:
//!
//! | target | behaviour |
//! |---|---|
//! | `loop` | spins forever |
//! | `panic` | panics |
//! | `refuse` | refuses the leg with `call-rejected` |
//! | `rewrite` | rewrites the leg to `error/USER_BUSY`, sets `hostile_rewritten=true` |
//! | anything else | accepts, setting `hostile_outbound=<the target>` |
//!
//! `route-message` drops. Every loop goes through
//! [`core::hint::black_box`] so the optimiser cannot remove or shorten it.

mod bindings {
    wit_bindgen::generate!({
        world: "dialplan-with-outbound",
        path: "../../../wit",
    });
}

use core::hint::black_box;

use bindings::dialtone::switch::host::{self, LogLevel};
use bindings::dialtone::switch::types::{
    Action, ChannelInfo, HangupCause, MessageDecision, OutboundDecision, OutboundRequest,
    OutboundRewrite, TextMessage, Variable,
};
use bindings::exports::dialtone::switch::outbound::Guest as Outbound;
use bindings::exports::dialtone::switch::router::Guest;

/// Spin forever.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocate 1 MiB blocks and write into each, forever.
fn exhaust_memory() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        for (i, byte) in block.iter_mut().enumerate().step_by(4096) {
            *byte = i as u8 | 1;
        }
        blocks.push(black_box(block));
        black_box(&mut blocks);
    }
}

/// Recurse without bound; the frame holds a buffer and the result is used
/// after the call, so it cannot become a loop. The exit test can never pass
/// (`black_box` hides that from the compiler).
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let frame = black_box([depth; 32]);
    let below = recurse(black_box(depth + 1));
    below.wrapping_add(frame[black_box(depth as usize % 32)])
}

/// Log a million lines, then hang up.
fn log_spam() -> Vec<Action> {
    for i in 0..1_000_000u32 {
        host::log(LogLevel::Info, black_box(&format!("logspam {i}")));
    }
    vec![Action::Hangup(HangupCause::NormalClearing)]
}

/// Two million `set` actions with 64-byte values.
fn huge() -> Vec<Action> {
    let value = "x".repeat(64);
    (0..2_000_000u32)
        .map(|i| {
            Action::Set(Variable {
                name: format!("huge_{i}"),
                value: black_box(value.clone()),
            })
        })
        .collect()
}

/// Call the host forever.
fn sleepy() -> ! {
    loop {
        black_box(host::registrations("", "", "1000"));
    }
}

/// The component.
struct Hostile;

impl Guest for Hostile {
    fn route(channel: ChannelInfo) -> Vec<Action> {
        match channel.destination.as_str() {
            "loop" => spin(),
            "oom" => exhaust_memory(),
            "stack" => {
                let n = recurse(black_box(0));
                vec![Action::Set(Variable {
                    name: "unreachable".into(),
                    value: n.to_string(),
                })]
            }
            "panic" => panic!("boom"),
            "logspam" => log_spam(),
            "huge" => huge(),
            "sleepy" => sleepy(),
            _ => vec![
                Action::Set(Variable {
                    name: "hostile_ok".into(),
                    value: "true".into(),
                }),
                Action::Hangup(HangupCause::NormalClearing),
            ],
        }
    }

    fn route_message(_message: TextMessage) -> MessageDecision {
        MessageDecision::Drop
    }
}

impl Outbound for Hostile {
    fn route_outbound(request: OutboundRequest) -> OutboundDecision {
        let user = request.target.split('@').next().unwrap_or_default();
        match user {
            "loop" => spin(),
            "panic" => panic!("boom"),
            "refuse" => OutboundDecision::Refuse(HangupCause::CallRejected),
            "rewrite" => OutboundDecision::Rewrite(OutboundRewrite {
                target: "error/USER_BUSY".into(),
                variables: vec![Variable {
                    name: "hostile_rewritten".into(),
                    value: "true".into(),
                }],
            }),
            _ => OutboundDecision::Accept(vec![Variable {
                name: "hostile_outbound".into(),
                value: request.target,
            }]),
        }
    }
}

bindings::export!(Hostile with_types_in bindings);
