//! The SIP endpoint, `sofia/`, named after FreeSWITCH's module.

#![deny(missing_docs)]

pub mod location;
pub mod settings;
pub mod transport;
