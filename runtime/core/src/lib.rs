//! The heart of Dialtone: channels, hangup causes, dialstrings, the originate
//! engine, endpoints, tenants and events. No sockets live here.
#![deny(missing_docs)]

pub mod cause;
pub mod channel;
pub mod context;
pub mod dialstring;
pub mod directory;
pub mod endpoint;
pub mod events;
pub mod limits;
pub mod media_apps;
pub mod originate;
pub mod pseudo;
pub mod registrations;
pub mod routing;
pub mod switch;

pub use cause::HangupCause;
