//! Sans-IO SIP: everything the `sofia` endpoint needs that does not touch a
//! socket or a clock.
//!
//! - [`message`]: the message model, parser (datagrams and Content-Length
//!   framed streams, compact header names, folded lines, IPv6 hosts,
//!   extension methods) and serializer.
//! - [`transaction`]: the four RFC 3261 section 17 transaction state
//!   machines with timers A-K, RFC 6026's Accepted state (timers L, M), driven by the
//!   caller's clock.
//! - [`auth`]: digest authentication (MD5, SHA-256, SHA-512-256 per
//!   RFC 7616/8760), nonces with expiry and replay protection.
//! - [`dtmf`]: DTMF digits in INFO bodies (`application/dtmf-relay`,
//!   `application/dtmf`).
//! - [`sdp`]: SDP offer/answer handling for a B2BUA that anchors media.
//!
//! Nothing here spawns a task or reads the time: the tokio driver in
//! `dialtone-sofia` feeds bytes and instants in and carries out what comes
//! back, and the tests drive everything on a virtual clock.

#![deny(missing_docs)]

pub mod auth;
pub mod dtmf;
pub mod message;
pub mod sdp;
pub mod transaction;
