//! The heart of Dialtone: channels, hangup causes, dialstrings, the originate
//! engine, endpoints, tenants and events. No sockets live here.
#![deny(missing_docs)]

pub mod cause;
pub mod dialstring;

pub use cause::HangupCause;
