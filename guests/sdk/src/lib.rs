//! # dialtone-sdk: plain Rust for Dialtone guests
//!
//! The logic every Rust dialplan or helper component can share, with no
//! WebAssembly bindings in it, so it builds and tests natively
//! (`cargo test -p dialtone-sdk`) and the guest crates stay thin wrappers
//! around `wit_bindgen::generate!`.
//!
//! - [`dialstring`]: a typed builder for FreeSWITCH dialstrings
//!   (`{vars}[vars]endpoint/data,...|...:_:...`) that **escapes every
//!   caller-supplied part**, so a caller who dials `1000,sofia/gateway/x/1`
//!   gets one leg to a strange user, never a second leg to a gateway.
//! - [`contact`]: the dialstring helpers `sofia_contact`, `verto_contact`,
//!   `rtmp_contact`, `user_contact` and `group_call`, as functions over plain
//!   [`contact::Registration`] values, following FreeSWITCH's output forms.
//!
//! ```
//! use dialtone_sdk::dialstring::{Dialstring, Leg};
//!
//! let dialed = "1000,sofia/gateway/x/1"; // hostile input
//! let ds = Dialstring::new()
//!     .var("ignore_early_media", "true")
//!     .leg(Leg::user(dialed, "example.com").var("leg_timeout", "20"))
//!     .failover()
//!     .leg(Leg::error("USER_BUSY"));
//! assert_eq!(
//!     ds.to_string(),
//!     r"{ignore_early_media=true}[leg_timeout=20]user/1000\,sofia\/gateway\/x\/1@example.com|error/USER_BUSY"
//! );
//! ```

//! The crate is `no_std` (it needs only `alloc`), so a component built on it
//! can leave the Rust standard library out altogether: see [`rt`].

#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

extern crate alloc;

pub mod contact;
pub mod dialstring;
pub mod rt;

pub use dialstring::{escape, Dialstring, DialstringError, Leg};
