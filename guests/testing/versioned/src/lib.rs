//! # A dialplan with a patchable version (test only)
//!
//! For hot-swap tests (world `dialplan`). The built `.wasm` holds the 16
//! bytes `DTVER:` + 10 ASCII digits exactly once, in its data segment; a
//! host test overwrites the digits to make "new versions" of the same
//! component without a guest toolchain. Every `route` returns
//! `set dialplan_version=<the 10 digits>`, then hangup `normal-clearing`.
//!
//! The marker is read with a volatile load of the whole array, so the
//! compiler can neither fold the digits into code nor keep a second copy.

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

/// The marker: `DTVER:` then the version as 10 ASCII digits.
static VERSION: [u8; 16] = *b"DTVER:0000000001";

/// The 10 version digits, read from memory at run time.
fn version() -> String {
    // SAFETY: `VERSION` is a valid, aligned, initialised static; a volatile
    // read of it is an ordinary read the compiler may not elide or fold.
    let marker: [u8; 16] = unsafe { core::ptr::read_volatile(core::hint::black_box(&VERSION)) };
    String::from_utf8_lossy(&marker[6..]).into_owned()
}

/// The component.
struct Versioned;

impl Guest for Versioned {
    fn route(_channel: ChannelInfo) -> Vec<Action> {
        vec![
            Action::Set(Variable {
                name: "dialplan_version".into(),
                value: version(),
            }),
            Action::Hangup(HangupCause::NormalClearing),
        ]
    }

    fn route_message(_message: TextMessage) -> MessageDecision {
        MessageDecision::Drop
    }
}

bindings::export!(Versioned with_types_in bindings);
